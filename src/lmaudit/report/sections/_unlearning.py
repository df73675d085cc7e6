"""Shared by the unlearning sections (``unlearn-eval``, ``unlearn-bench``): how a compared
model row (:func:`lmaudit.unlearning.compare.compare`) reads as table cells and sentences.

A compared figure is ``{"value", "ci", "n"}`` (PrivLeak and the AUC count forget and holdout
documents instead of n); a criterion a run did not measure is None and reads "n/a".
"""

from __future__ import annotations

from typing import Any, Callable

from lmaudit.report.fmt import ci, finite, num, pct, pval, rate, with_ci

# The success targets of the issue (lmaudit.unlearning.bench.Targets' defaults), for runs that
# record none (an unlearn-eval run); a bench run's own targets are read from its config.
TARGETS = {"verbmem_gap": 5.0, "privleak": 15.0, "utility": 0.9}
# Below this many questions, forget quality's KS test has little power (TOFU's forget01: 40).
SMALL_N = 100


def value(fig: Any) -> float | None:
    return finite(fig.get("value")) if isinstance(fig, dict) else None


def interval(fig: Any) -> list | None:
    return fig.get("ci") if isinstance(fig, dict) else None


def n_of(fig: Any) -> str:
    """A figure's n in words: "16", "16 F + 64 H", "432 R + 576 H" (n/a when absent)."""
    if not isinstance(fig, dict):
        return "n/a"
    if "n_forget" in fig:
        return f"{num(fig.get('n_forget'))} F + {num(fig.get('n_holdout'))} H"
    n = fig.get("n")
    if isinstance(n, dict):
        return " + ".join(f"{num(v)} {k[0].upper()}" for k, v in n.items())
    return num(n)


def cell(fig: Any, fmt: Callable = num) -> str:
    """A figure as "value (95% CI lo-hi)"."""
    if not isinstance(fig, dict):
        return "n/a"
    return with_ci(fig.get("value"), fig.get("ci"), fmt)


def rate_cell(fig: Any) -> str:
    """A rate figure (extraction) as "k of n (share, 95% CI)"."""
    if not isinstance(fig, dict) or not fig.get("n") or value(fig) is None:
        return "n/a"
    n = int(fig["n"])
    return rate(round(value(fig) * n), n, fig.get("ci"))


def signed(x: Any) -> str:
    """A difference with its sign: "+9.18", "-4.05"."""
    v = finite(x)
    return num(x) if v is None else ("+" if v > 0 else "") + num(v)


def fq_cell(fq: Any) -> str:
    """Forget quality: "p = 0.27 (KS 0.118, 95% CI 0.08-0.198; n = 144 vs 144)"."""
    if not isinstance(fq, dict):
        return "n/a"
    docs = f", {num(fq['n_documents'])} documents" if fq.get("n_documents") is not None else ""
    return (f"p = {pval(fq.get('p_value'))} (KS {with_ci(fq.get('statistic'), fq.get('statistic_ci'))}; "
            f"n = {num(fq.get('n_unlearned'))} vs {num(fq.get('n_retrain'))} questions{docs})")


def fq_sentence(fq: Any, who: str = "") -> str | None:
    """Forget quality in words, with its n and (when n is small) the test's low power."""
    if not isinstance(fq, dict) or finite(fq.get("p_value")) is None:
        return None
    n = fq.get("n_unlearned") or 0
    docs = fq.get("n_documents")
    text = (f"{who}forget quality (TOFU: KS test between its truth ratios on F and the retrain model's) p = "
            f"{pval(fq['p_value'])} over {num(n)} questions" + (f" about {num(docs)} documents" if docs else ""))
    # The questions about one document are not independent: what counts for power is documents.
    if (docs if docs is not None else n) < SMALL_N:
        unit = "documents" if docs is not None else "questions"
        text += (f"; with fewer than {SMALL_N} {unit} the test has little power, so a high p says little "
                 "(a low p still says the two differ)")
    else:
        text += "; a high p means the test cannot tell it from the retrain model, not that they are equal"
    return text + "."


LEAKS = "still leaks against the retrain model"


def leak_words(pl: Any) -> tuple[str, str]:
    """What PrivLeak's interval says, as a verb phrase (:data:`LEAKS`, "shows no leak beyond
    the retrain model's", "leaks less than the retrain model ...", or "" without a figure), and
    the figure itself."""
    v, iv = value(pl), interval(pl)
    if v is None:
        return "", "PrivLeak n/a"
    shown = f"PrivLeak {signed(v)} (95% CI {ci(iv)}; {n_of(pl)} documents)" if iv else f"PrivLeak {signed(v)}"
    lo, hi = (finite(iv[0]), finite(iv[1])) if iv and len(iv) == 2 else (None, None)
    if lo is not None and lo > 0:
        return LEAKS, shown
    if hi is not None and hi < 0:
        return ("leaks less than the retrain model (over-unlearned: F now looks less familiar to it than unseen "
                "text)"), shown
    return "shows no leak beyond the retrain model's", shown


def candidate_sentences(label: str, row: dict, target_row: dict | None, targets: dict = TARGETS) -> list[str]:
    """The plain-words verdict of one candidate against the retrain reference and the target."""
    out = []
    words, shown = leak_words(row.get("privleak"))
    pl = value(row.get("privleak"))
    if words:
        within = "within" if abs(pl) <= targets["privleak"] else "outside"
        auc = row.get("privleak") or {}
        out.append(f"{label} {words}: {shown}; membership AUC on F vs H "
                   f"{num(auc.get('auc'))} against the retrain model's {num(auc.get('auc_retrain'))} "
                   f"({within} the target |PrivLeak| ≤ {num(targets['privleak'])}).")
    gap = row.get("verbmem_forget_minus_retrain")
    if value(gap) is not None:
        g = value(gap)
        within = "within" if abs(g) <= targets["verbmem_gap"] else "outside"
        out.append(f"{label}: VerbMem on F {num(value(row.get('verbmem_forget')))}, "
                   f"{signed(g)} points from the retrain model's (95% CI {ci(interval(gap))}, {n_of(gap)} documents; "
                   f"{within} the target of {num(targets['verbmem_gap'])} points).")
    util = row.get("knowmem_retain_vs_target")
    if value(util) is not None:
        u = value(util)
        kept = "keeps" if u >= targets["utility"] else "falls short of"
        out.append(f"{label}: utility: KnowMem on R {num(value(row.get('knowmem_retain')))} against the target's "
                   f"{num(value((target_row or {}).get('knowmem_retain')))}, {pct(u)} of it (95% CI "
                   f"{ci(interval(util), pct)}, {n_of(util)} questions); it {kept} the target of "
                   f"{pct(targets['utility'], 0)}.")
    fq = fq_sentence(row.get("forget_quality"), f"{label}: ")
    if fq:
        out.append(fq)
    return out


# The MUSE criteria of a compared row, as (label, how to read the row, formatter).
CRITERIA = (
    ("C1 VerbMem on F (ROUGE-L F1 × 100)", lambda r: r.get("verbmem_forget"), "num"),
    ("VerbMem on F minus the retrain model's", lambda r: r.get("verbmem_forget_minus_retrain"), "num"),
    ("extracted F (every continuation token)", lambda r: r.get("extraction_forget"), "rate"),
    ("C2 KnowMem on F (ROUGE-L F1 × 100)", lambda r: r.get("knowmem_forget"), "num"),
    ("membership AUC, F vs H", lambda r: r.get("auc_forget_holdout"), "num"),
    ("C3 PrivLeak (lmaudit's sign; 0 = retrain)", lambda r: r.get("privleak"), "num"),
    ("C4 KnowMem on R (ROUGE-L F1 × 100)", lambda r: r.get("knowmem_retain"), "num"),
    ("KnowMem on R / the target's", lambda r: r.get("knowmem_retain_vs_target"), "pct"),
    ("loss on F", lambda r: (r.get("loss") or {}).get("forget"), "num"),
    ("loss on R", lambda r: (r.get("loss") or {}).get("retain"), "num"),
    ("loss on H", lambda r: (r.get("loss") or {}).get("holdout"), "num"),
)
TOFU = (("probability", "answer probability"), ("rouge_l_recall", "ROUGE-L recall"),
        ("truth_ratio_score", "truth-ratio score"))


def criteria_rows(models: dict) -> list[dict]:
    """One table row per criterion, one cell (value, interval; n) per model."""
    rows = []
    for name, get, kind in CRITERIA:
        cells = []
        for row in models.values():
            fig = get(row) if isinstance(row, dict) else None
            text = rate_cell(fig) if kind == "rate" else cell(fig, pct if kind == "pct" else num)
            cells.append({"text": text, "n": n_of(fig) if kind != "rate" else ""})
        rows.append({"name": name, "cells": cells})
    rows.append({"name": "PrivLeak, MUSE's sign (holdout as members)",
                 "cells": [{"text": signed((r.get("privleak") or {}).get("privleak_muse")), "n": ""}
                           for r in models.values()]})
    return rows


def tofu_rows(models: dict) -> list[dict]:
    """TOFU's figures: per set, probability, ROUGE-L recall and truth-ratio score; then forget
    quality and model utility."""
    sets = []
    for row in models.values():
        for s in (row.get("tofu") or {}) if isinstance(row, dict) else ():
            if s not in sets:
                sets.append(s)
    rows = []
    for s in sets:
        for key, name in TOFU:
            figs = [((r.get("tofu") or {}).get(s) or {}).get(key) for r in models.values()]
            rows.append({"name": f"{name} on {s}", "cells": [{"text": cell(f), "n": n_of(f)} for f in figs]})
    rows.append({"name": "forget quality (KS p-value vs the retrain model)",
                 "cells": [{"text": fq_cell(r.get("forget_quality")), "n": ""} for r in models.values()]})
    rows.append({"name": "model utility (harmonic mean on R and H)",
                 "cells": [{"text": cell(r.get("model_utility")), "n": n_of(r.get("model_utility"))}
                           for r in models.values()]})
    return rows
