"""Task vector negation: fine-tune on the forget set, then move the weights the other way."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from lmaudit.unlearning import ARITHMETIC


@ARITHMETIC.register("task_vector")
@dataclass(frozen=True)
class TaskVector:
    """θ − α·(θ_ft − θ), θ_ft the model fine-tuned on the forget set by ordinary NLL.

    The difference θ_ft − θ is the "task vector" of the forget set; subtracting it (α = 1)
    undoes as much as fine-tuning added; α = 0 returns θ unchanged.

    Paper: Ilharco et al. 2023, "Editing Models with Task Arithmetic",
    https://arxiv.org/abs/2212.04089.

    Attributes:
        alpha: Scale of the negated task vector.
    """

    alpha: float = 1.0
    paper = "Ilharco et al. 2023, https://arxiv.org/abs/2212.04089"
    # The result is a set of weights, saved as a plain causal LM.
    inference_time = False

    def combine(self, base, finetuned, *, in_place: bool = False):
        """The negated model: ``base`` itself (``in_place``) or a copy, with θ − α(θ_ft − θ).

        Args:
            base: The original transformers model θ.
            finetuned: The same architecture fine-tuned on the forget set (plain, merged).
        """
        out = base if in_place else copy.deepcopy(base)
        tuned = dict(finetuned.named_parameters())
        with torch.no_grad():
            for name, p in out.named_parameters():  # tied weights are listed once
                theta = p.float()
                p.copy_((theta - self.alpha * (tuned[name].float() - theta)).to(p.dtype))
        return out.eval()

    def at_epoch(self, base, finetuned, tokenizer):
        """What ``on_epoch`` sees: the negated model, as a new transformers model."""
        return self.combine(base, finetuned)

    def final(self, base, finetuned):
        """The method's output: ``base`` negated in place."""
        return self.combine(base, finetuned, in_place=True)

