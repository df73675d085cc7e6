"""``lmaudit copying`` in Python: copying metrics over outputs paired with references by id."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from lmaudit.data import DataError, Record, align_by_id
from lmaudit.memorization.copying import CopyingConfig, copying_metrics
from lmaudit.memorization.nonliteral import EventJudge, KeywordEventJudge, character_copying, event_copying
from lmaudit.report.results import breakdown
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.stats import bootstrap_mean_ci, proportion_ci

NUMERIC = ("rouge_1_f1", "rouge_l_f1", "rouge_l_recall", "literal_rouge_l_f1", "lcs_chars", "lcs_words", "acs_words",
           "levenshtein_distance", "levenshtein_sim", "shingle_jaccard", "minhash_jaccard")


def run_copying(outputs: Sequence[Record], references: Sequence[Record], *,
                config: CopyingConfig = CopyingConfig(), event_judge: EventJudge | None = None) -> RunResult:
    """Every copying metric for each output against the reference with the same id.

    Non-literal copying is measured where the reference row carries it: ``characters``
    (a list of names, or of lists of aliases) and ``events`` (a list of event
    descriptions, judged by ``event_judge``, by default the approximate keyword judge);
    an output row's ``prompt`` field lists what the model was given, and names in it are
    not counted.

    An output or reference that carries an upstream error (``Record.error``, from
    ``read_records(..., carry_errors=True)``) has no text to compare: its pair becomes an
    error row (``id`` and ``error``, naming the file and line and giving the upstream error),
    counted in ``n_errors`` and in no metric.

    A pair's ``duplication`` (the reference's field, else the output's, when either has one)
    is kept in its row and gives the breakdown ``by_duplication``.

    Returns:
        A :class:`RunResult` (unpacks as ``results, samples``): ``n_pairs`` (the pairs
        measured), ``n_errors``; ``means`` of every numeric metric, each with its 95% percentile-bootstrap interval ``<metric>_ci`` (MUSE reports
        bootstrap intervals too, from scipy with 9,999 resamples; ``config.n_bootstrap`` here);
        ``verbmem`` (MUSE: 100 × mean ``rouge_l_f1``, meaningful unstemmed) with ``verbmem_ci``;
        the copy rates with their 95% Clopper-Pearson intervals and counts; ``definitions``
        (what each metric follows under ``config``); ``by_duplication`` (per level: ``n``,
        ``literal_copy_rate`` with its interval, mean ``rouge_l_f1`` and ``lcs_words``) when
        pairs carry a level; one sample row per output, in the outputs' order: ``id``,
        ``output`` and ``reference`` (the texts, so that a report needs only the run folder),
        ``duplication`` when known, and every metric of :func:`copying_metrics`, or ``id``
        and ``error`` for a pair with an upstream error; and the provenance.

    Raises:
        DataError: an output has no reference with its id, or a reference no output.
        ImportError: a stemmed metric is asked for and nltk is missing.
    """
    config.check_dependencies()
    pairs = align_by_id(outputs, [references])
    samples, ok = [], []
    for out, (ref,) in zip(outputs, pairs):
        upstream = out if out.error is not None else ref if ref.error is not None else None
        if upstream is not None:
            samples.append({"id": out.id, "error": f"upstream error ({upstream.source}:{upstream.line}): "
                                                   f"{upstream.error}"})
            continue
        # The texts travel with the metrics: a report shows the pair from the run folder alone.
        row = {"id": out.id, "output": out.text, "reference": ref.text}
        level = ref.meta.get("duplication", out.meta.get("duplication"))
        if level is not None:
            row["duplication"] = level
        row |= copying_metrics(out.text, ref.text, config)
        prompt = str(out.meta.get("prompt", ""))
        if "characters" in ref.meta:
            row.update(character_copying(out.text, _characters(ref), prompt=prompt))
        if "events" in ref.meta:
            row.update(event_copying(out.text, _events(ref), judge=event_judge))
        samples.append(row)
        ok.append(row)
    n = len(ok)
    copies = sum(s["literal_copy"] for s in ok)
    means: dict = {}
    for k in NUMERIC:
        values = [s[k] for s in ok]
        means[k] = float(np.mean(values)) if n else None
        means[f"{k}_ci"] = list(bootstrap_mean_ci(values, n_bootstrap=config.n_bootstrap, seed=config.seed)) if n else None
    results = {
        "n_pairs": n,
        "n_errors": len(samples) - n,
        "definitions": config.definitions(),
        "means": means,
        "verbmem": 100 * means["rouge_l_f1"] if n else None,
        "verbmem_ci": [100 * x for x in means["rouge_l_f1_ci"]] if n else None,
        "literal_copy_rate": copies / n if n else None,
        "literal_copy_rate_ci": list(proportion_ci(copies, n)) if n else None,
        "n_with_verbatim_spans": sum(1 for s in ok if s["verbatim_spans"]),
    }
    if any("duplication" in s for s in ok):
        results["by_duplication"] = breakdown(ok, "duplication", lambda group: _level_rates(group, config))
    for kind in ("character_copy", "event_copy"):
        flagged = [s[kind] for s in ok if kind in s]
        if flagged:
            results[f"{kind}_rate"] = sum(flagged) / len(flagged)
            results[f"{kind}_rate_ci"] = list(proportion_ci(sum(flagged), len(flagged)))
            results[f"n_with_{kind.split('_')[0]}s"] = len(flagged)
    if any("event_copy" in s for s in ok):
        judge = event_judge or KeywordEventJudge()
        results["event_judge"] = {"name": judge.name, "approximate": judge.approximate}
    # No model; the seed drives only the bootstrap (MinHash draws its permutations from a fixed seed).
    return RunResult(results=results, samples=samples, provenance={"config": asdict(config), "seed": config.seed})


def _level_rates(rows: list[dict], config: CopyingConfig) -> dict:
    """The literal copy rate and the mean ROUGE-L F1 and longest run of one duplication level."""
    copies = sum(r["literal_copy"] for r in rows)
    rouge = [r["rouge_l_f1"] for r in rows]
    return {"n": len(rows), "literal_copy_rate": copies / len(rows),
            "literal_copy_rate_ci": list(proportion_ci(copies, len(rows))),  # Clopper-Pearson
            "rouge_l_f1_mean": float(np.mean(rouge)),
            "rouge_l_f1_mean_ci": list(bootstrap_mean_ci(rouge, n_bootstrap=config.n_bootstrap, seed=config.seed)),
            "lcs_words_mean": float(np.mean([r["lcs_words"] for r in rows]))}


def _characters(ref: Record) -> list[list[str]]:
    value = ref.meta["characters"]
    if not isinstance(value, list) or not all(
            isinstance(c, str) or (isinstance(c, list) and c and all(isinstance(n, str) for n in c)) for c in value):
        raise DataError(f"{ref.source}:{ref.line}: field 'characters' must be a list of names or of lists of aliases")
    return [[c] if isinstance(c, str) else c for c in value]


def _events(ref: Record) -> list[str]:
    value = ref.meta["events"]
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise DataError(f"{ref.source}:{ref.line}: field 'events' must be a list of strings")
    return value


def copying_to_dir(outputs: Sequence[Record], references: Sequence[Record], out: str | Path, *,
                   config: CopyingConfig = CopyingConfig(), data: list[dict] | None = None,
                   command: str = "copying", started: float | None = None) -> dict:
    """:func:`run_copying`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    with RunWriter(out, kind="copying", command=command, started=started) as run:
        result = run_copying(outputs, references, config=config)
        run.samples(result.samples)
        r = result.results
        summary = {"n_pairs": r["n_pairs"], "literal_copy_rate": r["literal_copy_rate"],
                   "rouge_l_f1": r["means"]["rouge_l_f1"], "lcs_words": r["means"]["lcs_words"],
                   "n_errors": r["n_errors"]}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=r)
