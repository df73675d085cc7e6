"""Lowercase: how much worse the model does on the lowercased text."""

from __future__ import annotations

from dataclasses import dataclass

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores, score_rewritten, scored_texts


@ATTACKS.register("lowercase")
@dataclass(frozen=True)
class Lowercase(Attack):
    """L(lowercased text) / L(text).

    A memorised text is predicted well only in its exact form: lowercasing it costs the
    model more than it costs on a text it never saw. Both losses are means over each
    text's own tokens (lowercasing changes the tokenisation). Costs one more scoring pass.

    Under ``overflow="truncate"`` L(text) covers only the kept tokens, so the lowercased
    text is the kept tokens decoded and lowercased (:func:`~lmaudit.membership.base.scored_texts`),
    and it is scored whole, in windows if lowercasing made it longer than the context:
    truncating it again would cut it at another place than the text (lowercase words often
    take more tokens), and the ratio would compare two different spans.

    Paper: Carlini et al. 2021, "Extracting Training Data from Large Language Models"
    (USENIX Security). Access: logits (a second pass over the lowercased texts).
    """

    name = "lowercase"
    paper = "Carlini et al. 2021, https://arxiv.org/abs/2012.07805"
    access = "logits"

    def score(self, ctx: AttackContext) -> AttackScores:
        lower = score_rewritten(ctx, [t.lower() for t in scored_texts(ctx)], what="lowercased texts")
        values, errors = [], []
        for s, s_low in zip(ctx.scores, lower):
            if s.error or s_low.error:
                values.append(None)
                errors.append(f"scoring: {s.error}" if s.error else f"scoring the lowercased text: {s_low.error}")
            elif s.logprob_mean == 0:
                values.append(None)
                errors.append("loss of the text is exactly 0: the ratio is undefined")
            else:
                values.append(s_low.logprob_mean / s.logprob_mean)  # = L(lower) / L(text)
                errors.append(None)
        return AttackScores.from_list(values, errors)
