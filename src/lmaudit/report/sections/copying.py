"""Copying (kind ``copying``): how much of each reference the outputs copy literally, by
duplication level; the longest verbatim runs; the outputs that copy most, their copied spans
marked on both sides."""

from __future__ import annotations

from lmaudit.memorization.copying_run import NUMERIC
from lmaudit.memorization.substrings import verbatim_spans
from lmaudit.report import plots
from lmaudit.report.fmt import num, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import (CASES, cell, count_of, error_browser, error_rows, errors_warning,
                                                   grouped, integer_bins, level_label, level_rows, levels_sentence,
                                                   phrase, rank, segments)
from lmaudit.stats import proportion_ci

SPAN_MIN_CHARS = 20  # CopyingConfig's default, for a run whose provenance lacks its config


def span_min_chars(provenance: dict) -> int:
    """The shortest verbatim span the run reported (its ``span_min_chars``)."""
    config = provenance.get("config") if isinstance(provenance.get("config"), dict) else {}
    value = config.get("span_min_chars")
    return value if isinstance(value, int) and value >= 1 else SPAN_MIN_CHARS


def verdict(results: dict, provenance: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level: always a measurement (info), since how much an
    output shares with a reference by chance depends on the texts; the same measurement on
    texts the model never saw is the baseline to read it against."""
    n = results.get("n_pairs")
    if not n:
        total = (n or 0) + (results.get("n_errors") or 0)
        return [f"No pair could be compared: {num(total)} pair{'s' if total != 1 else ''}, "
                f"{num(results.get('n_errors') or 0)} of them error rows."], "warning"
    k = count_of(results.get("literal_copy_rate"), n)
    definition = (results.get("definitions") or {}).get("literal_copy", "ROUGE-L F1 above the run's threshold")
    are = "is a literal copy" if k == 1 else "are literal copies"
    sentences = [f"{phrase(k, n, results.get('literal_copy_rate_ci'), 'outputs')} {are} of their reference; "
                 f"a literal copy is {definition}."]
    by_level = levels_sentence(level_rows(results.get("by_duplication"), "literal_copy_rate"), "outputs")
    if by_level:
        sentences.append(by_level)
    means = results.get("means") or {}
    if means.get("rouge_l_f1") is not None:
        sentences.append(f"Mean ROUGE-L F1 {with_ci(means['rouge_l_f1'], means.get('rouge_l_f1_ci'))} "
                         f"(MUSE VerbMem {with_ci(results.get('verbmem'), results.get('verbmem_ci'))}); the longest verbatim run averages "
                         f"{with_ci(means.get('lcs_words'), means.get('lcs_words_ci'))} words "
                         f"({num(means.get('lcs_chars'))} characters).")
    spans = results.get("n_with_verbatim_spans")
    if isinstance(spans, int):
        contain = "contains" if spans == 1 else "contain"
        sentences.append(f"{phrase(spans, n, list(proportion_ci(spans, n)), 'outputs')} {contain} a verbatim span "
                         f"of at least {span_min_chars(provenance)} characters of their reference.")
    for key, noun, what in (("character_copy", "characters", "use 3 or more of the reference's characters by name"),
                            ("event_copy", "events", "recount 5 or more of the reference's events")):
        m = results.get(f"n_with_{noun}")
        if isinstance(m, int) and m:
            judge = results.get("event_judge") or {}
            approximate = key == "event_copy" and judge.get("approximate")
            note = f" (judge: {judge.get('name')}, approximate)" if approximate else ""
            sentences.append(f"Of the outputs whose reference lists its {noun}, "
                             f"{phrase(count_of(results.get(f'{key}_rate'), m), m, results.get(f'{key}_rate_ci'))} "
                             f"{what}{note}.")
    return sentences, "info"


def cases(samples: list[dict], *, min_chars: int, limit: int = CASES) -> list[dict]:
    """The outputs with the longest verbatim runs (then the highest ROUGE-L F1), each with its
    reference: the output cut at its recorded ``verbatim_spans``, the reference at the runs
    of at least ``min_chars`` characters it shares with the output (found here, the same way)."""
    ok = [r for r in samples if r.get("error") is None and isinstance(r.get("output"), str)
          and isinstance(r.get("reference"), str)]
    out = []
    for r in sorted(ok, key=lambda r: (rank(r.get("lcs_chars")), rank(r.get("rouge_l_f1"))), reverse=True)[:limit]:
        output, reference = r["output"], r["reference"]
        out.append({
            "id": r.get("id"),
            "facts": [*([("duplication", level_label(str(r["duplication"])))] if "duplication" in r else []),
                      ("literal copy", num(r.get("literal_copy"))), ("ROUGE-L F1", num(r.get("rouge_l_f1"))),
                      ("longest verbatim run",
                       f"{num(r.get('lcs_words'))} words, {num(r.get('lcs_chars'))} characters")],
            "reference": segments(reference, verbatim_spans(reference, output, min_length=min_chars)),
            "output": segments(output, r.get("verbatim_spans") or []),
        })
    return out


def _histogram(samples: list[dict]):
    ok = [r for r in samples if r.get("error") is None and r.get("lcs_words") is not None]
    if not ok:
        return None
    return plots.histograms(grouped(ok, "lcs_words", noun="outputs"),
                            xlabel="longest verbatim run shared with the reference (words)",
                            title="Longest verbatim run per output", bins=integer_bins([r["lcs_words"] for r in ok]))


@sections.register("copying")
def copying(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r, run.provenance)
    min_chars = span_min_chars(run.provenance)
    errors = error_rows(run.samples)
    warning = errors_warning(len(errors), (r.get("n_pairs") or 0) + (r.get("n_errors") or 0), "pairs")
    rows = level_rows(r.get("by_duplication"), "literal_copy_rate")
    bars = plots.bars([x["label"] for x in rows], [x["rate"] for x in rows], [x["ci"] for x in rows],
                      ylabel="literal copies", title="Literal copy rate by duplication level, with 95% intervals",
                      counts=[x["n"] for x in rows]) \
        if rows else None
    for row in rows:
        row["rouge"] = with_ci(row["entry"].get("rouge_l_f1_mean"), row["entry"].get("rouge_l_f1_mean_ci"))
    overall = {"cell": cell(count_of(r.get("literal_copy_rate"), r.get("n_pairs")), r.get("n_pairs"),
                            r.get("literal_copy_rate_ci"))}
    nonliteral = []
    for key, noun, label in (("character_copy", "characters", "characters: 3 or more named"),
                             ("event_copy", "events", "events: 5 or more recounted")):
        m = r.get(f"n_with_{noun}")
        if isinstance(m, int) and m:
            approximate = key == "event_copy" and (r.get("event_judge") or {}).get("approximate")
            nonliteral.append((label + (" (approximate judge)" if approximate else ""),
                               cell(count_of(r.get(f"{key}_rate"), m), m, r.get(f"{key}_rate_ci"))))
    means = r.get("means") or {}
    metrics = [(k, with_ci(means.get(k), means.get(f"{k}_ci"))) for k in NUMERIC if k in means]
    texts = any(isinstance(s.get("output"), str) for s in run.samples)
    columns = [Column("id", "id"),
               *([Column("duplication", "duplication", "num")] if any("duplication" in x for x in run.samples) else []),
               Column("literal_copy", "literal copy", "bool"), Column("rouge_l_f1", "ROUGE-L F1", "num"),
               Column("lcs_words", "longest run (words)", "num"),
               Column("lcs_chars", "longest run (characters)", "num"),
               *([Column("reference", "reference"), Column("output", "output")] if texts else []),
               *([Column("error", "error")] if errors else [])]
    samples = page.samples(f"{run.name}-copying", run.samples, columns, sort="lcs_chars",
                           caption="Pairs, longest verbatim run first")
    errors_list = error_browser(page, run, errors, what="Pairs")
    return Section(
        title="Copying", verdict=sentences, level=level, warnings=[warning] if warning else [], guide="guide-copying",
        body=page.render("copying.html.j2", rows=rows, overall=overall, means=means, metrics=metrics,
                         nonliteral=nonliteral, bars=bars,
                         hist=_histogram(run.samples), cases=cases(run.samples, min_chars=min_chars), texts=texts,
                         span_min=min_chars, definitions=r.get("definitions") or {}, samples=samples,
                         n_errors=len(errors), error_browser=errors_list),
    )
