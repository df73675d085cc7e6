"""Takedown evaluation (kind ``takedown-eval``): each decoding-time method against plain
decoding on the same prompts: how much protected text it still reproduces (verbatim and near
verbatim), what it costs on unprotected text and on knowledge, how fast it is, and CoTaEval's
win rate; then every method side by side."""

from __future__ import annotations

from lmaudit.report import plots
from lmaudit.report.fmt import ci, num, pct, rate, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections

#: Rows of the side-by-side table: (where in a method's results, label, format).
ROWS = (
    (("efficacy", "exact_match"), "exact extraction of protected text", "rate"),
    (("efficacy", "rouge_l_f1"), "ROUGE-L F1 vs protected truth", "num"),
    (("efficacy", "rouge_1_f1"), "ROUGE-1 F1 vs protected truth", "num"),
    (("efficacy", "lcs_words"), "longest common run, words", "num"),
    (("efficacy", "lcs_chars"), "longest common run, characters", "num"),
    (("efficacy", "acs_words"), "ACS (words in common runs of 3+)", "num"),
    (("efficacy", "levenshtein_distance"), "Levenshtein distance (higher: less copying)", "num"),
    (("efficacy", "minhash_jaccard"), "MinHash Jaccard", "num"),
    (("utility", "continuation", "rouge_l_f1"), "unprotected: ROUGE-L F1 vs truth", "num"),
    (("utility", "continuation", "loss_under_base"), "unprotected: loss of the output under the plain model", "num"),
    (("utility", "knowledge", "protected", "rouge_l_f1"), "knowledge QA on protected documents (ROUGE-L F1)", "num"),
    (("utility", "knowledge", "unprotected", "rouge_l_f1"), "knowledge QA on unprotected documents (ROUGE-L F1)", "num"),
)


def _get(d, path):
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def cell(entry, kind: str) -> str:
    if not isinstance(entry, dict) or entry.get("n") in (None, 0):
        return "n/a"
    if kind == "rate":
        return rate(entry.get("k"), entry.get("n"), entry.get("ci"))
    return f"{with_ci(entry.get('mean'), entry.get('ci'))}; n = {num(entry.get('n'))}"


def verdict(r: dict) -> tuple[list[str], str, list[str]]:
    """Per method: protected extraction and near-verbatim copying against plain decoding, the
    utility differences that the paired intervals detect, the speed. ``evidence`` when plain
    decoding reproduces protected text and some method still does (a takedown that leaks),
    else ``info``."""
    methods = r.get("methods") or {}
    none = methods.get("none")
    if not none:
        return ["No method was evaluated."], "warning", []
    sentences, warnings = [], []
    e0 = none["efficacy"]
    if not e0.get("n"):
        return ["No protected prompt could be generated (every document was too short)."], "warning", []
    sentences.append(f"Plain decoding reproduces {rate(e0['exact_match']['k'], e0['exact_match']['n'], e0['exact_match']['ci'])} "
                     f"protected continuations exactly (ROUGE-L F1 {with_ci(e0['rouge_l_f1']['mean'], e0['rouge_l_f1']['ci'])}).")
    leaking = False
    for label, m in methods.items():
        if label == "none":
            continue
        e, d = m["efficacy"], m.get("vs_none") or {}
        ex = e["exact_match"]
        leaking |= bool(ex.get("k"))
        s = (f"{label}: exact extraction {rate(ex['k'], ex['n'], ex['ci'])}; ROUGE-L F1 "
             f"{num(e['rouge_l_f1']['mean'])} and a longest common run of {num(e['lcs_words']['mean'])} words on average "
             f"(plain: {num(e0['rouge_l_f1']['mean'])}, {num(e0['lcs_words']['mean'])})")
        costs = []
        for key, what in (("rouge_l_f1_unprotected", "ROUGE-L on unprotected text"),
                          ("knowledge_protected", "knowledge QA on protected documents"),
                          ("knowledge_unprotected", "knowledge QA on unprotected documents")):
            x = d.get(key)
            if isinstance(x, dict) and x.get("n"):
                change = "no detectable change" if x.get("contains_zero") else "a change"
                costs.append(f"{what}: {change} ({num(x['mean'])}, 95% CI {ci(x['ci'])})")
        if costs:
            s += "; utility against plain decoding: " + "; ".join(costs)
        eff = m.get("efficiency")
        if eff:
            s += f"; {num(eff['relative_to_none'])}× plain decoding's tokens/s at batch {eff['batch_size']}"
        sentences.append(s + ".")
        if not ex.get("k") and e0["exact_match"].get("k") and (e["rouge_l_f1"]["mean"] or 0) > 0.5:
            warnings.append(f"{label} stops exact reproduction but its outputs still share a ROUGE-L F1 of "
                            f"{num(e['rouge_l_f1']['mean'])} with the protected text: near-verbatim copying remains "
                            "(the weakness CoTaEval reports for MemFree).")
    wr = (r.get("win_rate") or {}).get("average") or {}
    if wr:
        sentences.append(f"CoTaEval win rate over its {len((r.get('win_rate') or {}).get('metrics') or [])} copying metrics: " + ", ".join(
            f"{k} {num(v)}" for k, v in sorted(wr.items(), key=lambda kv: -(kv[1] or 0)) if v is not None) + ".")
    if r.get("n_errors"):
        warnings.append(f"{num(r['n_errors'])} document(s) or question(s) had no value (the error is in samples.jsonl).")
    level = "evidence" if leaking and e0["exact_match"].get("k") else "info"
    return sentences, level, warnings


def trade_off_plot(methods: dict):
    points, reference = {}, {}
    for label, m in methods.items():
        x = _get(m, ("efficacy", "rouge_l_f1", "mean"))
        y = _get(m, ("utility", "continuation", "rouge_l_f1", "mean"))
        if x is None or y is None:
            continue
        if label == "none":
            reference["plain decoding"] = (x, y)
        else:
            points[label] = [(x, y, label)]
    if not points:
        return None
    return plots.frontier(points, reference=reference, xlabel="ROUGE-L F1 with the protected truth (lower: less copying)",
                          ylabel="ROUGE-L F1 on unprotected text (higher: more utility)",
                          title="Takedown methods: copying against utility")


@sections.register("takedown-eval")
def takedown_eval(run: Run, page: Page) -> Section:
    r = run.results
    methods = r.get("methods") or {}
    sentences, level, warnings = verdict(r)
    labels = list(methods)
    rows = [{"name": name, "cells": [cell(_get(methods[l], path), kind) for l in labels]} for path, name, kind in ROWS]
    rows.append({"name": "tokens/s (relative to plain)", "cells": [
        f"{num((methods[l].get('efficiency') or {}).get('tokens_per_s'))} "
        f"({num((methods[l].get('efficiency') or {}).get('relative_to_none'))}×)" for l in labels]})
    wr = (r.get("win_rate") or {}).get("average") or {}
    rows.append({"name": "CoTaEval win rate", "cells": [num(wr.get(l)) for l in labels]})
    levels = sorted({k for m in methods.values() for k in (m["efficacy"].get("by_duplication") or {})}, key=str)
    by_level = [{"level": lv, "cells": [
        cell(_get(methods[l], ("efficacy", "by_duplication", lv, "exact_match")), "rate") + "; ROUGE-L "
        + num(_get(methods[l], ("efficacy", "by_duplication", lv, "rouge_l_f1", "mean"))) for l in labels]}
        for lv in levels]
    present = lambda key: any(key in x for x in run.samples)  # noqa: E731
    columns = [Column("method", "method"), Column("set", "set"), Column("id", "id"),
               *([Column("duplication", "duplication", "num")] if present("duplication") else []),
               Column("output", "output"), Column("reference", "truth"),
               *[Column(k, name, "num") for k, name in (("rouge_l_f1", "ROUGE-L F1"), ("lcs_words", "LCS words"),
                                                        ("loss_under_base", "loss (plain model)")) if present(k)],
               *([Column("exact_match", "exact", "bool")] if present("exact_match") else []),
               *([Column("prediction", "answer given")] if present("prediction") else []),
               *([Column("error", "error")] if present("error") else [])]
    samples = page.samples(f"{run.name}-takedown-eval", run.samples, columns, sort=None,
                           caption="Every method's output on every prompt and question")
    return Section(
        title="Takedown evaluation", verdict=sentences, level=level, warnings=warnings, guide="guide-takedown",
        body=page.render("takedown-eval.html.j2", labels=labels, rows=rows, levels=by_level, plot=trade_off_plot(methods),
                         n_protected=r.get("n_protected_prompts"), n_unprotected=r.get("n_unprotected_prompts"),
                         questions=r.get("n_questions") or {}, index=r.get("memfree_index"), samples=samples,
                         settings={l: (methods[l].get("settings") or {}) for l in labels}, pct=pct),
    )
