"""Min-K%++: Min-K% on log-probabilities standardised by the model's own next-token distribution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaudit.membership.base import ATTACKS, KSweepAttack


def z_scores(stats) -> np.ndarray:
    """z_t = (log p(x_t) − μ_t) / σ_t with μ_t, σ_t the mean and std of log p under p_t.

    σ_t = 0 only for a point-mass distribution, where log p(x_t) = μ_t (otherwise the
    token would have probability 0 and the scorer has already made the row an error): z = 0.
    """
    lp, mu, sd = (x.astype(np.float64) for x in (stats.logprob, stats.vocab_mean, stats.vocab_std))
    return np.divide(lp - mu, sd, out=np.zeros_like(lp), where=sd > 0)


@ATTACKS.register("min_k_pp")
@dataclass(frozen=True)
class MinKPlusPlus(KSweepAttack):
    """Mean of the ⌊k·N⌋ smallest z_t = (log p(x_t) − μ_t) / σ_t (at least one token).

    Training pushes members towards local maxima of the likelihood, so their tokens sit
    high in their next-token distribution relative to its mean μ_t = E_p[log p] and spread
    σ_t. μ_t and σ_t come from the scoring pass (computed in float32 on the device), so the
    attack costs no extra forward pass. Named ``min_k_pp@k``; without ``@`` it sweeps k.

    Paper: Zhang et al. 2025, "Min-K%++: Improved Baseline for Detecting Pre-Training Data
    from Large Language Models" (ICLR). Access: logits (the scoring pass).

    Attributes:
        k: Fraction of tokens averaged, in (0, 1] (default 0.2, the paper's).
    """

    name = "min_k_pp"
    paper = "Zhang et al. 2025, https://arxiv.org/abs/2404.02936"
    access = "logits"
    capabilities = ("vocab_stats",)  # μ_t and σ_t need the whole distribution (vLLM gives neither)

    def token_values(self, stats) -> np.ndarray:
        return z_scores(stats)
