"""Negative preference optimisation: gradient ascent that slows down as the forget set's
likelihood falls below the reference's."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from lmaudit.unlearning import FORGET_LOSSES
from lmaudit.unlearning.batch import LossBatch, sequence_logprobs


@FORGET_LOSSES.register("npo")
@dataclass(frozen=True)
class NPO:
    """−(2/β)·log σ(−β·[log π_θ(y) − log π_ref(y)]), averaged over sequences.

    The log-ratio is of whole-sequence log-likelihoods (MUSE's implementation differences
    per-logit values instead: a different loss). At θ = reference its gradient is gradient
    ascent's on summed log-likelihoods, and it tends to it as β → 0; as log π_θ(y) falls
    below log π_ref(y), the weight 2σ(β·Δ) on each sequence's gradient falls to 0, which is
    what keeps NPO from GA's collapse.

    Paper: Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic Collapse
    to Effective Unlearning", https://arxiv.org/abs/2404.05868.

    Attributes:
        beta: Inverse temperature (0.1, the paper's and open-unlearning's default).
    """

    beta: float = 0.1
    paper = "Zhang et al. 2024, https://arxiv.org/abs/2404.05868"
    # What the training loop must supply: each forget sequence's reference log-likelihood.
    reference = "logprob"

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")

    def __call__(self, batch: LossBatch) -> Tensor:
        if batch.ref_logprob is None:
            raise ValueError("NPO needs each forget sequence's reference log-likelihood (ref_logprob): "
                             "compute it once with the frozen model before training")
        ratio = sequence_logprobs(batch.logits, batch.labels, batch.mask) - batch.ref_logprob.float()  # (B,)
        return (-2.0 / self.beta * F.logsigmoid(-self.beta * ratio)).mean()
