"""Retain KL: keep the model's next-token distributions on the retain set where the reference had them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lmaudit.unlearning import RETAIN_LOSSES
from lmaudit.unlearning.batch import LossBatch


@RETAIN_LOSSES.register("kl")
@dataclass(frozen=True)
class RetainKL:
    """KL(reference ‖ θ) of the next-token distributions, averaged over counted positions.

    Both sides are log-softmaxed first: ``F.kl_div`` on raw logits (as MUSE calls it) is not
    a divergence of distributions at all, and changes when a constant is added to the logits.
    Padded positions are left out of the sum and of the count.

    Paper: the retain regulariser of Yao et al. 2024, "Large Language Model Unlearning",
    https://arxiv.org/abs/2310.10683 (and MUSE's KL baseline, Shi et al. 2024).
    """

    paper = "Yao et al. 2024, https://arxiv.org/abs/2310.10683"
    # What the training loop must supply: the reference's logits on each retain batch.
    reference = "logits"

    def __call__(self, batch: LossBatch) -> Tensor:
        if batch.ref_logits is None:
            raise ValueError("the KL retain loss needs the reference's logits on the retain batch (ref_logits)")
        logp = torch.log_softmax(batch.logits.float(), dim=-1)  # (B, T, V)
        ref = torch.log_softmax(batch.ref_logits.float(), dim=-1)  # (B, T, V)
        per_position = (ref.exp() * (ref - logp)).sum(-1)  # (B, T)
        per_position = torch.where(batch.mask, per_position, torch.zeros_like(per_position))
        return per_position.sum() / batch.mask.sum().clamp(min=1)
