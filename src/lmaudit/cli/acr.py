"""``lmaudit acr``: the Adversarial Compression Ratio of each target text (Schwarzschild et al. 2024)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, progress_bar, say, start_run
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, ModelOptions, option_groups

EXAMPLE = ("Example: lmaudit acr --model lmaudit-demo/model --data runs/extract/samples.jsonl --text-field target "
           "--first 3 --steps 100 --candidates 50 --top-k 128 --patience 25 --out runs/acr\n\n"
           "The first 3 continuations of the extract example, at the demo's budget: about 40 s a target on 2 CPU "
           "cores (the defaults are the paper's budget, minutes a target). Any file of texts works as --data; "
           "extract's error rows are carried through as error rows.\n\n"
           "Each finished target is saved in OUT/cache.sqlite as it finishes: the same command, re-run after "
           "a kill, searches only the targets not yet done.\n\n"
           f"{EXIT_STATUS} Here an error row is a target that is empty, longer than the context, or an error row "
           "of the command that wrote --data.")


@option_groups(omit=("batch_size",))  # a GCG step's batch is --candidates
def acr(
    data: Annotated[Path, typer.Option(help="Target texts, one per row (`group` / `duplication` fields give breakdowns).")],
    out: OutDir,
    model: ModelOptions,
    inputs: DataOptions,
    steps: int = typer.Option(200, min=1, help="GCG steps at the first length (later lengths: see --steps-growth)."),
    top_k: int = typer.Option(250, min=1, help="Replacement tokens per position, ranked by the gradient."),
    candidates: int = typer.Option(100, min=1, help="Single-token swaps evaluated per step, in one batch."),
    patience: int | None = typer.Option(None, min=1, help="Give a length up after this many steps without a new "
                                                         "lowest loss (default: run all its steps)."),
    search: str = typer.Option("grow", help="grow: the paper's order, start at --start-tokens and grow until a "
                                            "prompt is found, then shrink (finds shorter prompts); shrink: start at "
                                            "--max-prompt-tokens and only shrink (gives up on a target sooner)."),
    start_tokens: int = typer.Option(5, min=1, help="First prompt length (--search grow)."),
    grow_tokens: int = typer.Option(5, min=1, help="Tokens added after a failed length (--search grow)."),
    steps_growth: float = typer.Option(1.2, min=1.0, help="Step multiplier per failed length (--search grow)."),
    max_prompt_tokens: int | None = typer.Option(None, min=1, help="Longest prompt (default: target tokens - 1)."),
    max_seconds: float | None = typer.Option(None, min=0.1, help="Safety net per target, in seconds (the budget is "
                                             "--steps): a target it stops without a verdict is inconclusive."),
    first: int | None = typer.Option(None, min=1, help="Search only the first N targets of --data (a search takes "
                                                        "seconds to minutes a target)."),
    seed: int = typer.Option(0, help="Seeds initial tokens and candidate draws."),
    cache: Path | None = typer.Option(None, help="Finished targets (SQLite), saved as each finishes and keyed by "
                                                 "model, tokenizer, target and options. Default: OUT/cache.sqlite, "
                                                 "so a re-run resumes."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the cache."),
) -> None:
    """Shortest prompt (GCG) that makes the model greedily emit each target; ACR = target / prompt tokens."""
    from lmaudit.memorization.acr import ACRConfig, acr_to_dir

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    if search not in ("grow", "shrink"):
        fail(f"--search must be grow or shrink, got {search!r}")
    model.require("prompt_search", audit="ACR")
    try:
        config = ACRConfig(steps=steps, top_k=top_k, n_candidates=candidates, patience=patience,
                           start_tokens=start_tokens if search == "grow" else None, grow_tokens=grow_tokens, steps_growth=steps_growth,
                           max_prompt_tokens=max_prompt_tokens, max_seconds=max_seconds, seed=seed)
    except ValueError as err:
        fail(str(err))
    # Extract's error rows (no `target`, an `error`) become error rows here, not a failure.
    records, entry = inputs.read(data, role="targets", carry_errors=True)
    if first is not None:  # the entry keeps the file's own row count, beside the selection
        records, entry = records[:first], {**entry, "first": first}
        if "n_upstream_errors" in entry:  # the file's count stays; the selection's beside it
            entry["n_upstream_errors_first"] = sum(1 for r in records if r.error is not None)
        say(f"searching the first {len(records)} of them (--first)")
    lm = model.load(batch_size=candidates)
    with progress_bar("searching prompts", len(records)) as advance:
        r = acr_to_dir(lm, records, out, config=config, cache_path=None if no_cache else (cache or out / "cache.sqlite"),
                       data=[entry], command=command_line(), started=started, progress=advance)
    if r["n"]:
        lo, hi = r["memorized_rate_ci"]
        say(f"{r['n']} targets: memorized (ACR > 1) {r['memorized_rate']:.1%} (95% CI {lo:.1%}-{hi:.1%}); "
            f"{_found(r)} ({r['compute']['steps']} GCG steps, {r['compute']['seconds']:.0f} s)")
        for level, v in r.get("by_group", {}).items():
            if v["n"]:
                say(f"  {level}: memorized {v['memorized_rate']:.1%} of {v['n']}; {_found(v)}")
    if r["n_inconclusive"]:
        say(f"{r['n_inconclusive']} targets inconclusive: stopped by --max-seconds before a verdict "
            "(not counted in the rate)")
    if r["n_cached"]:
        say(f"{r['n_cached']} of {r['n_targets']} targets served from the cache (finished by an earlier run)")
    say(f"results in {out}/results.json, per-target prompts in {out}/samples.jsonl")
    end_run(out, r, n_errors=r["n_errors"], rows="targets", why="not searched (empty, longer than the context, or an upstream error row)")


def _found(r: dict) -> str:
    if not r["n_success"]:
        return "no prompt found"
    return f"a prompt found for {r['n_success']}, median ACR of those {r['acr_median']:.2f}"


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(acr)
