"""``lmaudit score``: per-token statistics of a model on a data file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, progress_bar, say, start_run
from lmaudit.cli.options import DataOptions, EngineOptions, ModelOptions, ScoringOptions, check_policy, option_groups

EXAMPLE = ("Example: lmaudit score --model lmaudit-demo/model --data lmaudit-demo/data/members.jsonl --out runs/members"
           f"\n\n{EXIT_STATUS} Here an error row is a document that is empty, longer than --max-length under "
           "--overflow error, or whose statistics are not finite.")


@option_groups()
def score(
    data: Annotated[Path, typer.Option(
        "--data", "-d", help="JSONL, text file, folder of .txt files, Parquet, or a saved `datasets` folder.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output directory: results.json, samples.jsonl, tokens.parquet.")],
    model: ModelOptions,
    scoring: ScoringOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    seed: int = typer.Option(0, help="Recorded in results.json (scoring itself is deterministic)."),
) -> None:
    """Score every document: log-probability of each token, vocabulary mean/std and entropy."""
    from lmaudit.data import DataError
    from lmaudit.engines import EngineError
    from lmaudit.scoring.run import score_to_dir

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    policy = scoring.policy()
    runner = engine.get()
    # The file is read as it is scored (a JSONL file one line at a time), never held whole.
    records, entry = inputs.stream(data, role="documents")
    lm = engine.wrap(model.load())
    check_policy(policy, lm)  # a policy the model cannot honour fails before any work
    with progress_bar("scoring", entry["n_rows"]) as advance:
        try:
            results = score_to_dir(
                lm, records, out, policy=policy, batch_size=model.batch_size, cache_path=scoring.cache_path(out),
                data=[entry], command=command_line(), seed=seed, progress=advance, started=started, engine=runner,
            )
        except (DataError, EngineError) as err:  # the file changed since it was checked; a worker failed
            fail(str(err))
    s = results["summary"]
    say(f"scored {s['n_scored']}/{s['n_rows']} documents ({s['n_errors']} error rows), {s['n_tokens']} tokens; "
        f"mean loss {s['mean_doc_loss'] if s['mean_doc_loss'] is None else round(s['mean_doc_loss'], 4)}")
    say(f"results in {out}/results.json")
    end_run(out, results, n_errors=s["n_errors"], rows="documents", why="not scored")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(score)
