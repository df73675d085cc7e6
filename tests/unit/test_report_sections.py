"""Report sections: each renderer's verdict against figures worked out by hand, its level at
the boundaries of its rules, its plots when there is data (and a note when there is not),
and a full page rendered (StrictUndefined templates) on degenerate runs: empty sets, one
class, NaN figures, error rows, rates of 0 of n.

Intervals quoted below are Clopper-Pearson 95% intervals; for 0 of n the upper bound is
1 - 0.025 ** (1 / n) (0 of 100: 3.62%, 0 of 1,000: 0.368%).
"""

import math

import pytest

from lmaudit.report import page as page_module
from lmaudit.report.load import load_runs
from lmaudit.report.page import Page, render_report
from lmaudit.report.sections import dataset_inference as di
from lmaudit.report.sections import demo as demo_section
from lmaudit.report.sections import membership, paired, score, sections

NAN = float("nan")


def build(folder):
    """The section of the run in ``folder``, rendered on a fresh page."""
    run = load_runs([folder])[0]
    return sections.get(run.kind)(run, Page(page_module._environment()))


def page_of(folder) -> str:
    return render_report(load_runs([folder]))


# --- membership -------------------------------------------------------------------------


def attack(auc, ci, *, n_m=100, n_n=100, tpr1=None):
    out = {"auc": auc, "auc_ci": ci, "n_members": n_m, "n_nonmembers": n_n, "tpr_at_fpr": {}}
    if tpr1 is not None:
        out["tpr_at_fpr"]["0.01"] = tpr1
    return out


def mia(attacks, *, flag=False, baselines=None):
    return {"n_members": 100, "n_nonmembers": 100, "attacks": attacks, "distribution_shift_flag": flag,
            "distribution_shift": {"flagged_by": ["length"] if flag else [],
                                   "rule": "AUC >= 0.6 and 95% CI lower bound > 0.5"},
            "blind_baselines": baselines if baselines is not None else
            {"length": {"auc": 0.52, "auc_ci": [0.44, 0.6]}, "bag_of_words": {"auc": 0.48, "auc_ci": [0.4, 0.56]}}}


@pytest.mark.parametrize("low, level", [(0.6, "strong"), (0.5999, "evidence"), (0.5001, "evidence"), (0.5, "weak"),
                                        (NAN, "weak")])
def test_membership_level_follows_the_best_attacks_interval(low, level):
    _, got = membership.verdict(mia({"loss": attack(0.7, [low, 0.8])}))
    assert got == level


def test_membership_verdict_sentences():
    tpr1 = {"tpr": 0.0, "tpr_ci": [0.0, 0.0711], "n_members": 50, "unreliable": True}
    r = mia({"loss": attack(0.75, [0.66, 0.83], n_m=50, n_n=60, tpr1=tpr1)})
    sentences, level = membership.verdict(r)
    assert level == "strong"
    assert sentences[0] == ("The model tells members from non-members well: the best of 1 attacks, loss, has AUC 0.75 "
                            "(95% CI 0.66-0.83) on 50 members and 60 non-members.")
    # A rate of 0 of 50 keeps its interval's upper bound (1 - 0.025 ** (1 / 50) = 7.1%).
    assert sentences[1] == ("At a 1% false-positive rate, loss flags 0 of 50 (0.0%, 95% CI 0.0%-7.1%) of the members "
                            "(unreliable: too few non-members for a 1% FPR).")
    assert sentences[2] == ("No distribution shift: the best blind baseline (length, text only) has AUC 0.52 "
                            "(95% CI 0.44-0.6).")


def test_membership_a_nan_auc_is_no_auc():
    # NaN first used to win max() (nothing compares greater than NaN): the best was "broken".
    r = mia({"broken": attack(NAN, [NAN, NAN]), "loss": attack(0.7, [0.62, 0.78])})
    sentences, level = membership.verdict(r)
    assert level == "strong" and "the best of 1 attacks, loss, has AUC 0.7" in sentences[0]
    assert membership.verdict(mia({"broken": attack(NAN, None)}))[1] == "weak"


def test_membership_shift_flag_warns_whatever_the_auc():
    sentences, level = membership.verdict(mia({"loss": attack(0.9, [0.85, 0.95])}, flag=True))
    assert level == "warning" and sentences[0].startswith("The attacks separate the two sets, but so does the text alone")
    # At chance, the attacks do not "separate the two sets": the lead must not say they do.
    sentences, level = membership.verdict(mia({"loss": attack(0.5, [0.42, 0.58])}, flag=True))
    assert level == "warning" and sentences[0].startswith("The attacks do not tell members from non-members better")
    assert not any(s.startswith("No distribution shift") for s in sentences)
    warning = membership.shift_warning(mia({}, flag=True))
    assert warning.startswith("Distribution shift: length (AUC 0.52 (95% CI 0.44-0.6)) tells the two sets apart")
    assert "not the model's training" in warning


def test_membership_baselines_not_run_is_said_even_when_some_are_listed():
    r = mia({"loss": attack(0.7, [0.62, 0.78])})
    r["distribution_shift_flag"] = None  # not run: no flag, whatever blind_baselines holds
    sentences, level = membership.verdict(r)
    assert level == "evidence"  # an AUC interval from 0.62 would be strong, but no shift check ran
    assert sentences[-1].startswith("The blind baselines were not run")
    assert not any(s.startswith("No distribution shift") for s in sentences)


def test_membership_interval_below_chance_is_pointed_out_and_empty_runs_are_weak():
    sentences, level = membership.verdict(mia({"loss": attack(0.3, [0.22, 0.38])}))
    assert level == "weak" and any("whole interval is below 0.5" in s for s in sentences)
    sentences, level = membership.verdict({"attacks": {}, "n_members": 0, "n_nonmembers": 0})
    assert (sentences, level) == (["No attack produced a score (0 members, 0 non-members)."], "weak")


def test_membership_renders_with_one_class_and_nan_scores(make_run):
    rows = [{"id": f"m{i}", "set": "member", "n_tokens": 5, "scores": {"loss": NAN if i == 0 else -i}} for i in range(4)]
    folder = make_run("membership", {**mia({"loss": attack(None, None, n_n=0)})}, rows)
    section = build(folder)
    assert section.level == "weak" and "<svg" not in section.body  # one class: no AUC, no ROC, no best attack
    assert '<div class="samples"' in section.body  # the browser's holder as markup, not escaped text
    assert "No attack produced a score" in page_of(folder)


# --- dataset inference ------------------------------------------------------------------


def di_results(**over):
    r = {
        "p_value": 2.0e-14, "significant": True, "alpha": 0.05, "n_suspect": 100, "n_validation": 100,
        "test": {"test": "welch_t", "alternative": "greater", "statistic": 10.3, "df": 97.0, "p_value": 2.0e-14},
        "classifier_learned_nothing": False, "effect_size": {"cohens_d": 2.05}, "permutation": None,
        "feature_weights": {"loss": 0.6, "zlib": 0.0, "min_k@0.2": 0.3}, "intercept": 0.1, "dropped_features": [],
        "split": {"a": {"suspect": 50, "validation": 50}, "b": {"suspect": 50, "validation": 50}},
        "null_calibration": {"pool": 1000, "trials": 200, "alpha": 0.05, "rejections": 14, "trials_learned_nothing": 3,
                             "false_positive_rate": 0.07, "false_positive_rate_ci": [0.0388, 0.1147],
                             "at_reported_size": True,
                             "reported_size": {"suspect": {"documents": 100, "a": 50, "b": 50},
                                               "validation": {"documents": 100, "a": 50, "b": 50}},
                             "calibrated_size": {"suspect": {"documents": 100, "a": 50, "b": 50},
                                                 "validation": {"documents": 100, "a": 50, "b": 50}}},
        "p_value_curve": [{"n": 2, "median_p_value": 0.2, "rejection_rate": 0.1, "draws": 20},
                          {"n": 10, "median_p_value": 1e-3, "rejection_rate": 0.95, "draws": 20},
                          {"n": 50, "median_p_value": 2.0e-14, "rejection_rate": 1.0, "draws": 20}],
        "blind_baselines": {"length": {"auc": 0.53, "auc_ci": [0.45, 0.61], "description": "lengths"}},
        "distribution_shift_flag": False,
        "distribution_shift": {"flagged_by": [], "rule": "AUC >= 0.6 and 95% CI lower bound > 0.5"},
        "excluded": [], "n_errors": 0, "n_pool_errors": 0,
    }
    for key, value in over.items():
        if key.startswith("null_") and key != "null_calibration":
            r["null_calibration"][key[5:]] = value
        else:
            r[key] = value
    return r


def test_dataset_inference_strong_verdict_reads_as_the_issue_asks():
    sentences, level, warnings = di.verdict(di_results())
    assert (level, warnings) == ("strong", [])
    assert sentences == [
        "Dataset inference: strong evidence that the model was trained on the suspect set (p = 2.0e-14, one-sided "
        "Welch t-test, 50 suspect + 50 validation documents held out from fitting).",
        "Effect size on the held-out half: Cohen's d = 2.05 (suspect minus validation classifier scores).",
        # 14 / 200 = 7.0%; Clopper-Pearson 3.88%-11.47%
        "False-positive check: 14 of 200 validation-vs-validation trials rejected at α = 0.05 (7.0%, 95% CI "
        "3.9%-11.5%), at the reported size.",
        "No distribution shift: the best blind baseline (length, text only) has AUC 0.53 (95% CI 0.45-0.61).",
    ]


@pytest.mark.parametrize("p, level", [
    (0.05 / 100, "strong"),  # exactly α / 100
    (0.000501, "evidence"),
    (0.0499, "evidence"),
    (0.05, "weak"),  # p = α does not reject
    (0.0501, "weak"),
])
def test_dataset_inference_level_at_the_p_value_boundaries(p, level):
    sentences, got, _ = di.verdict(di_results(p_value=p))
    assert got == level
    if level == "evidence" and p > 0.0005:
        assert "Not rated strong: p is below α but not below α / 100 = 5e-4." in sentences
    if level == "weak":
        assert sentences[0].startswith("Dataset inference: no evidence at α = 0.05 that the model was trained")
        assert "This does not show that it was not" in sentences[0]


@pytest.mark.parametrize("high, level", [(0.125, "strong"), (0.1251, "evidence")])  # 2.5 α = 0.125
def test_dataset_inference_strong_needs_a_false_positive_check_that_rules_out_high_rates(high, level):
    sentences, got, _ = di.verdict(di_results(null_false_positive_rate_ci=[0.04, high]))
    assert got == level
    if level == "evidence":
        assert any("cannot rule out a rate above 2.5 α (4.0%-12.5%)" in s for s in sentences)


def test_dataset_inference_anti_conservative_check_is_a_warning():
    # 30 of 200 rejected: the interval's lower bound (10.4%) is above α.
    r = di_results(null_rejections=30, null_false_positive_rate=0.15, null_false_positive_rate_ci=[0.1036, 0.2070])
    sentences, level, warnings = di.verdict(r)
    assert level == "warning" and "too small to trust" in sentences[0]
    assert len(warnings) == 1 and "anti-conservative" in warnings[0] and "starts at 10.4%" in warnings[0]
    # Not significant: still weak (no evidence either way), and still warned.
    sentences, level, warnings = di.verdict({**r, "p_value": 0.3})
    assert level == "weak" and "anti-conservative" in warnings[0]


def test_dataset_inference_shift_flag_is_a_red_warning_about_the_data_not_the_model():
    r = di_results(distribution_shift_flag=True,
                   distribution_shift={"flagged_by": ["length"], "rule": "AUC >= 0.6 and 95% CI lower bound > 0.5"},
                   blind_baselines={"length": {"auc": 0.8, "auc_ci": [0.72, 0.87]}})
    sentences, level, warnings = di.verdict(r)
    assert level == "warning"
    assert "cannot show whether the model trained on the suspect set" in sentences[0]
    assert warnings == ["Distribution shift: length (AUC 0.8 (95% CI 0.72-0.87)) tells the two sets apart from the "
                        "text alone, without the model (AUC >= 0.6 and 95% CI lower bound > 0.5). The p-value "
                        "measures the difference between the two data sets, not the model's training: do not read "
                        "it as evidence that the model trained on the suspect set."]
    assert not any(s.startswith("No distribution shift") for s in sentences)


@pytest.mark.parametrize("over, reason", [
    ({"null_at_reported_size": False}, "ran at a smaller size than the test"),
    ({"distribution_shift_flag": None}, "no blind baseline checked"),
    ({"null_trials": 0, "null_rejections": 0, "null_false_positive_rate": None, "null_false_positive_rate_ci": None},
     "no false-positive check shows"),
])
def test_dataset_inference_what_keeps_a_tiny_p_value_from_strong(over, reason):
    sentences, level, _ = di.verdict(di_results(**over))
    assert level == "evidence" and any(reason in s for s in sentences if s.startswith("Not rated strong"))


def test_dataset_inference_an_unconstrained_classifier_is_not_strong():
    r = {**di_results(), "provenance": {"config": {"nonnegative": False}}}
    sentences, level, _ = di.verdict(r)
    assert level == "evidence" and any("in either direction" in s for s in sentences)


def test_dataset_inference_calibration_sentences_for_zero_skipped_and_smaller_sizes():
    # 0 of 100 rejected keeps its interval: 1 - 0.025 ** (1 / 100) = 3.6%.
    _, check, _ = di.calibration(di_results(null_trials=100, null_rejections=0, null_false_positive_rate=0.0,
                                            null_false_positive_rate_ci=[0.0, 0.0362]))
    assert check == ("False-positive check: 0 of 100 validation-vs-validation trials rejected at α = 0.05 (0.0%, "
                     "95% CI 0.0%-3.6%), at the reported size.")
    state, check, _ = di.calibration(di_results(null_trials=0, null_skipped="needs at least 8 known non-members, got 6"))
    assert (state, check) == ("none", "False-positive check not run: needs at least 8 known non-members, got 6.")
    r = di_results(null_at_reported_size=False)
    r["null_calibration"]["calibrated_size"] = {"suspect": {"documents": 50, "a": 25, "b": 25},
                                                "validation": {"documents": 50, "a": 25, "b": 25}}
    _, check, _ = di.calibration(r)
    assert "at 50 vs 50 documents, smaller than the reported 100 vs 100" in check
    # A run that recorded no interval gets the same Clopper-Pearson one: 0 of 100, up to 3.6%.
    state, check, interval = di.calibration(di_results(null_trials=100, null_rejections=0,
                                                       null_false_positive_rate_ci=None))
    assert state == "ok" and "(0.0%, 95% CI 0.0%-3.6%)" in check and interval[1] == pytest.approx(0.0362, abs=1e-4)
    # Sizes the run wrote only in part: no sentence about them, and no error.
    r["null_calibration"]["calibrated_size"] = {"suspect": {}}
    assert di.calibration(r)[1].endswith("(7.0%, 95% CI 3.9%-11.5%).")


def test_dataset_inference_nothing_learned_nan_and_missing_p_values():
    sentences, level, _ = di.verdict(di_results(p_value=1.0, significant=False, classifier_learned_nothing=True))
    assert level == "weak" and "put weight on no feature" in sentences[0] and "not evidence against" in sentences[0]
    assert not any(s.startswith("Effect size") for s in sentences)
    for p in (NAN, None):
        sentences, level, _ = di.verdict(di_results(p_value=p))
        assert level == "warning" and sentences[0].startswith("Dataset inference: no p-value was recorded")
    sentences, _, _ = di.verdict(di_results(n_errors=1, n_pool_errors=3))
    assert ("1 suspect or validation document could not be scored and was left out of the test (listed in "
            "results.json's excluded).") in sentences
    assert "3 null-pool documents could not be scored and were left out of the false-positive check." in sentences


def di_samples():
    rows = [{"id": f"s{i}", "set": "suspect", "half": "AB"[i % 2], "classifier_score": None if i % 2 == 0 else 1.0 + i,
             "features": {"loss": -1.0}} for i in range(6)]
    rows += [{"id": f"v{i}", "set": "validation", "half": "AB"[i % 2], "classifier_score": None if i % 2 == 0 else -i,
              "features": {"loss": -2.0}} for i in range(6)]
    rows.append({"id": "bad", "set": "suspect", "half": None, "classifier_score": None, "features": {"loss": None},
                 "error": "excluded: unscored features"})
    return rows


def test_dataset_inference_section_plots_the_curve_the_null_p_values_and_the_weights(make_run):
    p_values = [0.01, 0.2, 0.5, 0.9, 1.0, NAN]
    folder = make_run("dataset-inference", di_results(null_p_values=p_values, n_errors=1), di_samples())
    section = build(folder)
    assert section.body.count("<svg") == 3
    assert "p-values of the validation-vs-validation trials" in section.body
    assert "recorded only the counts" not in section.body
    assert '<div class="samples"' in section.body
    html = page_of(folder)
    assert "excluded: unscored features" in html  # the error row travels into the sample browser
    assert "20 of 20 (100.0%, 95% CI 83.2%-100.0%)" in html  # the curve's rejection rate at n = 50, with its n


def test_dataset_inference_section_without_recorded_p_values_says_so(make_run):
    folder = make_run("dataset-inference", di_results(), di_samples())
    section = build(folder)
    assert section.body.count("<svg") == 2  # curve and weights; no histogram to invent
    assert "recorded only the counts above" in section.body
    assert "100 vs 100 documents (half B 50 vs 50)" in section.body
    partial = di_results(null_calibrated_size={"suspect": {"documents": 40}}, null_at_reported_size=False)
    section = build(make_run("dataset-inference", partial, [], name="partial"))
    assert "40 vs n/a documents (half B n/a vs n/a)" in section.body


def test_dataset_inference_section_on_an_empty_degenerate_run(make_run):
    r = di_results(p_value=NAN, feature_weights={"loss": 0.0}, p_value_curve=[], blind_baselines={},
                   distribution_shift_flag=None, split={}, test={},
                   null_calibration={"trials": 0, "skipped": "needs at least 8 known non-members, got 0"})
    folder = make_run("dataset-inference", r, [])
    section = build(folder)
    assert section.level == "warning" and "<svg" not in section.body
    assert "No p-value curve to draw" in section.body and "Every feature weight is 0" in section.body
    page_of(folder)
    # A curve whose every median is 0 (underflow) or NaN cannot be drawn on a log axis either.
    r = di_results(p_value_curve=[{"n": 2, "median_p_value": 0.0, "rejection_rate": 1.0, "draws": 20},
                                  {"n": 5, "median_p_value": None, "rejection_rate": None, "draws": 0}],
                   feature_weights={})
    section = build(make_run("dataset-inference", r, [], name="underflow"))
    assert "<svg" not in section.body and "no size has a positive, finite median p-value" in section.body


def test_dataset_inference_records_each_null_trials_p_value(corpus_texts, tmp_path):
    from lmaudit.data import Record
    from lmaudit.membership.dataset_inference import DatasetInferenceConfig, dataset_inference_to_dir
    from lmaudit.models.fake import FakeLM

    recs = lambda texts, tag: [Record(id=f"{tag}{i}", text=t, source=tag, line=i + 1) for i, t in enumerate(texts)]  # noqa: E731
    written = dataset_inference_to_dir(FakeLM(corpus_texts[:10]), recs(corpus_texts[:10], "s"),
                                       recs(corpus_texts[10:30], "v"), tmp_path / "di",
                                       config=DatasetInferenceConfig(attacks="loss,max_k@0.2", null_trials=5))
    null = written["null_calibration"]
    assert len(null["p_values"]) == 5 and all(0 <= p <= 1 for p in null["p_values"])
    assert null["rejections"] == sum(p < null["alpha"] for p in null["p_values"])
    assert "p-values of the validation-vs-validation trials" in page_of(tmp_path / "di")


# --- paired test ------------------------------------------------------------------------


def paired_results(pt=1.1e-53, pw=8.6e-33, **over):
    return {"n_items": 200, "n_private_versions": 3, "mean_difference": 0.976, "n_zero_differences": 0,
            "effect_size": {"d_z": 1.51},
            "paired_t": {"statistic": -21.36, "df": 199, "p_value": pt, "alternative": "public loss < mean private loss"},
            "wilcoxon": {"statistic": 19777.0, "p_value": pw,
                         "alternative": "differences (private - public) centred above 0"},
            "p_value": pt, **over}


def test_paired_strong_verdict_names_both_tests_and_their_directions():
    sentences, level = paired.verdict(paired_results())
    assert level == "strong"
    assert sentences[0] == ("Paired test: strong evidence that the model was trained on the published versions: it "
                            "gives them a lower loss than their private rephrasings, which it cannot have seen (200 "
                            "items, 3 private versions each; mean loss difference (private − public) 0.976 per token, "
                            "effect size d_z = 1.51).")
    assert sentences[1] == ("One-sided paired t-test (public loss < mean private loss): t = -21.4, df = 199, "
                            "p = 1.1e-53; Wilcoxon signed-rank test (differences (private - public) centred above 0): "
                            "p = 8.6e-33.")
    assert "never published" in sentences[2]


@pytest.mark.parametrize("pt, pw, level", [
    (0.0005, 0.0001, "strong"),  # both at most α / 100
    (0.000501, 0.0001, "evidence"),
    (0.0499, 0.0499, "evidence"),
    (0.05, 0.05, "weak"),  # p = α rejects nothing
    (0.04, 0.06, "weak"),  # a split decision
    (0.3, 0.01, "weak"),
    (0.3, 0.4, "weak"),
    (NAN, NAN, "warning"),
    (None, None, "warning"),
])
def test_paired_level_at_the_boundaries(pt, pw, level):
    sentences, got = paired.verdict(paired_results(pt, pw))
    assert got == level
    if (pt, pw) == (0.04, 0.06):
        assert "the paired t-test rejects but the Wilcoxon test does not" in sentences[0]
    if (pt, pw) == (0.3, 0.4):
        assert sentences[0].startswith("Paired test: no evidence at α = 0.05") and "does not show" in sentences[0]


def test_paired_zero_differences_and_undefined_effect_size():
    # 2 of 10 items tie: Clopper-Pearson 2.5%-55.6%.
    sentences, _ = paired.verdict(paired_results(0.3, 0.4, n_items=10, n_zero_differences=2, effect_size={"d_z": None}))
    assert "effect size d_z = n/a" in sentences[0]
    assert sentences[-1] == ("2 of 10 (20.0%, 95% CI 2.5%-55.6%) items have equal public and private losses; the "
                             "Wilcoxon test counts them half on each side.")


def test_paired_section_draws_the_differences_and_survives_nan_rows(make_run):
    rows = [{"id": "a", "loss_public": 1.0, "loss_private": [1.5, 1.7], "difference": 0.6},
            {"id": "b", "loss_public": 2.0, "loss_private": [1.9, NAN], "difference": NAN},
            {"id": "c", "loss_public": 1.2, "loss_private": [], "difference": -0.1}]
    section = build(make_run("paired-test", paired_results(NAN, 0.2), rows,
                             provenance={"data": [{"path": "data/members.jsonl", "role": "public"}]}))
    assert section.title == "Paired test: members.jsonl" and "<svg" in section.body
    assert '<div class="samples"' in section.body
    empty = make_run("paired-test", paired_results(NAN, NAN, n_items=0, mean_difference=NAN), [], name="empty")
    section = build(empty)
    assert "<svg" not in section.body and "No per-item difference to draw" in section.body
    assert "neither test has a p-value" in page_of(empty)


# --- score ------------------------------------------------------------------------------


def score_summary(**over):
    return {"n_rows": 1000, "n_scored": 1000, "n_errors": 0, "n_tokens": 77597, "mean_doc_loss": 1.0425,
            "token_loss": 1.041, "n_truncated_rows": 0, "n_windowed_rows": 0, "n_from_cache": 0, **over}


def test_score_verdict_counts_with_intervals():
    sentences, level = score.verdict(score_summary())
    assert level == "info"
    assert sentences[0] == ("Scored 1,000 of 1,000 documents, 77,597 tokens: mean document loss 1.04, token-weighted "
                            "loss 1.04 (negative log-probability per token).")
    # 0 of 1,000 keeps its upper bound, 1 - 0.025 ** (1 / 1000) = 0.37%.
    assert sentences[1] == "Rows that could not be scored: 0 of 1,000 (0.0%, 95% CI 0.0%-0.4%)."
    assert sentences[2].startswith("Truncated to the model's context (the loss covers a prefix only): 0 of 1,000 "
                                   "(0.0%, 95% CI 0.0%-0.4%) scored documents")


def test_score_errors_and_nothing_scored_are_warnings():
    # 2 of 1,000 rows: Clopper-Pearson 0.024%-0.72% (a lower bound above 0 is never shown as 0.0%).
    sentences, level = score.verdict(score_summary(n_scored=998, n_errors=2, n_truncated_rows=1))
    assert level == "warning"
    assert sentences[1] == ("Rows that could not be scored: 2 of 1,000 (0.2%, 95% CI 0.024%-0.7%); they come first in "
                            "the table below, with the reason.")
    assert "1 of 998 (0.1%" in sentences[2]
    sentences, level = score.verdict(score_summary(n_scored=0, n_errors=1000, n_tokens=0, mean_doc_loss=None,
                                                   token_loss=None))
    assert level == "warning" and "mean document loss n/a" in sentences[0] and len(sentences) == 2
    assert score.verdict({})[1] == "warning"  # a summary with nothing in it still reads


def test_score_section_shows_error_rows_first(make_run):
    rows = [{"id": "ok", "n_tokens": 4, "logprob_sum": -4.0, "logprob_mean": -1.0, "n_text_tokens": 4, "n_truncated": 0,
             "n_windows": 1, "error": None},
            {"id": "empty", "n_tokens": 0, "logprob_sum": None, "logprob_mean": None, "n_text_tokens": 0,
             "n_truncated": 0, "n_windows": 0, "error": "text is empty"},
            {"id": "inf", "n_tokens": 3, "logprob_sum": NAN, "logprob_mean": NAN, "n_text_tokens": 3, "n_truncated": 0,
             "n_windows": 1, "error": None}]
    folder = make_run("score", {}, rows, summary=score_summary(n_rows=3, n_scored=2, n_errors=1, n_tokens=7),
                      provenance={"data": [{"path": "data/members.jsonl", "sha256": "x"}]})
    section = build(folder)
    assert section.title == "Scoring: members.jsonl" and section.level == "warning" and "<svg" in section.body
    html = page_of(folder)
    assert "rows that could not be scored first" in html and '"text is empty"' in html and '"sort": "error"' in html


def test_score_section_with_nothing_scored(make_run):
    rows = [{"id": 1, "n_tokens": 0, "logprob_mean": None, "error": "too long"}]
    folder = make_run("score", {}, rows, summary=score_summary(n_rows=1, n_scored=0, n_errors=1, n_tokens=0,
                                                               mean_doc_loss=None, token_loss=None))
    section = build(folder)
    assert "<svg" not in section.body and "No loss to draw" in section.body
    assert section.warnings and section.warnings[0].startswith("No document could be scored")
    page_of(folder)


# --- demo -------------------------------------------------------------------------------


DEMO_SUMMARY = {
    "members": {"n_documents": 1000, "n_errors": 0, "n_tokens": 77597, "mean_doc_loss": 1.0425, "extraction_rate": 0.401},
    "nonmembers": {"n_documents": 1000, "n_errors": 0, "n_tokens": 77304, "mean_doc_loss": 2.3531,
                   "extraction_rate": 0.0},
    "members_by_duplication": {"1": {"n": 450, "mean_loss": 1.8887, "extraction_rate": 0.0},
                               "32": {"n": 400, "mean_loss": 0.1156, "extraction_rate": 0.995}},
}


def write_demo(folder, summary, subruns, make_run):
    """A demo's results folder as the demo writes it: sub-runs inside, listed by results.json."""
    from lmaudit.report.run import RunWriter

    with RunWriter(folder, kind="demo", command="lmaudit demo (test)") as run:
        for name in subruns:
            make_run("score", {}, [], name=f"{folder.name}/{name}", summary=score_summary(n_rows=0, n_scored=0))
            run.add_file(name, folder / name / "results.json", rows=1)
        run.finish(summary=summary, provenance={"testbed": {"seed": 0, "size": "tiny", "path": "testbed.json"}})
    return folder


def test_demo_verdict_and_headline_table(tmp_path, make_run):
    folder = write_demo(tmp_path / "demo", DEMO_SUMMARY, ["members", "nonmembers"], make_run)
    runs = load_runs([folder])
    assert [r.kind for r in runs] == ["demo", "score", "score"]
    section = build(folder)
    assert section.level == "info"
    assert section.verdict[0] == ("The lmaudit demo wrote 2 runs on the tiny testbed (seed 0): 1,000 members (in the "
                                  "model's training data) and 1,000 non-members (held out). Each run follows as a "
                                  "section of its own.")
    # 0.401 of 1,000 = 401 (Clopper-Pearson 37.0%-43.2%); 0 of 1,000 keeps its 0.37% upper bound.
    assert section.verdict[1] == ("Members have mean document loss 1.04 against 2.35 for non-members; greedy "
                                  "extraction recovers 401 of 1,000 (40.1%, 95% CI 37.0%-43.2%) members and 0 of 1,000 "
                                  "(0.0%, 95% CI 0.0%-0.4%) non-members.")
    # 0.995 of 400 = 398 (98.2%-99.9%); 0 of 450: 1 - 0.025 ** (1 / 450) = 0.82%.
    assert section.verdict[2] == ("Extraction by how often a member was repeated in training: 1×: 0 of 450 (0.0%, "
                                  "95% CI 0.0%-0.8%); 32×: 398 of 400 (99.5%, 95% CI 98.2%-99.9%).")
    assert "scoring: per-token statistics of the member documents" in section.body
    assert "members seen 32× in training" in section.body
    html = render_report(runs)
    assert html.count('<section class="run"') == 3


def test_demo_with_an_empty_summary_and_unknown_runs(tmp_path, make_run):
    folder = write_demo(tmp_path / "demo", {}, ["something_new"], make_run)
    section = build(folder)
    assert section.verdict == ["The lmaudit demo wrote 1 run on the tiny testbed (seed 0): n/a members (in the "
                               "model's training data) and n/a non-members (held out). Each run follows as a section "
                               "of its own."]
    assert "an audit this report does not describe" in section.body and "holds no headline figures" in section.body
    assert demo_section.headline({"members": {"n_documents": 0, "extraction_rate": NAN}})[0]["extracted"] == "n/a"
    page_of(folder)


def test_nan_is_read_back_from_results_json_as_nan():
    # lmaudit writes undefined figures as JSON's NaN token (json.dumps allows it), and reads it back as float NaN:
    # the renderers above are fed exactly that.
    import json

    assert math.isnan(json.loads(json.dumps({"x": NAN}))["x"])
