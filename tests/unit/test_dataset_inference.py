"""Dataset inference on synthetic features: calibration under the null, power, no leakage from B."""

import warnings

import numpy as np
import pytest

from lmaudit.data import Record
from lmaudit.membership.dataset_inference import DatasetInferenceConfig, run_dataset_inference
from lmaudit.membership.dataset_test import (
    NothingLearnedWarning,
    dataset_inference_test,
    null_calibration,
    p_value_curve,
)


def _features(rng, n, shift=0.0, f=5):
    x = rng.normal(size=(n, f))
    x[:, 0] += shift
    x[:, 1] = 0.7 * x[:, 0] + 0.3 * x[:, 1]  # correlated features, as attack scores are
    return x


def test_false_positive_rate_under_the_null_is_near_alpha():
    rng = np.random.default_rng(0)
    null = null_calibration(_features(rng, 120), trials=200, alpha=0.05, seed=0, clip=0.025, l2_strength=1.0)
    assert null["trials"] == 200 and len(null["p_values"]) == 200
    # A valid test rejects ~5% of the time: 10 of 200 expected; [2, 18] holds with >99% probability.
    assert 0.01 <= null["false_positive_rate"] <= 0.09
    # Valid p-values: P(p <= t) <= t under the null, up to sampling error (sd <= 0.035 at 200).
    p = np.array(null["p_values"])
    for t in (0.01, 0.05, 0.1, 0.2, 0.5):
        assert np.mean(p <= t) <= t + 0.07
    lo, hi = null["false_positive_rate_ci"]
    assert lo <= null["false_positive_rate"] <= hi


def test_false_positive_rate_at_the_reported_size_on_fresh_null_data():
    """The size the demo reports, 100 vs 100 documents (halves B of 50 vs 50), on 300
    independent null data sets: the false-positive rate is measured, not just checked by
    splitting one validation set."""
    rng = np.random.default_rng(11)
    p = np.array([dataset_inference_test(_features(rng, 100), _features(rng, 100), seed=t, warn=False)["p_value"]
                  for t in range(300)])
    # 15 rejections expected at alpha = 0.05; more than 27 has probability < 0.1% for a valid test
    # (fewer is allowed: p = 1 whenever A favours no feature makes the test conservative there).
    assert np.sum(p < 0.05) <= 27
    for t in (0.01, 0.1, 0.2, 0.5):
        assert np.mean(p <= t) <= t + 0.06


def test_null_calibration_runs_at_the_reported_size_when_the_pool_allows_it(monkeypatch):
    import lmaudit.membership.dataset_test as dt

    seen = []
    real = dt.dataset_inference_test

    def spy(a, b, **kw):
        out = real(a, b, **kw)
        seen.append((len(a), len(b), out["n_b"]["suspect"], out["n_b"]["validation"]))
        return out

    monkeypatch.setattr(dt, "dataset_inference_test", spy)
    rng = np.random.default_rng(12)
    null = null_calibration(_features(rng, 230), sizes=(100, 101), trials=5, alpha=0.05, seed=0, clip=0.025,
                            l2_strength=1.0)
    assert seen == [(100, 101, 50, 51)] * 5
    assert null["at_reported_size"] and "size_note" not in null and null["pool"] == 230
    assert null["calibrated_size"] == null["reported_size"] == {"suspect": {"documents": 100, "a": 50, "b": 50},
                                                                 "validation": {"documents": 101, "a": 50, "b": 51}}
    # A pool too small for two disjoint sets of the reported sizes: the largest in the same
    # ratio, never a draw with replacement, and the results say so.
    seen.clear()
    null = null_calibration(_features(rng, 100), sizes=(100, 100), trials=3, alpha=0.05, seed=0, clip=0.025,
                            l2_strength=1.0)
    assert seen == [(50, 50, 25, 25)] * 3 and not null["at_reported_size"]
    assert null["calibrated_size"]["suspect"] == {"documents": 50, "a": 25, "b": 25}
    assert "not the reported 100 vs 100" in null["size_note"] and "null_pool" in null["size_note"]


def test_a_null_pool_calibrates_the_run_at_its_reported_size_without_changing_the_test(corpus_texts):
    from lmaudit.models.fake import FakeLM

    recs = lambda texts, tag: [Record(id=f"{tag}{i}", text=t, source=tag, line=i + 1) for i, t in enumerate(texts)]  # noqa: E731
    model = FakeLM(corpus_texts[:12])
    suspect, validation, pool = recs(corpus_texts[:12], "s"), recs(corpus_texts[12:30], "v"), recs(corpus_texts[30:], "p")
    config = DatasetInferenceConfig(attacks="loss,max_k@0.2,recall", null_trials=4)
    alone = run_dataset_inference(model, suspect, validation, config=config).results
    pooled = run_dataset_inference(model, suspect, validation, config=config, null_pool=pool)
    r = pooled.results
    # ReCaLL's prefix is still drawn from the validation set alone: the reported test is the same.
    assert (r["p_value"], r["feature_weights"], r["excluded"]) == (alone["p_value"], alone["feature_weights"], alone["excluded"])
    assert (r["n_suspect"], r["n_validation"]) == (12, 13)
    assert not alone["null_calibration"]["at_reported_size"]  # 13 validation documents cannot hold 12 + 13
    null = r["null_calibration"]
    assert null["at_reported_size"] and null["pool"] == 13 + 30 and null["trials"] == 4
    assert null["calibrated_size"]["suspect"]["documents"] == 12 and null["calibrated_size"]["validation"]["b"] == 7
    assert [s["set"] for s in pooled.samples].count("null_pool") == 30
    with pytest.raises(ValueError, match="null_pool documents also in"):
        run_dataset_inference(model, suspect, validation, config=config, null_pool=validation[:2])
    twice = [*pool, Record(id="again", text=pool[3].text, source="p", line=31)]
    with pytest.raises(ValueError, match=r"repeated in the pool \(again \(line 31\) repeats p3 \(line 4\)\)"):
        run_dataset_inference(model, suspect, validation, config=config, null_pool=twice)


def test_a_pool_documents_neighbours_are_drawn_from_the_main_passs_words_not_the_pools(corpus_texts):
    """The default word-swap neighbours draw from the words of the texts perturbed together; a
    pool document must get them from the suspect and validation words, as a validation document
    does, so its feature cannot depend on which other documents are in the pool."""
    from lmaudit.models.fake import FakeLM

    recs = lambda texts, tag: [Record(id=f"{tag}{i}", text=t, source=tag, line=i + 1) for i, t in enumerate(texts)]  # noqa: E731
    model = FakeLM(corpus_texts[:10])
    suspect, validation, pool = recs(corpus_texts[:10], "s"), recs(corpus_texts[10:22], "v"), recs(corpus_texts[22:], "p")
    config = DatasetInferenceConfig(attacks="loss,neighbourhood", null_trials=2)

    def features(pool_docs):
        rows = run_dataset_inference(model, suspect, validation, config=config, null_pool=pool_docs).samples
        return {(r["set"], r["id"]): r["features"]["neighbourhood"] for r in rows}

    small, large = features(pool[:10]), features(pool)
    assert all(value is not None for value in small.values())
    assert {k: v for k, v in large.items() if k in small} == small


def test_detects_a_shifted_suspect_set_in_the_declared_direction():
    rng = np.random.default_rng(1)
    validation = _features(rng, 300)  # halves of 150: expected t about 0.8 * sqrt(75) = 7
    res = dataset_inference_test(_features(rng, 300, shift=0.8), validation, seed=0)
    assert res["p_value"] < 1e-3 and res["effect_size"] > 0.5
    assert res["weights"][0] > 0  # feature 0 carries the shift
    # Suspect documents that look LESS like members give no evidence: the weights cannot
    # turn negative, so the one-sided test keeps its direction ...
    less = _features(rng, 300, shift=-0.8)
    res = dataset_inference_test(less, validation, seed=0)
    assert res["p_value"] > 0.5 and min(res["weights"]) >= 0
    # ... whereas the paper's unconstrained classifier flips its weights and "detects" them.
    assert dataset_inference_test(less, validation, seed=0, nonnegative=False)["p_value"] < 1e-3


def test_a_classifier_that_learned_nothing_says_so():
    rng = np.random.default_rng(8)
    # Every feature carries the membership signal, but oriented lower = member: after the
    # sign error the suspect set looks less like training data on every column.
    members, validation = rng.normal(0.8, 1, size=(200, 3)), rng.normal(0, 1, size=(200, 3))
    with pytest.warns(NothingLearnedWarning, match="learned nothing"):
        res = dataset_inference_test(-members, -validation, seed=0)
    assert res["classifier_learned_nothing"] and res["weights"] == [0.0, 0.0, 0.0]
    assert res["p_value"] == 1.0 and "oriented the wrong way" in res["note"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right orientation learns, and says nothing
        res = dataset_inference_test(members, validation, seed=0)
    assert not res["classifier_learned_nothing"] and res["p_value"] < 1e-6 and "note" not in res


def test_a_run_whose_classifier_learned_nothing_flags_it_in_results_and_on_the_terminal(corpus_texts, capsys):
    from lmaudit.cli.dataset_inference import show_dataset_inference
    from lmaudit.models.fake import FakeLM

    recs = lambda texts, tag: [Record(id=f"{tag}{i}", text=t, source=tag, line=i + 1) for i, t in enumerate(texts)]  # noqa: E731
    # The model memorised the *validation* documents: the suspect set looks less like training data.
    model = FakeLM(corpus_texts[20:40])
    res = run_dataset_inference(model, recs(corpus_texts[:20], "s"), recs(corpus_texts[20:40], "v"),
                                config=DatasetInferenceConfig(attacks="loss,min_k@0.2,max_k@0.2", null_trials=0))
    r = res.results
    assert r["classifier_learned_nothing"] is True and set(r["feature_weights"].values()) == {0.0}
    assert r["p_value"] == 1.0 and not r["significant"] and "learned nothing" in r["test"]["note"]
    show_dataset_inference(r)
    shown = " ".join(capsys.readouterr().err.split())
    assert "WARNING: the classifier learned nothing on half A" in shown


def test_nonnegative_logistic_equals_sklearn_when_no_bound_is_active():
    from sklearn.linear_model import LogisticRegression

    from lmaudit.membership.dataset_test import NonNegativeLogistic

    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 3))
    y = (x @ np.array([1.0, 0.5, 2.0]) + rng.normal(size=200) > 0).astype(int)
    ours = NonNegativeLogistic(C=0.5).fit(x, y)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-4)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-4)
    flipped = NonNegativeLogistic(C=0.5).fit(-x, y)  # every feature now points the wrong way
    assert np.allclose(flipped.coef_, 0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # B's 1e6 values, on purpose
def test_nothing_fitted_sees_half_b():
    rng = np.random.default_rng(2)
    suspect, validation = _features(rng, 60, shift=0.3), _features(rng, 60)
    first = dataset_inference_test(suspect, validation, seed=3)
    changed = suspect.copy()
    changed[first["rows"]["suspect_b"]] = 1e6  # wild values in B only
    second = dataset_inference_test(changed, validation, seed=3)
    assert second["weights"] == first["weights"] and second["intercept"] == first["intercept"]
    assert not np.allclose(second["b_scores"]["suspect"], first["b_scores"]["suspect"])
    assert second["n_a"] == {"suspect": 30, "validation": 30} and second["n_b"] == {"suspect": 30, "validation": 30}


def test_permutation_option_agrees_with_welch_on_a_clear_effect():
    rng = np.random.default_rng(4)
    res = dataset_inference_test(_features(rng, 40, shift=1.5), _features(rng, 40), seed=0, permutation=True,
                                 n_permutations=2000)
    assert res["permutation"]["p_value"] == pytest.approx(1 / 2001)  # nothing in the null beats it
    assert res["p_value"] < 1e-4


def test_p_value_curve_shrinks_with_more_documents():
    rng = np.random.default_rng(5)
    curve = p_value_curve(rng.normal(1, 1, 200), rng.normal(0, 1, 200), sizes=(2, 5, 20, 100, 200, 500), draws=20,
                          alpha=0.05, seed=0)
    assert [c["n"] for c in curve] == [2, 5, 20, 100, 200]  # 500 is more than there is
    medians = [c["median_p_value"] for c in curve]
    assert medians[-1] < 1e-10 and medians[2] > medians[3] > medians[4]


def test_too_few_documents_is_an_error():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="at least 4"):
        dataset_inference_test(_features(rng, 3), _features(rng, 10))


def test_unscorable_documents_are_listed_not_dropped(tiny_lm, corpus_texts):
    recs = lambda texts, tag: [Record(id=f"{tag}{i}", text=t, source=tag, line=i + 1) for i, t in enumerate(texts)]  # noqa: E731
    suspect = recs(corpus_texts[:12] + [""], "s")
    validation = recs(corpus_texts[12:26], "v")
    res = run_dataset_inference(tiny_lm, suspect, validation, batch_size=8,
                                config=DatasetInferenceConfig(attacks="loss,min_k@0.2", null_trials=5))
    r = res.results
    assert r["n_suspect"] == 12 and r["n_validation"] == 14
    assert [e["id"] for e in r["excluded"]] == ["s12"] and "empty text" in r["excluded"][0]["errors"]["loss"]
    assert len(res.samples) == 27 and res.samples[12]["error"].startswith("excluded")
    assert sorted(r["feature_weights"]) == ["loss", "min_k@0.2"]
    assert {s["half"] for s in res.samples if "error" not in s} == {"A", "B"}
    assert r["null_calibration"]["trials"] == 5


def test_null_calibration_is_skipped_and_said_so_with_too_few_validation_documents(tiny_lm, corpus_texts):
    recs = lambda texts, tag: [Record(id=f"{tag}{i}", text=t, source=tag, line=i + 1) for i, t in enumerate(texts)]  # noqa: E731
    res = run_dataset_inference(tiny_lm, recs(corpus_texts[:8], "s"), recs(corpus_texts[8:14], "v"),
                                config=DatasetInferenceConfig(attacks="loss", null_trials=10))
    null = res.results["null_calibration"]
    assert null["trials"] == 0 and "at least 8" in null["skipped"] and null["false_positive_rate"] is None


def test_l2_strength_is_the_penalty_weight_one_over_sklearns_c():
    """l2_strength λ minimises (λ/2)‖w‖² + Σ log-loss: the same weights as scikit-learn's
    LogisticRegression at C = 1/λ, and a stronger penalty gives smaller weights."""
    from sklearn.linear_model import LogisticRegression

    from lmaudit.membership.dataset_test import fit_on_a

    rng = np.random.default_rng(5)
    s_a, v_a = _features(rng, 80, shift=0.7), _features(rng, 80)
    norms = []
    for lam in (0.25, 1.0, 8.0):
        fitted = fit_on_a(s_a, v_a, clip=0.0, l2_strength=lam, nonnegative=False)
        x = fitted.transform(np.vstack([s_a, v_a]))  # clip 0: only z-normalised
        y = np.r_[np.ones(80), np.zeros(80)]
        ref = LogisticRegression(C=1 / lam, tol=1e-10, max_iter=10_000).fit(x, y)
        np.testing.assert_allclose(fitted.model.coef_, ref.coef_, atol=1e-3)  # fit_on_a uses the default tol
        norms.append(np.linalg.norm(fitted.model.coef_))
    assert norms[0] > norms[1] > norms[2]
    with pytest.raises(ValueError, match="l2_strength must be > 0"):
        DatasetInferenceConfig(l2_strength=0)


@pytest.mark.parametrize("bad", [dict(alpha=2.0), dict(alpha=0.0), dict(clip=0.5), dict(l2_strength=0.0)])
def test_config_values_outside_their_range_are_refused(bad):
    with pytest.raises(ValueError):
        DatasetInferenceConfig(**bad)

