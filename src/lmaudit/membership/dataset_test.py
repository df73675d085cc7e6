"""The statistics of dataset inference, as pure functions of two feature matrices: the A/B
split, what is fitted on A (clip bounds, normalisation, a non-negative logistic model), the
one-sided test on B, the validation-vs-validation null calibration and the p-value curve.

:mod:`lmaudit.membership.dataset_inference` turns a model and two document sets into these
matrices and reports; its docstring gives the method and the deliberate deviations from the
public code.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from lmaudit.stats import cohens_d, permutation_test, proportion_ci, welch_test


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


class NothingLearnedWarning(UserWarning):
    """The classifier fitted on half A put weight on no feature: the test had nothing to test."""


NOTHING_LEARNED = ("the classifier learned nothing on half A: every feature weight is 0, so no feature scores "
                   "suspect documents higher than validation ones there. p = 1 means no evidence of training, not "
                   "evidence against it; features oriented the wrong way (lower = member) give exactly this")


def dataset_inference_test(suspect: np.ndarray, validation: np.ndarray, *, seed: int | str = 0, clip: float = 0.025,
                           l2_strength: float = 1.0, nonnegative: bool = True, permutation: bool = False,
                           n_permutations: int = 10_000, warn: bool = True) -> dict:
    """The test on two feature matrices (rows = documents, columns = attack scores).

    A classifier that learned nothing (every weight 0, so one score for every document of
    B) gives p = 1 and ``classifier_learned_nothing``, and with ``warn`` a
    :class:`NothingLearnedWarning`: a bare p = 1 reads like a clean negative result.

    Returns:
        ``p_value`` (Welch, one-sided: suspect scores higher on B), ``statistic``, ``df``,
        ``effect_size`` (Cohen's d on B), the fitted ``weights`` (on normalised features) and
        ``intercept``, ``classifier_learned_nothing`` (with a ``note`` when true), the split
        sizes, the B scores and row indices, and with ``permutation`` a ``permutation`` entry.
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
    nothing = np.ptp(np.r_[score_s, score_v]) == 0
    if nothing:
        # Every weight is 0: A showed no evidence in the member direction, so B gets one
        # score for all and there is nothing to test. p = 1 keeps the test conservative.
        test = {"test": "welch_t", "alternative": "greater", "statistic": 0.0, "df": None, "p_value": 1.0,
                "note": NOTHING_LEARNED}
        if warn:
            warnings.warn(NOTHING_LEARNED, NothingLearnedWarning, stacklevel=2)
    else:
        test = welch_test(score_s, score_v, alternative="greater")
    out = {
        **test,
        "classifier_learned_nothing": bool(nothing),
        "effect_size": 0.0 if nothing else cohens_d(score_s, score_v),
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


def _set_size(n: int) -> dict:
    """A set of n documents and the halves the test splits it into (A gets ⌊n/2⌋)."""
    return {"documents": n, "a": n // 2, "b": n - n // 2}


def calibration_sizes(pool: int, n_suspect: int, n_validation: int) -> tuple[int, int]:
    """The set sizes a null calibration from ``pool`` known non-members can use.

    The reported sizes when the pool holds two disjoint sets of them; otherwise the largest
    sizes in the same ratio (the pool split once, e.g. 50 vs 50 for a 100 vs 100 test), at
    least 4 a side.
    Drawing with replacement to reach the reported sizes is not an option: copies of one
    document would land on both sides, or in both A and B, which no real run has, and the
    classifier fitted on A would have seen documents of B.
    """
    if n_suspect + n_validation <= pool:
        return n_suspect, n_validation
    m_suspect = pool * n_suspect // (n_suspect + n_validation)
    m_suspect = min(max(4, m_suspect), pool - 4)  # the test needs 4 a side (a very uneven ratio gives up on it)
    return m_suspect, pool - m_suspect


def null_calibration(pool: np.ndarray, *, sizes: tuple[int, int] | None = None, trials: int, alpha: float, seed: int,
                     clip: float, l2_strength: float, nonnegative: bool = True) -> dict:
    """The empirical false-positive rate: the whole test, run on known non-members against each other.

    Each trial draws two disjoint sets from ``pool`` (features of documents known not to be
    in the training data: the validation set, and any extra ones) without replacement, one
    playing the suspect set and one the validation set, and runs
    :func:`dataset_inference_test` on them. Both come from the same distribution and
    neither is in the training data, so a valid test rejects in about ``alpha`` of the
    trials. Reported with a Clopper-Pearson 95% interval, which treats the trials as
    independent; they share the pool's documents, so the real uncertainty is larger (the
    smaller the pool, the more).

    Args:
        pool: (documents, features) of known non-members.
        sizes: (suspect, validation) documents of the reported test. The trials use these
            sizes when the pool holds both disjoint, else the largest in the same ratio
            (:func:`calibration_sizes`), and say so. None: the pool split in halves.

    Returns:
        ``trials``, ``alpha``, ``rejections``, ``false_positive_rate`` and its ``_ci``,
        ``trials_learned_nothing`` (trials whose classifier put weight on no feature: p = 1),
        ``pool`` (documents it drew from), ``reported_size`` and ``calibrated_size`` (each
        ``{"suspect": {"documents", "a", "b"}, "validation": {...}}``), ``at_reported_size``,
        ``size_note`` when it is not, and ``p_values``.
    """
    n = len(pool)
    reported = sizes if sizes is not None else (n // 2, n - n // 2)
    m_s, m_v = calibration_sizes(n, *reported) if n >= 8 else (n // 2, n - n // 2)
    out = {"pool": n,
           "reported_size": {"suspect": _set_size(reported[0]), "validation": _set_size(reported[1])},
           "calibrated_size": {"suspect": _set_size(m_s), "validation": _set_size(m_v)},
           "at_reported_size": (m_s, m_v) == tuple(reported)}
    if not out["at_reported_size"]:
        out["size_note"] = (
            f"calibrated at {m_s} vs {m_v} documents (halves B of {m_s - m_s // 2} vs {m_v - m_v // 2}), not the "
            f"reported {reported[0]} vs {reported[1]} (B {reported[0] - reported[0] // 2} vs "
            f"{reported[1] - reported[1] // 2}): two disjoint sets of the reported sizes need {sum(reported)} known "
            f"non-members and the pool holds {n}; drawing with replacement would put copies of a document on both "
            "sides of the test. More known non-members (--null-pool, or run_dataset_inference's null_pool) let it check the reported "
            "size")
    if min(m_s, m_v) < 4:
        return {**out, "trials": 0, "alpha": alpha, "rejections": 0, "trials_learned_nothing": 0,
                "false_positive_rate": None, "false_positive_rate_ci": None, "p_values": [],
                "skipped": f"needs at least 8 scored known non-members (validation and null pool) to draw two sets "
                           f"of 4, got {n}"}
    p_values, nothing = [], 0
    for t in range(trials):
        order = list(range(n))
        random.Random(f"{seed}/null/{t}").shuffle(order)
        first, second = np.array(sorted(order[:m_s])), np.array(sorted(order[m_s : m_s + m_v]))
        res = dataset_inference_test(pool[first], pool[second], seed=f"{seed}/null/{t}", clip=clip,
                                     l2_strength=l2_strength, nonnegative=nonnegative, warn=False)
        p_values.append(res["p_value"])
        nothing += res["classifier_learned_nothing"]
    rejections = sum(p < alpha for p in p_values)
    return {**out, "trials": trials, "alpha": alpha, "rejections": rejections, "trials_learned_nothing": nothing,
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
