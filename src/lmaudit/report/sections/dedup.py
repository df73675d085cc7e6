"""Near-duplicates (kind ``dedup``): how much of the corpus sits in near-duplicate clusters, and
how many near-copies of each query document the corpus holds, with the LSH settings that found
them and the candidates exact verification rejected."""

from __future__ import annotations

import json

from lmaudit.report.fmt import num, pct
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import error_browser, error_rows, errors_warning, phrase


def verdict(results: dict) -> tuple[list[str], str]:
    """The verdict sentences and their level: a measurement of the corpus (info).

    The share in clusters is a count of this corpus, given without an interval: whether a
    document is in a cluster depends on the others, so it is no binomial sample."""
    n_docs = results.get("n_documents")
    if not n_docs:
        return ["No document was read."], "warning"
    eligible = results.get("n_with_shingles") or 0
    t = num(results.get("threshold"))
    k = results.get("n_in_clusters")
    share = f" ({pct(k / eligible)})" if isinstance(k, int) and eligible else ""
    sentences = [f"{num(k)} of {num(eligible)} documents{share} "
                 f"are in {num(results.get('n_clusters'))} cluster{'' if results.get('n_clusters') == 1 else 's'} of near-duplicates (exact Jaccard of their word "
                 f"{num((results.get('shingling') or {}).get('size'))}-gram sets at least {t}); "
                 f"{num(results.get('n_exact_copies'))} of them are exact copies of an earlier document. "
                 "This is a count of this corpus, not a sample, so it has no interval."]
    lsh = results.get("lsh") or {}
    sentences.append(f"MinHash-LSH proposed {num(results.get('n_candidates'))} candidate pairs; exact verification "
                     f"rejected {num(results.get('n_rejected'))}. A pair at Jaccard {t} is found with probability "
                     f"{num(lsh.get('p_candidate_at_threshold'))} ({num(lsh.get('bands'))} bands of "
                     f"{num(lsh.get('rows'))} of {num(lsh.get('num_perm'))} values): pairs can be missed, never "
                     "invented.")
    if results.get("n_empty"):
        sentences.append(f"{num(results['n_empty'])} of {num(n_docs)} documents have no word and take part in no "
                         "comparison.")
    q = results.get("queries")
    if isinstance(q, dict):
        answered = (q.get("n_queries") or 0) - (q.get("n_errors") or 0)
        have = "has" if q.get("n_with_copies") == 1 else "have"
        sentences.append(f"{phrase(q.get('n_with_copies'), answered, q.get('with_copies_rate_ci'), 'query documents')} "
                         f"{have} at least one near-copy in the corpus (at most {num(q.get('max_count'))}, "
                         f"{num(q.get('mean_count'))} on average); the counts are the `{q.get('count_field')}` field "
                         "of queries.jsonl, which extract, copying, acr and knowledge break their rates down by.")
    return sentences, "info"


def _clusters(run: Run) -> list[dict]:
    """The cluster rows: samples.jsonl's, or clusters.jsonl's for a run with queries."""
    if "queries" not in run.results:
        return run.samples
    path = run.dir / "clusters.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@sections.register("dedup")
def dedup(run: Run, page: Page) -> Section:
    r = run.results
    sentences, level = verdict(r)
    has_queries = isinstance(r.get("queries"), dict)
    errors = error_rows(run.samples) if has_queries else []
    q = r.get("queries") or {}
    warning = errors_warning(len(errors), q.get("n_queries") or 0, "query documents")
    clusters = [{**c, "ids": ", ".join(map(str, c.get("ids") or []))} for c in _clusters(run)]
    cluster_table = page.samples(f"{run.name}-dedup-clusters", clusters,
                                 [Column("id", "cluster"), Column("size", "documents", "num"),
                                  Column("min_jaccard", "min Jaccard", "num"), Column("max_jaccard", "max Jaccard", "num"),
                                  Column("ids", "ids"), Column("text", "first document (start)")],
                                 sort="size", caption="Clusters, largest first")
    query_table = None
    if has_queries:
        rows = [{**s, "ids": ", ".join(map(str, s.get("ids") or []))} for s in run.samples if s.get("error") is None]
        query_table = page.samples(f"{run.name}-dedup-queries", rows,
                                   [Column("id", "id"), Column("near_copies", "near-copies", "num"),
                                    Column("ids", "most similar"), Column("n_candidates", "candidates", "num"),
                                    Column("n_rejected", "rejected", "num"), Column("text", "text (start)")],
                                   sort="near_copies", caption="Query documents, most near-copies first")
    lsh = r.get("lsh") or {}
    warnings = [w for w in [warning, *(r.get("warnings") or [])] if w]
    return Section(
        title="Near-duplicates", verdict=sentences, level=level, warnings=warnings,
        guide="guide-dedup",
        body=page.render("dedup.html.j2", r=r, lsh=lsh, curve=sorted((lsh.get("s_curve") or {}).items()),
                         by_count=sorted((q.get("by_count") or {}).items(), key=lambda kv: int(kv[0])),
                         clusters=cluster_table, queries=query_table, shingling=r.get("shingling") or {},
                         n_errors=len(errors), error_browser=error_browser(page, run, errors, what="Query documents")),
    )
