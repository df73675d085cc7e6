"""Perplexity: exp(L), the peer's dataset-inference feature, oriented higher = member."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores, per_document


@ATTACKS.register("perplexity")
@dataclass(frozen=True)
class Perplexity(Attack):
    """−exp(L): minus the perplexity of the scored tokens.

    As a membership score it ranks documents exactly as ``loss`` does (a monotone
    transform: same AUC, same TPRs), so it is not in the default set. It exists for dataset
    inference, where Maini et al. use perplexity next to the loss-based features: their
    linear model sees exp(L) as a differently curved feature, so leaving it out would not
    reproduce their feature set.

    Paper: Maini et al. 2024, "LLM Dataset Inference: Did you train on my dataset?"
    (NeurIPS), https://arxiv.org/abs/2406.06443. Access: logits (the scoring pass).
    """

    name = "perplexity"
    paper = "Maini et al. 2024, https://arxiv.org/abs/2406.06443"
    access = "logits"
    default = False  # ranks as loss does
    logits_only = True

    def score(self, ctx: AttackContext) -> AttackScores:
        # exp overflows to inf past L ≈ 709; from_list turns that into an error row, not a value.
        return per_document(ctx, lambda s, _: -math.exp(-s.logprob_mean) if -s.logprob_mean < 709 else math.inf)
