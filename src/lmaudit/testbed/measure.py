"""What a testbed measures about its own model: loss and greedy extraction per split and per
duplication level, recorded in testbed.json so every audit can be checked against it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lmaudit.data import Record
from lmaudit.models.base import GenerationConfig

if TYPE_CHECKING:
    from lmaudit.testbed.build import TestbedConfig


def measure_rows(lm, rows: list[dict], cfg: "TestbedConfig", *, source: str = "documents",
                 batch_size: int = 64, detail: bool = False) -> dict[str, dict]:
    """Each document's loss (−mean log p, BOS prepended) and whether the extraction test
    reproduced it: greedy continuation of its first ``prefix_tokens`` tokens gives the next
    ``continuation_tokens`` exactly. Keyed by id, in the rows' order.

    ``detail`` adds what other measurements build on: ``ids`` (the text's token ids),
    ``logprob`` (float64, one per text token), ``generated`` and ``truth`` (continuation ids)."""
    from lmaudit.scoring.score import score_records

    recs = [Record(id=r["id"], text=r["text"], source=source, line=i + 1) for i, r in enumerate(rows)]
    scores = score_records(lm, recs, batch_size=batch_size)
    ids = lm.encode([r["text"] for r in rows])
    p, c = cfg.prefix_tokens, cfg.continuation_tokens
    prompts = [[lm.bos_token_id, *x[:p]] for x in ids]
    gen = lm.generate(prompts, GenerationConfig(max_new_tokens=c, stop_at_eos=False), batch_size=batch_size)
    out = {}
    for r, s, g, x in zip(rows, scores, gen, ids):
        out[r["id"]] = {"loss": -s.logprob_mean, "extracted": g == x[p : p + c]}
        if detail:
            if s.error is not None:
                raise ValueError(f"document {r['id']} could not be scored: {s.error}")
            out[r["id"]] |= {"ids": x, "logprob": np.asarray(s.stats.logprob, dtype=np.float64), "generated": g,
                             "truth": x[p : p + c]}
    return out


def summarize(per_row: dict[str, dict], rows: list[dict]) -> dict:
    """``n``, mean loss and extraction rate of ``rows`` from :func:`measure_rows`' figures."""
    return {
        "n": len(rows),
        "mean_loss": round(float(np.mean([per_row[r["id"]]["loss"] for r in rows])), 4),
        "extraction_rate": round(float(np.mean([per_row[r["id"]]["extracted"] for r in rows])), 4),
    }


def extraction_test(cfg: "TestbedConfig") -> dict:
    return {"prefix_tokens": cfg.prefix_tokens, "continuation_tokens": cfg.continuation_tokens,
            "decoding": "greedy", "bos": "prepend"}


def measure(lm, members: list[dict], nonmembers: list[dict], cfg: "TestbedConfig", *, batch_size: int = 64,
            per_row: dict | None = None) -> dict:
    """The figures that show the model really memorised its members.

    Mean loss (−mean log p, BOS prepended) per split, and the Carlini-style extraction
    rate (:func:`measure_rows`). Both are broken down by duplication level. ``per_row``, when
    given, receives each document's figures by id.
    """
    out: dict = {}
    per_row = {} if per_row is None else per_row
    for split, rows in (("members", members), ("nonmembers", nonmembers)):
        per_row |= measure_rows(lm, rows, cfg, source=split, batch_size=batch_size)
        out[split] = summarize(per_row, rows)
    out["members_by_duplication"] = {str(copies): summarize(per_row, [r for r in members if r["duplication"] == copies])
                                     for copies, _ in cfg.duplication}
    out["extraction_test"] = extraction_test(cfg)
    return out
