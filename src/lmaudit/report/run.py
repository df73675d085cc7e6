"""One way to write a run's folder: :class:`RunWriter`.

Every command writes its files the same way:

    >>> with RunWriter(out, kind="extract", command="lmaudit extract ...") as run:       # doctest: +SKIP
    ...     result = run_extraction(model, records, config=config)
    ...     run.samples(result.samples)
    ...     written = run.finish(summary={...}, provenance={**result.provenance, "data": data},
    ...                          extra=result.results)

On entry the folder's results.json is removed (before any input is read or any work done),
so until this run finishes the folder never claims to hold a complete result. Each file is
written under a temporary name and renamed into place, and listed with its row count and
sha256. ``finish`` writes results.json last, with ``"complete": true``; if anything raises
inside the block, even after ``finish``, no results.json is left. Files other than
results.json are never deleted: a folder without results.json holds no finished run,
whatever else is in it.

On entry the writer also leaves ``.lmaudit-run.json`` (the command line), so a folder tells
which command wrote it even when that run died before results.json: :func:`folder_command`
reads it, and the command line refuses to mix two commands' files in one folder.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lmaudit.report.results import (REPORT_FILE, JsonlFile, TokenTable, file_entry, invalidate_results,
                                    is_lmaudit_report, write_jsonl, write_results, write_token_table)


@dataclass
class RunResult:
    """What a ``run_*`` function found and how it ran.

    Attributes:
        results: results.json's command-specific sections (metrics, breakdowns, exclusions).
        samples: One row per input, keyed by its id, in input order.
        provenance: What actually ran, as resolved inside the run: models, the resolved
            scoring policy, the config, batch size, seed. The caller adds ``data``.
    """

    results: dict
    samples: list[dict]
    provenance: dict

    # Reads as the (results, samples) tuple that run_extraction & co. returned before they
    # returned provenance too, so ``results, rows = run_extraction(...)`` keeps working.
    def __iter__(self):
        return iter((self.results, self.samples))

    def __getitem__(self, index):
        return (self.results, self.samples)[index]


class RunWriter:
    """Write one run into ``out``: samples and other files first, results.json last.

    Args:
        out: The run's folder; created if needed.
        command: The command line recorded in results.json.
        started: A ``time.time()`` value, so the recorded wall time can include model
            loading and data reading done before the writer was opened.
    """

    def __init__(self, out: str | Path, *, kind: str, command: str, started: float | None = None):
        self.dir = Path(out)
        self.kind = kind
        self.command = command
        self.started = started or time.time()
        self.files: dict[str, dict] = {}
        self._finished = False

    def __enter__(self) -> "RunWriter":
        invalidate_results(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / RUN_MARK).write_text(json.dumps({"command": self.command}) + "\n")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._results_path.unlink(missing_ok=True)  # a failed run leaves nothing complete-looking
        elif not self._finished:
            raise RuntimeError(f"the run in {self.dir} ended without finish(): no results.json was written")

    @property
    def _results_path(self) -> Path:
        return self.dir / "results.json"

    def _path(self, filename: str) -> Path:
        if self._finished:
            raise RuntimeError("results.json is already written; files must come before finish()")
        self.dir.mkdir(parents=True, exist_ok=True)  # in case something removed it since entry
        return self.dir / filename

    def samples(self, rows: Iterable[dict], *, name: str = "samples") -> None:
        """Write ``rows`` to ``{name}.jsonl`` and list it as ``name``."""
        path = self._path(f"{name}.jsonl")
        n = write_jsonl(path, rows)
        self.files[name] = file_entry(path, rows=n, relative_to=self.dir)

    def token_table(self, scores: Sequence, *, name: str = "tokens") -> None:
        """Write per-token columns of ``scores`` (DocScores) to ``{name}.parquet`` and list it."""
        path = self._path(f"{name}.parquet")
        write_token_table(path, scores)
        self.files[name] = file_entry(path, rows=len(scores), relative_to=self.dir)

    @contextlib.contextmanager
    def streamed(self, name: str, kind: str = "samples"):
        """Yields a file written a batch at a time: a :class:`JsonlFile` (``kind="samples"``,
        ``{name}.jsonl``) or a :class:`TokenTable` (``kind="tokens"``, ``{name}.parquet``), for
        runs too large to hold in memory. It is renamed into place and listed when the block
        ends; an exception removes it."""
        cls, suffix = {"samples": (JsonlFile, "jsonl"), "tokens": (TokenTable, "parquet")}[kind]
        path = self._path(f"{name}.{suffix}")
        with cls(path) as f:
            yield f
        self.files[name] = file_entry(path, rows=f.rows, relative_to=self.dir)

    def add_file(self, name: str, path: str | Path, *, rows: int) -> None:
        """List a file already written inside the run's folder (e.g. a sub-run's results.json)."""
        self.files[name] = file_entry(Path(path), rows=rows, relative_to=self.dir)

    def finish(self, *, summary: dict, provenance: dict, extra: dict | None = None) -> dict:
        """Write results.json, marked complete, listing every file written; return its content."""
        written = write_results(self._path("results.json"), kind=self.kind, command=self.command, provenance=provenance,
                                summary=summary, started=self.started, files=self.files, extra=extra)
        self._finished = True
        return written


RUN_MARK = ".lmaudit-run.json"


def subcommand(command_line: str) -> str:
    """The lmaudit subcommand of a recorded command line ("lmaudit -q score ..." -> "score",
    "lmaudit watermark detect ..." -> "watermark detect"),
    or "" when it is not an lmaudit command line (a run made from Python)."""
    words = command_line.split()
    if not words or Path(words[0]).name != "lmaudit":
        return ""
    named = [w for w in words[1:] if not w.startswith("-")]
    if named[:1] == ["watermark"]:  # a command group: "watermark generate" and "watermark detect" differ
        return " ".join(named[:2])
    return named[0] if named else ""


def folder_command(folder: str | Path) -> str | None:
    """Which lmaudit command wrote the run in ``folder``: the subcommand recorded by the run
    marker, else by results.json (runs from before the marker); "testbed" for a testbed; ""
    for a run made from Python; None when the folder holds no lmaudit run."""
    folder = Path(folder)
    for name in (RUN_MARK, "results.json"):
        try:
            recorded = json.loads((folder / name).read_text())["command"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # absent, unreadable, or recording no command
        return subcommand(str(recorded))
    if (folder / "testbed.json").is_file():
        return "testbed"
    return None


def remove_run(folder: str | Path) -> list[str]:
    """Delete the run in ``folder``: results.json, the files it lists, the run marker, the
    default score cache (cache.sqlite) and the report lmaudit wrote (report.html, if its head
    says so). Nothing else: a user's own files stay.
    Returns the names removed."""
    folder = Path(folder)
    removed = []
    try:
        listed = [f["path"] for f in json.loads((folder / "results.json").read_text()).get("files", {}).values()]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        listed = []
    cache = ["cache.sqlite", *(f"cache.sqlite-{x}" for x in ("journal", "wal", "shm"))]
    report = [REPORT_FILE] if is_lmaudit_report(folder / REPORT_FILE) else []
    for name in [*listed, "results.json", RUN_MARK, *cache, *report]:
        path = folder / name
        if path.is_file() and path.resolve().parent == folder.resolve():  # never outside the folder
            path.unlink()
            removed.append(name)
    return removed
