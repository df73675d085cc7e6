"""Literal copying metrics for any model's outputs: pure functions, text in, numbers out.

Each metric follows a named peer definition (REFERENCE.md §5), so its numbers can be set
beside the peer's; where lmaudit departs from the peer it says so.
- ROUGE (Lin 2004), tokenised as Google's ``rouge_score`` (the library CopyBench, MUSE and
  CoTaEval call): lowercased, every character outside a-z0-9 a separator, Porter stemming
  (nltk's, as ``rouge_score``) of tokens longer than 3 characters when asked. ROUGE-1 on
  unigram counts, ROUGE-L on the longest common subsequence of tokens.
  ``rouge_1_f1`` / ``rouge_l_f1`` / ``rouge_l_recall`` follow MUSE's VerbMem (ROUGE-L F1;
  VerbMem is its mean × 100) and CoTaEval: whole texts, **unstemmed** by default
  (``CopyingConfig.rouge_stem``).
- ``literal_copy`` follows CopyBench (chentong0/copy-bench, ``eval_literal_copying.py``):
  ROUGE-L F1 between the first 50 *ROUGE tokens* of each text (after tokenising and
  **stemming**, not the first 50 whitespace words) ≥ 0.8 (``literal_stem``,
  ``literal_tokens``, ``literal_threshold``). ``literal_rouge_l_f1`` is the F1 behind it.
- ``lcs_chars`` / ``lcs_words``: the true longest common *substring* (contiguous), in
  characters and in whitespace-separated words. ``acs_words``: output words inside common
  runs of at least ``acs_min_run`` words (overlapping runs counted once). By default on the
  raw, case-sensitive text (verbatim copying). ``substring_normalize="cotaeval"`` applies
  CoTaEval's normalisation (boyiwei/CoTaEval, ``process.py`` and ``lib/utils.py``): words are
  lowercased with ASCII punctuation deleted (``"Dog's,"`` → ``"dogs"``); characters are
  lowercased with ASCII punctuation and all whitespace deleted; runs shorter than 3 words
  (``acs_min_run``) count for neither ``lcs_words`` nor ``acs_words`` (a longest run of 2
  words reports 0). The computation stays exact: CoTaEval keeps runs greedily by start
  position, dropping one that overlaps a run already kept, so where runs overlap it reports
  fewer words ("a b c d e f" against "a b c d x c d e f": runs "a b c d" and "c d e f"; ACS 6
  here, 4 there) and can miss the longest run itself ("a b c d e f g" against
  "a b c x b c d e f g": LCS 6 here, 3 there). On disjoint runs the two agree.
- ``levenshtein_distance``: edit distance of the raw texts (CoTaEval's "Levenshtein
  Distance"); ``levenshtein_sim``: 1 − distance / length of the longer text, in [0, 1].
- ``shingle_jaccard``: exact Jaccard similarity of the character 3-shingle sets;
  ``minhash_jaccard``: its MinHash estimate with 128 permutations (CoTaEval's "Minhash
  Similarity"; its own hash functions differ, so per pair the estimates differ by sampling
  noise: each has a standard deviation of up to 0.044 at 128 permutations). A text shorter than 3 characters is one shingle.
"""

from __future__ import annotations

import re
import string
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rapidfuzz.distance import LCSseq, Levenshtein

from lmaudit.memorization.substrings import SuffixAutomaton, spans_from_matching

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)
SUBSTRING_NORMALIZATIONS = ("none", "cotaeval")


@lru_cache(maxsize=1)
def _stemmer():
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError as err:
        raise ImportError("stemming needs nltk: pip install nltk") from err
    return PorterStemmer()


@lru_cache(maxsize=1 << 16)
def _stem(token: str) -> str:
    # Porter stemming is ~10 µs a word; texts repeat words, so a cache saves most of it.
    return _stemmer().stem(token) if len(token) > 3 else token


def rouge_tokens(text: str, *, stem: bool = False, limit: int | None = None) -> list[str]:
    """Tokens as ``rouge_score`` makes them: lowercased a-z0-9 runs, Porter-stemmed if ``stem``.

    Args:
        text: Any text.
        stem: Stem tokens longer than 3 characters, as ``rouge_score(use_stemmer=True)``.
        limit: Keep only the first ``limit`` tokens (CopyBench's first 50), stemming no more.

    >>> rouge_tokens("Hello, World! It's 2024.")
    ['hello', 'world', 'it', 's', '2024']
    """
    tokens = [t for t in _NON_ALNUM.split(text.lower()) if t][:limit]
    return [_stem(t) for t in tokens] if stem else tokens


def _f1(overlap: int, n_out: int, n_ref: int) -> tuple[float, float, float]:
    precision = overlap / n_out if n_out else 0.0
    recall = overlap / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _rouge_l_of_tokens(out: list[str], ref: list[str]) -> tuple[float, float, float]:
    return _f1(int(LCSseq.similarity(out, ref)) if out and ref else 0, len(out), len(ref))


def rouge_1(output: str, reference: str, *, stem: bool = False) -> tuple[float, float, float]:
    """(precision, recall, F1) of unigram counts, output against reference (``rouge_score``'s rouge1).

    >>> rouge_1("the cat sat", "the cat sat down")[2]
    0.8571428571428571
    """
    out, ref = Counter(rouge_tokens(output, stem=stem)), Counter(rouge_tokens(reference, stem=stem))
    return _f1(sum((out & ref).values()), sum(out.values()), sum(ref.values()))


def rouge_l(output: str, reference: str, *, stem: bool = False) -> tuple[float, float, float]:
    """(precision, recall, F1) of the longest common token subsequence (``rouge_score``'s rougeL).

    MUSE's VerbMem is 100 × the mean of this F1, unstemmed.

    >>> rouge_l("the cat sat on the mat", "the cat lay on the mat")[2]
    0.8333333333333334
    """
    return _rouge_l_of_tokens(rouge_tokens(output, stem=stem), rouge_tokens(reference, stem=stem))


def literal_rouge_l_f1(output: str, reference: str, *, tokens: int = 50, stem: bool = True) -> float:
    """CopyBench's literal-copying score: ROUGE-L F1 of the first ``tokens`` ROUGE tokens of each text.

    As chentong0/copy-bench ``scripts/eval_literal_copying.py``: both texts go through
    ``rouge_score``'s tokenizer with its Porter stemmer, each is cut to its first 50 tokens,
    and ROUGE-L F1 is taken on what is left; a pair is a literal copy at ≥ 0.8.

    >>> literal_rouge_l_f1("She walks home.", "she walked home")
    1.0
    """
    return _rouge_l_of_tokens(rouge_tokens(output, stem=stem, limit=tokens),
                              rouge_tokens(reference, stem=stem, limit=tokens))[2]


def cotaeval_words(text: str) -> list[str]:
    """CoTaEval's words: lowercased, ASCII punctuation deleted, split on whitespace.

    >>> cotaeval_words("Dog's -- BACK!")
    ['dogs', 'back']
    """
    return text.lower().translate(_ASCII_PUNCTUATION).split()


def cotaeval_chars(text: str) -> str:
    """CoTaEval's characters: lowercased, ASCII punctuation and all whitespace deleted.

    >>> cotaeval_chars("Dog's -- BACK!")
    'dogsback'
    """
    return "".join(cotaeval_words(text))


def shingles(text: str, *, k: int = 3) -> set[str]:
    """The set of character k-shingles; a text shorter than k is one shingle, "" none."""
    return {text[i : i + k] for i in range(max(1, len(text) - k + 1))} if text else set()


def shingle_jaccard(output: str, reference: str, *, k: int = 3) -> float:
    """Exact Jaccard similarity |A ∩ B| / |A ∪ B| of the character k-shingle sets (1.0 if both empty).

    >>> shingle_jaccard("abcd", "abce")  # {abc, bcd} and {abc, bce}: 1 shared of 3
    0.3333333333333333
    """
    a, b = shingles(output, k=k), shingles(reference, k=k)
    return len(a & b) / len(a | b) if a or b else 1.0


def _shingle_hashes(shingle_set: set[str]) -> np.ndarray:
    return np.array(sorted(zlib.crc32(s.encode("utf-8")) for s in shingle_set), dtype=np.uint64)


_PRIME = np.uint64((1 << 31) - 1)


@lru_cache(maxsize=8)
def _permutations(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(1, int(_PRIME), n, dtype=np.uint64), rng.integers(0, int(_PRIME), n, dtype=np.uint64))


def _signature(shingle_set: set[str], n_permutations: int, seed: int) -> np.ndarray:
    x = _shingle_hashes(shingle_set) % _PRIME  # (S,) < 2^31, so a·x + b < 2^62 never overflows
    a, b = _permutations(n_permutations, seed)
    if not len(x):
        return np.full(n_permutations, _PRIME, dtype=np.uint64)
    return ((a[:, None] * x[None, :] + b[:, None]) % _PRIME).min(axis=1)  # (P,)


def minhash_signature(text: str, *, k: int = 3, n_permutations: int = 128, seed: int = 1) -> np.ndarray:
    """(n_permutations,) minima of h_i(x) = (a_i·x + b_i) mod (2³¹ − 1) over the text's k-shingles."""
    return _signature(shingles(text, k=k), n_permutations, seed)


def minhash_jaccard(output: str, reference: str, *, k: int = 3, n_permutations: int = 128, seed: int = 1) -> float:
    """Share of permutations whose minima agree: an unbiased estimate of :func:`shingle_jaccard`."""
    sa = minhash_signature(output, k=k, n_permutations=n_permutations, seed=seed)
    sb = minhash_signature(reference, k=k, n_permutations=n_permutations, seed=seed)
    return float(np.mean(sa == sb))


@dataclass(frozen=True)
class CopyingConfig:
    """Options of :func:`copying_metrics` and :func:`~lmaudit.memorization.copying_run.run_copying`.

    Each metric has its own definition, so CopyBench's (stemmed) and MUSE's / CoTaEval's
    (unstemmed) ROUGE are both reproduced in one run.

    Attributes:
        rouge_stem: Porter-stem the tokens of ``rouge_1_f1``, ``rouge_l_f1`` and
            ``rouge_l_recall`` (MUSE and CoTaEval: no; needs nltk).
        literal_stem: Porter-stem the tokens of ``literal_copy`` (CopyBench: yes; needs nltk).
        literal_tokens: ROUGE tokens of each text compared for ``literal_copy`` (CopyBench: 50).
        literal_threshold: ROUGE-L F1 at which a pair counts as a literal copy (CopyBench: 0.8).
        substring_normalize: Text that ``lcs_chars``, ``lcs_words`` and ``acs_words`` see:
            ``"none"`` (raw, case-sensitive: verbatim copying) or ``"cotaeval"`` (CoTaEval's
            lowercasing and punctuation stripping, runs under ``acs_min_run`` words dropped).
        acs_min_run: Shortest common word run counted by ``acs_words`` (CoTaEval: 3).
        span_min_chars: Shortest verbatim character span reported for highlighting (raw text).
        minhash_permutations: MinHash permutations (CoTaEval: 128).
        n_bootstrap: Bootstrap replicates for the intervals of the mean metrics.
        seed: Seeds the bootstrap (MinHash's permutations are fixed).
    """

    rouge_stem: bool = False
    literal_stem: bool = True
    literal_tokens: int = 50
    literal_threshold: float = 0.8
    substring_normalize: str = "none"
    acs_min_run: int = 3
    span_min_chars: int = 20
    minhash_permutations: int = 128
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.acs_min_run, self.literal_tokens, self.span_min_chars, self.minhash_permutations,
               self.n_bootstrap) < 1:
            raise ValueError("acs_min_run, literal_tokens, span_min_chars, minhash_permutations and n_bootstrap "
                             "must be at least 1")
        if self.substring_normalize not in SUBSTRING_NORMALIZATIONS:
            raise ValueError(f"substring_normalize must be one of {', '.join(SUBSTRING_NORMALIZATIONS)}, "
                             f"got {self.substring_normalize!r}")

    def check_dependencies(self) -> None:
        """Raise ImportError now if a stemmed metric is asked for and nltk is missing."""
        if self.rouge_stem or self.literal_stem:
            _stemmer()

    def definitions(self) -> dict:
        """What each reported metric follows, under this configuration (written to results.json)."""
        stemmed = lambda on: "Porter-stemmed" if on else "unstemmed"  # noqa: E731
        substrings = ("CoTaEval's normalisation (lowercased, ASCII punctuation deleted; characters also "
                      f"without whitespace; runs under {self.acs_min_run} words dropped), computed exactly"
                      if self.substring_normalize == "cotaeval" else "raw text, case-sensitive, computed exactly")
        return {
            "rouge": f"rouge_score tokens, {stemmed(self.rouge_stem)}, whole texts"
                     + ("" if self.rouge_stem else " (MUSE VerbMem = 100 × mean rouge_l_f1; CoTaEval)"),
            "literal_copy": f"ROUGE-L F1 of the first {self.literal_tokens} rouge_score tokens, "
                            f"{stemmed(self.literal_stem)}, >= {self.literal_threshold}"
                            + (" (CopyBench)" if (self.literal_stem, self.literal_tokens, self.literal_threshold)
                               == (True, 50, 0.8) else " (not CopyBench's setting)"),
            "lcs_acs": substrings,
            "levenshtein": "raw texts (levenshtein_distance is CoTaEval's)",
            "jaccard": f"character 3-shingles: exact and MinHash with {self.minhash_permutations} permutations",
        }


def copying_metrics(output: str, reference: str, config: CopyingConfig = CopyingConfig()) -> dict:
    """Every literal copying metric of one output against its reference, and its verbatim spans.

    Returns:
        ``rouge_1_f1``, ``rouge_l_f1``, ``rouge_l_recall``, ``literal_rouge_l_f1``,
        ``literal_copy``, ``lcs_chars``, ``lcs_words``, ``acs_words``, ``levenshtein_distance``,
        ``levenshtein_sim``, ``shingle_jaccard``, ``minhash_jaccard`` and ``verbatim_spans``
        ([start, end) character offsets in the raw output), as the module docstring defines them.
    """
    _, r1_rec, r1_f1 = rouge_1(output, reference, stem=config.rouge_stem)
    _, rl_rec, rl_f1 = rouge_l(output, reference, stem=config.rouge_stem)
    literal_f1 = literal_rouge_l_f1(output, reference, tokens=config.literal_tokens, stem=config.literal_stem)
    # The spans highlight the raw output, whatever text the substring metrics see.
    raw_char_match = SuffixAutomaton(reference).matching_lengths(output) if output and reference else []
    if config.substring_normalize == "cotaeval":
        out_chars, ref_chars = cotaeval_chars(output), cotaeval_chars(reference)
        char_match = SuffixAutomaton(ref_chars).matching_lengths(out_chars) if out_chars and ref_chars else []
        out_words, ref_words = cotaeval_words(output), cotaeval_words(reference)
        min_lcs_words = config.acs_min_run  # CoTaEval keeps no run shorter than min_tokens = 3
    else:
        char_match = raw_char_match
        out_words, ref_words = output.split(), reference.split()
        min_lcs_words = 1
    # One automaton over the reference's words serves both the longest run and ACS.
    word_match = SuffixAutomaton(ref_words).matching_lengths(out_words) if out_words and ref_words else []
    word_spans = spans_from_matching(word_match, min_length=config.acs_min_run)
    lcs_words = max(word_match, default=0)
    distance = Levenshtein.distance(output, reference)
    longer = max(len(output), len(reference))
    out_shingles, ref_shingles = shingles(output), shingles(reference)
    union = len(out_shingles | ref_shingles)
    return {
        "rouge_1_f1": r1_f1,
        "rouge_l_f1": rl_f1,
        "rouge_l_recall": rl_rec,
        "literal_rouge_l_f1": literal_f1,
        "literal_copy": literal_f1 >= config.literal_threshold,
        "lcs_chars": max(char_match, default=0),
        "lcs_words": lcs_words if lcs_words >= min_lcs_words else 0,
        "acs_words": sum(end - start for start, end in word_spans),
        "levenshtein_distance": distance,
        "levenshtein_sim": 1 - distance / longer if longer else 1.0,
        "shingle_jaccard": len(out_shingles & ref_shingles) / union if union else 1.0,
        "minhash_jaccard": float(np.mean(_signature(out_shingles, config.minhash_permutations, 1)
                                         == _signature(ref_shingles, config.minhash_permutations, 1))),
        "verbatim_spans": [list(s) for s in spans_from_matching(raw_char_match, min_length=config.span_min_chars)],
    }
