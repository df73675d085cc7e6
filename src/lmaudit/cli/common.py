"""What subcommands share: quiet mode, the console, progress bars and error reporting."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@dataclass
class _State:
    quiet: bool = False
    overwrite: bool = False  # --overwrite of the running command (see start_run)
    report: bool = False  # --report of the running command (see end_run)
    argv: list[str] | None = None  # the arguments after `lmaudit` (None: sys.argv's)
    command: str | None = None  # the subcommand running
    # --engine ray: models load on the CPU here (the driver), and on the device asked for in
    # the workers, so the driver's copy never takes a GPU a worker needs (see load_model).
    driver_on_cpu: bool = False


state = _State()
QUIET_HELP = "No progress bars, tables or messages: only the summary as one line of JSON on stdout."
console = Console(stderr=True)


def say(message: str) -> None:
    if not state.quiet:
        console.print(message)


@contextlib.contextmanager
def _bar(description: str, total: int | None):
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        yield bar, bar.add_task(description, total=total)


@contextlib.contextmanager
def progress_bar(description: str, total: int):
    """Yields a callback that advances the bar by n; silent in quiet mode."""
    if state.quiet:
        yield lambda n=1: None
        return
    with _bar(description, total) as (bar, task):
        yield lambda n=1: bar.advance(task, n)


@contextlib.contextmanager
def step_bar(description: str):
    """Yields a callback (step, total) for work whose length is known only once it starts."""
    if state.quiet:
        yield lambda step, total: None
        return
    with _bar(description, None) as (bar, task):
        yield lambda step, total: bar.update(task, completed=step, total=total)


@contextlib.contextmanager
def pass_bars():
    """Yields ``on_pass(description, total)``, which adds a bar and returns its advance callback.

    For runs whose passes are decided as they go (one per attack that needs one).
    """
    if state.quiet:
        yield lambda description, total: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        def on_pass(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda n=1: bar.advance(task, n)

        yield on_pass


def fail(message: str, code: int = 2) -> None:
    """Print an error for a person (no traceback) and exit non-zero."""
    from rich.markup import escape

    # soft_wrap: long paths in errors stay whole, so they can be copied. Escaped: a message is
    # text, not markup ("pip install 'lmaudit[vllm]'" must keep its brackets).
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# Options whose value is a secret: the recorded command line (results.json, the run marker,
# the report) names the watermark key by its id, never by its value.
SECRET_OPTIONS = ("--key",)


def _redacted(value: str) -> str:
    from lmaudit.watermark.config import key_id

    try:
        return f"<key-id:{key_id(int(value))}>"
    except ValueError:
        return "<secret>"


def command_line() -> str:
    """The command line as run, for results.json: secrets (:data:`SECRET_OPTIONS`) replaced by
    their id."""
    out, secret = ["lmaudit"], False
    for arg in sys.argv[1:] if state.argv is None else state.argv:
        arg = str(arg)
        name, eq, value = arg.partition("=")
        if secret:
            out.append(_redacted(arg))
        elif eq and name in SECRET_OPTIONS:
            out.append(f"{name}={_redacted(value)}")
        else:
            out.append(arg)
        secret = arg in SECRET_OPTIONS
    return " ".join(out)


def print_summary(summary: dict) -> None:
    """In quiet mode, the run's summary as one line of JSON on stdout (all a script needs)."""
    if state.quiet:
        typer.echo(json.dumps(summary))


# The exit rule of every command that writes one samples.jsonl row per input (README, "Exit status").
EXIT_STATUS = ("Exit status: 0 when every row has a result; 1 when some are error rows (rows of OUT/samples.jsonl "
               "with an `error` field, counted on the terminal: the other rows are processed and results.json "
               "is written, counting them); 2 when the command could not run (bad options or input; "
               "no results.json).")


def end_run(out, results: dict, *, n_errors: int, rows: str, why: str) -> None:
    """End a command that wrote ``results`` (results.json's content) and one samples.jsonl row
    per input, by :data:`EXIT_STATUS`: with --report, its report (OUT/report.html, named in
    the summary); the summary as JSON in quiet mode; then, if
    ``n_errors`` rows are error rows, their count on stderr (also in quiet mode: the exit
    status alone does not say what went wrong) and exit status 1.

    Args:
        rows: What a row is, plural ("documents", "targets").
        why: What an error row is, after "N of M <rows>" ("could not be scored").
    """
    summary = dict(results["summary"])
    if state.report:
        summary["report"] = write_run_report(out)
    print_summary(summary)
    if n_errors:
        total = results["files"]["samples"]["rows"]
        console.print(f"[bold red]error:[/] {n_errors} of {total} {rows} {why}: the rows of {out}/samples.jsonl "
                      "with an `error` field say why", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def write_run_report(out, *, name: str = "report.html") -> str:
    """Write the report of the finished run in ``out`` to ``out``/``name``; return its path.
    The run's results stay whatever happens here; a report that cannot be written is an error
    (exit status 2) that says so."""
    from pathlib import Path

    from lmaudit.report.load import ReportError
    from lmaudit.report.page import write_report

    from lmaudit.report.results import is_lmaudit_report

    path = Path(out) / name
    if (path.exists() or path.is_symlink()) and not is_lmaudit_report(path):
        fail(f"the run finished (its results are in {out}/results.json), but {path} is not a report lmaudit wrote: "
             f"it is left as it is; write the report elsewhere with `lmaudit report {out} --out FILE`")
    try:
        written = write_report([out], path)
    except (ReportError, OSError) as err:
        fail(f"the run finished (its results are in {out}/results.json), but its report could not be written: {err}")
    say(f"report: {path} ({written['bytes'] / 1e6:.1f} MB)")
    return str(path)


def start_run(out) -> None:
    """Before a command reads anything: refuse an --out that is not a folder, or that holds
    another command's run (unless --overwrite: that run's files are then removed); and remove
    the folder's results.json, so that a failure from here on leaves no earlier result looking
    current. A re-run of the same command in its own folder is allowed (it resumes through
    the score cache)."""
    from pathlib import Path

    from lmaudit.report.results import invalidate_results
    from lmaudit.report.run import folder_command, remove_run

    if Path(out).exists() and not Path(out).is_dir():
        fail(f"--out {out} is a file, not a folder")
    from lmaudit.report.results import REPORT_FILE, is_lmaudit_report

    report = Path(out) / REPORT_FILE
    if state.report and (report.exists() or report.is_symlink()) and not is_lmaudit_report(report):
        fail(f"--report would replace {report}, which lmaudit did not write: move it, or leave out --report")
    this = state.command
    other = folder_command(out) if Path(out).is_dir() else None
    if this is not None and other is not None and other != this:
        what = f"`lmaudit {other}`" if other else "an lmaudit run of unknown command"
        if not state.overwrite:
            fail(f"--out {out} holds the run of {what}: choose another folder, or pass --overwrite to replace it")
        removed = remove_run(out)
        say(f"--overwrite: removed the run of {what} from {out} ({', '.join(removed) or 'no files'})")
    invalidate_results(out)
