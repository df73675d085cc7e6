"""zlib: the loss calibrated by how compressible the text is."""

from __future__ import annotations

import zlib as _zlib
from dataclasses import dataclass

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores, scored_texts


@ATTACKS.register("zlib")
@dataclass(frozen=True)
class Zlib(Attack):
    """−L / (bytes of the zlib-compressed UTF-8 text).

    A repetitive text is easy for any model; zlib's compressed length measures that
    without a model. The ratio divides the log-perplexity (L), not the perplexity, as
    the paper does (LLM-PBE divides the perplexity).

    Under ``overflow="truncate"`` L covers only the kept tokens, so the compressed size is
    that of the kept tokens decoded (:func:`~lmaudit.membership.base.scored_texts`), not of
    the whole text: a long document's ratio would otherwise shrink with the part never scored.

    Paper: Carlini et al. 2021, "Extracting Training Data from Large Language Models"
    (USENIX Security). Access: logits (the scoring pass).

    Attributes:
        level: zlib compression level (Python's default, 6, as in the paper's code).
    """

    name = "zlib"
    paper = "Carlini et al. 2021, https://arxiv.org/abs/2012.07805"
    access = "logits"
    logits_only = True
    level: int = 6

    def score(self, ctx: AttackContext) -> AttackScores:
        values, errors = [], []
        for s, text in zip(ctx.scores, scored_texts(ctx), strict=True):
            values.append(None if s.error else s.logprob_mean / len(_zlib.compress(text.encode("utf-8"), self.level)))
            errors.append(f"scoring: {s.error}" if s.error else None)
        return AttackScores.from_list(values, errors)
