"""Score records and write the run's files: samples.jsonl, tokens.parquet, results.json."""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from lmaudit.data import DataError, Record, RecordFile
from lmaudit.engines import on_engine
from lmaudit.models.base import ScoringPolicy
from lmaudit.report.results import model_provenance
from lmaudit.report.run import RunWriter
from lmaudit.scoring.cache import open_cache
from lmaudit.scoring.score import CHUNK_DOCS, DocScore, batched, score_stream


class Summary:
    """The run's figures, gathered a batch of scores at a time: only one float per scored
    document is kept (for the mean of per-document losses), never the token statistics."""

    def __init__(self) -> None:
        self.n_rows = self.n_tokens = self.n_truncated = self.n_windowed = self.n_from_cache = 0
        self.logprob_sum = 0.0
        self.doc_losses = array("d")

    def add(self, scores: Iterable[DocScore]) -> None:
        for s in scores:
            self.n_rows += 1
            self.n_from_cache += s.from_cache  # the rest were computed by this run
            if s.error is not None:
                continue
            self.n_tokens += s.n_tokens
            self.logprob_sum += s.logprob_sum
            self.doc_losses.append(-s.logprob_mean)
            self.n_truncated += bool(s.n_truncated)
            self.n_windowed += s.n_windows > 1

    def result(self) -> dict:
        n_scored = len(self.doc_losses)
        return {
            "n_rows": self.n_rows,
            "n_scored": n_scored,
            "n_errors": self.n_rows - n_scored,
            "n_tokens": self.n_tokens,
            # Token-weighted mean loss and the mean of per-document losses: both are reported
            # in the literature, and they differ when document lengths vary.
            "mean_doc_loss": float(np.mean(self.doc_losses)) if n_scored else None,
            "token_loss": float(-self.logprob_sum / self.n_tokens) if self.n_tokens else None,
            "n_truncated_rows": self.n_truncated,
            "n_windowed_rows": self.n_windowed,
            "n_from_cache": self.n_from_cache,
        }


def summarize(scores: Sequence[DocScore]) -> dict:
    """The summary of a finished list of scores (:class:`Summary` over all of them)."""
    summary = Summary()
    summary.add(scores)
    return summary.result()


def score_to_dir(
    model,
    records: Iterable[Record],
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
    engine=None,
    chunk_docs: int = CHUNK_DOCS,
) -> dict:
    """Score ``records`` and write the run's files into ``out``.

    Any results.json already in ``out`` is removed first, so until this run finishes the
    directory never claims to hold a complete result.

    Records are scored ``chunk_docs`` at a time (:func:`score_stream`) and each chunk's rows
    are appended to samples.jsonl and tokens.parquet as it finishes, so memory holds one
    chunk and a float per document, whatever the input's size: pass a
    :class:`lmaudit.data.RecordFile` (or, on the local engine, any iterable) to stream a file
    larger than memory. The Ray engine streams a RecordFile (its workers read it); any other
    iterable it takes whole.

    Args:
        data: Provenance entries of the input files; an entry whose ``n_rows`` is None (a
            file streamed as it was scored) gets the number of rows scored.
        started: A ``time.time()`` value, so the recorded wall time can count model loading
            and data reading done before.
        engine: Where the scoring runs: None or "local" (here), "ray", or an engine object
            (:mod:`lmaudit.engines`). Results are the local engine's within float rounding.

    Returns:
        The content written to results.json.
    """
    model = on_engine(model, engine)
    with RunWriter(out, kind="score", command=command, started=started) as run:
        resolved = policy.resolved(model.max_length)  # fail on a bad policy before any work
        summary = Summary()
        with (open_cache(cache_path) as cache, run.streamed("samples") as samples,
              run.streamed("tokens", "tokens") as tokens):
            scores = score_stream(model, records, policy=policy, batch_size=batch_size, cache=cache,
                                  progress=progress, chunk_docs=chunk_docs)
            for batch in batched(scores, chunk_docs):
                samples.write(s.row() for s in batch)
                tokens.write(batch)
                summary.add(batch)
        figures = summary.result()
        if isinstance(records, RecordFile) and records.rows not in (None, figures["n_rows"]):
            raise DataError(f"{records.path}: {records.rows} rows when checked, {figures['n_rows']} when scored: "
                            "the file changed during the run")
        data = [{**d, "n_rows": figures["n_rows"]} if d.get("n_rows", 0) is None else d for d in data or []]
        provenance = {"model": model_provenance(model), "policy": resolved.to_dict(), "batch_size": batch_size,
                      "data": data, "seed": seed}
        return run.finish(summary=figures, provenance=provenance)

