"""``lmaudit attribute``: which documents of a corpus a model's outputs copy from.

OLMoTrace's question, asked of any file of outputs (``lmaudit extract``'s samples, a chat log):
every maximal span of each output found verbatim in an indexed corpus
(:meth:`lmaudit.corpus.index.SuffixIndex.attribute`), with the documents holding it. This
detects copying without knowing in advance which reference an output might copy.

What is measured, per output: the spans, the characters they cover (overlapping spans counted
once), the longest span. When the outputs name the document each was expected to come from
(``source_field``: an extraction run's rows carry their document's ``id``), also the characters
covered by spans that this document holds, and whether any span comes from it. Over the run:

- outputs with at least one span: a rate with its exact interval (outputs are independent);
  and outputs with a *unique* span, one that a single document holds: text shared by many
  documents (a template, a boilerplate licence) is found, but points at no one source;
- attributed characters: a pooled share (characters of one output are not independent
  draws, so no binomial interval; the per-output mean has a bootstrap interval over outputs);
- with a source: the share of attributed characters that the source document holds (the
  demo's "share of extracted text attributed to the right member"), pooled and as a per-output
  mean with its bootstrap interval, and outputs with a span from their source as a rate;
- by duplication level when the outputs carry ``duplication`` (as extraction rows do).

Template text makes short spans common to many documents: ``n_docs`` says how specific each
span is, and ``min_bytes`` / ``min_words`` set how long a span must be to count.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmaudit.corpus.index import MANIFEST
from lmaudit.data import Record, sha256_file
from lmaudit.report.results import breakdown
from lmaudit.report.run import RunWriter
from lmaudit.stats import bootstrap_mean_ci, rate_summary


@dataclass(frozen=True)
class AttributeConfig:
    """How spans are found and reported.

    Attributes:
        min_bytes: The shortest span counted, in UTF-8 bytes.
        min_words: Also require this many whole words per span (None: bytes only).
        max_docs: Document ids listed per span (``n_docs`` always counts all holders).
        source_field: The output rows' field naming the document each output should come from
            (``id`` for ``lmaudit extract``'s rows); None: no source check.
        n_bootstrap: Replicates of the bootstrap intervals of per-output means.
        seed: Seeds the bootstrap.
    """

    min_bytes: int = 32
    min_words: int | None = None
    max_docs: int = 10
    source_field: str | None = None
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_bytes < 1:
            raise ValueError(f"min_bytes must be at least 1, got {self.min_bytes}")
        if self.min_words is not None and self.min_words < 1:
            raise ValueError(f"min_words must be at least 1, got {self.min_words}")
        if self.max_docs < 0:
            raise ValueError(f"max_docs must be non-negative, got {self.max_docs}")


def covered(spans: Sequence[tuple[int, int]]) -> int:
    """Characters covered by the ``[start, end)`` spans, overlaps counted once.

    >>> covered([(0, 5), (3, 8), (10, 12)])
    10
    """
    total, reach = 0, 0
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _source(record: Record, field: str | None) -> Any:
    if field is None:
        return None
    if field == "id":
        return record.id
    return record.meta.get(field)


def attribute_row(index, record: Record, config: AttributeConfig, known: set[str] | None = None) -> dict:
    """One output's row of samples.jsonl; ``known``: the index's ids as strings, to flag an
    expected document that the corpus does not hold at all."""
    row: dict[str, Any] = {"id": record.id}
    if "duplication" in record.meta:
        row["duplication"] = record.meta["duplication"]
    if record.error is not None:
        return row | {"error": record.error}
    source = _source(record, config.source_field)
    if config.source_field is not None:
        if source is None:
            return row | {"error": f"{record.source}:{record.line}: no {config.source_field!r} field naming the "
                                   "document this output should come from"}
        row["source"] = source
        if known is not None:
            row["source_in_index"] = str(source) in known
    spans = index.attribute(record.text, min_bytes=config.min_bytes, min_words=config.min_words,
                            max_docs=config.max_docs, source=source)
    n_chars = len(record.text)
    attributed = covered([(s.start, s.end) for s in spans])
    row |= {"text": record.text, "n_chars": n_chars, "n_spans": len(spans), "attributed_chars": attributed,
            "attributed_share": attributed / n_chars if n_chars else None,
            "longest_span_chars": max((s.end - s.start for s in spans), default=0),
            "unique_chars": covered([(s.start, s.end) for s in spans if s.n_docs == 1]),
            "has_unique_span": any(s.n_docs == 1 for s in spans),
            "spans": [{k: v for k, v in s.to_dict().items() if k != "text" and (k != "from_source" or source is not None)}
                      for s in spans]}
    if source is not None:
        from_source = covered([(s.start, s.end) for s in spans if s.from_source])
        row |= {"source_chars": from_source, "source_share": from_source / attributed if attributed else None,
                "has_source_span": any(s.from_source for s in spans)}
    return row


def _mean(values: list[float], config: AttributeConfig) -> dict:
    if not values:
        return {"mean": None, "ci": None, "n": 0}
    return {"mean": float(np.mean(values)), "n": len(values),
            "ci": list(bootstrap_mean_ci(values, n_bootstrap=config.n_bootstrap, seed=config.seed))}


def summarise(rows: Sequence[dict], config: AttributeConfig) -> dict:
    """The run's figures from its rows (error rows are counted, in no figure)."""
    ok = [r for r in rows if r.get("error") is None]
    chars = sum(r["n_chars"] for r in ok)
    attributed = sum(r["attributed_chars"] for r in ok)
    out: dict[str, Any] = {
        "n_outputs": len(ok), "n_errors": len(rows) - len(ok),
        "with_span": rate_summary(sum(r["n_spans"] > 0 for r in ok), len(ok)),
        "n_chars": chars, "attributed_chars": attributed,
        "attributed_share_pooled": attributed / chars if chars else None,
        "attributed_share_mean": _mean([r["attributed_share"] for r in ok if r["attributed_share"] is not None], config),
        "longest_span_chars": _mean([r["longest_span_chars"] for r in ok], config),
        "with_unique_span": rate_summary(sum(r["has_unique_span"] for r in ok), len(ok)),
        "unique_share_pooled": sum(r["unique_chars"] for r in ok) / chars if chars else None,
    }
    if config.source_field is not None:
        # An output whose expected document is not in the corpus cannot have text from it: it
        # is counted apart (n_source_not_in_index), not as a miss.
        spanned = [r for r in ok if r["n_spans"] and r.get("source_in_index", True)]
        source_chars = sum(r["source_chars"] for r in spanned)
        attributed_here = sum(r["attributed_chars"] for r in spanned)
        out |= {"source_chars": source_chars,
                "source_share_pooled": source_chars / attributed_here if attributed_here else None,
                "source_share_mean": _mean([r["source_share"] for r in spanned], config),
                "with_source_span": rate_summary(sum(r["has_source_span"] for r in spanned), len(spanned)),
                "n_source_not_in_index": sum(not r.get("source_in_index", True) for r in ok)}
    return out


def run_attribute(index, records: Sequence[Record], *, config: AttributeConfig = AttributeConfig()) -> tuple[list[dict], dict]:
    """Attribute every output; returns (rows, results) where results holds the figures
    (:func:`summarise`), the breakdown ``by_duplication`` when the rows carry it, and the
    definitions a reader needs."""
    known = {str(i) for shard in index.shards for i in shard.ids} if config.source_field else None
    rows = [attribute_row(index, r, config, known) for r in records]
    results = summarise(rows, config)
    if any("duplication" in r for r in rows):
        results["by_duplication"] = breakdown([r for r in rows if r.get("error") is None], "duplication",
                                              lambda group: summarise(group, config))
    results["definitions"] = {
        "span": "a maximal run of whole characters of the output found verbatim in the corpus, at least "
                f"{config.min_bytes} UTF-8 bytes" + (f" and {config.min_words} whole words" if config.min_words else ""),
        "attributed_share": "characters of the output covered by spans (overlaps once), over its characters",
        "unique": "spans that exactly one document of the corpus holds (template text shared by many "
                  "documents is attributed, but to no one document)",
        **({"source_share": f"characters covered by spans that the document named by {config.source_field!r} "
                            "holds, over the characters covered by any span"} if config.source_field else {}),
    }
    return rows, results


def index_provenance(index) -> dict:
    """What identifies the index a run read: its folder, format and size, and its sources."""
    m = index.manifest
    return {"path": str(index.path), "format": m["format"], "format_version": m["format_version"],
            "lmaudit_version": m.get("lmaudit_version"), "n_docs": m["n_docs"], "n_bytes": m["n_bytes"],
            "n_shards": len(m["shards"]), "sources": m.get("sources", []),
            "manifest_sha256": sha256_file(index.path / MANIFEST)}


def attribute_to_dir(index, records: Sequence[Record], out: str | Path, *, config: AttributeConfig = AttributeConfig(),
                     data: list[dict] | None = None, command: str = "attribute", started: float | None = None) -> dict:
    """:func:`run_attribute`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    started = started or time.time()
    with RunWriter(out, kind="attribute", command=command, started=started) as run:
        rows, results = run_attribute(index, records, config=config)
        run.samples(rows)
        summary = {"n_outputs": results["n_outputs"], "n_errors": results["n_errors"],
                   "with_span_rate": results["with_span"]["rate"],
                   "attributed_share": results["attributed_share_pooled"],
                   **({"source_share": results["source_share_pooled"]} if config.source_field else {})}
        provenance = {"config": asdict(config), "index": index_provenance(index), "data": data or []}
        return run.finish(summary=summary, provenance=provenance, extra=results)
