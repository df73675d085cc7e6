"""``lmaudit dedup`` in Python: near-duplicate clusters of a corpus, and the near-copy count of
each query document, written as a run folder (results.json, samples.jsonl, queries.jsonl)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lmaudit.corpus.dedup import (NUM_PERM, SHINGLE, DedupResult, QueryCopies, annotated_rows, find_near_duplicates,
                                  near_copies)
from lmaudit.data import Record
from lmaudit.report.results import breakdown
from lmaudit.report.run import RunWriter
from lmaudit.stats import proportion_ci

SHINGLING = ("word {k}-grams of the text after NFKC and lowercasing; words are runs of characters other than ASCII "
             "whitespace, controls and punctuation; a document of 1 to {k1} words is one shingle (its words); one "
             "without a word has none (counted in n_empty, never a near-duplicate)")
EXAMPLE_CHARS = 300  # of each cluster's first document, for the report
IN_CLUSTERS = ("n_in_clusters of n_with_shingles, counted over this corpus, with no interval: it is a census of the "
               "corpus's pairs, not a sample. Whether a document is in a cluster depends on the other documents (one "
               "copy puts two in), and the share grows with the corpus, so it estimates no fixed proportion and a "
               "binomial interval would not cover the value of a larger or another corpus")


def _rate(k: int, n: int) -> dict:
    return {"rate": k / n if n else None, "ci": list(proportion_ci(k, n)) if n else None}


def cluster_rows(found: DedupResult, records: Sequence[Record]) -> list[dict]:
    """One row per cluster, largest first: its ids, their files and lines, the Jaccard range,
    and the start of its first document's text."""
    rows = []
    for number, c in enumerate(found.clusters, start=1):
        first = records[c.index[0]]
        rows.append({"id": f"cluster-{number}", "size": len(c.ids), "ids": c.ids,
                     "where": [f"{records[i].source}:{records[i].line}" for i in c.index],
                     "min_jaccard": c.min_jaccard, "max_jaccard": c.max_jaccard, "n_pairs": c.n_pairs,
                     "text": first.text[:EXAMPLE_CHARS]})
    return rows


def query_rows(found: Sequence[QueryCopies], queries: Sequence[Record]) -> list[dict]:
    """One row per query: its near-copy count, the most similar copies' ids and Jaccards, the
    candidates LSH proposed and how many verification rejected; or its error."""
    rows = []
    for f, q in zip(found, queries):
        if f.error is not None:
            rows.append({"id": f.id, "error": f.error})
            continue
        rows.append({"id": f.id, "near_copies": f.count, "ids": f.ids, "jaccards": f.jaccards,
                     "n_candidates": f.n_candidates, "n_rejected": f.n_rejected, "text": q.text[:EXAMPLE_CHARS]})
    return rows


def dedup_summary(found: DedupResult, *, threshold: float, shingle: int) -> dict:
    """results.json's corpus sections: counts, the share in clusters (no interval: see
    :data:`IN_CLUSTERS`), the LSH settings with their warning if they miss more than 5% of the
    pairs at the threshold."""
    eligible = found.n_documents - len(found.empty_ids)
    out = {
        "threshold": threshold,
        "shingling": {"unit": "word", "size": shingle, "definition": SHINGLING.format(k=shingle, k1=shingle - 1)},
        "lsh": {**found.lsh.describe(), "seed": found.seed, "library": "rensa R-MinHash (digest matrix of 64-bit "
                "shingle hashes); bands compared in numpy", "verification": "exact Jaccard of the shingle sets"},
        "n_documents": found.n_documents, "n_empty": len(found.empty_ids), "empty_ids": found.empty_ids[:20],
        "n_short": found.n_short, "n_with_shingles": eligible, "n_exact_copies": found.n_exact_copies,
        "n_clusters": len(found.clusters), "n_in_clusters": found.n_in_clusters,
        "in_clusters_rate": found.n_in_clusters / eligible if eligible else None,
        "largest_cluster": len(found.clusters[0].ids) if found.clusters else 0,
        "n_candidates": found.n_candidates, "n_verified": found.n_verified, "n_rejected": found.n_rejected,
        "definitions": {"in_clusters_rate": IN_CLUSTERS,
                        "with_copies_rate": "query documents with at least one near-copy, over the queries "
                                            "answered; each query is its own unit, so it has a Clopper-Pearson "
                                            "interval"},
    }
    if found.lsh.warning:
        out["warnings"] = [f"LSH: {found.lsh.warning}"]
    return out


def queries_summary(found: Sequence[QueryCopies], *, count_field: str) -> dict:
    """results.json's ``queries`` section: how many queries have a near-copy (rate, interval),
    the distribution of the counts, and the candidates verification rejected."""
    ok = [f for f in found if f.count is not None]
    with_copies = sum(1 for f in ok if f.count > 0)
    rate = _rate(with_copies, len(ok))
    counts = breakdown([{"c": f.count} for f in ok], "c", len)
    return {"n_queries": len(found), "n_errors": len(found) - len(ok), "count_field": count_field,
            "n_with_copies": with_copies, "with_copies_rate": rate["rate"], "with_copies_rate_ci": rate["ci"],
            "by_count": counts, "mean_count": sum(f.count for f in ok) / len(ok) if ok else None,
            "max_count": max((f.count for f in ok), default=None),
            "n_candidates": sum(f.n_candidates for f in ok), "n_rejected": sum(f.n_rejected for f in ok)}


def dedup_to_dir(corpus: Sequence[Record], out: str | Path, *, queries: Sequence[Record] | None = None,
                 threshold: float = 0.8, num_perm: int = NUM_PERM, shingle: int = SHINGLE, bands: int | None = None,
                 seed: int = 0, top: int = 10, count_field: str = "duplication", text_field: str = "text",
                 id_field: str = "id", data: list[dict] | None = None, command: str = "dedup",
                 started: float | None = None) -> dict:
    """Find the corpus's clusters (and, with ``queries``, each query's near-copy count), then
    write ``out``: ``samples.jsonl`` (one row per cluster; per query with ``queries``, the
    clusters then going to ``clusters.jsonl``), ``queries.jsonl`` (the query rows plus
    ``count_field``) and ``results.json``. Returns results.json's content.

    Raises:
        DataError: Duplicate ids in the corpus (across files too) or in the queries; a query
            row that already has ``count_field``.
        ValueError: A parameter out of range.
    """
    options = {"threshold": threshold, "num_perm": num_perm, "shingle": shingle, "bands": bands, "seed": seed}
    with RunWriter(out, kind="dedup", command=command, started=started) as run:
        found = find_near_duplicates(corpus, **options)
        clusters = cluster_rows(found, corpus)
        extra = dedup_summary(found, threshold=threshold, shingle=shingle)
        n_errors = 0
        if queries is not None:
            copies = near_copies(queries, corpus, top=top, **options)
            annotated = annotated_rows(queries, copies, text_field=text_field, id_field=id_field,
                                       count_field=count_field)
            run.samples(query_rows(copies, queries))
            run.samples(clusters, name="clusters")
            run.samples(annotated, name="queries")
            extra["queries"] = queries_summary(copies, count_field=count_field)
            n_errors = extra["queries"]["n_errors"]
        else:
            run.samples(clusters)
        extra["n_errors"] = n_errors
        summary = {"n_documents": extra["n_documents"], "n_clusters": extra["n_clusters"],
                   "n_in_clusters": extra["n_in_clusters"], "in_clusters_rate": extra["in_clusters_rate"],
                   "n_candidates": extra["n_candidates"], "n_rejected": extra["n_rejected"]}
        if queries is not None:
            q = extra["queries"]
            summary |= {"n_queries": q["n_queries"], "n_with_copies": q["n_with_copies"], "n_errors": n_errors}
        provenance = {"config": {**options, "bands": found.lsh.bands, "rows": found.lsh.rows, "top": top,
                                 "count_field": count_field}, "seed": seed, "data": data or []}
        return run.finish(summary=summary, provenance=provenance, extra=extra)
