"""``lmaudit report``: one self-contained HTML page from the results of one or more runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import fail, print_summary, say

EXAMPLE = ("Example: lmaudit report lmaudit-demo/results --out report.html\n\n"
           "Exit status: 0 when the report is written; 2 when a folder holds no run, a run is not complete "
           "(unless --allow-incomplete), or a file it lists is missing or changed (no report is written).")


def report(
    runs: Annotated[list[Path], typer.Argument(
        help="Run folders (any command's --out), a demo's results folder, or a demo's --out folder.",
        show_default=False)],
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    title: Optional[str] = typer.Option(None, help="Heading of the page (default: from the runs' kinds)."),
    allow_incomplete: bool = typer.Option(
        False, "--allow-incomplete", help="Show a run that did not finish, or whose files changed, under an "
                                          "INCOMPLETE banner instead of refusing it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary as one line of JSON on stdout."),
) -> None:
    """Write one HTML page (inline CSS, script and plots; it loads nothing) with every run's verdict, plots,
    samples and provenance."""
    from lmaudit.cli.common import state
    from lmaudit.report.load import ReportError
    from lmaudit.report.page import write_report

    state.quiet = state.quiet or quiet
    if out.exists() and out.is_dir():
        fail(f"--out {out} is a folder; give the HTML file's path (e.g. {out}/report.html)")
    try:
        written = write_report(runs, out, title=title, allow_incomplete=allow_incomplete)
    except ReportError as err:
        fail(str(err))
    except OSError as err:
        fail(f"--out {out}: cannot write the report ({err.strerror or err})")
    shown = f" ({written['incomplete']} INCOMPLETE)" if written["incomplete"] else ""
    say(f"report of {written['runs']} run{'s' if written['runs'] != 1 else ''}{shown}: {out} "
        f"({written['bytes'] / 1e6:.1f} MB, {written['seconds']:.1f} s)")
    print_summary(written)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(report)
