"""Neighbourhood: the document's loss against the losses of slightly changed copies of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores


@ATTACKS.register("neighbourhood")
@dataclass(frozen=True)
class Neighbourhood(Attack):
    """mean_j L(x̃_j) − L(x) over n neighbours x̃_j of x.

    A memorised text sits in a sharp dip of the loss: changing a few of its words raises
    the loss far more than it does for an unseen text of the same kind. The neighbours
    come from the context's perturber (by default :class:`WordSwapPerturber`, which
    needs no model; a masked-LM perturber as in the paper can be plugged in). The
    neighbours' losses are averaged, as the paper defines it (mimir takes the max).

    Paper: Mattern et al. 2023, "Membership Inference Attacks against Language Models via
    Neighbourhood Comparison" (Findings of ACL). Access: logits (n more passes).

    Attributes:
        n_neighbours: Neighbours per document (the paper uses 25-100; each costs a pass).
    """

    name = "neighbourhood"
    paper = "Mattern et al. 2023, https://arxiv.org/abs/2305.18462"
    access = "logits"
    default = False  # one pass per neighbour: 10x a scoring pass
    n_neighbours: int = 10

    def score(self, ctx: AttackContext) -> AttackScores:
        from lmaudit.membership.perturb import PerturbError, WordSwapPerturber

        perturber = ctx.perturber or WordSwapPerturber()
        texts = [r.text for r in ctx.records]
        errors: list[str | None] = [f"scoring: {s.error}" if s.error else None for s in ctx.scores]
        todo = [i for i, e in enumerate(errors) if e is None]
        made: list[list[str]] = []
        while todo:
            # The texts the perturber names get error rows; the rest are perturbed again
            # together, so their neighbours are what one call without the bad texts makes
            # (never each text alone: a pool built from the batch would change).
            try:
                made = perturber.perturb([texts[i] for i in todo], n=self.n_neighbours, seed=ctx.seed)
                break
            except PerturbError as err:
                if not err.reasons or not all(0 <= k < len(todo) for k in err.reasons):
                    raise ValueError(f"{perturber.name} raised PerturbError naming no text of the batch: {err}") from None
                for k, reason in err.reasons.items():
                    i = todo[k]  # the perturber's index is within the batch it was given
                    errors[i] = f"no neighbours: document {ctx.records[i].id!r} (index {i}) {reason}"
                todo = [i for i in todo if errors[i] is None]
        neighbours = dict(zip(todo, made, strict=True))
        short = [i for i, group in neighbours.items() if len(group) != self.n_neighbours]
        if short:
            raise ValueError(f"{perturber.name} returned {len(neighbours[short[0]])} neighbours for document "
                             f"{ctx.records[short[0]].id!r}, not {self.n_neighbours}")
        flat = [t for i in sorted(neighbours) for t in neighbours[i]]
        scored = iter(ctx.score_texts(flat, what="neighbours"))
        values: list[float | None] = [None] * len(texts)
        for i in sorted(neighbours):
            group = [next(scored) for _ in neighbours[i]]
            bad = [g.error for g in group if g.error]
            if bad:
                errors[i] = f"a neighbour could not be scored: {bad[0]}"
                continue
            values[i] = float(np.mean([-g.logprob_mean for g in group])) + ctx.scores[i].logprob_mean
        return AttackScores.from_list(values, errors, {"perturber": perturber.describe()})
