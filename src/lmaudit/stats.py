"""Statistics for audits: ROC-AUC with intervals, rates with exact intervals, TPR at low FPR, tests.

Pure functions: numpy arrays in, numbers out. Scores follow lmaudit's convention, higher =
more likely a member, so ``pos`` holds the members' scores and ``neg`` the non-members'.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as st


def _clean(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite; drop error rows (and count them) before evaluating")
    if not len(x):
        raise ValueError("no scores: need at least one member and one non-member score")
    return x


def roc_auc(pos, neg) -> float:
    """P(score of a random member > score of a random non-member), ties counting one half.

    The Mann-Whitney U statistic over m·n; equal to the area under the ROC curve.

    >>> roc_auc([3, 2], [1, 2])
    0.875
    """
    pos, neg = _clean(pos), _clean(neg)
    ranks = st.rankdata(np.concatenate([pos, neg]))  # midranks for ties
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def _weighted_aucs(pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
    """ROC-AUCs of r replicates given as multiplicities of each member and non-member score.

    With the non-members sorted, the weighted count of non-members below and equal to each
    member is a cumulative sum, so no replicate is sorted: O(r · (m + n)) after one sort.
    ``neg`` may come in any order (``auc_bootstrap`` passes it sorted, so the sort is cheap).

    Args:
        pos, neg: (m,) member and (n,) non-member scores.
        w_pos, w_neg: (r, m) and (r, n) non-negative integer multiplicities; every row must
            have a positive sum.

    Returns:
        (r,) AUCs; entry k equals ``roc_auc(np.repeat(pos, w_pos[k]), np.repeat(neg, w_neg[k]))``
        up to the rounding of the final division.
    """
    order = np.argsort(neg, kind="stable")
    neg_sorted = neg[order]
    lo = np.searchsorted(neg_sorted, pos, side="left")  # non-members strictly below each member
    hi = np.searchsorted(neg_sorted, pos, side="right")  # ... below or equal
    w_neg = w_neg[:, order]  # (r, n), in sorted order
    cum = np.concatenate([np.zeros((len(w_neg), 1)), np.cumsum(w_neg, axis=1)], axis=1)  # (r, n + 1)
    below, upto = cum[:, lo], cum[:, hi]  # (r, m)
    return ((below + 0.5 * (upto - below)) * w_pos).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def _draw_counts(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """(r, n) multiplicities of r resamples of n items with replacement.

    Equivalent to ``rng.multinomial(n, [1/n] * n, size=r)`` and about 5x faster: draw the
    indices, then count them all with one bincount over row-offset indices.
    """
    idx = rng.integers(0, n, size=(r, n)) + n * np.arange(r)[:, None]  # (r, n)
    return np.bincount(idx.ravel(), minlength=r * n).reshape(r, n)


def auc_bootstrap(pos, neg, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of the ROC-AUC: percentile bootstrap, resampling members and non-members separately.

    Each replicate draws m members and n non-members with replacement. Instead of sorting
    every replicate, a replicate is expressed as multiplicities (how often each score was
    drawn): with the non-members sorted once, the weighted count of non-members below and
    equal to each member is a cumulative sum, so all replicates cost O(n_bootstrap · (m + n))
    (``_weighted_aucs``). The result is exactly the AUC of the resampled sets.

    When every replicate gives the same AUC (perfect separation, AUC 0 or 1, or a scorer
    that ties everything) the percentile interval is a point that says nothing about m
    and n; the interval is then :func:`auc_score_interval` instead.

    Returns:
        (low, high) at the given level.
    """
    pos, neg = _clean(pos), _clean(neg)
    m, n = len(pos), len(neg)
    rng = np.random.default_rng(seed)
    # Sorted once here, so the helper's per-chunk sort runs on sorted input.
    order = np.argsort(neg, kind="stable")
    neg_sorted = neg[order]
    aucs = np.empty(n_bootstrap)
    # Chunks of replicates keep the (R, n) weight matrices small for large n.
    chunk = max(1, 2_000_000 // max(m, n))
    for start in range(0, n_bootstrap, chunk):
        r = min(chunk, n_bootstrap - start)
        w_neg = _draw_counts(rng, n, r)[:, order]  # (r, n), in sorted order
        w_pos = _draw_counts(rng, m, r)  # (r, m)
        aucs[start : start + r] = _weighted_aucs(pos, neg_sorted, w_pos, w_neg)
    if np.ptp(aucs) == 0:
        return auc_score_interval(float(aucs[0]), m, n, level=level)
    alpha = (1 - level) / 2
    low, high = np.quantile(aucs, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_auc_bootstrap(pos_a, neg_a, pos_b, neg_b, *, n_bootstrap: int = 1000,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """AUC replicates of two scorers of the same documents, paired: every replicate draws the
    members and the non-members once, and both scorers' AUCs are computed on that draw (what a
    difference or a ratio of the two AUCs needs; independent draws would widen its interval).

    Args:
        pos_a, pos_b: (m,) the two scorers' member scores, document i in both at index i.
        neg_a, neg_b: (n,) their non-member scores, likewise aligned.

    Returns:
        ((B,), (B,)) the replicates of scorer a's and scorer b's AUC. A scorer paired with
        itself gives two equal arrays.
    """
    pos_a, neg_a, pos_b, neg_b = (_clean(x) for x in (pos_a, neg_a, pos_b, neg_b))
    if len(pos_a) != len(pos_b) or len(neg_a) != len(neg_b):
        raise ValueError("paired scorers must score the same documents: member and non-member counts differ")
    m, n = len(pos_a), len(neg_a)
    rng = np.random.default_rng(seed)
    a, b = np.empty(n_bootstrap), np.empty(n_bootstrap)
    chunk = max(1, 2_000_000 // max(m, n))
    for start in range(0, n_bootstrap, chunk):
        r = min(chunk, n_bootstrap - start)
        w_neg, w_pos = _draw_counts(rng, n, r), _draw_counts(rng, m, r)  # (r, n), (r, m): one draw, both scorers
        a[start : start + r] = _weighted_aucs(pos_a, neg_a, w_pos, w_neg)
        b[start : start + r] = _weighted_aucs(pos_b, neg_b, w_pos, w_neg)
    return a, b


def auc_ci(pos, neg, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The interval lmaudit reports beside an AUC: the union of the percentile bootstrap
    (:func:`auc_bootstrap`) and the score interval (:func:`auc_score_interval`).

    The percentile bootstrap under-covers near 0 and 1 (at perfect separation it is a point);
    the score interval does not, but leans on the Hanley–McNeil variance approximation in the
    middle. Taking both keeps the interval honest at the boundary and consistent across it: an
    attack that separates perfectly never gets a lower bound below one that misses once (with
    either method alone, 10 vs 10 documents got (0.80, 1) at AUC 1 but (0.94, 1) at AUC 0.99).

    >>> [round(x, 4) for x in auc_ci([1.0], [0.0])]  # one member, one non-member: Wilson's 1/1
    [0.2065, 1.0]
    """
    pos, neg = _clean(pos), _clean(neg)
    boot = auc_bootstrap(pos, neg, n_bootstrap=n_bootstrap, level=level, seed=seed)
    score = auc_score_interval(roc_auc(pos, neg), len(pos), len(neg), level=level)
    return min(boot[0], score[0]), max(boot[1], score[1])


def hanley_mcneil_variance(auc: float, m: int, n: int) -> float:
    """Variance of the empirical AUC of m members and n non-members if the true AUC is ``auc``.

    Hanley & McNeil (1982), Radiology 143:29, eq. 2, with Q1 = A/(2 − A), Q2 = 2A²/(1 + A)
    (the exponential approximation, which they show holds closely for other distributions).
    """
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return (auc * (1 - auc) + (m - 1) * (q1 - auc**2) + (n - 1) * (q2 - auc**2)) / (m * n)


def auc_score_interval(auc: float, m: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """The AUCs θ that an observed ``auc`` is within z standard errors of: |auc − θ| ≤ z·SE(θ).

    The score-type (Wilson-like) inversion of the Hanley–McNeil variance, as in Newcombe
    (2006), Statistics in Medicine 25:559, "Confidence intervals for an effect size measure
    based on the Mann–Whitney statistic. Part 2". Plugging the observed AUC into the
    variance gives 0 at AUC 1, a point; evaluating the variance at the candidate θ instead
    gives a bound that still reflects m and n. With one member and one non-member the AUC
    is a single Bernoulli trial and this is exactly Wilson's interval for 1/1 or 0/1.

    >>> [round(x, 4) for x in auc_score_interval(1.0, 1, 1)]  # Wilson's 1/1: 1/(1 + z²)
    [0.2065, 1.0]
    """
    if not 0 <= auc <= 1 or m < 1 or n < 1:
        raise ValueError(f"need 0 <= auc <= 1 and m, n >= 1, got auc={auc}, m={m}, n={n}")
    from scipy.optimize import brentq

    z = float(st.norm.ppf(0.5 + level / 2))
    # f < 0 exactly on the interval's inside; f(0) = auc² >= 0 and f(1) = (1 − auc)² >= 0.
    f = lambda t: (auc - t) ** 2 - z**2 * hanley_mcneil_variance(t, m, n)  # noqa: E731
    inner = min(max(auc, 1e-12), 1 - 1e-12)  # a point inside the interval where f < 0
    low = 0.0 if auc == 0 or f(0.0) <= 0 else brentq(f, 0.0, inner, xtol=1e-12)
    high = 1.0 if auc == 1 or f(1.0) <= 0 else brentq(f, inner, 1.0, xtol=1e-12)
    return float(low), float(high)


def proportion_ci(successes: int, n: int, *, level: float = 0.95,
                  method: str = "exact") -> tuple[float, float]:
    """Confidence interval of a binomial proportion successes / n (an extraction or copy rate).

    ``method="exact"`` (the default) is Clopper-Pearson: the interval inverts two one-sided
    binomial tests, so its coverage is at least ``level`` for every true rate and every n.
    Audits often rest on few items (three ACR targets, a few dozen questions) and report
    rates at or near 0 and 1, exactly where the normal approximation and the percentile
    bootstrap fail (the bootstrap gives (0, 0) for 0/n); being conservative there is the
    right error for a claim about memorization. ``"wilson"`` is shorter on average with
    coverage close to, not at least, ``level``. Both are scipy's ``binomtest`` intervals.

    >>> [round(x, 4) for x in proportion_ci(0, 10)]
    [0.0, 0.3085]
    """
    if method not in ("exact", "wilson"):
        raise ValueError(f"method must be 'exact' or 'wilson', got {method!r}")
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    ci = st.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method=method)
    return float(ci.low), float(ci.high)


def rate_summary(successes: int, n: int, *, level: float = 0.95) -> dict:
    """``{"k", "n", "rate", "ci"}``: a rate as results.json reports it, with its exact
    (Clopper-Pearson) interval; rate and interval are None when n is 0.

    >>> rate_summary(0, 10)["ci"][1] > 0  # 0 of n still has an upper bound
    True
    """
    if n == 0:
        return {"k": successes, "n": 0, "rate": None, "ci": None}
    return {"k": successes, "n": n, "rate": successes / n, "ci": list(proportion_ci(successes, n, level=level))}


def bootstrap_mean_ci(values, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                      groups=None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a continuous quantity (e.g. ROUGE-L F1).

    Not for rates of yes/no outcomes: all-0 or all-1 data give a point. Use :func:`proportion_ci`.

    ``groups`` (one label per value): resample whole groups, not values (the cluster
    bootstrap). Values of one group are not independent draws (the nine questions about one
    document share what the model knows of it), and resampling them one by one would give an
    interval too narrow for the number of groups there really are. Each replicate's mean is
    over all values of its drawn groups. With one value per group it is the plain bootstrap
    (draw for draw when the labels sort in the values' order).

    >>> bootstrap_mean_ci([1, 1, 1])
    (1.0, 1.0)
    >>> bootstrap_mean_ci([1.0, 2.0, 3.0], groups=["a", "b", "c"]) == bootstrap_mean_ci([1.0, 2.0, 3.0])
    True
    """
    x = _clean(values)
    rng = np.random.default_rng(seed)
    if groups is None:
        counts = _draw_counts(rng, len(x), n_bootstrap)  # (B, n)
        means = counts @ x / len(x)
    else:
        g = np.asarray(groups)
        if g.shape != x.shape:
            raise ValueError(f"groups must give one label per value: {g.shape} labels for {x.shape} values")
        _, member = np.unique(g, return_inverse=True)
        sums, sizes = np.bincount(member, weights=x), np.bincount(member)  # (G,)
        w = _draw_counts(rng, len(sums), n_bootstrap)  # (B, G) times each group is drawn
        means = (w @ sums) / (w @ sizes)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def cluster_ratio_ci(numerators, denominators, *, n_bootstrap: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of a ratio of sums, resampling whole clusters (sites, documents):
    the cluster bootstrap of ``sum(numerators) / sum(denominators)``.

    One entry per cluster: its part of the numerator and of the denominator (e.g. a site's
    documents from restricting sites, and its documents with a snapshot). Items of one cluster
    share one outcome, so they are one draw, not many: each replicate draws the clusters with
    replacement and recomputes the ratio over what it drew. Clusters with a zero denominator
    take no part; a replicate whose drawn denominators sum to 0 is left out. None without a
    cluster. With one cluster the interval is a point: one draw says nothing of the spread.

    >>> cluster_ratio_ci([5, 0], [5, 5], seed=0)  # two sites, one restricting: anything from 0 to 1
    (0.0, 1.0)
    >>> cluster_ratio_ci([1, 1, 1], [2, 2, 2])
    (0.5, 0.5)
    """
    k, n = np.asarray(numerators, float), np.asarray(denominators, float)
    if k.shape != n.shape or k.ndim != 1:
        raise ValueError(f"one numerator and one denominator per cluster: got {k.shape} and {n.shape}")
    keep = n > 0
    k, n = k[keep], n[keep]
    if not len(n):
        return None
    w = _draw_counts(np.random.default_rng(seed), len(n), n_bootstrap)  # (B, G) times each cluster is drawn
    den = w @ n
    ratios = (w @ k)[den > 0] / den[den > 0]
    alpha = (1 - level) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(low), float(high)


def roc_points(pos, neg, *, max_points: int = 512) -> dict[str, list[float]]:
    """ROC curve (FPR, TPR, threshold), thinned to at most ``max_points`` corners.

    Thinning keeps the first and last points and evenly spaced corners between, so the
    stored curve stays small for large sets; AUC and TPR@FPR are computed on the full curve.
    """
    from sklearn.metrics import roc_curve

    pos, neg = _clean(pos), _clean(neg)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    fpr, tpr, thr = roc_curve(y, np.concatenate([pos, neg]))
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    thr = np.where(np.isfinite(thr), thr, np.nan)  # the "above every score" corner has threshold inf
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": [None if math.isnan(t) else float(t) for t in thr]}


def tpr_at_fpr(pos, neg, fpr: float, *, min_false_positives: int = 10) -> dict:
    """The highest TPR of any threshold whose empirical FPR is at most ``fpr``.

    The figure rests on ⌊fpr · n⌋ non-members above the threshold: with 1,000 non-members,
    TPR at 0.1% FPR is decided by a single document. Figures whose target FPR is below
    ``min_false_positives`` / n are marked unreliable.

    The threshold is chosen on the non-members alone, so given it the members above it are
    binomial: ``tpr_ci`` is the Clopper-Pearson interval (:func:`proportion_ci`) of the TPR
    at that threshold. It does not cover the threshold's own uncertainty (``unreliable``).

    Returns:
        ``tpr``, ``tpr_ci``, ``n_members``, ``fpr`` (the target), ``achieved_fpr``,
        ``threshold`` (members are the scores ≥ it), ``n_nonmembers``,
        ``max_false_positives`` and ``unreliable``.

    >>> tpr_at_fpr([5, 4, 3, 0], [2, 1, 0.5, 0.2], 0.25)["tpr"]
    0.75
    """
    pos, neg = _clean(pos), _clean(neg)
    n = len(neg)
    allowed = math.floor(fpr * n + 1e-9)  # false positives the target permits
    neg_desc = np.sort(neg)[::-1]
    # The best threshold lets exactly `allowed` non-members through: just above the next one.
    if allowed >= n:
        threshold = -math.inf
    else:
        threshold = float(np.nextafter(neg_desc[allowed], math.inf))
    tp = int((pos >= threshold).sum())
    fp = int((neg >= threshold).sum())
    return {
        "fpr": fpr,
        "tpr": tp / len(pos),
        "tpr_ci": list(proportion_ci(tp, len(pos))),
        "n_members": len(pos),
        "achieved_fpr": fp / n,
        "threshold": threshold if math.isfinite(threshold) else None,
        "n_nonmembers": n,
        "max_false_positives": allowed,
        "unreliable": fpr < min_false_positives / n,
    }


def fpr_at_tpr(pos, neg, tpr: float, *, min_missed: int = 10) -> dict:
    """The lowest FPR of any threshold whose empirical TPR is at least ``tpr``.

    The mirror image of :func:`tpr_at_fpr`: the threshold is the ⌈tpr · m⌉-th highest member
    score, chosen on the members alone, so given it the non-members above it are binomial and
    ``fpr_ci`` is their Clopper-Pearson interval. The threshold itself rests on the
    m − ⌈tpr · m⌉ members below it: with 100 members, FPR at 95% TPR is decided by five
    documents, so figures whose target leaves fewer than ``min_missed`` members below are
    marked unreliable.

    Returns:
        ``fpr``, ``fpr_ci``, ``n_nonmembers``, ``tpr`` (the target), ``achieved_tpr``,
        ``threshold`` (members are the scores ≥ it), ``n_members``, ``min_true_positives``
        and ``unreliable``.

    >>> fpr_at_tpr([5, 4, 3, 0], [2, 1, 0.5, 0.2], 0.75)["fpr"]
    0.0
    """
    pos, neg = _clean(pos), _clean(neg)
    m = len(pos)
    needed = max(0, math.ceil(tpr * m - 1e-9))  # true positives the target requires
    threshold = math.inf if needed == 0 else float(np.sort(pos)[::-1][needed - 1])
    tp, fp = int((pos >= threshold).sum()), int((neg >= threshold).sum())
    return {
        "tpr": tpr,
        "fpr": fp / len(neg),
        "fpr_ci": list(proportion_ci(fp, len(neg))),
        "n_nonmembers": len(neg),
        "achieved_tpr": tp / m,
        "threshold": threshold if math.isfinite(threshold) else None,
        "n_members": m,
        "min_true_positives": needed,
        "unreliable": 1 - tpr < min_missed / m,
    }


def average_precision(pos, neg) -> float:
    """Area under the precision-recall curve as scikit-learn defines it (no interpolation):
    AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct thresholds, highest first.

    Unlike the ROC-AUC it depends on the share of members, m / (m + n): a scorer that ranks
    at random gets about that, not 0.5.

    >>> average_precision([3, 1], [2, 0])  # precision 1 at recall ½, ⅔ at recall 1
    0.8333333333333333
    """
    pos, neg = _clean(pos), _clean(neg)
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last index of each tied group
    tp = np.cumsum(labels)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0.0, tp]) / len(pos)
    return float((recall_step * precision).sum())


def welch_test(a, b, *, alternative: str = "greater") -> dict:
    """Welch's unequal-variance t-test of mean(a) vs mean(b) in the declared direction."""
    a, b = _clean(a), _clean(b)
    res = st.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return {"test": "welch_t", "alternative": alternative, "statistic": float(res.statistic),
            "df": float(res.df), "p_value": float(res.pvalue)}


def permutation_test(a, b, *, alternative: str = "greater", n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Permutation test of the difference in means (labels shuffled between a and b).

    Exact (every relabelling enumerated) when there are at most ``n_resamples`` of them;
    otherwise Monte Carlo with p = (1 + #{null ≥ observed}) / (1 + n_resamples), which keeps
    the test's size at most α (scipy's ``permutation_test``).
    """
    a, b = _clean(a), _clean(b)
    res = st.permutation_test(
        (a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent", alternative=alternative, n_resamples=n_resamples,
        vectorized=True, rng=np.random.default_rng(seed),
    )
    exact = math.comb(len(a) + len(b), len(a)) <= n_resamples
    return {"test": "permutation", "alternative": alternative, "statistic": float(res.statistic),
            "p_value": float(res.pvalue), "exact": exact, "n_resamples": None if exact else n_resamples}


def cohens_d(a, b) -> float:
    """(mean(a) − mean(b)) / pooled standard deviation."""
    a, b = _clean(a), _clean(b)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    return float((a.mean() - b.mean()) / math.sqrt(pooled)) if pooled > 0 else math.nan
