"""Reference-model attacks: the target's loss calibrated by a second model's loss on the same text.

With several reference models (Maini et al. 2024 use several as dataset-inference features),
each reference attack runs once per model: ``reference_diff@1``, ``reference_diff@2``, ... in
the order the models were given; with one, the label is the bare name.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores

_PAPER = "Carlini et al. 2021, https://arxiv.org/abs/2012.07805"


@dataclass(frozen=True)
class ReferenceAttack(Attack):
    """A target loss against one reference model's loss on the same text.

    Attributes:
        reference: Which reference model (1-based, in the order given) when there are
            several; 0 when there is one.
    """

    access = "logits"
    needs = ("reference_model",)
    paper = _PAPER
    sweep = "reference"  # reference_diff@2 names the second model's; bare, the run gives one per model
    sweep_values = ()
    reference: int = 0

    def __post_init__(self):
        if self.reference < 0:
            raise ValueError(f"reference must be >= 0, got {self.reference}")

    @property
    def label(self) -> str:
        return f"{self.name}@{self.reference}" if self.reference else self.name

    def combine(self, loss: float, ref_loss: float) -> float | ValueError:
        raise NotImplementedError

    def score(self, ctx: AttackContext) -> AttackScores:
        index = max(self.reference, 1) - 1
        if index >= len(ctx.reference_models):
            raise ValueError(f"attack {self.label} needs reference model {index + 1}, "
                             f"but {len(ctx.reference_models)} were given")
        ref_model = ctx.reference_models[index]
        # Scored with the reference model's OWN tokenizer and BOS (score_texts encodes with
        # the model it is given); mink-plus-plus's run_ref.py feeds it the target's token ids.
        ref_scores = ctx.shared(f"reference_scores/{index}", lambda: ctx.score_texts(
            [r.text for r in ctx.records], model=ref_model, what=f"reference model {ref_model.name}"))
        values, errors = [], []
        for s, ref in zip(ctx.scores, ref_scores, strict=True):
            if s.error or ref.error:
                values.append(None)
                errors.append(f"scoring: {s.error}" if s.error else f"reference model: {ref.error}")
            else:
                value = self.combine(-s.logprob_mean, -ref.logprob_mean)
                bad = isinstance(value, ValueError)
                values.append(None if bad else value)
                errors.append(str(value) if bad else None)
        return AttackScores.from_list(values, errors, {"reference_model": ref_model.name})


@ATTACKS.register("reference_diff")
@dataclass(frozen=True)
class ReferenceDiff(ReferenceAttack):
    """L_ref − L_target: how much better the target predicts the text than a reference model.

    Text that is simply easy (common phrases, boilerplate) is easy for both; text the
    target memorised is easy only for the target. Each model scores the text with its own
    tokenizer, so L is each model's mean loss per token of its own tokenisation.

    Paper: Carlini et al. 2021, "Extracting Training Data from Large Language Models"
    (USENIX Security). Access: logits of the target and of a reference model.
    """

    name = "reference_diff"

    def combine(self, loss: float, ref_loss: float) -> float:
        return ref_loss - loss


@ATTACKS.register("reference_ratio")
@dataclass(frozen=True)
class ReferenceRatio(ReferenceAttack):
    """L_ref / L_target (the inverse of the paper's log-perplexity ratio, so higher = member).

    Paper: Carlini et al. 2021 (USENIX Security). Access: logits of the target and of a
    reference model, each with its own tokenizer.
    """

    name = "reference_ratio"

    def combine(self, loss: float, ref_loss: float) -> float | ValueError:
        return ref_loss / loss if loss > 0 else ValueError("target loss is exactly 0")
