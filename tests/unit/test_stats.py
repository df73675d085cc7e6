"""Tests for lmaudit.stats against independent expectations.

Every expected value comes from somewhere other than the function under test: a brute-force
loop, exact rational arithmetic, a value derived by hand, or scikit-learn / scipy.
"""

from __future__ import annotations

import itertools
import math
import statistics
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from lmaudit.stats import (
    _weighted_aucs,
    auc_bootstrap,
    auc_ci,
    bootstrap_mean_ci,
    auc_score_interval,
    average_precision,
    cohens_d,
    fpr_at_tpr,
    permutation_test,
    proportion_ci,
    roc_auc,
    roc_points,
    tpr_at_fpr,
    welch_test,
)


def _sklearn_auc(pos, neg) -> float:
    return roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])


def _tied_scores(rng, m: int, n: int, *, levels: int = 8, shift: int = 1):
    """Integer scores with many ties; members shifted up by ``shift`` levels."""
    return rng.integers(shift, levels + shift, m), rng.integers(0, levels, n)


# --- roc_auc ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    pos, neg = _tied_scores(rng, 37 + seed, 53 - seed)
    assert roc_auc(pos, neg) == pytest.approx(_sklearn_auc(pos, neg), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_roc_auc_matches_double_loop(seed):
    rng = np.random.default_rng(100 + seed)
    pos, neg = _tied_scores(rng, 20, 15, levels=4)
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    assert roc_auc(pos, neg) == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-12)


@pytest.mark.parametrize(
    ("pos", "neg", "expected"),
    [
        ([3, 2], [1, 2], 0.875),  # 3>1, 3>2, 2>1, 2=2 → 3.5 / 4
        ([1], [1], 0.5),
        ([2], [1], 1.0),
        ([0], [1], 0.0),
        ([1, 1, 1], [1, 1], 0.5),
        ([0.5, 2.5], [1.0, 2.0, 3.0], 2 / 6),  # 2.5 beats 1 and 2
    ],
)
def test_roc_auc_hand_cases(pos, neg, expected):
    assert roc_auc(pos, neg) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_roc_auc_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0.1, bad], [0.2])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0.1], [0.2, bad])


@pytest.mark.parametrize(("pos", "neg"), [([], [1.0]), ([1.0], []), ([], [])])
def test_empty_inputs_are_a_clear_error(pos, neg):
    for fn in (roc_auc, auc_bootstrap, lambda p, n: tpr_at_fpr(p, n, 0.1), welch_test):
        with pytest.raises(ValueError, match="no scores"):
            fn(pos, neg)


# --- auc_bootstrap ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_weighted_aucs_equal_auc_of_repeated_sets(seed):
    rng = np.random.default_rng(seed)
    m, n, r = 13, 17, 25
    pos, neg = _tied_scores(rng, m, n, levels=5)
    pos, neg = pos.astype(float), neg.astype(float)  # neg deliberately unsorted
    w_pos = rng.integers(0, 4, (r, m))  # zeros included: scores left out of a replicate
    w_neg = rng.integers(0, 4, (r, n))
    w_pos[:, 0] += 1  # every replicate keeps at least one score on each side
    w_neg[:, -1] += 1
    assert (w_pos == 0).any() and (w_neg == 0).any()
    expected = [_sklearn_auc(np.repeat(pos, wp), np.repeat(neg, wn)) for wp, wn in zip(w_pos, w_neg)]
    np.testing.assert_allclose(_weighted_aucs(pos, neg, w_pos, w_neg), expected, rtol=0, atol=1e-12)


def test_weighted_aucs_unit_weights_give_plain_auc():
    rng = np.random.default_rng(9)
    pos, neg = (x.astype(float) for x in _tied_scores(rng, 30, 40))
    got = _weighted_aucs(pos, neg, np.ones((1, 30), dtype=int), np.ones((1, 40), dtype=int))
    assert got[0] == pytest.approx(_sklearn_auc(pos, neg), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_bootstrap_interval_contains_point_auc(seed):
    rng = np.random.default_rng(seed)
    pos, neg = rng.normal(0.4, 1, 150), rng.normal(0, 1, 120)
    low, high = auc_bootstrap(pos, neg, n_bootstrap=400, seed=seed)
    assert low < _sklearn_auc(pos, neg) < high


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(1)
    pos, neg = _tied_scores(rng, 60, 70)
    assert auc_bootstrap(pos, neg, n_bootstrap=300, seed=4) == auc_bootstrap(pos, neg, n_bootstrap=300, seed=4)
    assert auc_bootstrap(pos, neg, n_bootstrap=300, seed=4) != auc_bootstrap(pos, neg, n_bootstrap=300, seed=5)


def test_bootstrap_interval_narrows_as_n_grows():
    rng = np.random.default_rng(2)
    widths = []
    for size in (40, 400, 4000):
        low, high = auc_bootstrap(rng.normal(0.5, 1, size), rng.normal(0, 1, size), n_bootstrap=300, seed=0)
        widths.append(high - low)
    # The width shrinks like 1/sqrt(n): about 3.2x per tenfold.
    assert widths[0] > 2 * widths[1] > 4 * widths[2]


def _hanley_mcneil_se(auc: float, m: int, n: int) -> float:
    """Hanley & McNeil (1982), Radiology 143:29, eq. 2."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return math.sqrt((auc * (1 - auc) + (m - 1) * (q1 - auc**2) + (n - 1) * (q2 - auc**2)) / (m * n))


@pytest.fixture(scope="module")
def chunked_case():
    """Sizes where ``auc_bootstrap`` splits its replicates into chunks (800 + 200 for 1000)."""
    rng = np.random.default_rng(3)
    m, n, n_boot = 400, 2500, 1000
    assert 2_000_000 // max(m, n) < n_boot
    pos = rng.normal(0.5, 1, m)
    neg = np.round(rng.normal(0, 1, n), 2)  # some ties
    return pos, neg, n_boot, auc_bootstrap(pos, neg, n_bootstrap=n_boot, seed=0)


def test_bootstrap_width_matches_hanley_mcneil(chunked_case):
    pos, neg, _, (low, high) = chunked_case
    se = _hanley_mcneil_se(_sklearn_auc(pos, neg), len(pos), len(neg))
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_chunked_bootstrap_matches_direct_bootstrap(chunked_case):
    pos, neg, n_boot, (low, high) = chunked_case
    # A direct percentile bootstrap: resample indices and compute each replicate's Mann-Whitney U.
    rng = np.random.default_rng(12345)
    pos_b = pos[rng.integers(0, len(pos), (n_boot, len(pos)))]  # (R, m)
    neg_b = neg[rng.integers(0, len(neg), (n_boot, len(neg)))]  # (R, n)
    u = st.mannwhitneyu(pos_b, neg_b, axis=1, method="asymptotic").statistic
    aucs = u / (len(pos) * len(neg))
    ref_low, ref_high = np.quantile(aucs, [0.025, 0.975])
    # Two independent runs of 1000 replicates: a tail quantile has a standard error of about
    # 0.085 sd, so their difference about 0.12 sd; 0.5 sd is four of those.
    tol = 0.5 * aucs.std()
    assert low == pytest.approx(ref_low, abs=tol)
    assert high == pytest.approx(ref_high, abs=tol)


# --- tpr_at_fpr ---------------------------------------------------------------


def _brute_tpr_at_fpr(pos, neg, fpr: float) -> float:
    """Best TPR over every candidate threshold (each distinct score, ±inf), members being scores ≥ it."""
    target = Fraction(repr(fpr))  # the decimal the caller wrote, compared exactly
    best = 0.0
    for t in [*np.unique(np.r_[pos, neg]), math.inf, -math.inf]:
        if Fraction(int((neg >= t).sum()), len(neg)) <= target:
            best = max(best, float((pos >= t).mean()))
    return best


FPRS = [0, 0.001, 0.01, 0.1, 0.5, 1]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fpr", FPRS)
def test_tpr_at_fpr_matches_brute_force(seed, fpr):
    rng = np.random.default_rng(seed)
    if seed == 0:
        pos, neg = _tied_scores(rng, 300, 1000, levels=40, shift=5)
    else:  # continuous members, rounded non-members: ties only on one side
        pos, neg = rng.normal(1, 1, 211), np.round(rng.normal(0, 1, 1000 + 37 * seed), 1)
    res = tpr_at_fpr(pos, neg, fpr)
    assert res["tpr"] == pytest.approx(_brute_tpr_at_fpr(pos, neg, fpr), abs=1e-15)
    assert res["achieved_fpr"] <= fpr
    assert res["max_false_positives"] == math.floor(Fraction(repr(fpr)) * len(neg))
    assert res["n_nonmembers"] == len(neg) and res["fpr"] == fpr
    # The reported threshold reproduces the figures (members are the scores ≥ it).
    t = -math.inf if res["threshold"] is None else res["threshold"]
    assert res["tpr"] == (pos >= t).mean()
    assert res["achieved_fpr"] == (neg >= t).mean()


@pytest.mark.parametrize("fpr", [0.29, 0.57])
def test_tpr_at_fpr_reads_the_target_as_the_decimal_written(fpr):
    # 0.29 · 100 is 28.999999999999996 in floating point; the target still allows 29 false positives.
    rng = np.random.default_rng(4)
    pos, neg = rng.normal(1, 1, 50), rng.permutation(np.arange(100.0))
    res = tpr_at_fpr(pos, neg, fpr)
    assert res["max_false_positives"] == round(fpr * 100)
    assert res["achieved_fpr"] == pytest.approx(fpr)
    assert res["tpr"] == _brute_tpr_at_fpr(pos, neg, fpr)


@pytest.mark.parametrize(("fpr", "unreliable"), [(0.001, True), (0.0099, True), (0.01, False), (0.1, False)])
def test_tpr_at_fpr_flags_too_few_false_positives(fpr, unreliable):
    rng = np.random.default_rng(0)
    res = tpr_at_fpr(rng.normal(size=100), rng.normal(size=1000), fpr)  # unreliable iff fpr < 10 / 1000
    assert res["unreliable"] is unreliable


# --- the peers' other operating point and PR-AUC -------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tpr", [0.5, 0.9, 0.95, 1.0])
def test_fpr_at_tpr_is_the_lowest_fpr_on_sklearns_curve_reaching_the_tpr(seed, tpr):
    rng = np.random.default_rng(seed)
    pos, neg = _tied_scores(rng, 97, 300, levels=30, shift=4) if seed == 0 else (rng.normal(1, 1, 97), rng.normal(0, 1, 300))
    fpr, tpr_curve, _ = roc_curve(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])
    res = fpr_at_tpr(pos, neg, tpr)
    assert res["fpr"] == pytest.approx(fpr[tpr_curve >= tpr - 1e-12].min(), abs=1e-15)
    assert res["achieved_tpr"] >= tpr and res["min_true_positives"] == math.ceil(tpr * 97 - 1e-9)
    assert res["n_members"] == 97 and res["n_nonmembers"] == 300
    assert res["fpr"] == (neg >= res["threshold"]).mean() and res["fpr_ci"][0] <= res["fpr"] <= res["fpr_ci"][1]
    # Unreliable iff fewer than 10 of the 97 members are meant to lie below the threshold.
    assert res["unreliable"] is (tpr >= 0.9)


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_is_sklearns(seed):
    rng = np.random.default_rng(seed)
    pos, neg = _tied_scores(rng, 40, 300, levels=6) if seed % 2 else (rng.normal(0.5, 1, 40), rng.normal(0, 1, 300))
    expected = average_precision_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])
    assert average_precision(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_average_precision_hand_cases():
    assert average_precision([3, 1], [2, 0]) == pytest.approx(1 * 0.5 + (2 / 3) * 0.5)
    assert average_precision([1, 1], [1, 1]) == 0.5  # one tied group: precision = share of members
    assert average_precision([5, 4], [1]) == 1.0


def test_membership_evaluation_reports_the_peers_metrics_with_n():
    from lmaudit.membership.evaluate import evaluate_scores

    rng = np.random.default_rng(3)
    pos, neg = np.r_[rng.normal(1, 1, 60), np.nan], rng.normal(0, 1, 200)
    res = evaluate_scores(pos, neg, n_bootstrap=50)
    assert res["tpr_at_5pct_fpr"] == tpr_at_fpr(pos[:60], neg, 0.05) and res["tpr_at_5pct_fpr"]["n_nonmembers"] == 200
    assert res["fpr_at_95pct_tpr"] == fpr_at_tpr(pos[:60], neg, 0.95) and res["fpr_at_95pct_tpr"]["n_members"] == 60
    ap = res["average_precision"]
    assert ap["value"] == pytest.approx(average_precision_score(np.r_[np.ones(60), np.zeros(200)], np.r_[pos[:60], neg]))
    assert ap["chance"] == 60 / 260 and (ap["n_members"], ap["n_nonmembers"]) == (60, 200)
    empty = evaluate_scores([np.nan], neg)
    assert empty["average_precision"] is None and empty["fpr_at_95pct_tpr"] is None


def test_tpr_at_fpr_docstring_example():
    res = tpr_at_fpr([5, 4, 3, 0], [2, 1, 0.5, 0.2], 0.25)
    # One false positive allowed: the threshold sits just above the second non-member (1),
    # admitting the non-member 2 and the members 5, 4, 3.
    assert res["tpr"] == 0.75
    assert res["achieved_fpr"] == 0.25
    assert res["max_false_positives"] == 1
    assert 1 < res["threshold"] <= 2
    # 3 of 4 members above it: Clopper-Pearson for 3/4 from the beta quantiles, with n beside it.
    assert res["n_members"] == 4
    assert res["tpr_ci"] == pytest.approx([st.beta.ppf(0.025, 3, 2), st.beta.ppf(0.975, 4, 1)], abs=1e-9)


# --- roc_points ---------------------------------------------------------------


def test_roc_points_is_sklearns_curve_when_small():
    rng = np.random.default_rng(0)
    pos, neg = _tied_scores(rng, 50, 60, levels=10)
    got = roc_points(pos, neg, max_points=512)
    fpr, tpr, thr = roc_curve(np.r_[np.ones(50), np.zeros(60)], np.r_[pos, neg])
    assert got["fpr"] == pytest.approx(fpr.tolist()) and got["tpr"] == pytest.approx(tpr.tolist())
    assert got["threshold"][0] is None
    assert got["threshold"][1:] == pytest.approx(thr[1:].tolist())
    # Each corner is the empirical (FPR, TPR) of its threshold, members being the scores ≥ it.
    assert (got["fpr"][0], got["tpr"][0]) == (0.0, 0.0)
    for f, t, th in zip(got["fpr"][1:], got["tpr"][1:], got["threshold"][1:]):
        assert (f, t) == ((neg >= th).mean(), (pos >= th).mean())
    assert (got["fpr"][-1], got["tpr"][-1]) == (1.0, 1.0)


@pytest.mark.parametrize("max_points", [2, 3, 50])
def test_roc_points_thinning(max_points):
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(0.5, 1, 800), rng.normal(0, 1, 900)
    fpr, tpr, thr = roc_curve(np.r_[np.ones(800), np.zeros(900)], np.r_[pos, neg])
    assert len(fpr) > max_points
    got = roc_points(pos, neg, max_points=max_points)
    assert 2 <= len(got["fpr"]) <= max_points
    assert len(got["fpr"]) == len(got["tpr"]) == len(got["threshold"])
    assert (got["fpr"][0], got["tpr"][0], got["threshold"][0]) == (0.0, 0.0, None)
    assert (got["fpr"][-1], got["tpr"][-1], got["threshold"][-1]) == (fpr[-1], tpr[-1], thr[-1])
    assert all(isinstance(t, float) for t in got["threshold"][1:])
    # The kept corners are a subsequence of the full curve, in order.
    full = list(zip(fpr.tolist(), tpr.tolist(), [None, *thr[1:].tolist()]))
    idx = [full.index(p) for p in zip(got["fpr"], got["tpr"], got["threshold"])]
    assert idx == sorted(idx)


# --- welch_test ---------------------------------------------------------------


def _hand_welch(a, b):
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    return t, df


def test_welch_test_matches_hand_computation():
    a = [5.1, 4.8, 6.0, 5.5, 5.9, 6.3, 4.9]
    b = [4.2, 5.0, 3.1, 4.4, 6.1, 3.9, 4.0, 2.8, 5.2, 4.6]
    t, df = _hand_welch(a, b)
    res = welch_test(a, b)
    assert res["statistic"] == pytest.approx(t, rel=1e-12)
    assert res["df"] == pytest.approx(df, rel=1e-12)
    assert res["p_value"] == pytest.approx(st.t.sf(t, df), rel=1e-10)
    assert res["alternative"] == "greater" and res["test"] == "welch_t"


def test_welch_test_less_is_the_mirror_image():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20).tolist(), rng.normal(0.3, 2, 35).tolist()
    t, df = _hand_welch(a, b)
    less = welch_test(a, b, alternative="less")
    assert less["p_value"] == pytest.approx(st.t.cdf(t, df), rel=1e-10)
    swapped = welch_test(b, a, alternative="greater")
    assert less["p_value"] == pytest.approx(swapped["p_value"], rel=1e-12)
    assert less["statistic"] == pytest.approx(-swapped["statistic"], rel=1e-12)


# --- permutation_test ---------------------------------------------------------


def _exact_permutation_p(a, b, alternative: str) -> float:
    """Enumerate every relabelling in exact rational arithmetic (no float ties to worry about).

    scipy counts null values within a relative 100·eps of the observed one as ties; with
    exact arithmetic, ties are exact and the count is the one that tolerance aims at.
    """
    pool = [Fraction(repr(x)) for x in [*a, *b]]
    total, k = sum(pool), len(a)

    def stat(sum_a):
        return sum_a / k - (total - sum_a) / (len(pool) - k)

    observed = stat(sum(pool[:k]))
    null = [stat(sum(pool[i] for i in idx)) for idx in itertools.combinations(range(len(pool)), k)]
    greater = Fraction(sum(s >= observed for s in null), len(null))
    less = Fraction(sum(s <= observed for s in null), len(null))
    return float({"greater": greater, "less": less, "two-sided": min(1, 2 * min(greater, less))}[alternative])


# Decimals whose float sums depend on the order of addition, so relabellings that tie exactly
# can differ by an ulp in floating point.
EXACT_CASES = [
    ([0.1, 0.2, 0.3, 0.4, 0.7], [0.1, 0.2, 0.3, 0.6]),
    ([3.0, 1.0, 4.0, 1.0, 5.0], [9.0, 2.0, 6.0, 5.0]),
    ([0.3, 0.6, 0.9, 1.2, 2.1], [0.1, 0.2, 0.7, 0.4]),
]


@pytest.mark.parametrize(("a", "b"), EXACT_CASES)
@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_permutation_test_exact_matches_enumeration(a, b, alternative):
    res = permutation_test(a, b, alternative=alternative)
    assert res["exact"] is True and res["n_resamples"] is None  # C(9, 5) = 126 ≤ 10,000
    assert res["p_value"] == pytest.approx(_exact_permutation_p(a, b, alternative), abs=1e-12)
    assert res["statistic"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b), abs=1e-12)


def test_permutation_test_is_exact_when_resamples_cover_every_relabelling():
    a, b = EXACT_CASES[1]
    at = permutation_test(a, b, n_resamples=126)  # C(9, 5) = 126: scipy enumerates them all
    assert at["exact"] is True and at["n_resamples"] is None
    assert at["p_value"] == pytest.approx(_exact_permutation_p(a, b, "greater"), abs=1e-12)
    below = permutation_test(a, b, n_resamples=125)
    assert below["exact"] is False and below["n_resamples"] == 125


def test_permutation_test_monte_carlo():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.4, 1, 15), rng.normal(0, 1, 15)  # C(30, 15) ≈ 1.6e8 relabellings
    res = permutation_test(a, b, n_resamples=999, seed=3)
    assert res["exact"] is False and res["n_resamples"] == 999
    assert res["p_value"] >= 1 / 1000
    assert permutation_test(a, b, n_resamples=999, seed=3) == res
    # Fully separated groups: only the observed labelling reaches the observed statistic, and
    # the chance of drawing it is 1 / C(30, 15), so p is exactly the floor 1 / (999 + 1).
    sep = permutation_test(a + 100, b, n_resamples=999, seed=3)
    assert sep["p_value"] == pytest.approx(1 / 1000, abs=1e-15)


def test_permutation_test_monte_carlo_agrees_with_enumeration():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 10, 8).astype(float), rng.integers(1, 11, 8).astype(float)
    # Integer data: every mean difference is exact in float, so enumerate with numpy.
    pool = np.r_[a, b]
    idx = np.array(list(itertools.combinations(range(16), 8)))  # (12870, 8)
    in_a = np.zeros((len(idx), 16), dtype=bool)
    in_a[np.arange(len(idx))[:, None], idx] = True
    null = (pool * in_a).sum(1) / 8 - (pool * ~in_a).sum(1) / 8
    exact_p = (null >= a.mean() - b.mean()).mean()
    res = permutation_test(a, b, n_resamples=4000, seed=0)
    assert res["exact"] is False  # 12,870 relabellings > 4,000
    assert res["p_value"] == pytest.approx(exact_p, abs=4 * math.sqrt(exact_p * (1 - exact_p) / 4000) + 1e-3)


# --- cohens_d -----------------------------------------------------------------


def test_cohens_d_hand_value():
    # means 3 and 4; sample variances 2.5 and 4; pooled (4·2.5 + 2·4) / 6 = 3.
    assert cohens_d([1, 2, 3, 4, 5], [2, 4, 6]) == pytest.approx(-1 / math.sqrt(3), rel=1e-14)
    assert cohens_d([2, 4, 6], [1, 2, 3, 4, 5]) == pytest.approx(1 / math.sqrt(3), rel=1e-14)


def test_cohens_d_zero_spread_is_nan():
    assert math.isnan(cohens_d([1, 1, 1], [1, 1]))


@pytest.mark.parametrize("fn", [auc_bootstrap, roc_points, welch_test, permutation_test, cohens_d])
def test_non_finite_scores_are_rejected(fn):
    with pytest.raises(ValueError, match="finite"):
        fn([0.1, np.nan, 0.3], [0.2, 0.4])


def test_tpr_at_fpr_rejects_non_finite():
    with pytest.raises(ValueError, match="finite"):
        tpr_at_fpr([0.1, 0.2], [0.3, np.inf], 0.1)


def test_bootstrap_counts_are_resamples_with_replacement():
    from lmaudit.stats import _draw_counts

    counts = _draw_counts(np.random.default_rng(0), 50, 4000)
    assert counts.shape == (4000, 50) and (counts.sum(axis=1) == 50).all() and counts.min() >= 0
    # Each item's count is Binomial(50, 1/50): mean 1, variance 0.98.
    assert counts.mean() == pytest.approx(1.0) and counts.var() == pytest.approx(0.98, rel=0.05)


# --- proportion_ci and intervals at the edges -----------------------------------


def test_proportion_ci_at_zero_and_n_by_hand():
    # Clopper-Pearson at the edges has a closed form: 0/n → upper 1 − (α/2)^(1/n); n/n → lower (α/2)^(1/n).
    for n in (1, 3, 10, 250):
        assert proportion_ci(0, n) == pytest.approx((0.0, 1 - 0.025 ** (1 / n)), abs=1e-10)
        assert proportion_ci(n, n) == pytest.approx((0.025 ** (1 / n), 1.0), abs=1e-10)
    assert proportion_ci(0, 10)[1] == pytest.approx(0.3085, abs=1e-4)


@pytest.mark.parametrize("x, n", [(1, 7), (4, 9), (13, 40), (99, 100)])
def test_proportion_ci_is_clopper_pearson_and_wilson(x, n):
    # Clopper-Pearson as beta quantiles; Wilson's closed form (Wilson 1927).
    assert proportion_ci(x, n) == pytest.approx((st.beta.ppf(0.025, x, n - x + 1), st.beta.ppf(0.975, x + 1, n - x)),
                                                abs=1e-9)
    z, p = st.norm.ppf(0.975), x / n
    centre, half = (p + z**2 / (2 * n)) / (1 + z**2 / n), z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert proportion_ci(x, n, method="wilson") == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_proportion_ci_rejects_impossible_counts():
    for x, n in ((1, 0), (-1, 3), (4, 3)):
        with pytest.raises(ValueError):
            proportion_ci(x, n)
    with pytest.raises(ValueError, match="method"):
        proportion_ci(1, 3, method="wald")


def _score_interval_by_grid(auc, m, n, z=None):
    """The θ on a fine grid with |auc − θ| ≤ z·SE_HM(θ), SE from the test's own Hanley-McNeil formula."""
    z = z or st.norm.ppf(0.975)
    grid = np.linspace(0, 1, 200_001)
    inside = [t for t in grid if abs(auc - t) <= z * (_hanley_mcneil_se(t, m, n) if 0 < t < 1 else 0) + 1e-15]
    return min(inside), max(inside)


def test_auc_interval_at_perfect_separation_is_not_a_point():
    # One member, one non-member: the AUC is one Bernoulli trial and the interval is Wilson's
    # for 1/1, whose lower end solves (1 − θ)² = z²θ(1 − θ): θ = 1 / (1 + z²).
    z = st.norm.ppf(0.975)
    assert auc_bootstrap([1.0], [0.0]) == pytest.approx((1 / (1 + z**2), 1.0), abs=1e-9)
    assert auc_bootstrap([0.0], [1.0]) == pytest.approx((0.0, z**2 / (1 + z**2)), abs=1e-9)
    for m, n in ((2, 3), (5, 5), (20, 30)):
        pos, neg = np.arange(m) + 100.0, np.arange(n) * 1.0
        low, high = auc_bootstrap(pos, neg)
        assert high == 1.0 and low == pytest.approx(_score_interval_by_grid(1.0, m, n)[0], abs=1e-5)
        low0, high0 = auc_bootstrap(neg, pos)  # labels swapped: AUC 0, the mirror image
        assert low0 == 0.0 and high0 == pytest.approx(1 - low, abs=1e-9)
    # More documents, a tighter bound.
    lows = [auc_bootstrap(np.arange(k) + 100.0, np.arange(k) * 1.0)[0] for k in (3, 10, 100)]
    assert lows[0] < lows[1] < lows[2] < 1


def test_the_reported_auc_interval_holds_both_and_ranks_perfect_above_near_perfect():
    perfect = (np.arange(10) + 100.0, np.arange(10) * 1.0)
    near = (np.r_[np.arange(9) + 100.0, 4.5], np.arange(10) * 1.0)  # one member among the non-members
    for pos, neg in (perfect, near):
        low, high = auc_ci(pos, neg, seed=3)
        boot, score = auc_bootstrap(pos, neg, seed=3), auc_score_interval(_sklearn_auc(pos, neg), 10, 10)
        assert (low, high) == (min(boot[0], score[0]), max(boot[1], score[1]))
    assert _sklearn_auc(*near) == pytest.approx(0.95)
    assert auc_ci(*perfect)[0] >= auc_ci(*near)[0]
    assert auc_bootstrap(*perfect)[0] < auc_bootstrap(*near)[0]  # what either method alone did


def test_auc_score_interval_inside_matches_the_grid():
    for auc, m, n in ((0.5, 4, 6), (0.8, 10, 3)):
        assert auc_score_interval(auc, m, n) == pytest.approx(_score_interval_by_grid(auc, m, n), abs=1e-5)


def test_cluster_bootstrap_of_equal_sized_constant_groups_is_the_plain_bootstrap_of_the_groups():
    """Nine identical answers about one document are one draw, not nine: with every group's
    values equal and groups of one size, resampling groups is resampling the group values."""
    rng = np.random.default_rng(3)
    per_doc = rng.normal(size=40)
    values = np.repeat(per_doc, 9)
    groups = np.repeat([f"doc{i:02d}" for i in range(40)], 9)  # labels sort in the order of per_doc
    assert bootstrap_mean_ci(values, groups=groups, seed=5) == pytest.approx(bootstrap_mean_ci(per_doc, seed=5))
    # Resampled value by value, the same data look 3x (√9) more precise than they are.
    lo, hi = bootstrap_mean_ci(values, seed=5)
    clo, chi = bootstrap_mean_ci(values, groups=groups, seed=5)
    assert (chi - clo) / (hi - lo) == pytest.approx(3.0, rel=0.15)
