"""``lmaudit unlearn-eval``: did unlearning remove the forget set, and what did it cost? MUSE's
criteria and TOFU's metrics per model, against the target and a model retrained without F."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, say, start_run
from lmaudit.cli.loading import OutDir, load_model
from lmaudit.cli.options import EngineOptions, option_groups

EXAMPLE = ("Example: lmaudit unlearn-eval --testbed lmaudit-demo --model runs/unlearn/model --out runs/unlearn-eval\n\n"
           "Without --testbed: --target T --retrain R --forget F --retain R --holdout H [--forget-knowledge ... "
           "--retain-knowledge ... --holdout-knowledge ... --shots ...].\n\n"
           f"{EXIT_STATUS} Here an error row is a document or question some value could not be computed for.")

PANEL = "Evaluation"

REQUIRED = ("target", "retrain", "forget", "retain", "holdout")


def resolve_inputs(testbed: Path | None, given: dict) -> dict:
    """The inputs: each explicit option, else the testbed's file when it exists. Exits naming
    the first required input that is missing (the retrain model above all: no default)."""
    from lmaudit.unlearning.sets import TESTBED_LAYOUT

    paths = dict(given)
    if testbed is not None:
        if not testbed.is_dir():
            fail(f"--testbed {testbed} is not a folder")
        for key, rel in TESTBED_LAYOUT.items():
            if paths.get(key) is None and (testbed / rel).exists():
                paths[key] = str(testbed / rel) if key in ("target", "retrain") else testbed / rel
    for key in REQUIRED:
        if paths.get(key) is None:
            option = f"--{key.replace('_', '-')}"
            where = (f" (the testbed {testbed} has no {TESTBED_LAYOUT[key]}: build it with `lmaudit testbed "
                     "--forget N`)" if testbed is not None else "")
            what = ("the retrain model (trained without the forget set) is required: PrivLeak and forget quality "
                    "are measured against it, and there is no default" if key == "retrain" else f"{option} is required")
            fail(f"{what}; give {option} or --testbed{where}")
    return paths


@option_groups()
def unlearn_eval(
    out: OutDir,
    engine: EngineOptions,
    model: Annotated[Optional[List[str]], typer.Option(
        "--model", "-m", help="An unlearned model to evaluate (repeat for several).")] = None,
    target: Annotated[Optional[str], typer.Option(help="The model before unlearning.")] = None,
    retrain: Annotated[Optional[str], typer.Option(
        help="The model trained without the forget set (required: the reference).")] = None,
    forget: Annotated[Optional[Path], typer.Option(help="Forget set F (JSONL documents).")] = None,
    retain: Annotated[Optional[Path], typer.Option(help="Retain set R: the target's other training documents.")] = None,
    holdout: Annotated[Optional[Path], typer.Option(help="Holdout H: documents no model saw.")] = None,
    forget_knowledge: Annotated[Optional[Path], typer.Option(
        help="Questions about F: question, answer, paraphrased_answer, perturbed_answers.")] = None,
    retain_knowledge: Annotated[Optional[Path], typer.Option(help="Questions about R (same fields).")] = None,
    holdout_knowledge: Annotated[Optional[Path], typer.Option(help="Questions about H (same fields).")] = None,
    shots: Annotated[Optional[Path], typer.Option(help="Worked examples for --n-shots > 0.")] = None,
    testbed: Annotated[Optional[Path], typer.Option(
        help="A testbed built with --forget: fills target, retrain and every data file (options given override).")] = None,
    attack: Annotated[str, typer.Option(help="PrivLeak's membership attack (MUSE: Min-40%).",
                                        rich_help_panel=PANEL)] = "min_k@0.4",
    prefix_tokens: Annotated[int, typer.Option(min=1, help="VerbMem prompt tokens.", rich_help_panel=PANEL)] = 32,
    continuation_tokens: Annotated[int, typer.Option(min=1, help="VerbMem continuation tokens.",
                                                     rich_help_panel=PANEL)] = 32,
    template: Annotated[str, typer.Option(help="Knowledge prompts: cloze (testbed) or qa (MUSE).",
                                          rich_help_panel=PANEL)] = "cloze",
    n_shots: Annotated[int, typer.Option(min=0, help="Worked examples per question (from --shots).",
                                         rich_help_panel=PANEL)] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per answer.",
                                                rich_help_panel=PANEL)] = 12,
    knowledge_docs: Annotated[int, typer.Option(
        min=0, help="Retain and holdout questions of at most this many documents, drawn with --seed (0: all).",
        rich_help_panel=PANEL)] = 100,
    bootstrap: Annotated[int, typer.Option(min=10, help="Bootstrap replicates of every interval.",
                                           rich_help_panel=PANEL)] = 1000,
    seed: Annotated[int, typer.Option(help="Seeds the question subsample and the bootstraps.",
                                      rich_help_panel=PANEL)] = 0,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.")] = "auto",
    trust_remote_code: Annotated[bool, typer.Option(help="Run code shipped with the checkpoints.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per forward pass.")] = 64,
) -> None:
    """Unlearning evaluation: VerbMem, KnowMem, PrivLeak, utility (MUSE) and TOFU's metrics per model."""
    from lmaudit.data import DataError
    from lmaudit.engines import EngineError
    from lmaudit.unlearning.compare import headline
    from lmaudit.unlearning.evaluate import unlearn_eval_to_dir
    from lmaudit.unlearning.measure import EvalConfig
    from lmaudit.unlearning.sets import UnlearnSets

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    runner = engine.get()  # Ray missing fails here, before any file is read
    paths = resolve_inputs(testbed, {"target": target, "retrain": retrain, "forget": forget, "retain": retain,
                                     "holdout": holdout, "forget_knowledge": forget_knowledge,
                                     "retain_knowledge": retain_knowledge, "holdout_knowledge": holdout_knowledge,
                                     "shots": shots})
    candidates = list(model or [])
    dup = sorted({m for m in candidates if candidates.count(m) > 1})
    if dup:
        fail(f"--model given twice: {', '.join(dup)}")
    try:
        config = EvalConfig(prefix_tokens=prefix_tokens, continuation_tokens=continuation_tokens, attack=attack,
                            template=template, n_shots=n_shots, max_new_tokens=max_new_tokens,
                            knowledge_docs=knowledge_docs or None, n_bootstrap=bootstrap, seed=seed,
                            batch_size=batch_size)
    except (KeyError, ValueError) as err:
        fail(str(err).strip('"'))
    try:  # every file read and checked (F and R disjoint, knowledge fields) before any model loads
        sets = UnlearnSets.from_files(**{k: paths.get(k) for k in ("forget", "retain", "holdout", "forget_knowledge",
                                                                   "retain_knowledge", "holdout_knowledge", "shots")})
    except (DataError, ValueError) as err:
        fail(str(err))
    if n_shots and not sets.shots:
        fail(f"--n-shots {n_shots} needs --shots (worked examples)")
    say(f"forget {len(sets.forget)}, retain {len(sets.retain)}, holdout {len(sets.holdout)} documents; questions: "
        + ", ".join(f"{s} {len(sets.knowledge(s))}" for s in ("forget", "retain", "holdout")))
    load = dict(dtype=dtype, device=device, trust_remote_code=trust_remote_code, batch_size=batch_size)
    # Every model on the same engine: each scores and generates on its own actor pool in turn.
    target_lm = engine.wrap(load_model(paths["target"], what="target model", **load))
    retrain_lm = engine.wrap(load_model(paths["retrain"], what="retrain model", **load))
    loaded = {name: engine.wrap(load_model(name, what="model", **load)) for name in candidates}
    try:
        r = unlearn_eval_to_dir(loaded, out, target=target_lm, retrain=retrain_lm, sets=sets, config=config,
                                command=command_line(), started=started,
                                on_model=lambda label: say(f"measuring {label}"), engine=runner)
    except (DataError, ValueError, EngineError) as err:
        fail(str(err))
    for label, row in r["models"].items():
        h = headline(row)
        say(f"{label:>{max(map(len, r['models']))}} ({row['role']}): " + "  ".join(
            f"{name} {_fmt(h[key])}" for name, key in (
                ("VerbMem", "verbmem_forget"), ("extraction", "extraction_forget"), ("KnowMem F", "knowmem_forget"),
                ("KnowMem R", "knowmem_retain"), ("PrivLeak", "privleak"), ("loss R", "loss_retain"),
                ("forget quality p", "forget_quality"), ("utility", "model_utility"))))
    say(f"results in {out}/results.json, per-item rows in {out}/samples.jsonl")
    end_run(out, r, n_errors=r["n_errors"], rows="rows", why="have no value for some criterion")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def register(app: typer.Typer) -> None:
    app.command("unlearn-eval", epilog=EXAMPLE)(unlearn_eval)
