"""One shard of the exact-substring index: a byte-level suffix array over a chunk of documents.

A shard is a folder of four files:

- ``text.bin``: the documents' UTF-8 bytes, each followed by the byte ``0xFF``. ``0xFF`` never
  occurs in UTF-8 (nor in the ``surrogatepass`` encoding of a lone surrogate), so no match of a
  query without it can run from one document into the next.
- ``sa.npy``: the suffix array of ``text.bin`` from libdivsufsort (through pydivsufsort), less the
  suffixes starting at a separator (they sort last, since ``0xFF`` is the largest byte, and no
  query can match them), stored in the smallest unsigned dtype that holds ``len(text.bin) - 1``.
- ``docs.npy``: int64 start offset of every document in ``text.bin``, plus ``len(text.bin)``.
  Document ``i`` is ``text[starts[i] : starts[i + 1] - 1]``; an empty document still takes its
  separator byte, so the starts are strictly increasing and a position maps to its document by
  one ``searchsorted``.
- ``ids.json``: the documents' ids, in order, as given (strings or integers).

At query time ``text.bin`` is an ``mmap`` and ``sa.npy`` a read-only ``np.load(mmap_mode="r")``,
so a shard costs only its ``docs.npy`` and ids in RAM; the operating system pages the rest in.
Searches are Python's C ``bisect`` over the suffix array with the suffix's first ``m`` bytes as
the key: ``O(m log n)`` byte comparisons for a query of ``m`` bytes in a shard of ``n``.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmaudit.data import sha256_file

SEPARATOR = b"\xff"
FILES = ("text.bin", "sa.npy", "docs.npy", "ids.json")
# memoryview formats giving Python ints for each suffix-array dtype (fast scalar access in bisect).
_VIEW_FORMAT = {"uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q"}


def sa_dtype(n: int) -> np.dtype:
    """The smallest unsigned dtype that holds every offset of a text of ``n`` bytes."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def write_shard(folder: Path, ids: Sequence[Any], text: bytearray, starts: Sequence[int]) -> dict:
    """Build and write one shard; return its manifest entry (counts, dtype, file sizes and sha256s).

    Args:
        folder: The shard's folder; files a killed build left in it are overwritten.
        ids: The documents' ids.
        text: The documents' UTF-8 bytes, each followed by :data:`SEPARATOR`.
        starts: Where each document starts in ``text``.

    Peak RAM is ``text`` (1 byte per input byte) plus libdivsufsort's int32 suffix array (4
    bytes, 8 past 2 GiB) plus, for dtypes other than uint32 (uint64 past 2 GiB), the converted copy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.bin").write_bytes(text)
    return index_shard(folder, ids, starts, text=text)


def index_shard(folder: Path, ids: Sequence[Any], starts: Sequence[int], *, text: bytes | None = None) -> dict:
    """Sort the suffixes of ``folder/text.bin`` and write the shard's other files; return its
    manifest entry. ``text``: the file's bytes, when the caller still holds them; else they are
    read back (a worker process of a parallel build gets only the folder, ids and starts)."""
    from pydivsufsort import divsufsort  # a C library; imported when an index is built

    if text is None:
        text = (folder / "text.bin").read_bytes()
    starts = np.append(np.asarray(starts, dtype=np.int64), len(text))
    n_doc_bytes = len(text) - len(ids)

    sa = divsufsort(text)[:n_doc_bytes]  # int32 (int64 past 2 GiB): suffixes at separators dropped
    dtype = sa_dtype(len(text))
    sa = sa.view(dtype) if sa.dtype.itemsize == dtype.itemsize else sa.astype(dtype)

    np.save(folder / "sa.npy", sa, allow_pickle=False)
    np.save(folder / "docs.npy", starts, allow_pickle=False)
    (folder / "ids.json").write_text(json.dumps(list(ids), ensure_ascii=False), encoding="utf-8")
    files = {}
    for name in FILES:
        path = folder / name
        with open(path, "rb+") as f:
            os.fsync(f.fileno())  # on disk before a manifest can name it
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return {"name": folder.name, "n_docs": len(ids), "n_bytes": n_doc_bytes,
            "sa_dtype": dtype.name, "files": files}


def _lcp(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of two byte strings."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    x, y = np.frombuffer(a, np.uint8, n), np.frombuffer(b, np.uint8, n)
    return int(np.argmax(x != y))


class Shard:
    """A shard opened for queries (memory-mapped). Positions are byte offsets in ``text.bin``."""

    def __init__(self, folder: Path, entry: dict, *, doc_base: int):
        self.folder = folder
        self.entry = entry
        self.doc_base = doc_base  # global index of this shard's first document
        with open(folder / "text.bin", "rb") as f:
            self._text = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # never empty: separators
        self.sa = np.load(folder / "sa.npy", mmap_mode="r")
        self._sa = memoryview(self.sa).cast("B").cast(_VIEW_FORMAT[self.sa.dtype.name])
        self.starts = np.load(folder / "docs.npy")
        self.ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))

    def close(self) -> None:
        self._sa.release()
        self._text.close()

    def document(self, i: int) -> bytes:
        """The bytes of this shard's ``i``-th document."""
        return self._text[int(self.starts[i]) : int(self.starts[i + 1]) - 1]

    def range(self, q: bytes) -> tuple[int, int]:
        """The suffix-array rows ``[lo, hi)`` whose suffixes start with ``q`` (``q`` non-empty)."""
        m, text = len(q), self._text
        key = lambda s: text[s : s + m]  # noqa: E731  a suffix cut to m bytes orders as the suffix vs q
        lo = bisect.bisect_left(self._sa, q, key=key)
        return lo, bisect.bisect_right(self._sa, q, lo=lo, key=key)

    def longest(self, q: bytes) -> int:
        """Bytes of the longest prefix of ``q`` that occurs in this shard.

        The suffixes sharing the longest prefix with ``q`` sit next to where ``q`` would be
        inserted, so one binary search and two comparisons suffice.
        """
        m, text = len(q), self._text
        p = bisect.bisect_left(self._sa, q, key=lambda s: text[s : s + m])
        best = 0
        for row in (p - 1, p):
            if 0 <= row < len(self._sa):
                s = self._sa[row]
                best = max(best, _lcp(q, text[s : s + m]))
        return best

    def positions(self, lo: int, hi: int) -> np.ndarray:
        """The text positions of suffix-array rows ``[lo, hi)``, in corpus order (sorted)."""
        return np.sort(np.asarray(self.sa[lo:hi], dtype=np.int64))

    def docs_of(self, positions: np.ndarray) -> np.ndarray:
        """This shard's document index of each position."""
        return np.searchsorted(self.starts, positions, side="right") - 1
