"""``lmaudit copying`` in Python: copying metrics over outputs paired with references by id."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from lmaudit.data import Record, align_by_id
from lmaudit.memorization.copying import CopyingConfig, copying_metrics
from lmaudit.report.results import file_entry, fresh_run_dir, write_jsonl, write_results

NUMERIC = ("rouge_1_f1", "rouge_l_f1", "rouge_l_recall", "lcs_chars", "lcs_words", "acs_words", "levenshtein_sim",
           "minhash_jaccard")


def run_copying(outputs: Sequence[Record], references: Sequence[Record], *,
                config: CopyingConfig = CopyingConfig()) -> tuple[dict, list[dict]]:
    """Every copying metric for each output against the reference with the same id.

    Returns:
        (results, samples): per-metric means and the literal-copy rate with its 95%
        Clopper-Pearson interval; one sample row per output, in the outputs' order.

    Raises:
        DataError: an output has no reference with its id, or a reference no output.
    """
    from scipy.stats import binomtest

    pairs = align_by_id(outputs, [references])
    samples = [{"id": out.id, **copying_metrics(out.text, ref.text, config)} for out, (ref,) in zip(outputs, pairs)]
    n = len(samples)
    copies = sum(s["literal_copy"] for s in samples)
    ci = binomtest(copies, n).proportion_ci(confidence_level=0.95) if n else None
    results = {
        "n_pairs": n,
        "means": {k: float(np.mean([s[k] for s in samples])) if n else None for k in NUMERIC},
        "literal_copy_rate": copies / n if n else None,
        "literal_copy_rate_ci": [ci.low, ci.high] if ci else None,
        "n_with_verbatim_spans": sum(1 for s in samples if s["verbatim_spans"]),
    }
    return results, samples


def copying_to_dir(outputs: Sequence[Record], references: Sequence[Record], out: str | Path, *,
                   config: CopyingConfig = CopyingConfig(), data: list[dict] | None = None,
                   command: str = "copying", started: float | None = None) -> dict:
    """:func:`run_copying`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    started = started or time.time()
    results, samples = run_copying(outputs, references, config=config)
    out = fresh_run_dir(out)
    write_jsonl(out / "samples.jsonl", samples)
    summary = {"n_pairs": results["n_pairs"], "literal_copy_rate": results["literal_copy_rate"],
               "rouge_l_f1": results["means"]["rouge_l_f1"], "lcs_words": results["means"]["lcs_words"]}
    files = {"samples": file_entry(out / "samples.jsonl", rows=len(samples), relative_to=out)}
    return write_results(out / "results.json", command=command, provenance={"config": asdict(config), "data": data or []},
                         summary=summary, started=started, files=files, extra=results)
