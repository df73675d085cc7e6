"""Result files: results.json with provenance, samples.jsonl, and per-token columns in Parquet.

A run first deletes any results.json in its directory, writes each file under a temporary
name and renames it into place once written, and writes results.json last, listing every
file with its row count and sha256. So a directory whose results.json says
``"complete": true`` holds a finished run whose files can be checked against it, and a run
that died part-way leaves no results.json at all. Commands do this through
:class:`lmaudit.report.run.RunWriter`; the functions here are its parts.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import lmaudit
from lmaudit.data import sha256_file

SCHEMA_VERSION = 1
# Every library whose version can change a number lmaudit reports (or which rows it reads).
_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "scipy", "scikit-learn", "pyarrow",
              "datasets", "rapidfuzz", "nltk", "pydivsufsort", "protego", "tantivy", "rensa")


def _git_commit() -> str | None:
    """The commit lmaudit was installed from, from its distribution's own metadata, or None.

    PEP 610's direct_url.json records how it was installed: from a VCS URL, its
    ``commit_id``; from a local folder installed editable, that folder's HEAD, but only if
    the running package lies inside it and the folder is a git repository's top level (a
    folder inside another project's repository does not identify lmaudit's source). A copy
    installed from a folder (not editable): None, since that folder's HEAD may have moved on
    since. From an index, an archive, or anything else: None. Never the HEAD of whatever repository
    the environment happens to sit in (a venv inside a user's project).
    """
    try:
        direct_url = distribution("lmaudit").read_text("direct_url.json")
        info = json.loads(direct_url) if direct_url else {}
    except (PackageNotFoundError, ValueError):
        return None
    if "vcs_info" in info:
        return info["vcs_info"].get("commit_id")
    url = urlparse(info.get("url", ""))
    if not info.get("dir_info", {}).get("editable") or url.scheme != "file":
        return None  # a copy installed from a folder: the folder's HEAD may have moved on since
    root = Path(unquote(url.path)).resolve()
    package = Path(lmaudit.__file__).resolve().parent
    if not package.is_relative_to(root):
        return None  # lmaudit runs from elsewhere than what was installed (e.g. PYTHONPATH)
    return _git_head(root, package)


def _git_head(root: Path, package: Path) -> str | None:
    """HEAD of the repository whose top level is ``root`` (+dirty if ``package`` has changes)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return None
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", str(package))
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """What ran and where: lmaudit version and commit, Python, platform, library versions, the
    working directory (relative paths in provenance are relative to it) and torch's thread
    count (float reductions, and so the last digits, can depend on it)."""
    torch = sys.modules.get("torch")  # never imported just for this
    return {
        "lmaudit_version": lmaudit.__version__,
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": library_versions(),
        "cwd": os.getcwd(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }


def model_provenance(model) -> dict[str, Any]:
    """Identity of a model backend: name, weight and tokenizer fingerprints, dtype, device."""
    bos = model.bos_token_id
    engine = getattr(model, "engine_provenance", None)  # only a model on a non-local engine has one
    return {
        **({"engine": engine()} if engine else {}),
        "name": model.name,
        # Which token the bos="prepend" policy puts first (EOS for GPT-2/Pythia-style models).
        "bos_token": model.decode([bos]) if bos is not None else None,
        "fingerprint": model.fingerprint(),
        "tokenizer_fingerprint": model.tokenizer_fingerprint(),
        "dtype": getattr(model, "dtype", None),
        "device": str(getattr(model, "device", "")),
        "max_length": model.max_length,
        "bos_token_id": model.bos_token_id,
        "eos_token_id": model.eos_token_id,
    }


# A report's head says lmaudit wrote it (lmaudit.report.page); only such a report.html is
# ever removed from a run folder.
REPORT_FILE = "report.html"
REPORT_GENERATOR = b'<meta name="generator" content="lmaudit'


def is_lmaudit_report(path: str | Path) -> bool:
    """Whether ``path`` is a report lmaudit wrote (a plain file whose head carries its mark)."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        return False
    with open(path, "rb") as f:
        return REPORT_GENERATOR in f.read(4096)


def invalidate_results(out: str | Path) -> None:
    """Remove ``out``/results.json if there is one (and create nothing), so that a run which
    fails from here on, even while reading its inputs, leaves no complete-looking result;
    and the report lmaudit wrote there (OUT/report.html), which showed the earlier result."""
    (Path(out) / "results.json").unlink(missing_ok=True)
    if is_lmaudit_report(Path(out) / REPORT_FILE):
        (Path(out) / REPORT_FILE).unlink()


def file_entry(path: Path, *, rows: int, relative_to: Path) -> dict:
    """How results.json lists a file it belongs with: path, row count and content hash."""
    return {"path": str(Path(path).relative_to(relative_to)), "rows": rows, "sha256": sha256_file(path)}


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".partial")
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)  # leave nothing half-written behind
        raise
    os.replace(tmp, path)


class StreamedFile:
    """A file written a piece at a time under a temporary name, renamed into place only by
    :meth:`close`; :meth:`abort` (or an exception inside ``with``) removes the partial file.

    So a run too large to hold in memory (a million scored documents) writes its rows as
    they come, and still never leaves a half-written file under the final name.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.rows = 0

    def close(self) -> None:
        self._close_handle()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._close_handle()
        finally:
            self.tmp.unlink(missing_ok=True)

    def _close_handle(self) -> None:  # pragma: no cover - each subclass closes its own handle
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class JsonlFile(StreamedFile):
    """samples.jsonl written row by row (see :class:`StreamedFile`)."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._f = open(self.tmp, "w", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            line = json.dumps(row, ensure_ascii=False)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate (from a "\ud800" escape in an input) cannot be UTF-8: this
                # row is written with \u escapes instead, which JSON reads back the same.
                line = json.dumps(row)
            self._f.write(line + "\n")
            self.rows += 1
        self._f.flush()  # each batch on disk as it finishes, not when a buffer fills

    def _close_handle(self) -> None:
        self._f.close()


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write one JSON object per line, atomically; return the number of rows."""
    with JsonlFile(path) as f:
        f.write(rows)
    return f.rows


TOKEN_COLUMNS = (("token_ids", pa.int32()), ("logprob", pa.float32()), ("vocab_mean", pa.float32()),
                 ("vocab_std", pa.float32()), ("entropy", pa.float32()))
TOKEN_SCHEMA = pa.schema([("id", pa.string()), *((f, pa.list_(t)) for f, t in TOKEN_COLUMNS)])


class TokenTable(StreamedFile):
    """Per-token arrays, one row per document (list columns), keyed by id, in input order,
    written one Parquet row group per :meth:`write` (see :class:`StreamedFile`).

    Error rows are present with empty lists, so row i always matches samples.jsonl line i.
    Ids are stored as strings (a Parquet column has one type; JSONL keeps the original).
    """

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._writer = pq.ParquetWriter(self.tmp, TOKEN_SCHEMA, compression="zstd")

    def write(self, scores: Sequence) -> None:
        cols: dict[str, Any] = {"id": pa.array([str(s.id) for s in scores], pa.string())}
        lengths = [len(s.stats) if s.stats is not None else 0 for s in scores]
        ends = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        if ends[-1] >= 2**31:  # the column's offsets are int32
            raise ValueError(f"{ends[-1]} tokens in one write of {self.path}: write fewer documents at a time")
        offsets = pa.array(ends.astype(np.int32))
        for field, typ in TOKEN_COLUMNS:
            # One flat buffer and its offsets: no Python number per token.
            parts = [getattr(s.stats, field) for s in scores if s.stats is not None]
            flat = np.concatenate(parts) if parts else np.zeros(0)
            cols[field] = pa.ListArray.from_arrays(offsets, pa.array(flat.astype(typ.to_pandas_dtype(), copy=False)))
        self._writer.write_table(pa.table(cols, schema=TOKEN_SCHEMA))
        self.rows += len(scores)

    def _close_handle(self) -> None:
        self._writer.close()


def write_token_table(path: Path, scores: Sequence) -> None:
    """Write :class:`TokenTable` ``path`` holding ``scores`` (DocScores), atomically."""
    with TokenTable(path) as table:
        table.write(scores)


def breakdown(rows: Sequence[dict], field: str, summarise) -> dict[str, Any]:
    """``summarise`` of the rows at each value of ``field`` (rows without the field are left out),
    keyed by the value as a string; numbers in numeric order (1, 4, 32), then others as text.

    >>> breakdown([{"d": 32}, {"d": 4}, {"d": 4}, {}], "d", len)
    {'4': 2, '32': 1}
    """
    levels = sorted({r[field] for r in rows if field in r},
                    key=lambda v: (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)))
    return {str(lv): summarise([r for r in rows if field in r and r[field] == lv]) for lv in levels}


def write_results(path: Path, *, kind: str, command: str, provenance: dict, summary: dict, started: float,
                  files: dict, extra: dict | None = None) -> dict:
    """Write results.json (last, atomically) and return what was written.

    ``kind`` is what the run is (the lmaudit command that makes it: "membership", "acr", ...),
    whatever command line ran it (the demo writes runs of every kind); ``extra`` holds the
    kind's own top-level sections (e.g. ``attacks``, ``p_value``).
    """
    results = {
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "kind": kind,
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.time() - started, 3),
        "provenance": {**environment(), **provenance},
        "summary": summary,
        **(extra or {}),
        "files": files,
    }
    _write_atomic(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2, default=str) + "\n"))
    return results


def read_results(path: Path) -> dict:
    """Load a results.json, refusing one from a run that did not finish."""
    results = json.loads(Path(path).read_text())
    if not results.get("complete"):
        raise ValueError(f"{path}: results are not marked complete")
    return results
