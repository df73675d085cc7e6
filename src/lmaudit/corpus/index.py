"""An exact-substring index over a corpus: count, locate, longest prefix, and attribution.

A byte-level suffix array over the documents' UTF-8 text (tokenizer-agnostic: any model's output
can be looked up), built with libdivsufsort through pydivsufsort, sharded and memory-mapped:

    >>> from lmaudit.data import Record
    >>> docs = [Record(id="a", text="the cat sat on the mat", source="-", line=1),
    ...         Record(id="b", text="a cat café", source="-", line=2)]
    >>> import tempfile; out = tempfile.mkdtemp()
    >>> index = build_index(docs, out)
    >>> index.count("cat"), index.count("at"), index.count("mat a")  # never across documents
    (2, 4, 0)
    >>> [(h.doc_id, h.offset) for h in index.locate("cat")]
    [('a', 4), ('b', 2)]
    >>> index.longest("the cat sings")
    'the cat s'
    >>> [(s.text, s.docs) for s in index.attribute("my cat sat on the mat", min_bytes=8)]
    [(' cat sat on the mat', ('a',))]

Layout of an index folder ``IDX``: ``IDX/shard-00000/`` … (see :mod:`lmaudit.corpus.shard`) and
``IDX/index.json``, the manifest: format name and version, the lmaudit version that wrote it, and
every shard with its counts and the size and sha256 of each file. The manifest is written last
and atomically (``index.json.partial`` then ``os.replace``), after every shard file is fsynced:
a build or append killed midway leaves either no ``index.json`` (the folder is refused by
:func:`load_index` as an unfinished build; building again into it replaces the leftovers) or the
previous manifest, which does not list the half-written shard (the index stays as it was, and
the next append overwrites the leftover). A rebuild (``overwrite=True``) writes its shards in
``.rebuild/`` first and swaps them in only once every record is read and indexed, so a bad
record or a kill leaves the old index as it was. :meth:`SuffixIndex.append` adds shards and
never rewrites old ones.

Versions: only the manifest's ``format_version`` decides whether an index can be read; an index
of another format version is refused with both versions and the lmaudit version that wrote it.
An index written by another lmaudit version of the same format is read as is.

Text: documents and queries are encoded as UTF-8 with ``errors="surrogatepass"``, so a lone
surrogate (which JSON's ``"\\ud800"`` escapes can produce) is indexed as its 3-byte form and
found by a query holding the same surrogate, instead of failing the build. Empty documents are
kept (they have an id and a place) and match nothing. Queries are ``str`` or ``bytes``; a bytes
query may cut a character (the index is byte-level) and one holding ``0xFF`` matches nothing.

Costs, for a corpus of ``N`` UTF-8 bytes and ``D`` documents in shards of ``n`` bytes and ``d``
documents, ``w`` the suffix-array entry size (4 bytes for shards of 64 KiB to 4 GiB, 2 or 1
below, 8 above). Measured with ``benchmarks/bench_corpus_index.py`` on 51.7 MiB of testbed
biographies (150,000 documents of about 360 bytes, ids like ``"s12-4999"``), on one core of
this 2-core machine:

- Disk: ``(1 + w)·N`` (text, suffix array) + ``D·(1 + 8 + j)`` (separator, start, ``j`` bytes of
  id in JSON): 5.06 bytes per input byte measured, with one shard or seven.
- RAM while building: ``(1 + 4)·n + 8·d`` for the shard being built (its text and
  libdivsufsort's int32 suffix array; ``8·n`` past 2 GiB; plus ``w·n`` to convert it where
  ``w`` differs from libdivsufsort's entry size) + every id read so far (a Python set, about 100 bytes each, to refuse duplicates) +
  whatever the caller holds (``records`` may be a generator). Measured peak: 5.4·n over the
  process before the build (one 51.7 MiB shard). With ``jobs=k``, up to ``k`` shards are
  sorted at once in worker processes while the next one is filled: about ``k`` times that.
- RAM at query time: each shard's starts and ids (``8·D`` bytes plus Python's id objects);
  text and suffix arrays are memory-mapped and paged in by the operating system.
- Build speed: 13.5 MiB/s (one 51.7 MiB shard; 17.9 MiB/s in 8 MiB shards), libdivsufsort
  being most of it and the sha256s of the files a few percent. On 1 GiB (reading the JSONL
  included, ``benchmarks/bench_corpus_vs_infinigram.py``): 1.82 min/GiB in one shard, 1.26 in
  two 512 MiB shards with ``jobs=2`` on 2 cores.
- Queries, per shard: ``count`` and ``longest`` take ``O(m log n)`` byte comparisons for a query
  of ``m`` bytes (``count`` of an 8-64-byte query: 0.017 ms median, 0.038 ms p99 on one shard;
  each shard adds about 0.014 ms); ``locate`` adds ``O(k log k)`` to sort the ``k`` hits of
  each shard the page reaches; ``attribute`` looks up one window of ``min_bytes // 2`` bytes
  every ``min_bytes // 2`` bytes, then runs ``longest`` from every character that such a
  window does not rule out (copied text: each of its characters; other text: few), and a
  ``locate`` of every span it returns: ``O(c · m log n)`` at worst for ``c`` characters.
"""

from __future__ import annotations

import os
import re
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from lmaudit.corpus.manifest import read_manifest, version_message, write_manifest
from lmaudit.corpus.shard import FILES, SEPARATOR, Shard, index_shard, write_shard
from lmaudit.data import DataError, sha256_file

FORMAT = "lmaudit.corpus.suffix-index"
FORMAT_VERSION = 1
MANIFEST = "index.json"
DEFAULT_SHARD_BYTES = 1 << 30  # ~5.4 GiB of RAM to build one; suffix-array entries stay 4 bytes
_SHARD_NAME = re.compile(r"shard-\d{5}")


class IndexFormatError(ValueError):
    """An index folder that cannot be read: unfinished, damaged, or of another format version."""


@dataclass(frozen=True)
class Hit:
    """One occurrence of a query.

    Attributes:
        doc_id: The id of the document holding it.
        doc: The document's 0-based place in the index (build order, then appends).
        offset: Byte offset of the occurrence in the document's UTF-8 text.
    """

    doc_id: Any
    doc: int
    offset: int


@dataclass(frozen=True)
class Span:
    """A maximal span of an attributed text found verbatim in the corpus.

    Attributes:
        start: Character offset of the span in the text (``text[start:end]``).
        end: Character offset just past the span.
        byte_start: Byte offset of the span in the text's UTF-8 encoding.
        byte_end: Byte offset just past it.
        text: The span itself.
        count: Occurrences in the corpus.
        n_docs: Distinct documents holding it.
        docs: Ids of the first ``max_docs`` of them, in index order.
        n_words: Whole words inside the span (runs of non-space characters that the span
            neither starts nor ends inside of).
        from_source: Whether the document named by ``attribute(..., source=)`` is among all
            ``n_docs`` holders (not only the listed ones); None when no source was named.
    """

    start: int
    end: int
    byte_start: int
    byte_end: int
    text: str
    count: int
    n_docs: int
    docs: tuple
    n_words: int = 0
    from_source: bool | None = None

    def to_dict(self) -> dict:
        return {**self.__dict__, "docs": list(self.docs)}


def _encode(query: str | bytes) -> bytes:
    if isinstance(query, str):
        return query.encode("utf-8", "surrogatepass")
    if isinstance(query, (bytes, bytearray, memoryview)):
        return bytes(query)
    raise TypeError(f"a query is str or bytes, not {type(query).__name__}")


def _where(record: Any) -> str:
    source, line = getattr(record, "source", None), getattr(record, "line", None)
    return f"{source}:{line}" if source is not None else "?"


def build_index(records: Iterable, out: str | os.PathLike, *, shard_bytes: int = DEFAULT_SHARD_BYTES,
                overwrite: bool = False, sources: list[dict] | None = None, jobs: int = 1,
                engine=None) -> "SuffixIndex":
    """Index ``records`` into the folder ``out`` and return the index, opened.

    Args:
        records: :class:`lmaudit.data.Record` objects (anything with ``id`` and ``text``), read
            once, in order; only one shard's documents are held at a time.
        out: The index folder; created if missing. Leftovers of a killed build (shard folders
            without a manifest) are replaced.
        shard_bytes: A shard is closed once its documents reach this many UTF-8 bytes; shards
            split only between documents, so a larger document makes a larger shard.
        overwrite: Replace an existing index in ``out``. The new shards are built first in
            ``out/.rebuild/``, so an error in the records (a duplicate id, a bad row) or a kill
            during that leaves the old index as it was; only then is the old manifest removed,
            the old shards replaced and the new manifest written (a kill during that short swap
            leaves no index that looks complete; building again finishes it). Disk: the old
            index and the new one, side by side, until the swap.
        sources: What the records were read from (e.g. ``{"path", "sha256", "rows"}`` per file),
            kept in the manifest as the index's provenance.
        jobs: Shards whose suffixes are sorted at once, in worker processes (1: in this
            process). Worth it with several shards and as many cores; RAM grows with it.
        engine: Where the shards are sorted: "local" (worker processes here) or "ray" (tasks
            on a Ray cluster, whose nodes must all see ``out``), a name or an engine object
            (:mod:`lmaudit.engines`). The index is the same file for file either way.

    Raises:
        FileExistsError: ``out`` already holds an index and ``overwrite`` is false.
        DataError: Two records share an id (all such ids are named, with their file and line).
    """
    out = Path(out)
    replacing = (out / MANIFEST).exists()
    if replacing:
        if not overwrite:
            raise FileExistsError(f"{out}: already holds an index ({MANIFEST}); append to it with "
                                  "SuffixIndex.append, or pass overwrite=True to rebuild it")
        read_manifest(out / MANIFEST, fmt=FORMAT, error=IndexFormatError)  # never replace a file we did not write
    out.mkdir(parents=True, exist_ok=True)
    staging = out / _STAGING
    _remove_shards(staging)  # leftovers of a rebuild that was killed
    if not replacing:
        _remove_shards(out)  # leftovers of a build that was killed
    entries = _write_shards(records, staging if replacing else out, first=0, shard_bytes=shard_bytes, taken={},
                            jobs=jobs, engine=engine)
    if replacing:
        (out / MANIFEST).unlink()  # from here until the new manifest, no index looks complete
        _remove_shards(out)
        for entry in entries:
            os.replace(staging / entry["name"], out / entry["name"])
    if staging.exists():
        staging.rmdir()
    _write_manifest(out, entries, shard_bytes=shard_bytes, sources=sources or [])
    return load_index(out)


_STAGING = ".rebuild"  # where a rebuild writes its shards before they replace the old ones


def _remove_shards(folder: Path) -> None:
    """Remove the shard folders in ``folder`` (leftovers of an earlier build)."""
    if folder.is_dir():
        for shard in sorted(folder.iterdir()):
            if shard.is_dir() and _SHARD_NAME.fullmatch(shard.name):
                _remove_shard(shard)


def _remove_shard(folder: Path) -> None:
    """Remove a shard folder of a previous build; anything but shard files in it is an error."""
    for name in FILES:
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        raise FileExistsError(f"{folder}: holds files that are not an index shard's; move them "
                              "away before building here") from None


def _write_shards(records: Iterable, out: Path, *, first: int, shard_bytes: int, taken: dict,
                  jobs: int = 1, engine=None) -> list[dict]:
    """Write shards ``shard-{first:05d}`` on; ``taken`` maps ids already in the index to places.

    With ``jobs`` > 1, each full shard's ``text.bin`` is written here and its suffixes are
    sorted in one of ``jobs`` worker processes while the next shard's records are read; at most
    ``jobs`` shards are sorted at once (RAM: ``jobs`` times a shard's build, plus the one being
    filled). On a duplicate id, shard writing stops but the records are still read to the end,
    so the error names every duplicate at once; no manifest is written by the caller.
    """
    if shard_bytes < 1:
        raise ValueError(f"shard_bytes must be positive, got {shard_bytes}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    entries: list = []  # manifest entries, or the futures of workers that will return them
    ids: list = []
    starts = array("q")  # 8 bytes per document, not a list of int objects
    text = bytearray()  # grown in place: one copy of the shard's text, not a list and a join
    duplicates: list[str] = []
    from lmaudit.engines import get_engine

    engine = get_engine(engine)
    # Worker processes here, or tasks on a Ray cluster (whose nodes must all see ``out``).
    pool = engine.executor(jobs) if jobs > 1 or engine.name != "local" else None

    def flush() -> None:
        nonlocal ids, starts, text
        if ids and not duplicates:
            folder = out / f"shard-{first + len(entries):05d}"
            if pool is None:
                entries.append(write_shard(folder, ids, text, starts))
            else:
                from concurrent.futures import FIRST_COMPLETED, wait

                folder.mkdir(parents=True, exist_ok=True)
                (folder / "text.bin").write_bytes(text)
                busy = [e for e in entries if not isinstance(e, dict) and not e.done()]
                if len(busy) >= jobs:
                    wait(busy, return_when=FIRST_COMPLETED)
                entries.append(pool.submit(index_shard, folder, ids, starts))
        ids, starts, text = [], array("q"), bytearray()

    try:
        for record in records:
            where = _where(record)
            if record.id in taken:
                duplicates.append(f"{record.id!r} ({taken[record.id]} and {where})")
                continue
            taken[record.id] = where
            if duplicates:
                continue
            ids.append(record.id)
            starts.append(len(text))
            text += record.text.encode("utf-8", "surrogatepass")
            text += SEPARATOR
            if len(text) - len(ids) >= shard_bytes:
                flush()
        flush()
        entries = [e if isinstance(e, dict) else e.result() for e in entries]  # a worker's error is raised here
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if duplicates:
        shown = "; ".join(duplicates[:10]) + (f"; … {len(duplicates) - 10} more" if len(duplicates) > 10 else "")
        raise DataError(f"{len(duplicates)} duplicate document id(s); no index was written or changed: {shown}")
    return entries


def _write_manifest(out: Path, shards: list[dict], *, shard_bytes: int, sources: list[dict]) -> None:
    import lmaudit

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lmaudit_version": lmaudit.__version__,
        "shard_bytes": shard_bytes,
        "sources": sources,
        "n_docs": sum(s["n_docs"] for s in shards),
        "n_bytes": sum(s["n_bytes"] for s in shards),
        "shards": shards,
    }
    write_manifest(out / MANIFEST, manifest)


def load_index(path: str | os.PathLike, *, verify: bool = False) -> "SuffixIndex":
    """Open the index in folder ``path`` for queries.

    Args:
        path: The folder :func:`build_index` wrote.
        verify: Also check every file's sha256 against the manifest (reads the whole index);
            without it only their sizes are checked.

    Raises:
        IndexFormatError: No manifest (not an index, or a build killed before it finished),
            another format or format version, or a shard file missing or changed.
    """
    return SuffixIndex(path, verify=verify)


class SuffixIndex:
    """An opened index: the shards of a manifest, memory-mapped. Use :func:`load_index`."""

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self.shards: list[Shard] = []
        self._open(self.manifest["shards"], verify=verify)

    def _open(self, entries: list[dict], *, verify: bool) -> None:
        base = sum(len(s.ids) for s in self.shards)
        for entry in entries:
            folder = self.path / entry["name"]
            for name, want in entry["files"].items():
                file = folder / name
                if not file.is_file():
                    raise IndexFormatError(f"{file}: missing (listed in {self.path / MANIFEST})")
                if file.stat().st_size != want["bytes"] or (verify and sha256_file(file) != want["sha256"]):
                    raise IndexFormatError(f"{file}: changed since the index was written "
                                           f"({'sha256' if verify else 'size'} differs from {MANIFEST})")
            self.shards.append(Shard(folder, entry, doc_base=base))
            base += entry["n_docs"]

    def close(self) -> None:
        for shard in self.shards:
            shard.close()
        self.shards = []

    def __enter__(self) -> "SuffixIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def n_docs(self) -> int:
        return self.manifest["n_docs"]

    @property
    def n_bytes(self) -> int:
        """UTF-8 bytes of all documents (separators not counted)."""
        return self.manifest["n_bytes"]

    def append(self, records: Iterable, *, shard_bytes: int | None = None,
               sources: list[dict] | None = None, jobs: int = 1, engine=None) -> "SuffixIndex":
        """Add ``records`` as new shards; old shards are never rewritten. Returns ``self``.

        Args:
            records: As for :func:`build_index`; their ids must not be in the index already.
            shard_bytes: Shard size for the new shards; the index's own by default.
            sources: What the new records were read from, added to the manifest's.
            jobs, engine: As for :func:`build_index`.

        Raises:
            DataError: A record's id is already in the index or repeated among ``records``.
        """
        taken = {doc_id: f"in the index, {s.entry['name']}" for s in self.shards for doc_id in s.ids}
        shard_bytes = shard_bytes or self.manifest["shard_bytes"]
        old = self.manifest["shards"]
        new = _write_shards(records, self.path, first=len(old), shard_bytes=shard_bytes, taken=taken, jobs=jobs,
                            engine=engine)
        if new:
            _write_manifest(self.path, old + new, shard_bytes=self.manifest["shard_bytes"],
                            sources=self.manifest.get("sources", []) + (sources or []))
            self.manifest = _read_manifest(self.path)
            self._open(new, verify=False)
        return self

    def records(self, *, first: int = 0) -> Iterator[tuple[Any, str]]:
        """``(id, text)`` of every document from the ``first``-th on, in index order.

        What derived indexes (BM25, near-duplicates) read, so that they see exactly the
        documents the suffix array holds, and an append can extend them from where they stopped.
        """
        for shard in self.shards:
            for i in range(max(0, first - shard.doc_base), len(shard.ids)):
                yield shard.ids[i], shard.document(i).decode("utf-8", "surrogatepass")

    def document(self, doc: int) -> str:
        """The text of the ``doc``-th document (0-based, index order)."""
        for shard in self.shards:
            if doc < shard.doc_base + len(shard.ids):
                return shard.document(doc - shard.doc_base).decode("utf-8", "surrogatepass")
        raise IndexError(f"document {doc} out of range (the index holds {self.n_docs})")

    def _query(self, query: str | bytes) -> bytes | None:
        """The query's bytes; None when it cannot match (it holds the separator byte)."""
        q = _encode(query)
        if not q:
            raise ValueError("an empty query matches everywhere; give at least one byte")
        return None if SEPARATOR in q else q

    def count(self, query: str | bytes) -> int:
        """Occurrences of ``query`` in the corpus (overlapping ones included)."""
        q = self._query(query)
        if q is None:
            return 0
        return sum(hi - lo for lo, hi in (s.range(q) for s in self.shards))

    def locate(self, query: str | bytes, *, offset: int = 0, limit: int = 100) -> list[Hit]:
        """Occurrences of ``query``, in index order (document, then byte offset), paginated.

        Args:
            query: The string to look up.
            offset: How many occurrences to skip (of ``count(query)``).
            limit: The most occurrences to return.
        """
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be non-negative, got {offset} and {limit}")
        q = self._query(query)
        hits: list[Hit] = []
        if q is None:
            return hits
        for shard in self.shards:
            if len(hits) == limit:
                break
            lo, hi = shard.range(q)
            if offset >= hi - lo:  # the page starts past this shard: skip it without sorting
                offset -= hi - lo
                continue
            pos = shard.positions(lo, hi)[offset : offset + limit - len(hits)]
            offset = 0
            docs = shard.docs_of(pos)
            hits.extend(Hit(shard.ids[d], shard.doc_base + int(d), int(p - shard.starts[d]))
                        for d, p in zip(docs, pos))
        return hits

    def longest(self, query: str | bytes) -> str | bytes:
        """The longest prefix of ``query`` found in the corpus (``""`` when none).

        For a ``str`` query the prefix is whole characters; for ``bytes`` it may cut one.
        """
        q = _encode(query)
        n = max((s.longest(q) for s in self.shards), default=0)
        if isinstance(query, str):
            return _whole_chars(query, q, n)
        return q[:n]

    def attribute(self, text: str, *, min_bytes: int = 32, min_words: int | None = None, max_docs: int = 10,
                  source: Any = None) -> list[Span]:
        """Every maximal span of ``text`` found verbatim in the corpus and long enough to report.

        A span is whole characters of ``text``; it is maximal when neither the span one
        character longer on the left nor on the right occurs in the corpus. Spans may overlap
        (two different documents can each hold a different stretch). Ordered by start. The
        length thresholds only filter: a span is maximal or not whatever they are.

        Args:
            text: The text to attribute, e.g. a model's output.
            min_bytes: The shortest span reported, in UTF-8 bytes.
            min_words: Also require this many whole words in the span (OLMoTrace and most
                readers think in words or tokens, not bytes); None: no word threshold.
            max_docs: How many ids of the documents holding a span to list (``n_docs`` counts all).
            source: The id of the document ``text`` is expected to come from (an extraction
                output's own document): each span then says whether that document holds it.
                Ids are compared as strings, so ``7`` and ``"7"`` are the same document.
        """
        if not isinstance(text, str):
            raise TypeError(f"attribute takes a str, not {type(text).__name__}")
        if min_bytes < 1:
            raise ValueError(f"min_bytes must be at least 1, got {min_bytes}")
        if min_words is not None and min_words < 1:
            raise ValueError(f"min_words must be at least 1 (or None), got {min_words}")
        data = text.encode("utf-8", "surrogatepass")
        bounds = _char_bounds(text)  # (C + 1,) byte offset of each character, then len(data)
        c = len(text)
        # reach[i]: byte offset where the longest match starting at character i ends; only
        # characters that can start a long enough match are looked up, the rest reach nowhere.
        candidate = self._may_start_span(data, bounds[:-1], min_bytes)
        reach = np.array([bounds[i] + self._longest_from(data, int(bounds[i])) if candidate[i] else bounds[i]
                          for i in range(c)], dtype=np.int64)
        end = np.searchsorted(bounds, reach, side="right") - 1  # (C,) last whole character reached
        start = np.arange(c)
        keep = bounds[end] - bounds[start] >= min_bytes
        # A match from character i - 1 ends at or before the one from i (whatever occurs, so does
        # its suffix); ending at the same place, it contains this one, which is then not maximal.
        keep[1:] &= end[1:] != end[:-1]
        words = _words_inside(text, start, end)
        if min_words is not None:
            keep &= words >= min_words
        return [self._span(text, data, int(i), int(end[i]), bounds, max_docs, int(words[i]), source)
                for i in np.flatnonzero(keep)]

    def _longest_from(self, data: bytes, start: int) -> int:
        """Bytes of the longest match of ``data[start:]`` in the corpus.

        Asked with a prefix of 64 bytes, then 4 times longer while the whole prefix matches: the
        answer for a prefix shorter than the match is the prefix itself, and a comparison in the
        binary search costs the query's length, so a long text would otherwise cost its length
        squared.
        """
        width = 64
        while True:
            q = data[start : start + width]
            n = max((s.longest(q) for s in self.shards), default=0)
            if n < len(q) or start + width >= len(data):
                return n
            width *= 4

    def _found(self, q: bytes) -> bool:
        return any(hi > lo for lo, hi in (s.range(q) for s in self.shards))

    def _may_start_span(self, data: bytes, starts: np.ndarray, min_bytes: int) -> np.ndarray:
        """Whether a match of at least ``min_bytes`` bytes can start at each byte offset ``starts``.

        With ``w = min_bytes // 2``, a match ``[s, e)`` with ``e - s >= min_bytes``
        contains the window ``[a, a + w)`` of the first multiple ``a`` of ``w`` at or after
        ``s`` (``a < s + w`` and ``a + w < s + 2w <= e``), so that window occurs in the corpus.
        One lookup per window (``len(data) / w`` of them) rules out every start whose window
        does not occur: most characters of text that is not copied, where each start would
        otherwise cost its own lookup.
        """
        if min_bytes < 4:  # windows of one byte: a lookup per byte would cost more than it saves
            return np.ones(len(starts), dtype=bool)
        w = min_bytes // 2
        anchors = np.arange(0, len(data) - w + 1, w)
        occurs = np.array([self._found(data[a : a + w]) for a in anchors], dtype=bool)
        first = -(-starts // w)  # index of the first anchor at or after each start
        ok = first < len(anchors)
        ok[ok] = occurs[first[ok]]
        return ok

    def _span(self, text: str, data: bytes, i: int, j: int, bounds: np.ndarray, max_docs: int, n_words: int,
              source: Any) -> Span:
        b0, b1 = int(bounds[i]), int(bounds[j])
        q = data[b0:b1]
        count, docs = 0, []
        for shard in self.shards:
            lo, hi = shard.range(q)
            count += hi - lo
            if hi > lo:
                docs.extend((shard, int(d)) for d in np.unique(shard.docs_of(shard.positions(lo, hi))))
        from_source = None if source is None else any(str(shard.ids[d]) == str(source) for shard, d in docs)
        return Span(start=i, end=j, byte_start=b0, byte_end=b1, text=text[i:j], count=count,
                    n_docs=len(docs), docs=tuple(shard.ids[d] for shard, d in docs[:max_docs]),
                    n_words=n_words, from_source=from_source)


_WORD = re.compile(r"\S+")


def _words_inside(text: str, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """For each span ``[start[k], end[k])`` of ``text``, the words (``\\S+`` runs) wholly inside it."""
    found = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not found:
        return np.zeros(len(start), dtype=np.int64)
    ws, we = (np.array(x, dtype=np.int64) for x in zip(*found))
    # Words are disjoint and ordered, so those wholly inside [s, e) are a contiguous run: from
    # the first starting at or after s to the last ending at or before e.
    first = np.searchsorted(ws, start, side="left")
    last = np.searchsorted(we, end, side="right")
    return np.maximum(last - first, 0)


def _char_bounds(text: str) -> np.ndarray:
    """Byte offset of each character of ``text`` in its UTF-8 (surrogatepass) encoding, and the end."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    widths = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
    bounds = np.zeros(len(text) + 1, dtype=np.int64)
    np.cumsum(widths, out=bounds[1:])
    return bounds


def _whole_chars(query: str, q: bytes, n: int) -> str:
    """The longest prefix of ``query`` whose encoding is at most ``n`` bytes."""
    bounds = _char_bounds(query)
    return query[: int(np.searchsorted(bounds, n, side="right")) - 1]


def _read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    if not file.is_file():
        if path.is_dir() and any(_SHARD_NAME.fullmatch(p.name) for p in path.iterdir()):
            raise IndexFormatError(f"{path}: shard folders but no {MANIFEST}: a build that did not "
                                   "finish (killed?); build the index again into this folder")
        raise IndexFormatError(f"{path}: not an lmaudit index (no {MANIFEST})")
    manifest = read_manifest(file, fmt=FORMAT, error=IndexFormatError)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(version_message(file, manifest, f"version {FORMAT_VERSION}"))
    return manifest
