"""Adversarial Compression Ratio (Schwarzschild et al. 2024): is a text stored in the model more
compactly than it is written?

For a target text of m tokens, search for the shortest prompt of n free tokens after which the
model's greedy decoding emits exactly the target. ACR = m / n; the text counts as memorized when
ACR > 1 (the model "compresses" it). A found prompt is a witness: ACR is a lower bound on how
far the text can be compressed, and a target for which no prompt is found within the budget
gets no ACR (``acr`` null, not memorized), never a guess.

The search is GCG (Zou et al. 2023): the gradient of the target's cross-entropy with respect to
one-hot prompt tokens ranks, for every position, the ``top_k`` most promising replacement
tokens; ``n_candidates`` single-token swaps drawn from them are evaluated in one batched forward
pass, and the search moves to the best. Where this differs from the public implementation
(``locuslab/acr-memorization``, see REFERENCE.md §6):

- Tokens are drawn from the tokenizer's vocabulary only: never a special token, an embedding
  row past the tokenizer (padded embedding matrices), or a token that does not survive
  ``encode(decode([t]))``. A prompt is a string a user could type.
- Success is verified the way a user would reproduce it: decode the prompt to text, encode the
  text again, generate greedily from that, and compare with the target. The prompt's length is
  the length of the re-encoded prompt. A teacher-forced match alone (the public code's check)
  is not enough: the ids found may not be what the text tokenizes to.
- Lengths are searched without throwing work away: every length starts from the previous one's
  prompt, never from random tokens (the public code restarts each length from random tokens).
  By default the search starts at the longest prompt that can still show memorization (one
  token shorter than the target) and shrinks: after a success, drop the one token whose removal
  raises the loss least (all n tried, in batches) and optimise from there; stop at the first
  length that fails. A target that is not memorized then costs one length, and a memorized one
  mostly needs a few steps per length. With ``start_tokens`` set, the paper's order is used
  instead: start there; on failure add ``grow_tokens`` random tokens in front of the best
  prompt so far (the optimised tokens stay next to the target) with ``steps_growth``× the
  steps; after the first success, shrink as above.
- Any candidate whose teacher-forced greedy decoding already reproduces the target is taken,
  even if another candidate has a lower loss.
- ``patience`` gives a length up once its loss stops improving.

Both orders are compared on the testbed in ``benchmarks/bench_acr.py`` (figures in
benchmarks/README.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lmaudit.data import Record
from lmaudit.models.base import GenerationConfig
from lmaudit.report.results import breakdown, model_provenance
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.stats import bootstrap_mean_ci


@dataclass(frozen=True)
class ACRConfig:
    """The search and its compute budget.

    Attributes:
        start_tokens: Prompt length tried first. None: the longest, ``max_prompt_tokens``,
            then shrinking; the paper starts at 5 and grows.
        grow_tokens: Tokens added after a failed length (when starting short).
        steps: GCG steps at the first length (the paper's 200); later lengths upward get
            ``steps_growth``× the previous length's, lengths downward get ``steps``.
        steps_growth: Step multiplier per failed length (the paper's 1.2).
        top_k: Replacement tokens kept per position from the gradient (the paper's 250).
        n_candidates: Single-token swaps evaluated per step (the paper's 100).
        patience: Give a length up after this many steps without a new lowest loss (None:
            always run its full steps, as the paper does). Most of a fixed budget is spent on
            lengths that fail; a stalled search rarely recovers.
        max_prompt_tokens: Longest prompt tried. None: one token less than the target, the
            longest prompt with ACR > 1.
        max_seconds: Wall-clock budget per target (None: unlimited); when spent, the best
            verified result so far stands and ``budget_exhausted`` is set.
        bos: Prepend the model's BOS (EOS for GPT-2-style models), not counted in the length.
        seed: Seeds the random initial tokens and candidate draws (per target: seed and index).
    """

    start_tokens: int | None = None
    grow_tokens: int = 5
    steps: int = 200
    steps_growth: float = 1.2
    top_k: int = 250
    n_candidates: int = 100
    patience: int | None = None
    max_prompt_tokens: int | None = None
    max_seconds: float | None = None
    bos: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        optional = (self.start_tokens, self.max_prompt_tokens, self.patience)
        sizes = (*[v for v in optional if v is not None], self.grow_tokens, self.steps, self.top_k, self.n_candidates)
        if min(sizes) < 1:
            raise ValueError("start_tokens, max_prompt_tokens, grow_tokens, steps, top_k, n_candidates and patience "
                             "must be at least 1")
        if self.steps_growth < 1:
            raise ValueError("steps_growth must be >= 1")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be positive (None: no limit)")


def allowed_tokens(model) -> torch.Tensor:
    """(embedding rows,) bool: the tokens a prompt may use (see the module docstring)."""
    tok = model.tokenizer
    n_rows = model.model.get_input_embeddings().num_embeddings
    ids = list(range(min(len(tok), n_rows)))
    texts = tok.batch_decode([[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    again = tok(texts, add_special_tokens=False)["input_ids"]
    ok = torch.zeros(n_rows, dtype=torch.bool)
    special = set(tok.all_special_ids)
    for i, text, ids_again in zip(ids, texts, again):
        ok[i] = i not in special and list(ids_again) == [i] and text != ""
    return ok


class _Objective:
    """Cross-entropy of one target after a prompt: batched values and the one-hot gradient."""

    def __init__(self, model, target: Sequence[int], prefix: Sequence[int]):
        self.net = model.model
        self.W = self.net.get_input_embeddings().weight  # (V, d)
        device = self.W.device
        self.target = torch.as_tensor(list(target), device=device)
        with torch.no_grad():
            self.prefix_emb = self.W[torch.as_tensor(list(prefix), dtype=torch.long, device=device)]  # (b, d)
            self.target_emb = self.W[self.target[:-1]]  # the last target token is never an input
        self.m = len(target)
        self.forward_passes = 0  # sequences evaluated (candidates and gradients)

    def _logits(self, prompt_emb: torch.Tensor) -> torch.Tensor:
        """(B, m, V) float32 logits at the positions that predict the target."""
        B = prompt_emb.shape[0]
        emb = torch.cat([self.prefix_emb.expand(B, -1, -1), prompt_emb, self.target_emb.expand(B, -1, -1)], dim=1)
        self.forward_passes += B
        try:
            logits = self.net(inputs_embeds=emb, use_cache=False, logits_to_keep=self.m).logits
        except TypeError:  # models without logits_to_keep
            logits = self.net(inputs_embeds=emb, use_cache=False).logits
        return logits[:, -self.m :].float()

    def losses(self, prompts: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For prompts (B, n): (B,) mean cross-entropy of the target, and (B,) whether teacher-forced
        greedy decoding reproduces every target token."""
        out_loss, out_exact = [], []
        with torch.inference_mode():
            for s in range(0, len(prompts), batch):
                logits = self._logits(self.W[prompts[s : s + batch]])
                tgt = self.target.expand(logits.shape[0], -1)
                ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt, reduction="none").mean(1)
                out_loss.append(ce)
                out_exact.append((logits.argmax(-1) == tgt).all(-1))
        return torch.cat(out_loss), torch.cat(out_exact)

    def gradient(self, prompt: torch.Tensor) -> torch.Tensor:
        """(n, V) gradient of the loss with respect to the one-hot encoding of ``prompt``."""
        one_hot = torch.zeros(len(prompt), self.W.shape[0], device=self.W.device, dtype=self.W.dtype)
        one_hot[torch.arange(len(prompt)), prompt] = 1.0
        one_hot.requires_grad_(True)
        logits = self._logits((one_hot @ self.W)[None])
        loss = torch.nn.functional.cross_entropy(logits[0], self.target)
        # Only the one-hot's gradient: the model's .grad fields are never touched.
        (grad,) = torch.autograd.grad(loss, [one_hot])
        return grad


@dataclass
class _Attempt:
    n: int
    steps: int
    success: bool
    best_loss: float
    prompt: torch.Tensor  # best ids found (on success, those before decoding and re-encoding)
    verified_text: str | None = None
    verified_ids: list[int] | None = None


class _Search:
    """GCG with a length search for one target."""

    def __init__(self, model, target: list[int], cfg: ACRConfig, allowed: torch.Tensor, seed: int,
                 deadline: float | None):
        self.model, self.target, self.cfg = model, target, cfg
        self.prefix = [model.bos_token_id] if cfg.bos and model.bos_token_id is not None else []
        self.obj = _Objective(model, target, self.prefix)
        self.allowed = allowed.to(self.obj.W.device)
        self.allowed_ids = torch.nonzero(self.allowed)[:, 0]
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        self.deadline = deadline
        self.steps = 0
        self.verifications = 0
        self.stopped_by_budget = False

    def out_of_time(self) -> bool:
        """True once the deadline has passed; remembered, since it is what stopped the search."""
        if self.deadline is not None and time.time() > self.deadline:
            self.stopped_by_budget = True
        return self.stopped_by_budget

    def random_tokens(self, n: int) -> torch.Tensor:
        pick = torch.randint(0, len(self.allowed_ids), (n,), generator=self.gen)
        return self.allowed_ids[pick.to(self.allowed_ids.device)]

    def verify(self, ids: torch.Tensor) -> tuple[bool, str, list[int]]:
        """Decode, re-encode, generate greedily: does the text prompt reproduce the target?"""
        self.verifications += 1
        text = self.model.decode(ids.tolist())
        again = self.model.encode([text])[0]
        if not again:
            return False, text, again
        out = self.model.generate([[*self.prefix, *again]], GenerationConfig(max_new_tokens=len(self.target),
                                                                              stop_at_eos=False), batch_size=1)[0]
        return out == self.target, text, again

    def _take(self, cands: torch.Tensor, loss: torch.Tensor, exact: torch.Tensor):
        """Among candidates, a verified success if one exists (lowest loss first), else None."""
        for i in torch.nonzero(exact)[:, 0][torch.argsort(loss[exact])].tolist()[:3]:
            ok, text, again = self.verify(cands[i])
            if ok:
                return i, text, again
        return None

    def optimise(self, prompt: torch.Tensor, steps: int) -> _Attempt:
        """Up to ``steps`` GCG steps from ``prompt``; stops at the first verified success."""
        cfg, n = self.cfg, len(prompt)
        loss, exact = self.obj.losses(prompt[None], cfg.n_candidates)
        best, best_loss = prompt, float(loss[0])
        if bool(exact[0]) and (hit := self._take(prompt[None], loss, exact)):
            return _Attempt(n, 0, True, best_loss, prompt, hit[1], hit[2])
        current, best_step = prompt, 0
        k = min(cfg.top_k, len(self.allowed_ids))
        for step in range(1, steps + 1):
            if self.out_of_time():
                return _Attempt(n, step - 1, False, best_loss, best)
            self.steps += 1
            grad = self.obj.gradient(current)
            grad[:, ~self.allowed] = float("inf")
            top = (-grad).topk(k, dim=1).indices  # (n, k)
            pos = torch.randint(0, n, (cfg.n_candidates,), generator=self.gen).to(top.device)
            pick = torch.randint(0, k, (cfg.n_candidates,), generator=self.gen).to(top.device)
            cands = current.repeat(cfg.n_candidates, 1)
            cands[torch.arange(cfg.n_candidates, device=top.device), pos] = top[pos, pick]
            loss, exact = self.obj.losses(cands, cfg.n_candidates)
            if exact.any() and (hit := self._take(cands, loss, exact)):
                i, text, again = hit
                return _Attempt(n, step, True, float(loss[i]), cands[i], text, again)
            i = int(loss.argmin())
            current = cands[i]  # GCG moves to the best candidate even if it is worse than the current
            if float(loss[i]) < best_loss:
                best, best_loss, best_step = current, float(loss[i]), step
            elif cfg.patience is not None and step - best_step >= cfg.patience:
                return _Attempt(n, step, False, best_loss, best)
        return _Attempt(n, steps, False, best_loss, best)

    def drop_one(self, prompt: torch.Tensor) -> torch.Tensor:
        """``prompt`` without the token whose removal raises the loss least."""
        n = len(prompt)
        cands = torch.stack([torch.cat([prompt[:i], prompt[i + 1 :]]) for i in range(n)])
        loss, exact = self.obj.losses(cands, self.cfg.n_candidates)
        loss = torch.where(exact, loss - 1e9, loss)  # a removal that keeps the match wins outright
        return cands[int(loss.argmin())]

    def run(self) -> tuple[_Attempt | None, list[_Attempt]]:
        cfg, m = self.cfg, len(self.target)
        n_max = cfg.max_prompt_tokens if cfg.max_prompt_tokens is not None else max(1, m - 1)
        n = min(cfg.start_tokens if cfg.start_tokens is not None else n_max, n_max)
        steps = cfg.steps
        history: list[_Attempt] = []
        attempt = self.optimise(self.random_tokens(n), steps)
        history.append(attempt)
        while not attempt.success and n < n_max and not self.out_of_time():
            grow = min(cfg.grow_tokens, n_max - n)
            n += grow
            steps = int(round(steps * cfg.steps_growth))
            attempt = self.optimise(torch.cat([self.random_tokens(grow), attempt.prompt]), steps)
            history.append(attempt)
        if not attempt.success:
            return None, history
        found = attempt
        # Shrink from what the prompt's text encodes to: the length that counts.
        while len(found.verified_ids) > 1 and not self.out_of_time():
            start = torch.as_tensor(found.verified_ids, device=found.prompt.device)
            attempt = self.optimise(self.drop_one(start), cfg.steps)
            history.append(attempt)
            if not attempt.success or len(attempt.verified_ids) >= len(found.verified_ids):
                break  # failed, or re-encoding gave a prompt no shorter than before: no progress
            found = attempt
        return found, history


def continuation_targets(model, records: Sequence[Record], *, prefix_tokens: int = 32, lengths: tuple[int, int] = (24, 32),
                         n: int | None = None, group: str | None = None, seed: int = 0) -> list[Record]:
    """ACR targets cut from documents: the ``L`` tokens after each document's first ``prefix_tokens``
    (the continuation an extraction test asks for), ``L`` drawn uniformly from ``lengths``.

    Documents too short for ``prefix_tokens + L`` tokens are skipped (the target needs them);
    of the rest, ``n`` are drawn with ``seed`` (all when None), in their original order. A
    target's ``meta`` keeps the document's ``duplication``, ``doc_id`` and ``group`` when given.
    """
    rng = np.random.default_rng(seed)
    ids = model.encode([r.text for r in records])
    want = rng.integers(lengths[0], lengths[1] + 1, size=len(records))
    fits = [i for i, (x, L) in enumerate(zip(ids, want)) if len(x) >= prefix_tokens + L]
    chosen = sorted(rng.choice(fits, size=min(n, len(fits)), replace=False).tolist()) if n is not None else fits
    out = []
    for i in chosen:
        rec = records[i]
        meta = {"doc_id": rec.id, **({"group": group} if group else {}),
                **({"duplication": rec.meta["duplication"]} if "duplication" in rec.meta else {})}
        text = model.decode(ids[i][prefix_tokens : prefix_tokens + int(want[i])])
        out.append(Record(id=rec.id, text=text, source=rec.source, line=rec.line, meta=meta))
    return out


def run_acr(model, records: Sequence[Record], *, config: ACRConfig = ACRConfig(),
            progress: Callable[[int], None] | None = None) -> RunResult:
    """The shortest prompt found for every target (a record's text) and its ACR.

    Args:
        model: An :class:`~lmaudit.models.hf.HFModel` (the search needs the embedding matrix
            and gradients).
        records: Targets; ``duplication`` and ``group`` fields, when present, give breakdowns.

    Returns:
        A :class:`RunResult` (unpacks as ``results, samples``): memorized rate with a bootstrap
        interval, ``n_success`` (targets with a prompt found) and ``acr_median`` over those,
        and the compute spent; one row per target, in order; and the provenance.
    """
    cfg = config
    allowed = allowed_tokens(model)
    targets = model.encode([r.text for r in records])
    rows: list[dict] = []
    spent = {"steps": 0, "forward_sequences": 0, "verifications": 0, "seconds": 0.0}
    for index, (rec, target) in enumerate(zip(records, targets)):
        row: dict = {"id": rec.id, "target": rec.text, "target_tokens": len(target)}
        row |= {k: rec.meta[k] for k in ("duplication", "group", "doc_id") if k in rec.meta}
        bos = 1 if cfg.bos and model.bos_token_id is not None else 0
        n_max = cfg.max_prompt_tokens if cfg.max_prompt_tokens is not None else max(1, len(target) - 1)
        if not target:
            row["error"] = "empty target"
        elif bos + n_max + len(target) > model.max_length:
            row["error"] = f"{n_max} prompt + {len(target)} target tokens exceed the context length {model.max_length}"
        if "error" in row:
            rows.append(row)
            continue
        started = time.time()
        deadline = started + cfg.max_seconds if cfg.max_seconds is not None else None
        search = _Search(model, target, cfg, allowed, seed=cfg.seed * 1_000_003 + index, deadline=deadline)
        found, history = search.run()
        seconds = time.time() - started
        row.update({
            "success": found is not None,
            "acr": len(target) / len(found.verified_ids) if found else None,
            "memorized": bool(found and len(target) / len(found.verified_ids) > 1),
            "prompt": found.verified_text if found else None,
            "prompt_tokens": len(found.verified_ids) if found else None,
            "steps": search.steps,
            "seconds": round(seconds, 3),
            "lengths": [{"n": a.n, "steps": a.steps, "success": a.success, "best_loss": round(a.best_loss, 4)}
                        for a in history],
            "max_prompt_tokens": n_max,
            "budget_exhausted": search.stopped_by_budget,
        })
        spent["steps"] += search.steps
        spent["forward_sequences"] += search.obj.forward_passes
        spent["verifications"] += search.verifications
        spent["seconds"] += seconds
        rows.append(row)
        if progress:
            progress(1)
    spent["seconds"] = round(spent["seconds"], 2)
    results = {**_summary(rows, cfg), "n_targets": len(rows), "n_errors": sum(1 for r in rows if "error" in r),
               "compute": {**spent, "threads": torch.get_num_threads(), "device": str(model.device),
                           "allowed_tokens": int(allowed.sum()), "vocabulary": int(len(allowed))}}
    for field in ("group", "duplication"):
        if any(field in r for r in rows):
            results[f"by_{field}"] = breakdown(rows, field, lambda group: _summary(group, cfg))
    provenance = {"model": model_provenance(model), "config": asdict(cfg), "decoding": "greedy", "seed": cfg.seed}
    return RunResult(results=results, samples=rows, provenance=provenance)


def _summary(rows: list[dict], cfg: ACRConfig) -> dict:
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return {"n": 0, "memorized_rate": None, "n_success": 0, "acr_median": None}
    memorized = [float(r["memorized"]) for r in ok]
    # Over the targets with a prompt only: a target without one has no ACR, not an ACR of 0.
    acrs = [r["acr"] for r in ok if r["acr"] is not None]
    return {"n": len(ok), "memorized_rate": float(np.mean(memorized)),
            "memorized_rate_ci": list(bootstrap_mean_ci(memorized, n_boot=1000, seed=cfg.seed)),
            "n_success": len(acrs), "acr_median": float(np.median(acrs)) if acrs else None,
            "seconds_mean": float(np.mean([r["seconds"] for r in ok]))}


def acr_to_dir(model, records: Sequence[Record], out: str | Path, *, config: ACRConfig = ACRConfig(),
               data: list[dict] | None = None, command: str = "acr", started: float | None = None,
               progress=None) -> dict:
    """:func:`run_acr`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    with RunWriter(out, command=command, started=started) as run:
        result = run_acr(model, records, config=config, progress=progress)
        run.samples(result.samples)
        summary = {k: result.results[k] for k in ("n", "memorized_rate", "n_success", "acr_median", "n_errors")}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=result.results)
