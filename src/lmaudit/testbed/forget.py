"""The testbed's forget split (issue 13): the members an unlearning method must remove, drawn
so that every duplication level is represented as in the members, and what the target model
and the retrain model (trained on the members minus F, see :func:`lmaudit.testbed.build.build_testbed`)
do on the forget set F, the retain set R and the holdout H (the non-members).

Duplication decides how strongly a document is memorised (the default testbed's 32-times
repeated members are extracted verbatim, the once-seen ones almost never), so a forget set
drawn at random could miss a level, and a method would look good on easy documents alone.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.testbed.corpus import truth_ratio_answers
from lmaudit.testbed.measure import measure_rows, summarize

if TYPE_CHECKING:
    from lmaudit.testbed.build import TestbedConfig

# Knowledge on R and H is asked about at most this many documents each (a seeded sample), to
# keep the build cheap; F is always asked in full.
KNOWLEDGE_DOCS = 100
# The split's names, in testbed.json and load_forget: F, R, H.
SETS = ("forget", "retain", "holdout")


def allocate(counts: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over the levels in proportion to ``counts`` (largest remainders; ties go to
    the level listed first), never more than a level holds.

    >>> allocate({"1": 450, "4": 150, "32": 400}, 100)
    {'1': 45, '4': 15, '32': 40}
    >>> allocate({"a": 1, "b": 1, "c": 1}, 2)
    {'a': 1, 'b': 1, 'c': 0}
    """
    total = sum(counts.values())
    if not 0 <= n <= total:
        raise ValueError(f"cannot choose {n} of {total} documents")
    quotas = {k: n * c / total for k, c in counts.items()}
    shares = {k: math.floor(q) for k, q in quotas.items()}
    order = sorted(counts, key=lambda k: (-(quotas[k] - shares[k]), list(counts).index(k)))
    for k in order[: n - sum(shares.values())]:
        shares[k] += 1
    return shares


def select_forget(members: Sequence[Record], n: int, *, seed: int = 0,
                  field: str = "duplication") -> tuple[list[Record], list[Record], dict]:
    """The forget set F (``n`` members, stratified over ``field``) and the retain set R (the
    other members, in their original order).

    Within each level the documents are drawn at random with ``seed``; F keeps the members'
    order too. Members without ``field`` form a level of their own ("none").

    Returns:
        (forget, retain, record): ``record`` says how F was drawn (``n``, ``seed``, ``field``,
        per level ``{"members": ..., "forget": ...}``), for testbed.json.
    """
    levels: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(members):
        levels[str(r.meta.get(field, "none"))].append(i)
    ordered = sorted(levels, key=lambda k: (0, float(k), "") if _number(k) else (1, 0.0, k))
    counts = {k: len(levels[k]) for k in ordered}
    shares = allocate(counts, n)
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for k in ordered:
        if shares[k]:
            chosen.update(int(i) for i in rng.choice(levels[k], size=shares[k], replace=False))
    forget = [r for i, r in enumerate(members) if i in chosen]
    retain = [r for i, r in enumerate(members) if i not in chosen]
    record = {"n": n, "seed": seed, "field": field,
              "levels": {k: {"members": counts[k], "forget": shares[k]} for k in ordered}}
    return forget, retain, record


def with_truth_ratio_answers(questions: list[dict], facts: dict[str, dict], *, seed: int) -> list[dict]:
    """Knowledge rows with ``paraphrased_answer`` and ``perturbed_answers`` added
    (:func:`lmaudit.testbed.corpus.truth_ratio_answers`); ``facts`` maps doc_id to its facts."""
    out = []
    for q in questions:
        paraphrased, perturbed = truth_ratio_answers(q, facts[q["doc_id"]], seed=seed)
        out.append({**q, "paraphrased_answer": paraphrased, "perturbed_answers": perturbed})
    return out


def knowledge_sample(docs: list[dict], name: str, *, seed: int, limit: int = KNOWLEDGE_DOCS) -> list[str]:
    """Ids of the documents whose questions are asked: all of them up to ``limit``, else a
    sample of ``limit`` drawn with ``seed`` (in the documents' order)."""
    if len(docs) <= limit:
        return [d["id"] for d in docs]
    chosen = set(random.Random(f"{seed}/forget/knowledge/{name}").sample(range(len(docs)), limit))
    return [d["id"] for i, d in enumerate(docs) if i in chosen]


def measure_forget(models: dict, sets: dict[str, list[dict]], questions: dict[str, list[dict]], shots: list[dict],
                   cfg: "TestbedConfig", *, seed: int, known: dict[str, dict] | None = None,
                   batch_size: int = 64) -> dict:
    """Loss, extraction and knowledge of each model on F, R and H (``sets``: document rows).

    Args:
        models: Name ("target", "retrain") -> loaded model.
        questions: Set name -> knowledge rows (``doc_id`` names the document).
        shots: The testbed's worked examples (data/knowledge/shots.jsonl rows).
        known: Per-document figures (:func:`~lmaudit.testbed.measure.measure_rows`) of the
            models already measured on these documents, by model name: not measured again.

    Returns:
        ``{"knowledge_config", "knowledge_documents", "target": {...}, "retrain": {...}}``; per
        model and set: n, mean loss, extraction rate and knowledge (n questions, exact match,
        ROUGE-L F1), and for F the same by duplication level.
    """
    from lmaudit.memorization.knowledge import KnowledgeConfig, run_knowledge

    # Zero-shot cloze, as the demo's knowledge audit and unlearn-eval ask: the testbed model only
    # ever saw biographies, and worked examples before the question only lengthen the prompt
    # (on the default testbed's F, 3 shots gave the target a ROUGE-L F1 of 0.128, zero-shot 0.192).
    kcfg = KnowledgeConfig(template="cloze", n_shots=0, max_new_tokens=12, n_bootstrap=100, seed=seed)
    asked = {name: knowledge_sample(docs, name, seed=seed) for name, docs in sets.items()}
    items = {}
    for name in SETS:
        keep = set(asked[name])
        items[name] = [Record(id=q["id"], text=q["question"], source=f"data/knowledge/{name}.jsonl", line=i + 1,
                              meta={k: v for k, v in q.items() if k not in ("id", "question")})
                       for i, q in enumerate(questions[name]) if q["doc_id"] in keep]
    shot_records = [Record(id=q["id"], text=q["question"], source="data/knowledge/shots.jsonl", line=i + 1,
                           meta={"answer": q["answer"]}) for i, q in enumerate(shots)]
    out: dict = {"knowledge_config": {"template": kcfg.template, "n_shots": kcfg.n_shots,
                                      "max_new_tokens": kcfg.max_new_tokens, "shots": "data/knowledge/shots.jsonl"},
                 "knowledge_documents": {name: {"n": len(asked[name]), "of": len(sets[name]),
                                                **({"ids": asked[name]} if len(asked[name]) < len(sets[name]) else {})}
                                         for name in SETS}}
    for model_name, lm in models.items():
        per_row = dict((known or {}).get(model_name) or {})
        todo = [d for name in SETS for d in sets[name] if d["id"] not in per_row]
        if todo:
            per_row |= measure_rows(lm, todo, cfg, source=model_name, batch_size=batch_size)
        figures = {}
        for name in SETS:
            result, rows = run_knowledge(lm, items[name], shots=shot_records, config=kcfg, batch_size=batch_size)
            figures[name] = {**summarize(per_row, sets[name]), "knowledge": _knowledge_figures(result, rows)}
            if name == "forget":
                levels = sorted({d["duplication"] for d in sets[name]})
                figures["forget_by_duplication"] = {
                    str(c): {**summarize(per_row, [d for d in sets[name] if d["duplication"] == c]),
                             "knowledge": _knowledge_figures(result["by_duplication"][str(c)],
                                                             [r for r in rows if r["duplication"] == c])}
                    for c in levels}
        out[model_name] = figures
    return out


def _knowledge_figures(summary: dict, rows: list[dict]) -> dict:
    # n_errors: questions whose prompt with the shots did not fit the model's context (not scored).
    return {"n": summary["n"], "n_errors": sum("error" in r for r in rows),
            "exact_match_rate": _round(summary["exact_match_rate"]), "rouge_l_f1_mean": _round(summary["rouge_l_f1_mean"])}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
