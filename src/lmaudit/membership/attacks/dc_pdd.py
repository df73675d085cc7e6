"""DC-PDD: token probabilities calibrated by how rare each token is in a reference corpus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores, per_document


def token_frequencies(model, texts, *, vocab_size: int) -> np.ndarray:
    """Laplace-smoothed relative frequency of every token id in ``texts``: (count + 1) / (total + V)."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for ids in model.encode(list(texts)):
        np.add.at(counts, np.asarray(ids, dtype=np.int64), 1)
    return (counts + 1) / (counts.sum() + vocab_size)


def dc_pdd_score(token_ids: np.ndarray, logprob: np.ndarray, freq: np.ndarray, max_alpha: float) -> float:
    """Mean over first occurrences of min(p(x_t) · log(1 / f(x_t)), max_alpha)."""
    _, first = np.unique(token_ids, return_index=True)  # each distinct token once, where it first appears
    first = np.sort(first)
    alpha = np.exp(logprob[first].astype(np.float64)) * -np.log(freq[token_ids[first]])
    return float(np.mean(np.minimum(alpha, max_alpha)))


@ATTACKS.register("dc_pdd")
@dataclass(frozen=True)
class DCPDD(Attack):
    """Mean over the first occurrence of each distinct token of min(p(x_t)·log(1/f(x_t)), a).

    A token the model finds likely although it is rare in ordinary text points at a seen
    document; common tokens carry little weight, and repeats of a token count once. f is
    a Laplace-smoothed frequency over a reference corpus the user provides, tokenized with
    the target's tokenizer (the paper's frequency table was never released). The first
    token is scored after the policy's BOS (the paper prepends EOS for the same reason).

    Paper: Zhang et al. 2024, "Pretraining Data Detection for Large Language Models: A
    Divergence-based Calibration Method" (EMNLP). Access: logits (the scoring pass) and a
    reference corpus.

    Attributes:
        max_alpha: Upper clip of each token's contribution (the official code's a = 0.01).
    """

    name = "dc_pdd"
    paper = "Zhang et al. 2024, https://arxiv.org/abs/2409.14781"
    access = "logits"
    needs = ("reference_corpus",)
    max_alpha: float = 0.01

    def score(self, ctx: AttackContext) -> AttackScores:
        vocab = ctx.model.vocab_size
        freq = ctx.shared("dc_pdd_frequencies", lambda: token_frequencies(
            ctx.model, [r.text for r in ctx.reference_corpus], vocab_size=vocab))
        return per_document(ctx, lambda s, _: dc_pdd_score(s.stats.token_ids, s.stats.logprob, freq, self.max_alpha))


