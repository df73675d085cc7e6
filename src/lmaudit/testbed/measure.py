"""What a testbed measures about its own model: loss and greedy extraction per split and per
duplication level, recorded in testbed.json so every audit can be checked against it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lmaudit.data import Record
from lmaudit.models.base import GenerationConfig

if TYPE_CHECKING:
    from lmaudit.testbed.build import TestbedConfig


def measure(lm, members: list[dict], nonmembers: list[dict], cfg: "TestbedConfig", *, batch_size: int = 64) -> dict:
    """The figures that show the model really memorised its members.

    Mean loss (−mean log p, BOS prepended) per split, and the Carlini-style extraction
    rate: greedy continuation of the first ``prefix_tokens`` tokens reproduces the next
    ``continuation_tokens`` exactly. Both are broken down by duplication level.
    """
    from lmaudit.scoring.score import score_records

    out: dict = {}
    per_row: dict[str, dict] = {}
    for split, rows in (("members", members), ("nonmembers", nonmembers)):
        recs = [Record(id=r["id"], text=r["text"], source=split, line=i + 1) for i, r in enumerate(rows)]
        scores = score_records(lm, recs, batch_size=batch_size)
        ids = lm.encode([r["text"] for r in rows])
        p, c = cfg.prefix_tokens, cfg.continuation_tokens
        prompts = [[lm.bos_token_id, *x[:p]] for x in ids]
        gen = lm.generate(prompts, GenerationConfig(max_new_tokens=c, stop_at_eos=False), batch_size=batch_size)
        hits = [g == x[p : p + c] for g, x in zip(gen, ids)]
        losses = [-s.logprob_mean for s in scores]
        for r, loss, hit in zip(rows, losses, hits):
            per_row[r["id"]] = {"loss": loss, "extracted": hit}
        out[split] = {
            "n": len(rows),
            "mean_loss": round(float(np.mean(losses)), 4),
            "extraction_rate": round(float(np.mean(hits)), 4),
        }
    by_level = {}
    for copies, _ in cfg.duplication:
        rows = [r for r in members if r["duplication"] == copies]
        by_level[str(copies)] = {
            "n": len(rows),
            "mean_loss": round(float(np.mean([per_row[r["id"]]["loss"] for r in rows])), 4),
            "extraction_rate": round(float(np.mean([per_row[r["id"]]["extracted"] for r in rows])), 4),
        }
    out["members_by_duplication"] = by_level
    out["extraction_test"] = {"prefix_tokens": cfg.prefix_tokens, "continuation_tokens": cfg.continuation_tokens,
                              "decoding": "greedy", "bos": "prepend"}
    return out
