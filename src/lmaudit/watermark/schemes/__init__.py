"""Watermark schemes behind one interface, one file each.

A scheme turns each scored position's 32-bit value (:mod:`lmaudit.watermark.seeding`) into a
per-token statistic whose distribution on text written without the key is known exactly,
and biases decoding so that watermarked text pushes that statistic up:

- ``score(values)``: the per-token statistic, float64 (N,);
- ``pvalue(S, T)`` / ``log_pvalue(S, T)`` / ``z(S, T)``: the exact upper tail (and its
  logarithm, finite where the tail underflows) and the standardised score of a sum S of T
  such statistics (T deduplicated positions, independent under the null);
- ``apply(scores, values)``: one decoding step, (B, V) logits and (B, V) candidate values;
- ``decoding(config)``: the :class:`~lmaudit.models.base.GenerationConfig` the scheme needs.

Registered: ``kgw`` (green lists) and ``gumbel`` (distortion-free exponential sampling).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np
import torch

from lmaudit.models.base import GenerationConfig
from lmaudit.registry import Registry

SCHEMES = Registry("watermark scheme", package="lmaudit.watermark.schemes")


class Scheme(Protocol):
    name: ClassVar[str]
    stream_key: int  # the 32-bit key word the seeding hashes start from

    def score(self, values: np.ndarray) -> np.ndarray: ...

    def pvalue(self, total, n) -> np.ndarray: ...

    def log_pvalue(self, total, n) -> np.ndarray: ...

    def z(self, total, n) -> np.ndarray: ...

    def apply(self, scores: torch.Tensor, values: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor: ...

    def decoding(self, config: GenerationConfig) -> GenerationConfig: ...


def build(config, key: int, *, check_key: bool = True) -> Scheme:
    """The scheme object of a :class:`~lmaudit.watermark.config.WatermarkConfig` under
    ``key`` (refused when the key's id is not the config's, unless ``check_key`` is False:
    the null-key calibration scores text under keys that are deliberately not the config's)."""
    if check_key:
        config.check(key=key)
    return SCHEMES.get(config.scheme)(config, key)
