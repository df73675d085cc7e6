"""Search: a BM25 query over a corpus index, and its hits. A measurement, not a verdict."""

from __future__ import annotations

from lmaudit.report.fmt import num
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections


@sections.register("search")
def search(run: Run, page: Page) -> Section:
    r = run.results
    n_matching, n_docs, n_hits = r.get("n_matching"), r.get("n_docs"), r.get("n_hits")
    first = (r.get("offset") or 0) + 1
    shown = f"hits {num(first)} to {num(first + n_hits - 1)} are listed" if n_hits else "no hit is listed"
    sentences = [f"The query {r.get('query')!r} matches {num(n_matching)} of {num(n_docs)} documents (one of its "
                 f"words or phrases); {shown}, best BM25 score first."]
    if r.get("phrases"):
        sentences.append("Phrases searched word for word: " + "; ".join(f'"{p}"' for p in r["phrases"]) + ".")
    samples = page.samples(f"{run.name}-search", run.samples,
                           [Column("rank", "rank", "num"), Column("id", "id"), Column("score", "BM25 score", "num"),
                            Column("snippet", "snippet")],
                           caption="Hits, best first", sort="rank", descending=False)
    return Section(title="Corpus search (BM25)", verdict=sentences, level="info", guide="guide-search",
                   body=page.render("search.html.j2", r=r, samples=samples))
