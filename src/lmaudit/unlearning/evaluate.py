"""``lmaudit unlearn-eval`` in Python: MUSE's criteria and TOFU's metrics for candidate unlearned
models, side by side with the target and a model retrained without the forget set.

    >>> sets = UnlearnSets.from_files(forget="tb/data/forget.jsonl", retain="tb/data/retain.jsonl",   # doctest: +SKIP
    ...                               holdout="tb/data/nonmembers.jsonl")
    >>> result = evaluate_unlearning({"npo": unlearned}, target=target, retrain=retrain, sets=sets)  # doctest: +SKIP
    >>> result.results["models"]["npo"]["privleak"]["value"]                                        # doctest: +SKIP

Each model is measured once (:func:`~lmaudit.unlearning.measure.measure_model`, per-item
values), then compared (:func:`~lmaudit.unlearning.compare.compare`); a sweep can call the two
separately and measure the target and the retrain model only once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping

from lmaudit.engines import get_engine, on_engine
from lmaudit.models.base import LanguageModel
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.unlearning.compare import compare, headline
from lmaudit.unlearning.measure import EvalConfig, ModelMeasures, config_dict, knowledge_subsample, measure_model
from lmaudit.unlearning.sets import KNOWLEDGE_SETS, UnlearnSets

__all__ = ["EvalConfig", "ModelMeasures", "UnlearnSets", "compare", "evaluate_unlearning", "measure_model",
           "unlearn_eval_to_dir"]

ROLES = ("target", "retrain")


def evaluate_unlearning(candidates: Mapping[str, LanguageModel], *, target: LanguageModel, retrain: LanguageModel,
                        sets: UnlearnSets, config: EvalConfig = EvalConfig(),
                        on_model: Callable[[str], None] | None = None, engine=None) -> RunResult:
    """Measure the target, the retrain model and every candidate on ``sets``, then compare.

    Args:
        candidates: Unlearned models by label (may be empty: target and retrain alone).
        target: The model before unlearning.
        retrain: The model trained without the forget set, with the target's recipe. Required:
            PrivLeak and forget quality are defined against it.
        on_model: Called with each label before the model is measured (progress).
        engine: Where every model's scoring and generation run: None (each model as given),
            "local", "ray", or an engine object (:mod:`lmaudit.engines`), one for all of them.

    Returns:
        A :class:`RunResult`: ``results`` is :func:`compare`'s output plus the timings and the
        question subsample; ``samples`` one row per model and item; the models' provenance.
    """
    if retrain is None:
        raise ValueError("the retrain model is required: PrivLeak and forget quality are defined against a model "
                         "that never saw the forget set, and there is no default for it")
    if target is None:
        raise ValueError("the target model (before unlearning) is required")
    clash = [label for label in candidates if label in ROLES]
    if clash:
        raise ValueError(f"candidate labels {', '.join(clash)} are reserved for the target and the retrain model")
    models = {"target": target, "retrain": retrain, **candidates}
    if engine is not None:
        engine = get_engine(engine)  # one engine (one cluster connection) for every model
        models = {label: on_engine(lm, engine) for label, lm in models.items()}
    measures: dict[str, ModelMeasures] = {}
    for label, lm in models.items():
        if on_model:
            on_model(label)
        measures[label] = measure_model(lm, sets, config)
    results = compare(measures, target="target", retrain="retrain", n_bootstrap=config.n_bootstrap, seed=config.seed)
    results["timings_s"] = {label: m.timings for label, m in measures.items()}
    results["knowledge_subsample"] = {s: knowledge_subsample(sets.knowledge(s), config.knowledge_docs,
                                                             seed=config.seed)[1]
                                      for s in KNOWLEDGE_SETS if s != "forget" and sets.knowledge(s)}
    # Documents scored (R and H may be subsampled: EvalConfig.documents), of how many given.
    results["n"] = {**{s: len(measures["target"].documents[s]) for s in ("forget", "retain", "holdout")},
                    "given": {"forget": len(sets.forget), "retain": len(sets.retain), "holdout": len(sets.holdout)},
                    **{f"{s}_questions": len(measures["target"].knowledge.get(s, [])) for s in KNOWLEDGE_SETS}}
    results["n_errors"] = sum(1 for row in samples_of(measures) if row.get("error"))
    provenance = {"models": {label: m.provenance for label, m in measures.items()}, "config": config_dict(config),
                  "seed": config.seed, "batch_size": config.batch_size, "attack": config.make_attack().describe()}
    return RunResult(results=results, samples=samples_of(measures), provenance=provenance)


def samples_of(measures: Mapping[str, ModelMeasures]) -> list[dict]:
    """One row per model and item: ``model``, ``part`` ("document" or "question"), ``set``, then the values."""
    rows = []
    for label, m in measures.items():
        for s, items in m.documents.items():
            rows += [{"model": label, "part": "document", "set": s, **r} for r in items]
        for s, items in m.knowledge.items():
            rows += [{"model": label, "part": "question", "set": s, **r} for r in items]
    return rows


def unlearn_eval_to_dir(candidates: Mapping[str, LanguageModel], out: str | Path, *, target: LanguageModel,
                        retrain: LanguageModel, sets: UnlearnSets, config: EvalConfig = EvalConfig(),
                        command: str = "unlearn-eval", started: float | None = None, on_model=None,
                        engine=None) -> dict:
    """:func:`evaluate_unlearning` (``engine`` as there), then write ``samples.jsonl`` and
    ``results.json`` (kind ``unlearn-eval``) into ``out``. Returns what results.json holds."""
    started = started or time.time()
    with RunWriter(out, kind="unlearn-eval", command=command, started=started) as run:
        result = evaluate_unlearning(candidates, target=target, retrain=retrain, sets=sets, config=config,
                                     on_model=on_model, engine=engine)
        run.samples(result.samples)
        summary = {"models": {label: {"role": row["role"], **headline(row)}
                              for label, row in result.results["models"].items()},
                   "n_errors": result.results["n_errors"]}
        return run.finish(summary=summary, provenance={**result.provenance, "data": sets.data}, extra=result.results)
