"""Report sections of the unlearning runs (unlearn, unlearn-eval, unlearn-bench): each renders
from a results.json shaped like a real run's (taken from runs on the tiny forget testbed),
shows the figures it was given with their n and intervals, and says in words what they mean.
"""

import re

import pytest

from lmaudit.report import page as page_module
from lmaudit.report.load import load_runs
from lmaudit.report.page import Page, render_report
from lmaudit.report.sections import sections
from lmaudit.report.sections import unlearn_bench as bench_section
from lmaudit.report.sections import unlearn_eval as eval_section


def build(folder):
    run = load_runs([folder])[0]
    return sections.get(run.kind)(run, Page(page_module._environment()))


def text_of(html: str) -> str:
    html = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").replace("&amp;", "&")


def fig(value, ci, n):
    return {"value": value, "ci": ci, "n": n}


def row(role, *, verbmem, gap, gap_ci, privleak, pl_ci, auc, auc_r, knowmem_r, ratio, ratio_ci, fq_p=0.27, fq_n=144,
        extracted=0.0):
    """A compared model row as compare() writes it (figures from the tiny forget testbed's runs)."""
    tofu = {s: {"probability": fig(0.15, [0.14, 0.17], q), "rouge_l_recall": fig(0.1, [0.08, 0.12], q),
                "truth_ratio_score": fig(0.25, [0.23, 0.28], q)}
            for s, q in (("forget", 144), ("retain", 432), ("holdout", 576))}
    return {
        "role": role, "name": role,
        "verbmem_forget": fig(verbmem, [verbmem - 6, verbmem + 7], 16),
        "extraction_forget": fig(extracted, [0.0, 0.1936], 16),
        "auc_forget_holdout": {"value": auc, "ci": [auc - 0.14, auc + 0.13], "n_forget": 16, "n_holdout": 64},
        "privleak": {"value": privleak, "ci": pl_ci, "n_forget": 16, "n_holdout": 64, "auc": auc,
                     "auc_retrain": auc_r, "privleak_muse": -45.73},
        "loss": {"forget": fig(1.63, [1.22, 2.01], 16), "retain": fig(1.37, [1.15, 1.55], 48),
                 "holdout": fig(2.7, [2.63, 2.78], 64)},
        "knowmem_forget": fig(8.77, [5.43, 12.1], 144), "knowmem_retain": fig(knowmem_r, [8.28, 12.5], 432),
        "tofu": tofu,
        "forget_quality": {"p_value": fq_p, "statistic": 0.118, "n_unlearned": fq_n, "n_retrain": fq_n,
                           "statistic_ci": [0.0797, 0.198]},
        "model_utility": {"value": 0.1172, "ci": [0.108, 0.124], "n": {"retain": 432, "holdout": 576},
                          "components": {}},
        "verbmem_forget_minus_retrain": fig(gap, gap_ci, 16),
        "knowmem_retain_vs_target": fig(ratio, ratio_ci, 432),
    }


TARGET = row("target", verbmem=37.54, gap=9.18, gap_ci=[2.78, 15.3], privleak=66.445, pl_ci=[37.4, 116.6], auc=0.977,
             auc_r=0.588, knowmem_r=12.83, ratio=1.0, ratio_ci=[1.0, 1.0])
RETRAIN = row("retrain", verbmem=28.35, gap=0.0, gap_ci=[0.0, 0.0], privleak=0.0, pl_ci=[0.0, 0.0], auc=0.588,
              auc_r=0.588, knowmem_r=10.83, ratio=0.844, ratio_ci=[0.703, 1.013], fq_p=1.0)
GA = row("candidate", verbmem=24.30, gap=-4.05, gap_ci=[-14.47, 3.81], privleak=32.06, pl_ci=[9.6, 64.66],
         auc=0.776, auc_r=0.588, knowmem_r=10.28, ratio=0.8017, ratio_ci=[0.7067, 0.9039], fq_p=0.2688, fq_n=40)
TV = row("candidate", verbmem=28.62, gap=0.27, gap_ci=[-9.56, 8.08], privleak=5.65, pl_ci=[-27.0, 33.8], auc=0.621,
         auc_r=0.588, knowmem_r=12.62, ratio=0.984, ratio_ci=[0.868, 1.117], fq_p=0.211)


def eval_results(models=None):
    return {"target": "target", "retrain": "retrain",
            "models": models or {"target": TARGET, "retrain": RETRAIN, "ga": GA},
            "timings_s": {"target": {"verbmem": 1.0}, "retrain": {"verbmem": 1.5}, "ga": {"verbmem": 2.0}},
            "knowledge_subsample": {}, "n_errors": 0,
            "n": {"forget": 16, "retain": 48, "holdout": 64, "given": {"forget": 16, "retain": 48, "holdout": 64},
                  "forget_questions": 144, "retain_questions": 432, "holdout_questions": 576}}


EVAL_SAMPLES = [{"model": "ga", "part": "document", "set": "forget", "id": "m-001", "verbmem": 24.0, "exact_match": False,
                 "attack": -2.1, "loss": 1.6},
                {"model": "ga", "part": "question", "set": "retain", "id": "q-7", "knowmem": 12.0, "probability": 0.2,
                 "rouge_l_recall": 0.1, "truth_ratio": 0.8}]


# --- unlearn-eval ------------------------------------------------------------------------


def test_unlearn_eval_verdict_in_plain_words():
    sentences, level, warnings = eval_section.verdict(eval_results())
    text = " ".join(sentences)
    assert level == "evidence" and not warnings  # ga's PrivLeak interval lies above 0
    assert "the target still leaks against the retrain model (PrivLeak +66.4 (95% CI 37.4-117; 16 F + 64 H" in text
    assert ("ga still leaks against the retrain model: PrivLeak +32.1 (95% CI 9.6-64.7; 16 F + 64 H documents); "
            "membership AUC on F vs H 0.776 against the retrain model's 0.588 (outside the target |PrivLeak| ≤ 15).") in text
    assert ("ga: VerbMem on F 24.3, -4.05 points from the retrain model's (95% CI -14.5 to 3.81, 16 documents; "
            "within the target of 5 points).") in text
    assert ("ga: utility: KnowMem on R 10.3 against the target's 12.8, 80.2% of it (95% CI 70.7%-90.4%, 432 "
            "questions); it falls short of the target of 90%.") in text
    # forget quality with its n, and the warning that 40 questions give the test little power
    assert "p = 0.27 over 40 questions; with fewer than 100 questions the test has little power" in text


def test_unlearn_eval_no_leak_and_a_target_that_does_not_leak():
    quiet_target = {**TARGET, "privleak": {**TARGET["privleak"], "ci": [-5.0, 40.0]}}
    sentences, level, warnings = eval_section.verdict(eval_results({"target": quiet_target, "retrain": RETRAIN,
                                                                    "tv": TV}))
    assert any("tv shows no leak beyond the retrain model's" in s for s in sentences)
    assert any("keeps the target of 90%" in s for s in sentences)
    assert level == "warning" and "cannot tell a candidate that forgot from one that never learned" in warnings[0]


def test_unlearn_eval_page_shows_every_criterion_side_by_side(make_run):
    folder = make_run("unlearn-eval", eval_results(), EVAL_SAMPLES, provenance={"attack": {"name": "min_k", "params": {"k": 0.4}}})
    section = build(folder)
    body = text_of(str(section.body))
    assert section.guide == "guide-unlearning"
    assert "C3 PrivLeak (lmaudit's sign; 0 = retrain)" in body
    # value, interval and n for target, retrain and candidate
    assert "66.4 (95% CI 37.4-117); n = 16 F + 64 H" in body and "32.1 (95% CI 9.6-64.7); n = 16 F + 64 H" in body
    assert "-4.05 (95% CI -14.5 to 3.81); n = 16" in body
    assert "80.2% (95% CI 70.7%-90.4%); n = 432" in body
    assert "0 of 16 (0.0%, 95% CI 0.0%-19.4%)" in body
    assert "-45.7" in body  # MUSE's sign
    # TOFU block
    for name in ("answer probability on forget", "ROUGE-L recall on holdout", "truth-ratio score on retain"):
        assert name in body
    assert "p = 0.27 (KS 0.118 (95% CI 0.0797-0.198); n = 40 vs 40 questions)" in body
    assert "0.117 (95% CI 0.108-0.124); n = 432 R + 576 H" in body
    assert "min_k (k=0.4)" in body and "<svg" in str(section.body)
    html = render_report(load_runs([folder]))
    assert 'href="#guide-unlearning"' in html and 'id="guide-unlearning"' in html


# --- unlearn-bench -----------------------------------------------------------------------


def entry(model, method, r, *, lr=None, epoch=None, meets=None, rerun=True):
    e = {"model": model, "method": method, "summary": {"verbmem_forget_minus_retrain": r["verbmem_forget_minus_retrain"]["value"]},
         "meets": meets or {"verbmem": True, "privleak": True, "utility": True, "all": True, "miss": 0.0}, "row": r}
    if method:
        e.update(lr=lr, epoch=epoch, rerun_matches_sweep=rerun)
    return e


GA_MEETS = {"verbmem": True, "privleak": False, "utility": False, "all": False, "miss": 2.12}
TV_MEETS = {"verbmem": True, "privleak": True, "utility": True, "all": True, "miss": 0.0}


def sweep_point(method, lr, epoch, verbmem, utility, *, frontier=True):
    return {"method": method, "lr": lr, "epoch": epoch, "label": f"{method} lr={lr:g} epoch={epoch}",
            "headline": {"verbmem_forget": verbmem}, "utility": utility, "frontier": frontier,
            "meets": {"all": False, "miss": 1.0}}


def bench_results(*, tv=True, skip_whp=True):
    board = [entry("target", None, TARGET), entry("retrain", None, RETRAIN),
             entry("ga lr=0.001 epoch=1", "ga", GA, lr=0.001, epoch=1, meets=GA_MEETS)]
    if tv:
        board.append(entry("task_vector lr=0.001 epoch=2", "task_vector", TV, lr=0.001, epoch=2, meets=TV_MEETS))
    step = {"verbmem_forget": 38.78, "verbmem_forget_minus_retrain": 7.21, "privleak": 53.31, "knowmem_forget": 10.03,
            "knowmem_retain_vs_target": 1.0327, "loss_retain": 1.153}
    return {
        "config": {"targets": {"verbmem_gap": 5.0, "privleak": 15.0, "utility": 0.9}},
        "sets": {"forget": 16, "retain": 48, "holdout": 64, "requests": [8, 8], "scale_sizes": [8]},
        "reference": {"target": {"verbmem_forget": 37.54, "knowmem_retain_vs_target": 1.0},
                      "retrain": {"verbmem_forget": 28.35, "knowmem_retain_vs_target": 0.844}},
        "leaderboard": board,
        "sweep": [sweep_point("ga", 0.001, 1, 24.3, 0.893), sweep_point("ga", 0.001, 2, 18.35, 0.469)],
        "runs": [], "scalability": {"ga": [{"n_forget": 8, **step}]},
        "sustainability": {"ga": [{"request": 1, "n_removed": 8, **step}],
                           **({"whp": {"skipped": "whp's result is an inference-time combination"}} if skip_whp else {})},
        "selection": "each method's point with the smallest total miss of the targets (optimistic)",
        "timings": {"total_s": 669.9},
    }


BENCH_SAMPLES = [{"method": "ga", "lr": 0.001, "epoch": 1, "verbmem_forget": 24.3, "knowmem_forget": 8.77,
                  "knowmem_retain": 10.96, "privleak": 32.06, "loss_retain": 1.37, "knowmem_retain_vs_target": 0.893,
                  "frontier": True, "meets_all": False, "miss": 1.2}]


def test_unlearn_bench_names_the_methods_that_reached_all_targets():
    sentences, level, warnings = bench_section.verdict(bench_results())
    text = " ".join(sentences)
    assert level == "info" and not warnings
    assert "1 of 2 methods reached all three targets" in text and "task_vector (lr 0.001, 2 epochs)" in text
    assert "ga at its best setting (lr 0.001, epoch 1)" in text and "targets met: VerbMem." in text
    assert "optimistic" in text


def test_unlearn_bench_says_plainly_when_no_method_reached_them():
    sentences, _, _ = bench_section.verdict(bench_results(tv=False))
    assert any(s.startswith("No method reached all three targets") and "The closest was ga (lr 0.001, 1 epoch)" in s
               and "met VerbMem" in s for s in sentences)


def test_unlearn_bench_warns_when_a_rerun_differs():
    r = bench_results()
    r["leaderboard"][2]["rerun_matches_sweep"] = False
    _, level, warnings = bench_section.verdict(r)
    assert level == "warning" and "rerun of ga did not reproduce" in warnings[0]


def test_unlearn_bench_page(make_run):
    folder = make_run("unlearn-bench", bench_results(), BENCH_SAMPLES)
    section = build(folder)
    body = text_of(str(section.body))
    # the leaderboard with intervals
    assert "32.1 (95% CI 9.6-64.7); n = 16 F + 64 H" in body and "80.2% (95% CI 70.7%-90.4%)" in body
    assert "-4.05 (95% CI -14.5 to 3.81)" in body
    assert "VerbMem, PrivLeak, utility" in body and "reference" in body
    # frontier plot, C5 and C6 tables, whp's skip with its reason
    assert str(section.body).count("<svg") == 1
    assert "C5 scalability" in body and "53.3" in body and "103.3%" in body
    assert "Skipped: whp's result is an inference-time combination." in body
    assert section.guide == "guide-unlearning"
    html = render_report(load_runs([folder]))
    assert "Every sweep point" in html and '"miss"' in html  # the sample browser


# --- unlearn -----------------------------------------------------------------------------


UNLEARN = {"unlearn": {"steps": 4, "steps_per_epoch": 4, "n_forget": 16, "n_retain": 48, "forget_tokens": 2293,
                       "loss_curve": [{"step": i + 1, "epoch": 1, "forget": f, "retain": r, "total": f + r,
                                       "grad_norm": 1.0}
                                      for i, (f, r) in enumerate([(13.862944, 0.0), (5.907379, 0.030738),
                                                                  (1.903554, 0.160774), (0.146321, 0.37933)])],
                       "reference": {"forget": "cached log-probs", "retain": "frozen copy"},
                       "paper": {"forget": "Zhang et al. 2024, https://arxiv.org/abs/2404.05868"}}}
UNLEARN_PROVENANCE = {"config": {"method": "npo", "retain_loss": "kl", "lr": 0.001, "epochs": 1, "batch_size": 4,
                                 "beta": None},
                      "models": {"before": {"name": "tiny8/model", "fingerprint": "file:3de7"},
                                 "after": {"path": "out/model", "fingerprint": "file:b90c", "whp": False}}}


def test_unlearn_section(make_run):
    folder = make_run("unlearn", UNLEARN, [], summary={"method": "npo", "retain_loss": "kl"},
                      provenance=UNLEARN_PROVENANCE)
    section = build(folder)
    text = " ".join(section.verdict)
    assert section.level == "info" and not section.warnings
    assert "Unlearning by npo with a kl retain loss: 4 steps over 1 epoch(s) on 16 forget documents (48 retain)" in text
    assert "forget loss went from 13.9 at step 1 to 0.146 at step 4" in text
    body = text_of(str(section.body))
    assert "<svg" in str(section.body)  # the loss curves
    assert "batch_size 4" in body and "file:3de7" in body and "file:b90c" in body and "cached log-probs" in body


def test_unlearn_section_warns_on_divergence_and_unchanged_weights(make_run):
    bad = {"unlearn": {**UNLEARN["unlearn"],
                       "loss_curve": [{"step": 1, "forget": 1.0, "retain": 0.0}, {"step": 2, "forget": None, "retain": 1.0}]}}
    same = {**UNLEARN_PROVENANCE, "models": {"before": {"fingerprint": "x"}, "after": {"fingerprint": "x"}}}
    section = build(make_run("unlearn", bad, [], summary={"method": "ga"}, provenance=same))
    assert section.level == "warning"
    assert any("not finite" in w for w in section.warnings) and any("did not change" in w for w in section.warnings)


@pytest.mark.parametrize("kind", ["unlearn", "unlearn-eval", "unlearn-bench"])
def test_unlearning_sections_render_from_nothing(make_run, kind):
    render_report(load_runs([make_run(kind, {}, [], name=f"empty-{kind}")]))
