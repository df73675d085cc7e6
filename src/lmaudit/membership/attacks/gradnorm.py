"""GradNorm: the size of the loss gradient with respect to the weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores
from lmaudit.scoring.score import plan_windows


@ATTACKS.register("gradnorm")
@dataclass(frozen=True)
class GradNorm(Attack):
    """−mean over parameter tensors of ‖∇_θ L(x)‖₂.

    Training drives the gradient of a member's loss towards zero; an unseen text still
    pulls on the weights. The mean is over tensors (each tensor's L2 norm, then the
    average), as in mimir, so a few huge tensors do not dominate. One backward pass per
    document (per window for long ones), so it is the slowest attack here.

    Paper: as implemented in mimir, Duan et al. 2024, "Do Membership Inference Attacks Work
    on Large Language Models?" (COLM). Access: gradients (white-box).
    """

    name = "gradnorm"
    paper = "Duan et al. 2024 (mimir), https://arxiv.org/abs/2402.07841"
    access = "gradients"
    default = False
    capabilities = ("gradients",)

    def score(self, ctx: AttackContext) -> AttackScores:
        model = ctx.model
        policy = ctx.policy.resolved(model.max_length)
        values: list[float | None] = []
        errors: list[str | None] = []
        advance = ctx.on_pass("GradNorm backward passes", len(ctx.records)) if ctx.on_pass else None
        for rec, s in zip(ctx.records, ctx.scores):
            if s.error is not None:
                values.append(None)
                errors.append(f"scoring: {s.error}")
            else:
                windows, _, error = plan_windows(model.encode([rec.text])[0], policy, bos_token_id=model.bos_token_id)
                values.append(-float(np.mean(model.gradient_norms(windows))) if error is None else None)
                errors.append(error)
            if advance:
                advance(1)
        return AttackScores.from_list(values, errors)
