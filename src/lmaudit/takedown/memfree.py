"""MemFree (CoTaEval, Wei et al. 2024, arXiv:2406.18664): never emit a token that completes
a protected n-gram.

An :class:`NgramIndex` holds every n-gram (n = 6 tokens in the paper) of a protected corpus,
in the model's own tokenisation. :class:`MemFreeProcessor` is a logits processor: at every
decoding step, for each row, the last n − 1 tokens (prompt and generated tokens alike) form
a prefix, and every candidate token that would complete a protected n-gram gets a score of
−inf. Greedy decoding then picks exactly what "try candidates in logit order and reject
each that completes a protected n-gram" picks.

Where this differs from the public CoTaEval code, and why:

- The public code keeps the n-grams in a Redis Bloom filter and makes one network round
  trip per rejected candidate, at batch size 1. Here the index lives in the process, and
  the exact kind answers a whole batch with one sorted-array search per step (no Python
  work per candidate or per row).
- The public code checks only n-grams lying wholly inside the generated text. Here the
  window is the last n − 1 tokens of ``input_ids``, so an n-gram that starts in the prompt
  and ends in the output is blocked too.

Two kinds of index:

- ``exact`` (corpora that fit in memory): the distinct n-grams as an (N, n) int32 array,
  sorted by a 64-bit key of their (n − 1)-token prefix. One ``searchsorted`` over the batch
  finds, for each row, the run of n-grams sharing its prefix; the prefixes are then compared
  in full, so a key collision can never ban a token. Memory: 4n + 8 bytes per distinct
  n-gram (32 bytes at n = 6). Saved as ``ngrams.npy``; the keys are rebuilt on load.
- ``bloom`` (corpora beyond memory): an ``rbloom.Bloom`` filter over the n-grams and one
  over their (n − 1)-prefixes, both keyed by xxh3-128 of the tokens' int32 little-endian
  bytes (Python's own ``hash`` is salted per process and could not be saved). It never
  misses a protected n-gram; a token that completes none is banned with probability at
  most about ``fp_rate`` (the filters are sized for every n-gram occurrence, so repeats
  only lower it). Memory: −ln(fp_rate)/ln(2)² bits per n-gram occurrence and filter,
  about 1.8 bytes each at 10⁻³, 3.6 bytes for the pair. A Bloom filter cannot list what
  follows a prefix, so the processor tests candidates one by one in score order, and only
  as far as needed (see :class:`MemFreeProcessor`).

Example:
    >>> import torch
    >>> index = NgramIndex.build([[5, 6, 7, 8]], n=3, tokenizer_fingerprint="demo")
    >>> index.banned_next([6, 7]).tolist()
    [8]
    >>> memfree = MemFreeProcessor(index)
    >>> scores = memfree(torch.tensor([[1, 6, 7]]), torch.zeros(1, 10))  # (B, T), (B, V)
    >>> scores[0, 8].item(), int(scores[0].argmax())
    (-inf, 0)
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import xxhash
from rbloom import Bloom

FORMAT = "lmaudit.takedown.memfree.ngram-index"
FORMAT_VERSION = 1
META_FILE = "memfree_index.json"
DEFAULT_MAX_EXACT = 20_000_000
"""kind="auto" indexes up to this many n-gram occurrences exactly (640 MB at n = 6; the
build peaks at about 112 bytes per occurrence, 2.2 GB, as measured in benchmarks/README.md),
and uses Bloom filters beyond (3.6 bytes per occurrence at fp_rate 10⁻³)."""

_INT32_MAX = np.iinfo(np.int32).max
_NGRAMS_NPY, _NGRAMS_BLOOM, _PREFIXES_BLOOM = "ngrams.npy", "ngrams.bloom", "prefixes.bloom"


class NoNgramsError(ValueError):
    """The protected corpus yields no n-gram. ``short`` lists the indices of the sequences
    shorter than n (all of them, when the corpus is not empty)."""

    def __init__(self, message: str, *, short: list[int]):
        super().__init__(message)
        self.short = short


class TokenizerMismatchError(ValueError):
    """An index was built with another tokenizer than the model's: its token ids mean
    other strings, so it would protect nothing."""


def short_sequences(sequences: Sequence[Sequence[int]], n: int) -> list[int]:
    """Indices of the sequences shorter than ``n`` tokens (they contribute no n-gram)."""
    return [i for i, seq in enumerate(sequences) if len(seq) < n]


# ------------------------------------------------------------------------------ hashing
@functools.lru_cache(maxsize=None)
def _multipliers(k: int) -> np.ndarray:
    """k odd 64-bit constants, one per prefix position: the first 8 bytes of
    SHA-256("lmaudit.memfree.key.<j>"), fixed forever (saved indices are sorted by them)."""
    return np.array([int.from_bytes(hashlib.sha256(f"lmaudit.memfree.key.{j}".encode()).digest()[:8], "little") | 1
                     for j in range(k)], dtype=np.uint64)


def _prefix_keys(prefixes: np.ndarray) -> np.ndarray:
    """(M, k) non-negative token ids -> (M,) uint64 keys: sum_j id_j * c_j mod 2**64 with the
    constants of :func:`_multipliers` (position-dependent, so order matters). Vectorised, and
    the same on every machine (wrapping uint64 arithmetic), so saved indices stay valid. Two
    prefixes share a key only by chance; when they do, lookups still answer exactly, because
    they compare the prefixes in full."""
    cols = np.asarray(prefixes).astype(np.uint64, copy=False)  # (M, k)
    return (cols * _multipliers(cols.shape[1])).sum(axis=1, dtype=np.uint64)


def _bloom_hash(key: bytes) -> int:
    """xxh3-128 of an n-gram's (or prefix's) int32 little-endian bytes, as the signed 128-bit
    integer rbloom takes. Stable across processes, so a saved filter can be loaded."""
    h = xxhash.xxh3_128_intdigest(key)
    return h - (1 << 128) if h >= (1 << 127) else h


def _row_bytes(rows: np.ndarray) -> list[bytes]:
    """(M, k) token ids -> M byte strings of k int32 little-endian values each."""
    rows = np.ascontiguousarray(rows, dtype="<i4")
    return rows.view(f"V{4 * rows.shape[1]}").ravel().tolist()


# -------------------------------------------------------------------------------- index
class NgramIndex:
    """The protected n-grams of a corpus (see the module docstring for the two kinds).

    Build it once with :meth:`build`, keep it with :meth:`save`, and :meth:`load` it next to
    the model whose tokenizer made the ids. ``meta`` is what the JSON file next to the
    data records (n, kind, counts, tokenizer fingerprint, false-positive rate, build time,
    size on disk, versions).
    """

    def __init__(self, n: int, kind: str, meta: dict, *, grams: np.ndarray | None = None,
                 bloom: Bloom | None = None, prefix_bloom: Bloom | None = None):
        self.n, self.kind, self.meta = n, kind, meta
        self._grams = grams  # exact: (N, n) int32, sorted by prefix key
        self._keys = _prefix_keys(grams[:, :-1]) if grams is not None else None  # exact: (N,) uint64
        self._bloom, self._prefix_bloom = bloom, prefix_bloom

    # ---------------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        sequences: Sequence[Sequence[int]],
        n: int = 6,
        *,
        tokenizer_fingerprint: str,
        kind: Literal["auto", "exact", "bloom"] = "auto",
        fp_rate: float = 1e-3,
        max_exact: int = DEFAULT_MAX_EXACT,
        allow_empty: bool = False,
        source: str | None = None,
    ) -> "NgramIndex":
        """Index every n-gram of every sequence (never across two sequences).

        Args:
            sequences: Token id sequences of the protected documents, in the tokenisation
                of the model the index will guard (no special tokens unless they can occur
                in generated text). Read twice, so a list or a lazy ``Sequence``, not an
                iterator; the bloom kind holds one sequence at a time.
            n: N-gram length in tokens (6 in the paper); at least 2.
            tokenizer_fingerprint: The tokenizer's fingerprint
                (:meth:`lmaudit.models.base.LanguageModel.tokenizer_fingerprint`); loading
                refuses any other.
            kind: "exact", "bloom", or "auto": exact up to ``max_exact`` n-gram occurrences.
            fp_rate: The Bloom filters' false-positive rate (bloom kind).
            max_exact: See ``kind``.
            allow_empty: Accept a corpus that yields no n-gram (an index that bans nothing).
            source: Free text recorded in the meta, e.g. the corpus path.

        Raises:
            ValueError: n < 2, a bad kind or fp_rate, a token id that is negative or does
                not fit int32 (naming the sequence and position).
            TypeError: ``sequences`` is a one-pass iterator.
            NoNgramsError: The corpus is empty, or every sequence is shorter than n (its
                ``short`` attribute lists them; see also :func:`short_sequences`), unless
                ``allow_empty``.
        """
        if not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"n must be an integer of at least 2, got {n!r}")
        if kind not in ("auto", "exact", "bloom"):
            raise ValueError(f"kind must be 'auto', 'exact' or 'bloom', got {kind!r}")
        if not 0.0 < fp_rate < 1.0:
            raise ValueError(f"fp_rate must lie strictly between 0 and 1, got {fp_rate!r}")
        if not isinstance(tokenizer_fingerprint, str) or not tokenizer_fingerprint:
            raise ValueError("tokenizer_fingerprint must be a non-empty string (the model's tokenizer_fingerprint())")
        if iter(sequences) is sequences:
            raise TypeError("sequences must be a sequence (it is read twice: to size the index, then to fill it), "
                            "not a one-pass iterator; pass a list or a lazy Sequence")
        start = time.perf_counter()
        # First pass: check every id and count, keeping nothing (a Bloom build then holds one
        # document at a time besides its filters).
        documents = tokens = occurrences = 0
        short, max_id = [], -1
        for a in _id_arrays(sequences):
            documents += 1
            tokens += len(a)
            occurrences += max(0, len(a) - n + 1)
            if len(a) < n:
                short.append(documents - 1)
            if len(a):
                max_id = max(max_id, int(a.max()))
        if occurrences == 0 and not allow_empty:
            if not documents:
                raise NoNgramsError("the protected corpus is empty: there is nothing to protect", short=[])
            shown = ", ".join(map(str, short[:10])) + (", ..." if len(short) > 10 else "")
            raise NoNgramsError(f"every one of the {documents} protected sequences is shorter than n={n} tokens "
                                f"(indices {shown}), so no n-gram can be indexed; use a smaller n or longer "
                                f"documents", short=short)
        if kind == "auto":
            kind = "exact" if occurrences <= max_exact else "bloom"
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lmaudit_version": _lmaudit_version(),
            "n": int(n),
            "kind": kind,
            "tokenizer_fingerprint": tokenizer_fingerprint,
            "documents": documents,
            "short_documents": len(short),
            "tokens": tokens,
            "max_token_id": max_id,
            "ngram_occurrences": occurrences,
            "source": source,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        windows = (np.lib.stride_tricks.sliding_window_view(a, n) for a in _id_arrays(sequences) if len(a) >= n)
        if kind == "exact":
            grams = _sorted_unique(np.concatenate([np.zeros((0, n), dtype="<i4"), *windows]))
            index = cls(int(n), kind, meta, grams=grams)
            meta.update(ngrams=len(grams), ngrams_estimated=False, fp_rate=None)
        else:
            # Sized for every occurrence (repeats included), so the real rate is at most fp_rate.
            bloom = Bloom(max(occurrences, 1), fp_rate, _bloom_hash)
            prefix_bloom = Bloom(max(occurrences, 1), fp_rate, _bloom_hash)
            for w in windows:
                bloom.update(_row_bytes(w))
                prefix_bloom.update(_row_bytes(w[:, :-1]))
            index = cls(int(n), kind, meta, bloom=bloom, prefix_bloom=prefix_bloom)
            meta.update(ngrams=int(round(bloom.approx_items)) if occurrences else 0, ngrams_estimated=True,
                        fp_rate=fp_rate, hash="xxh3_128 of the int32 little-endian token bytes",
                        bloom_bits=bloom.size_in_bits, prefix_bloom_bits=prefix_bloom.size_in_bits)
        meta["memory_bytes"] = index.memory_bytes()
        meta["build_seconds"] = round(time.perf_counter() - start, 3)
        return index

    # ------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write the index and its meta (``memfree_index.json``) into ``directory``
        (created if needed); returns the directory. ``meta["bytes_on_disk"]`` counts the
        data files, not the small JSON file itself."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if self.kind == "exact":
            np.save(out / _NGRAMS_NPY, self._grams)
            files = [_NGRAMS_NPY]
        else:
            self._bloom.save(str(out / _NGRAMS_BLOOM))
            self._prefix_bloom.save(str(out / _PREFIXES_BLOOM))
            files = [_NGRAMS_BLOOM, _PREFIXES_BLOOM]
        self.meta["files"] = files
        self.meta["bytes_on_disk"] = sum((out / f).stat().st_size for f in files)
        (out / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path, *, tokenizer_fingerprint: str | None = None) -> "NgramIndex":
        """Read an index written by :meth:`save`.

        Args:
            directory: The folder given to :meth:`save`.
            tokenizer_fingerprint: The fingerprint of the tokenizer that will produce the
                ids checked against the index; None skips the check.

        Raises:
            TokenizerMismatchError: The index was built with another tokenizer.
            FileNotFoundError, ValueError: Not an index folder, or one from a newer format.
        """
        path = Path(directory)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path}: not a MemFree index folder (no {META_FILE})")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{meta_path}: format_version {meta['format_version']} is newer than this lmaudit "
                             f"reads ({FORMAT_VERSION}); upgrade lmaudit")
        if tokenizer_fingerprint is not None and tokenizer_fingerprint != meta["tokenizer_fingerprint"]:
            raise TokenizerMismatchError(
                f"{path}: the MemFree index was built for tokenizer {meta['tokenizer_fingerprint']}, but this "
                f"model's tokenizer is {tokenizer_fingerprint}; its token ids would protect nothing. Rebuild the "
                f"index with this model's tokenizer.")
        n, kind = int(meta["n"]), meta["kind"]
        if kind == "exact":
            grams = np.load(path / _NGRAMS_NPY, allow_pickle=False)
            if grams.ndim != 2 or grams.shape[1] != n:
                raise ValueError(f"{path / _NGRAMS_NPY}: shape {grams.shape}, expected (N, {n})")
            index = cls(n, kind, meta, grams=np.ascontiguousarray(grams, dtype="<i4"))
            if np.any(index._keys[1:] < index._keys[:-1]):  # written by something else: restore the order
                index._grams = _sorted_unique(index._grams)
                index._keys = _prefix_keys(index._grams[:, :-1])
            return index
        if kind == "bloom":
            return cls(n, kind, meta, bloom=Bloom.load(str(path / _NGRAMS_BLOOM), _bloom_hash),
                       prefix_bloom=Bloom.load(str(path / _PREFIXES_BLOOM), _bloom_hash))
        raise ValueError(f"{meta_path}: unknown kind {kind!r}")

    # ----------------------------------------------------------------------- queries
    def memory_bytes(self) -> int:
        """Bytes the index's data takes in memory (arrays or filter bits)."""
        if self.kind == "exact":
            return int(self._grams.nbytes + self._keys.nbytes)
        return int((self._bloom.size_in_bits + self._prefix_bloom.size_in_bits) // 8)

    def contains(self, ngram: Sequence[int]) -> bool:
        """Whether ``ngram`` (n token ids) is protected. The bloom kind answers as the
        processor does (its prefix is in the prefix filter and the n-gram in the n-gram
        filter): never False for a protected n-gram; True for another with probability at
        most about ``fp_rate`` (when its prefix is protected), far less otherwise."""
        ngram = self._check(ngram, self.n, "ngram")
        if self.kind == "bloom":
            return self.may_follow(ngram[:-1]) and _row_bytes(ngram[None])[0] in self._bloom
        rows, tokens = self.banned_pairs(ngram[None, :-1])
        return bool(np.any(tokens == ngram[-1]))

    def may_follow(self, prefix: Sequence[int]) -> bool:
        """Whether some protected n-gram may start with ``prefix`` (n − 1 ids). Exact for the
        exact kind; the bloom kind's prefix filter may answer True wrongly, never False."""
        prefix = self._check(prefix, self.n - 1, "prefix")
        if self.kind == "bloom":
            return _row_bytes(prefix[None])[0] in self._prefix_bloom
        return len(self.banned_pairs(prefix[None])[1]) > 0

    def banned_next(self, prefix: Sequence[int], *, candidates: Sequence[int] | None = None) -> np.ndarray:
        """Sorted token ids that would complete a protected n-gram after ``prefix`` (n − 1 ids).

        The exact kind answers with one lookup and ignores ``candidates``. The bloom kind
        cannot list a prefix's continuations: it tests each candidate (default: every id up
        to the largest in the corpus), and may include false positives.
        """
        prefix = self._check(prefix, self.n - 1, "prefix")
        if self.kind == "exact":
            return np.unique(self.banned_pairs(prefix[None])[1]).astype(np.int64)
        if not self.may_follow(prefix):
            return np.zeros(0, dtype=np.int64)
        cand = np.arange(self.meta["max_token_id"] + 1) if candidates is None else np.asarray(candidates, np.int64)
        head = _row_bytes(prefix[None])[0]
        hits = [int(t) for t in np.unique(cand) if 0 <= t <= _INT32_MAX and head + int(t).to_bytes(4, "little") in self._bloom]
        return np.asarray(hits, dtype=np.int64)

    def banned_pairs(self, prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact kind, batched: for (B, n − 1) prefixes, the (row, token) pairs such that
        ``prefixes[row] + [token]`` is protected, as two int64 arrays. One vectorised search
        for the whole batch; the stored prefixes are compared in full, so a 64-bit key
        collision never bans anything."""
        if self.kind != "exact":
            raise TypeError("banned_pairs needs an exact index; a Bloom filter cannot list continuations")
        prefixes = np.asarray(prefixes, dtype=np.int64)  # (B, n-1)
        q = _prefix_keys(prefixes)  # (B,)
        lo = np.searchsorted(self._keys, q, side="left")
        counts = np.searchsorted(self._keys, q, side="right") - lo
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(q)), counts)  # (total,)
        pos = np.arange(total) + np.repeat(lo - (np.cumsum(counts) - counts), counts)  # each row's run
        same = (self._grams[pos, :-1] == prefixes[rows]).all(axis=1)
        return rows[same], self._grams[pos[same], -1].astype(np.int64)

    def _check(self, ids: Sequence[int], length: int, what: str) -> np.ndarray:
        a = np.asarray(ids, dtype=np.int64).ravel()
        if len(a) != length:
            raise ValueError(f"{what} must have {length} token ids for an index of n={self.n}, got {len(a)}")
        return a

    def __repr__(self) -> str:
        m = self.meta
        return (f"NgramIndex(n={self.n}, kind={self.kind!r}, ngrams={m['ngrams']}{'~' if m['ngrams_estimated'] else ''}, "
                f"documents={m['documents']})")


def _id_arrays(sequences):
    """Each sequence as an int32 little-endian array, checked (ids in [0, 2**31))."""
    for i, seq in enumerate(sequences):
        a = np.asarray(seq, dtype=np.int64).ravel()
        bad = np.flatnonzero((a < 0) | (a > _INT32_MAX))
        if bad.size:
            raise ValueError(f"sequence {i}, position {bad[0]}: token id {a[bad[0]]} is not in [0, 2**31)")
        yield a.astype("<i4")


def _sorted_unique(grams: np.ndarray) -> np.ndarray:
    """Distinct rows of an (N, n) int32 array, ordered by (prefix key, last token): each
    prefix's continuations form one contiguous run that ``searchsorted`` finds."""
    grams = np.ascontiguousarray(grams, dtype="<i4")
    if len(grams) == 0:
        return grams.reshape(0, grams.shape[1])
    keys = _prefix_keys(grams[:, :-1])
    order = np.lexsort((grams[:, -1], keys))
    grams, keys = grams[order], keys[order]
    same_key = keys[1:] == keys[:-1]
    if np.any(same_key & np.any(grams[1:, :-1] != grams[:-1, :-1], axis=1)):
        # Two prefixes share a 64-bit key: order by the full prefix too, so duplicates are adjacent.
        order = np.lexsort((*grams[:, ::-1].T, keys))
        grams = grams[order]
    keep = np.ones(len(grams), dtype=bool)
    keep[1:] = np.any(grams[1:] != grams[:-1], axis=1)
    return np.ascontiguousarray(grams[keep])


def _lmaudit_version() -> str:
    import lmaudit

    return lmaudit.__version__


# ---------------------------------------------------------------------------- processor
class MemFreeProcessor:
    """A logits processor that bans every token completing a protected n-gram.

    Works wherever a Hugging Face logits processor does: ``model.generate(...,
    logits_processor=LogitsProcessorList([memfree]))``, and lmaudit's
    ``LanguageModel.generate(prompts, config, logits_processor=[memfree])``.

    At each step the window is the last n − 1 tokens of each row of ``input_ids``: prompt
    and generated tokens alike, so n-grams straddling the prompt/output boundary are
    blocked. With fewer than n − 1 tokens there is nothing to check. Left padding (what
    batched generation uses) puts pad ids in the window of short prompts; they are treated
    as ordinary tokens, which can only over-block, and only if the corpus itself contains
    the pad id, never under-block.

    Exact kind: every banned token of every row is set to −inf with one batched lookup and
    one scatter per step; greedy decoding then picks exactly what trying candidates in
    score order (ties: lowest id, as argmax) and rejecting protected completions picks,
    and sampling never draws a banned token.

    Bloom kind: rows whose prefix the prefix filter rejects (most rows, outside copied
    text) cost one probe. For the others, candidates are tested in score order (ties:
    lowest id) until ``top_clean`` of them pass, or ``max_candidates`` have been tested;
    those that fail are set to −inf. Untested candidates are left alone, so the guarantee
    covers greedy decoding (``top_clean=1``) and top-k sampling with ``top_clean >= k``;
    for top-p or plain sampling raise ``top_clean`` (up to the vocabulary size) or use the
    exact kind. A false positive of the filter bans a harmless token (rate ``fp_rate``).

    If every candidate of a row would be banned (pathological), the row is left unchanged
    and counted in ``stats()["rows_all_banned"]``.

    Args:
        index: The protected n-grams.
        top_clean: Bloom kind: how many passing candidates to find per row and step.
        max_candidates: Bloom kind: most candidates tested per row and step (None: no
            bound). With a bound, greedy decoding may emit a protected n-gram once the first
            ``max_candidates`` candidates all fail.
    """

    #: Engines (:mod:`lmaudit.engines`) send each worker a copy of the processors: the counters
    #: of :meth:`stats`, which the caller reads after ``generate`` (takedown evaluation reports
    #: them as ``filter_stats``), would stay at zero here, silently.
    portable = False
    portable_reason = ("MemFree counts its interventions in the processor (stats(), read after generation), and an "
                       "engine's workers would count on copies that never come back")

    def __init__(self, index: NgramIndex, *, top_clean: int = 1, max_candidates: int | None = None):
        if top_clean < 1:
            raise ValueError(f"top_clean must be at least 1, got {top_clean}")
        if max_candidates is not None and max_candidates < top_clean:
            raise ValueError(f"max_candidates ({max_candidates}) must be at least top_clean ({top_clean}) or None")
        self.index, self.top_clean, self.max_candidates = index, top_clean, max_candidates
        self.reset_stats()

    def reset_stats(self) -> None:
        self._stats = dict(steps=0, rows_checked=0, rows_with_bans=0, argmax_rejected=0, tokens_banned=0,
                           candidates_tested=0, rows_all_banned=0)

    def stats(self) -> dict:
        """Counters since construction or :meth:`reset_stats`:

        - steps: calls (decoding steps, summed over batches);
        - rows_checked: rows that had n − 1 tokens to look up;
        - rows_with_bans: rows where at least one token was banned;
        - argmax_rejected: rows whose highest-scoring token was banned (where greedy
          decoding was changed);
        - tokens_banned: tokens set to −inf, summed over rows and steps;
        - candidates_tested: bloom kind: candidates tested one by one (0 for exact);
        - rows_all_banned: rows left unchanged because every candidate was banned.
        """
        return dict(self._stats)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        s = self._stats
        s["steps"] += 1
        k = self.index.n - 1
        if input_ids.shape[1] < k:
            return scores
        prefixes = input_ids[:, -k:].cpu().numpy().astype(np.int64)  # (B, n-1)
        s["rows_checked"] += len(prefixes)
        if self.index.kind == "exact":
            rows, tokens = self.index.banned_pairs(prefixes)
        else:
            rows, tokens = self._bloom_bans(prefixes, scores)
        inside = tokens < scores.shape[1]  # ids beyond the model's vocabulary cannot be generated anyway
        rows, tokens = rows[inside], tokens[inside]
        if len(rows) == 0:
            return scores
        device = scores.device
        old_arg = _argmax(scores)  # (B,) numpy
        rejected = np.unique(rows[tokens == old_arg[rows]])  # rows whose argmax is banned
        if len(rejected):  # ...unless the row held nothing but -inf to begin with
            top = scores[torch.as_tensor(rejected, device=device), torch.as_tensor(old_arg[rejected], device=device)]
            rejected = rejected[(top > float("-inf")).cpu().numpy()]
        out = scores.clone()  # the caller's tensor (HF may keep it as the raw logits) stays as it was
        out[torch.as_tensor(rows, device=device), torch.as_tensor(tokens, device=device)] = float("-inf")
        dead = np.zeros(0, dtype=np.int64)
        if len(rejected):
            # Only a row whose argmax was banned can have lost every candidate.
            lost = (out.amax(dim=1) == float("-inf")).cpu().numpy()  # (B,)
            dead = rejected[lost[rejected]]
            if len(dead):
                d = torch.as_tensor(dead, device=device)
                out[d] = scores[d]
        kept = ~np.isin(rows, dead)
        s["rows_all_banned"] += len(dead)
        s["rows_with_bans"] += len(np.unique(rows[kept]))
        s["tokens_banned"] += int(kept.sum())
        s["argmax_rejected"] += len(rejected) - len(dead)
        return out

    def _bloom_bans(self, prefixes: np.ndarray, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(rows, tokens) failing the Bloom filter, testing candidates in score order."""
        index = self.index
        fits = np.all((prefixes >= 0) & (prefixes <= _INT32_MAX), axis=1)  # others match no n-gram
        heads = _row_bytes(np.where(fits[:, None], prefixes, 0))
        check = [i for i, h in enumerate(heads) if fits[i] and h in index._prefix_bloom]
        if not check:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if scores.device.type == "cpu" and scores.dtype == torch.float32:
            values = scores.detach().numpy()[check]  # (h, V)
        else:
            values = scores[check].detach().float().cpu().numpy()
        rows, tokens = [], []
        bloom, limit = index._bloom, self.max_candidates
        for row, z in zip(check, values):
            head, passed, tested = heads[row], 0, 0
            for token in _ranked(z):
                if limit is not None and tested >= limit:
                    break
                tested += 1
                if head + int(token).to_bytes(4, "little") in bloom:
                    rows.append(row)
                    tokens.append(int(token))
                else:
                    passed += 1
                    if passed >= self.top_clean:
                        break
            self._stats["candidates_tested"] += tested
        return np.asarray(rows, dtype=np.int64), np.asarray(tokens, dtype=np.int64)


def _argmax(x: torch.Tensor) -> np.ndarray:
    """First index of each row's maximum (as greedy decoding picks it), as numpy. On the CPU,
    numpy's argmax is about 20 times faster than single-threaded torch's."""
    x = x.detach()
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return x.numpy().argmax(axis=1)
    return x.argmax(dim=1).cpu().numpy()


def _ranked(z: np.ndarray, *, levels: int = 4, first: int = 16):
    """Token ids of the scores ``z`` (V,) that are above −inf, best first, ties by lowest id
    (the order argmax resolves them), produced lazily: the best ``levels`` score levels one
    at a time (a few passes over V each; the walk usually stops there), then growing chunks
    by partial sorts."""
    w = z
    for _ in range(levels):
        top = w.max()
        if not top > -np.inf:
            return
        ids = np.flatnonzero(w == top)
        yield from ids
        if w is z:
            w = z.copy()
        w[ids] = -np.inf
    remaining = np.flatnonzero(w > -np.inf)
    m = first
    while remaining.size:
        vals = w[remaining]
        if remaining.size > m:
            take = vals >= np.partition(vals, remaining.size - m)[remaining.size - m]  # the m best, ties included
        else:
            take = np.ones(remaining.size, dtype=bool)
        ids = remaining[take]
        yield from ids[np.lexsort((ids, -vals[take]))]
        remaining = remaining[~take]
        m *= 4
