"""``lmaudit unlearn-bench``: every unlearning method on a testbed's forget split, against its retrain model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lmaudit.cli.common import command_line, console, fail, print_summary, say, start_run, state, write_run_report
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import option_groups

EXAMPLE = ("Example: lmaudit unlearn-bench --testbed lmaudit-demo --methods ga,npo+kl --lrs 3e-4,1e-3 --epochs 2 "
           "--requests 2 --out runs/unlearn-bench\n\n"
           "The testbed needs a forget split (`lmaudit demo --all` or `lmaudit testbed --forget 100` adds one). "
           "Without options it runs the whole protocol: every method of --methods, the learning rates of --lrs, "
           "--epochs each (about 30 minutes on 2 cores with the default testbed).")


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        fail(f"{what} must be numbers separated by commas, got {text!r}")


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        fail(f"{what} must be whole numbers separated by commas, got {text!r}")


@option_groups()
def unlearn_bench(
    testbed: Annotated[Path, typer.Option(help="A testbed built with --forget N (lmaudit testbed --forget N).")],
    out: OutDir,
    methods: str = typer.Option("ga,gd,npo,npo+kl,simnpo,task_vector,whp",
                                help="Methods: a forget loss (ga, npo, simnpo), LOSS+RETAIN (npo+kl, npo+nll), "
                                     "gd (= ga+nll) or task_vector, whp."),
    lrs: str = typer.Option("1e-4,3e-4,1e-3", help="Learning rates of every method's sweep."),
    epochs: int = typer.Option(4, min=1, help="Epochs per run; the model is evaluated after each."),
    batch_size: int = typer.Option(8, min=1, help="Forget documents per step (and retain documents with them)."),
    scale_sizes: str = typer.Option("25,50", help="C5 scalability: forget-set sizes below |F| (|F| is the sweep's)."),
    requests: int = typer.Option(4, min=0, help="C6 sustainability: sequential requests F is split into (0: skip)."),
    scale_methods: str | None = typer.Option(None, help="Methods C5 and C6 run for (default: all)."),
    knowledge_docs: int = typer.Option(100, min=1, help="Retain and holdout questions of at most this many documents."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates of the leaderboard's intervals."),
    seed: int = typer.Option(0, help="Seeds training, the C5 subsets, the C6 split and the bootstraps."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
) -> None:
    """Sweep every method, keep each one's best setting, and judge it against the retrain model."""
    from lmaudit.unlearning.bench import BenchConfig, bench_to_dir
    from lmaudit.unlearning.measure import EvalConfig

    started = time.time()
    start_run(out)
    if not (testbed / "testbed.json").is_file():
        fail(f"--testbed {testbed}: no testbed.json (build one with `lmaudit testbed --out {testbed} --forget 100`)")
    try:
        config = BenchConfig(
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()), lrs=_floats(lrs, "--lrs"), epochs=epochs,
            batch_size=batch_size, scale_sizes=_ints(scale_sizes, "--scale-sizes"), requests=requests,
            scale_methods=tuple(m.strip() for m in scale_methods.split(",")) if scale_methods else None,
            eval=EvalConfig(knowledge_docs=knowledge_docs, n_bootstrap=bootstrap, seed=seed), seed=seed)
    except (KeyError, ValueError) as err:
        fail(str(err).strip('"'))
    try:
        r = bench_to_dir(testbed, out, config, command=command_line(), started=started, log=say, device=device)
    except ValueError as err:
        fail(str(err))
    say((out / "leaderboard.md").read_text(encoding="utf-8"))
    s = r["summary"]
    say(f"reached all three targets: {', '.join(s['reached_all_targets']) or 'no method'}; best: {s['best']}; "
        f"{s['wall_time_s']:.0f} s. Leaderboard {out}/leaderboard.md, frontier {out}/frontier.svg, results {out}/results.json")
    print_summary(dict(r["summary"]) | ({"report": write_run_report(out)} if state.report else {}))
    if r["summary"]["n_errors"]:
        console.print(f"[bold red]error:[/] {r['summary']['n_errors']} measured rows (documents or questions) have no "
                      f"value for some criterion: results.json's `error_rows` counts them per model", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command(name="unlearn-bench", epilog=EXAMPLE)(unlearn_bench)
