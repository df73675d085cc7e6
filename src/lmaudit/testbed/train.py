"""Train a small decoder-only transformer from scratch on the member documents."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lmaudit.ops.padding import pad_batch
from lmaudit.takedown.goldfish import IGNORE_INDEX, GoldfishConfig, goldfish_labels


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


def training_key(model, sequences: list[list[int]], cfg: TrainConfig, *, seed: int,
                 goldfish: GoldfishConfig | None = None) -> str:
    """What a checkpoint must match to be resumed: the config, the seed, the goldfish loss if
    any, the data and the initial weights (a hash, so a checkpoint of another build is never
    taken for this one's). Without goldfish the key is what it was before goldfish existed."""
    what = {"config": asdict(cfg), "seed": seed} | ({"goldfish": goldfish.to_dict()} if goldfish is not None else {})
    h = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
    for seq in sequences:
        h.update(len(seq).to_bytes(4, "big") + b"".join(t.to_bytes(4, "big") for t in seq))
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train(model, sequences: list[list[int]], cfg: TrainConfig, *, seed: int, pad_token_id: int, log=None,
          checkpoint: Path | None = None, checkpoint_every: int = 100,
          goldfish: GoldfishConfig | None = None) -> dict:
    """Train ``model`` on ``sequences`` (already duplicated and with BOS/EOS) in place.

    With ``checkpoint``, the model, optimiser, step and random states are saved there every
    ``checkpoint_every`` steps, and a run that finds a checkpoint of the same training
    (:func:`training_key`) resumes from it: the result is the same, bit for bit, as a run that
    was never interrupted (every random draw is restored, and the steps themselves draw none).
    The caller removes the checkpoint when it no longer needs it.

    With ``goldfish``, the targets :func:`lmaudit.takedown.goldfish.goldfish_mask` drops
    (computed on each unpadded sequence) are left out of the loss, which Hugging Face's loss
    then averages over the kept targets; nothing else changes (same order, schedule and random
    draws). None: training is exactly what it was without this option, bit for bit.

    Returns:
        Training figures: steps, tokens seen, wall time, final loss (mean of the last 20
        steps; over the kept targets with goldfish), the loss curve sampled every 20 steps, and
        the step resumed from (0: none). With goldfish also ``target_tokens`` (targets of the
        plain loss: every token but each sequence's first) and ``goldfish_dropped_tokens``.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    per_epoch = math.ceil(len(sequences) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    step, tokens, losses, curve = 0, 0, [], []
    targets = dropped = 0  # goldfish only
    key = training_key(model, sequences, cfg, seed=seed, goldfish=goldfish) if checkpoint is not None else None
    resumed = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step, tokens, losses, curve = state["step"], state["tokens"], list(state["losses"]), list(state["curve"])
            targets, dropped = state.get("targets", 0), state.get("dropped", 0)
            rng.setstate(_tuples(state["python_rng"]))
            torch.set_rng_state(state["torch_rng"])
            resumed = step
    started = time.time()
    model.train()
    for epoch in range(cfg.epochs):
        order = list(range(len(sequences)))
        if epoch < resumed // per_epoch:
            continue  # shuffled before the checkpoint: its random state is already past this draw
        if epoch > resumed // per_epoch or resumed % per_epoch == 0 or resumed == 0:
            rng.shuffle(order)
        else:  # resumed inside this epoch: the order was drawn before the checkpoint, and saved
            order = list(state["order"])
        for start in range(0, len(order), cfg.batch_size):
            if epoch * per_epoch + start // cfg.batch_size < step:
                continue  # done before the checkpoint
            batch = [sequences[i] for i in order[start : start + cfg.batch_size]]
            ids, mask, _, _ = pad_batch(batch, pad_token_id=pad_token_id)
            labels = ids.masked_fill(mask == 0, -100)  # padding never contributes to the loss
            if goldfish is not None:
                # Right padding: each sequence starts in column 0, which the model's shift never scores.
                kept = goldfish_labels(ids, labels, goldfish, attention_mask=mask)
                targets += int((labels[:, 1:] != IGNORE_INDEX).sum())
                dropped += int((labels[:, 1:] != IGNORE_INDEX).sum() - (kept[:, 1:] != IGNORE_INDEX).sum())
                labels = kept
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
            if checkpoint is not None and step % checkpoint_every == 0 and step < total:
                _save(checkpoint, {"key": key, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "step": step, "tokens": tokens, "losses": losses, "curve": curve, "order": order,
                                   "python_rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                                   **({"targets": targets, "dropped": dropped} if goldfish is not None else {})})
            if log and (step % 20 == 0 or step == total):
                log(step, total, losses[-1])
    model.eval()
    figures = {
        "steps": step,
        "train_tokens": tokens,
        "train_wall_time_s": round(time.time() - started, 2),
        "final_train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "loss_curve": curve,
        "resumed_from_step": resumed,
    }
    if goldfish is not None:
        figures |= {"target_tokens": targets, "goldfish_dropped_tokens": dropped}
    return figures


def _save(path: Path, state: dict) -> None:
    """Write the checkpoint under a temporary name, then move it into place (a kill mid-write
    leaves the previous checkpoint whole)."""
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _tuples(value):
    """random.Random's state with its inner list back as a tuple (saving turns it into a list)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
