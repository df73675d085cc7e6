"""Near-duplicates: MinHash-LSH candidates (rensa), every one verified by exact Jaccard.

Two questions: which documents of a corpus are near-copies of each other
(:func:`find_near_duplicates`: clusters), and how many near-copies of each of my documents a
corpus holds (:func:`near_copies`: the duplication count that predicts memorization, written
back into the rows as a ``duplication`` field that ``lmaudit extract``, ``copying``, ``acr`` and
``knowledge`` break their rates down by).

    >>> from lmaudit.data import Record
    >>> docs = [Record(id=i, text=t, source="-", line=i) for i, t in enumerate([
    ...     "the quick brown fox jumps over the lazy dog near the river bank today",
    ...     "The quick brown fox jumps over the lazy dog near the river bank, today!",
    ...     "a completely different sentence about something else entirely here"], start=1)]
    >>> found = find_near_duplicates(docs, threshold=0.8)
    >>> [(c.ids, c.min_jaccard) for c in found.clusters]
    [([1, 2], 1.0)]

Shingles: word 5-grams (``shingle``) of the text after NFKC normalisation and lowercasing,
words being the maximal runs of characters other than ASCII whitespace, control characters
and ASCII punctuation (:func:`words`). Words rather than characters because a near-copy in a
training corpus is the same text re-wrapped, re-punctuated or re-cased, and 5 words because
that is what the deduplication literature settled on for web text (Lee et al. 2022,
"Deduplicating Training Data Makes Language Models Better": word 5-grams, Jaccard 0.8):
shorter shingles make unrelated texts on the same topic look alike, longer ones let one
changed word hide five shingles. NFKC folds compatibility forms (full-width letters,
ligatures, non-breaking spaces) that a scraper or an editor changes without changing the
text. Punctuation is a separator, so "winter." and "winter" are one word.

Documents with fewer words than a shingle (but at least one) have one shingle, their whole
word sequence: a short text still matches its exact copy, and nothing else (any other set
shares at most that one shingle). Documents with no word at all (empty, or only spaces and
punctuation) have no shingle and no Jaccard with anything: they are never near-duplicates,
and are counted (``n_empty``, their ids listed), never dropped silently.

MinHash-LSH: rensa's R-MinHash (``num_perm`` values, 128 by default) of each document's
shingles, then ``bands`` bands of ``rows`` values: two documents become a candidate pair when
all the values of at least one band agree, which for a pair at Jaccard ``s`` happens with
probability ``1 - (1 - s^rows)^bands`` (the S-curve). :func:`choose_bands` takes the longest
bands (the fewest chance candidates) that still catch a pair at exactly the threshold with
probability at least 0.95, using as many bands as ``num_perm`` allows: for 0.8 and 128
values, 18 bands of 7 rows (0.986 at s = 0.8, 0.999992 at 0.9, 0.400 at 0.6). Missed pairs
are the only error left (every candidate is verified, so false positives only cost time); the
S-curve is in the results. When no banding reaches 0.95 (few values, or a low threshold:
``num_perm=1`` at 0.8 gives 0.8, 128 values at 0.01 give 0.72) the most sensitive one, bands
of one row, is used and :attr:`LSHParams.warning` says so; the same warning is given for
``bands`` passed in that fall short.

Verification: every candidate pair's Jaccard is computed exactly on the sets of shingles
(tuples of words, not their hashes), and only pairs at or above the threshold are kept.
Clusters are the connected components of verified pairs (so two members of one cluster may
be below the threshold with each other, joined through a third). Documents with the same
word sequence are merged before LSH (they are copies, Jaccard 1 by construction; this keeps a
text repeated m times from costing m²/2 candidate pairs) and counted separately.

Speed: words are found and hashed with numpy over the UTF-8 bytes of many documents at once
(a Python ``str.split`` per document runs at about 40 MiB/s and was the bottleneck); rensa
takes the flat array of 64-bit shingle hashes. Banding is done here in numpy over rensa's
digest matrix (rensa's ``RMinHashLSH`` returns candidate keys only for ``RMinHash`` objects,
one Python call each, not for matrix rows). Measured with ``benchmarks/bench_dedup.py`` on the
51.7 MiB of testbed biographies bench_corpus_index.py generates, one core, MiB of text per CPU
second: rensa's MinHash on the shingle hashes 314; the numpy normalisation and shingling 106;
copying the digests out of rensa (it hands them out only as lists of Python ints) 55; all of
the sketch 29; all of :func:`find_near_duplicates` 19 (with 5% planted near-copies: 14, and
7,495 of the 7,500 planted pairs found, all at Jaccard >= 0.8). datasketch's MinHash on the
same shingles: 2.9, 2.4 with its Python shingling. :func:`near_copies` sketches the corpus
again (and ``lmaudit dedup --queries`` runs both).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from lmaudit.data import DataError, Record

SHINGLE = 5
NUM_PERM = 128
MIN_RECALL_AT_THRESHOLD = 0.95
# ASCII whitespace and control characters (0x00-0x20, 0x7f) and ASCII punctuation.
_SEPARATORS = bytes(range(0x21)) + b"\x7f" + b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_SPLIT = re.compile("[" + re.escape(_SEPARATORS.decode("ascii")) + "]+")
_IS_SEP = np.zeros(256, bool)
_IS_SEP[list(_SEPARATORS) + [0xFF]] = True

_M64 = (1 << 64) - 1
_BYTE_BASE = 0x100000001B3  # odd, so invertible modulo 2^64
_CHUNK = 1 << 22  # bytes of text hashed at once: keeps numpy's arrays in cache and memory flat
_POWERS: list[np.ndarray] = []  # [base^i, base^-i] modulo 2^64 for i = 0.., grown on demand


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """base^i and base^-i modulo 2^64 for i < n (numpy's uint64 arithmetic wraps)."""
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, _CHUNK + 1)
        pow_, ipow = np.full(size, _BYTE_BASE, np.uint64), np.full(size, pow(_BYTE_BASE, -1, 1 << 64), np.uint64)
        pow_[0] = ipow[0] = 1
        with np.errstate(over="ignore"):
            _POWERS[:] = [np.cumprod(pow_, dtype=np.uint64), np.cumprod(ipow, dtype=np.uint64)]
    return _POWERS[0][:n], _POWERS[1][:n]


# One odd multiplier per word position in a shingle (and per row in a band).
_POSITION = np.random.default_rng(20240616).integers(1, 1 << 63, size=1024, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def normalize(text: str) -> str:
    """NFKC, then lowercase: the text shingles are cut from."""
    return unicodedata.normalize("NFKC", text).lower()


def words(text: str) -> list[str]:
    """The words of ``text``: runs of characters other than ASCII whitespace, controls and
    punctuation, after :func:`normalize`.

    >>> words("Ｆｕｌｌ-width, “quoted” text.")
    ['full', 'width', '“quoted”', 'text']
    """
    return [w for w in _SPLIT.split(normalize(text)) if w]


def shingles(text: str, k: int = SHINGLE) -> set[tuple[str, ...]]:
    """The set of word ``k``-grams of ``text``; one shingle (all its words) when it has fewer
    than ``k`` words; empty when it has none.

    >>> sorted(shingles("a b c a b c", 3))
    [('a', 'b', 'c'), ('b', 'c', 'a'), ('c', 'a', 'b')]
    >>> shingles("Hi there", 5), shingles("...", 5)
    ({('hi', 'there')}, set())
    """
    w = words(text)
    if len(w) < k:
        return {tuple(w)} if w else set()
    return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)}


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity of two sets (0 when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass(frozen=True)
class LSHParams:
    """How signatures are banded.

    Attributes:
        num_perm: MinHash values per document.
        bands: Bands compared; a pair sharing any whole band is a candidate.
        rows: Values per band (``bands * rows <= num_perm``; the rest are unused).
        threshold: The Jaccard the bands were chosen for.
    """

    num_perm: int
    bands: int
    rows: int
    threshold: float

    def p_candidate(self, s: float) -> float:
        """Probability that a pair at Jaccard ``s`` becomes a candidate: ``1 - (1 - s^r)^b``."""
        return 1.0 - (1.0 - s ** self.rows) ** self.bands

    @property
    def warning(self) -> str | None:
        """Why this banding misses more than 5% of the pairs at the threshold, or None when it
        catches them with probability at least :data:`MIN_RECALL_AT_THRESHOLD`."""
        p = self.p_candidate(self.threshold)
        if p >= MIN_RECALL_AT_THRESHOLD:
            return None
        best = LSHParams(self.num_perm, self.num_perm, 1, self.threshold).p_candidate(self.threshold)
        head = (f"a pair at Jaccard {self.threshold} becomes a candidate with probability {p:.3f} only "
                f"({self.bands} bands of {self.rows} of {self.num_perm} values), below {MIN_RECALL_AT_THRESHOLD}: "
                "more near-duplicate pairs are missed")
        if best < MIN_RECALL_AT_THRESHOLD:
            return head + (f"; no banding of {self.num_perm} values reaches {MIN_RECALL_AT_THRESHOLD} at this "
                           "threshold (raise num_perm or the threshold)")
        return head + f"; more bands of fewer rows would ({self.num_perm} bands of 1 give {best:.3f})"

    def describe(self) -> dict:
        curve = {f"{s:.2f}": round(self.p_candidate(s), 6) for s in (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)}
        out = {"num_perm": self.num_perm, "bands": self.bands, "rows": self.rows,
               "p_candidate_at_threshold": round(self.p_candidate(self.threshold), 6),
               "s_curve": curve, "formula": "P(candidate | Jaccard s) = 1 - (1 - s^rows)^bands"}
        if self.warning:
            out["warning"] = self.warning
        return out


def choose_bands(threshold: float, num_perm: int = NUM_PERM, *, bands: int | None = None) -> LSHParams:
    """The LSH banding for ``threshold``: ``bands`` if given (``rows = num_perm // bands``), else
    the largest ``rows`` (fewest chance candidates) whose ``bands = num_perm // rows`` still
    catch a pair at exactly the threshold with probability >= 0.95. When none does, bands of
    one row, the most sensitive banding there is (``(1 - s)^b <= (1 - s^r)^(b/r)``), with its
    :attr:`LSHParams.warning`.

    >>> p = choose_bands(0.8, 128); (p.bands, p.rows, round(p.p_candidate(0.8), 3))
    (18, 7, 0.986)
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    if bands is not None:
        if not 1 <= bands <= num_perm:
            raise ValueError(f"bands must be between 1 and num_perm ({num_perm}), got {bands}")
        return LSHParams(num_perm, bands, num_perm // bands, threshold)
    for rows in range(num_perm, 0, -1):
        p = LSHParams(num_perm, num_perm // rows, rows, threshold)
        if p.p_candidate(threshold) >= MIN_RECALL_AT_THRESHOLD:
            return p
    return LSHParams(num_perm, num_perm, 1, threshold)  # below 0.95 too: .warning says so


# ----------------------------------------------------------------------------- hashing


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole word."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def _word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash of every word of ``texts`` in order, number of words of each text).

    A text's bytes are hashed as a polynomial in the byte position, so one cumulative sum over
    the whole chunk gives every word's hash: ``(S[end] - S[start]) * base^-start``.
    """
    # 0xFF never occurs in UTF-8: it ends each text, so no word spans two.
    raw = b"\xff".join(t.encode("utf-8", "surrogatepass") for t in texts) + b"\xff"
    b = np.frombuffer(raw, np.uint8)
    is_word = ~_IS_SEP[b]
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
    if is_word[0]:
        edges = np.concatenate(([0], edges))
    starts, ends = edges[0::2], edges[1::2]  # the bytes end with 0xFF: every word ends
    pow_, ipow = _powers(len(b))
    with np.errstate(over="ignore"):
        cum = np.zeros(len(b) + 1, np.uint64)
        np.cumsum((b.astype(np.uint64) + np.uint64(1)) * pow_, out=cum[1:])
        hashes = _mix((cum[ends] - cum[starts]) * ipow[starts])
    counts = np.diff(np.searchsorted(starts, np.flatnonzero(b == 0xFF)), prepend=0)
    return hashes, counts


def _shingle_hashes(hashes: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every shingle, shingles of each text): windows of ``k`` word hashes inside one
    text, or the whole text for a text of 1 to k-1 words; tagged with their length."""
    n = len(counts)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    n_shingles = np.where(counts >= k, counts - k + 1, (counts > 0).astype(counts.dtype))
    total = int(n_shingles.sum())
    # Start (in `hashes`) and length of each shingle.
    text_of = np.repeat(np.arange(n), n_shingles)
    offset = np.arange(total) - np.repeat(np.cumsum(n_shingles) - n_shingles, n_shingles)
    start = first[text_of] + offset
    length = np.minimum(counts[text_of], k)
    out = _POSITION[k + 1] * length.astype(np.uint64)
    padded = np.concatenate((hashes, np.zeros(k, np.uint64)))
    with np.errstate(over="ignore"):
        for j in range(k):
            out += np.where(j < length, padded[start + j], np.uint64(0)) * _POSITION[j]
    return _mix(out), n_shingles


def _chunks(texts: Sequence[str]) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of ``texts`` of at most about :data:`_CHUNK` bytes (one text at least)."""
    start, size = 0, 0
    for i, t in enumerate(texts):
        n = 4 * len(t) + 1  # UTF-8 bytes are at most 4 per character
        if i > start and size + n > _CHUNK:
            yield start, i
            start, size = i, 0
        size += n
    if start < len(texts):
        yield start, len(texts)


@dataclass
class _Sketch:
    signatures: np.ndarray  # (n, num_perm) uint32; rows of texts without shingles are zero
    n_words: np.ndarray  # (n,)
    sequence: np.ndarray  # (n,) uint64 hash of the word sequence (copies have equal ones)


def _digests(matrix, num_perm: int) -> np.ndarray:
    """rensa's digest matrix as a (rows, num_perm) uint32 array. rensa hands it out only as
    lists of Python ints (``to_rows``), which costs several times the MinHash itself; an
    ``array.array`` fed from the flattened lists is the cheapest copy found."""
    flat = array("I", itertools.chain.from_iterable(matrix.to_rows()))
    return np.frombuffer(flat, dtype=np.uint32).reshape(-1, num_perm)


def _sketch(texts: Sequence[str], k: int, num_perm: int, seed: int) -> _Sketch:
    """Signatures, word counts and word-sequence hashes of ``texts``, a chunk at a time."""
    from rensa import RMinHash

    sigs, counts_all, seqs = [], [], []
    for a, b in _chunks(texts):
        hashes, counts = _word_hashes([normalize(t) for t in texts[a:b]])
        sh, n_sh = _shingle_hashes(hashes, counts, k)
        sig = np.zeros((b - a, num_perm), np.uint32)
        has = n_sh > 0
        if has.any():
            offsets = np.concatenate(([0], np.cumsum(n_sh[has]))).astype(np.uint64)
            matrix = RMinHash.digest_matrix_from_flat_token_hashes(sh, offsets, num_perm, seed)
            sig[has] = _digests(matrix, num_perm)
        # The sequence hash: the polynomial of the word hashes, per text (and its length).
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        with np.errstate(over="ignore"):
            pos = np.arange(len(hashes)) - np.repeat(first, counts)
            terms = hashes * _powers(len(hashes))[0][pos]
            seq = np.zeros(b - a, np.uint64)
            nonempty = counts > 0
            if nonempty.any():
                seq[nonempty] = np.add.reduceat(terms, first[nonempty], dtype=np.uint64)
            seq = _mix(seq + counts.astype(np.uint64) * _POSITION[0])
        sigs.append(sig)
        counts_all.append(counts)
        seqs.append(seq)
    return _Sketch(np.concatenate(sigs), np.concatenate(counts_all), np.concatenate(seqs))


def _band_keys(signatures: np.ndarray, lsh: LSHParams) -> np.ndarray:
    """(bands, n) uint64: one key per band of each signature (equal bands, equal keys)."""
    keys = np.zeros((lsh.bands, len(signatures)), np.uint64)
    with np.errstate(over="ignore"):
        for band in range(lsh.bands):
            part = signatures[:, band * lsh.rows : (band + 1) * lsh.rows].astype(np.uint64)
            keys[band] = _mix((part * _POSITION[: lsh.rows]).sum(axis=1, dtype=np.uint64) + np.uint64(band))
    return keys


# ----------------------------------------------------------------------------- grouping


def _check_ids(records: Sequence[Record]) -> None:
    seen: dict[str, Record] = {}
    for r in records:
        key = str(r.id)
        if key in seen:
            first = seen[key]
            raise DataError(f"{r.source}:{r.line}: duplicate id {r.id!r} (also {first.source}:{first.line})")
        seen[key] = r


class _Shingled:
    """Exact shingle sets and word sequences of records, computed when first asked for."""

    def __init__(self, records: Sequence[Record], k: int):
        self.records, self.k = records, k
        self._sets: dict[int, set] = {}
        self._words: dict[int, list[str]] = {}

    def words(self, i: int) -> list[str]:
        if i not in self._words:
            self._words[i] = words(self.records[i].text)
        return self._words[i]

    def set(self, i: int) -> set:
        if i not in self._sets:
            w, k = self.words(i), self.k
            self._sets[i] = {tuple(w[j : j + k]) for j in range(len(w) - k + 1)} if len(w) >= k else {tuple(w)}
        return self._sets[i]


def _copy_groups(sketch: _Sketch, shingled: _Shingled, eligible: np.ndarray) -> dict[int, list[int]]:
    """{representative: [its exact copies, itself first]}: eligible documents grouped by word
    sequence (equal hashes, then compared word by word)."""
    groups: dict[int, list[int]] = {}
    order = np.flatnonzero(eligible)
    by_hash: dict[int, list[int]] = {}
    for i in order.tolist():
        by_hash.setdefault(int(sketch.sequence[i]), []).append(i)
    for members in by_hash.values():
        reps: list[int] = []
        for i in members:
            for r in reps:  # nearly always one: a sequence-hash collision makes two
                if shingled.words(r) == shingled.words(i):
                    groups[r].append(i)
                    break
            else:
                reps.append(i)
                groups[i] = [i]
    return groups


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


# ----------------------------------------------------------------------------- results


@dataclass
class Cluster:
    """Documents joined by verified near-duplicate pairs.

    Attributes:
        ids: The members' ids, in input order.
        min_jaccard, max_jaccard: The lowest and highest exact Jaccard of the verified pairs
            that join them (exact copies count as pairs at 1.0).
        n_pairs: Verified pairs inside the cluster (copies' pairs included).
    """

    ids: list
    min_jaccard: float
    max_jaccard: float
    n_pairs: int
    index: list[int] = field(default_factory=list, repr=False)  # positions in the input


@dataclass
class DedupResult:
    """What :func:`find_near_duplicates` found.

    Attributes:
        clusters: Largest first, then by first member.
        n_documents: Documents read.
        empty_ids: Documents without a word (no shingle; never near-duplicates).
        n_short: Documents with 1 to ``shingle - 1`` words (one shingle: their whole text).
        n_exact_copies: Documents whose word sequence equals an earlier document's.
        n_candidates: Distinct candidate pairs from LSH (among distinct word sequences).
        n_verified: Candidates at or above the threshold by exact Jaccard.
        lsh: The banding used.
        shingle: Words per shingle.
        seed: rensa's seed.
    """

    clusters: list[Cluster]
    n_documents: int
    empty_ids: list
    n_short: int
    n_exact_copies: int
    n_candidates: int
    n_verified: int
    lsh: LSHParams
    shingle: int
    seed: int

    @property
    def n_rejected(self) -> int:
        """Candidates that verification rejected (false positives of LSH)."""
        return self.n_candidates - self.n_verified

    @property
    def n_in_clusters(self) -> int:
        return sum(len(c.ids) for c in self.clusters)


def _prepare(records: Sequence[Record], *, threshold: float, num_perm: int, shingle: int, bands: int | None,
             seed: int) -> tuple[LSHParams, _Sketch]:
    if shingle < 1:
        raise ValueError(f"shingle must be at least 1 word, got {shingle}")
    if shingle > len(_POSITION) - 2:
        raise ValueError(f"shingle must be at most {len(_POSITION) - 2} words, got {shingle}")
    lsh = choose_bands(threshold, num_perm, bands=bands)
    _check_ids(records)
    return lsh, _sketch([r.text for r in records], shingle, num_perm, seed)


def find_near_duplicates(records: Sequence[Record], *, threshold: float = 0.8, num_perm: int = NUM_PERM,
                         shingle: int = SHINGLE, bands: int | None = None, seed: int = 0) -> DedupResult:
    """Clusters of near-duplicate documents: exact Jaccard of their shingle sets >= ``threshold``.

    Args:
        records: The corpus; ids must be unique (across files too).
        threshold: Jaccard at or above which two documents are near-duplicates.
        num_perm: MinHash values per document.
        shingle: Words per shingle.
        bands: LSH bands (default: :func:`choose_bands`).
        seed: rensa's hashing seed.

    Raises:
        DataError: Two records share an id (naming both files and lines).
        ValueError: A parameter is out of range.
    """
    lsh, sketch = _prepare(records, threshold=threshold, num_perm=num_perm, shingle=shingle, bands=bands, seed=seed)
    shingled = _Shingled(records, shingle)
    eligible = sketch.n_words > 0
    groups = _copy_groups(sketch, shingled, eligible)
    reps = np.array(sorted(groups), dtype=np.int64)
    candidates: set[tuple[int, int]] = set()
    keys = _band_keys(sketch.signatures[reps], lsh) if len(reps) else np.zeros((lsh.bands, 0), np.uint64)
    for band in keys:
        order = np.argsort(band, kind="stable")
        sorted_keys = band[order]
        bounds = np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1, [len(order)]))
        shared = np.flatnonzero(np.diff(bounds) > 1)  # buckets of 2 or more documents: every pair in one
        for lo, hi in zip(bounds[shared].tolist(), bounds[shared + 1].tolist()):
            members = reps[np.sort(order[lo:hi])].tolist()
            candidates.update((a, b) for x, a in enumerate(members) for b in members[x + 1:])
    uf = _UnionFind(len(records))
    edges: list[tuple[int, int, float]] = []
    for a, b in sorted(candidates):
        j = jaccard(shingled.set(a), shingled.set(b))
        if j >= threshold:
            edges.append((a, b, j))
            uf.union(a, b)
    n_verified = len(edges)
    for rep, members in groups.items():
        for m in members[1:]:
            edges.append((rep, m, 1.0))  # an exact copy, joined to its first occurrence
            uf.union(rep, m)
    by_root: dict[int, list[int]] = {}
    for i in np.flatnonzero(eligible).tolist():
        by_root.setdefault(uf.find(i), []).append(i)
    joined: dict[int, list[float]] = {}
    for a, _, j in edges:
        joined.setdefault(uf.find(a), []).append(j)
    clusters = [Cluster(ids=[records[i].id for i in members], min_jaccard=min(joined[root]),
                        max_jaccard=max(joined[root]), n_pairs=len(joined[root]), index=members)
                for root, members in by_root.items() if len(members) > 1]
    clusters.sort(key=lambda c: (-len(c.ids), c.index[0]))
    return DedupResult(clusters=clusters, n_documents=len(records),
                       empty_ids=[records[i].id for i in np.flatnonzero(~eligible).tolist()],
                       n_short=int(((sketch.n_words > 0) & (sketch.n_words < shingle)).sum()),
                       n_exact_copies=sum(len(m) - 1 for m in groups.values()), n_candidates=len(candidates),
                       n_verified=n_verified, lsh=lsh, shingle=shingle, seed=seed)


@dataclass
class QueryCopies:
    """The near-copies of one query document in the corpus.

    Attributes:
        id: The query's id.
        count: Corpus documents with exact Jaccard >= threshold to the query (a query that is
            itself in the corpus counts that copy: the count is how many times the text is
            there); None for a query without a word (``error`` says so).
        ids: The ``top`` most similar of them, highest Jaccard first (then corpus order).
        jaccards: Their exact Jaccard, same order.
        n_candidates: Distinct corpus word sequences LSH proposed.
        n_rejected: Of those, how many verification rejected.
        error: Why there is no count.
    """

    id: Any
    count: int | None
    ids: list = field(default_factory=list)
    jaccards: list[float] = field(default_factory=list)
    n_candidates: int = 0
    n_rejected: int = 0
    error: str | None = None


def near_copies(queries: Sequence[Record], corpus: Sequence[Record], *, threshold: float = 0.8,
                num_perm: int = NUM_PERM, shingle: int = SHINGLE, bands: int | None = None, seed: int = 0,
                top: int = 10) -> list[QueryCopies]:
    """For each query, the corpus documents that are near-copies of it (exact Jaccard of the
    shingle sets >= ``threshold``): their count, the duplication count of the query's text.

    Args:
        queries: The documents to count; ids unique among themselves.
        corpus: The corpus; ids unique among themselves (a query may share an id with it).
        top: How many of the near-copies' ids to keep per query.
        threshold, num_perm, shingle, bands, seed: As in :func:`find_near_duplicates`.

    Returns:
        One :class:`QueryCopies` per query, in order.

    Raises:
        DataError: Duplicate ids within the queries or within the corpus.
    """
    lsh, sk = _prepare(corpus, threshold=threshold, num_perm=num_perm, shingle=shingle, bands=bands, seed=seed)
    _, qsk = _prepare(queries, threshold=threshold, num_perm=num_perm, shingle=shingle, bands=bands, seed=seed)
    cshingled, qshingled = _Shingled(corpus, shingle), _Shingled(queries, shingle)
    groups = _copy_groups(sk, cshingled, sk.n_words > 0)
    reps = np.array(sorted(groups), dtype=np.int64)
    asked = np.flatnonzero(qsk.n_words > 0)
    proposed: list[set[int]] = [set() for _ in queries]
    if len(reps) and len(asked):
        ckeys, qkeys = _band_keys(sk.signatures[reps], lsh), _band_keys(qsk.signatures[asked], lsh)
        for band in range(lsh.bands):
            order = np.argsort(ckeys[band], kind="stable")
            sorted_keys = ckeys[band][order]
            lo = np.searchsorted(sorted_keys, qkeys[band], side="left")
            hi = np.searchsorted(sorted_keys, qkeys[band], side="right")
            for q in np.flatnonzero(hi > lo).tolist():
                proposed[asked[q]].update(reps[order[lo[q]:hi[q]]].tolist())
    out = []
    for qi, rec in enumerate(queries):
        if qsk.n_words[qi] == 0:
            out.append(QueryCopies(id=rec.id, count=None, error=f"{rec.source}:{rec.line}: the text has no word "
                                   "(empty, or only spaces and punctuation): no shingle, near-copies undefined"))
            continue
        found = []
        for rep in sorted(proposed[qi]):
            j = jaccard(qshingled.set(qi), cshingled.set(rep))
            if j >= threshold:
                found += [(j, i) for i in groups[rep]]
        n_kept = sum(1 for rep in proposed[qi] if any(i == rep for _, i in found))
        found.sort(key=lambda x: (-x[0], x[1]))
        out.append(QueryCopies(id=rec.id, count=len(found), ids=[corpus[i].id for _, i in found[:top]],
                               jaccards=[j for j, _ in found[:top]], n_candidates=len(proposed[qi]),
                               n_rejected=len(proposed[qi]) - n_kept))
    return out


def annotated_rows(queries: Sequence[Record], found: Sequence[QueryCopies], *, text_field: str = "text",
                   id_field: str = "id", count_field: str = "duplication") -> list[dict]:
    """The query rows as they were read (id, text, their other fields) plus ``count_field``:
    the near-copy count, for ``lmaudit extract --data`` and the other commands that break their
    rates down by ``duplication``. A query without a count (no word) keeps its row without
    the field: those commands then leave it out of the breakdown, not out of the run.

    Raises:
        DataError: A query row already has ``count_field`` (naming file, line and field):
            it is never overwritten.
    """
    for r in queries:
        if count_field in r.meta or count_field in (text_field, id_field):
            raise DataError(f"{r.source}:{r.line}: field {count_field!r} already exists in the query rows; "
                            "choose another name for the count (--count-field)")
    rows = []
    for r, f in zip(queries, found):
        row = {id_field: r.id, text_field: r.text, **r.meta}
        if f.count is not None:
            row[count_field] = f.count
        rows.append(row)
    return rows
