"""SimNPO: NPO without a reference model, on length-normalised likelihoods."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from lmaudit.unlearning import FORGET_LOSSES
from lmaudit.unlearning.batch import LossBatch, token_logprobs


@FORGET_LOSSES.register("simnpo")
@dataclass(frozen=True)
class SimNPO:
    """−(2/β)·log σ(β·[NLL_θ(y)/|y| − δ]), averaged over sequences.

    NLL/|y| is the sequence's mean token loss, so long and short forget documents weigh
    alike; δ shifts the margin (δ = 0, the paper's default for most settings).

    Paper: Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization
    for LLM Unlearning", https://arxiv.org/abs/2410.07163.

    Attributes:
        beta: Inverse temperature; the paper uses 2.5-4.5.
        delta: Margin δ on the mean token loss.
    """

    beta: float = 2.5
    delta: float = 0.0
    paper = "Fan et al. 2024, https://arxiv.org/abs/2410.07163"

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")

    def __call__(self, batch: LossBatch) -> Tensor:
        logp = token_logprobs(batch.logits, batch.labels, batch.mask)  # (B, T)
        mean_nll = -logp.sum(-1) / batch.mask.sum(-1).clamp(min=1)  # (B,)
        return (-2.0 / self.beta * F.logsigmoid(self.beta * (mean_nll - self.delta))).mean()
