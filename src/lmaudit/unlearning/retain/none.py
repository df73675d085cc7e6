"""No retain regulariser (gradient ascent, NPO or SimNPO alone)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lmaudit.unlearning import RETAIN_LOSSES
from lmaudit.unlearning.batch import LossBatch


@RETAIN_LOSSES.register("none")
@dataclass(frozen=True)
class NoRetain:
    """0, on the batch's device: the forget loss alone."""

    paper = ""

    def __call__(self, batch: LossBatch) -> Tensor:
        return torch.zeros((), device=batch.logits.device)
