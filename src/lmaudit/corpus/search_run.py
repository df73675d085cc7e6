"""``lmaudit search`` in Python: one BM25 query over a corpus index, written as a traceable run."""

from __future__ import annotations

from pathlib import Path

from lmaudit.corpus.bm25 import MANIFEST as BM25_MANIFEST
from lmaudit.corpus.bm25 import Bm25Index
from lmaudit.corpus.index import MANIFEST as INDEX_MANIFEST
from lmaudit.data import sha256_file
from lmaudit.report.run import RunResult, RunWriter


def run_search(bm25: Bm25Index, query: str, *, limit: int = 10, offset: int = 0) -> RunResult:
    """The hits of ``query`` as a run.

    Returns:
        A :class:`RunResult`: ``query``, its ``words`` and ``phrases`` as searched, ``n_matching``
        (documents holding one of its words or phrases), ``limit``, ``offset``, ``n_hits``,
        ``n_docs`` (documents in the index) and ``bm25`` (the BM25 index's engine and
        tokenizer); one sample row per hit, best first: ``rank`` (1-based, counting the
        offset), ``id``, ``doc`` (place in the suffix index), ``score``, ``snippet``; and the
        provenance of the index (its folder and the sha256 of both manifests).

    Raises:
        ValueError: A malformed query (see :mod:`lmaudit.corpus.bm25`).
    """
    words, phrases = bm25.parse(query)
    hits = bm25.search(query, limit=limit, offset=offset)
    samples = [{"rank": offset + i + 1, "id": h.doc_id, "doc": h.doc, "score": h.score, "snippet": h.snippet}
               for i, h in enumerate(hits)]
    results = {
        "query": query,
        "words": words,
        "phrases": [" ".join(w for _, w in p) for p in phrases],
        "n_matching": bm25.count(query),
        "limit": limit,
        "offset": offset,
        "n_hits": len(hits),
        "n_docs": bm25.n_docs,
        "bm25": {k: bm25.manifest[k] for k in ("tantivy_version", "tokenizer")}
                | {"k1": 1.2, "b": 0.75},
    }
    index = Path(bm25.index.path)
    data = [{"path": str(index), "role": "corpus index", "n_docs": bm25.n_docs,
             "index_manifest_sha256": sha256_file(index / INDEX_MANIFEST),
             "bm25_manifest_sha256": sha256_file(bm25.folder / BM25_MANIFEST)}]
    return RunResult(results=results, samples=samples, provenance={"data": data})


def search_to_dir(bm25: Bm25Index, query: str, out: str | Path, *, limit: int = 10, offset: int = 0,
                  command: str = "search", started: float | None = None) -> dict:
    """:func:`run_search`, then write ``samples.jsonl`` and ``results.json`` (kind ``search``) into ``out``."""
    with RunWriter(out, kind="search", command=command, started=started) as run:
        result = run_search(bm25, query, limit=limit, offset=offset)
        run.samples(result.samples)
        r = result.results
        summary = {"query": query, "n_matching": r["n_matching"], "n_hits": r["n_hits"], "n_docs": r["n_docs"],
                   "top_score": result.samples[0]["score"] if result.samples else None}
        return run.finish(summary=summary, provenance=result.provenance, extra=r)
