"""Gumbel (exponential) sampling: a distortion-free watermark (Aaronson 2022, "Watermarking
of large language models", Simons Institute talk; analysed in Fernandez et al. 2023, "Three
Bricks to Consolidate Watermarks for LLMs", https://arxiv.org/abs/2308.00113).

Each candidate v gets a keyed uniform r_v from the context; the next token is
argmax_v r_v^(1/p_v), with p the model's distribution at the given temperature. Over keys
this picks v with probability exactly p_v (the Gumbel-max trick), so a single text's
distribution is the model's own; the chosen tokens have large r. Detection sums
−log(1 − r) over T deduplicated positions: under the null each term is Exp(1), the sum is
Gamma(T, 1), and the p-value is its exact upper tail; z = (S − T)/√T is reported beside it.

The scheme makes the choice itself (the returned logits are −inf except for the chosen
token), so the caller must ask for sampling and the backend then decodes greedily; the
caller's temperature is the scheme's, and top-k/top-p are not applied. A given context always yields the same token: repeated
prompts give repeated text, which the detector's deduplication keeps from inflating scores.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
import scipy.stats as st
import torch

from lmaudit.models.base import GenerationConfig
from lmaudit.watermark.prf import fmix32_np, key32
from lmaudit.watermark.schemes import SCHEMES
from lmaudit.watermark.tails import gamma_log_sf

_SALT = 0x6A09E667  # keeps Gumbel draws independent of KGW lists under the same key


@SCHEMES.register("gumbel")
class Gumbel:
    name: ClassVar[str] = "gumbel"
    family: ClassVar[str] = "distortion-free"

    def __init__(self, config, key: int):
        self.stream_key = int(fmix32_np(np.uint32(key32(key) ^ _SALT)))

    @staticmethod
    def uniform(values) -> np.ndarray:
        """The value's uniform draw in (0, 1): (value + ½) / 2³²."""
        return (np.asarray(values, dtype=np.float64) + 0.5) / 2**32

    def score(self, values: np.ndarray) -> np.ndarray:
        return -np.log1p(-self.uniform(values))

    def pvalue(self, total, n) -> np.ndarray:
        return st.gamma.sf(total, n)

    def log_pvalue(self, total, n) -> np.ndarray:
        """ln p, finite where p itself underflows (a mean score of 3 over 1,000 tokens: p < 1e-308)."""
        return gamma_log_sf(total, n)

    def z(self, total, n) -> np.ndarray:
        n = np.asarray(n, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.asarray(total) - n) / np.sqrt(n)

    def apply(self, scores: torch.Tensor, values: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
        width = scores.shape[-1]
        r = (values[:, :width].to(torch.float64) + 0.5) / 2**32  # (B, V) in (0, 1)
        # argmax r^(1/p) = argmax log p − log(−log r) (both sides' logs: the Gumbel-max trick),
        # and log p = logits / T minus a constant: no softmax needed; −inf logits stay out.
        key = scores.to(torch.float64) / temperature - torch.log(-torch.log(r))
        choice = key.argmax(dim=-1, keepdim=True)  # (B, 1)
        out = torch.full_like(scores, -torch.inf)
        return out.scatter(-1, choice, 0.0)

    def decoding(self, config: GenerationConfig) -> GenerationConfig:
        if not config.do_sample:
            raise ValueError("the gumbel watermark samples (its draws are the randomness): set do_sample=True; "
                             "its temperature is the config's")
        return replace(config, do_sample=False)
