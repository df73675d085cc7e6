"""Detection: is this text watermarked under this key? An exact test a statistician can sign.

- Only the text given is scored: pass the generated continuation, not the prompt. A position
  is scored when the text itself holds its whole context (the first ``config.context``
  positions never are), so detection needs nothing but the text and the key.
- A text is re-tokenised by the model's tokenizer (after :func:`lmaudit.watermark.normalize.normalize`
  undoes Unicode tricks, when asked); detection scores the ids it sees, whatever ids the
  generator emitted. Decoding and re-encoding can merge or split a few tokens, which only
  costs those positions' contribution.
- Repeated (seed, token) pairs are counted once by default: a repeat is the same coin as its
  first occurrence, and counting it again breaks the independence the test rests on
  (lm-watermarking's ``ignore_repeated_ngrams``; Fernandez et al. 2023 show the raw count's
  false-positive rate is far above its nominal level on repetitive text).
- The p-value is the exact tail of the null distribution for the scheme (Binomial for KGW,
  Gamma for Gumbel) at every length, with its log10 (:mod:`lmaudit.watermark.tails`: exact
  where p underflows to 0); z is reported beside it. A text with fewer than ``min_tokens``
  scored positions gets ``too_short`` and no p-value at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from lmaudit.watermark.config import WatermarkConfig
from lmaudit.watermark.schemes import Scheme, build
from lmaudit.watermark.seeding import values_np

DEFAULT_MIN_TOKENS = 16
DEFAULT_ALPHA = 1e-3


@dataclass
class TokenScores:
    """One text's per-position scoring.

    Attributes:
        token_ids: (n,) the ids scored.
        score: (n,) float64 per-position statistic (0 where not scored).
        scored: (n,) bool: the position has its context and is not a repeat.
        n_context: Positions without a whole context (the first ``config.context``).
        n_repeated: Positions whose (seed, token) pair occurred earlier in the text.
    """

    token_ids: np.ndarray
    score: np.ndarray
    scored: np.ndarray
    n_context: int
    n_repeated: int

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())

    @property
    def total(self) -> float:
        return float(self.score[self.scored].sum())


@dataclass
class Positions:
    """Every position of many texts that has its whole context, flattened.

    Attributes:
        doc: (N,) index of the text. pos: (N,) position in it. prev: (N, context) preceding
        tokens, oldest first. tokens: (N,) the token at the position (or a prediction of it).
    """

    doc: np.ndarray
    pos: np.ndarray
    prev: np.ndarray
    tokens: np.ndarray


def positions(ids_list: Sequence[Sequence[int]], c: int) -> tuple[Positions, np.ndarray]:
    """(the scorable positions, each text's length)."""
    lengths = np.array([len(x) for x in ids_list], dtype=np.int64)
    flat = np.fromiter((t for x in ids_list for t in x), dtype=np.int64, count=int(lengths.sum()))
    if len(flat) and (flat.min() < 0 or flat.max() >= 2**32):
        raise ValueError("token ids must lie in [0, 2^32)")
    flat = flat.astype(np.uint32)
    starts = np.cumsum(lengths) - lengths  # (an empty batch has no starts at all)
    pos = np.arange(len(flat), dtype=np.int64) - np.repeat(starts, lengths)
    idx = np.nonzero(pos >= c)[0]
    prev = flat[idx[:, None] - c + np.arange(c)[None, :]] if c else np.zeros((len(idx), 0), np.uint32)
    doc = np.repeat(np.arange(len(lengths)), lengths)[idx]
    return Positions(doc, pos[idx], prev, flat[idx]), lengths


def first_occurrences(seeds: np.ndarray, tokens: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: the first position of each (seed, token) pair (within each group, when
    given), in the given order; every later one is a repeat of the same coin."""
    pair = (seeds.astype(np.uint64) << np.uint64(32)) | tokens.astype(np.uint64)
    g = np.zeros(len(pair), dtype=np.int64) if groups is None else groups
    order = np.lexsort((pair, g))  # stable: equal pairs stay in order
    gs, ps = g[order], pair[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1])
    keep = np.empty(len(order), dtype=bool)
    keep[order] = first
    return keep


def score_tokens(ids_list: Sequence[Sequence[int]], config: WatermarkConfig, key: int, *, dedup: bool = True,
                 scheme: Scheme | None = None) -> list[TokenScores]:
    """Per-position statistics of many texts at once (one vectorised pass over all tokens;
    repeats are found within each text).

    ``scheme``: a prebuilt scheme (the null-key calibration passes schemes under keys other
    than the config's); None builds the config's under ``key``, checking the key.
    """
    scheme = scheme or build(config, key)
    c = config.context
    at, lengths = positions(ids_list, c)
    seeds, values = values_np(config.seeding, config.h, scheme.stream_key, at.prev, at.tokens)
    stat = scheme.score(values)
    keep = first_occurrences(seeds, at.tokens, at.doc) if dedup else np.ones(len(stat), dtype=bool)
    # Positions are grouped by text in order: split them by counts instead of masking.
    counts = np.bincount(at.doc, minlength=len(lengths))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    flat_ids = [np.asarray(x, dtype=np.int64) for x in ids_list]
    rows = []
    for i, n in enumerate(lengths.tolist()):
        a, b = bounds[i], bounds[i + 1]
        score = np.zeros(n)
        scored = np.zeros(n, dtype=bool)
        score[at.pos[a:b]] = stat[a:b]
        scored[at.pos[a:b]] = keep[a:b]
        n_context = min(n, c)
        rows.append(TokenScores(flat_ids[i], score, scored, n_context, int(n - n_context - scored.sum())))
    return rows


def curve(ts: TokenScores, scheme: Scheme, *, min_tokens: int = DEFAULT_MIN_TOKENS, max_points: int = 64) -> dict:
    """z and p of the first T scored positions, for T = min_tokens … n_scored (thinned to at
    most ``max_points`` values of T, the last always included): no p-value of fewer tokens
    than a test takes, so a text too short to test has an empty curve."""
    s = np.cumsum(ts.score[ts.scored])
    n = len(s)
    if n < min_tokens:
        return {"T": [], "z": [], "p": []}
    t = np.unique(np.linspace(min_tokens, n, min(n - min_tokens + 1, max_points)).round().astype(np.int64))
    return {"T": t.tolist(), "z": [round(float(v), 4) for v in scheme.z(s[t - 1], t)],
            "p": [float(v) for v in scheme.pvalue(s[t - 1], t)]}


def summarise(ts: TokenScores, scheme: Scheme, *, min_tokens: int = DEFAULT_MIN_TOKENS,
              alpha: float = DEFAULT_ALPHA) -> dict:
    """The test of one text: counts, score, z, exact p-value, and the decision at ``alpha``;
    ``too_short`` (and no p-value) below ``min_tokens`` scored positions."""
    n = ts.n_scored
    row = {"n_tokens": len(ts.token_ids), "n_context": ts.n_context, "n_repeated": ts.n_repeated, "n_scored": n,
           "score": round(ts.total, 6)}
    if scheme.name == "kgw":
        row["green_fraction"] = round(ts.total / n, 6) if n else None
    if n < min_tokens:
        return row | {"too_short": True, "z": None, "p_value": None, "log10_p_value": None, "detected": None}
    z = float(scheme.z(ts.total, n))
    log_p = float(scheme.log_pvalue(ts.total, n))
    # p itself underflows to 0 past 1e-308; its logarithm ranks every text.
    return row | {"too_short": False, "z": round(z, 4), "p_value": float(np.exp(log_p)),
                  "log10_p_value": round(log_p / np.log(10), 4), "detected": bool(log_p < np.log(alpha))}


def detect_tokens(ids_list: Sequence[Sequence[int]], config: WatermarkConfig, key: int, *, dedup: bool = True,
                  min_tokens: int = DEFAULT_MIN_TOKENS, alpha: float = DEFAULT_ALPHA, with_curve: bool = False,
                  with_spans: bool = False, scheme: Scheme | None = None) -> list[dict]:
    """:func:`summarise` of each token sequence, optionally with its z/p curve over T and
    its best windows (:func:`lmaudit.watermark.spans.best_windows`)."""
    from lmaudit.watermark.spans import best_windows

    check_options(min_tokens=min_tokens, alpha=alpha)
    scheme = scheme or build(config, key)
    rows = []
    for ts in score_tokens(ids_list, config, key, dedup=dedup, scheme=scheme):
        row = summarise(ts, scheme, min_tokens=min_tokens, alpha=alpha)
        if with_curve:
            row["curve"] = curve(ts, scheme, min_tokens=min_tokens)
        if with_spans:
            row["spans"] = best_windows(ts.score, ts.scored, scheme.log_pvalue, scheme.z, min_tokens=min_tokens,
                                        alpha=alpha)
        rows.append(row)
    return rows


def detect_texts(lm, texts: Sequence[str], config: WatermarkConfig, key: int, *,
                 normalize: Callable[[str], str] | None = None, **options) -> list[dict]:
    """:func:`detect_tokens` of texts re-tokenised by ``lm``'s tokenizer (checked against the
    config's fingerprint first), after ``normalize`` when given."""
    config.check(key=key, lm=lm)
    if normalize is not None:
        texts = [normalize(t) for t in texts]
    return detect_tokens(lm.encode(list(texts)), config, key, **options)


def check_options(*, min_tokens: int, alpha: float) -> None:
    if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 1:
        raise ValueError(f"min_tokens must be a positive integer, got {min_tokens!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
