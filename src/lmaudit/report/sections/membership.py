"""Membership attacks: ROC curves on log-log axes, AUCs with intervals, TPR at low FPR, the
blind baselines beside the attacks, and the score distributions of the best attack."""

from __future__ import annotations

import math

import numpy as np
from lmaudit.report import plots
from lmaudit.report.fmt import finite, num, rate, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections

FPRS = ("0.1", "0.01", "0.001")
CURVES = 8  # attacks drawn on the ROC plot (the best by AUC, and loss); the table has them all


def _ci_low(entry: dict) -> float:
    low = finite((entry.get("auc_ci") or [None])[0])
    return -math.inf if low is None else low


MEANING = ("The attack numbers measure the difference between the data sets, not the model's training: do not read "
           "them as evidence of membership.")


def shift_warning(results: dict, *, meaning: str = MEANING) -> str | None:
    """The red warning of a run whose blind baselines separate the sets, or None.

    ``meaning`` says what that does to the section's numbers (sections that reuse the
    warning name their own).
    """
    if not results.get("distribution_shift_flag"):
        return None
    shift = results.get("distribution_shift") or {}
    baselines = results.get("blind_baselines") or {}
    by = ", ".join(f"{name} (AUC {with_ci(baselines.get(name, {}).get('auc'), baselines.get(name, {}).get('auc_ci'))})"
                   for name in shift.get("flagged_by", [])) or "a blind baseline"
    rule = f" ({shift['rule']})" if shift.get("rule") else ""
    return f"Distribution shift: {by} tells the two sets apart from the text alone, without the model{rule}. {meaning}"


def baseline_sentence(results: dict, *, sets: str = "the two sets") -> str | None:
    """What the blind baselines say when they flag nothing (None when they flag a shift:
    :func:`shift_warning` says it), or that they were not run."""
    flag = results.get("distribution_shift_flag")
    if flag is None:
        return f"The blind baselines were not run: nothing checks that {sets} come from one distribution."
    baselines = {k: v for k, v in (results.get("blind_baselines") or {}).items() if finite(v.get("auc")) is not None}
    if flag or not baselines:
        return None
    name, top = max(baselines.items(), key=lambda kv: kv[1]["auc"])
    return (f"No distribution shift: the best blind baseline ({name}, text only) has AUC "
            f"{with_ci(top.get('auc'), top.get('auc_ci'))}.")


def verdict(results: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level (see :data:`lmaudit.report.sections.LEVELS`).

    Levels, from the best attack's 95% AUC interval: ``strong`` when it starts at 0.6 or
    above, the blind baselines ran and flag nothing, and (picked among several attacks, an
    optimistic choice) the loss attack, fixed in advance, also starts at 0.6 or above;
    ``evidence`` when it starts above 0.5 (or at 0.6 without those checks); ``weak``
    otherwise; ``warning`` whenever the blind baselines flag a distribution shift.
    """
    # NaN (an AUC that could not be computed) is no AUC: it would also break max().
    attacks = {k: v for k, v in (results.get("attacks") or {}).items() if finite(v.get("auc")) is not None}
    n_m, n_n = results.get("n_members"), results.get("n_nonmembers")
    if not attacks:
        return [f"No attack produced a score ({num(n_m)} members, {num(n_n)} non-members)."], "weak"
    name, best = max(attacks.items(), key=lambda kv: kv[1]["auc"])
    # The documents behind the AUC: the attack's own counts leave out those it could not score.
    n_m, n_n = best.get("n_members", n_m), best.get("n_nonmembers", n_n)
    low = _ci_low(best)
    loss = attacks.get("loss")
    # Not the best-of-N pick alone: the attack chosen before looking must agree.
    unpicked = len(attacks) == 1 or (loss is not None and _ci_low(loss) >= 0.6)
    if results.get("distribution_shift_flag"):
        level = "warning"
        lead = ("The attacks separate the two sets, but so does the text alone (see the warning):" if low > 0.5 else
                "The attacks do not tell members from non-members better than chance, and the text alone separates "
                "the two sets (see the warning):")
    elif low >= 0.6 and results.get("distribution_shift_flag") is not None and unpicked:
        level, lead = "strong", "The model tells members from non-members well:"
    elif low >= 0.6:  # as well, but nothing checked the sets, or only the best-of-N pick shows it
        level, lead = "evidence", "The attacks tell members from non-members well:"
    elif low > 0.5:
        level, lead = "evidence", "The model tells members from non-members better than chance:"
    else:
        level, lead = "weak", "The attacks do not tell members from non-members better than chance:"
    sentences = [f"{lead} the best of {len(attacks)} attacks, {name}, has AUC {with_ci(best['auc'], best.get('auc_ci'))}"
                 f" on {num(n_m)} members and {num(n_n)} non-members."]
    if level == "evidence" and low >= 0.6:
        reasons = []
        if results.get("distribution_shift_flag") is None:
            reasons.append("no blind baseline checked the two sets for a distribution shift")
        if not unpicked:
            reasons.append("the loss attack, fixed in advance, was not run" if loss is None else
                           "the loss attack, fixed in advance, does not reach an interval starting at 0.6")
        sentences.append("Not rated strong: " + "; ".join(reasons) + ".")
    if len(attacks) > 1:
        tail = f" The loss attack alone has AUC {with_ci(loss['auc'], loss.get('auc_ci'))}." if loss and name != "loss" else ""
        sentences.append(f"The best of several attacks is an optimistic pick; its interval does not cover the choice.{tail}")
    high = finite((best.get("auc_ci") or [None, None])[-1])
    if high is not None and high < 0.5:
        sentences.append("Its whole interval is below 0.5: the members look less like training data than the "
                         "non-members, which training does not explain; check the labels and how the sets were chosen.")
    at1 = (best.get("tpr_at_fpr") or {}).get("0.01")
    if at1 and finite(at1.get("tpr")) is not None and isinstance(at1.get("n_members"), int):
        k = round(at1["tpr"] * at1["n_members"])
        mark = " (unreliable: too few non-members for a 1% FPR)" if at1.get("unreliable") else ""
        sentences.append(f"At a 1% false-positive rate, {name} flags {rate(k, at1['n_members'], at1.get('tpr_ci'))} "
                         f"of the members{mark}.")
    baselines = baseline_sentence(results)
    if baselines:
        sentences.append(baselines)
    return sentences, level


def _curves(run: Run, names: list[str]) -> tuple[dict, int, int]:
    """Full-resolution ROC curves of ``names`` from samples.jsonl (members vs non-members), and
    the most members and non-members any of them scored (the axes' n)."""
    from sklearn.metrics import roc_curve

    sets = np.array([r.get("set") == "member" for r in run.samples], dtype=bool)
    curves, n_m, n_n = {}, 0, 0
    for name in names:
        values = np.array([(r.get("scores") or {}).get(name) for r in run.samples], dtype=float)
        ok = ~np.isnan(values)
        if ok.sum() == 0 or sets[ok].all() or not sets[ok].any():
            continue
        fpr, tpr, _ = roc_curve(sets[ok], values[ok])
        curves[name] = (fpr, tpr)
        n_m, n_n = max(n_m, int(sets[ok].sum())), max(n_n, int((~sets[ok]).sum()))
    return curves, n_m, n_n


def errors_warning(r: dict) -> str | None:
    """The warning of a run with documents some attack could not score, or None."""
    n_errors = r.get("n_errors") or 0
    if not n_errors:
        return None
    total = (r.get("n_members") or 0) + (r.get("n_nonmembers") or 0)
    of = f" of {num(total)}" if total else ""
    return (f"{num(n_errors)}{of} documents could not be scored by every attack (error rows, with the "
            "reason in their `error` field): each attack's figures use the documents it scored, its n in the table.")


@sections.register("membership")
def membership(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r)
    warnings = [w for w in (shift_warning(r), errors_warning(r)) if w]
    attacks = r.get("attacks") or {}
    ranked = sorted((k for k, v in attacks.items() if finite(v.get("auc")) is not None),
                    key=lambda k: -attacks[k]["auc"])
    drawn = ranked[:CURVES] + (["loss"] if "loss" in ranked[CURVES:] else [])
    curves, n_m, n_n = _curves(run, drawn)
    roc = plots.roc(curves, n_members=n_m, n_nonmembers=n_n,
                    title="ROC curves of the attacks, log-log, with the chance diagonal") if curves else None
    best = ranked[0] if ranked else None
    hist = None
    if best is not None:
        scores = {s: [(row.get("scores") or {}).get(best) for row in run.samples if row.get("set") == s]
                  for s in ("member", "nonmember")}
        if any(v is not None for vs in scores.values() for v in vs):
            hist = plots.histograms({"members": scores["member"], "non-members": scores["nonmember"]},
                                    xlabel=f"{best} score (higher = more member-like)", colors=[plots.MEMBER, plots.NONMEMBER],
                                    title=f"Scores of members and non-members, {best}")
    rows = []
    for name in ranked + [k for k in attacks if k not in ranked]:
        a = attacks[name]
        rows.append({"name": name, "a": a, "paper": a.get("paper", ""),
                     "tpr": [(a.get("tpr_at_fpr") or {}).get(f) for f in FPRS]})
    samples = page.samples(
        f"{run.name}-membership",
        [{"id": s.get("id"), "set": s.get("set"), "n_tokens": s.get("n_tokens"),
          "best": (s.get("scores") or {}).get(best), "loss": (s.get("scores") or {}).get("loss"),
          "error": s.get("error")} for s in run.samples],
        [Column("id", "id"), Column("set", "set"), Column("n_tokens", "tokens", "num"),
         Column("best", f"{best} score" if best else "best score", "num"), Column("loss", "loss score", "num"),
         Column("error", "error")],
        caption=f"Documents, most member-like first by {best}" if best else "Documents", sort="best")
    return Section(
        title="Membership inference", verdict=sentences, level=level, warnings=warnings,
        guide="guide-membership",
        body=page.render("membership.html.j2", r=r, rows=rows, fprs=FPRS, roc=roc, hist=hist, best=best,
                         drawn=[d for d in drawn if d in curves], samples=samples,
                         baselines=r.get("blind_baselines") or {}, excluded=r.get("excluded") or []),
    )
