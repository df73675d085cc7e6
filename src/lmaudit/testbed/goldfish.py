"""The testbed's goldfish model (issue 14): what the goldfish loss changes, measured side by side
on the standard model (the target, ``model/``) and the goldfish model (``goldfish/``: the same
data, seed, initial weights and recipe, with the goldfish loss; see
:func:`lmaudit.testbed.build.build_testbed`).

The paper's claim (Hans et al. 2024) is that exact extraction of repeated documents collapses
while the model still learns them: members' loss on the tokens it did train on stays far below
non-members'. Both halves are measured here, per duplication level, and so is the membership
signal the goldfish loss does not claim to remove (the loss attack's ROC-AUC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lmaudit.memorization.copying import rouge_l
from lmaudit.stats import auc_ci, proportion_ci, roc_auc
from lmaudit.takedown.goldfish import GoldfishConfig, goldfish_mask
from lmaudit.testbed.measure import extraction_test, measure_rows

if TYPE_CHECKING:
    from lmaudit.testbed.build import TestbedConfig

# The two models of the record, in the order they are reported.
MODELS = ("standard", "goldfish")


def measure_goldfish_rows(lm, rows: list[dict], cfg: "TestbedConfig", goldfish: GoldfishConfig, *,
                          source: str = "documents", batch_size: int = 64) -> dict[str, dict]:
    """Per document (by id): loss on all tokens and on the goldfish-kept tokens only, exact
    extraction and the ROUGE-L F1 of the greedy continuation.

    Tokens are scored and continued by :func:`lmaudit.testbed.measure.measure_rows` (BOS
    prepended; every text token, the EOS the model trained on excluded), batched the same way,
    so ``loss`` equals its figure. The kept tokens are those the goldfish mask keeps in the
    sequence as trained, ``[BOS] + ids + [EOS]``: its mask at positions 1..n (a position's
    decision depends only on the tokens before it, so EOS changes none of them). ``loss_kept``
    is None for a document with no kept token.

    Extraction: greedy continuation of the first ``prefix_tokens`` tokens (BOS prepended); the
    document is extracted when the next ``continuation_tokens`` come out exactly, and
    ``rouge_l_f1`` compares the decoded continuation with the decoded true one
    (:func:`lmaudit.memorization.copying.rouge_l`, unstemmed, as MUSE's VerbMem).
    """
    out = {}
    for doc_id, m in measure_rows(lm, rows, cfg, source=source, batch_size=batch_size, detail=True).items():
        x = m["ids"]
        kept = ~goldfish_mask([lm.bos_token_id, *x, lm.eos_token_id], goldfish)[1 : len(x) + 1]
        out[doc_id] = {
            "loss": m["loss"],
            "loss_kept": float(-m["logprob"][kept].mean()) if kept.any() else None,
            "kept_fraction": float(kept.mean()),
            "extracted": m["extracted"],
            "rouge_l_f1": rouge_l(lm.decode(m["generated"]), lm.decode(m["truth"]))[2],
        }
    return out


def summarize_goldfish(per_row: dict[str, dict], rows: list[dict], *, level: float = 0.95) -> dict:
    """n, exact extraction (successes, rate, Clopper-Pearson interval), mean ROUGE-L F1, mean
    loss on all tokens and on kept tokens (means of the documents' own means)."""
    figures = [per_row[r["id"]] for r in rows]
    hits = sum(f["extracted"] for f in figures)
    kept = [f["loss_kept"] for f in figures if f["loss_kept"] is not None]
    return {
        "n": len(rows),
        "extraction": {"successes": hits, "rate": _round(hits / len(rows)),
                       "ci": [_round(v) for v in proportion_ci(hits, len(rows), level=level)]},
        "rouge_l_f1_mean": _round(np.mean([f["rouge_l_f1"] for f in figures])),
        "mean_loss": _round(np.mean([f["loss"] for f in figures])),
        "mean_loss_kept": _round(np.mean(kept)) if kept else None,
        "kept_fraction_mean": _round(np.mean([f["kept_fraction"] for f in figures])),
    }


def loss_attack(per_row: dict[str, dict], members: list[dict], nonmembers: list[dict], *, field: str = "loss",
                seed: int = 0) -> dict:
    """ROC-AUC of the loss attack (score = −loss; higher = member), members against
    non-members, with :func:`lmaudit.stats.auc_ci`'s interval; overall and with each
    duplication level's members against all non-members."""

    def attack(pos_rows: list[dict]) -> dict:
        pos = [-per_row[r["id"]][field] for r in pos_rows if per_row[r["id"]][field] is not None]
        neg = [-per_row[r["id"]][field] for r in nonmembers if per_row[r["id"]][field] is not None]
        return {"auc": _round(roc_auc(pos, neg)), "ci": [_round(v) for v in auc_ci(pos, neg, seed=seed)],
                "n_members": len(pos), "n_nonmembers": len(neg)}

    levels = sorted({r["duplication"] for r in members})
    return {**attack(members),
            "by_duplication": {str(c): attack([r for r in members if r["duplication"] == c]) for c in levels}}


def measure_goldfish(models: dict, members: list[dict], nonmembers: list[dict], cfg: "TestbedConfig",
                     goldfish: GoldfishConfig, *, seed: int = 0, batch_size: int = 64) -> dict:
    """Both models side by side: testbed.json's ``goldfish.measured``.

    Args:
        models: {"standard": the target model, "goldfish": the goldfish model}, loaded.
        members, nonmembers: Document rows (members with ``duplication``).
        goldfish: The configuration the goldfish model trained with (it decides the kept tokens).

    Returns:
        ``{"extraction_test", "intervals", "standard": {...}, "goldfish": {...}}``; per model:
        ``members``, ``nonmembers`` and ``members_by_duplication`` (:func:`summarize_goldfish`),
        and ``loss_attack`` / ``kept_loss_attack`` (:func:`loss_attack` on the loss over all
        tokens, and over the kept tokens only: what an auditor who knows the goldfish key can do).
    """
    out: dict = {
        "extraction_test": {**extraction_test(cfg), "rouge_l": "F1 of the decoded continuation vs the true one, unstemmed"},
        "kept_tokens": "the goldfish mask of [BOS] + ids + [EOS], as trained, at the text tokens",
        "intervals": {"extraction": "Clopper-Pearson 95%", "auc": "95%, union of percentile bootstrap (1000) and "
                                                               "score interval (lmaudit.stats.auc_ci)"},
    }
    levels = sorted({r["duplication"] for r in members})
    for name, lm in models.items():
        per_row: dict[str, dict] = {}
        for split, rows in (("members", members), ("nonmembers", nonmembers)):  # batched as measure(): same losses
            per_row |= measure_goldfish_rows(lm, rows, cfg, goldfish, source=split, batch_size=batch_size)
        out[name] = {
            "members": summarize_goldfish(per_row, members),
            "nonmembers": summarize_goldfish(per_row, nonmembers),
            "members_by_duplication": {str(c): summarize_goldfish(per_row, [r for r in members if r["duplication"] == c])
                                       for c in levels},
            "loss_attack": loss_attack(per_row, members, nonmembers, seed=seed),
            "kept_loss_attack": loss_attack(per_row, members, nonmembers, field="loss_kept", seed=seed),
        }
    return out


def _round(x) -> float:
    return round(float(x), 4)
