"""Gradient ascent: raise the forget set's loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from lmaudit.unlearning import FORGET_LOSSES
from lmaudit.unlearning.batch import LossBatch, token_logprobs


@FORGET_LOSSES.register("ga")
@dataclass(frozen=True)
class GradientAscent:
    """−CE on the forget set: minimising it raises the forget set's cross-entropy.

    Paper: Jang et al. 2023, "Knowledge Unlearning for Mitigating Privacy Risks in Language
    Models", https://arxiv.org/abs/2210.01504.

    Attributes:
        reduction: ``token``, the mean over every counted token of the batch (what
            ``-model(...).loss`` gives, as open-unlearning and MUSE use it); or ``sequence``,
            the mean over sequences of each one's summed log-likelihood (the form NPO reduces
            to at the reference, and as β → 0).
    """

    reduction: str = "token"
    paper = "Jang et al. 2023, https://arxiv.org/abs/2210.01504"

    def __post_init__(self) -> None:
        if self.reduction not in ("token", "sequence"):
            raise ValueError(f"reduction must be 'token' or 'sequence', got {self.reduction!r}")

    def __call__(self, batch: LossBatch) -> Tensor:
        logp = token_logprobs(batch.logits, batch.labels, batch.mask)  # (B, T)
        if self.reduction == "sequence":
            return logp.sum(-1).mean()
        return logp.sum() / batch.mask.sum().clamp(min=1)
