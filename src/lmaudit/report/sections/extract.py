"""Extraction (kind ``extract``): how often the model continues a document's prefix with its
exact text, by duplication level; the longest verbatim runs; the documents it reproduces most,
their copied spans marked."""

from __future__ import annotations

from lmaudit.memorization.substrings import verbatim_spans
from lmaudit.report import plots
from lmaudit.report.fmt import num, pct, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import (CASES, cell, count_of, error_browser, error_rows, errors_warning,
                                                   grouped, integer_bins, level_label, level_rows, levels_sentence,
                                                   phrase, rank, segments)

# Extraction rows record token matches, not character spans: the report finds the copied
# characters itself, with the copying command's default shortest span.
SPAN_MIN_CHARS = 20


def _lengths(provenance: dict) -> tuple[str, str]:
    config = provenance.get("config") if isinstance(provenance.get("config"), dict) else {}
    return num(config.get("prefix_tokens")), num(config.get("suffix_tokens"))


def verdict(results: dict, provenance: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level: evidence when any document is reproduced
    exactly (a greedy run of the whole target is hard to hit by chance), weak when none is,
    read-with-care when no document could be tested."""
    p, s = _lengths(provenance)
    n, total = results.get("n"), results.get("n_documents")
    if not n:
        return [f"No document could be tested: {num(total or 0)} document{'s' if total != 1 else ''}, "
                f"{num(results.get('n_errors') or 0)} of them error rows."], "warning"
    k = count_of(results.get("exact_match_rate"), n)
    decoding = provenance.get("decoding") or "greedy"
    decoding = "greedy decoding" if decoding == "greedy" else decoding  # or "best of N samples by loss"
    sentences = [f"Given each document's first {p} tokens, the model continues with its next {s} tokens exactly "
                 f"({decoding}) for {phrase(k, n, results.get('exact_match_rate_ci'), 'documents')}."]
    by_level = levels_sentence(level_rows(results.get("by_duplication"), "exact_match_rate"), "documents")
    if by_level:
        sentences.append(by_level)
    if results.get("token_match_mean") is not None:
        share = with_ci(results["token_match_mean"], results.get("token_match_mean_ci"), pct)
        longest = num(results.get("longest_match_tokens_mean"))
        sentences.append(f"On average it reproduces {share} of the target tokens position by position; the longest "
                         f"verbatim run of target tokens averages {longest} of {s}.")
    return sentences, "evidence" if k else "weak"


def cases(samples: list[dict], *, min_chars: int = SPAN_MIN_CHARS, limit: int = CASES) -> list[dict]:
    """The documents with the longest verbatim runs (then the most tokens matched), each with
    the true continuation and the model's, cut into segments at their common character runs
    of at least ``min_chars``."""
    ok = [r for r in samples if r.get("error") is None and isinstance(r.get("generated"), str)
          and isinstance(r.get("target"), str)]
    score = lambda r: (rank(r.get("longest_match_tokens")), rank(r.get("token_match")))  # noqa: E731
    out = []
    for r in sorted(ok, key=score, reverse=True)[:limit]:
        generated, target = r["generated"], r["target"]
        out.append({
            "id": r.get("id"),
            "facts": [("duplication", level_label(str(r["duplication"])) if "duplication" in r else "n/a"),
                      ("exact match", num(r.get("exact_match"))),
                      ("longest verbatim run", f"{num(r.get('longest_match_tokens'))} tokens"),
                      ("target tokens reproduced", pct(r.get("token_match")))],
            "reference": segments(target, verbatim_spans(target, generated, min_length=min_chars)),
            "output": segments(generated, verbatim_spans(generated, target, min_length=min_chars)),
        })
    return out


def _histogram(samples: list[dict], suffix: str):
    ok = [r for r in samples if r.get("error") is None and r.get("longest_match_tokens") is not None]
    if not ok:
        return None
    return plots.histograms(grouped(ok, "longest_match_tokens"),
                            xlabel=f"longest verbatim run of target tokens (of {suffix})",
                            title="Longest verbatim run per document, by duplication level",
                            bins=integer_bins([r["longest_match_tokens"] for r in ok]))


@sections.register("extract")
def extract(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r, run.provenance)
    p, s = _lengths(run.provenance)
    errors = error_rows(run.samples)
    warning = errors_warning(len(errors), r.get("n_documents") or len(run.samples), "documents")
    rows = level_rows(r.get("by_duplication"), "exact_match_rate")
    bars = plots.bars([x["label"] for x in rows], [x["rate"] for x in rows], [x["ci"] for x in rows],
                      ylabel="exact match", title="Exact-match rate by duplication level, with 95% intervals",
                      counts=[x["n"] for x in rows]) \
        if rows else None
    overall = {"n": r.get("n"), "cell": cell(count_of(r.get("exact_match_rate"), r.get("n")), r.get("n"),
                                             r.get("exact_match_rate_ci")), "entry": r}
    for row in [*rows, overall]:
        row["token"] = with_ci(row["entry"].get("token_match_mean"), row["entry"].get("token_match_mean_ci"), pct)
    columns = [Column("id", "id"),
               *([Column("duplication", "duplication", "num")] if any("duplication" in x for x in run.samples) else []),
               Column("exact_match", "exact", "bool"), Column("token_match", "tokens matched", "pct"),
               Column("longest_match_tokens", "longest run", "num"), Column("target", "true continuation"),
               Column("generated", "model's continuation"), *([Column("error", "error")] if errors else [])]
    samples = page.samples(f"{run.name}-extract", run.samples, columns, sort="longest_match_tokens",
                           caption="Documents, longest verbatim run first")
    errors_list = error_browser(page, run, errors, what="Documents")
    return Section(
        title="Extraction", verdict=sentences, level=level, warnings=[warning] if warning else [],
        guide="guide-extract",
        body=page.render("extract.html.j2", rows=rows, overall=overall, bars=bars,
                         hist=_histogram(run.samples, s), cases=cases(run.samples), span_min=SPAN_MIN_CHARS,
                         prefix=p, suffix=s, samples=samples, n_errors=len(errors), error_browser=errors_list),
    )
