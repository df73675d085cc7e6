"""Perturbation attacks: how much the loss rises when the text is slightly edited (dataset-inference features)."""

from __future__ import annotations

from dataclasses import dataclass

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores, score_rewritten, scored_texts
from lmaudit.membership.perturb.edits import EDITS, NothingToEdit, apply_edit, edit_rates

_PAPER = "Maini et al. 2024, https://arxiv.org/abs/2406.06443"


def _edited_losses(ctx: AttackContext, kind: str) -> list[tuple[float | None, str | None]]:
    """Per document, (L(x̃), None) or (None, why there is none): one pass per kind of edit,
    shared by ``perturb_diff@kind`` and ``perturb_ratio@kind``."""
    def compute() -> list[tuple[float | None, str | None]]:
        out: list = [(None, f"scoring: {s.error}") if s.error else None for s in ctx.scores]
        edited: dict[int, str] = {}
        for i, text in enumerate(scored_texts(ctx)):  # the span the loss covers (see scored_texts)
            if out[i] is None:
                try:
                    edited[i] = apply_edit(kind, text, seed=ctx.seed)
                except NothingToEdit as err:
                    out[i] = (None, f"perturbation {kind}: the text {err}")
        scored = score_rewritten(ctx, list(edited.values()), what=f"perturbed texts ({kind})") if edited else []
        for i, s in zip(edited, scored, strict=True):
            out[i] = (None, f"scoring the perturbed text ({kind}): {s.error}") if s.error else (-s.logprob_mean, None)
        return out

    return ctx.shared(f"perturbed/{kind}", compute)


@dataclass(frozen=True)
class _Perturbation(Attack):
    """The loss of an edited copy against the text's loss; the kind of edit is the parameter.

    Attributes:
        kind: The edit (:data:`lmaudit.membership.perturb.edits.EDITS`): ``word_swap``,
            ``typos``, ``deletion``, ``case``, ``whitespace`` or ``underscores``.
    """

    paper = _PAPER
    access = "logits"
    default = False  # one more pass per kind of edit
    sweep = "kind"
    sweep_values = tuple(EDITS)
    kind: str = "typos"

    def __post_init__(self):
        if self.kind not in EDITS:
            raise ValueError(f"unknown perturbation {self.kind!r}; one of {', '.join(EDITS)}")

    def combine(self, loss: float, edited_loss: float) -> tuple[float | None, str | None]:
        """(score, None), or (None, why) when the score is undefined."""
        raise NotImplementedError

    def score(self, ctx: AttackContext) -> AttackScores:
        values, errors = [], []
        for s, (edited_loss, why) in zip(ctx.scores, _edited_losses(ctx, self.kind), strict=True):
            value, why = (None, why) if why else self.combine(-s.logprob_mean, edited_loss)
            values.append(value)
            errors.append(why)
        return AttackScores.from_list(values, errors, {"edit": {"kind": self.kind, **edit_rates(self.kind)}})


@ATTACKS.register("perturb_diff")
@dataclass(frozen=True)
class PerturbDiff(_Perturbation):
    """L(x̃) − L(x): how much the mean token loss rises when the text is edited.

    A memorised text sits in a sharp dip of the loss, so a few typos, deleted words or
    flipped cases cost the model more on it than on a text it never saw. Maini et al. edit
    every document with six NL-Augmenter transformations and feed the loss under each,
    against the original's, to their dataset-inference classifier; here each is an offline,
    seeded edit (:mod:`lmaudit.membership.perturb.edits`, whose docstring gives the rates and
    where they differ from NL-Augmenter's). Their ``ppl_diff`` is L(x) − L(x̃); this is minus
    it, so that higher = member. Named ``perturb_diff@kind`` (``perturb_diff@typos``);
    without ``@`` it runs every kind. ``perturb_ratio@kind`` shares the pass over the edited
    texts. A document the edit cannot change (no letter for typos, one word for deletion)
    gets an error row naming why: a copy equal to the text would give a feature of 0 that
    says nothing. Not in the default set: a feature for ``dataset-inference --attacks``.

    Paper: Maini et al. 2024, "LLM Dataset Inference: Did you train on my dataset?"
    (NeurIPS). Access: logits (one more pass per kind of edit).
    """

    name = "perturb_diff"

    def combine(self, loss, edited_loss):
        return edited_loss - loss, None


@ATTACKS.register("perturb_ratio")
@dataclass(frozen=True)
class PerturbRatio(_Perturbation):
    """L(x̃) / L(x): the mean token loss of the edited text relative to the text's.

    The inverse of Maini et al.'s ``ppl_ratio`` feature, L(x) / L(x̃) (despite its name, a
    ratio of mean losses, not of perplexities), so that higher = member; otherwise as
    ``perturb_diff``, with which it shares the pass over the edited texts. A text whose loss
    is exactly 0 gets an error row: the ratio is undefined.

    Paper: Maini et al. 2024, "LLM Dataset Inference: Did you train on my dataset?"
    (NeurIPS). Access: logits (one more pass per kind of edit, shared with perturb_diff).
    """

    name = "perturb_ratio"

    def combine(self, loss, edited_loss):
        if loss == 0:
            return None, "loss of the text is exactly 0: the ratio is undefined"
        return edited_loss / loss, None
