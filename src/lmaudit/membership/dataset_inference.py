"""Dataset inference (Maini et al. 2024): did the model train on this *set* of documents?

Single documents are hard to call; many weak per-document signals, aggregated, can give a
p-value for a whole set. The suspect set (documents an owner believes were trained on) is
compared with a validation set (documents from the same distribution known not to be).
Both are split into halves A and B. On A only: per-feature clipping bounds, normalisation,
and a regularised logistic model that learns which combination of attack scores tells
suspect from validation. On B: the model scores every document, and a one-sided Welch
t-test asks whether suspect documents score higher. Nothing fitted ever sees B, so under
the null (the model treats both sets alike) the p-value is valid; the built-in null
calibration checks that empirically by running the whole procedure on known non-members
against each other: two disjoint sets of the reported sizes drawn from the validation set
and ``null_pool`` (extra known non-members) where they hold enough documents, else the
validation set split once in the reported ratio, and results.json says which size it
checked.

Deviations from the public code (pratyushmaini/llm_dataset_inference), each deliberate:
normalisation statistics come from A only (the code computes them on sets including B);
rows are never deleted per feature (outlier removal there misaligns columns; we clip);
the classifier is L2-regularised; the test is Welch's, not the pooled-variance t-test.
And the direction is real: every lmaudit attack score is oriented higher = member, so the
classifier's weights are constrained to be non-negative. An unconstrained classifier
learns whichever direction separates the sets on A, so a suspect set that looks *less*
like training data than the validation set would also give a tiny p-value, which is
evidence of a difference between the sets, not of training on the suspect one.

Paper: Maini et al. 2024, "LLM Dataset Inference: Did you train on my dataset?"
(NeurIPS), https://arxiv.org/abs/2406.06443.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.membership.base import AttackScores
from lmaudit.membership.blind import run_blind_baselines
from lmaudit.membership.dataset_test import dataset_inference_test, null_calibration, p_value_curve
from lmaudit.membership.run import models_on_engine, run_provenance, select_and_score
from lmaudit.models.base import LanguageModel, ScoringPolicy
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.scoring.cache import ScoreCache, open_cache


@dataclass(frozen=True)
class DatasetInferenceConfig:
    """Options of a dataset-inference run.

    Attributes:
        attacks: Attacks whose scores are the features (as in :class:`MembershipConfig`;
            None: the logits-only attacks, lowercase, and reference attacks when given).
        alpha: Significance level for the decision and the null calibration.
        clip: Fraction clipped at each end of every feature (bounds from A).
        l2_strength: Strength λ of the logistic model's L2 penalty, (λ/2)‖w‖² + Σ log-loss;
            larger means stronger. It is 1/C in scikit-learn's terms (the default, 1, is
            scikit-learn's default C = 1).
        nonnegative: Constrain the feature weights to be ≥ 0, so only evidence in the
            member direction counts (see the module docstring). False: the paper's
            unconstrained classifier, which tests for any difference between the sets.
        permutation: Also run a permutation test on B (exact when small enough).
        n_permutations: Resamples of the permutation test when it is not exact.
        null_trials: Validation-vs-validation runs for the empirical false-positive rate (at
            the reported sizes when the validation set and ``null_pool`` allow it).
        curve_sizes: Documents per set at which the p-value curve is drawn.
        curve_draws: Random subsets of B per curve size (the median p-value is reported).
        recall_shots: Validation documents drawn as ReCaLL's prefix when it runs.
        shift_threshold: Blind-baseline AUC that flags a distribution shift between the sets.
        seed: Seeds the A/B split, the null trials, the curve and any attack randomness.
    """

    attacks: Sequence[str] | str | None = None
    alpha: float = 0.05
    clip: float = 0.025
    l2_strength: float = 1.0
    nonnegative: bool = True
    permutation: bool = False
    n_permutations: int = 10_000
    null_trials: int = 100
    curve_sizes: Sequence[int] = (2, 5, 10, 20, 50, 100, 200, 500, 1000)
    curve_draws: int = 20
    recall_shots: int = 5
    shift_threshold: float = 0.6
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.l2_strength > 0:
            raise ValueError(f"l2_strength must be > 0 (1/C of scikit-learn), got {self.l2_strength!r}")
        if not 0 < self.alpha < 1 or not 0 <= self.clip < 0.5:
            raise ValueError(f"need 0 < alpha < 1 and 0 <= clip < 0.5, got alpha={self.alpha!r}, clip={self.clip!r}")


def feature_matrix(outputs: dict, n: int) -> tuple[np.ndarray, list[str]]:
    """(n, F) attack scores; NaN where an attack could not score a document."""
    names = list(outputs)
    return np.column_stack([outputs[k].values for k in names]) if names else np.zeros((n, 0)), names


DatasetInferenceResult = RunResult


def check_null_pool(suspect: Sequence[Record], validation: Sequence[Record], pool: Sequence[Record]) -> None:
    """Refuse a null pool that shares a text with the suspect or validation set, or repeats one.

    Raises:
        ValueError: naming the first such pool documents (id and line).
    """
    def where(r: Record) -> str:
        return f"{r.id} (line {r.line})" if r.line is not None else str(r.id)

    seen = {r.text for r in suspect} | {r.text for r in validation}
    clash = [where(r) for r in pool if r.text in seen]
    if clash:
        raise ValueError(f"null_pool documents also in the suspect or validation set ({', '.join(clash[:5])}"
                         f"{' …' if len(clash) > 5 else ''}): a copy on both sides would flatter the null calibration")
    first: dict[str, Record] = {}
    repeats = [f"{where(r)} repeats {where(first[r.text])}" for r in pool if first.setdefault(r.text, r) is not r]
    if repeats:
        raise ValueError(f"null_pool documents repeated in the pool ({', '.join(repeats[:5])}"
                         f"{' …' if len(repeats) > 5 else ''}): two copies could sit on both sides of a null trial")


def run_dataset_inference(
    model: LanguageModel,
    suspect: Sequence[Record],
    validation: Sequence[Record],
    *,
    config: DatasetInferenceConfig = DatasetInferenceConfig(),
    reference_model: LanguageModel | Sequence[LanguageModel] | None = None,
    reference_corpus: Sequence[Record] | None = None,
    recall_prefix: Sequence[Record] | None = None,
    perturber=None,
    null_pool: Sequence[Record] | None = None,
    policy: ScoringPolicy = ScoringPolicy(),
    batch_size: int = 16,
    cache: ScoreCache | None = None,
    on_pass=None,
    engine=None,
) -> DatasetInferenceResult:
    """Test whether ``model`` trained on ``suspect`` more than on ``validation``.

    Documents some feature could not be scored for are left out of the test and listed
    in ``excluded`` with the reason; a feature that no document could be scored for is
    dropped and listed in ``dropped_features``.

    ``null_pool``: more documents known not to be in the training data, from the
    validation set's distribution, used only by the null calibration. Together with the
    validation set they must hold suspect + validation documents for the calibration to
    check the test at the size it is reported at; they never enter the reported test.

    ``engine``: where the scoring passes run, for the model and every reference model (see
    :func:`lmaudit.membership.run.run_membership`).
    """
    model, reference_model = models_on_engine(model, reference_model, engine)
    pool_records, validation_given = list(null_pool or []), list(validation)
    check_null_pool(suspect, validation, pool_records)
    scored = select_and_score(model, suspect, validation, attacks=config.attacks, recall_shots=config.recall_shots,
                              seed=config.seed, second_name="validation", reference_model=reference_model,
                              reference_corpus=reference_corpus, recall_prefix=recall_prefix, perturber=perturber,
                              policy=policy, batch_size=batch_size, cache=cache, on_pass=on_pass)
    attacks, suspect, validation, excluded = scored.attacks, scored.first, scored.second, scored.excluded
    outputs, timings = scored.outputs, scored.timings
    if pool_records:
        # Scored in a pass of their own, so adding a pool never changes the reported test
        # (ReCaLL's prefix is drawn from the validation set alone, then reused here).
        kept = {id(r) for r in validation}
        prefix = recall_prefix if recall_prefix else [r for r in validation_given if id(r) not in kept]
        pool_perturber = perturber
        if perturber is None and any(a.name == "neighbourhood" for a in attacks):
            # The default word swaps draw replacements from the words of the texts perturbed
            # together: the pool's pass gets the main pass's words, so a pool document's
            # neighbours are drawn as a validation document's are.
            from lmaudit.membership.perturb import WordSwapPerturber, word_counts

            main = [r.text for r, s in zip(suspect + validation, scored.scores) if s.error is None]
            pool_perturber = WordSwapPerturber(pool=word_counts(main))
        extra = select_and_score(model, [], pool_records, attacks=attacks, recall_shots=0,
                                 seed=config.seed, second_name="null_pool", reference_model=reference_model,
                                 reference_corpus=reference_corpus, recall_prefix=prefix, perturber=pool_perturber,
                                 policy=policy, batch_size=batch_size, cache=cache, on_pass=on_pass)
        pool_records, excluded = extra.second, excluded + extra.excluded
        outputs = {k: AttackScores(np.r_[o.values, extra.outputs[k].values], o.errors + extra.outputs[k].errors, o.info)
                   for k, o in outputs.items()}
        timings = {k: timings.get(k, 0.0) + extra.timings.get(k, 0.0) for k in {*timings, *extra.timings}}
    records = suspect + validation + pool_records
    sets = ["suspect"] * len(suspect) + ["validation"] * len(validation) + ["null_pool"] * len(pool_records)
    x, names = feature_matrix(outputs, len(records))
    usable = ~np.all(np.isnan(x[: len(suspect) + len(validation)]), axis=0)  # the pool decides nothing
    dropped = [n for n, ok in zip(names, usable) if not ok]
    x, names = x[:, usable], [n for n, ok in zip(names, usable) if ok]
    if not names:
        raise ValueError("no attack produced a score for any document")
    complete = ~np.any(np.isnan(x), axis=1)
    for i in np.flatnonzero(~complete):
        reasons = {k: outputs[k].errors[i] for k in names if outputs[k].errors[i]}
        excluded.append({"id": records[i].id, "set": sets[i], "reason": "unscored features", "errors": reasons})
    is_s = np.array([s == "suspect" for s in sets])
    is_v = np.array([s == "validation" for s in sets])
    s_idx, v_idx = np.flatnonzero(is_s & complete), np.flatnonzero(is_v & complete)

    start = time.perf_counter()
    # No Python warning here: results.json and the terminal carry classifier_learned_nothing.
    test = dataset_inference_test(x[s_idx], x[v_idx], seed=config.seed, clip=config.clip,
                                  l2_strength=config.l2_strength, nonnegative=config.nonnegative,
                                  permutation=config.permutation, n_permutations=config.n_permutations, warn=False)
    # Known non-members: the scored validation documents, then the null pool's.
    pool_idx = np.flatnonzero(~is_s & complete)
    null = null_calibration(x[pool_idx], sizes=(len(s_idx), len(v_idx)), trials=config.null_trials, alpha=config.alpha,
                            seed=config.seed, clip=config.clip, l2_strength=config.l2_strength,
                            nonnegative=config.nonnegative)
    curve = p_value_curve(test["b_scores"]["suspect"], test["b_scores"]["validation"], sizes=config.curve_sizes,
                          draws=config.curve_draws, alpha=config.alpha, seed=config.seed)
    timings["test"] = time.perf_counter() - start
    # The null calibration cannot see a shift between suspect and validation documents
    # (e.g. suspect texts chosen by length, Maini et al.'s >= 800 words against >= 10):
    # the same model-free classifiers as the membership command look for one.
    start = time.perf_counter()
    blind = run_blind_baselines([records[i].text for i in s_idx], [records[i].text for i in v_idx], seed=config.seed,
                                threshold=config.shift_threshold)
    timings["blind_baselines"] = time.perf_counter() - start

    results = {
        "p_value": test["p_value"],
        "significant": test["p_value"] < config.alpha,
        "alpha": config.alpha,
        "n_suspect": int(len(s_idx)),
        "n_validation": int(len(v_idx)),
        "test": {k: test[k] for k in ("test", "alternative", "statistic", "df", "p_value", "note") if k in test},
        "classifier_learned_nothing": test["classifier_learned_nothing"],
        "effect_size": {"cohens_d": test["effect_size"]},
        "permutation": test.get("permutation"),
        "feature_weights": dict(zip(names, test["weights"])),
        "intercept": test["intercept"],
        "features": {a.label: a.describe() for a in attacks if a.label in names},
        "dropped_features": dropped,
        "split": {"a": test["n_a"], "b": test["n_b"]},
        "null_calibration": null,  # with each trial's p-value: a report plots their distribution
        "p_value_curve": curve,
        "blind_baselines": blind.pop("baselines"),
        "distribution_shift_flag": blind.pop("distribution_shift_flag"),
        "distribution_shift": blind,
        "excluded": excluded,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    half = {}
    for key, rows in test["rows"].items():
        base = s_idx if key.startswith("suspect") else v_idx
        for j, r in enumerate(rows):
            half[int(base[r])] = (key.split("_")[1].upper(), test["b_scores"][key.split("_")[0]][j] if key.endswith("_b") else None)
    samples = []
    for i, rec in enumerate(records):
        h, b_score = half.get(i, (None, None))
        samples.append({"id": rec.id, "set": sets[i], "half": h, "classifier_score": None if b_score is None else float(b_score),
                        "features": {n: (None if np.isnan(x[i, k]) else float(x[i, k])) for k, n in enumerate(names)},
                        **({"error": "excluded: unscored features"} if not complete[i] else {})})
    # Documents excluded by design (ReCaLL's prefix) have no row; an error row is a document
    # that could not be scored: left out of the test, or, for a null-pool row, of the null
    # calibration only (counted apart: the test never sees the pool).
    results["n_errors"] = sum(1 for row in samples if "error" in row and row["set"] != "null_pool")
    results["n_pool_errors"] = sum(1 for row in samples if "error" in row and row["set"] == "null_pool")
    provenance = run_provenance(model, config, policy=policy, batch_size=batch_size, outputs=outputs,
                                reference_model=reference_model)
    return DatasetInferenceResult(results=results, samples=samples, provenance=provenance)


def dataset_inference_to_dir(model, suspect, validation, out: str | Path, *, data: list[dict] | None = None,
                             command: str = "dataset-inference", started: float | None = None,
                             cache_path: str | Path | None = None, **kwargs) -> dict:
    """:func:`run_dataset_inference`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    with RunWriter(out, kind="dataset-inference", command=command, started=started) as run:
        with open_cache(cache_path) as cache:
            result = run_dataset_inference(model, suspect, validation, cache=cache, **kwargs)
        run.samples(result.samples)
        r = result.results
        summary = {"p_value": r["p_value"], "significant": r["significant"], "n_suspect": r["n_suspect"],
                   "n_validation": r["n_validation"], "distribution_shift_flag": r["distribution_shift_flag"],
                   "classifier_learned_nothing": r["classifier_learned_nothing"],
                   "null_false_positive_rate": r["null_calibration"]["false_positive_rate"],
                   "null_at_reported_size": r["null_calibration"]["at_reported_size"], "n_errors": r["n_errors"],
                   "n_pool_errors": r["n_pool_errors"]}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=r)
