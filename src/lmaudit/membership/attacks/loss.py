"""LOSS: the model's mean log-likelihood of the document."""

from __future__ import annotations

from dataclasses import dataclass

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores, per_document


@ATTACKS.register("loss")
@dataclass(frozen=True)
class Loss(Attack):
    """−L, the mean log-probability of the scored tokens: members are better predicted.

    Paper: Yeom et al. 2018, "Privacy Risk in Machine Learning: Analyzing the Connection to
    Overfitting" (CSF). Access: logits (the scoring pass). No parameters.
    """

    name = "loss"
    paper = "Yeom et al. 2018, https://arxiv.org/abs/1709.01604"
    access = "logits"
    logits_only = True

    def score(self, ctx: AttackContext) -> AttackScores:
        return per_document(ctx, lambda s, _: s.logprob_mean)
