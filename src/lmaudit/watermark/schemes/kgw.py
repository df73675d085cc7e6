"""KGW: a keyed green list per context, δ added to green logits (Kirchenbauer, Geiping, Wen,
Katz, Miers, Goldstein 2023, "A Watermark for Large Language Models",
https://arxiv.org/abs/2301.10226).

Under the null (text written without the key), each deduplicated position is green with
probability γ_eff = round(γ·2³²)/2³² independently, so the number of green positions among
T is Binomial(T, γ_eff) and the exact p-value is its upper tail; z = (G − γT)/√(Tγ(1−γ)) is
reported beside it, never instead of it (at small T the normal tail is far too small).

Unigram (h = 0, one green list for every position) is the exception to per-pair thresholds:
its single list would hold Binomial(V, γ) tokens, so under one fixed key even uniform text
would be green at a rate far from γ (over 30 keys at V = 258, from 0.20 to 0.32). Its list is
therefore exactly the ⌊γV⌋ tokens with the smallest values (the values of distinct ids are
distinct: the hash is a bijection), and γ_eff = ⌊γV⌋/V. Even so, a fixed list's p-value is
exact only for text whose tokens are drawn independently of the list: natural text, whose
frequent tokens are either in it or not, can sit above γ under a given key. Context seedings
draw a new list per context and do not have this problem; prefer them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.stats as st
import torch

from lmaudit.models.base import GenerationConfig
from lmaudit.watermark.prf import combine_np, key32, threshold
from lmaudit.watermark.schemes import SCHEMES
from lmaudit.watermark.tails import binom_log_sf


@SCHEMES.register("kgw")
class KGW:
    name: ClassVar[str] = "kgw"
    family: ClassVar[str] = "green list"

    def __init__(self, config, key: int):
        self.stream_key = key32(key)
        self.delta = float(config.delta)
        if config.seeding == "unigram":
            size = int(config.gamma * config.vocab_size)  # exactly ⌊γV⌋ green tokens
            if not 0 < size < config.vocab_size:
                raise ValueError(f"gamma {config.gamma} leaves no green or no red token in a vocabulary of "
                                 f"{config.vocab_size}")
            values = np.sort(combine_np(self.stream_key, np.arange(config.vocab_size)))  # the unigram seed is the key
            self.threshold = int(values[size])  # the size smallest values lie below it
            self.gamma = size / config.vocab_size
        else:
            self.threshold = threshold(config.gamma)
            self.gamma = self.threshold / 2**32  # the exact null probability

    def score(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values) < self.threshold).astype(np.float64)

    def pvalue(self, total, n) -> np.ndarray:
        # P(G >= g) = sf(g - 1); the count is an integer, round away float noise from sums.
        return st.binom.sf(np.rint(total) - 1, n, self.gamma)

    def log_pvalue(self, total, n) -> np.ndarray:
        """ln p, finite where p itself underflows (1,300 green of 2,000 tokens: p = 4e-310)."""
        return binom_log_sf(np.rint(total), n, self.gamma)

    def z(self, total, n) -> np.ndarray:
        n = np.asarray(n, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.asarray(total) - self.gamma * n) / np.sqrt(n * self.gamma * (1 - self.gamma))

    def apply(self, scores: torch.Tensor, values: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
        # temperature: the backend's own warper divides after this bias, as in lm-watermarking.
        green = values[:, : scores.shape[-1]] < self.threshold  # (B, V)
        return scores + green.to(scores.dtype) * self.delta

    def decoding(self, config: GenerationConfig) -> GenerationConfig:
        return config


__all__ = ["KGW"]
