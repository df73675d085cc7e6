"""Knowledge (kind ``knowledge``): how often the model answers questions about its documents'
facts, by duplication level, kind of fact and wording; the questions it answers best."""

from __future__ import annotations

from lmaudit.report import plots
from lmaudit.report.fmt import num, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import (CASES, cell, count_of, error_browser, error_rows, errors_warning,
                                                   level_label, level_rows, levels_sentence, phrase, rank, segments)

BREAKDOWNS = (("duplication", "duplication level"), ("kind", "kind of fact"), ("verbatim", "question wording"))


def verdict(results: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level: always a measurement (info), since some answers
    can be guessed; the same questions about documents the model never saw are the baseline."""
    n = results.get("n")
    if not n:
        return [f"No question could be asked: {num(results.get('n_items') or 0)} items, "
                f"{num(results.get('n_errors') or 0)} error rows, {num(len(results.get('excluded') or []))} "
                "left out as shots."], "warning"
    k = count_of(results.get("exact_match_rate"), n)
    sentences = [f"The model's answer matches the true one exactly (after normalisation) for "
                 f"{phrase(k, n, results.get('exact_match_rate_ci'), 'questions')}; mean ROUGE-L F1 "
                 f"{with_ci(results.get('rouge_l_f1_mean'), results.get('rouge_l_f1_mean_ci'))}."]
    by_level = levels_sentence(level_rows(results.get("by_duplication"), "exact_match_rate"), "questions")
    if by_level:
        sentences.append(by_level)
    wording = {row["level"]: row for row in level_rows(results.get("by_verbatim"), "exact_match_rate", "verbatim")}
    if wording:
        parts = []
        if "True" in wording:
            w = wording["True"]
            parts.append(f"questions that continue the document's own words, {phrase(w['k'], w['n'], w['ci'])}")
        if "False" in wording:
            w = wording["False"]
            parts.append(f"reworded questions, {phrase(w['k'], w['n'], w['ci'])}")
        if parts:
            sentences.append("Exact answers by wording: " + "; ".join(parts) + ".")
    excluded = results.get("excluded") or []
    if excluded:
        sentences.append(f"{num(len(excluded))} question{'s were' if len(excluded) != 1 else ' was'} not asked: "
                         "the same as a shot (listed below).")
    return sentences, "info"


def cases(samples: list[dict], *, limit: int = CASES) -> list[dict]:
    """The answered questions closest to the truth: exact matches first, then by ROUGE-L F1."""
    ok = [r for r in samples if r.get("error") is None and isinstance(r.get("prediction"), str)]
    out = []
    for r in sorted(ok, key=lambda r: (bool(r.get("exact_match")), rank(r.get("rouge_l_f1"))), reverse=True)[:limit]:
        facts = [(name, level_label(str(r[key]), key) if key != "kind" else str(r[key]))
                 for key, name in (("kind", "kind"), ("duplication", "duplication"), ("verbatim", "wording"))
                 if key in r]
        out.append({"id": r.get("id"), "question": segments(str(r.get("question", "")), []),
                    "facts": [*facts, ("exact match", num(r.get("exact_match"))),
                              ("ROUGE-L F1", num(r.get("rouge_l_f1")))],
                    "answer": segments(str(r.get("answer", "")), []), "prediction": segments(r["prediction"], [])})
    return out


@sections.register("knowledge")
def knowledge(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r)
    errors = error_rows(run.samples)
    warning = errors_warning(len(errors), len(run.samples), "questions asked")
    tables = []
    for field, name in BREAKDOWNS:
        rows = level_rows(r.get(f"by_{field}"), "exact_match_rate", field)
        for row in rows:
            row["rouge"] = with_ci(row["entry"].get("rouge_l_f1_mean"), row["entry"].get("rouge_l_f1_mean_ci"))
        if rows:
            tables.append({"field": field, "name": name, "rows": rows})
    by_dup = level_rows(r.get("by_duplication"), "exact_match_rate")
    bars = plots.bars([x["label"] for x in by_dup], [x["rate"] for x in by_dup], [x["ci"] for x in by_dup],
                      ylabel="exact answers", title="Exact answers by duplication level, with 95% intervals",
                      counts=[x["n"] for x in by_dup]) \
        if by_dup else None
    overall = {"cell": cell(count_of(r.get("exact_match_rate"), r.get("n")), r.get("n"), r.get("exact_match_rate_ci")),
               "rouge": with_ci(r.get("rouge_l_f1_mean"), r.get("rouge_l_f1_mean_ci"))}
    present = lambda key: any(key in x for x in run.samples)  # noqa: E731
    columns = [Column("id", "id"), *([Column("kind", "kind")] if present("kind") else []),
               *([Column("duplication", "duplication", "num")] if present("duplication") else []),
               *([Column("verbatim", "verbatim", "bool")] if present("verbatim") else []),
               Column("question", "question"), Column("answer", "answer"), Column("prediction", "model's answer"),
               Column("exact_match", "exact", "bool"), Column("rouge_l_f1", "ROUGE-L F1", "num"),
               *([Column("error", "error")] if errors else [])]
    samples = page.samples(f"{run.name}-knowledge", run.samples, columns, sort="rouge_l_f1",
                           caption="Questions, highest ROUGE-L F1 first")
    errors_list = error_browser(page, run, errors, what="Questions")
    return Section(
        title="Knowledge", verdict=sentences, level=level, warnings=[warning] if warning else [],
        guide="guide-knowledge",
        body=page.render("knowledge.html.j2", config=run.provenance.get("config") or {}, tables=tables,
                         overall=overall, bars=bars, cases=cases(run.samples),
                         excluded=r.get("excluded") or [], n_shots=len(r.get("shots") or []), samples=samples,
                         n_errors=len(errors), error_browser=errors_list),
    )
