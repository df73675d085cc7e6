"""Membership attacks: ROC curves on log-log axes, AUCs with intervals, TPR at low FPR, the
blind baselines beside the attacks, and the score distributions of the best attack."""

from __future__ import annotations

import math

import numpy as np

from lmaudit.report import plots
from lmaudit.report.fmt import num, pct, rate, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections

FPRS = ("0.1", "0.01", "0.001")
CURVES = 8  # attacks drawn on the ROC plot (the best by AUC, and loss); the table has them all


def _ci_low(entry: dict) -> float:
    return entry["auc_ci"][0] if entry.get("auc_ci") else -math.inf


def shift_warning(results: dict) -> str | None:
    """The red warning of a run whose blind baselines separate the sets, or None."""
    if not results.get("distribution_shift_flag"):
        return None
    shift = results.get("distribution_shift") or {}
    baselines = results.get("blind_baselines") or {}
    by = ", ".join(f"{name} (AUC {with_ci(baselines.get(name, {}).get('auc'), baselines.get(name, {}).get('auc_ci'))})"
                   for name in shift.get("flagged_by", [])) or "a blind baseline"
    return (f"Distribution shift: {by} tells the two sets apart from the text alone, without the model "
            f"({shift.get('rule', '')}). The attack numbers measure the difference between the data sets, "
            "not the model's training: do not read them as evidence of membership.")


def verdict(results: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level (see :data:`lmaudit.report.sections.LEVELS`)."""
    attacks = {k: v for k, v in results.get("attacks", {}).items() if v.get("auc") is not None}
    n_m, n_n = results.get("n_members"), results.get("n_nonmembers")
    if not attacks:
        return [f"No attack produced a score ({num(n_m)} members, {num(n_n)} non-members)."], "weak"
    name, best = max(attacks.items(), key=lambda kv: kv[1]["auc"])
    low = _ci_low(best)
    if results.get("distribution_shift_flag"):
        level, lead = "warning", "The attacks separate the two sets, but so does the text alone (see the warning):"
    elif low >= 0.6:
        level, lead = "strong", "The model tells members from non-members well:"
    elif low > 0.5:
        level, lead = "evidence", "The model tells members from non-members better than chance:"
    else:
        level, lead = "weak", "The attacks do not tell members from non-members better than chance:"
    sentences = [f"{lead} the best of {len(attacks)} attacks, {name}, has AUC {with_ci(best['auc'], best.get('auc_ci'))}"
                 f" on {num(n_m)} members and {num(n_n)} non-members."]
    loss = attacks.get("loss")
    if len(attacks) > 1:
        tail = f" The loss attack alone has AUC {with_ci(loss['auc'], loss.get('auc_ci'))}." if loss and name != "loss" else ""
        sentences.append(f"The best of several attacks is an optimistic pick; its interval does not cover the choice.{tail}")
    at1 = best.get("tpr_at_fpr", {}).get("0.01")
    if at1:
        k = round(at1["tpr"] * at1["n_members"])
        mark = " (unreliable: too few non-members for a 1% FPR)" if at1.get("unreliable") else ""
        sentences.append(f"At a 1% false-positive rate, {name} flags {rate(k, at1['n_members'], at1.get('tpr_ci'))} "
                         f"of the members{mark}.")
    baselines = results.get("blind_baselines") or {}
    if baselines and not results.get("distribution_shift_flag"):
        top = max(baselines.items(), key=lambda kv: kv[1].get("auc") or 0)
        sentences.append(f"No distribution shift: the best blind baseline ({top[0]}, text only) has AUC "
                         f"{with_ci(top[1].get('auc'), top[1].get('auc_ci'))}.")
    elif results.get("distribution_shift_flag") is None:
        sentences.append("The blind baselines were not run: nothing checks that the two sets come from one distribution.")
    return sentences, level


def _curves(run: Run, names: list[str]) -> tuple[dict, int, int]:
    """Full-resolution ROC curves of ``names`` from samples.jsonl (members vs non-members)."""
    from sklearn.metrics import roc_curve

    sets = np.array([r.get("set") == "member" for r in run.samples], dtype=bool)
    curves = {}
    for name in names:
        values = np.array([(r.get("scores") or {}).get(name) for r in run.samples], dtype=float)
        ok = ~np.isnan(values)
        if ok.sum() == 0 or sets[ok].all() or not sets[ok].any():
            continue
        fpr, tpr, _ = roc_curve(sets[ok], values[ok])
        curves[name] = (fpr, tpr)
    return curves, int(sets.sum()), int((~sets).sum())


@sections.register("membership")
def membership(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r)
    warning = shift_warning(r)
    attacks = r.get("attacks", {})
    ranked = sorted((k for k, v in attacks.items() if v.get("auc") is not None), key=lambda k: -attacks[k]["auc"])
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
                     "tpr": [a.get("tpr_at_fpr", {}).get(f) for f in FPRS]})
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
        title="Membership inference", verdict=sentences, level=level, warnings=[warning] if warning else [],
        guide="guide-membership",
        body=page.render("membership.html.j2", r=r, rows=rows, fprs=FPRS, roc=roc, hist=hist, best=best,
                         drawn=[d for d in drawn if d in curves], samples=samples,
                         baselines=r.get("blind_baselines") or {}, excluded=r.get("excluded") or []),
    )
