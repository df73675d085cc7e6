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
  By default the search follows the paper's order: start at ``start_tokens`` (5); on failure
  add ``grow_tokens`` random tokens in front of the best prompt so far (the optimised tokens
  stay next to the target) with ``steps_growth``× the steps, up to the longest prompt that can
  still show memorization (one token shorter than the target); after the first success,
  shrink: drop the one token whose removal raises the loss least (all n tried, in batches),
  optimise from there, and stop at the first length that fails. With ``start_tokens=None``
  the search starts at that longest prompt and only shrinks: a target that is not memorized
  then costs one length, but the walk down stalls at longer prompts than growing finds.
- Any candidate whose teacher-forced greedy decoding already reproduces the target is taken,
  even if another candidate has a lower loss.
- ``patience`` gives a length up once its loss stops improving.

Both orders were compared on the testbed's targets (``benchmarks/bench_acr.py``, figures in
benchmarks/README.md): at the demo's budget growing found the shorter prompt for 12 of 20
members and shrinking for 7 (growing spent 11% more GCG steps), at the paper's budget for 2
of 3 and 1; on non-members growing found the shorter prompt for 7 of 20 and shrinking for 1,
at 3.5× the steps. ACR asks for the shortest prompt, so the default is the order that finds
shorter ones. The search itself is :mod:`lmaudit.memorization.gcg`; this module
picks targets, runs it per target and reports. Its budget is in steps (``steps``,
``patience``), so a result does not depend on the machine's load; ``max_seconds`` is a
safety net whose stops are reported as inconclusive.

A search takes minutes per target, so each finished target is saved as it finishes in an
:class:`ACRCache` (SQLite, one committed transaction per target), keyed by a content hash of
everything that decides its result: the model and tokenizer fingerprints, the target's token
ids and the BOS put before the prompt, the :class:`ACRConfig` and the target's own seed. A
killed run, re-run with the same inputs, serves the finished targets from it and searches only
the rest, with the same rows an uninterrupted run writes; a changed model, tokenizer, target
or option never reuses an entry. A target stopped by ``max_seconds`` is not saved: where that
stop fell depends on the machine's speed, not on the key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from lmaudit.data import Record
from lmaudit.memorization.gcg import LengthSearch
from lmaudit.models.base import require
from lmaudit.report.results import breakdown, model_provenance
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.stats import proportion_ci


@dataclass(frozen=True)
class ACRConfig:
    """The search and its compute budget.

    Attributes:
        start_tokens: Prompt length tried first, growing by ``grow_tokens`` until a prompt
            is found, then shrinking (the paper's order, and the default: it found shorter
            prompts than starting long, see the module doc). None: start at the longest,
            ``max_prompt_tokens``, and only shrink.
        grow_tokens: Tokens added after a failed length (when ``start_tokens`` is set).
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
        max_seconds: A safety net, not the budget: the budget is in steps, so that results
            do not depend on the machine's load. When this many seconds per target pass, the
            search stops, ``budget_exhausted`` is set, and a target without a prompt showing
            ACR > 1 by then is reported ``inconclusive`` (``memorized`` null), never "not
            memorized". None: no cap.
        bos: "prepend" puts the model's BOS (EOS for GPT-2-style models) before the prompt,
            not counted in its length, as the scoring policy does; "none" does not.
        seed: Seeds the random initial tokens and candidate draws (per target: seed and index).
    """

    start_tokens: int | None = 5
    grow_tokens: int = 5
    steps: int = 200
    steps_growth: float = 1.2
    top_k: int = 250
    n_candidates: int = 100
    patience: int | None = None
    max_prompt_tokens: int | None = None
    max_seconds: float | None = None
    bos: Literal["prepend", "none"] = "prepend"
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
        if self.bos not in ("prepend", "none"):
            raise ValueError(f"bos must be 'prepend' or 'none', got {self.bos!r}")


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


# Bump when the search or the rows it writes change, so entries from older code are never served.
ACR_VERSION = 1


def target_key(*, model_fp: str, tokenizer_fp: str, target: Sequence[int], prefix: Sequence[int],
               config: ACRConfig, seed: int) -> str:
    """Content hash of everything that decides one target's search result."""
    payload = {"model": model_fp, "tokenizer": tokenizer_fp, "target": list(target), "prefix": list(prefix),
               "config": asdict(config), "seed": seed, "acr": ACR_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ACRCache:
    """Finished targets' search results (JSON) in a SQLite file, keyed by :func:`target_key`.

    It may be the score cache's file (``cache.sqlite``): the two use separate tables. Each
    ``put`` is one transaction, so an entry is complete or absent even if the run is killed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS acr_targets (key TEXT PRIMARY KEY, result TEXT NOT NULL)")

    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT result FROM acr_targets WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, result: dict) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO acr_targets VALUES (?, ?)", (key, json.dumps(result)))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM acr_targets").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ACRCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_acr(model, records: Sequence[Record], *, config: ACRConfig = ACRConfig(), cache: ACRCache | None = None,
            progress: Callable[[int], None] | None = None) -> RunResult:
    """The shortest prompt found for every target (a record's text) and its ACR.

    Args:
        model: A backend with the ``prompt_search`` capability
            (:class:`~lmaudit.models.base.PromptSearch`); others are refused before any work.
        records: Targets; ``duplication`` and ``group`` fields, when present, give breakdowns.
        cache: Each target's result is read from it if there, else searched and saved as soon
            as it is found, so an interrupted run resumes where it stopped (see the module doc).
        progress: Called with 1 as each target is done (searched, served from the cache or an
            error row).

    Returns:
        A :class:`RunResult` (unpacks as ``results, samples``): memorized rate over the
        conclusive targets with its interval, ``n_inconclusive`` (stopped by the
        ``max_seconds`` safety net before any verdict), ``n_success`` (targets with a prompt
        found) and ``acr_median`` over those, ``n_cached`` (targets served from ``cache``), and
        the compute the rows cost (cached targets count what their search cost when it ran);
        one row per target, in order, whose ``status`` is ``memorized``, ``not_memorized``,
        ``inconclusive`` or ``error`` (with the reason in ``error``; not searched, in no
        rate); and the provenance. A row served from the cache equals the one its search
        wrote, ``seconds`` included.
    """
    cfg = config
    require(model, "prompt_search", audit="ACR")
    allowed = model.prompt_tokens()
    targets = model.encode([r.text for r in records])
    prefix = [model.bos_token_id] if cfg.bos == "prepend" and model.bos_token_id is not None else []
    fingerprints = (model.fingerprint(), model.tokenizer_fingerprint()) if cache is not None else None
    rows: list[dict] = []
    spent = {"steps": 0, "forward_sequences": 0, "verifications": 0, "seconds": 0.0}
    n_cached = 0
    for index, (rec, target) in enumerate(zip(records, targets)):
        row: dict = {"id": rec.id, "target": rec.text, "target_tokens": len(target)}
        row |= {k: rec.meta[k] for k in ("duplication", "group", "doc_id") if k in rec.meta}
        n_max = cfg.max_prompt_tokens if cfg.max_prompt_tokens is not None else max(1, len(target) - 1)
        if rec.error is not None:  # read_records(carry_errors=True): no target to search
            row["error"] = f"upstream error ({rec.source}:{rec.line}): {rec.error}"
        elif not target:
            row["error"] = "empty target"
        elif len(prefix) + n_max + len(target) > model.max_length:
            row["error"] = f"{n_max} prompt + {len(target)} target tokens exceed the context length {model.max_length}"
        if "error" in row:
            row["status"] = "error"
        else:
            seed = cfg.seed * 1_000_003 + index
            key, found = None, None
            if fingerprints is not None:
                key = target_key(model_fp=fingerprints[0], tokenizer_fp=fingerprints[1], target=target, prefix=prefix,
                                 config=cfg, seed=seed)
                found = cache.get(key)
                n_cached += found is not None
            if found is None:
                found = _search(model, target, cfg, allowed, seed=seed, n_max=n_max)
                if key is not None and not found["row"]["budget_exhausted"]:
                    cache.put(key, found)  # saved now: a run killed later keeps this target
            row |= found["row"]
            spent["steps"] += found["row"]["steps"]
            spent["seconds"] += found["row"]["seconds"]
            spent["forward_sequences"] += found["compute"]["forward_sequences"]
            spent["verifications"] += found["compute"]["verifications"]
        rows.append(row)
        if progress:
            progress(1)
    spent["seconds"] = round(spent["seconds"], 2)
    results = {**_summary(rows), "n_targets": len(rows), "n_errors": sum(1 for r in rows if "error" in r),
               "n_cached": n_cached,
               "compute": {**spent, "threads": torch.get_num_threads(), "device": str(getattr(model, "device", "")),
                           "allowed_tokens": int(allowed.sum()), "vocabulary": int(len(allowed))}}
    for field in ("group", "duplication"):
        if any(field in r for r in rows):
            results[f"by_{field}"] = breakdown(rows, field, _summary)
    provenance = {"model": model_provenance(model), "config": asdict(cfg), "decoding": "greedy", "seed": cfg.seed}
    return RunResult(results=results, samples=rows, provenance=provenance)


def _search(model, target: list[int], cfg: ACRConfig, allowed: torch.Tensor, *, seed: int, n_max: int) -> dict:
    """Search one target: ``{"row": its row's search fields, "compute": what it cost}`` (JSON-able:
    what the cache stores)."""
    started = time.time()
    deadline = started + cfg.max_seconds if cfg.max_seconds is not None else None
    search = LengthSearch(model, target, cfg, allowed, seed=seed, deadline=deadline)
    found, history = search.run()
    seconds = time.time() - started
    acr = len(target) / len(found.verified_ids) if found else None
    # A verified prompt with ACR > 1 is proof whenever the search stopped; "not memorized"
    # needs the search to have spent its step budget, which the time cap may prevent.
    status = "memorized" if acr is not None and acr > 1 else (
        "inconclusive" if search.stopped_by_budget else "not_memorized")
    row = {
        "status": status,
        "success": found is not None,
        "acr": acr,
        "memorized": None if status == "inconclusive" else status == "memorized",
        "prompt": found.verified_text if found else None,
        "prompt_tokens": len(found.verified_ids) if found else None,
        "steps": search.steps,
        "seconds": round(seconds, 3),
        "lengths": [{"n": a.n, "steps": a.steps, "success": a.success, "best_loss": round(a.best_loss, 4)}
                    for a in history],
        "max_prompt_tokens": n_max,
        "budget_exhausted": search.stopped_by_budget,
    }
    return {"row": row, "compute": {"forward_sequences": search.obj.forward_passes,
                                    "verifications": search.verifications}}


def _summary(rows: list[dict]) -> dict:
    searched = [r for r in rows if "error" not in r]
    # The rate is over targets with a verdict: an inconclusive one is neither.
    ok = [r for r in searched if r["status"] != "inconclusive"]
    # Over every target with a prompt, verdict or not: a target without one has no ACR, not an
    # ACR of 0, and a prompt found before the time cap is still a witness.
    acrs = [r["acr"] for r in searched if r["acr"] is not None]
    memorized = sum(bool(r["memorized"]) for r in ok)
    return {"n": len(ok), "n_inconclusive": len(searched) - len(ok),
            "memorized_rate": memorized / len(ok) if ok else None,
            "memorized_rate_ci": list(proportion_ci(memorized, len(ok))) if ok else None,  # Clopper-Pearson
            "n_success": len(acrs), "acr_median": float(np.median(acrs)) if acrs else None,
            "seconds_mean": float(np.mean([r["seconds"] for r in searched])) if searched else None}


def acr_to_dir(model, records: Sequence[Record], out: str | Path, *, config: ACRConfig = ACRConfig(),
               cache_path: str | Path | None = None, data: list[dict] | None = None, command: str = "acr",
               started: float | None = None, progress=None) -> dict:
    """:func:`run_acr` with an :class:`ACRCache` at ``cache_path`` (None: none), then write
    ``samples.jsonl`` and ``results.json`` into ``out``.

    Targets are saved to the cache as they finish; results.json is written only once every
    target is done, so a killed run leaves the cache and no results.json.
    """
    with RunWriter(out, kind="acr", command=command, started=started) as run:
        if cache_path is None:
            result = run_acr(model, records, config=config, progress=progress)
        else:
            with ACRCache(cache_path) as cache:
                result = run_acr(model, records, config=config, cache=cache, progress=progress)
        run.samples(result.samples)
        summary = {k: result.results[k] for k in ("n", "memorized_rate", "n_inconclusive", "n_success", "acr_median",
                                                  "n_errors", "n_cached")}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=result.results)
