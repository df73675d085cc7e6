"""``lmaudit takedown-eval`` in Python: CoTaEval's protocol (Wei et al. 2024) for takedown methods.

Every method (plain decoding ``none`` included) generates on the same prompts, so each
comparison with plain decoding is paired, item by item:

- **Efficacy**, on prompts cut from the protected documents (the first ``prefix_tokens``
  tokens after BOS; the next ``continuation_tokens`` are the truth): every literal copying
  metric of :func:`lmaudit.memorization.copying.copying_metrics` (ROUGE-1/L, exact longest
  common substring in characters and words, ACS, Levenshtein, MinHash) under CoTaEval's text
  normalisation, and exact ``prefix→continuation`` extraction on token ids (every token
  reproduced), each with its interval and by duplication level.
- **Utility**, so that "it stops copying because it stopped working" shows: continuations of
  unprotected documents (ROUGE-L F1 against the truth, and the loss of the generated tokens under
  the unfiltered model: how natural the model itself finds them), and knowledge QA on questions
  about the protected documents (facts a takedown should not remove) and about unprotected ones.
- **Efficiency**: generated tokens per second of each method against plain decoding at the same
  batch size, timed in this run on the same prompts, methods interleaved, median of repeats.
- **Win rate** (CoTaEval's, on the efficacy metrics): see :func:`win_rates`.

Differences with plain decoding carry paired bootstrap intervals (resampling items, or whole
documents for questions); a rate carries its Clopper-Pearson interval and n.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lmaudit.data import DataError, Record
from lmaudit.engines import EngineError, EngineModel, on_engine
from lmaudit.memorization.copying import CopyingConfig, copying_metrics, rouge_l
from lmaudit.memorization.extraction import match_metrics
from lmaudit.memorization.knowledge import KnowledgeConfig, run_knowledge, select_shots
from lmaudit.models.base import GenerationConfig
from lmaudit.report.results import breakdown, model_provenance
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.stats import bootstrap_mean_ci, proportion_ci
from lmaudit.takedown.methods import (TakedownConfig, TakedownModel, parse_methods, prepare_protected,
                                       require_processors, unportable_parts)
from lmaudit.unlearning.measure import document_subsample, knowledge_subsample

#: Efficacy metrics: the copying metrics CoTaEval reports, and token-level extraction.
EFFICACY = ("rouge_1_f1", "rouge_l_f1", "lcs_chars", "lcs_words", "acs_words", "levenshtein_distance",
            "minhash_jaccard", "exact_match", "token_match")
#: Rates (0/1 per item): a Clopper-Pearson interval, not a bootstrap one.
RATES = {"exact_match"}


@dataclass(frozen=True)
class TakedownEvalConfig:
    """Options of a takedown evaluation.

    Attributes:
        prefix_tokens: Prompt: each document's first tokens (after BOS).
        continuation_tokens: Tokens generated, compared with the document's next ones.
        max_protected: Protected documents prompted, drawn with ``seed`` (None: all; the
            MemFree index and R-CAD's retriever always hold every protected document).
        max_unprotected: Unprotected documents prompted, drawn likewise.
        knowledge_docs: Knowledge questions of at most this many protected and this many
            unprotected documents (by ``doc_id``), drawn with ``seed`` (None: all).
        template: Knowledge prompt template (``cloze`` for the testbed; ``qa``).
        n_shots: Worked examples per question, from the shots file.
        max_new_tokens: Tokens generated per answer.
        timing_prompts: Protected prompts of the efficiency timing (the first ones).
        timing_repeats: Timed passes per method, interleaved across methods; the median counts.
        batch_size: Prompts per generation call, the same for every method.
        copying: The copying metrics' options (CoTaEval's normalisation by default).
        takedown: The methods' options.
        n_bootstrap: Bootstrap replicates of every interval.
        seed: Seeds the draws and the bootstraps.
    """

    prefix_tokens: int = 32
    continuation_tokens: int = 32
    max_protected: int | None = None
    max_unprotected: int | None = 200
    knowledge_docs: int | None = 100
    template: str = "cloze"
    n_shots: int = 0
    max_new_tokens: int = 12
    timing_prompts: int = 256
    timing_repeats: int = 3
    batch_size: int = 32
    copying: CopyingConfig = field(default_factory=lambda: CopyingConfig(substring_normalize="cotaeval"))
    takedown: TakedownConfig = field(default_factory=TakedownConfig)
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prefix_tokens < 1 or self.continuation_tokens < 1:
            raise ValueError("prefix_tokens and continuation_tokens must be at least 1")
        for name in ("max_protected", "max_unprotected", "knowledge_docs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for all), got {value}")
        if self.timing_prompts < 1 or self.timing_repeats < 1 or self.batch_size < 1 or self.n_bootstrap < 10:
            raise ValueError("timing_prompts, timing_repeats and batch_size must be at least 1, n_bootstrap at least 10")
        self.knowledge_config()

    def knowledge_config(self) -> KnowledgeConfig:
        return KnowledgeConfig(template=self.template, n_shots=self.n_shots, max_new_tokens=self.max_new_tokens,
                               n_bootstrap=self.n_bootstrap, seed=self.seed)


def cut(lm, records: Sequence[Record], prefix: int, continuation: int, *,
        max_length: int | None = None) -> tuple[list[dict], list[dict]]:
    """(units to generate, error rows): each document's prompt ([BOS] + its first ``prefix``
    tokens) and true continuation; a document shorter than ``prefix + continuation`` tokens is an
    error row naming its file and line, never a silent drop. ``max_length``: the context every
    method must fit them in (less than the model's when a system prompt takes part of it)."""
    bos = [] if lm.bos_token_id is None else [lm.bos_token_id]
    limit = lm.max_length if max_length is None else max_length
    if len(bos) + prefix + continuation > limit:
        raise ValueError(f"BOS + {prefix} + {continuation} tokens exceed the {limit} tokens of context that every "
                         f"method has with {lm.name} (its context length {lm.max_length}, less any system prompt)")
    units, errors = [], []
    for r, ids in zip(records, lm.encode([r.text for r in records])):
        row = {"id": r.id, **({"duplication": r.meta["duplication"]} if "duplication" in r.meta else {})}
        if len(ids) < prefix + continuation:
            errors.append({**row, "error": f"{r.source}:{r.line}: {len(ids)} tokens, fewer than prefix + "
                                          f"continuation = {prefix + continuation}"})
        else:
            units.append({**row, "prompt": [*bos, *ids[:prefix]], "target": ids[prefix : prefix + continuation]})
    return units, errors


def _generate(model, units: list[dict], config: TakedownEvalConfig) -> list[list[int]]:
    if not units:
        return []
    return model.generate([u["prompt"] for u in units],
                          GenerationConfig(max_new_tokens=config.continuation_tokens, stop_at_eos=False),
                          batch_size=config.batch_size)


def _text(lm, ids: Sequence[int]) -> str:
    special = {lm.bos_token_id, lm.eos_token_id}
    return lm.decode([t for t in ids if t not in special])


def efficacy_rows(lm, units: list[dict], generated: list[list[int]], config: CopyingConfig) -> list[dict]:
    """Copying metrics and extraction of each protected continuation against its truth."""
    rows = []
    for u, g in zip(units, generated):
        output, reference = _text(lm, g), _text(lm, u["target"])
        m = match_metrics(g, u["target"])
        row = {k: v for k, v in u.items() if k not in ("prompt", "target")}
        row |= {"output": output, "reference": reference, **copying_metrics(output, reference, config),
                "exact_match": m["exact_match"], "token_match": m["token_match"]}
        rows.append(row)
    return rows


def utility_rows(base, units: list[dict], generated: list[list[int]], batch_size: int) -> list[dict]:
    """ROUGE-L F1 of each unprotected continuation against its truth, and the loss of the generated
    tokens under the unfiltered ``base`` model given the prompt (its own view of their fluency)."""
    rows = []
    seqs = [[*u["prompt"], *g] for u, g in zip(units, generated)]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    losses: list[float | None] = [None] * len(seqs)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        stats = base.token_stats([seqs[i] for i in idx], [len(units[i]["prompt"]) for i in idx])
        for i, s in zip(idx, stats):
            losses[i] = -float(np.mean(s.logprob, dtype=np.float64))
    for u, g, loss in zip(units, generated, losses):
        output, reference = _text(base, g), _text(base, u["target"])
        row = {k: v for k, v in u.items() if k not in ("prompt", "target")}
        row |= {"output": output, "reference": reference, "rouge_l_f1": rouge_l(output, reference)[2],
                "exact_match": g == u["target"], "loss_under_base": loss}
        rows.append(row)
    return rows


def _mean_ci(values, config: TakedownEvalConfig, groups=None) -> dict:
    x = [float(v) for v in values]
    if not x:
        return {"n": 0, "mean": None, "ci": None}
    return {"n": len(x), "mean": float(np.mean(x)),
            "ci": list(bootstrap_mean_ci(x, n_bootstrap=config.n_bootstrap, seed=config.seed, groups=groups))}


def _rate(values) -> dict:
    k, n = int(sum(bool(v) for v in values)), len(values)
    return {"n": n, "k": k, "mean": k / n if n else None, "ci": list(proportion_ci(k, n)) if n else None}


def _paired(a: Sequence[float], b: Sequence[float], config: TakedownEvalConfig, groups=None) -> dict:
    """Mean of a − b over paired items and its (cluster) bootstrap interval; ``contains_zero``:
    no detectable difference at the 95% level."""
    d = [float(x) - float(y) for x, y in zip(a, b)]
    if not d:
        return {"n": 0, "mean": None, "ci": None, "contains_zero": None}
    lo, hi = bootstrap_mean_ci(d, n_bootstrap=config.n_bootstrap, seed=config.seed, groups=groups)
    return {"n": len(d), "mean": float(np.mean(d)), "ci": [lo, hi], "contains_zero": bool(lo <= 0 <= hi)}


def _efficacy_summary(rows: list[dict], config: TakedownEvalConfig) -> dict:
    out = {"n": len(rows)}
    for m in EFFICACY:
        values = [r[m] for r in rows]
        out[m] = _rate(values) if m in RATES else _mean_ci(values, config)
    return out


def _level(rows: list[dict], config: TakedownEvalConfig) -> dict:
    return {"n": len(rows), "exact_match": _rate([r["exact_match"] for r in rows]),
            "rouge_l_f1": _mean_ci([r["rouge_l_f1"] for r in rows], config),
            "lcs_words": _mean_ci([r["lcs_words"] for r in rows], config)}


#: The metrics of CoTaEval's win rate: its eight efficacy metrics less the embedding similarity,
#: which needs an embedding model lmaudit does not ship.
WIN_METRICS = ("rouge_1_f1", "rouge_l_f1", "lcs_chars", "lcs_words", "acs_words", "levenshtein_distance",
               "minhash_jaccard")


def win_rates(values: dict[str, dict[str, Sequence[float]]]) -> dict:
    """CoTaEval's win rate (its ``winrate_compute.py``), from per-prompt efficacy values.

    ``values[method][metric]`` holds one value per prompt, the same prompts in the same order
    for every method. For each prompt and metric, a method scores the share of the other
    M − 1 methods it beats **strictly** (less copying: a lower value, a higher one for the
    Levenshtein distance; a tie beats no one, as CoTaEval's ``<``); its win rate on a metric is
    the mean over prompts, and ``average`` the mean over the metrics (CoTaEval's "average").
    Plain decoding competes like any other method. Utility is not part of it (CoTaEval
    reports utility separately, as lmaudit does).

    >>> w = win_rates({"none": {"rouge_l_f1": [0.9, 0.8]}, "a": {"rouge_l_f1": [0.2, 0.8]}})
    >>> w["by_metric"]["rouge_l_f1"], w["average"]
    ({'none': 0.0, 'a': 0.5}, {'none': 0.0, 'a': 0.5})
    """
    methods = list(values)
    if len(methods) < 2:
        return {"by_metric": {}, "average": {m: None for m in methods}, "n_prompts": 0, "metrics": []}
    metrics = [m for m in WIN_METRICS if all(m in values[a] for a in methods)]
    by_metric: dict[str, dict[str, float | None]] = {}
    n = 0
    for metric in metrics:
        x = np.array([values[a][metric] for a in methods], dtype=np.float64)  # (M, n)
        n = x.shape[1]
        if not n:
            by_metric[metric] = {a: None for a in methods}
            continue
        if metric == "levenshtein_distance":
            x = -x  # a larger distance is less copying
        beats = (x[:, None, :] < x[None, :, :]).sum(axis=1)  # (M, n): others each method beats per prompt
        by_metric[metric] = {a: float(np.mean(beats[i] / (len(methods) - 1))) for i, a in enumerate(methods)}
    average = {a: (float(np.mean([by_metric[m][a] for m in metrics])) if metrics and n else None) for a in methods}
    return {"by_metric": by_metric, "average": average, "n_prompts": n, "metrics": metrics,
            "definition": "CoTaEval: per prompt and metric, the share of the other methods beaten strictly (less "
                          "copying), averaged over prompts, then over metrics"}


def _time(models: dict[str, TakedownModel], units: list[dict], config: TakedownEvalConfig) -> dict:
    """Tokens per second of each model on the same prompts: passes interleaved across models
    (the machine's load changes over a run), each pass starting with another model, the median
    counted."""
    runs: dict[str, list[float]] = {label: [] for label in models}
    labels = list(models)
    for r in range(config.timing_repeats):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:  # each pass starts elsewhere
            model = models[label]
            t = time.perf_counter()
            out = _generate(model, units, config)
            runs[label].append(sum(map(len, out)) / (time.perf_counter() - t))
    plain = statistics.median(runs["none"])
    return {label: {"tokens_per_s": statistics.median(r), "runs": [round(x, 1) for x in r],
                    "relative_to_none": statistics.median(r) / plain, "batch_size": config.batch_size,
                    "prompts": len(units), "repeats": config.timing_repeats} for label, r in runs.items()}


def run_takedown_eval(lm, protected: Sequence[Record], unprotected: Sequence[Record], methods: str | Sequence[str], *,
                      knowledge: Sequence[Record] = (), shots: Sequence[Record] | None = None,
                      config: TakedownEvalConfig = TakedownEvalConfig(), index_dir: str | Path | None = None,
                      save_index: str | Path | None = None, on_method: Callable[[str], None] | None = None,
                      engine=None) -> RunResult:
    """Judge each takedown method in ``methods`` against plain decoding (see the module docstring).

    Args:
        lm: The model, unfiltered.
        protected: The protected documents: the MemFree index and R-CAD's retriever hold them
            all, and efficacy prompts are cut from (a draw of) them. A ``duplication`` field
            gives breakdowns.
        unprotected: Documents from the same domain that are not protected (utility).
        methods: Method specs (see :func:`lmaudit.takedown.methods.parse_methods`); plain
            decoding is always measured too, as the reference.
        knowledge: Questions (``answer`` field; ``doc_id`` names the document they are about):
            those about protected documents are asked as "protected", the others as "unprotected".
        shots: Worked examples for ``config.n_shots``.
        index_dir: A saved MemFree index to use instead of building one (refused if built with
            another tokenizer or n).
        save_index: Where to save the MemFree index built here.
        engine: Where every method generates: None (the model as given), "local", "ray", or an
            engine object (:mod:`lmaudit.engines`). Methods whose processor cannot run on an
            engine's workers (MemFree, R-CAD: ``portable = False``) are refused on any engine
            but the local one, before any work.

    Raises:
        ValueError: an unknown method; prompts that do not fit the context.
        DataError: an empty protected corpus, a protected text shorter than MemFree's n.
        CapabilityError: a method that is a logits processor, on a backend that cannot apply
            them (vLLM), before the index is built or anything generated.
        EngineError: a method that cannot run on the model's engine.
    """
    lm = on_engine(lm, engine)
    parsed = parse_methods(methods)
    if "none" not in [label for label, _ in parsed]:
        parsed = [("none", ()), *parsed]
    parts = {p for _, ps in parsed for p in ps}
    require_processors(lm, parts)
    refused = unportable_parts(parts) if isinstance(lm, EngineModel) else {}
    if refused:
        raise EngineError(f"the {lm.engine.name} engine cannot run {' or '.join(refused)}. "
                          + "".join(f"{p}: {why}. " for p, why in refused.items())
                          + f"Leave {' and '.join(refused)} out of the methods, or run them on the local engine")
    cfg = config
    protected_all = prepare_protected(lm, protected, parts, cfg.takedown, index_dir=index_dir, save_index=save_index)
    models = {label: TakedownModel(lm, ps, protected_all, cfg.takedown) for label, ps in parsed}
    room = min(m.max_length for m in models.values())
    p_units, p_errors = cut(lm, document_subsample(protected, cfg.max_protected, seed=cfg.seed, name="protected"),
                            cfg.prefix_tokens, cfg.continuation_tokens, max_length=room)
    u_units, u_errors = cut(lm, document_subsample(unprotected, cfg.max_unprotected, seed=cfg.seed, name="unprotected"),
                            cfg.prefix_tokens, cfg.continuation_tokens, max_length=room)
    protected_ids = {str(r.id) for r in protected}
    missing = [q for q in knowledge if "doc_id" not in q.meta]
    if missing:
        q = missing[0]
        raise DataError(f"{q.source}:{q.line}: question {q.id!r} has no 'doc_id' field, so it cannot be told "
                        f"protected or not ({len(missing)} such question(s))")
    questions = {"protected": [q for q in knowledge if str(q.meta["doc_id"]) in protected_ids],
                 "unprotected": [q for q in knowledge if str(q.meta["doc_id"]) not in protected_ids]}
    subsample = {}
    for k in questions:
        questions[k], subsample[k] = knowledge_subsample(questions[k], cfg.knowledge_docs, seed=cfg.seed)
        if questions[k]:  # answers and shots checked now, not after the first method has generated
            select_shots(questions[k], shots, config=cfg.knowledge_config())
    samples: list[dict] = [{"method": None, "set": "protected", **e} for e in p_errors]
    samples += [{"method": None, "set": "unprotected", **e} for e in u_errors]
    per: dict[str, dict] = {}
    for label, model in models.items():
        if on_method:
            on_method(label)
        t = time.perf_counter()
        eff = efficacy_rows(lm, p_units, _generate(model, p_units, cfg), cfg.copying)
        filter_stats = model.last_stats
        util = utility_rows(lm, u_units, _generate(model, u_units, cfg), cfg.batch_size)
        know = {}
        for name, items in questions.items():
            if items:
                know[name] = run_knowledge(model, items, shots=shots, config=cfg.knowledge_config(),
                                           batch_size=cfg.batch_size).samples
        per[label] = {"efficacy": eff, "utility": util, "knowledge": know, "filter_stats": filter_stats,
                      "wall_time_s": round(time.perf_counter() - t, 2)}
        samples += [{"method": label, "set": "protected", **r} for r in eff]
        samples += [{"method": label, "set": "unprotected", **r} for r in util]
        samples += [{"method": label, "set": f"knowledge_{name}", **r} for name, rows in know.items() for r in rows]
    timing = _time(models, p_units[: cfg.timing_prompts], cfg) if p_units else {}
    results = _aggregate(per, timing, models, cfg)
    results |= {"n_protected_documents": len(protected), "n_protected_prompts": len(p_units),
                "n_unprotected_prompts": len(u_units),
                "n_questions": {k: len(v) for k, v in questions.items()}, "knowledge_subsample": subsample,
                "n_errors": len(p_errors) + len(u_errors) + sum(1 for s in samples if s.get("error") and s["method"]),
                "definitions": {**cfg.copying.definitions(),
                                "exact_match": f"all {cfg.continuation_tokens} generated token ids equal the truth's",
                                "loss_under_base": "mean -log p of the generated tokens under the unfiltered model",
                                "knowledge": "ROUGE-L F1 of the greedy answer (its interval: a bootstrap over whole "
                                             "documents, whose questions are not independent); exact_match's "
                                             "Clopper-Pearson interval treats questions as independent (too narrow)"},
                "memfree_index": protected_all.index_info or None}
    provenance = {"model": model_provenance(lm), "config": asdict(cfg), "methods": [label for label, _ in parsed],
                  "decoding": "greedy", "seed": cfg.seed}
    return RunResult(results=results, samples=samples, provenance=provenance)


def _aggregate(per: dict, timing: dict, models: dict, cfg: TakedownEvalConfig) -> dict:
    none = per["none"]
    out, table = {}, {}
    for label, p in per.items():
        eff, util = p["efficacy"], p["utility"]
        efficacy = _efficacy_summary(eff, cfg)
        if any("duplication" in r for r in eff):
            efficacy["by_duplication"] = breakdown(eff, "duplication", lambda g: _level(g, cfg))
        utility: dict = {"continuation": {"n": len(util),
                                          "rouge_l_f1": _mean_ci([r["rouge_l_f1"] for r in util], cfg),
                                          "loss_under_base": _mean_ci([r["loss_under_base"] for r in util], cfg),
                                          "exact_match": _rate([r["exact_match"] for r in util])},
                         "knowledge": {}}
        vs_none: dict = {m: _paired([r[m] for r in eff], [r[m] for r in none["efficacy"]], cfg) for m in EFFICACY}
        vs_none["rouge_l_f1_unprotected"] = _paired([r["rouge_l_f1"] for r in util],
                                                    [r["rouge_l_f1"] for r in none["utility"]], cfg)
        vs_none["loss_under_base_unprotected"] = _paired([r["loss_under_base"] for r in util],
                                                         [r["loss_under_base"] for r in none["utility"]], cfg)
        row = {m: efficacy[m]["mean"] for m in EFFICACY if m != "token_match"}
        row["rouge_l_f1_unprotected"] = utility["continuation"]["rouge_l_f1"]["mean"]
        for name, rows in p["knowledge"].items():
            ok = [r for r in rows if "prediction" in r]
            base_of = {r["id"]: r for r in none["knowledge"].get(name, []) if "prediction" in r}
            groups = [str(r.get("doc_id", r["id"])) for r in ok]
            utility["knowledge"][name] = {
                "n": len(ok), "n_errors": len(rows) - len(ok),
                "rouge_l_f1": _mean_ci([r["rouge_l_f1"] for r in ok], cfg, groups=groups),
                "exact_match": _rate([r["exact_match"] for r in ok])}
            pairs = [(r["rouge_l_f1"], base_of[r["id"]]["rouge_l_f1"], g) for r, g in zip(ok, groups) if r["id"] in base_of]
            vs_none[f"knowledge_{name}"] = _paired([a for a, _, _ in pairs], [b for _, b, _ in pairs], cfg,
                                                   groups=[g for _, _, g in pairs])
            row[f"knowledge_{name}"] = utility["knowledge"][name]["rouge_l_f1"]["mean"]
        table[label] = row
        out[label] = {"settings": models[label].settings(), "efficacy": efficacy, "utility": utility,
                      "efficiency": timing.get(label), "vs_none": vs_none, "filter_stats": p["filter_stats"],
                      "wall_time_s": p["wall_time_s"]}
    per_prompt = {label: {m: [r[m] for r in p["efficacy"]] for m in WIN_METRICS} for label, p in per.items()}
    return {"methods": out, "table": table, "win_rate": win_rates(per_prompt)}


def headline(results: dict, label: str) -> str:
    """One line on a method: efficacy, utility and efficiency against plain decoding."""
    m, n = results["methods"][label], results["methods"]["none"]
    e, en = m["efficacy"], n["efficacy"]
    ex = e["exact_match"]
    parts = [f"{label}: exact extraction {en['exact_match']['mean']:.1%} -> {ex['mean']:.1%} "
             f"({ex['k']}/{ex['n']}, 95% CI {ex['ci'][0]:.1%}-{ex['ci'][1]:.1%})" if ex["n"] else f"{label}: no prompt",
             f"ROUGE-L {en['rouge_l_f1']['mean']:.2f} -> {e['rouge_l_f1']['mean']:.2f}" if ex["n"] else "",
             f"LCS {en['lcs_words']['mean']:.1f} -> {e['lcs_words']['mean']:.1f} words" if ex["n"] else ""]
    d = m["vs_none"]["rouge_l_f1_unprotected"]
    if d["n"]:
        parts.append(f"unprotected ROUGE-L {d['mean']:+.3f} (95% CI {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f})")
    for name in ("protected", "unprotected"):
        k = m["vs_none"].get(f"knowledge_{name}")
        if k and k["n"]:
            parts.append(f"knowledge on {name} docs {k['mean']:+.3f} ({k['ci'][0]:+.3f} to {k['ci'][1]:+.3f})")
    if m["efficiency"]:
        parts.append(f"{m['efficiency']['relative_to_none']:.2f}x plain tokens/s at batch {m['efficiency']['batch_size']}")
    return "; ".join(p for p in parts if p)


def takedown_eval_to_dir(lm, protected: Sequence[Record], unprotected: Sequence[Record], methods, out: str | Path, *,
                         knowledge: Sequence[Record] = (), shots: Sequence[Record] | None = None,
                         config: TakedownEvalConfig = TakedownEvalConfig(), index_dir: str | Path | None = None,
                         data: list[dict] | None = None, command: str = "takedown-eval", started: float | None = None,
                         on_method: Callable[[str], None] | None = None, engine=None) -> dict:
    """:func:`run_takedown_eval` (``engine`` as there), then ``samples.jsonl``, the MemFree index
    (``memfree-index/``, when built here) and ``results.json`` in ``out``."""
    require_processors(lm, {p for _, ps in parse_methods(methods) for p in ps})  # before the run folder is touched
    with RunWriter(out, kind="takedown-eval", command=command, started=started) as run:
        save = None if index_dir is not None else Path(out) / "memfree-index"
        result = run_takedown_eval(lm, protected, unprotected, methods, knowledge=knowledge, shots=shots, config=config,
                                   index_dir=index_dir, save_index=save, on_method=on_method, engine=engine)
        run.samples(result.samples)
        r = result.results
        summary = {"methods": list(r["methods"]), "n_protected_prompts": r["n_protected_prompts"],
                   "n_unprotected_prompts": r["n_unprotected_prompts"], "n_errors": r["n_errors"],
                   "win_rate": r["win_rate"]["average"],
                   "headlines": {label: headline(r, label) for label in r["methods"] if label != "none"}}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=r)


__all__ = ["TakedownEvalConfig", "run_takedown_eval", "takedown_eval_to_dir", "win_rates", "headline", "cut"]
