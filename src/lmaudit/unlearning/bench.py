"""``lmaudit unlearn-bench``: the whole unlearning protocol on a testbed with a forget split.

Every method runs a small sweep (learning rates × epochs, the model evaluated after every
epoch: its unlearning curve) from the same target, against the same retrain reference, on
the same sets (:mod:`lmaudit.unlearning.measure`). From the sweep come:

- the **frontier**: forgetting (VerbMem on F) against utility (KnowMem on R, as a fraction
  of the target's) at every point, with the points no other point of the method beats on
  both;
- the **leaderboard**: each method at its best setting (:func:`select`), with every MUSE and
  TOFU criterion beside the target's and the retrain model's;
- **C5 scalability**: the best setting of a method re-run on forget sets of growing size;
- **C6 sustainability**: the forget set removed in sequential requests, each run starting
  from the model the previous one left.

The best setting is chosen on the evaluation itself, as MUSE chooses its reported epochs:
an optimistic choice (a setting picked on held-out requests would be stricter), stated in
the results. The targets it is judged by are the issue's: VerbMem on F within 5 points of
the retrain model's, |PrivLeak| ≤ 15 and KnowMem on R at least 90% of the target's.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from lmaudit.data import Record
from lmaudit.unlearning.measure import EvalConfig, ModelMeasures, measure_model
from lmaudit.unlearning.sets import TESTBED_LAYOUT, UnlearnSets, sets_of_testbed

#: Shorthands of the unlearning literature: name -> (forget method, retain loss).
ALIASES = {"gd": ("ga", "nll")}


@dataclass(frozen=True)
class Targets:
    """What counts as success (the issue's targets, stated as MUSE's criteria).

    Attributes:
        verbmem_gap: |VerbMem on F − the retrain model's| at most this many points (of 100).
        privleak: |PrivLeak| at most this (percent).
        utility: KnowMem on R at least this fraction of the target's.
    """

    verbmem_gap: float = 5.0
    privleak: float = 15.0
    utility: float = 0.9


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run.

    Attributes:
        methods: Method names: a forget loss (ga, npo, simnpo), ``loss+retain`` (npo+kl,
            npo+nll), an alias (gd = ga+nll) or a model-arithmetic method (task_vector, whp).
        lrs: Learning rates of the sweep (every method gets every one).
        epochs: Epochs per run; the model is evaluated after each.
        batch_size: Forget documents per step (and retain documents paired with them).
        scale_sizes: C5: forget-set sizes below |F| (|F| itself is the sweep's run).
        requests: C6: the forget set split into this many sequential requests (0: skip).
        scale_methods: Methods C5 and C6 run for (None: all).
        eval: How the leaderboard's models are measured (every criterion, MUSE's and TOFU's).
        sweep_documents: The sweep, C5 and C6 measure every model on this many retain and
            holdout documents (loss, attack; all of F)...
        sweep_knowledge_docs: ... and on the questions of this many retain documents, without
            TOFU's scoring passes (:class:`~lmaudit.unlearning.measure.EvalConfig` ``tofu``):
            a model is measured after every epoch, so this is most of the benchmark's time.
            The leaderboard's rows are measured again in full.
        sweep_bootstrap: Bootstrap replicates of the sweep's intervals.
        targets: The success criteria.
        seed: Seeds training, the C5 subsets and the C6 split.
    """

    methods: tuple[str, ...] = ("ga", "gd", "npo", "npo+kl", "simnpo", "task_vector", "whp")
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    epochs: int = 4
    batch_size: int = 8
    scale_sizes: tuple[int, ...] = (25, 50)
    requests: int = 4
    scale_methods: tuple[str, ...] | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep_documents: int | None = 300
    sweep_knowledge_docs: int | None = 30
    sweep_bootstrap: int = 200
    targets: Targets = field(default_factory=Targets)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("name at least one method")
        for name in self.methods:
            method_spec(name)
        for name in self.scale_methods or ():
            if name not in self.methods:
                raise ValueError(f"scale method {name!r} is not among the methods ({', '.join(self.methods)})")
        if not self.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lrs):
            raise ValueError(f"learning rates must be positive, got {self.lrs}")
        if self.epochs < 1 or self.batch_size < 1 or self.requests < 0:
            raise ValueError("epochs and batch_size must be at least 1, requests at least 0")
        if any(n < 1 for n in self.scale_sizes):
            raise ValueError(f"scale sizes must be at least 1, got {self.scale_sizes}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def sweep_eval(self) -> EvalConfig:
        return replace(self.eval, documents=self.sweep_documents, knowledge_docs=self.sweep_knowledge_docs, tofu=False,
                       n_bootstrap=self.sweep_bootstrap)


def method_spec(name: str) -> dict:
    """``{"method", "retain_loss"}`` of a method name.

    >>> method_spec("npo+kl"), method_spec("gd"), method_spec("whp")["retain_loss"]
    ({'method': 'npo', 'retain_loss': 'kl'}, {'method': 'ga', 'retain_loss': 'nll'}, 'none')
    """
    from lmaudit.unlearning import ARITHMETIC, FORGET_LOSSES, RETAIN_LOSSES

    if name in ALIASES:
        method, retain = ALIASES[name]
    else:
        method, _, retain = name.partition("+")
        retain = retain or "none"
    if method in ARITHMETIC:
        if retain != "none":
            raise ValueError(f"{name}: a model-arithmetic method takes no retain loss")
    else:
        FORGET_LOSSES.get(method)  # did-you-mean errors
    RETAIN_LOSSES.get(retain)
    return {"method": method, "retain_loss": retain}


def _as_model(net, tokenizer, *, name: str):
    """An lmaudit model of what ``on_epoch`` hands over (a WHP model already is one)."""
    from lmaudit.models.hf import HFModel

    if hasattr(net, "token_stats"):
        return net
    return HFModel(net, tokenizer, name=name)


def restrict(m: ModelMeasures, forget_ids: set) -> ModelMeasures:
    """``m`` with the forget set's documents and questions cut to ``forget_ids`` (C5 and C6
    judge each run on what it was asked to remove; the other sets are unchanged)."""
    docs = dict(m.documents)
    docs["forget"] = [r for r in m.documents["forget"] if r["id"] in forget_ids]
    know = dict(m.knowledge)
    if "forget" in know:
        know["forget"] = [r for r in know["forget"] if r["doc_id"] in forget_ids]
    return replace(m, documents=docs, knowledge=know)


def split_requests(forget: Sequence[Record], k: int, *, seed: int) -> list[list[Record]]:
    """F in ``k`` disjoint requests, each stratified over duplication like F itself."""
    from lmaudit.testbed.forget import select_forget

    rest, out = list(forget), []
    for i in range(k, 0, -1):
        chunk, rest, _ = select_forget(rest, len(rest) // i, seed=seed + i)
        out.append(chunk)
    return out


def meets(row: dict, targets: Targets) -> dict:
    """Which targets a compared model row reaches, and by how much it misses each (0: met).

    Misses are in units of the target itself, so they add up: the best setting is the one
    with the smallest total miss.
    """
    gap, pl, util = _value(row, "verbmem_forget_minus_retrain"), row["privleak"]["value"], _value(row, "knowmem_retain_vs_target")
    miss = {
        "verbmem": None if gap is None else max(0.0, abs(gap) - targets.verbmem_gap) / targets.verbmem_gap,
        "privleak": None if pl is None else max(0.0, abs(pl) - targets.privleak) / targets.privleak,
        "utility": None if util is None else max(0.0, targets.utility - util) / (1 - targets.utility),
    }
    total = sum(v if v is not None else math.inf for v in miss.values())
    return {"verbmem": miss["verbmem"] == 0, "privleak": miss["privleak"] == 0, "utility": miss["utility"] == 0,
            "all": total == 0, "miss": total, "misses": miss}


def select(points: list[dict]) -> dict:
    """A method's best point: the smallest total miss of the targets (:func:`meets`); among
    points that meet all three, the highest utility; then the earliest (fewest epochs, lowest
    learning rate), the cheapest."""
    return min(points, key=lambda p: (p["meets"]["miss"], -(p["utility"] or 0.0),
                                      p["epoch"], p["lr"]))


def pareto(points: list[dict]) -> list[bool]:
    """Whether each point is on the frontier: no other point has VerbMem on F at most its own
    and utility at least its own, one of them strictly."""
    xy = [(p["headline"]["verbmem_forget"], p["utility"]) for p in points]
    out = []
    for x, y in xy:
        if x is None or y is None:
            out.append(False)
            continue
        out.append(not any(a is not None and b is not None and a <= x and b >= y and (a < x or b > y) for a, b in xy))
    return out


def run_bench(testbed: str | Path, config: BenchConfig = BenchConfig(), *, log: Callable[[str], None] | None = None,
              device: str = "cpu") -> dict:
    """Run the benchmark on a testbed built with ``--forget N``; returns the results (no files).

    Returns:
        ``config``, ``sets`` (sizes), ``reference`` (target and retrain rows), ``sweep``
        (one row per method × lr × epoch), ``leaderboard``, ``scalability``,
        ``sustainability``, ``timings``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmaudit.models.hf import HFModel
    from lmaudit.unlearning.compare import compare, headline
    from lmaudit.unlearning.train import UnlearnConfig, unlearn

    say = log or (lambda msg: None)
    started = time.time()
    sets = sets_of_testbed(testbed)
    if config.requests > len(sets.forget):
        raise ValueError(f"{config.requests} sequential requests cannot split a forget set of {len(sets.forget)} "
                         "documents: each needs at least one")
    tb = {"target_path": Path(testbed) / TESTBED_LAYOUT["target"], "retrain_path": Path(testbed) / TESTBED_LAYOUT["retrain"]}
    ev = config.eval
    tokenizer = AutoTokenizer.from_pretrained(tb["target_path"])
    timings: dict[str, float] = {}

    def fresh_target():
        return AutoModelForCausalLM.from_pretrained(tb["target_path"]).to(device).eval()

    lean = config.sweep_eval
    t = time.time()
    target_lm = HFModel.from_pretrained(str(tb["target_path"]), device=device)
    retrain_lm = HFModel.from_pretrained(str(tb["retrain_path"]), device=device)
    base = {"target": measure_model(target_lm, sets, lean), "retrain": measure_model(retrain_lm, sets, lean)}
    full = {"target": measure_model(target_lm, sets, ev), "retrain": measure_model(retrain_lm, sets, ev)}
    timings["measure_reference_s"] = round(time.time() - t, 2)
    say(f"target and retrain measured in {timings['measure_reference_s']:.0f} s")

    def unlearn_cfg(name: str, lr: float, epochs: int) -> UnlearnConfig:
        return UnlearnConfig(**method_spec(name), lr=lr, epochs=epochs, batch_size=config.batch_size, seed=config.seed)

    # ---- sweep: every method × lr, evaluated after every epoch
    measures: dict[str, ModelMeasures] = dict(base)
    runs: list[dict] = []
    t = time.time()
    for name in config.methods:
        for lr in config.lrs:
            labels: list[tuple[int, str]] = []

            def on_epoch(epoch: int, net, name=name, lr=lr, labels=labels) -> None:
                label = f"{name} lr={lr:g} epoch={epoch}"
                measures[label] = measure_model(_as_model(net, tokenizer, name=label), sets, lean)
                labels.append((epoch, label))

            t_run = time.time()
            figures = unlearn(fresh_target(), tokenizer, sets.forget, sets.retain, unlearn_cfg(name, lr, config.epochs),
                              on_epoch=on_epoch)["figures"]
            runs.append({"method": name, "lr": lr, "labels": labels, "seconds": round(time.time() - t_run, 2),
                         "steps": figures["steps"], "loss_curve": figures["loss_curve"]})
            say(f"{name} lr={lr:g}: {config.epochs} epochs, evaluated each, in {time.time() - t_run:.0f} s")
    timings["sweep_s"] = round(time.time() - t, 2)

    t = time.time()
    table = compare(measures, target="target", retrain="retrain", n_bootstrap=config.sweep_bootstrap, seed=ev.seed)
    sweep = []
    for run in runs:
        for epoch, label in run["labels"]:
            row = table["models"][label]
            sweep.append({"method": run["method"], "lr": run["lr"], "epoch": epoch, "label": label,
                          "headline": headline(row), "utility": _value(row, "knowmem_retain_vs_target"),
                          "verbmem_minus_retrain": _value(row, "verbmem_forget_minus_retrain"),
                          "criteria": _criteria(row), "row": row, "meets": meets(row, config.targets)})
    by_method = {name: [p for p in sweep if p["method"] == name] for name in config.methods}
    for name, points in by_method.items():
        for p, on in zip(points, pareto(points)):
            p["frontier"] = on
    best = {name: select(points) for name, points in by_method.items()}

    timings["compare_s"] = round(time.time() - t, 2)

    # ---- leaderboard: each method's best point trained again (the learning rate is constant
    # and every draw seeded, so a run stopped at that epoch is the sweep's model there: checked)
    # and measured in full
    t = time.time()
    chosen = dict(full)
    for name in config.methods:
        p = best[name]
        cfg = unlearn_cfg(name, p["lr"], p["epoch"])
        net = _result_model(cfg, fresh_target, unlearn(fresh_target(), tokenizer, sets.forget, sets.retain, cfg), tokenizer)
        lm = _as_model(net, tokenizer, name=p["label"])
        again = measure_model(lm, sets, lean)
        p["rerun_matches_sweep"] = ([r.get("continuation") for r in again.documents["forget"]]
                                    == [r.get("continuation") for r in measures[p["label"]].documents["forget"]])
        chosen[p["label"]] = measure_model(lm, sets, ev)
    board = compare(chosen, target="target", retrain="retrain", n_bootstrap=ev.n_bootstrap, seed=ev.seed)
    leaderboard = [{"model": "target", "method": None, **_entry(board["models"]["target"], config.targets)},
                   {"model": "retrain", "method": None, **_entry(board["models"]["retrain"], config.targets)}]
    for name in config.methods:
        p = best[name]
        leaderboard.append({"model": p["label"], "method": name, "lr": p["lr"], "epoch": p["epoch"],
                            "rerun_matches_sweep": p["rerun_matches_sweep"], **_entry(board["models"][p["label"]], config.targets)})
    timings["leaderboard_s"] = round(time.time() - t, 2)

    # ---- C5 scalability and C6 sustainability, at each method's best setting
    scale_methods = config.scale_methods if config.scale_methods is not None else config.methods
    scalability: dict[str, list[dict]] = {}
    sustainability: dict[str, list[dict] | dict] = {}
    t = time.time()
    sizes = [n for n in config.scale_sizes if n < len(sets.forget)]
    too_big = [n for n in config.scale_sizes if n >= len(sets.forget)]  # |F| itself is the sweep's run
    requests = split_requests(sets.forget, config.requests, seed=config.seed) if config.requests else []
    for name in scale_methods:
        p = best[name]
        cfg = unlearn_cfg(name, p["lr"], p["epoch"])
        scalability[name] = []
        for n in sizes:
            from lmaudit.testbed.forget import select_forget

            subset, _, _ = select_forget(sets.forget, n, seed=config.seed)
            got = _result_model(cfg, fresh_target, unlearn(fresh_target(), tokenizer, subset, sets.retain, cfg), tokenizer)
            scalability[name].append(_judged(f"{name} |F|={n}", got, tokenizer, sets, lean, base,
                                             {r.id for r in subset}, extra={"n_forget": n}))
        scalability[name].append({**_summary_of(table["models"][p["label"]]), "n_forget": len(sets.forget),
                                  "criteria": _criteria(table["models"][p["label"]])})
        if not requests:
            continue
        if cfg.method == "whp":
            sustainability[name] = {"skipped": "whp's result is an inference-time combination, not weights a "
                                               "second request could start from"}
            continue
        net, removed, steps = fresh_target(), set(), []
        for i, chunk in enumerate(requests, 1):
            net = unlearn(net, tokenizer, chunk, sets.retain, cfg)["model"]
            removed |= {r.id for r in chunk}
            steps.append(_judged(f"{name} request {i}", net, tokenizer, sets, lean, base, removed,
                                 extra={"request": i, "n_removed": len(removed)}))
        sustainability[name] = steps
        say(f"{name}: scalability and sustainability done")
    timings["scale_s"] = round(time.time() - t, 2)
    timings["total_s"] = round(time.time() - started, 2)

    # Rows some value could not be computed for (a document too short for VerbMem, a question
    # whose prompt does not fit), per measured model: counted, never dropped in silence.
    error_rows = {label: n for label, m in {**measures, **chosen}.items() if (n := _n_errors(m))}
    for name, rows in [*scalability.items(), *sustainability.items()]:
        for r in rows if isinstance(rows, list) else []:
            if r.get("n_errors"):
                label = f"{name} |F|={r['n_forget']}" if "n_forget" in r and "request" not in r else f"{name} request {r['request']}"
                error_rows[label] = r["n_errors"]
    for p in sweep:
        p["row"] = None  # the full rows of the chosen points are in the leaderboard; the sweep keeps headlines
    return {
        "config": config.to_dict(),
        "sets": {"forget": len(sets.forget), "retain": len(sets.retain), "holdout": len(sets.holdout),
                 "requests": [len(c) for c in requests], "scale_sizes": sizes,
                 "scale_sizes_left_out": {"sizes": too_big, "why": f"not below |F| = {len(sets.forget)}"} if too_big else None},
        "data": sets.data,
        "models": {name: m.provenance for name, m in full.items()},
        "reference": {"target": _summary_of(board["models"]["target"]), "retrain": _summary_of(board["models"]["retrain"])},
        "leaderboard": leaderboard,
        "sweep": [{k: v for k, v in p.items() if k != "row"} for p in sweep],
        "runs": [{k: v for k, v in r.items() if k != "labels"} for r in runs],
        "scalability": scalability,
        "sustainability": sustainability,
        "selection": "each method's point with the smallest total miss of the targets, chosen on this evaluation "
                     "(optimistic: MUSE's practice; a held-out choice would be stricter)",
        "timings": timings,
        "error_rows": error_rows,
        "n_errors": sum(error_rows.values()),
    }


def _criteria(row: dict) -> dict:
    """The figures the targets and the frontier are read from, each with its interval and n."""
    return {"verbmem_forget": row["verbmem_forget"], "extraction_forget": row["extraction_forget"],
            "knowmem_forget": row.get("knowmem_forget"), "knowmem_retain": row.get("knowmem_retain"),
            "privleak": {k: v for k, v in row["privleak"].items() if k != "privleak_muse"},
            "loss_retain": row["loss"]["retain"], "loss_holdout": row["loss"]["holdout"],
            "verbmem_forget_minus_retrain": row.get("verbmem_forget_minus_retrain"),
            "knowmem_retain_vs_target": row.get("knowmem_retain_vs_target")}


def _n_errors(m: ModelMeasures) -> int:
    return sum(1 for part in (m.documents, m.knowledge) for rows in part.values() for r in rows if r.get("error"))


def _summary_of(row: dict) -> dict:
    from lmaudit.unlearning.compare import headline

    return {**headline(row), "verbmem_forget_minus_retrain": _value(row, "verbmem_forget_minus_retrain"),
            "knowmem_retain_vs_target": _value(row, "knowmem_retain_vs_target")}


def _value(row: dict, key: str) -> float | None:
    """A compared row's figure (``{"value", "ci", "n"}`` or None) as a number or None."""
    x = row.get(key)
    return None if x is None else x.get("value")


def _entry(row: dict, targets: Targets) -> dict:
    return {"summary": _summary_of(row), "meets": meets(row, targets), "row": row}


def _judged(label: str, net, tokenizer, sets: UnlearnSets, ev: EvalConfig, base: dict, forget_ids: set,
            *, extra: dict) -> dict:
    """Measure a C5/C6 model and compare it, on the documents it was asked to remove, with the
    target and the retrain model (which never saw any of F, so it is the reference for every part)."""
    from lmaudit.unlearning.compare import compare

    m = measure_model(_as_model(net, tokenizer, name=label), sets, ev)
    cut = {name: restrict(x, forget_ids) for name, x in {**base, label: m}.items()}
    row = compare(cut, target="target", retrain="retrain", n_bootstrap=ev.n_bootstrap, seed=ev.seed)["models"][label]
    return {**extra, **_summary_of(row), "criteria": _criteria(row), "n_errors": _n_errors(m)}


def _result_model(cfg, fresh_target, result: dict, tokenizer):
    """The model a run leaves: its weights, or for whp the combination of a fresh target with
    the reinforced model it returns."""
    if cfg.method != "whp":
        return result["model"]
    from lmaudit.unlearning import ARITHMETIC

    return ARITHMETIC.get("whp")(alpha=cfg.alpha).at_epoch(fresh_target(), result["model"], tokenizer)


def _fmt(x, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


def _count(rate: dict) -> str:
    return "–" if not rate.get("n") else f"{round(rate['value'] * rate['n'])}/{rate['n']}"


def _interval(ci) -> str:
    return "" if not ci else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def leaderboard_markdown(results: dict) -> str:
    """The leaderboard as a Markdown table (also in results.json)."""
    t = results["config"]["targets"]
    head = ("| model | lr | epochs | VerbMem F (Δ retrain) | extracted F | KnowMem F | PrivLeak | KnowMem R (× target) "
            "| loss R | loss H | forget quality p | model utility | targets met |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for e in results["leaderboard"]:
        s, row, m = e["summary"], e["row"], e["meets"]
        pl = row["privleak"]
        fq = row.get("forget_quality")
        met = "reference" if e["method"] is None else ", ".join(k for k in ("verbmem", "privleak", "utility") if m[k]) or "none"
        lines.append("| " + " | ".join([
            e["model"], _fmt(e.get("lr"), "g"), _fmt(e.get("epoch"), "d"),
            f"{_fmt(s['verbmem_forget'])} ({_fmt(s['verbmem_forget_minus_retrain'], '+.1f')})",
            _count(row["extraction_forget"]),
            _fmt(s["knowmem_forget"]),
            f"{_fmt(pl['value'], '+.1f')} {_interval(pl.get('ci'))}",
            f"{_fmt(s['knowmem_retain'])} ({_fmt(s['knowmem_retain_vs_target'], '.2f')})",
            _fmt(s["loss_retain"], ".3f"), _fmt(row["loss"]["holdout"]["value"], ".3f"),
            "–" if fq is None else f"{fq['p_value']:.2g} (n = {fq['n_unlearned']}"
            + (f", {fq['n_documents']} docs)" if fq.get("n_documents") else ")"),
            _fmt(s["model_utility"], ".3f"), met]) + " |")
    lines.append("")
    lines.append(f"Targets: VerbMem on F within {t['verbmem_gap']:g} points of the retrain model's, |PrivLeak| ≤ "
                 f"{t['privleak']:g}, KnowMem on R ≥ {t['utility']:.0%} of the target's. {results['selection']}.")
    return "\n".join(lines) + "\n"


def frontier_svg(results: dict) -> str:
    """Forgetting against utility at every sweep point: one line per method and learning rate
    through its epochs, the target and retrain models as markers."""
    from lmaudit.report.plots import frontier

    curves: dict[str, list] = {}
    for p in results["sweep"]:
        h = p["headline"]
        if h["verbmem_forget"] is not None and p.get("utility") is not None:
            curves.setdefault(p["method"], []).append((h["verbmem_forget"], p["utility"], f"lr={p['lr']:g}"))
    ref = {name: (results["reference"][name]["verbmem_forget"], results["reference"][name]["knowmem_retain_vs_target"])
           for name in ("target", "retrain")}
    ref = {k: v for k, v in ref.items() if None not in v}
    return str(frontier(curves, reference=ref, xlabel="VerbMem on F (ROUGE-L F1 × 100; lower: more forgotten)",
                        ylabel="KnowMem on R / target's", ytarget=results["config"]["targets"]["utility"],
                        title="Unlearning frontier: forgetting against utility, every method, learning rate and epoch"))


def bench_to_dir(testbed: str | Path, out: str | Path, config: BenchConfig = BenchConfig(), *,
                 command: str = "unlearn-bench", started: float | None = None, log=None, device: str = "cpu") -> dict:
    """:func:`run_bench`, then write ``out``: results.json (kind "unlearn-bench"), samples.jsonl
    (one row per sweep point), leaderboard.md and frontier.svg."""
    from lmaudit.data import data_fingerprint
    from lmaudit.report.run import RunWriter

    out = Path(out)
    with RunWriter(out, kind="unlearn-bench", command=command, started=started) as run:
        results = run_bench(testbed, config, log=log, device=device)
        run.samples({"method": p["method"], "lr": p["lr"], "epoch": p["epoch"], **p["headline"],
                     "knowmem_retain_vs_target": p["utility"], "frontier": p["frontier"], "meets_all": p["meets"]["all"],
                     "miss": p["meets"]["miss"]} for p in results["sweep"])
        for name, text in (("leaderboard.md", leaderboard_markdown(results)), ("frontier.svg", frontier_svg(results))):
            (out / name).write_text(text, encoding="utf-8")
            run.add_file(name.split(".")[0], out / name, rows=text.count("\n"))
        tb = Path(testbed)
        best = [e for e in results["leaderboard"] if e["method"]]
        summary = {"n_methods": len(best), "reached_all_targets": [e["method"] for e in best if e["meets"]["all"]],
                   "best": min(best, key=lambda e: e["meets"]["miss"])["method"] if best else None,
                   "wall_time_s": results["timings"]["total_s"], "n_errors": results["n_errors"],
                   "leaderboard": {e["model"]: e["summary"] for e in results["leaderboard"]}}
        provenance = {"testbed": {"path": str(tb), **{k: v for k, v in data_fingerprint(tb / "testbed.json").items()
                                                      if k in ("sha256", "bytes")}},
                      "data": results["data"], "models": results["models"], "config": results["config"], "device": device}
        return run.finish(summary=summary, provenance=provenance, extra=results)


__all__ = ["BenchConfig", "bench_to_dir", "leaderboard_markdown", "frontier_svg", "Targets", "run_bench", "method_spec", "meets", "select", "pareto", "restrict",
           "split_requests"]
