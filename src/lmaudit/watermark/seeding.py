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

from lmaudit.watermark.prf import combine_np, combine_t, fmix32_np, fmix32_t, token_code_np, token_code_t

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
    make each step cost one to h hashes per vocabulary entry. On CPU the hashes run in numpy's
    uint32 arithmetic, which wraps natively: 6× faster than torch's int64 emulation of it
    (41 against 259 µs for (32, 2,048) values), and the same values, since both compute
    :mod:`lmaudit.watermark.prf`'s function (a test compares them). Other devices use torch.
    """

    def __init__(self, seeding: str, h: int, key: int, width: int, device: torch.device | str, *,
                 use_numpy: bool | None = None):
        check(seeding, h)
        self.seeding, self.h, self.key = seeding, h, int(key)
        self.width = int(width)
        self.device = torch.device(device)
        # None: numpy on CPU. The torch path runs on CPU too when asked (a test compares them).
        self.on_cpu = self.device.type == "cpu" if use_numpy is None else bool(use_numpy)
        if self.on_cpu and self.device.type != "cpu":
            raise ValueError(f"the numpy path computes on the CPU, not on {self.device}")
        v = np.arange(self.width, dtype=np.uint32) if self.on_cpu else torch.arange(self.width, device=device)
        self.code = token_code_np(v) if self.on_cpu else token_code_t(v)  # (V,)
        if seeding == "selfhash":
            # combine(key, v) and combine(combine(key, v), v), (V,)
            self.anchor = combine_np(self.key, v) if self.on_cpu else fmix32_t(self.key ^ self.code)
            self.self_seed = combine_np(self.anchor, v) if self.on_cpu else combine_t(self.anchor, v)

    def __call__(self, prev: torch.Tensor) -> torch.Tensor:
        """``prev`` (B, context): the preceding tokens of each row, oldest first."""
        if self.on_cpu:
            return torch.from_numpy(self._numpy(prev.detach().cpu().numpy().astype(np.uint32)).astype(np.int64))
        return self._torch(prev.to(device=self.device, dtype=torch.int64))

    def _numpy(self, prev: np.ndarray) -> np.ndarray:
        if self.seeding == "selfhash":
            s = np.broadcast_to(self.self_seed, (prev.shape[0], self.width))
            for j in range(prev.shape[1]):
                s = np.minimum(s, fmix32_np(self.anchor[None, :] ^ token_code_np(prev[:, j : j + 1])))
            return fmix32_np(s ^ self.code[None, :])
        s = seeds_np(self.seeding, self.h, self.key, prev, np.zeros(prev.shape[0], dtype=np.uint32))  # (B,)
        return fmix32_np(s[:, None] ^ self.code[None, :])  # (B, V)

    def _torch(self, prev: torch.Tensor) -> torch.Tensor:
        b = prev.shape[0]
        if self.seeding == "selfhash":
            s = self.self_seed.expand(b, -1)  # (B, V)
            for j in range(prev.shape[1]):
                s = torch.minimum(s, fmix32_t(self.anchor[None, :] ^ token_code_t(prev[:, j : j + 1])))
            return fmix32_t(s ^ self.code[None, :])
        k = torch.full((b,), self.key, dtype=torch.int64, device=self.device)
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
