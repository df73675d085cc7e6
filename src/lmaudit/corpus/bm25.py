"""BM25 search with phrase queries over the documents of a suffix index, through tantivy.

The suffix index (:mod:`lmaudit.corpus.index`) answers "where is this exact string"; this one
answers "which documents are about these words", ranked by BM25. It is derived from a suffix
index and lives in its folder, ``IDX/bm25/``, so both always describe the same documents:

    >>> from lmaudit.data import Record
    >>> from lmaudit.corpus.index import build_index
    >>> docs = [Record(id="a", text="The cat sat on the mat.", source="-", line=1),
    ...         Record(id="b", text="A cat, a café; the mat sat.", source="-", line=2)]
    >>> import tempfile; index = build_index(docs, tempfile.mkdtemp())
    >>> bm25 = build_bm25(index)
    >>> [h.doc_id for h in bm25.search("cat")], [h.doc_id for h in bm25.search('"the cat sat"')]
    (['a', 'b'], ['a'])
    >>> bm25.count("café mat"), bm25.search("CAFÉ")[0].snippet
    (2, 'A cat, a café; the mat sat.')

Queries: outside double quotes, a bag of words, each distinct word scored and the scores summed
(a document needs one of them to match); inside double quotes, a phrase, matching the words
consecutively and scored as tantivy scores a phrase (the words' idfs summed, the phrase's
frequency as the term frequency). Words are what tantivy's ``default`` tokenizer makes of the
text, for documents and queries alike: runs of alphanumeric characters (Unicode's, so ``café``
and ``ΣΟΦΙΑ`` are one word each; ``don't`` is ``don`` and ``t``, ``e-mail`` is ``e`` and
``mail``), lowercased character by character, and those of 40 UTF-8 bytes or more dropped (a
dropped word still takes its place, so a phrase never matches across it). There are no
operators: ``AND``, ``+``, ``-``, ``field:`` and ``*`` are words or punctuation like any other
(tantivy's own query language fails on ``don't``, which text pasted from a document often holds).
An odd number of double quotes, or a query with no word at all, is a ``ValueError`` naming it.

Scores are tantivy's BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N - n + 0.5) / (n + 0.5)), the
average length over all documents, empty ones included), computed in 32-bit floats (a word in
nearly every document gets an idf near 0 that is off by up to about 0.1%), with one
approximation of tantivy's: a document's length is stored in one byte, exactly up to 40 words and
rounded down to about 3 significant bits above (a 100-word document is scored as 96 words long).
``tests/unit/test_corpus_bm25.py`` checks scores and rankings against a brute-force BM25.

Layout of ``IDX/bm25/``: tantivy's files (a field ``text``, indexed with positions and not
stored: the suffix index holds the text; a stored field ``doc``, the document's place in the
suffix index) and ``bm25.json``, the manifest (format and version, the lmaudit and tantivy
versions, the tokenizer's settings, how many documents are indexed and the suffix-index shards
they came from, by name and sha256). The manifest is written last, atomically; a build killed
midway leaves no manifest, and :func:`load_bm25` refuses the folder as unfinished (building
again replaces it). :func:`update_bm25` adds the documents appended to the suffix index since.
A BM25 index whose documents are not the suffix index's (the suffix index was rebuilt with
other documents, or appended to since) is refused, saying how to bring it up to date.

Costs, measured with ``benchmarks/bench_bm25.py`` on 51.7 MiB of testbed biographies (150,000
documents), one indexing thread, on this shared 2-core machine (loaded: latencies are noisy):
0.7-1.5 s to build (35-75 MiB/s); 0.27 bytes on disk per input byte; a top-10 :meth:`search`
(hits, ids and snippets) of one word 0.55 ms median (1.0 ms p99), of three words 1.2 ms (1.5 ms),
of a three-word phrase 0.9 ms (16 ms); tantivy's own search is about half of that, the rest
fetching each hit's text from the suffix index and tokenizing it for the snippet. RAM: tantivy's
128 MiB indexing buffer per thread while building; memory-mapped files at query time.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmaudit.corpus.manifest import read_manifest, version_message, write_manifest

FORMAT = "lmaudit.corpus.bm25"
FORMAT_VERSION = 1
FOLDER = "bm25"
MANIFEST = "bm25.json"
# tantivy's "default" analyzer, spelled out: the query side builds the same one in Python.
TOKENIZER = {"name": "default", "split": "non-alphanumeric (Unicode)", "lowercase": True,
             "drop_tokens_of_bytes": 40}
SNIPPET_CHARS = 160
_HEAP_BYTES = 128 * 1024 * 1024  # tantivy's indexing buffer per thread, before it writes a segment


class Bm25FormatError(ValueError):
    """A BM25 folder that cannot be used: missing, unfinished, of another version, or stale."""


@dataclass(frozen=True)
class SearchHit:
    """One document found by :meth:`Bm25Index.search`.

    Attributes:
        doc_id: The document's id, as the suffix index holds it (str or int).
        doc: The document's 0-based place in the suffix index (``index.document(doc)``).
        score: Its BM25 score for the query.
        snippet: Up to :data:`SNIPPET_CHARS` characters of its text around the first matching word.
    """

    doc_id: Any
    doc: int
    score: float
    snippet: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _tantivy():
    try:
        import tantivy
    except ImportError as err:  # a main dependency; this names it if an install lost it
        raise ImportError("BM25 search needs tantivy: pip install 'tantivy>=0.22'") from err
    return tantivy


def _analyzer():
    t = _tantivy()
    return (t.TextAnalyzerBuilder(t.Tokenizer.simple())
            .filter(t.Filter.remove_long(TOKENIZER["drop_tokens_of_bytes"]))
            .filter(t.Filter.lowercase()).build())


def _schema():
    t = _tantivy()
    builder = t.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name=TOKENIZER["name"], index_option="position")
    builder.add_unsigned_field("doc", stored=True, indexed=False)
    return builder.build()


def _shards(index) -> list[dict]:
    """The suffix index's shards as the BM25 manifest records them: what identifies their documents."""
    return [{"name": s["name"], "n_docs": s["n_docs"], "ids_sha256": s["files"]["ids.json"]["sha256"],
             "text_sha256": s["files"]["text.bin"]["sha256"]} for s in index.manifest["shards"]]


def build_bm25(index, *, overwrite: bool = False, threads: int = 1) -> "Bm25Index":
    """Index every document of the suffix index ``index`` into ``index.path/bm25`` and open it.

    Args:
        index: A :class:`~lmaudit.corpus.index.SuffixIndex`; its documents are read with
            ``index.records()``.
        overwrite: Replace a BM25 index already there.
        threads: tantivy's indexing threads (each buffers up to 128 MiB).

    Raises:
        FileExistsError: A finished BM25 index is already there and ``overwrite`` is false.
    """
    folder = Path(index.path) / FOLDER
    if (folder / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{folder}: already holds a BM25 index; pass overwrite=True to rebuild it, "
                                  "or update_bm25 to add the documents appended to the suffix index since")
        (folder / MANIFEST).unlink()  # first: a rebuild killed midway leaves no index that looks finished
    if folder.exists():
        _remove_tantivy_folder(folder)
    folder.mkdir(parents=True)
    t = _tantivy()
    tindex = t.Index(_schema(), path=str(folder))
    _add(tindex, index, first=0, threads=threads)
    _write_manifest(folder, index, n_docs=index.n_docs)
    return Bm25Index(index)


# What tantivy writes in its folder (segment files are "<uuid>.<ext>"), and our manifest's temporary file.
_TANTIVY_NAMES = {"meta.json", ".managed.json", ".tantivy-meta.lock", ".tantivy-writer.lock", MANIFEST + ".partial"}
_TANTIVY_EXTS = {".idx", ".term", ".pos", ".store", ".fast", ".fieldnorm", ".del"}


def _remove_tantivy_folder(folder: Path) -> None:
    """Remove the BM25 folder of an earlier build, refusing one that holds anything tantivy did
    not write (a folder named bm25 of the user's own)."""
    strays = [p.name for p in folder.iterdir()
              if not p.is_file() or not (p.name in _TANTIVY_NAMES or p.suffix in _TANTIVY_EXTS)]
    if strays:
        raise FileExistsError(f"{folder}: holds files a BM25 index does not ({', '.join(sorted(strays)[:5])}); "
                              "move them away before building here")
    shutil.rmtree(folder)


def update_bm25(index, *, threads: int = 1) -> "Bm25Index":
    """Bring ``index``'s BM25 index up to date and open it.

    Adds the documents appended to the suffix index since the BM25 index was built or last
    updated (an append never rewrites old shards, so those are still indexed as they were).
    Where that is not possible (no BM25 index, an unfinished one, one of another format
    version, or one whose documents are not the first ones of ``index``: the suffix index was
    rebuilt), builds it again from scratch.
    """
    folder = Path(index.path) / FOLDER
    try:
        manifest = _read_manifest(folder)
        _check_shards(manifest, index, allow_more=True)
    except Bm25FormatError:
        return build_bm25(index, overwrite=True, threads=threads)
    done = manifest["n_docs"]
    if done < index.n_docs:
        tindex = _tantivy().Index.open(str(folder))
        if _num_docs(tindex) != done:  # an update killed between tantivy's commit and the manifest
            return build_bm25(index, overwrite=True, threads=threads)
        (folder / MANIFEST).unlink()  # an update killed from here on leaves a folder refused as unfinished
        _add(tindex, index, first=done, threads=threads)
        _write_manifest(folder, index, n_docs=index.n_docs)
    return Bm25Index(index)


def _rust_safe(text: str) -> str:
    """``text`` with each lone surrogate (which the suffix index keeps) as ``?``: Rust strings cannot
    hold one, and it is no word anyway. Characters keep their places."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _num_docs(tindex) -> int:
    tindex.reload()
    return tindex.searcher().num_docs


def _add(tindex, index, *, first: int, threads: int) -> None:
    t = _tantivy()
    writer = tindex.writer(heap_size=_HEAP_BYTES, num_threads=threads)
    for doc, (_, text) in enumerate(index.records(first=first), start=first):
        d = t.Document()
        d.add_unsigned("doc", doc)
        d.add_text("text", _rust_safe(text))
        writer.add_document(d)
    writer.commit()
    writer.wait_merging_threads()


def _write_manifest(folder: Path, index, *, n_docs: int) -> None:
    import lmaudit

    t = _tantivy()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lmaudit_version": lmaudit.__version__,
        "tantivy_version": getattr(t, "__version__", None) or _installed_version("tantivy"),
        "tokenizer": TOKENIZER,
        "n_docs": n_docs,
        "shards": _shards(index),
    }
    write_manifest(folder / MANIFEST, manifest)


def _installed_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _read_manifest(folder: Path) -> dict:
    file = folder / MANIFEST
    if not file.is_file():
        if folder.is_dir():
            raise Bm25FormatError(f"{folder}: no {MANIFEST}: a BM25 build or update that did not finish "
                                  "(killed?); build it again (`lmaudit index build` rebuilds both indexes)")
        raise Bm25FormatError(f"{folder.parent}: has no BM25 index ({FOLDER}/); build one with "
                              f"`lmaudit search --index {folder.parent} --build` or `lmaudit index build`")
    manifest = read_manifest(file, fmt=FORMAT, error=Bm25FormatError)
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("tokenizer") != TOKENIZER:
        raise Bm25FormatError(version_message(file, manifest, f"version {FORMAT_VERSION} with tokenizer {TOKENIZER}"))
    return manifest


def _check_shards(manifest: dict, index, *, allow_more: bool) -> None:
    """Refuse a BM25 manifest whose documents are not the suffix index's (``allow_more``: or its first ones)."""
    file = Path(index.path) / FOLDER / MANIFEST
    have, mine = _shards(index), manifest["shards"]
    fix = ("`lmaudit index build` rebuilds both, or lmaudit.corpus.bm25.update_bm25(index) brings the "
           "BM25 index up to date")
    if have[:len(mine)] != mine:
        raise Bm25FormatError(f"{file}: indexes other documents than the suffix index in {index.path} (it was "
                              f"rebuilt since: its shards differ from those the BM25 index records); {fix}")
    if manifest["n_docs"] != index.n_docs and not allow_more:
        raise Bm25FormatError(f"{file}: indexes {manifest['n_docs']} documents, but the suffix index in "
                              f"{index.path} holds {index.n_docs} (appended to since); {fix}")


def load_bm25(index) -> "Bm25Index":
    """Open the BM25 index of ``index`` (a :class:`~lmaudit.corpus.index.SuffixIndex`, or its folder).

    Raises:
        Bm25FormatError: No BM25 index, an unfinished one, one of another format version, or one
            that does not index exactly the suffix index's documents.
    """
    if isinstance(index, (str, os.PathLike)):
        from lmaudit.corpus.index import load_index

        index = load_index(index)
    return Bm25Index(index)


class Bm25Index:
    """An opened BM25 index and the suffix index it was derived from. Use :func:`load_bm25`."""

    def __init__(self, index):
        self.index = index
        self.folder = Path(index.path) / FOLDER
        self.manifest = _read_manifest(self.folder)
        _check_shards(self.manifest, index, allow_more=False)
        t = _tantivy()
        self._tindex = t.Index.open(str(self.folder))
        self._tindex.reload()
        self._searcher = self._tindex.searcher()
        if self._searcher.num_docs != self.manifest["n_docs"]:
            raise Bm25FormatError(f"{self.folder}: tantivy holds {self._searcher.num_docs} documents, its manifest "
                                  f"{self.manifest['n_docs']}; rebuild it (`lmaudit index build`)")
        self._schema = self._tindex.schema
        self._analyzer = _analyzer()

    @property
    def n_docs(self) -> int:
        return self.manifest["n_docs"]

    def parse(self, query: str) -> tuple[list[str], list[list[tuple[int, str]]]]:
        """The query's distinct words and its phrases (each a list of ``(position, word)``).

        Raises:
            ValueError: An odd number of double quotes, or no word at all.
        """
        if not isinstance(query, str):
            raise TypeError(f"a query is a str, not {type(query).__name__}")
        parts = query.split('"')
        if len(parts) % 2 == 0:
            raise ValueError(f"query {query!r}: {len(parts) - 1} double quotes; a phrase is between two of them")
        words: list[str] = []
        phrases: list[list[tuple[int, str]]] = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                words.extend(w for w in self._analyzer.analyze(part) if w not in words)
                continue
            tokens = self._analyzer.pre_tokenize(part).tokens
            phrase = [(tok.position - tokens[0].position, tok.text) for tok in tokens]
            if len(phrase) == 1:
                words.extend(w for _, w in phrase if w not in words)
            elif phrase and phrase not in phrases:
                phrases.append(phrase)
        if not words and not phrases:
            raise ValueError(f"query {query!r} holds no word to search for (words are runs of letters "
                             "and digits under 40 UTF-8 bytes)")
        return words, phrases

    def _query(self, query: str):
        t = _tantivy()
        words, phrases = self.parse(query)
        clauses = [t.Query.term_query(self._schema, "text", w) for w in words]
        clauses += [t.Query.phrase_query(self._schema, "text", p) for p in phrases]
        if len(clauses) == 1:
            return clauses[0], words, phrases
        return t.Query.boolean_query([(t.Occur.Should, c) for c in clauses]), words, phrases

    def count(self, query: str) -> int:
        """How many documents match ``query`` (one of its words, or one of its phrases)."""
        q, _, _ = self._query(query)
        return self._searcher.search(q, 1, count=True).count

    def search(self, query: str, *, limit: int = 10, offset: int = 0) -> list[SearchHit]:
        """The documents that best match ``query``, best first, paginated.

        Args:
            query: Words, and phrases in double quotes (see the module's docstring).
            limit: The most hits to return.
            offset: How many of the best hits to skip.

        Equal scores come in tantivy's order (by index order, within one segment).
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be non-negative, got {limit} and {offset}")
        q, words, phrases = self._query(query)
        if limit == 0:
            return []
        hits = []
        for score, address in self._searcher.search(q, limit, count=False, offset=offset).hits:
            doc = self._searcher.doc(address)["doc"][0]
            text = self.index.document(doc)
            hits.append(SearchHit(doc_id=_doc_id(self.index, doc), doc=doc, score=float(score),
                                  snippet=self._snippet(text, words, phrases)))
        return hits

    def _snippet(self, text: str, words: list[str], phrases: list[list[tuple[int, str]]]) -> str:
        """About :data:`SNIPPET_CHARS` characters of ``text`` around its first word of the query."""
        wanted = set(words) | {p[0][1] for p in phrases}
        start = 0
        for tok in self._analyzer.pre_tokenize(_rust_safe(text)).tokens:
            if tok.text in wanted:
                start = tok.char_offset_from
                break
        lo = max(0, start - SNIPPET_CHARS // 4)
        lo = text.rfind(" ", 0, lo + 1) + 1 if lo else 0  # from a word's start
        snippet = text[lo:lo + SNIPPET_CHARS]
        return ("…" if lo else "") + " ".join(snippet.split()) + ("…" if lo + SNIPPET_CHARS < len(text) else "")


def _doc_id(index, doc: int) -> Any:
    for shard in index.shards:
        if doc < shard.doc_base + len(shard.ids):
            return shard.ids[doc - shard.doc_base]
    raise IndexError(f"document {doc} out of range (the index holds {index.n_docs})")
