"""Max-K%: the mean log-probability of the document's most likely tokens (a dataset-inference feature)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaudit.membership.base import ATTACKS, AttackContext, AttackScores, KSweepAttack


@ATTACKS.register("max_k")
@dataclass(frozen=True)
class MaxK(KSweepAttack):
    """Mean of the ⌊k·N⌋ largest log p(x_t | x_<t) (at least one token): Min-K%'s other end.

    Training raises the probability of every token of a member, the easy ones too, so the
    tokens a model is surest of are surer still for members; higher = member, as for LOSS.
    Maini et al.'s code computes it from per-token losses as the mean of the ⌊k·N⌋
    *smallest* losses (``k_min_probs``; its ``k_max_probs`` is Min-K%): the same tokens,
    with the opposite sign, so ``max_k@k`` is minus their feature. The count is the same
    ⌊k·N⌋ (their ``int``), except that lmaudit reads k as the decimal written
    (0.3 × 10 tokens is 3, not 2). Named ``max_k@k``; without ``@`` it sweeps k over
    0.05 … 0.6, their values. Not in the default set: it is a feature for
    ``dataset-inference --attacks``, not a published per-document attack.

    Paper: Maini et al. 2024, "LLM Dataset Inference: Did you train on my dataset?"
    (NeurIPS). Access: logits (the scoring pass).

    Attributes:
        k: Fraction of tokens averaged, in (0, 1] (default 0.2).
    """

    name = "max_k"
    paper = "Maini et al. 2024, https://arxiv.org/abs/2406.06443"
    access = "logits"
    default = False

    def token_values(self, stats) -> np.ndarray:
        return -stats.logprob  # the token losses, whose lowest fraction k are the likeliest tokens

    def score(self, ctx: AttackContext) -> AttackScores:
        lowest_losses = super().score(ctx)  # mean loss of the ⌊kN⌋ likeliest tokens: lower = member
        return AttackScores(-lowest_losses.values, lowest_losses.errors, lowest_losses.info)
