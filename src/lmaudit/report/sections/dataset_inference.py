"""Dataset inference: the set-level p-value with its strength and caveats, the false-positive
check beside it, the p-value against the number of documents, the classifier's weights and
the blind baselines."""

from __future__ import annotations


from lmaudit.report import plots
from lmaudit.report.fmt import ci, finite, num, pct, pval, rate_of
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections.membership import baseline_sentence, shift_warning

STRONG_FACTOR = 100  # "strong" needs p at most α / 100, not merely below α
# ... and a false-positive check whose 95% interval rules out rates above 2.5 α: a valid test
# passes it with 200 trials (10 of 200 rejected: CI up to 9.0%) or 100 (5 of 100: up to 11.3%);
# a check whose interval reaches further cannot tell a valid test from one that rejects
# several times too often.
FPR_SLACK = 2.5
TESTS = {"welch_t": "Welch t-test", "student_t": "Student t-test", "permutation": "permutation test"}
SHIFT_MEANING = ("The p-value measures the difference between the two data sets, not the model's training: do not "
                 "read it as evidence that the model trained on the suspect set.")


def _test_words(r: dict) -> str:
    """ "one-sided Welch t-test, 50 suspect + 50 validation documents held out from fitting"."""
    test = r.get("test") or {}
    name = TESTS.get(test.get("test"), str(test.get("test") or "test"))
    sided = "one-sided " if test.get("alternative") in ("greater", "less") else ""
    b = (r.get("split") or {}).get("b") or {}
    if "suspect" in b and "validation" in b:
        held = f", {num(b['suspect'])} suspect + {num(b['validation'])} validation documents held out from fitting"
    else:
        held = ""
    return f"{sided}{name}{held}"


def _documents(size: dict) -> tuple:
    """(suspect, validation) documents of a ``reported_size`` or ``calibrated_size`` entry."""
    return tuple((size.get(side) or {}).get("documents") for side in ("suspect", "validation"))


def calibration(r: dict) -> tuple[str, str, list | None]:
    """The false-positive check's state, its sentence and the 95% interval of its rate.

    The state is ``none`` (not run), ``anti`` (rejects more than α: its interval lies
    above α), ``loose`` (cannot rule out a rate above FPR_SLACK α) or ``ok``.
    """
    null, alpha = r.get("null_calibration") or {}, finite(r.get("alpha"))
    trials, k = null.get("trials") or 0, null.get("rejections")
    if null.get("skipped"):
        return "none", f"False-positive check not run: {null['skipped']}.", None
    if not trials or not isinstance(k, int):
        return "none", ("No false-positive check was run (0 validation-vs-validation trials): nothing shows that the "
                        "test keeps its level on this data."), None
    interval = null.get("false_positive_rate_ci")
    if not interval and 0 <= k <= trials:  # an older run without it: the same Clopper-Pearson interval
        from lmaudit.stats import proportion_ci

        interval = list(proportion_ci(k, trials))
    shown = (f"{num(k)} of {num(trials)} validation-vs-validation trials rejected at α = {num(alpha)} "
             f"({pct(k / trials)}, 95% CI {ci(interval, pct)})")
    checked, reported = _documents(null.get("calibrated_size") or {}), _documents(null.get("reported_size") or {})
    if null.get("at_reported_size"):
        where = ", at the reported size"
    elif None not in checked + reported:
        where = (f", at {num(checked[0])} vs {num(checked[1])} documents, smaller than the reported "
                 f"{num(reported[0])} vs {num(reported[1])} (more known non-members would check the reported size)")
    else:
        where = ""
    low, high = (finite(interval[0]), finite(interval[1])) if interval else (None, None)
    if low is None or high is None or alpha is None:
        state = "loose"
    elif low > alpha:
        state = "anti"
    elif high > FPR_SLACK * alpha:
        state = "loose"
    else:
        state = "ok"
    return state, f"False-positive check: {shown}{where}.", interval


def verdict(r: dict) -> tuple[list[str], str, list[str]]:
    """The verdict sentences, their level and the section's red warnings.

    Levels: ``strong`` when p ≤ α / STRONG_FACTOR, the false-positive check ran at the
    reported size and rules out rates above FPR_SLACK α, the blind baselines ran and flag
    nothing, and the classifier was constrained to the member direction; ``evidence`` when
    p < α otherwise (a sentence says what kept it from strong); ``weak`` when p ≥ α or the classifier
    learned nothing; ``warning`` when the blind baselines flag a shift, when the check
    shows the test rejects more often than α and p < α, or when there is no p-value.
    """
    p, alpha = finite(r.get("p_value")), finite(r.get("alpha"))
    how = _test_words(r)
    state, check, interval = calibration(r)
    shift = r.get("distribution_shift_flag")
    warnings = [w for w in [shift_warning(r, meaning=SHIFT_MEANING)] if w]
    null = r.get("null_calibration") or {}
    if state == "anti":
        warnings.append(f"The false-positive check rejects in more than α = {num(alpha)} of validation-vs-validation "
                        f"trials (its 95% interval starts at {pct(interval[0])}): the test's p-values are "
                        "anti-conservative on this data, too small, and a p-value below α does not show training.")
    if p is None or alpha is None:
        sentences = [f"Dataset inference: no p-value was recorded (p = {pval(r.get('p_value'))}, α = "
                     f"{num(r.get('alpha'))}, {how}): this run cannot show anything."]
        return sentences + [check], "warning", warnings
    significant = p < alpha
    test = f"p = {pval(p)}, {how}"
    reasons = []  # why a significant result is not rated strong
    if r.get("classifier_learned_nothing"):
        level = "warning" if shift else "weak"
        sentences = [f"Dataset inference: no evidence that the model was trained on the suspect set: the classifier "
                     f"fitted on half A put weight on no feature, so there was nothing to test ({test}). This is not "
                     "evidence against training either; attack scores oriented the wrong way (lower = member) give "
                     "exactly this."]
    elif shift:
        level = "warning"
        sentences = [f"Dataset inference: {test}, {'below' if significant else 'not below'} α = {num(alpha)}, but the "
                     "suspect and validation sets can be told apart from their text alone (see the warning), so this "
                     "run cannot show whether the model trained on the suspect set."]
    elif not significant:
        level = "weak"
        sentences = [f"Dataset inference: no evidence at α = {num(alpha)} that the model was trained on the suspect "
                     f"set ({test}). This does not show that it was not: the test may lack the documents to see a "
                     "weak trace (the p-value curve below shows how p falls with more of them), and a model that saw "
                     "the set rarely may leave none it can detect."]
    elif state == "anti":
        level = "warning"
        sentences = [f"Dataset inference: {test}, below α = {num(alpha)}, but the false-positive check rejects more "
                     "often than α (see the warning), so this p-value is too small to trust as evidence of training."]
    else:
        if p > alpha / STRONG_FACTOR:
            reasons.append(f"p is below α but not below α / {STRONG_FACTOR} = {num(alpha / STRONG_FACTOR)}")
        if state == "none":
            reasons.append("no false-positive check shows that the test keeps its level")
        elif state == "loose":
            reasons.append(f"the false-positive check cannot rule out a rate above {num(FPR_SLACK)} α "
                           f"({ci(interval, pct)})")
        if state != "none" and not null.get("at_reported_size"):
            reasons.append("the false-positive check ran at a smaller size than the test")
        if shift is None:
            reasons.append("no blind baseline checked the two sets for a distribution shift")
        if ((r.get("provenance") or {}).get("config") or {}).get("nonnegative") is False:
            reasons.append("the classifier's weights were unconstrained (nonnegative=False), so a small p-value shows "
                           "that the model treats the two sets differently, in either direction, not that it trained "
                           "on the suspect one")
        level = "evidence" if reasons else "strong"
        sentences = [f"Dataset inference: {'strong evidence' if level == 'strong' else 'evidence'} that the model was "
                     f"trained on the suspect set ({test})."]
    d = finite((r.get("effect_size") or {}).get("cohens_d"))
    if d is not None and not r.get("classifier_learned_nothing"):
        sentences.append(f"Effect size on the held-out half: Cohen's d = {num(d)} (suspect minus validation "
                         "classifier scores).")
    perm = r.get("permutation")
    if isinstance(perm, dict) and "p_value" in perm:
        sentences.append(f"A permutation test on the same scores gives p = {pval(perm.get('p_value'))}.")
    sentences.append(check)
    if reasons:
        sentences.append(f"Not rated strong: {'; '.join(reasons)}.")
    baselines = baseline_sentence(r, sets="the suspect and validation sets")
    if baselines:
        sentences.append(baselines)
    n_errors, n_pool = r.get("n_errors") or 0, r.get("n_pool_errors") or 0
    if n_errors:
        sentences.append(f"{num(n_errors)} suspect or validation document{'s' if n_errors != 1 else ''} could not be "
                         f"scored and {'were' if n_errors != 1 else 'was'} left out of the test (listed in "
                         "results.json's excluded).")
    if n_pool:
        sentences.append(f"{num(n_pool)} null-pool document{'s' if n_pool != 1 else ''} could not be scored and "
                         f"{'were' if n_pool != 1 else 'was'} left out of the false-positive check.")
    return sentences, level, warnings


def _size_rows(null: dict) -> list[dict]:
    """The sizes the false-positive check ran at and the test was reported at."""
    rows = []
    for key, label in (("calibrated_size", "checked at"), ("reported_size", "reported at")):
        size = null.get(key)
        if isinstance(size, dict) and size:
            s, v = (size.get(side) or {} for side in ("suspect", "validation"))
            rows.append({"label": label, "documents": (s.get("documents"), v.get("documents")),
                         "b": (s.get("b"), v.get("b"))})
    return rows


def _curve(r: dict) -> tuple[list[dict], object]:
    """The p-value curve's rows for the table, and its plot (None with fewer than one drawable point)."""
    alpha = finite(r.get("alpha"))
    rows, xs, ys, underflow = [], [], [], []
    for point in r.get("p_value_curve") or []:
        n, p, rej, draws = point.get("n"), finite(point.get("median_p_value")), finite(point.get("rejection_rate")), \
            point.get("draws")
        k = round(rej * draws) if rej is not None and isinstance(draws, int) else None
        rows.append({"n": n, "p": point.get("median_p_value"), "draws": draws,
                     "rejected": rate_of(k, draws) if k is not None else "n/a"})
        if p is not None and p > 0 and isinstance(n, (int, float)):
            xs.append(n)
            ys.append(p)
        elif p == 0:
            underflow.append(n)  # below float precision: cannot sit on a log axis, so named instead
    if not xs:
        return rows, None, underflow
    svg = plots.p_value_curve(
        xs, ys, alpha=alpha, title="Median p-value against the number of held-out documents per set, log-log, α dashed")
    return rows, svg, underflow


@sections.register("dataset-inference")
def dataset_inference(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level, warnings = verdict(r)
    curve_rows, curve, underflow = _curve(r)
    null = r.get("null_calibration") or {}
    p_values = null.get("p_values")
    null_hist = None
    if p_values and finite(r.get("alpha")) is not None and any(finite(p) is not None for p in p_values):
        null_hist = plots.p_value_histogram(
            [finite(p) for p in p_values], alpha=r["alpha"],
            title="p-values of the validation-vs-validation trials, with α and the flat count of a valid test")
    weights = sorted(((k, finite(v)) for k, v in (r.get("feature_weights") or {}).items()),
                     key=lambda kv: -(kv[1] if kv[1] is not None else float("-inf")))
    bars = None
    if any(v for _, v in weights):
        bars = plots.horizontal_bars([k for k, _ in weights], [v or 0.0 for _, v in weights],
                                     xlabel="weight (on features normalised on half A)",
                                     title="Classifier weights of the features, largest first")
    samples = page.samples(
        f"{run.name}-dataset-inference",
        [{"id": s.get("id"), "set": s.get("set"), "half": s.get("half"), "score": s.get("classifier_score"),
          "error": s.get("error")} for s in run.samples],
        [Column("id", "id"), Column("set", "set"), Column("half", "half"),
         Column("score", "classifier score (half B)", "num"), Column("error", "error")],
        caption="Documents, highest classifier score first (only half B is scored; A trained the classifier)",
        sort="score")
    return Section(
        title="Dataset inference", verdict=sentences, level=level, warnings=warnings, guide="guide-dataset-inference",
        body=page.render("dataset-inference.html.j2", r=r, test=r.get("test") or {}, split=r.get("split") or {},
                         null=null, sizes=_size_rows(null), recorded=p_values is not None, null_hist=null_hist, curve=curve,
                         curve_rows=curve_rows, underflow=underflow, weights=weights, bars=bars, dropped=r.get("dropped_features") or [],
                         nonnegative=(run.provenance.get("config") or {}).get("nonnegative"),
                         baselines=r.get("blind_baselines") or {}, samples=samples,
                         excluded=r.get("excluded") or []),
    )
