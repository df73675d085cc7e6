"""Score records and write the run's files: samples.jsonl, tokens.parquet, results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.models.base import ScoringPolicy
from lmaudit.report.results import model_provenance
from lmaudit.report.run import RunWriter
from lmaudit.scoring.cache import open_cache
from lmaudit.scoring.score import DocScore, score_records


def summarize(scores: Sequence[DocScore]) -> dict:
    ok = [s for s in scores if s.error is None]
    n_tokens = int(sum(s.n_tokens for s in ok))
    return {
        "n_rows": len(scores),
        "n_scored": len(ok),
        "n_errors": len(scores) - len(ok),
        "n_tokens": n_tokens,
        # Token-weighted mean loss and the mean of per-document losses: both are reported
        # in the literature, and they differ when document lengths vary.
        "mean_doc_loss": float(np.mean([-s.logprob_mean for s in ok])) if ok else None,
        "token_loss": float(-sum(s.logprob_sum for s in ok) / n_tokens) if n_tokens else None,
        "n_truncated_rows": sum(1 for s in ok if s.n_truncated),
        "n_windowed_rows": sum(1 for s in ok if s.n_windows > 1),
        "n_from_cache": sum(1 for s in scores if s.from_cache),  # the rest were computed by this run
    }


def score_to_dir(
    model,
    records: Sequence[Record],
    out: str | Path,
    *,
    policy: ScoringPolicy = ScoringPolicy(),
    batch_size: int = 16,
    cache_path: str | Path | None = None,
    data: list[dict] | None = None,
    command: str = "score",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    started: float | None = None,
) -> dict:
    """Score ``records`` and write the run's files into ``out``.

    Any results.json already in ``out`` is removed first, so until this run finishes the
    directory never claims to hold a complete result.

    ``started`` (a ``time.time()`` value) lets the caller count model loading and data
    reading in the recorded wall time.

    Returns:
        The content written to results.json.
    """
    with RunWriter(out, kind="score", command=command, started=started) as run:
        resolved = policy.resolved(model.max_length)  # fail on a bad policy before any work
        with open_cache(cache_path) as cache:
            scores = score_records(model, records, policy=policy, batch_size=batch_size, cache=cache,
                                   progress=progress)
        run.samples(s.row() for s in scores)
        run.token_table(scores)
        provenance = {"model": model_provenance(model), "policy": resolved.to_dict(), "batch_size": batch_size,
                      "data": data or [], "seed": seed}
        return run.finish(summary=summarize(scores), provenance=provenance)
