"""``lmaudit takedown-eval``: do decoding-time takedown methods stop the model reproducing protected
text, what do they cost in utility and speed? CoTaEval's protocol, every method against plain decoding."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, say, start_run
from lmaudit.cli.loading import OutDir, backend_class, load_model
from lmaudit.cli.options import DataOptions, EngineOptions, option_groups

EXAMPLE = ("Example: lmaudit takedown-eval --testbed lmaudit-demo --methods none,memfree,topk,rcad,sysprompt "
           "--out runs/takedown\n\n"
           "Without --testbed: --model M --protected F --unprotected F [--knowledge Q --shots S]. With it, the "
           "protected set is the testbed's most duplicated members, the unprotected set the other members, the "
           "questions data/knowledge/members.jsonl (options given override).\n\n"
           f"{EXIT_STATUS} Here an error row is a document shorter than prefix + continuation tokens, or a question "
           "whose prompt and answer do not fit the context (with the system prompt, for sysprompt).")

METHODS_PANEL = "Methods"
EVAL_PANEL = "Evaluation"


def testbed_inputs(testbed: Path) -> dict:
    """The testbed's model and files, and its protected / unprotected split: the members of the
    highest duplication level are protected (the ones it reproduces), the other members not."""
    import json

    if not (testbed / "testbed.json").is_file():
        fail(f"--testbed {testbed} is not a built testbed (no testbed.json): build it with `lmaudit testbed --out {testbed}`")
    members = testbed / "data" / "members.jsonl"
    levels = sorted({json.loads(line).get("duplication") for line in members.read_text(encoding="utf-8").splitlines()
                     if line.strip()} - {None})
    if not levels:
        fail(f"{members} has no duplication field: give --protected and --unprotected")
    return {"model": str(testbed / "model"), "members": members, "level": levels[-1],
            "knowledge": testbed / "data" / "knowledge" / "members.jsonl",
            "shots": testbed / "data" / "knowledge" / "shots.jsonl"}


@option_groups(omit=("text_field",))  # documents read `text`, questions `question`
def takedown_eval(
    out: OutDir,
    inputs: DataOptions,
    engine: EngineOptions,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The model (unfiltered).")] = None,
    protected: Annotated[Optional[Path], typer.Option(
        help="Protected documents: the MemFree index and R-CAD's retriever hold them, efficacy prompts are cut "
             "from them (a `duplication` field gives breakdowns).")] = None,
    unprotected: Annotated[Optional[Path], typer.Option(
        help="Documents of the same domain that are not protected (utility).")] = None,
    knowledge: Annotated[Optional[Path], typer.Option(
        help="Questions (question, answer, doc_id): about protected documents and about others (utility).")] = None,
    shots: Annotated[Optional[Path], typer.Option(help="Worked examples for --n-shots > 0.")] = None,
    testbed: Annotated[Optional[Path], typer.Option(
        help="A built testbed: fills model and inputs (protected = its most duplicated members).")] = None,
    methods: Annotated[str, typer.Option(
        help="Comma-separated methods, combinations joined by + (none, memfree, topk, rcad, sysprompt; e.g. "
             "memfree+sysprompt). Plain decoding (none) is always measured.", rich_help_panel=METHODS_PANEL)]
        = "none,memfree,topk,rcad,sysprompt",
    memfree_n: Annotated[int, typer.Option(min=2, help="MemFree n-gram length (CoTaEval: 6).",
                                           rich_help_panel=METHODS_PANEL)] = 6,
    memfree_kind: Annotated[str, typer.Option(help="auto, exact or bloom.", rich_help_panel=METHODS_PANEL)] = "auto",
    memfree_fp_rate: Annotated[float, typer.Option(help="Bloom filter false-positive rate.",
                                                   rich_help_panel=METHODS_PANEL)] = 1e-3,
    memfree_index: Annotated[Optional[Path], typer.Option(
        help="A saved MemFree index (OUT/memfree-index of an earlier run) instead of building one; refused if "
             "built from other documents or with another tokenizer (--memfree-kind and --memfree-fp-rate are then "
             "the index's own).", rich_help_panel=METHODS_PANEL)] = None,
    topk_k: Annotated[Optional[int], typer.Option(min=1, help="Top-k perturbation: logits that get noise.",
                                                  rich_help_panel=METHODS_PANEL)] = None,
    topk_sigma: Annotated[Optional[float], typer.Option(min=0.0, help="Top-k perturbation: noise std.",
                                                        rich_help_panel=METHODS_PANEL)] = None,
    rcad_alpha: Annotated[float, typer.Option(min=0.0, help="R-CAD's alpha.", rich_help_panel=METHODS_PANEL)] = 1.0,
    system_prompt: Annotated[Optional[str], typer.Option(
        help="sysprompt: a named instruction (see the guide) or the text itself.", rich_help_panel=METHODS_PANEL)] = None,
    prefix_tokens: Annotated[int, typer.Option(min=1, help="Prompt tokens cut from each document.",
                                               rich_help_panel=EVAL_PANEL)] = 32,
    continuation_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated and compared.",
                                                     rich_help_panel=EVAL_PANEL)] = 32,
    max_protected: Annotated[int, typer.Option(min=0, help="Protected documents prompted, drawn with --seed (0: all).",
                                               rich_help_panel=EVAL_PANEL)] = 0,
    max_unprotected: Annotated[int, typer.Option(min=0, help="Unprotected documents prompted (0: all).",
                                                 rich_help_panel=EVAL_PANEL)] = 200,
    knowledge_docs: Annotated[int, typer.Option(
        min=0, help="Questions of at most this many protected and unprotected documents each (0: all).",
        rich_help_panel=EVAL_PANEL)] = 100,
    template: Annotated[str, typer.Option(help="Knowledge prompts: cloze (testbed) or qa.",
                                          rich_help_panel=EVAL_PANEL)] = "cloze",
    n_shots: Annotated[int, typer.Option(min=0, help="Worked examples per question (from --shots).",
                                         rich_help_panel=EVAL_PANEL)] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per answer.",
                                                rich_help_panel=EVAL_PANEL)] = 12,
    timing_prompts: Annotated[int, typer.Option(min=1, help="Protected prompts timed per method (efficiency).",
                                                rich_help_panel=EVAL_PANEL)] = 256,
    timing_repeats: Annotated[int, typer.Option(min=1, help="Interleaved timed passes per method (median).",
                                                rich_help_panel=EVAL_PANEL)] = 3,
    bootstrap: Annotated[int, typer.Option(min=10, help="Bootstrap replicates of every interval.",
                                           rich_help_panel=EVAL_PANEL)] = 1000,
    seed: Annotated[int, typer.Option(help="Seeds the draws, top-k's noise and the bootstraps.",
                                      rich_help_panel=EVAL_PANEL)] = 0,
    backend: Annotated[str, typer.Option(
        help="hf, or vllm (GPU; only none and sysprompt: the other methods are logits processors).")] = "hf",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.")] = "auto",
    trust_remote_code: Annotated[bool, typer.Option(help="Run code shipped with the checkpoint.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generation call, the same for every method.")] = 32,
) -> None:
    """Takedown methods (MemFree, top-k perturbation, R-CAD, system prompt) against plain decoding: efficacy,
    utility, efficiency and CoTaEval's win rate."""
    from dataclasses import replace

    from lmaudit.data import DataError
    from lmaudit.engines import EngineError
    from lmaudit.takedown.evaluate import TakedownEvalConfig, headline, takedown_eval_to_dir
    from lmaudit.takedown.methods import TakedownConfig, parse_methods, require_processors, unportable_parts

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    runner = engine.get()  # Ray missing fails here, before any file is read
    try:
        parsed = parse_methods(methods)  # an unknown method is refused before anything is read or loaded
        # So is a method the backend cannot apply (vLLM takes no per-call logits processors).
        require_processors(backend_class(backend), {p for _, ps in parsed for p in ps})
        tconfig = TakedownConfig(memfree_n=memfree_n, memfree_kind=memfree_kind, memfree_fp_rate=memfree_fp_rate,
                                 rcad_alpha=rcad_alpha, seed=seed)
        tconfig = replace(tconfig, **{k: v for k, v in (("topk_k", topk_k), ("topk_sigma", topk_sigma),
                                                        ("system_prompt", system_prompt)) if v is not None})
        config = TakedownEvalConfig(prefix_tokens=prefix_tokens, continuation_tokens=continuation_tokens,
                                    max_protected=max_protected or None, max_unprotected=max_unprotected or None,
                                    knowledge_docs=knowledge_docs or None, template=template, n_shots=n_shots,
                                    max_new_tokens=max_new_tokens, timing_prompts=timing_prompts,
                                    timing_repeats=timing_repeats, batch_size=batch_size, takedown=tconfig,
                                    n_bootstrap=bootstrap, seed=seed)
    except ValueError as err:
        fail(f"--methods / options: {err}")
    refused = unportable_parts({p for _, parts in parsed for p in parts}) if runner.name != "local" else {}
    if refused:  # before anything is read, built or loaded
        fail(f"--engine {runner.name} cannot run {' or '.join(refused)}. "
             + "".join(f"{p}: {why}. " for p, why in refused.items())
             + f"Leave {' and '.join(refused)} out of --methods, or use --engine local")
    if memfree_index is not None and not (memfree_index / "memfree_index.json").is_file():
        fail(f"--memfree-index {memfree_index} is not a saved MemFree index (no memfree_index.json in it)")
    entries = []
    given = testbed_inputs(testbed) if testbed is not None else {}
    model = model or given.get("model")
    if model is None:
        fail("--model is required (or --testbed)")
    if protected is not None:
        prot, entry = inputs.read(protected, role="protected")
        entries.append(entry)
    elif given:
        members, entry = inputs.read(given["members"], role="members")
        entries.append({**entry, "protected": f"duplication == {given['level']}",
                        "unprotected": f"duplication != {given['level']}"})
        prot = [r for r in members if r.meta.get("duplication") == given["level"]]
    else:
        fail("--protected is required (or --testbed)")
    if unprotected is not None:
        unprot, entry = inputs.read(unprotected, role="unprotected")
        entries.append(entry)
    elif given:
        unprot = [r for r in members if r.meta.get("duplication") != given["level"]]
    else:
        fail("--unprotected is required (or --testbed)")
    questions, shot_records = [], None
    knowledge = knowledge or (given.get("knowledge") if given and given["knowledge"].exists() else None)
    shots = shots or (given.get("shots") if given and given["shots"].exists() else None)
    if knowledge is not None:
        questions, entry = inputs.read(knowledge, role="questions", text_field="question")
        entries.append(entry)
    if shots is not None and n_shots:
        shot_records, entry = inputs.read(shots, role="shots", text_field="question")
        entries.append(entry)
    if n_shots and shot_records is None:
        fail(f"--n-shots {n_shots} needs --shots (worked examples)")
    if not prot:
        fail(f"the protected corpus ({protected or given.get('members')}) is empty: nothing to protect")
    say(f"{len(prot)} protected documents, {len(unprot)} unprotected, {len(questions)} questions; methods: {methods}")
    lm = engine.wrap(load_model(model, what="model", dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                                batch_size=batch_size, backend=backend))
    try:
        r = takedown_eval_to_dir(lm, prot, unprot, methods, out, knowledge=questions, shots=shot_records,
                                 config=config, index_dir=memfree_index, data=entries, command=command_line(),
                                 started=started, on_method=lambda label: say(f"generating with {label}"),
                                 engine=runner)
    except (DataError, ValueError, EngineError) as err:
        fail(str(err))
    for label in r["methods"]:
        if label != "none":
            say(headline(r, label))
    say("win rate: " + ", ".join(f"{k} {v:.2f}" for k, v in r["win_rate"]["average"].items() if v is not None))
    say(f"results in {out}/results.json, per-item rows in {out}/samples.jsonl")
    end_run(out, r, n_errors=r["n_errors"], rows="rows", why="have no value (document too short, or question too long for the context)")


def register(app: typer.Typer) -> None:
    app.command("takedown-eval", epilog=EXAMPLE)(takedown_eval)
