"""Attribution (kind ``attribute``): how much of each output is found verbatim in the corpus,
in which documents, and how much in the document it was expected to come from; the outputs
with the longest spans, their spans marked."""

from __future__ import annotations

from typing import Any

from lmaudit.report.fmt import num, pct, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import (CASES, cell, error_browser, error_rows, errors_warning, level_label,
                                                   phrase, segments)


def _rate(results: dict, key: str) -> tuple[Any, Any, Any]:
    r = results.get(key) or {}
    return r.get("k"), r.get("n"), r.get("ci")


def verdict(results: dict) -> tuple[list[str], str]:
    """Sentences and level: a measurement (info). Whether a span is evidence of copying depends
    on how specific it is: template text is found in many documents."""
    n = results.get("n_outputs")
    if not n:
        return [f"No output could be attributed: {num(results.get('n_errors') or 0)} error rows."], "warning"
    definitions = results.get("definitions") or {}
    s = [f"{phrase(*_rate(results, 'with_span'), 'outputs')} hold a span found verbatim in the corpus "
         f"({definitions.get('span', 'a maximal verbatim run')}); spans cover "
         f"{pct(results.get('attributed_share_pooled'))} of all output characters."]
    if results.get("with_unique_span"):
        s.append(f"{phrase(*_rate(results, 'with_unique_span'), 'outputs')} hold a span that only one document "
                 f"holds ({pct(results.get('unique_share_pooled'))} of characters): spans found in many documents "
                 "are shared text, such as templates, and point at no one source.")
    if results.get("with_source_span"):
        s.append(f"Of the attributed characters, {pct(results.get('source_share_pooled'))} are in spans that the "
                 f"expected document holds (per-output mean "
                 f"{with_ci(_mean(results, 'source_share_mean'), _ci(results, 'source_share_mean'), fmt=pct)}); "
                 f"{phrase(*_rate(results, 'with_source_span'), 'outputs with a span')} have one from it.")
    return s, "info"


def _mean(results: dict, key: str) -> Any:
    return (results.get(key) or {}).get("mean")


def _ci(results: dict, key: str) -> Any:
    return (results.get(key) or {}).get("ci")


def level_table(results: dict) -> list[dict]:
    """One row per duplication level (then "all"): the rates and shares the verdict gives."""
    levels = [(level_label(k), v) for k, v in (results.get("by_duplication") or {}).items()]
    rows = []
    for label, r in [*levels, ("all", results)]:
        rows.append({"label": label, "with_span": cell(*_rate(r, "with_span")),
                     "attributed": pct(r.get("attributed_share_pooled")),
                     "unique": cell(*_rate(r, "with_unique_span")),
                     "source": pct(r.get("source_share_pooled")) if r.get("with_source_span") else None,
                     "with_source": cell(*_rate(r, "with_source_span")) if r.get("with_source_span") else None})
    return rows


def cases(samples: list[dict], *, limit: int = CASES) -> list[dict]:
    """The outputs with the longest spans: each text with its spans marked, and the spans listed
    with their counts and documents."""
    ok = [r for r in samples if r.get("error") is None and isinstance(r.get("text"), str)]
    out = []
    for r in sorted(ok, key=lambda r: (r.get("longest_span_chars") or 0, r.get("attributed_chars") or 0),
                    reverse=True)[:limit]:
        spans = [s for s in r.get("spans") or [] if isinstance(s, dict)]
        out.append({
            "id": r.get("id"),
            "facts": [*([("duplication", level_label(str(r["duplication"])))] if "duplication" in r else []),
                      *([("expected document", str(r["source"]))] if "source" in r else []),
                      ("attributed", pct(r.get("attributed_share"))),
                      ("longest span", f"{num(r.get('longest_span_chars'))} characters")],
            "text": segments(r["text"], [[s.get("start"), s.get("end")] for s in spans]),
            "spans": [{"text": r["text"][s["start"]:s["end"]] if isinstance(s.get("start"), int) else "",
                       "count": s.get("count"), "n_docs": s.get("n_docs"),
                       "docs": ", ".join(str(d) for d in s.get("docs") or []),
                       "from_source": s.get("from_source")} for s in spans],
        })
    return out


@sections.register("attribute")
def attribute(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r)
    errors = error_rows(run.samples)
    warnings = [w for w in [errors_warning(len(errors), (r.get("n_outputs") or 0) + (r.get("n_errors") or 0), "outputs")]
                if w]
    absent = r.get("n_source_not_in_index")
    if absent:
        warnings.append(f"{num(absent)} of {num(r.get('n_outputs'))} outputs name an expected document that the "
                        "index does not hold: none of their text can come from it.")
    has_source = bool(r.get("with_source_span"))
    columns = [Column("id", "id"),
               *([Column("duplication", "duplication", "num")] if any("duplication" in x for x in run.samples) else []),
               Column("n_spans", "spans", "num"), Column("attributed_share", "attributed", "pct"),
               Column("longest_span_chars", "longest span (characters)", "num"),
               Column("has_unique_span", "a span one document holds", "bool"),
               *([Column("source", "expected document"), Column("source_share", "from it", "pct")] if has_source else []),
               Column("text", "output"),
               *([Column("error", "error")] if errors else [])]
    samples = page.samples(f"{run.name}-attribute", run.samples, columns, sort="longest_span_chars",
                           caption="Outputs, longest span first")
    index = (run.provenance.get("index") or {}) if isinstance(run.provenance, dict) else {}
    return Section(
        title="Attribution to the corpus", verdict=sentences, level=level, warnings=warnings,
        guide="guide-attribute",
        body=page.render("attribute.html.j2", rows=level_table(r), has_source=has_source, index=index,
                         definitions=r.get("definitions") or {}, cases=cases(run.samples), samples=samples,
                         n_errors=len(errors), error_browser=error_browser(page, run, errors, what="Outputs")),
    )
