"""Retain NLL: keep the retain set's cross-entropy low (with GA: "gradient difference", GD)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from lmaudit.unlearning import RETAIN_LOSSES
from lmaudit.unlearning.batch import LossBatch, token_logprobs


@RETAIN_LOSSES.register("nll")
@dataclass(frozen=True)
class RetainNLL:
    """Mean cross-entropy over the retain batch's counted tokens.

    Paper: Liu et al. 2022, "Continual Learning and Private Unlearning" (gradient difference),
    https://arxiv.org/abs/2203.12817.
    """

    paper = "Liu et al. 2022, https://arxiv.org/abs/2203.12817"

    def __call__(self, batch: LossBatch) -> Tensor:
        logp = token_logprobs(batch.logits, batch.labels, batch.mask)  # (B, T)
        return -logp.sum() / batch.mask.sum().clamp(min=1)
