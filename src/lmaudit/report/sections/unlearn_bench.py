"""Unlearning benchmark (kind ``unlearn-bench``): the leaderboard (each method at its best
setting, every figure with its interval), which methods reached the three targets, the
forgetting-versus-utility frontier of the sweep, C5 scalability, C6 sustainability and every
sweep point."""

from __future__ import annotations

from lmaudit.report import plots
from lmaudit.report.fmt import finite, num, pct
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._unlearning import LEAKS, TARGETS, cell, fq_cell, leak_words, n_of, rate_cell, signed

MET = (("verbmem", "VerbMem"), ("privleak", "PrivLeak"), ("utility", "utility"))


def targets_of(r: dict) -> dict:
    got = (r.get("config") or {}).get("targets")
    return {**TARGETS, **got} if isinstance(got, dict) else dict(TARGETS)


def met_words(meets: dict) -> str:
    return ", ".join(name for key, name in MET if meets.get(key)) or "none"


def _setting(e: dict) -> str:
    return f"{e.get('method')} (lr {num(e.get('lr'))}, {num(e.get('epoch'))} epoch{'s' if e.get('epoch') != 1 else ''})"


def verdict(r: dict) -> tuple[list[str], str, list[str]]:
    """The verdict sentences, their level and the section's warnings.

    Level ``info`` (a benchmark measures; its best settings are chosen on the evaluation
    itself, an optimistic choice); ``warning`` when a chosen setting's rerun did not reproduce
    the sweep's model, or the target shows no leak for the methods to remove.
    """
    t = targets_of(r)
    board = [e for e in r.get("leaderboard") or [] if isinstance(e, dict)]
    methods = [e for e in board if e.get("method")]
    target = next((e for e in board if e.get("model") == "target"), None)
    warnings = []
    if not methods:
        return ["No method was benchmarked: the leaderboard is empty."], "warning", warnings
    sentences = []
    if target is not None:
        words, shown = leak_words((target.get("row") or {}).get("privleak"))
        gap = (target.get("summary") or {}).get("verbmem_forget_minus_retrain")
        sentences.append(f"Before unlearning, the target {words or 'has no PrivLeak figure'} "
                         f"({shown}); its VerbMem on F is {signed(gap)} points from the retrain model's.")
        if words and words != LEAKS:
            warnings.append("The target shows no leak beyond the retrain model's on these sets: a method 'reaching' "
                            "the PrivLeak target here shows little.")
    reached = [e for e in methods if (e.get("meets") or {}).get("all")]
    goals = (f"VerbMem on F within {num(t['verbmem_gap'])} points of the retrain model's, |PrivLeak| ≤ "
             f"{num(t['privleak'])} and KnowMem on R at least {pct(t['utility'], 0)} of the target's")
    if reached:
        sentences.append(f"{len(reached)} of {len(methods)} methods reached all three targets ({goals}) at one setting: "
                         + "; ".join(_setting(e) for e in reached) + ".")
    else:
        best = min(methods, key=lambda e: finite((e.get("meets") or {}).get("miss")) or float("inf"))
        sentences.append(f"No method reached all three targets ({goals}). The closest was {_setting(best)}, which met "
                         f"{met_words(best.get('meets') or {})}: the frontier below shows what each method trades.")
    for e in methods:
        row, m = e.get("row") or {}, e.get("meets") or {}
        sentences.append(
            f"{e.get('method')} at its best setting (lr {num(e.get('lr'))}, epoch {num(e.get('epoch'))}): VerbMem gap "
            f"{cell(row.get('verbmem_forget_minus_retrain'))}, PrivLeak {cell(row.get('privleak'))}, KnowMem on R "
            f"{cell(row.get('knowmem_retain_vs_target'), pct)} of the target's; targets met: {met_words(m)}.")
    sentences.append("Each method's setting was chosen on this same evaluation (MUSE's practice): an optimistic "
                     "choice; a setting chosen on separate removal requests would be stricter.")
    stale = [e.get("method") for e in methods if e.get("rerun_matches_sweep") is False]
    if stale:
        warnings.append(f"The leaderboard's rerun of {', '.join(map(str, stale))} did not reproduce the sweep's model "
                        "at the chosen setting (its greedy continuations differ): its row and its sweep point "
                        "describe different models.")
    return sentences, "warning" if warnings else "info", warnings


def leaderboard_rows(r: dict) -> list[dict]:
    rows = []
    for e in r.get("leaderboard") or []:
        if not isinstance(e, dict):
            continue
        row, s, m = e.get("row") or {}, e.get("summary") or {}, e.get("meets") or {}
        loss = row.get("loss") or {}
        rows.append({
            "model": e.get("model"), "lr": e.get("lr"), "epoch": e.get("epoch"),
            "verbmem": cell(row.get("verbmem_forget")), "gap": cell(row.get("verbmem_forget_minus_retrain")),
            "extracted": rate_cell(row.get("extraction_forget")), "knowmem_f": cell(row.get("knowmem_forget")),
            "privleak": cell(row.get("privleak")), "n_pl": n_of(row.get("privleak")),
            "knowmem_r": cell(row.get("knowmem_retain")), "ratio": cell(row.get("knowmem_retain_vs_target"), pct),
            "loss_r": cell(loss.get("retain")), "loss_h": cell(loss.get("holdout")),
            "fq": fq_cell(row.get("forget_quality")), "mu": cell(row.get("model_utility")),
            "met": "reference" if not e.get("method") else met_words(m),
            "rerun": e.get("rerun_matches_sweep"), "summary": s})
    return rows


def frontier_plot(r: dict):
    """The sweep's frontier as :func:`lmaudit.unlearning.bench.frontier_svg` draws it."""
    curves: dict[str, list] = {}
    for p in r.get("sweep") or []:
        h = p.get("headline") or {}
        x, y = finite(h.get("verbmem_forget")), finite(p.get("utility"))
        if x is not None and y is not None:
            curves.setdefault(str(p.get("method")), []).append((x, y, f"lr={num(p.get('lr'))}"))
    reference = {}
    for name in ("target", "retrain"):
        ref = (r.get("reference") or {}).get(name) or {}
        x, y = finite(ref.get("verbmem_forget")), finite(ref.get("knowmem_retain_vs_target"))
        if x is not None and y is not None:
            reference[name] = (x, y)
    if not curves:
        return None
    return plots.frontier(curves, reference=reference, xlabel="VerbMem on F (ROUGE-L F1 × 100; lower: more forgotten)",
                          ylabel="KnowMem on R / target's", ytarget=targets_of(r)["utility"],
                          title="Unlearning frontier: forgetting against utility, every method, learning rate and epoch")


def _step(row: dict, extra: tuple) -> dict:
    return {**{k: row.get(k) for k in extra}, "verbmem": row.get("verbmem_forget"),
            "gap": row.get("verbmem_forget_minus_retrain"), "privleak": row.get("privleak"),
            "knowmem_forget": row.get("knowmem_forget"), "ratio": row.get("knowmem_retain_vs_target"),
            "loss_retain": row.get("loss_retain")}


def scale_tables(r: dict) -> tuple[list[dict], list[dict]]:
    """C5 (per method, one row per forget-set size) and C6 (per method, one row per request, or
    the reason it was skipped)."""
    c5 = [{"method": name, "rows": [_step(x, ("n_forget",)) for x in rows if isinstance(x, dict)]}
          for name, rows in (r.get("scalability") or {}).items() if isinstance(rows, list)]
    c6 = []
    for name, steps in (r.get("sustainability") or {}).items():
        if isinstance(steps, dict):
            c6.append({"method": name, "skipped": steps.get("skipped") or "not run", "rows": []})
        elif isinstance(steps, list):
            c6.append({"method": name, "skipped": None,
                       "rows": [_step(x, ("request", "n_removed")) for x in steps if isinstance(x, dict)]})
    return c5, c6


@sections.register("unlearn-bench")
def unlearn_bench(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level, warnings = verdict(r)
    c5, c6 = scale_tables(r)
    columns = [Column("method", "method"), Column("lr", "lr", "num"), Column("epoch", "epoch", "num"),
               Column("verbmem_forget", "VerbMem F", "num"), Column("knowmem_forget", "KnowMem F", "num"),
               Column("privleak", "PrivLeak", "num"), Column("knowmem_retain", "KnowMem R", "num"),
               Column("knowmem_retain_vs_target", "KnowMem R / target", "pct"),
               Column("loss_retain", "loss R", "num"), Column("frontier", "on frontier", "bool"),
               Column("meets_all", "all targets", "bool"), Column("miss", "total miss", "num")]
    samples = page.samples(f"{run.name}-unlearn-bench", run.samples, columns, sort="miss", descending=False,
                           caption="Every sweep point (method × learning rate × epoch), smallest total miss first")
    return Section(
        title="Unlearning benchmark", verdict=sentences, level=level, warnings=warnings, guide="guide-unlearning",
        body=page.render("unlearn-bench.html.j2", leaderboard=leaderboard_rows(r), plot=frontier_plot(r), c5=c5,
                         c6=c6, sets=r.get("sets") or {}, targets=targets_of(r), selection=r.get("selection"),
                         timings=r.get("timings") or {}, config=r.get("config") or {}, samples=samples),
    )
