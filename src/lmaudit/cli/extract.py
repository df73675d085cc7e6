"""``lmaudit extract``: does the model continue each document's prefix with the document's own text?"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, progress_bar, say, start_run
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, EngineOptions, ModelOptions, option_groups

EXAMPLE = ("Example: lmaudit extract --model lmaudit-demo/model --data lmaudit-demo/data/members.jsonl "
           "--prefix-tokens 32 --suffix-tokens 32 --out runs/extract\n\n"
           f"{EXIT_STATUS} Here an error row is a document shorter than prefix + suffix tokens.")


@option_groups()
def extract(
    data: Annotated[Path, typer.Option(help="Documents to extract (a `duplication` field gives a breakdown).")],
    out: OutDir,
    model: ModelOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    prefix_tokens: int = typer.Option(32, min=1, help="Prompt: the document's first tokens (after BOS)."),
    suffix_tokens: int = typer.Option(32, min=1, help="Tokens that must follow exactly (also the tokens generated)."),
    sample: int = typer.Option(0, min=0, help="0: greedy. N: sample N continuations, keep the lowest-loss one."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (with --sample)."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates for the token-match interval (rates: Clopper-Pearson)."),
    seed: int = typer.Option(0, help="Seeds sampling and the bootstrap."),
) -> None:
    """Greedy (or best-of-N sampled) continuation of each prefix: exact match, token match, longest match."""
    from lmaudit.engines import EngineError
    from lmaudit.memorization.extraction import ExtractionConfig, extraction_to_dir

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    try:
        config = ExtractionConfig(prefix_tokens=prefix_tokens, suffix_tokens=suffix_tokens, samples=sample,
                                  temperature=temperature, n_bootstrap=bootstrap, seed=seed)
    except ValueError as err:
        fail(str(err))
    runner = engine.get()  # Ray missing fails here, before any file is read
    records, entry = inputs.read(data, role="documents")
    lm = engine.wrap(model.load())
    try:
        with progress_bar("extracting", len(records)) as advance:
            r = extraction_to_dir(lm, records, out, config=config, batch_size=model.batch_size, data=[entry],
                                  command=command_line(), started=started, progress=advance, engine=runner)
    except (ValueError, EngineError) as err:
        fail(str(err))
    if r["n"]:
        lo, hi = r["exact_match_rate_ci"]
        say(f"{r['n']} documents ({r['n_errors']} too short): exact {prefix_tokens}->{suffix_tokens} extraction "
            f"{r['exact_match_rate']:.1%} (95% CI {lo:.1%}-{hi:.1%}), token match {r['token_match_mean']:.1%}")
        for level, v in r.get("by_duplication", {}).items():
            say(f"  duplication {level}: {v['exact_match_rate']:.1%} of {v['n']}")
    say(f"results in {out}/results.json, per-document rows in {out}/samples.jsonl")
    end_run(out, r, n_errors=r["n_errors"], rows="documents", why="not extracted (shorter than prefix + suffix)")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(extract)
