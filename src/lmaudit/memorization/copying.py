"""Literal copying metrics for any model's outputs: pure functions, text in, numbers out.

Definitions (CoTaEval, CopyBench, MUSE; see REFERENCE.md §5), with lmaudit's choices:
- ROUGE (Lin 2004): texts lowercased, every non-alphanumeric character a separator, as
  Google's ``rouge_score`` tokenises; ROUGE-1 on unigram counts, ROUGE-L on the longest
  common subsequence of words. Optional Porter stemming (needs ``nltk``).
- ``lcs_chars`` / ``lcs_words``: the true longest common *substring* (contiguous), in
  characters and in whitespace-separated words, case-sensitive: verbatim copying.
- ``acs_words``: output words inside verbatim runs of at least ``min_run`` words found in
  the reference (overlapping runs counted once). CoTaEval's ACS(word) differs in two ways:
  it lowercases words and strips their punctuation first, and it keeps runs greedily by
  start position, dropping a run that overlaps one already kept, so where runs overlap it
  counts fewer words ("a b c d e f" against "a b c d x c d e f": runs "a b c d" and
  "c d e f"; 6 words here, 4 there). On disjoint runs of identical words the two agree.
- ``levenshtein_sim``: 1 − edit distance / length of the longer text, in [0, 1].
- ``minhash_jaccard``: MinHash estimate of the Jaccard similarity of character 3-shingle
  sets (128 permutations, as CoTaEval).
- ``literal_copy``: CopyBench's literal copying, ROUGE-L F1 on the first 50 words ≥ 0.8.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rapidfuzz.distance import LCSseq, Levenshtein

from lmaudit.memorization.substrings import SuffixAutomaton, spans_from_matching

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=1)
def _stemmer():
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError as err:
        raise ImportError("stemming needs nltk: pip install nltk") from err
    return PorterStemmer()


def rouge_tokens(text: str, *, stem: bool = False) -> list[str]:
    """Lowercased alphanumeric tokens (Porter-stemmed if ``stem``, words of more than 3 letters)."""
    tokens = [t for t in _NON_ALNUM.split(text.lower()) if t]
    if stem:
        stemmer = _stemmer()
        tokens = [stemmer.stem(t) if len(t) > 3 else t for t in tokens]
    return tokens


def _f1(overlap: int, n_out: int, n_ref: int) -> tuple[float, float, float]:
    precision = overlap / n_out if n_out else 0.0
    recall = overlap / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def rouge_1(output: str, reference: str, *, stem: bool = False) -> tuple[float, float, float]:
    """(precision, recall, F1) of unigram counts, output against reference.

    >>> rouge_1("the cat sat", "the cat sat down")[2]
    0.8571428571428571
    """
    out, ref = Counter(rouge_tokens(output, stem=stem)), Counter(rouge_tokens(reference, stem=stem))
    return _f1(sum((out & ref).values()), sum(out.values()), sum(ref.values()))


def rouge_l(output: str, reference: str, *, stem: bool = False) -> tuple[float, float, float]:
    """(precision, recall, F1) of the longest common word subsequence.

    >>> rouge_l("the cat sat on the mat", "the cat lay on the mat")[2]
    0.8333333333333334
    """
    out, ref = rouge_tokens(output, stem=stem), rouge_tokens(reference, stem=stem)
    return _f1(int(LCSseq.similarity(out, ref)) if out and ref else 0, len(out), len(ref))


def _shingle_hashes(text: str, k: int) -> np.ndarray:
    shingles = {text[i : i + k] for i in range(max(1, len(text) - k + 1))} if text else set()
    return np.array(sorted(zlib.crc32(s.encode("utf-8")) for s in shingles), dtype=np.uint64)


_PRIME = np.uint64((1 << 31) - 1)


@lru_cache(maxsize=8)
def _permutations(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(1, int(_PRIME), n, dtype=np.uint64), rng.integers(0, int(_PRIME), n, dtype=np.uint64))


def minhash_signature(text: str, *, k: int = 3, n_permutations: int = 128, seed: int = 1) -> np.ndarray:
    """(n_permutations,) minima of h_i(x) = (a_i·x + b_i) mod (2³¹ − 1) over the text's k-shingles."""
    x = _shingle_hashes(text, k) % _PRIME  # (S,) < 2^31, so a·x + b < 2^62 never overflows
    a, b = _permutations(n_permutations, seed)
    if not len(x):
        return np.full(n_permutations, _PRIME, dtype=np.uint64)
    return ((a[:, None] * x[None, :] + b[:, None]) % _PRIME).min(axis=1)  # (P,)


def minhash_jaccard(output: str, reference: str, *, k: int = 3, n_permutations: int = 128, seed: int = 1) -> float:
    """Share of permutations whose minima agree: an unbiased estimate of the shingle Jaccard."""
    sa = minhash_signature(output, k=k, n_permutations=n_permutations, seed=seed)
    sb = minhash_signature(reference, k=k, n_permutations=n_permutations, seed=seed)
    return float(np.mean(sa == sb))


@dataclass(frozen=True)
class CopyingConfig:
    """Options of :func:`copying_metrics`.

    Attributes:
        stem: Porter-stem ROUGE tokens (needs nltk).
        acs_min_run: Shortest verbatim word run counted by ``acs_words``.
        literal_words: Words of each text compared for ``literal_copy`` (CopyBench: 50).
        literal_threshold: ROUGE-L F1 at which a pair counts as a literal copy (CopyBench: 0.8).
        span_min_chars: Shortest verbatim character span reported for highlighting.
        minhash_permutations: MinHash permutations.
    """

    stem: bool = False
    acs_min_run: int = 3
    literal_words: int = 50
    literal_threshold: float = 0.8
    span_min_chars: int = 20
    minhash_permutations: int = 128

    def __post_init__(self) -> None:
        if min(self.acs_min_run, self.literal_words, self.span_min_chars, self.minhash_permutations) < 1:
            raise ValueError("acs_min_run, literal_words, span_min_chars and minhash_permutations must be at least 1")


def copying_metrics(output: str, reference: str, config: CopyingConfig = CopyingConfig()) -> dict:
    """Every literal copying metric of one output against its reference, and its verbatim spans.

    Returns:
        ``rouge_1_f1``, ``rouge_l_f1``, ``rouge_l_recall``, ``lcs_chars``, ``lcs_words``,
        ``acs_words``, ``levenshtein_sim``, ``minhash_jaccard``, ``literal_copy`` and
        ``verbatim_spans`` ([start, end) character offsets in the output).
    """
    out_words, ref_words = output.split(), reference.split()
    _, r1_rec, r1_f1 = rouge_1(output, reference, stem=config.stem)
    _, rl_rec, rl_f1 = rouge_l(output, reference, stem=config.stem)
    head = lambda words: " ".join(words[: config.literal_words])  # noqa: E731
    literal_f1 = rouge_l(head(out_words), head(ref_words), stem=config.stem)[2]
    char_match = SuffixAutomaton(reference).matching_lengths(output) if output and reference else []
    # One automaton over the reference's words serves both the longest run and ACS.
    word_match = SuffixAutomaton(ref_words).matching_lengths(out_words) if out_words and ref_words else []
    word_spans = spans_from_matching(word_match, min_length=config.acs_min_run)
    return {
        "rouge_1_f1": r1_f1,
        "rouge_l_f1": rl_f1,
        "rouge_l_recall": rl_rec,
        "lcs_chars": max(char_match, default=0),
        "lcs_words": max(word_match, default=0),
        "acs_words": sum(end - start for start, end in word_spans),
        "levenshtein_sim": float(Levenshtein.normalized_similarity(output, reference)),
        "minhash_jaccard": minhash_jaccard(output, reference, n_permutations=config.minhash_permutations),
        "literal_copy": literal_f1 >= config.literal_threshold,
        "verbatim_spans": [list(s) for s in spans_from_matching(char_match, min_length=config.span_min_chars)],
    }

