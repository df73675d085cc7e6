"""``lmaudit knowledge``: can the model answer questions about the facts in the data (MUSE KnowMem, TOFU)?"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, progress_bar, say, start_run
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, EngineOptions, ModelOptions, option_groups

EXAMPLE = ("Example: lmaudit knowledge --model lmaudit-demo/model --data lmaudit-demo/data/knowledge/members.jsonl "
           "--shots lmaudit-demo/data/knowledge/shots.jsonl --template cloze --n-shots 0 --out runs/knowledge\n\n"
           f"{EXIT_STATUS} Here an error row is a question whose prompt and --max-new-tokens exceed the context "
           "(items left out as shots are not error rows).")


@option_groups(omit=("text_field",))  # --question-field names the text
def knowledge(
    data: Annotated[Path, typer.Option(help="Questions with answers (`duplication` / `kind` fields give breakdowns).")],
    out: OutDir,
    model: ModelOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    shots: Annotated[Path | None, typer.Option(
        help="Worked examples (same fields). Without it, --n-shots items are drawn as shots and not evaluated.")] = None,
    n_shots: int = typer.Option(3, min=0, help="Worked examples before each question (0: zero-shot)."),
    template: str = typer.Option("qa", help="qa: 'Question: ... Answer:' (MUSE); cloze: the question is a "
                                            "statement's start, for models that never saw QA."),
    max_new_tokens: int = typer.Option(32, min=1, help="Tokens generated per answer."),
    stem: bool = typer.Option(False, help="Porter-stem words before ROUGE-L (needs nltk)."),
    question_field: str = typer.Option("question", help="Field holding the question."),
    answer_field: str = typer.Option("answer", help="Field holding the true answer."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates for the ROUGE intervals (rates: Clopper-Pearson)."),
    seed: int = typer.Option(0, help="Seeds the draw of shots and the bootstrap."),
) -> None:
    """Few-shot question answering, greedy: exact match and ROUGE-L of each answer."""
    from lmaudit.data import DataError
    from lmaudit.engines import EngineError
    from lmaudit.memorization.knowledge import KnowledgeConfig, knowledge_to_dir, select_shots

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    try:
        config = KnowledgeConfig(template=template, n_shots=n_shots, max_new_tokens=max_new_tokens, stem=stem,
                                 n_bootstrap=bootstrap, seed=seed)
    except ValueError as err:
        fail(str(err))
    runner = engine.get()  # Ray missing fails here, before any file is read
    items, entry = inputs.read(data, role="questions", text_field=question_field)
    entries = [entry]
    shot_records = None
    if shots is not None:
        shot_records, shots_entry = inputs.read(shots, role="shots", text_field=question_field)
        entries.append(shots_entry)
    try:  # answers and shots checked before the model loads
        select_shots(items, shot_records, config=config, answer_field=answer_field)
    except (DataError, ValueError) as err:
        fail(str(err))
    lm = engine.wrap(model.load())
    try:
        with progress_bar("answering", len(items)) as advance:
            r = knowledge_to_dir(lm, items, out, shots=shot_records, config=config, answer_field=answer_field,
                                 batch_size=model.batch_size, data=entries, command=command_line(), started=started,
                                 progress=advance, engine=runner)
    except (DataError, ValueError, EngineError) as err:
        fail(str(err))
    if r["n"]:
        say(f"{r['n']} questions ({r['n_errors']} too long, {len(r['excluded'])} left out as shots): exact match "
            f"{r['exact_match_rate']:.1%}, ROUGE-L F1 {r['rouge_l_f1_mean']:.3f}, recall {r['rouge_l_recall_mean']:.3f}")
        for level, v in r.get("by_duplication", {}).items():
            if v["n"]:
                say(f"  duplication {level}: exact match {v['exact_match_rate']:.1%} of {v['n']}")
    say(f"results in {out}/results.json, per-question rows in {out}/samples.jsonl")
    end_run(out, r, n_errors=r["n_errors"], rows="questions", why="not answered (prompt too long for the context)")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(knowledge)
