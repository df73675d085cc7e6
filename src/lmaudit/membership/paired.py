"""Paired tests (STAMP): is the published version of each item more likely than its private twins?

An owner publishes one version of each item and keeps k others with the same content in
other words (rephrasings), never released. A model that did not train on the published
versions has no reason to prefer them; a model that did gives them a lower loss. Each
item is its own control, so the test needs no separate non-member set and is immune to
distribution shift between sets.

Per item i: d_i = mean_j L(private_ij) − L(public_i) (higher = the public version is
favoured, i.e. evidence of training). Tests: a one-sided paired t-test (H1: mean d > 0,
i.e. ``ttest_rel(public, mean_private, alternative="less")``) and a Wilcoxon signed-rank
test, which does not assume normal differences. Rows are aligned by id end to end: a
missing partner or an unscorable version is an error, never a dropped row (STAMP drops
empty rows, which misaligns the pairs).

Where this differs from STAMP's code, deliberately: L is the mean loss per token
(log-perplexity), not the perplexity, whose heavy right tail hurts a t-test; nothing is
clipped (STAMP clips 2.5% per side; the Wilcoxon test is the robust check instead); and
zero differences are split between the signs (``zero_method="zsplit"``) rather than
dropped, so ``n_items`` is what both tests saw.

Paper: Rastogi et al. 2025, "STAMP Your Content: Proving Dataset Membership via
Watermarked Rephrasings" (ICML); code at https://github.com/codeboy5/stamp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats as st

from lmaudit.data import Record, align_by_id
from lmaudit.engines import on_engine
from lmaudit.models.base import LanguageModel, ScoringPolicy
from lmaudit.report.results import model_provenance
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.scoring.cache import ScoreCache, open_cache
from lmaudit.scoring.score import score_records


def paired_tests(public_loss: np.ndarray, private_loss: np.ndarray) -> dict:
    """The paired t-test and Wilcoxon signed-rank test on d = mean private loss − public loss.

    Args:
        public_loss: (n,) loss of each item's public version.
        private_loss: (n, k) losses of its k private versions.
    """
    d = private_loss.mean(axis=1) - public_loss
    t = st.ttest_rel(public_loss, private_loss.mean(axis=1), alternative="less")
    w = st.wilcoxon(d, alternative="greater", zero_method="zsplit")
    sd = d.std(ddof=1) if len(d) > 1 else float("nan")
    return {
        "n_items": int(len(d)),
        "mean_difference": float(d.mean()),
        "n_zero_differences": int((d == 0).sum()),
        "effect_size": {"d_z": float(d.mean() / sd) if sd > 0 else None},
        "paired_t": {"statistic": float(t.statistic), "df": int(len(d) - 1), "p_value": float(t.pvalue),
                     "alternative": "public loss < mean private loss"},
        "wilcoxon": {"statistic": float(w.statistic), "p_value": float(w.pvalue),
                     "alternative": "differences (private - public) centred above 0"},
        "p_value": float(t.pvalue),
    }


PairedResult = RunResult


def run_paired_test(model: LanguageModel, public: Sequence[Record], private: Sequence[Sequence[Record]], *,
                    policy: ScoringPolicy = ScoringPolicy(), batch_size: int = 16, cache: ScoreCache | None = None,
                    progress=None, engine=None) -> PairedResult:
    """Score every version of every item once and run the paired tests.

    ``engine``: where the scoring runs: None (the model as given), "local", "ray", or an
    engine object (:mod:`lmaudit.engines`).

    Raises:
        DataError: ids do not line up across the files.
        ValueError: a version could not be scored (the message lists which).
    """
    if not private:
        raise ValueError("a paired test needs at least one private version")
    model = on_engine(model, engine)
    partners = align_by_id(public, private)
    flat = list(public) + [p for row in partners for p in row]
    scores = score_records(model, flat, policy=policy, batch_size=batch_size, cache=cache, progress=progress)
    bad = [(rec, s.error) for rec, s in zip(flat, scores) if s.error]
    if bad:
        listed = "; ".join(f"{r.source}:{r.line} id {r.id!r}: {e}" for r, e in bad[:5])
        raise ValueError(f"{len(bad)} versions could not be scored, so their items cannot be paired: {listed}")
    n, k = len(public), len(private)
    public_loss = np.array([-s.logprob_mean for s in scores[:n]])
    private_loss = np.array([-s.logprob_mean for s in scores[n:]]).reshape(n, k)
    if n < 2:
        raise ValueError("a paired test needs at least 2 items")
    results = paired_tests(public_loss, private_loss)
    results["n_private_versions"] = k
    samples = [{"id": rec.id, "loss_public": float(public_loss[i]), "loss_private": private_loss[i].tolist(),
                "difference": float(private_loss[i].mean() - public_loss[i])} for i, rec in enumerate(public)]
    provenance = {"model": model_provenance(model), "policy": policy.resolved(model.max_length).to_dict(),
                  "batch_size": batch_size, "seed": None}  # nothing random: scoring and both tests are deterministic
    return PairedResult(results=results, samples=samples, provenance=provenance)


def paired_test_to_dir(model, public, private, out: str | Path, *, data: list[dict] | None = None,
                       command: str = "paired-test", started: float | None = None,
                       cache_path: str | Path | None = None, **kwargs) -> dict:
    """:func:`run_paired_test`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    with RunWriter(out, kind="paired-test", command=command, started=started) as run:
        with open_cache(cache_path) as cache:
            result = run_paired_test(model, public, private, cache=cache, **kwargs)
        run.samples(result.samples)
        r = result.results
        summary = {"n_items": r["n_items"], "n_private_versions": r["n_private_versions"], "p_value": r["p_value"],
                   "wilcoxon_p_value": r["wilcoxon"]["p_value"], "mean_difference": r["mean_difference"]}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=r)
