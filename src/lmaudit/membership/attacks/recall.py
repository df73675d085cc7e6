"""ReCaLL: how much a non-member prefix lowers the model's likelihood of the document."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores


def build_prefix(model, prefix_texts, budget: int) -> tuple[list[int], int]:
    """Token ids of as many whole prefix documents as fit in ``budget`` tokens (the last ones).

    Documents are separated by the model's EOS token, the boundary between documents in
    packed pretraining data. Returns (ids, number of documents used).
    """
    docs = model.encode(list(prefix_texts))
    sep = [model.eos_token_id] if model.eos_token_id is not None else []
    ids: list[int] = []
    used = 0
    for doc in reversed(docs):  # keep the documents nearest the target whole
        candidate = [*doc, *sep, *ids]
        if len(candidate) > budget:
            break
        ids, used = candidate, used + 1
    return ids, used


@ATTACKS.register("recall")
@dataclass(frozen=True)
class ReCaLL(Attack):
    """L(x | P) / L(x), P a prefix of known non-member documents.

    Conditioning on non-member text lowers a member's log-likelihood more than a
    non-member's, so the ratio is larger for members. Both losses are over exactly the
    same tokens of x: the prefix and the text are tokenized separately and joined as
    ``[BOS] P [EOS] x``, so no BOS lands mid-sequence and x's tokenisation is unchanged.

    The prefix documents come from the non-members supplied for evaluation unless the
    caller gives its own; either way they are removed from the evaluation set, and the
    result says which ones were used. As many whole documents as fit beside the longest
    text in the model's context are used (``shots_used`` in the results); texts that need
    sliding windows get an error row.

    Paper: Xie et al. 2024, "ReCaLL: Membership Inference via Relative Conditional
    Log-Likelihoods" (EMNLP). Access: logits (one more pass with the prefix).

    How many non-members are drawn is a run option (``MembershipConfig.recall_shots``,
    default 5), since drawing them changes the evaluation set of every attack.
    """

    name = "recall"
    paper = "Xie et al. 2024, https://arxiv.org/abs/2406.15968"
    access = "logits"
    default = False
    draws_prefix = True

    def score(self, ctx: AttackContext) -> AttackScores:
        model, policy = ctx.model, ctx.policy.resolved(ctx.model.max_length)
        bos = [model.bos_token_id] if policy.bos == "prepend" else []
        single = [s for s in ctx.scores if s.error is None and s.n_windows == 1 and not s.n_truncated]
        longest = max((s.n_text_tokens for s in single), default=0)
        prefix, used = build_prefix(model, [r.text for r in ctx.prefix], policy.max_length - len(bos) - longest)
        values: list[float | None] = [None] * len(ctx.scores)
        errors: list[str | None] = [None] * len(ctx.scores)
        todo = []
        for i, s in enumerate(ctx.scores):
            if s.error is not None:
                errors[i] = f"scoring: {s.error}"
            elif s.n_windows > 1 or s.n_truncated:
                errors[i] = "text longer than the context: no room for the ReCaLL prefix"
            elif used == 0:
                errors[i] = f"not one prefix document fits beside a {longest}-token text in {policy.max_length} tokens"
            else:
                todo.append(i)
        ids = model.encode([ctx.records[i].text for i in todo])
        seqs = [[*bos, *prefix, *x] for x in ids]
        # Score exactly the tokens the plain pass scored: all of x after a BOS; from x's
        # second token under bos="none", where x's first token is context only.
        starts = [len(bos) + len(prefix) + (0 if bos else 1) for _ in seqs]
        advance = ctx.on_pass("ReCaLL prefix pass", len(todo)) if ctx.on_pass else None
        order = sorted(range(len(todo)), key=lambda j: len(seqs[j]))  # bucket by length
        for b in range(0, len(order), ctx.batch_size):
            batch = order[b : b + ctx.batch_size]
            stats = model.token_stats([seqs[j] for j in batch], [starts[j] for j in batch],
                                      padding_side=policy.padding_side)
            for j, st in zip(batch, stats):
                i = todo[j]
                assert len(st.logprob) == ctx.scores[i].n_tokens, "ReCaLL must score the same tokens as the plain pass"
                conditional = -float(np.mean(st.logprob, dtype=np.float64))
                loss = -ctx.scores[i].logprob_mean
                if loss == 0 or not np.isfinite(conditional):
                    errors[i] = "loss of the text is exactly 0 or the conditional loss is not finite"
                else:
                    values[i] = conditional / loss
            if advance:
                advance(len(batch))
        used_ids = [r.id for r in ctx.prefix][len(ctx.prefix) - used :]  # the last `used` documents
        info = {"shots_drawn": len(ctx.prefix), "shots_used": used, "prefix_tokens": len(prefix), "prefix_ids": used_ids}
        return AttackScores.from_list(values, errors, info)

