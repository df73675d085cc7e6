"""Reading runs for a report, and refusing what is not a finished, intact run.

A report may only show a run as final when its folder proves it: results.json of a known
schema version, marked complete, and every file it lists present with the row count and
sha256 it records. Anything else is a :class:`ReportError` with one line naming the file,
unless the caller allows incomplete runs: the run is then loaded with its ``problems``
listed, and the page shows them in a banner above the run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from lmaudit.data import sha256_file
from lmaudit.report.results import SCHEMA_VERSION
from lmaudit.report.run import RUN_MARK


class ReportError(ValueError):
    """A folder that cannot be reported on; the message names the file and what is wrong."""


@dataclass
class Run:
    """One run's results, as a report reads them.

    Attributes:
        dir: The run's folder.
        name: How the report names it (the folder name, or the demo's name for a sub-run).
        kind: What the run is (results.json's ``kind``), which picks its section renderer.
        results: results.json's content ({} for a run that never wrote one).
        problems: Why the run is not complete and intact (empty when it is).
    """

    dir: Path
    name: str
    kind: str
    results: dict
    problems: list[str] = field(default_factory=list)
    _samples: list[dict] | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def samples(self) -> list[dict]:
        """samples.jsonl's rows (read once; [] when the run lists none). Unreadable lines are
        recorded in ``problems`` by :func:`load_run`, which reads the file first."""
        if self._samples is None:
            self._samples = []
        return self._samples

    @property
    def provenance(self) -> dict:
        return self.results.get("provenance", {})

    @property
    def summary(self) -> dict:
        return self.results.get("summary", {})

    def data_file(self, role: str | None = None) -> str | None:
        """The file name of the run's first data file (of ``role`` if given), for a title."""
        data = self.provenance.get("data")
        for d in data if isinstance(data, list) else []:
            if isinstance(d, dict) and d.get("path") and (role is None or d.get("role") == role):
                return Path(str(d["path"])).name
        return None


def _read_jsonl(path: Path, data: bytes, problems: list[str]) -> list[dict]:
    """The rows of JSONL ``data`` (read from ``path``), stopping at the first bad line."""
    rows = []
    lines = data.split(b"\n")  # the lines the writer wrote (not bytes.splitlines: a lone \r is not one)
    for i, line in enumerate(lines[:-1] if lines and not lines[-1] else lines, start=1):
        try:
            row = json.loads(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError is one
            problems.append(f"{path}: line {i} is not JSON (a truncated or damaged file)")
            break
        if not isinstance(row, dict):
            problems.append(f"{path}: line {i} is not a JSON object")
            break
        rows.append(row)
    return rows


def _check_files(folder: Path, results: dict, problems: list[str]) -> list[dict] | None:
    """Check every listed file against its row count and sha256; return samples.jsonl's rows."""
    samples = None
    files = results.get("files")
    if not isinstance(files, dict):
        problems.append(f"{folder / 'results.json'}: field 'files' is missing or not an object")
        return None
    for name, entry in files.items():
        try:
            path = folder / entry["path"]
            rows, sha = int(entry["rows"]), str(entry["sha256"])
        except (TypeError, KeyError, ValueError):
            problems.append(f"{folder / 'results.json'}: files.{name} lacks path, rows or sha256")
            continue
        if not path.is_file():
            problems.append(f"{path}: missing (results.json lists it with {rows:,} rows)")
            continue
        # samples.jsonl is read once, for its hash and its rows; the other files are only hashed.
        data = path.read_bytes() if name == "samples" else None
        digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)
        if digest != sha:
            problems.append(f"{path}: changed or truncated since the run wrote it (sha256 differs from results.json)")
        if data is not None:
            samples = _read_jsonl(path, data, problems)
            if len(samples) != rows and not any(str(path) in p and "line" in p for p in problems):
                problems.append(f"{path}: {len(samples):,} rows, results.json lists {rows:,}")
    return samples


def load_run(folder: str | Path, *, name: str | None = None) -> Run:
    """The run in ``folder``, with its problems listed (see the module doc).

    Raises:
        ReportError: the folder holds no lmaudit run, or a results.json this lmaudit cannot
            read (not JSON, or another schema version): nothing about it could be shown.
    """
    folder = Path(folder)
    name = name or folder.resolve().name
    path = folder / "results.json"
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")
    if not path.is_file():
        if (folder / RUN_MARK).is_file():
            try:
                command = json.loads((folder / RUN_MARK).read_text()).get("command", "an lmaudit command")
            except (OSError, ValueError, AttributeError):
                command = "an lmaudit command"
            return Run(folder, name, "unknown", {"command": command},
                       [f"{path}: missing: the run ({command}) did not finish, or is still running"])
        raise ReportError(f"{folder}: holds no lmaudit run (no results.json)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: not readable as JSON ({err})") from None
    if not isinstance(results, dict):
        raise ReportError(f"{path}: not a JSON object")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(f"{path}: schema_version {version!r}; this lmaudit reads version {SCHEMA_VERSION}")
    problems: list[str] = []
    if results.get("complete") is not True:
        problems.append(f"{path}: not marked complete")
    kind = results.get("kind")
    if not isinstance(kind, str) or not kind:
        problems.append(f"{path}: field 'kind' is missing (written by an lmaudit older than reports)")
        kind = "unknown"
    samples = _check_files(folder, results, problems)
    return Run(folder, name, kind, results, problems, samples)


def load_runs(folders, *, allow_incomplete: bool = False) -> list[Run]:
    """Every run in ``folders``, in order: a run's folder; a demo's results folder (its own run
    followed by each audit it lists); or a demo's --out folder (its ``results/``).

    Raises:
        ReportError: a folder is not a run, or (unless ``allow_incomplete``) a run is not
            complete and intact; the message is the first problem found.
    """
    runs: list[Run] = []
    for folder in map(Path, folders):
        demo = folder / "results"
        if not (folder / "results.json").is_file() and not (folder / RUN_MARK).is_file() \
                and ((demo / "results.json").is_file() or (demo / RUN_MARK).is_file()):
            folder = demo  # the demo's --out folder (its run there may have died: load_run says so)
        run = load_run(folder)
        runs.append(run)
        if run.kind == "demo":
            for sub, entry in (run.results.get("files") or {}).items():
                path = Path(str(entry.get("path", ""))) if isinstance(entry, dict) else Path()
                if path.name != "results.json" or path.parent == Path("."):
                    continue  # the demo's own files; its audits are the results.json it lists
                if (folder / path).is_file() or (folder / path.parent / RUN_MARK).is_file():
                    runs.append(load_run(folder / path.parent, name=sub))
    if not allow_incomplete:
        for run in runs:
            if run.problems:
                raise ReportError(f"{run.problems[0]}; a report shows only complete runs "
                                  "(--allow-incomplete shows it under an INCOMPLETE banner)")
    return runs
