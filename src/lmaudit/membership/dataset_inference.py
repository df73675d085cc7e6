"""Dataset inference (Maini et al. 2024): did the model train on this *set* of documents?

Single documents are hard to call; many weak per-document signals, aggregated, can give a
p-value for a whole set. The suspect set (documents an owner believes were trained on) is
compared with a validation set (documents from the same distribution known not to be).
Both are split into halves A and B. On A only: per-feature clipping bounds, normalisation,
and a regularised logistic model that learns which combination of attack scores tells
suspect from validation. On B: the model scores every document, and a one-sided Welch
t-test asks whether suspect documents score higher. Nothing fitted ever sees B, so under
the null (the model treats both sets alike) the p-value is valid; the built-in null
calibration checks that empirically by running the whole procedure on the validation set
split against itself.

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

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.membership.blind import run_blind_baselines
from lmaudit.membership.run import run_provenance, select_and_score
from lmaudit.models.base import LanguageModel, ScoringPolicy
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.scoring.cache import ScoreCache, open_cache
from lmaudit.stats import cohens_d, permutation_test, proportion_ci, welch_test


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
        null_trials: Validation-vs-validation runs for the empirical false-positive rate.
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


def _halves(n: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    order = list(range(n))
    rng.shuffle(order)
    return np.array(sorted(order[: n // 2]), dtype=int), np.array(sorted(order[n // 2 :]), dtype=int)


@dataclass
class Fitted:
    """Everything fitted on A: clip bounds, normalisation and the classifier."""

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    model: object = field(repr=False)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.clip(x, self.low, self.high) - self.mean) / self.std

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.model.decision_function(self.transform(x))


@dataclass
class NonNegativeLogistic:
    """L2-regularised logistic regression with weights ≥ 0 (the intercept is free).

    Minimises sklearn's objective, ½‖w‖² + C Σ_i log(1 + exp(−y_i (x_i·w + b))), with
    L-BFGS-B under bounds; where no bound is active it is the same model as sklearn's.
    """

    C: float = 1.0
    coef_: np.ndarray | None = None
    intercept_: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> "NonNegativeLogistic":
        from scipy.optimize import minimize
        from scipy.special import expit

        sign = 2 * np.asarray(y, dtype=np.float64) - 1  # (n,) in {-1, +1}
        f = x.shape[1]

        def objective(theta):
            w, b = theta[:f], theta[f]
            margin = sign * (x @ w + b)  # (n,)
            g = -self.C * sign * expit(-margin)  # d loss / d z
            return 0.5 * w @ w + self.C * np.logaddexp(0, -margin).sum(), np.r_[w + x.T @ g, g.sum()]

        res = minimize(objective, np.zeros(f + 1), jac=True, method="L-BFGS-B",
                       bounds=[(0, None)] * f + [(None, None)], options={"maxiter": 5000, "gtol": 1e-8})
        # Bounded weights end at 0 up to solver tolerance; a 1e-12 weight is a 0 weight, and
        # keeping it would turn "no evidence" into a t-test on rounding noise.
        w = np.where(res.x[:f] > 1e-8, res.x[:f], 0.0)
        self.coef_, self.intercept_ = w[None, :], res.x[f:]
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_[0] + self.intercept_[0]


def fit_on_a(suspect_a: np.ndarray, validation_a: np.ndarray, *, clip: float, l2_strength: float,
             nonnegative: bool = True) -> Fitted:
    """Clip bounds, normalisation and an L2 logistic model (suspect = 1, penalty strength
    ``l2_strength`` = 1/C), from A alone."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([suspect_a, validation_a])
    y = np.r_[np.ones(len(suspect_a)), np.zeros(len(validation_a))]
    low, high = np.quantile(x, clip, axis=0), np.quantile(x, 1 - clip, axis=0)
    clipped = np.clip(x, low, high)
    mean, std = clipped.mean(axis=0), clipped.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature carries nothing; keep it finite
    c = 1 / l2_strength
    model = NonNegativeLogistic(C=c) if nonnegative else LogisticRegression(C=c, max_iter=5000)
    model.fit((clipped - mean) / std, y)
    return Fitted(low, high, mean, std, model)


def dataset_inference_test(suspect: np.ndarray, validation: np.ndarray, *, seed: int | str = 0, clip: float = 0.025,
                           l2_strength: float = 1.0, nonnegative: bool = True, permutation: bool = False,
                           n_permutations: int = 10_000) -> dict:
    """The test on two feature matrices (rows = documents, columns = attack scores).

    Returns:
        ``p_value`` (Welch, one-sided: suspect scores higher on B), ``statistic``, ``df``,
        ``effect_size`` (Cohen's d on B), the fitted ``weights`` (on normalised features) and
        ``intercept``, the split sizes, the B scores and row indices, and with
        ``permutation`` a ``permutation`` entry.
    """
    if suspect.ndim != 2 or validation.ndim != 2 or suspect.shape[1] != validation.shape[1]:
        raise ValueError("suspect and validation must be (documents, features) with the same features")
    if min(len(suspect), len(validation)) < 4:
        raise ValueError("dataset inference needs at least 4 suspect and 4 validation documents (2 per half)")
    rng = random.Random(f"{seed}/halves")
    s_a, s_b = _halves(len(suspect), rng)
    v_a, v_b = _halves(len(validation), rng)
    fitted = fit_on_a(suspect[s_a], validation[v_a], clip=clip, l2_strength=l2_strength, nonnegative=nonnegative)
    score_s, score_v = fitted.score(suspect[s_b]), fitted.score(validation[v_b])
    if np.ptp(np.r_[score_s, score_v]) == 0:
        # Every weight is 0: A showed no evidence in the member direction, so B gets one
        # score for all and there is nothing to test. p = 1 keeps the test conservative.
        test = {"test": "welch_t", "alternative": "greater", "statistic": 0.0, "df": None, "p_value": 1.0,
                "note": "all feature weights are 0: no evidence in the member direction on half A"}
    else:
        test = welch_test(score_s, score_v, alternative="greater")
    out = {
        **test,
        "effect_size": cohens_d(score_s, score_v) if np.ptp(np.r_[score_s, score_v]) > 0 else 0.0,
        "weights": fitted.model.coef_[0].tolist(),
        "intercept": float(fitted.model.intercept_[0]),
        "n_a": {"suspect": len(s_a), "validation": len(v_a)},
        "n_b": {"suspect": len(s_b), "validation": len(v_b)},
        "b_scores": {"suspect": score_s, "validation": score_v},
        "rows": {"suspect_a": s_a, "suspect_b": s_b, "validation_a": v_a, "validation_b": v_b},
    }
    if permutation:
        out["permutation"] = permutation_test(score_s, score_v, alternative="greater", n_resamples=n_permutations,
                                              seed=hash_seed(seed))
    return out


def hash_seed(seed: int | str) -> int:
    return random.Random(f"{seed}/int").randrange(2**32)


def null_calibration(validation: np.ndarray, *, trials: int, alpha: float, seed: int, clip: float,
                     l2_strength: float, nonnegative: bool = True) -> dict:
    """The empirical false-positive rate: the whole test, run on the validation set split in two.

    Both halves come from the same distribution and neither is in the training data, so a
    valid test rejects in about ``alpha`` of the trials. Reported with a Clopper-Pearson
    95% interval.
    """
    p_values = []
    for t in range(trials):
        first, second = _halves(len(validation), random.Random(f"{seed}/null/{t}"))
        res = dataset_inference_test(validation[first], validation[second], seed=f"{seed}/null/{t}", clip=clip,
                                     l2_strength=l2_strength, nonnegative=nonnegative)
        p_values.append(res["p_value"])
    rejections = sum(p < alpha for p in p_values)
    return {"trials": trials, "alpha": alpha, "rejections": rejections,
            "false_positive_rate": rejections / trials if trials else None,
            "false_positive_rate_ci": list(proportion_ci(rejections, trials)) if trials else None,
            "p_values": p_values}


def p_value_curve(score_s: np.ndarray, score_v: np.ndarray, *, sizes: Sequence[int], draws: int, alpha: float,
                  seed: int) -> list[dict]:
    """Median Welch p-value over random subsets of n documents of each set's half B.

    The classifier behind the scores was fitted on all of half A, so this shows how many
    documents the *test* needs once a classifier exists, not what a run on n documents in
    all would give (Maini et al. plot the same quantity).
    """
    rng = np.random.default_rng(hash_seed(f"{seed}/curve"))
    curve = []
    for n in sizes:
        if n < 2 or n > min(len(score_s), len(score_v)):
            continue
        ps = [welch_test(rng.choice(score_s, n, replace=False), rng.choice(score_v, n, replace=False))["p_value"]
              for _ in range(draws)]
        ps = [p for p in ps if math.isfinite(p)]  # two identical pairs have no variance at n=2
        curve.append({"n": n, "median_p_value": float(np.median(ps)) if ps else None,
                      "rejection_rate": float(np.mean([p < alpha for p in ps])) if ps else None, "draws": len(ps)})
    return curve


def feature_matrix(outputs: dict, n: int) -> tuple[np.ndarray, list[str]]:
    """(n, F) attack scores; NaN where an attack could not score a document."""
    names = list(outputs)
    return np.column_stack([outputs[k].values for k in names]) if names else np.zeros((n, 0)), names


DatasetInferenceResult = RunResult


def run_dataset_inference(
    model: LanguageModel,
    suspect: Sequence[Record],
    validation: Sequence[Record],
    *,
    config: DatasetInferenceConfig = DatasetInferenceConfig(),
    reference_model: LanguageModel | None = None,
    reference_corpus: Sequence[Record] | None = None,
    recall_prefix: Sequence[Record] | None = None,
    perturber=None,
    policy: ScoringPolicy = ScoringPolicy(),
    batch_size: int = 16,
    cache: ScoreCache | None = None,
    on_pass=None,
) -> DatasetInferenceResult:
    """Test whether ``model`` trained on ``suspect`` more than on ``validation``.

    Documents some feature could not be scored for are left out of the test and listed
    in ``excluded`` with the reason; a feature that no document could be scored for is
    dropped and listed in ``dropped_features``.
    """
    scored = select_and_score(model, suspect, validation, attacks=config.attacks, recall_shots=config.recall_shots,
                              seed=config.seed, second_name="validation", reference_model=reference_model,
                              reference_corpus=reference_corpus, recall_prefix=recall_prefix, perturber=perturber,
                              policy=policy, batch_size=batch_size, cache=cache, on_pass=on_pass)
    attacks, suspect, validation, excluded = scored.attacks, scored.first, scored.second, scored.excluded
    outputs, timings = scored.outputs, scored.timings
    records = suspect + validation
    sets = ["suspect"] * len(suspect) + ["validation"] * len(validation)
    x, names = feature_matrix(outputs, len(records))
    usable = ~np.all(np.isnan(x), axis=0)
    dropped = [n for n, ok in zip(names, usable) if not ok]
    x, names = x[:, usable], [n for n, ok in zip(names, usable) if ok]
    if not names:
        raise ValueError("no attack produced a score for any document")
    complete = ~np.any(np.isnan(x), axis=1)
    for i in np.flatnonzero(~complete):
        reasons = {k: outputs[k].errors[i] for k in names if outputs[k].errors[i]}
        excluded.append({"id": records[i].id, "set": sets[i], "reason": "unscored features", "errors": reasons})
    is_s = np.array([s == "suspect" for s in sets])
    s_idx, v_idx = np.flatnonzero(is_s & complete), np.flatnonzero(~is_s & complete)

    start = time.perf_counter()
    test = dataset_inference_test(x[s_idx], x[v_idx], seed=config.seed, clip=config.clip,
                                  l2_strength=config.l2_strength, nonnegative=config.nonnegative,
                                  permutation=config.permutation, n_permutations=config.n_permutations)
    if config.null_trials and len(v_idx) < 8:
        null = {"trials": 0, "alpha": config.alpha, "rejections": 0, "false_positive_rate": None,
                "false_positive_rate_ci": None, "p_values": [],
                "skipped": f"needs at least 8 scored validation documents to split in two, got {len(v_idx)}"}
    else:
        null = null_calibration(x[v_idx], trials=config.null_trials, alpha=config.alpha, seed=config.seed,
                                clip=config.clip, l2_strength=config.l2_strength, nonnegative=config.nonnegative)
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
        "effect_size": {"cohens_d": test["effect_size"]},
        "permutation": test.get("permutation"),
        "feature_weights": dict(zip(names, test["weights"])),
        "intercept": test["intercept"],
        "features": {a.label: a.describe() for a in attacks if a.label in names},
        "dropped_features": dropped,
        "split": {"a": test["n_a"], "b": test["n_b"]},
        "null_calibration": {k: v for k, v in null.items() if k != "p_values"},
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
    provenance = run_provenance(model, config, policy=policy, batch_size=batch_size, reference_model=reference_model,
                                perturber=perturber)
    return DatasetInferenceResult(results=results, samples=samples, provenance=provenance)


def dataset_inference_to_dir(model, suspect, validation, out: str | Path, *, data: list[dict] | None = None,
                             command: str = "dataset-inference", started: float | None = None,
                             cache_path: str | Path | None = None, **kwargs) -> dict:
    """:func:`run_dataset_inference`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    with RunWriter(out, command=command, started=started) as run:
        with open_cache(cache_path) as cache:
            result = run_dataset_inference(model, suspect, validation, cache=cache, **kwargs)
        run.samples(result.samples)
        r = result.results
        summary = {"p_value": r["p_value"], "significant": r["significant"], "n_suspect": r["n_suspect"],
                   "n_validation": r["n_validation"], "distribution_shift_flag": r["distribution_shift_flag"],
                   "null_false_positive_rate": r["null_calibration"]["false_positive_rate"]}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=r)
