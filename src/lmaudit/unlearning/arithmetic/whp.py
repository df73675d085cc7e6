"""Who's Harry Potter: an inference-time combination of the model and a reinforced copy."""

from __future__ import annotations

from dataclasses import dataclass

from lmaudit.unlearning import ARITHMETIC


@ARITHMETIC.register("whp")
@dataclass(frozen=True)
class WhoIsHarryPotter:
    """Next-token logits z_b − α·ReLU(z_r − z_b): z_b the model's, z_r those of a "reinforced"
    copy fine-tuned further on the forget set. Tokens the reinforced model likes more than the
    base (the forget set's own continuations) are pushed down; the others keep the base's logits.

    The result is not a set of weights but a model evaluated through both networks at
    inference time: :class:`lmaudit.models.whp.WHPModel`. On disk it is the reinforced model's
    folder with ``lmaudit_whp.json`` naming the base and α, which every lmaudit command loads
    as that combination.

    This is the paper's logit combination only; its second stage (generic translations of
    anchored terms, then fine-tuning on the combination's outputs) is not implemented.

    Paper: Eldan & Russinovich 2023, "Who's Harry Potter? Approximate Unlearning in LLMs",
    https://arxiv.org/abs/2310.02238.

    Attributes:
        alpha: Strength of the push away from the reinforced model (α = 0: the base).
    """

    alpha: float = 1.0
    paper = "Eldan & Russinovich 2023, https://arxiv.org/abs/2310.02238"
    inference_time = True

    def at_epoch(self, base, finetuned, tokenizer):
        """What ``on_epoch`` sees: a :class:`~lmaudit.models.whp.WHPModel` over both (an
        lmaudit model, since the combination has no weights of its own)."""
        from lmaudit.models.hf import HFModel
        from lmaudit.models.whp import WHPModel

        return WHPModel(HFModel(base, tokenizer), HFModel(finetuned, tokenizer), alpha=self.alpha)

    def final(self, base, finetuned):
        """The method's output: the reinforced model (``base`` is left as it was)."""
        return finetuned.eval()
