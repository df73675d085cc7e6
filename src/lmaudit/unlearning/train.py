"""The unlearning training loop: one forget loss plus one retain regulariser, or a model-arithmetic
method, applied to a transformers causal LM with Hugging Face accelerate.

The loop is written against ``accelerate`` (``Accelerator`` with gradient accumulation and mixed
precision; ``prepare`` for the model, optimiser and data loaders; ``accelerator.backward``), so
``accelerate launch lmaudit unlearn ...`` runs it on several GPUs; without a launcher it runs in
one process (here, on CPU). Tested here in one process only. Under DeepSpeed ZeRO-3 or FSDP two
things are not yet handled: the frozen reference copy (full fine-tuning with the KL retain loss,
or ``ref_logprobs="recompute"``) is a whole unsharded model on each process, and the final model
is taken from ``unwrap_model`` without gathering sharded weights (``accelerator.get_state_dict``).

Tokenisation: each document is the model's BOS (its EOS for GPT-2-style models, as the scoring
policy's ``bos="prepend"``) followed by the text's tokens; every text token is in the loss and
padding is masked in every loss. A document longer than ``max_length`` is an error naming it:
nothing is truncated or dropped.

Example:
    >>> config = UnlearnConfig(method="npo", retain_loss="kl", lr=1e-4, epochs=2)   # doctest: +SKIP
    >>> figures = unlearn(model, tokenizer, forget, retain, config)["figures"]       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch

from lmaudit.data import Record
from lmaudit.unlearning import ARITHMETIC, FORGET_LOSSES, RETAIN_LOSSES
from lmaudit.unlearning.batch import LossBatch, sequence_logprobs


@dataclass(frozen=True)
class UnlearnConfig:
    """One unlearning run.

    Attributes:
        method: A forget loss (:data:`~lmaudit.unlearning.FORGET_LOSSES`: ga, npo, simnpo) or a
            model-arithmetic method (:data:`~lmaudit.unlearning.ARITHMETIC`: task_vector, whp),
            which fine-tune a copy on the forget set by NLL and combine it with the model.
        retain_loss: none, nll or kl (:data:`~lmaudit.unlearning.RETAIN_LOSSES`); none for
            arithmetic methods.
        forget_weight: Weight of the forget loss.
        retain_weight: Weight of the retain loss.
        lr: AdamW learning rate, constant. 1e-5 is the published recipe for 7B models; small
            models need a sweep.
        epochs: Passes over the forget set.
        batch_size: Forget sequences per micro-batch (and retain sequences paired with it).
        grad_accum: Micro-batches per optimiser step.
        weight_decay: AdamW weight decay.
        max_grad_norm: Clip the gradient norm at each step (None: no clipping).
        lora_r: LoRA rank; 0 fine-tunes every weight.
        lora_alpha: LoRA scaling numerator (the update is scaled by lora_alpha / lora_r).
        lora_target_modules: Module names LoRA adapts (None: peft's default for the architecture).
        dtype: float32, or bfloat16 mixed precision (float32 master weights, bf16 autocast).
        beta: β of NPO / SimNPO (None: the loss's own default, 0.1 / 2.5).
        alpha: α of the arithmetic methods (θ − α·τ; z_b − α·ReLU(z_r − z_b)).
        seed: Seeds initialisation of adapters, shuffling and the retain pairing.
        max_length: Longest sequence, BOS included (None: the model's context length); a
            longer document is an error.
        ref_logprobs: cached (NPO's reference log-likelihoods computed once before training,
            the default) or recompute (a frozen reference forward at every step: only to
            measure what caching saves).
    """

    method: str = "npo"
    retain_loss: str = "none"
    forget_weight: float = 1.0
    retain_weight: float = 1.0
    lr: float = 1e-5
    epochs: int = 5
    batch_size: int = 4
    grad_accum: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    lora_r: int = 0
    lora_alpha: int = 16
    lora_target_modules: tuple[str, ...] | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    beta: float | None = None
    alpha: float = 1.0
    seed: int = 0
    max_length: int | None = None
    ref_logprobs: Literal["cached", "recompute"] = "cached"

    def __post_init__(self) -> None:
        if self.method not in FORGET_LOSSES and self.method not in ARITHMETIC:
            known = ", ".join([*FORGET_LOSSES.names(), *ARITHMETIC.names()])
            raise ValueError(f"unknown method {self.method!r} (known: {known})")
        RETAIN_LOSSES.get(self.retain_loss)  # an unknown name raises with did-you-mean
        if self.method in ARITHMETIC and self.retain_loss != "none":
            raise ValueError(f"{self.method} fine-tunes on the forget set alone: retain_loss must be none")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.ref_logprobs not in ("cached", "recompute"):
            raise ValueError(f"ref_logprobs must be cached or recompute, got {self.ref_logprobs!r}")
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.lora_r < 0 or (self.max_length is not None and self.max_length < 2):
            raise ValueError("lr must be > 0, lora_r >= 0 and max_length >= 2")

    @property
    def arithmetic(self) -> bool:
        return self.method in ARITHMETIC

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_target_modules"] = list(self.lora_target_modules) if self.lora_target_modules else None
        return d


def check_ids(forget: Sequence[Record], retain: Sequence[Record] | None) -> None:
    """Raise ValueError naming the ids that are both in the forget and the retain set (the
    evaluation's own check, so the two commands refuse the same inputs in the same words)."""
    from lmaudit.unlearning.sets import check_disjoint

    check_disjoint(forget, retain or [])


def not_in_training_data(forget: Sequence[Record], train: Sequence[Record]) -> list:
    """Ids of forget documents whose text is not in ``train`` (allowed, but worth a warning)."""
    texts = {r.text for r in train}
    return [r.id for r in forget if r.text not in texts]


def tokenize(records: Sequence[Record], tokenizer, *, bos_token_id: int, max_length: int, role: str) -> list[list[int]]:
    """BOS + the text's tokens for each record; an empty or too long document raises, naming it."""
    texts = [r.text for r in records]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    out = []
    for r, toks in zip(records, ids):
        if r.error is not None or not toks:
            raise ValueError(f"{role} document {r.id!r} has no text to train on")
        if len(toks) + 1 > max_length:
            raise ValueError(f"{role} document {r.id!r} has {len(toks) + 1} tokens with BOS, more than "
                             f"max_length={max_length}: split it or raise max_length")
        out.append([bos_token_id, *toks])
    return out


def _accelerator(config: UnlearnConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = "bf16" if config.dtype == "bfloat16" else "no"
    state = AcceleratorState._shared_state
    # The state is a process-wide singleton that refuses another precision. Under a launcher
    # there is one run per process; in one process (a sweep, the tests) each run sets its own.
    if state and state.get("_mixed_precision") not in (None, mixed) and state.get("num_processes", 1) == 1:
        AcceleratorState._reset_state(True)
    return Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=mixed)


def _collate(seqs: list[list[int]], pad_token_id: int):
    from lmaudit.ops.padding import pad_batch

    def collate(index: list[int]) -> dict:
        ids, mask, _, _ = pad_batch([seqs[i] for i in index], pad_token_id=pad_token_id)
        return {"index": torch.as_tensor(index), "input_ids": ids, "attention_mask": mask}

    return collate


def _loss_batch(logits, batch, **ref) -> LossBatch:
    """Shift once: logits at t predict the token at t + 1; pad positions are out of the loss."""
    return LossBatch(logits=logits[:, :-1], labels=batch["input_ids"][:, 1:],
                     mask=batch["attention_mask"][:, 1:].bool(), **ref)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def unlearn(model, tokenizer, forget: Sequence[Record], retain: Sequence[Record] | None = None,
            config: UnlearnConfig = UnlearnConfig(), *, on_epoch: Callable | None = None,
            log: Callable[[str], None] | None = None, adapter_dir: str | Path | None = None) -> dict:
    """Remove ``forget`` from ``model`` by ``config.method``.

    Loss methods train ``model`` in place (with LoRA: adapters on it, merged into it at the
    end, so the result is a plain causal LM). Arithmetic methods fine-tune a copy on the forget
    set by NLL; task_vector then writes θ − α(θ_ft − θ) into ``model``, and whp returns the
    fine-tuned ("reinforced") copy, leaving ``model`` as it was.

    References: NPO's per-sequence reference log-likelihoods are computed once, before training,
    with the initial model, and cached by example (``ref_logprobs="recompute"`` instead keeps a
    frozen reference and runs it every step: only for measuring the saving). The KL retain
    loss needs the reference's logits on each retain batch: with LoRA from the same model with
    its adapters disabled (peft's ``disable_adapter``), with full fine-tuning from a frozen copy
    of the initial model (a second model in memory).

    Pairing: each forget micro-batch is paired with the next ``batch_size`` retain documents of
    a seeded shuffle of the retain set, cycled as often as needed. Losses are means over the
    micro-batch, and accelerate divides each by ``grad_accum``: a per-sequence loss (NPO,
    SimNPO, GA with ``reduction="sequence"``) gives the same step for grad_accum × batch_size
    however it is split; per-token means (GA's default, NLL, KL) weigh micro-batches equally.

    Args:
        model: A transformers causal LM (float32 weights).
        tokenizer: Its tokenizer.
        forget: Documents to remove.
        retain: Documents to keep (needed by a retain loss; ids disjoint from ``forget``).
        config: The run.
        on_epoch: Called as ``on_epoch(epoch, model)`` after each epoch (1-based) with the
            method's model at that point, in eval mode: the trained model (a peft model under
            LoRA), task_vector's negated copy, or whp's :class:`~lmaudit.models.whp.WHPModel`.
        log: Called with a line of progress per epoch.
        adapter_dir: Under LoRA, where to save the adapter before it is merged.

    Returns:
        ``{"model": the unlearned transformers model, "figures": {...}}``: figures holds the
        per-step loss curve (forget, retain, total, gradient norm before clipping), steps, timings and peak memory.
    """
    from lmaudit.models.hf import HFModel

    check_ids(forget, retain)
    if not forget:
        raise ValueError("the forget set is empty")
    uses_retain = config.retain_loss != "none"
    if uses_retain and not retain:
        raise ValueError(f"retain loss {config.retain_loss!r} needs a retain set")
    info = HFModel(model, tokenizer)  # the special ids and context length every audit uses
    max_length = config.max_length or info.max_length
    forget_seqs = tokenize(forget, tokenizer, bos_token_id=info.bos_token_id, max_length=max_length, role="forget")
    retain_seqs = (tokenize(retain, tokenizer, bos_token_id=info.bos_token_id, max_length=max_length, role="retain")
                   if uses_retain else [])

    if config.arithmetic:
        method = ARITHMETIC.get(config.method)(alpha=config.alpha)
        forget_loss = RETAIN_LOSSES.get("nll")()  # plain fine-tuning on F: mean token NLL
    else:
        cls = FORGET_LOSSES.get(config.method)
        has_beta = any(f.name == "beta" for f in dataclasses.fields(cls))
        forget_loss = cls(beta=config.beta) if has_beta and config.beta is not None else cls()
    retain_loss = RETAIN_LOSSES.get(config.retain_loss)()
    needs_logprob = getattr(forget_loss, "reference", None) == "logprob"
    needs_logits = getattr(retain_loss, "reference", None) == "logits"

    from accelerate.utils import set_seed

    accelerator = _accelerator(config)
    set_seed(config.seed)
    started = time.time()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    trainee = copy.deepcopy(model) if config.arithmetic else model
    if not config.lora_r:
        trainee.requires_grad_(True)  # every weight trains, whatever the caller had frozen
    else:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, bias="none",
                          task_type="CAUSAL_LM",
                          target_modules=list(config.lora_target_modules) if config.lora_target_modules else None)
        trainee = get_peft_model(trainee, lora)
    # The reference as a forward pass: the adapters switched off (LoRA), else a frozen copy,
    # kept only when something needs it at every step.
    recompute = needs_logprob and config.ref_logprobs == "recompute"
    frozen = None
    if (needs_logits or recompute) and not config.lora_r:
        frozen = copy.deepcopy(model).eval().requires_grad_(False).to(accelerator.device)

    g = torch.Generator().manual_seed(config.seed)
    forget_loader = torch.utils.data.DataLoader(list(range(len(forget_seqs))), batch_size=config.batch_size,
                                                shuffle=True, generator=g,
                                                collate_fn=_collate(forget_seqs, info.pad_token_id))
    params = [p for p in trainee.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    trainee, optimizer, forget_loader = accelerator.prepare(trainee, optimizer, forget_loader)
    retain_loader = None
    if uses_retain:
        # Not through accelerator.prepare: accelerate ends an accumulation window at the end of
        # the last loader it prepared, and the retain loader (cycled, of another length) would
        # then decide when the optimiser steps instead of the forget loader. Its batches are
        # moved to the device below; under DDP every process draws the same retain stream.
        rg = torch.Generator().manual_seed(config.seed + 1)
        retain_loader = torch.utils.data.DataLoader(
            list(range(len(retain_seqs))), batch_size=config.batch_size, shuffle=True, generator=rg,
            collate_fn=_collate(retain_seqs, info.pad_token_id))

    def reference_logits(batch) -> torch.Tensor:
        with torch.no_grad(), accelerator.autocast():
            if frozen is not None:
                return frozen(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            net = accelerator.unwrap_model(trainee)
            with net.disable_adapter():
                return net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    ref_cache, ref_time = None, 0.0
    if needs_logprob and not recompute:
        t0 = time.time()
        ref_cache = _reference_logprobs(accelerator.unwrap_model(trainee), forget_seqs, info.pad_token_id,
                                        batch_size=config.batch_size, accelerator=accelerator)
        ref_time = time.time() - t0

    curve, epoch_times, grad_norms, step = [], [], [], 0
    totals = {"forget": [], "retain": [], "total": []}
    retain_iter = None
    trainee.train()
    for epoch in range(1, config.epochs + 1):
        t_epoch = time.time()
        for batch in forget_loader:
            with accelerator.accumulate(trainee):
                ref = {}
                if needs_logprob:
                    if ref_cache is not None:
                        ref["ref_logprob"] = ref_cache[batch["index"].cpu()].to(accelerator.device)
                    else:
                        lb = _loss_batch(reference_logits(batch), batch)
                        ref["ref_logprob"] = sequence_logprobs(lb.logits, lb.labels, lb.mask)
                logits = trainee(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                f = forget_loss(_loss_batch(logits, batch, **ref))
                total = config.forget_weight * f
                r = torch.zeros(())
                if retain_loader is not None:
                    try:
                        rb = next(retain_iter)
                    except (StopIteration, TypeError):  # exhausted, or not started
                        retain_iter = iter(retain_loader)
                        rb = next(retain_iter)
                    rb = {k: v.to(accelerator.device) for k, v in rb.items()}
                    r_ref = {"ref_logits": reference_logits(rb)} if needs_logits else {}
                    r_logits = trainee(input_ids=rb["input_ids"], attention_mask=rb["attention_mask"]).logits
                    r = retain_loss(_loss_batch(r_logits, rb, **{k: v[:, :-1] for k, v in r_ref.items()}))
                    total = total + config.retain_weight * r
                accelerator.backward(total)
                if accelerator.sync_gradients:  # the norm is recorded whether or not it clips
                    grad_norms.append(float(accelerator.clip_grad_norm_(params, config.max_grad_norm or math.inf)))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in (("forget", f), ("retain", r), ("total", total)):
                totals[key].append(float(value.detach()))
            if accelerator.sync_gradients:
                step += 1
                curve.append({"step": step, "epoch": epoch,
                              **{k: round(sum(v) / len(v), 6) for k, v in totals.items()},
                              "grad_norm": round(grad_norms[-1], 6)})
                totals = {k: [] for k in totals}
        epoch_times.append(round(time.time() - t_epoch, 3))
        if log:
            log(f"epoch {epoch}/{config.epochs}: step {step}, forget loss {curve[-1]['forget']:.4f}, "
                f"retain loss {curve[-1]['retain']:.4f}")
        if on_epoch is not None:
            trainee.eval()
            on_epoch(epoch, _epoch_model(accelerator.unwrap_model(trainee), model, config, tokenizer))
            trainee.train()

    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(trainee, keep_fp32_wrapper=False)
    if config.lora_r:
        if adapter_dir is not None:
            trained.save_pretrained(str(adapter_dir), is_main_process=accelerator.is_main_process)
        # A plain model again: peft froze the base weights, which a later caller may train.
        trained = trained.merge_and_unload().requires_grad_(True)
    trained.eval()
    result = ARITHMETIC.get(config.method)(alpha=config.alpha).final(model, trained) if config.arithmetic else trained
    wall = time.time() - started
    live = "adapters disabled" if config.lora_r else "frozen copy"
    n_steps = max(step, 1)
    figures = {
        "steps": step,
        "steps_per_epoch": math.ceil(math.ceil(len(forget_seqs) / config.batch_size) / config.grad_accum),
        "n_forget": len(forget_seqs),
        "n_retain": len(retain_seqs),
        "forget_tokens": sum(len(s) - 1 for s in forget_seqs),
        "max_length": max_length,
        "loss_curve": curve,
        "epoch_time_s": epoch_times,
        "ref_logprob_time_s": round(ref_time, 3),
        "train_time_s": round(sum(epoch_times), 3),
        "time_per_step_s": round(sum(epoch_times) / n_steps, 4),
        "wall_time_s": round(wall, 3),
        "process_peak_rss_bytes": _peak_rss_bytes(),  # the whole process's peak so far, not this run's alone
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        # Where each loss's reference came from (None: it needs none).
        "reference": {"forget": None if not needs_logprob else "cached log-probs" if ref_cache is not None else live,
                      "retain": live if needs_logits else None},
        "paper": {"forget": getattr(method if config.arithmetic else forget_loss, "paper", ""),
                  "retain": retain_loss.paper},
    }
    return {"model": result, "figures": figures}


@torch.no_grad()
def _reference_logprobs(net, seqs: list[list[int]], pad_token_id: int, *, batch_size: int, accelerator) -> torch.Tensor:
    """(N,) float32 log-likelihood of each sequence under ``net`` as it is now, on the CPU."""
    was_training = net.training
    net.eval()
    collate = _collate(seqs, pad_token_id)
    out = torch.empty(len(seqs))
    for start in range(0, len(seqs), batch_size):
        index = list(range(start, min(start + batch_size, len(seqs))))
        batch = {k: v.to(accelerator.device) for k, v in collate(index).items()}
        with accelerator.autocast():
            logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        lb = _loss_batch(logits, batch)
        out[start : start + len(index)] = sequence_logprobs(lb.logits, lb.labels, lb.mask).float().cpu()
    net.train(was_training)
    return out


def _epoch_model(trained, base, config: UnlearnConfig, tokenizer):
    """The method's model after an epoch (see ``on_epoch`` in :func:`unlearn`)."""
    if not config.arithmetic:
        return trained
    method = ARITHMETIC.get(config.method)(alpha=config.alpha)
    snapshot = copy.deepcopy(trained)
    if config.lora_r:
        snapshot = snapshot.merge_and_unload()
    return method.at_epoch(base, snapshot.eval(), tokenizer)


def unlearn_to_dir(model, tokenizer, forget: Sequence[Record], retain: Sequence[Record] | None, out: str | Path,
                   config: UnlearnConfig = UnlearnConfig(), *, base_path: str | None = None, data: list[dict] | None = None,
                   command: str = "unlearn", started: float | None = None, on_epoch: Callable | None = None,
                   log: Callable[[str], None] | None = None) -> dict:
    """:func:`unlearn`, then write ``out``/model/ (safetensors and tokenizer; under LoRA also
    ``out``/adapter/) and ``out``/results.json (kind "unlearn").

    For whp, ``out``/model/ holds the reinforced model and :data:`~lmaudit.models.whp.WHP_FILE`
    naming ``base_path`` (required: the folder must say where its base is) and α; every
    lmaudit command loads the folder as the combined model.

    Returns:
        results.json's content.
    """
    from accelerate import PartialState

    from lmaudit.models.identity import ModelIdentity, tokenizer_fingerprint, weight_files
    from lmaudit.models.whp import WHP_FILE, whp_fingerprint
    from lmaudit.report.run import RunWriter

    whp = config.arithmetic and ARITHMETIC.get(config.method).inference_time
    if whp and base_path is None:
        raise ValueError(f"{config.method}: its output folder names its base model; pass base_path")
    out = Path(out)
    with RunWriter(out, kind="unlearn", command=command, started=started) as run:
        before = ModelIdentity(model, source=weight_files(base_path) if base_path else None).fingerprint()
        result = unlearn(model, tokenizer, forget, retain, config, on_epoch=on_epoch, log=log,
                         adapter_dir=out / "adapter" if config.lora_r else None)
        final, figures = result["model"], result["figures"]
        model_dir = out / "model"
        if PartialState().is_main_process:
            final.save_pretrained(model_dir, safe_serialization=True)
            tokenizer.save_pretrained(model_dir)
            if whp:
                spec = {"base": str(Path(base_path).expanduser().resolve()) if Path(base_path).expanduser().is_dir()
                        else base_path, "alpha": config.alpha, "base_fingerprint": before,
                        "paper": ARITHMETIC.get(config.method).paper}
                (model_dir / WHP_FILE).write_text(json.dumps(spec, indent=2) + "\n")
            else:
                (model_dir / WHP_FILE).unlink(missing_ok=True)  # a plain model now, whatever was there
        after = ModelIdentity(final, source=weight_files(str(model_dir))).fingerprint()
        if whp:
            after = whp_fingerprint(before, after, config.alpha)
        curve = figures["loss_curve"]
        summary = {
            "method": config.method, "retain_loss": config.retain_loss, "steps": figures["steps"],
            "n_forget": figures["n_forget"], "n_retain": figures["n_retain"],
            "final_forget_loss": curve[-1]["forget"] if curve else None,
            "final_retain_loss": curve[-1]["retain"] if curve else None,
            "train_time_s": figures["train_time_s"], "model": str(model_dir),
        }
        provenance = {
            "config": config.to_dict(),
            "models": {"before": {"name": base_path, "fingerprint": before},
                       "after": {"path": str(model_dir), "fingerprint": after, "whp": bool(whp)}},
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
            "data": data or [],
        }
        return run.finish(summary=summary, provenance=provenance, extra={"unlearn": figures})
