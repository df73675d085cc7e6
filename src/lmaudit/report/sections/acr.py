"""Adversarial Compression Ratio (kind ``acr``): for how many targets the prompt search found a
prompt shorter than the target, by group; every target with its prompt, lengths, ACR, status
and time; the ACR distribution of members and non-members."""

from __future__ import annotations

from lmaudit.report import plots
from lmaudit.report.fmt import num
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import (cell, count_of, error_browser, error_rows, errors_warning, grouped,
                                                   level_label, level_rows, levels_sentence, phrase)


def _budget(config: dict) -> str:
    """The search's budget in words, from the run's ACRConfig."""
    parts = [f"{num(config['steps'])} GCG steps at the first length" if config.get("steps") else "GCG",
             f"top-k {num(config['top_k'])}" if config.get("top_k") else None,
             f"{num(config['n_candidates'])} candidates per step" if config.get("n_candidates") else None,
             f"patience {num(config['patience'])}" if config.get("patience") else None,
             f"at most {num(config['max_seconds'])} s a target" if config.get("max_seconds") else None]
    return ", ".join(p for p in parts if p)


def inconclusive_warning(results: dict, provenance: dict) -> str | None:
    """The warning for targets the time cap stopped before a verdict, or None when none was."""
    n = results.get("n_inconclusive") or 0
    if not n:
        return None
    config = provenance.get("config") if isinstance(provenance.get("config"), dict) else {}
    cap = f"{num(config['max_seconds'])} s " if config.get("max_seconds") else ""
    were = "targets were" if n != 1 else "target was"
    return f"{num(n)} {were} stopped by the {cap}time cap before a verdict: inconclusive, counted in no rate."


def verdict(results: dict, provenance: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level: evidence when a target is memorized, weak when
    none is, read-with-care when no target reached a verdict."""
    config = provenance.get("config") if isinstance(provenance.get("config"), dict) else {}
    n = results.get("n")
    if not n:
        what = "every target searched was inconclusive" if results.get("n_inconclusive") else \
            "no target could be searched"
        return [f"No target reached a verdict: {what} ({num(results.get('n_targets') or 0)} targets, "
                f"{num(results.get('n_errors') or 0)} error rows)."], "warning"
    k = count_of(results.get("memorized_rate"), n)
    sentences = [f"The search found a prompt shorter than its target (ACR > 1: memorized) for "
                 f"{phrase(k, n, results.get('memorized_rate_ci'), 'targets')}."]
    groups = level_rows(results.get("by_group"), "memorized_rate", "group")
    if groups:
        sentences.append(levels_sentence(groups, "targets", lead="By group"))
    levels = level_rows(results.get("by_duplication"), "memorized_rate")
    if len(levels) > 1:
        sentences.append(levels_sentence(levels, "targets"))
    sentences.append(f"\"Not memorized\" means that the compute-bounded search ({_budget(config)}) found no prompt "
                     "shorter than the target: it is not proof that none exists.")
    found = results.get("n_success")
    if found:
        sentences.append(f"The median ACR of the {num(found)} target{'s' if found != 1 else ''} with a prompt found "
                         f"is {num(results.get('acr_median'))}.")
    return sentences, "evidence" if k else "weak"


def _histogram(samples: list[dict]):
    found = [r for r in samples if r.get("error") is None and isinstance(r.get("acr"), (int, float))
             and r["acr"] == r["acr"]]
    if not found:
        return None
    groups = grouped(found, "acr", field="group", noun="targets")
    # Members and non-members in the colours the membership section gives them.
    colors = [{"members": plots.MEMBER, "non-members": plots.NONMEMBER}.get(g, plots.PALETTE[2 + i % 8])
              for i, g in enumerate(groups)]
    return plots.histograms(groups, xlabel="ACR (target tokens / prompt tokens)", title="ACR per target, by group",
                            bins=20, colors=colors, vline=(1.0, "ACR = 1: memorized above"))


@sections.register("acr")
def acr(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r, run.provenance)
    warnings = [w for w in (inconclusive_warning(r, run.provenance),) if w]
    errors = error_rows(run.samples)
    warning = errors_warning(len(errors), r.get("n_targets") or len(run.samples), "targets")
    tables = []
    for field, name in (("group", "group"), ("duplication", "duplication level")):
        rows = level_rows(r.get(f"by_{field}"), "memorized_rate", field)
        if rows:
            tables.append({"name": name, "rows": rows})
    overall = {"label": "all", "cell": cell(count_of(r.get("memorized_rate"), r.get("n")), r.get("n"),
                                            r.get("memorized_rate_ci")), "entry": r}
    searched = [s for s in run.samples if s.get("error") is None]
    no_acr = {}
    for s in searched:
        if not isinstance(s.get("acr"), (int, float)):
            label = level_label(str(s.get("group", "targets")), "group")
            no_acr[label] = no_acr.get(label, 0) + 1
    columns = [Column("id", "id"), *([Column("group", "group")] if any("group" in s for s in run.samples) else []),
               Column("status", "status"), Column("acr", "ACR", "num"), Column("prompt_tokens", "prompt tokens", "num"),
               Column("target_tokens", "target tokens", "num"), Column("seconds", "seconds", "num"),
               Column("prompt", "prompt found"), Column("target", "target"),
               *([Column("error", "error")] if errors else [])]
    samples = page.samples(f"{run.name}-acr", run.samples, columns, sort="acr", caption="Targets, highest ACR first")
    errors_list = error_browser(page, run, errors, what="Targets")
    return Section(
        title="Adversarial compression (ACR)", verdict=sentences, level=level,
        warnings=warnings + ([warning] if warning else []), guide="guide-acr",
        body=page.render("acr.html.j2", tables=tables, overall=overall, hist=_histogram(run.samples), no_acr=no_acr,
                         compute=r.get("compute") or {}, samples=samples, n_errors=len(errors),
                         error_browser=errors_list),
    )
