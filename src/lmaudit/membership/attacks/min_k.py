"""Min-K% Prob: the mean log-probability of the document's least likely tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaudit.membership.base import ATTACKS, KSweepAttack


@ATTACKS.register("min_k")
@dataclass(frozen=True)
class MinK(KSweepAttack):
    """Mean of the ⌊k·N⌋ smallest log p(x_t | x_<t) (at least one token).

    A non-member contains a few outlier tokens the model finds very unlikely; a member
    seldom does. Named ``min_k@k``; without ``@`` it sweeps k over 0.05 … 0.6.

    Paper: Shi et al. 2024, "Detecting Pretraining Data from Large Language Models" (ICLR).
    Access: logits (the scoring pass).

    Attributes:
        k: Fraction of tokens averaged, in (0, 1] (default 0.2, the paper's).
    """

    name = "min_k"
    paper = "Shi et al. 2024, https://arxiv.org/abs/2310.16789"
    access = "logits"

    def token_values(self, stats) -> np.ndarray:
        return stats.logprob
