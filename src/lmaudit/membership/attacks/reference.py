"""Reference-model attacks: the target's loss calibrated by a second model's loss on the same text."""

from __future__ import annotations

from dataclasses import dataclass

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores

_PAPER = "Carlini et al. 2021, https://arxiv.org/abs/2012.07805"


def _reference_pass(ctx: AttackContext):
    # Scored with the reference model's OWN tokenizer and BOS (score_texts encodes with the
    # model it is given); mink-plus-plus's run_ref.py feeds it the target's token ids.
    return ctx.shared("reference_scores", lambda: ctx.score_texts(
        [r.text for r in ctx.records], model=ctx.reference_model, what="reference model"))


def _paired(ctx: AttackContext, combine) -> AttackScores:
    values, errors = [], []
    for s, ref in zip(ctx.scores, _reference_pass(ctx)):
        if s.error or ref.error:
            values.append(None)
            errors.append(f"scoring: {s.error}" if s.error else f"reference model: {ref.error}")
        else:
            value = combine(-s.logprob_mean, -ref.logprob_mean)
            bad = isinstance(value, ValueError)
            values.append(None if bad else value)
            errors.append(str(value) if bad else None)
    return AttackScores.from_list(values, errors)


@ATTACKS.register("reference_diff")
@dataclass(frozen=True)
class ReferenceDiff(Attack):
    """L_ref − L_target: how much better the target predicts the text than a reference model.

    Text that is simply easy (common phrases, boilerplate) is easy for both; text the
    target memorised is easy only for the target. Each model scores the text with its own
    tokenizer, so L is each model's mean loss per token of its own tokenisation.

    Paper: Carlini et al. 2021, "Extracting Training Data from Large Language Models"
    (USENIX Security). Access: logits of the target and of a reference model.
    """

    name = "reference_diff"
    paper = _PAPER
    access = "logits"
    needs = ("reference_model",)

    def score(self, ctx: AttackContext) -> AttackScores:
        return _paired(ctx, lambda loss, ref_loss: ref_loss - loss)


@ATTACKS.register("reference_ratio")
@dataclass(frozen=True)
class ReferenceRatio(Attack):
    """L_ref / L_target (the inverse of the paper's log-perplexity ratio, so higher = member).

    Paper: Carlini et al. 2021 (USENIX Security). Access: logits of the target and of a
    reference model, each with its own tokenizer.
    """

    name = "reference_ratio"
    paper = _PAPER
    access = "logits"
    needs = ("reference_model",)

    def score(self, ctx: AttackContext) -> AttackScores:
        return _paired(ctx, lambda loss, ref_loss: ref_loss / loss if loss > 0 else ValueError("target loss is exactly 0"))
