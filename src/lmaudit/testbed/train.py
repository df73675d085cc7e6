"""Train a small decoder-only transformer from scratch on the member documents."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import torch

from lmaudit.ops.padding import pad_batch


@dataclass(frozen=True)
class TrainConfig:
    """Model shape and optimisation for the testbed model.

    Attributes:
        hidden_size: Width of the residual stream.
        n_layers: Transformer blocks.
        n_heads: Attention heads per block.
        context_length: Longest sequence the model accepts (BOS and EOS included).
        batch_size: Sequences per optimiser step.
        lr: Peak AdamW learning rate (no weight decay: we want memorization).
        warmup_steps: Linear warm-up before a cosine decay to 10% of lr.
        epochs: Passes over the duplicated member list.
    """

    hidden_size: int = 192
    n_layers: int = 4
    n_heads: int = 3
    context_length: int = 256
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 30
    epochs: int = 1


def build_model(cfg: TrainConfig, *, vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int):
    """A Llama-architecture model (RMSNorm, rotary positions, SwiGLU) with tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=(cfg.hidden_size * 8 // 3 + 7) // 8 * 8,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.context_length,
        tie_word_embeddings=True,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    return LlamaForCausalLM(config)


def train(model, sequences: list[list[int]], cfg: TrainConfig, *, seed: int, pad_token_id: int, log=None) -> dict:
    """Train ``model`` on ``sequences`` (already duplicated and with BOS/EOS) in place.

    Returns:
        Training figures: steps, tokens seen, wall time, final loss (mean of the last 20
        steps) and the loss curve sampled every 20 steps.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    total = math.ceil(len(sequences) / cfg.batch_size) * cfg.epochs
    step, tokens, losses, curve = 0, 0, [], []
    started = time.time()
    model.train()
    for _ in range(cfg.epochs):
        order = list(range(len(sequences)))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch_size):
            batch = [sequences[i] for i in order[start : start + cfg.batch_size]]
            ids, mask, _, _ = pad_batch(batch, pad_token_id=pad_token_id)
            labels = ids.masked_fill(mask == 0, -100)  # padding never contributes to the loss
            warm = min(1.0, (step + 1) / cfg.warmup_steps)
            decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
            for group in opt.param_groups:
                group["lr"] = cfg.lr * warm * decay
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens += int(mask.sum())
            losses.append(loss.item())
            if step % 20 == 0 or step == total:
                curve.append([step, round(sum(losses[-20:]) / len(losses[-20:]), 4)])
                if log:
                    log(step, total, losses[-1])
    model.eval()
    return {
        "steps": step,
        "train_tokens": tokens,
        "train_wall_time_s": round(time.time() - started, 2),
        "final_train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "loss_curve": curve,
    }
