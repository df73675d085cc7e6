"""MUSE's and TOFU's unlearning metrics against hand computations and scipy's own tests."""

import math

import numpy as np
import pytest
from scipy import stats

from lmaudit.unlearning.metrics import (answer_probability, forget_quality, model_utility, privleak, truth_ratio,
                                        truth_ratio_score)


def test_privleak_needs_a_real_reference():
    assert privleak(0.75, 0.6) == pytest.approx(25.0)
    assert privleak(0.45, 0.6) == pytest.approx(-25.0)
    for bad in (None, float("nan"), 0.0):
        with pytest.raises(ValueError, match="retrain"):
            privleak(0.7, bad)


def test_truth_ratio_by_hand():
    # Right answer at probability 0.4 per token; wrong ones at 0.1 and 0.2: geometric mean sqrt(0.02).
    r = truth_ratio([math.log(0.4)], [[math.log(0.1), math.log(0.2)]])
    assert r[0] == pytest.approx(math.sqrt(0.1 * 0.2) / 0.4)
    with pytest.raises(ValueError, match="perturbed"):
        truth_ratio([0.0, 0.0], [[0.0]])


def test_truth_ratio_scores_reward_not_knowing_on_forget_and_knowing_elsewhere():
    knows = [0.1, 0.2]  # prefers the right answers
    unsure = [1.0, 1.0]  # cannot tell right from wrong
    assert truth_ratio_score(unsure, forget=True) == 1.0
    assert truth_ratio_score(knows, forget=True) == pytest.approx(0.15)  # mean of min(R, 1/R)
    assert truth_ratio_score(knows, forget=False) == pytest.approx(0.85)  # mean of max(0, 1 - R)
    assert truth_ratio_score(unsure, forget=False) == 0.0


def test_forget_quality_is_scipys_ks_test_with_its_n():
    rng = np.random.default_rng(0)
    u, r = rng.uniform(0, 1, 40), rng.uniform(0.2, 1.2, 35)
    got = forget_quality(u, r)
    expected = stats.ks_2samp(u, r)
    assert got == {"p_value": pytest.approx(expected.pvalue), "statistic": pytest.approx(expected.statistic),
                   "n_unlearned": 40, "n_retrain": 35}
    assert forget_quality(u, u)["p_value"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both"):
        forget_quality([], r)


def test_model_utility_is_the_harmonic_mean():
    values = [0.9, 0.5, 0.7]
    assert model_utility(values) == pytest.approx(3 / sum(1 / v for v in values))
    assert model_utility([0.9, 0.0]) == 0.0
    with pytest.raises(ValueError):
        model_utility([0.5, float("nan")])


def test_answer_probability_is_the_length_normalised_probability():
    tokens = np.log([0.5, 0.25])  # an answer of two tokens
    assert answer_probability([tokens.mean()])[0] == pytest.approx(math.sqrt(0.5 * 0.25))
