"""How the preceding tokens (and, for selfhash, the candidate itself) choose a position's
pseudo-random stream: the KGW family's "seeding schemes" (Kirchenbauer et al. 2023b, "On the
Reliability of Watermarks for Large Language Models", §2), used by every scheme.

Each position i with token v gets a 32-bit ``seed`` from its context and a 32-bit ``value`` =
combine(seed, v) (:mod:`lmaudit.watermark.prf`). KGW calls v green when value < γ·2³²; the
Gumbel scheme turns the value into a uniform draw. A scheme needs ``context(h)`` preceding
tokens; positions with fewer are never scored.

- ``hash`` (h ≥ 1; ``lefthash`` is h = 1): the seed chains the key and the previous h tokens,
  in order. Any edit inside the window changes the list.
- ``minhash`` (h ≥ 1): the smallest hash of key and token over the previous h tokens; the list
  survives edits that keep the minimising token.
- ``skipgram`` (h ≥ 1): the key and the token h places back only.
- ``selfhash`` (h ≥ 1, default 4; lm-watermarking's "anchored min-hash, self-salted"): the
  window is the previous h − 1 tokens plus the candidate v itself, anchored on v: seed =
  min over x in the window of combine(combine(key, v), x). Computing it for every candidate
  is one hash per (candidate, window token), O(hV) per step, never O(V²).
- ``unigram`` (h = 0, Zhao et al. 2023): one fixed green list for the whole text.

The (seed, token) pair decides the value, so it is also what the detector deduplicates:
two positions with the same pair are the same coin, whatever contexts led to them.
"""

from __future__ import annotations

import numpy as np
import torch

from lmaudit.watermark.prf import combine_np, combine_t, token_code_np, token_code_t, fmix32_t

SEEDINGS = ("hash", "minhash", "skipgram", "selfhash", "unigram")


def check(seeding: str, h: int) -> None:
    if seeding not in SEEDINGS:
        raise ValueError(f"unknown seeding {seeding!r} (known: {', '.join(SEEDINGS)})")
    if isinstance(h, bool) or not isinstance(h, int):
        raise ValueError(f"h must be an integer, got {h!r}")
    if seeding == "unigram" and h != 0:
        raise ValueError(f"unigram seeding uses no context: h must be 0, got {h}")
    if seeding != "unigram" and not 1 <= h <= 64:
        raise ValueError(f"{seeding} seeding needs 1 <= h <= 64 preceding tokens, got {h}")


def context(seeding: str, h: int) -> int:
    """Preceding tokens a position needs before it can be scored."""
    return 0 if seeding == "unigram" else h - 1 if seeding == "selfhash" else h


def seeds_np(seeding: str, h: int, key: int, prev: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Seeds of N positions: ``prev`` (N, context) uint32 preceding tokens, oldest first;
    ``tokens`` (N,) the tokens at those positions; ``key`` a 32-bit key word."""
    n = len(tokens)
    k = np.full(n, key, dtype=np.uint32)
    if seeding == "unigram":
        return k
    if seeding == "hash":
        s = k
        for j in range(prev.shape[1]):
            s = combine_np(s, prev[:, j])
        return s
    if seeding == "minhash":
        return combine_np(k[:, None], prev).min(axis=1)
    if seeding == "skipgram":
        return combine_np(k, prev[:, 0])
    anchor = combine_np(k, tokens)  # selfhash
    s = combine_np(anchor, tokens)
    if prev.shape[1]:
        s = np.minimum(s, combine_np(anchor[:, None], prev).min(axis=1))
    return s


def values_np(seeding: str, h: int, key: int, prev: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, values) of N positions, both (N,) uint32."""
    s = seeds_np(seeding, h, key, prev, tokens)
    return s, combine_np(s, tokens)


class VocabHasher:
    """Every candidate's value at one decoding step, for a batch: (B, V) int64 in [0, 2³²).

    Built once per (seeding, h, key, vocabulary width, device); the per-token codes it keeps
    make each step cost one to h hashes per vocabulary entry.
    """

    def __init__(self, seeding: str, h: int, key: int, width: int, device: torch.device | str):
        check(seeding, h)
        self.seeding, self.h, self.key = seeding, h, int(key)
        self.width = int(width)
        v = torch.arange(self.width, dtype=torch.int64, device=device)
        self.code = token_code_t(v)  # (V,)
        if seeding == "selfhash":
            self.anchor = fmix32_t(self.key ^ self.code)  # combine(key, v), (V,)
            self.self_seed = combine_t(self.anchor, v)  # (V,)

    def __call__(self, prev: torch.Tensor) -> torch.Tensor:
        """``prev`` (B, context) int64: the preceding tokens of each row, oldest first."""
        b = prev.shape[0]
        device = self.code.device
        prev = prev.to(device=device, dtype=torch.int64)
        if self.seeding == "selfhash":
            s = self.self_seed.expand(b, -1)  # (B, V)
            for j in range(prev.shape[1]):
                s = torch.minimum(s, fmix32_t(self.anchor[None, :] ^ token_code_t(prev[:, j : j + 1])))
            return fmix32_t(s ^ self.code[None, :])
        k = torch.full((b,), self.key, dtype=torch.int64, device=device)
        if self.seeding == "hash":
            s = k
            for j in range(prev.shape[1]):
                s = combine_t(s, prev[:, j])
        elif self.seeding == "minhash":
            s = combine_t(k[:, None], prev).min(dim=1).values
        elif self.seeding == "skipgram":
            s = combine_t(k, prev[:, 0])
        else:  # unigram
            s = k
        return fmix32_t(s[:, None] ^ self.code[None, :])  # (B, V)


def windows(ids: np.ndarray, c: int) -> np.ndarray:
    """(n − c, c) preceding tokens of positions c..n−1 of one text, oldest first."""
    if c == 0:
        return np.zeros((max(len(ids), 0), 0), dtype=np.uint32)
    if len(ids) <= c:
        return np.zeros((0, c), dtype=np.uint32)
    return np.lib.stride_tricks.sliding_window_view(ids[:-1], c)


__all__ = ["SEEDINGS", "VocabHasher", "check", "context", "seeds_np", "values_np", "windows", "token_code_np"]
