"""What an unlearning loss sees of one batch, and the log-probabilities it is built from.

Shapes: B sequences, T positions, V vocabulary entries. ``logits[:, t]`` is the model's
prediction of ``labels[:, t]`` (the caller has already shifted them), and ``mask[:, t]`` says
whether position t counts: padding, and any prompt the loss must not touch, are False.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LossBatch:
    """One batch as every loss reads it.

    Attributes:
        logits: (B, T, V) of the model being trained.
        labels: (B, T) token ids; any value at positions ``mask`` leaves out.
        mask: (B, T) bool, the positions in the loss.
        ref_logprob: (B,) each sequence's log-likelihood under the frozen reference (NPO):
            computed once before training and cached, so no second model is kept for it.
        ref_logits: (B, T, V) of the frozen reference (KL retain); None otherwise.
    """

    logits: Tensor
    labels: Tensor
    mask: Tensor
    ref_logprob: Tensor | None = None
    ref_logits: Tensor | None = None

    def __post_init__(self) -> None:
        B, T = self.labels.shape
        if self.logits.shape[:2] != (B, T) or self.mask.shape != (B, T):
            raise ValueError(f"logits {tuple(self.logits.shape)}, labels {(B, T)} and mask "
                             f"{tuple(self.mask.shape)} must agree on (B, T)")
        if self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool, got {self.mask.dtype}")


def token_logprobs(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """log p(labels[:, t]) at every position, in float32; 0 where ``mask`` is False (so a pad
    id that is out of the vocabulary, such as -100, is never looked up).

    >>> logits = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))
    >>> token_logprobs(logits, torch.tensor([[1, -100]]), torch.tensor([[True, False]]))
    tensor([[-0.6931,  0.0000]])
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    safe = torch.where(mask, labels, torch.zeros_like(labels))
    picked = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return torch.where(mask, picked, torch.zeros_like(picked))


def sequence_logprobs(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """(B,) log-likelihood of each sequence: the sum of its counted tokens' log-probabilities."""
    return token_logprobs(logits, labels, mask).sum(-1)
