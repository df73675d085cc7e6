"""KGW: a keyed green list per context, δ added to green logits (Kirchenbauer, Geiping, Wen,
Katz, Miers, Goldstein 2023, "A Watermark for Large Language Models",
https://arxiv.org/abs/2301.10226).

Under the null (text written without the key), each deduplicated position is green with
probability γ_eff = round(γ·2³²)/2³² independently, so the number of green positions among
T is Binomial(T, γ_eff) and the exact p-value is its upper tail; z = (G − γT)/√(Tγ(1−γ)) is
reported beside it, never instead of it (at small T the normal tail is far too small).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.stats as st
import torch

from lmaudit.models.base import GenerationConfig
from lmaudit.watermark.prf import key32, threshold
from lmaudit.watermark.schemes import SCHEMES


@SCHEMES.register("kgw")
class KGW:
    name: ClassVar[str] = "kgw"
    family: ClassVar[str] = "green list"

    def __init__(self, config, key: int):
        self.stream_key = key32(key)
        self.threshold = threshold(config.gamma)
        self.gamma = self.threshold / 2**32  # the exact null probability
        self.delta = float(config.delta)

    def score(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values) < self.threshold).astype(np.float64)

    def pvalue(self, total, n) -> np.ndarray:
        # P(G >= g) = sf(g - 1); the count is an integer, round away float noise from sums.
        return st.binom.sf(np.rint(total) - 1, n, self.gamma)

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
