"""The takedown-eval report section: verdicts in words with n and intervals, the warning when a
method stops exact copying but not near-verbatim copying, and a page that renders from a
results.json shaped like a real run's (figures from the default testbed's run)."""

import re

from lmaudit.report.load import load_runs
from lmaudit.report.page import render_report
from lmaudit.report.sections.takedown_eval import verdict


def _rate(k, n, ci):
    return {"n": n, "k": k, "mean": k / n, "ci": ci}


def _mean(x, ci, n):
    return {"n": n, "mean": x, "ci": ci}


CI = {0: [0.0, 0.0092], 275: [0.6396, 0.7326], 398: [0.9821, 0.9994]}  # Clopper-Pearson of k of 400


def _method(k, rouge, lcs, *, d_unprot, rel):
    efficacy = {"n": 400, "exact_match": _rate(k, 400, CI[k]),
                "rouge_l_f1": _mean(rouge, [rouge - 0.01, rouge + 0.01], 400), "lcs_words": _mean(lcs, [lcs - 1, lcs + 1], 400),
                "by_duplication": {"32": {"n": 400, "exact_match": _rate(k, 400, CI[k]),
                                          "rouge_l_f1": _mean(rouge, [rouge - 0.01, rouge + 0.01], 400)}}}
    vs = {"rouge_l_f1_unprotected": {"n": 200, "mean": d_unprot, "ci": [d_unprot - 0.02, d_unprot + 0.02],
                                     "contains_zero": d_unprot - 0.02 <= 0 <= d_unprot + 0.02}}
    return {"settings": {"method": "x", "order": []}, "efficacy": efficacy, "vs_none": vs,
            "utility": {"continuation": {"n": 200, "rouge_l_f1": _mean(0.4 + d_unprot, [0.38, 0.42], 200)}},
            "efficiency": {"tokens_per_s": 5000 * rel, "relative_to_none": rel, "batch_size": 32}}


def _results():
    return {"methods": {"none": _method(398, 0.998, 27.2, d_unprot=0.0, rel=1.0),
                        "memfree": _method(0, 0.62, 3.4, d_unprot=-0.099, rel=0.922),
                        "rcad": _method(275, 0.9, 22.6, d_unprot=-0.01, rel=0.306)},
            "win_rate": {"average": {"none": 0.0, "memfree": 0.65, "rcad": 0.09}, "metrics": ["rouge_l_f1"] * 7},
            "n_protected_prompts": 400, "n_unprotected_prompts": 200, "n_errors": 0}


def test_verdict_names_every_method_with_counts_intervals_and_costs():
    sentences, level, warnings = verdict(_results())
    text = " ".join(sentences)
    assert "Plain decoding reproduces 398 of 400 (99.5%, 95% CI 98.2%-99.9%)" in text and "memfree: exact extraction 0 of 400 (0.0%, 95% CI 0.0%-0.9%)" in text
    assert "ROUGE-L on unprotected text: a change (-0.099, 95% CI -0.119 to -0.079)" in text
    assert "rcad: exact extraction 275 of 400" in text and "0.306× plain decoding's tokens/s at batch 32" in text
    assert "over its 7 copying metrics" in text
    # A method that still leaks makes it evidence; MemFree's remaining near-verbatim copying is a warning.
    assert level == "evidence"
    assert any("memfree stops exact reproduction" in w and "0.62" in w for w in warnings)


def test_verdict_without_a_leaking_method_is_a_measurement_and_empty_runs_warn():
    r = _results()
    del r["methods"]["rcad"]
    assert verdict(r)[1] == "info"
    assert verdict({"methods": {}})[1] == "warning"


def test_section_renders_the_table_and_the_by_level_rows(make_run):
    folder = make_run("takedown-eval", _results(), [
        {"method": "none", "set": "protected", "id": "a", "duplication": 32, "output": "x y", "reference": "x y",
         "rouge_l_f1": 1.0, "lcs_words": 2, "exact_match": True},
        {"method": "memfree", "set": "protected", "id": "a", "duplication": 32, "output": "x z", "reference": "x y",
         "rouge_l_f1": 0.5, "lcs_words": 1, "exact_match": False}])
    html = render_report(load_runs([folder]))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<svg.*?</svg>", "", html, flags=re.S)))
    assert "Takedown evaluation" in text and "Every method, side by side" in text
    assert "0 of 400 (0.0%, 95% CI 0.0%-0.9%)" in text and "(0.922×)" in text
    assert "By duplication level of the protected documents" in text
