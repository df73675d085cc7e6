"""Read the documents to audit into records with stable ids.

This is the input layer of ``lmaudit score --data F``. Every reader returns
:class:`Record` objects whose ``id`` keys the output rows, so ids must be stable
across runs and unique within one input. Bad input fails loudly with a
:class:`DataError` whose message starts with ``path:line:`` (or ``path:row N:``
for tables); nothing is replaced, skipped or repaired silently.

Example:
    >>> records = read_records("data.jsonl")  # doctest: +SKIP
    >>> records[0].id, records[0].line  # doctest: +SKIP
    ('doc-1', 1)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("auto", "jsonl", "text", "textdir", "parquet", "hf")
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
# Names users know from the JSON spec, not Python's.
_JSON_TYPES = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


class DataError(ValueError):
    """Bad input. The message always names the file, and the line (or row) and field where known."""


@dataclass(frozen=True)
class Record:
    """One document to audit.

    Attributes:
        id: The row's id: the id field when the input has one, else the 1-based
            line or row number; for a folder of files, the relative path.
        text: The document, exactly as stored (may be empty; the scorer reports it).
        source: Path of the file (or dataset folder) it came from.
        line: 1-based line number (JSONL, text lines), 1-based row number
            (Parquet, datasets), or 1 for one-file-per-document folders.
        meta: The row's other fields (JSONL, Parquet, datasets), JSON-serialisable;
            empty otherwise.
        error: An upstream error carried instead of a text (``text`` is then empty): set only
            by ``read_records(..., carry_errors=True)``, for a row that lacks the text field
            but has an ``error``, as lmaudit writes for an input it could not process.
    """

    id: str | int
    text: str
    source: str
    line: int
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def read_records(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    id_field: str = "id",
    fmt: str = "auto",
    split: str | None = None,
    carry_errors: bool = False,
) -> list[Record]:
    """Read every document in ``path``, in file order.

    Args:
        path: A ``.jsonl`` / ``.jsonl.gz``, ``.txt`` or ``.parquet`` file, a
            folder saved by ``datasets.save_to_disk``, or a folder of ``.txt``
            files (searched recursively; each file's relative path is its id).
            Gzipped files are recognised by their magic bytes and unpacked.
        text_field: Field (or column) holding the document text.
        id_field: Field (or column) holding the id; rows are numbered when absent.
        fmt: One of ``FORMATS``; ``"auto"`` picks by suffix or folder contents.
        split: Which split of a saved ``DatasetDict`` to read; may be left out
            when it has exactly one.
        carry_errors: A JSONL row without ``text_field`` but with a non-empty string
            ``error`` (an error row of another lmaudit command's samples.jsonl, such as
            extract's for a document too short) is read as a :class:`Record` with that
            ``error`` and an empty text, for the caller to report as an error row of its
            own. Without it, or without an ``error``, a missing field is a DataError.

    Returns:
        The records, never empty, with unique ids.

    Raises:
        DataError: If the path is missing, the format unknown, or any row bad.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    fmt = _detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    wants_dir = fmt in ("textdir", "hf")
    if path.is_dir() != wants_dir:
        kind = "folder" if wants_dir else "file"
        raise DataError(f"{path}: format {fmt!r} needs a {kind}")
    if split is not None and fmt != "hf":
        raise DataError(f"{path}: split {split!r} was given, but only 'hf' datasets have splits")

    if fmt == "jsonl":
        records = _read_jsonl(path, text_field=text_field, id_field=id_field, carry_errors=carry_errors)
    elif fmt == "text":
        records = _read_text_lines(path)
    elif fmt == "textdir":
        records = _read_text_dir(path)
    elif fmt == "parquet":
        records = _read_parquet(path, text_field=text_field, id_field=id_field)
    else:
        records = _read_hf(path, text_field=text_field, id_field=id_field, split=split)

    if not records:
        raise DataError(f"{path}: contains no documents")
    _check_unique_ids(records, unit="row" if fmt in ("parquet", "hf") else "line")
    return records


def data_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Hash the input so caches and reports can tell when it changed.

    A folder is hashed over every file below it (not only the ones a reader
    uses), so a cache keyed by it is never stale, at worst rebuilt.

    Args:
        path: A file or folder.

    Returns:
        ``{"path": str(path), "abs_path": the resolved absolute path, "sha256": hex digest,
        "bytes": total size}``. For a folder the digest covers the sorted relative file
        names and their bytes.

    Raises:
        DataError: If the path does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    digest = hashlib.sha256()
    if path.is_file():
        total = _hash_file(path, digest)
    else:
        total = 0
        files = {f.relative_to(path).as_posix(): f for f in path.rglob("*") if f.is_file()}
        for rel in sorted(files):
            file, name = files[rel], rel.encode()
            # Length-prefix name and size so ("ab", "c") and ("a", "bc") differ.
            digest.update(len(name).to_bytes(8, "big") + name)
            digest.update(file.stat().st_size.to_bytes(8, "big"))
            total += _hash_file(file, digest)
    return {"path": str(path), "abs_path": str(path.resolve()), "sha256": digest.hexdigest(), "bytes": total}


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks: what results.json, the report and the
    corpus index record of every file they list."""
    digest = hashlib.sha256()
    _hash_file(Path(path), digest)
    return digest.hexdigest()


def _hash_file(path: Path, digest: Any) -> int:
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size


def _detect_format(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        if any((path / marker).is_file() for marker in _HF_MARKERS):
            return "hf"
        return "textdir"
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".txt"):
        return "text"
    if name.endswith(".parquet"):
        return "parquet"
    raise DataError(
        f"{path}: cannot tell the format from the name; pass --format "
        f"({', '.join(f for f in FORMATS if f != 'auto')})"
    )


def iter_records(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    id_field: str = "id",
    carry_errors: bool = False,
) -> Iterator[Record]:
    """The documents of a JSONL file (``.jsonl`` or gzipped), one at a time, in file order:
    :func:`read_records` without holding the file or its records in memory.

    Every row is checked as :func:`read_records` checks it, with the same errors naming file,
    line and field; an error is raised when its row is reached, so rows before it have been
    yielded already. Ids are checked for duplicates once the last row is read, with the same
    error read_records gives (the first repeated id in file order): the only state kept is a
    64-bit hash and a line number per row (16 bytes). An empty file raises after yielding
    nothing.

    Raises:
        DataError: As :func:`read_records`; a path that is not a JSONL file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir() or _detect_format(path) != "jsonl":
        raise DataError(f"{path}: streamed reading takes a JSONL file (.jsonl or .jsonl.gz); read other formats "
                        "with read_records")
    import xxhash

    # Ids are checked for duplicates by a 64-bit hash of their text and their line: 16 bytes per
    # row (a set of the ids themselves takes over 100 for short ids), compared at the end; the
    # lines of a repeated hash are read again and their ids compared.
    hashes, lines = array("Q"), array("q")
    for record in _iter_jsonl(path, text_field=text_field, id_field=id_field, carry_errors=carry_errors):
        hashes.append(xxhash.xxh3_64_intdigest(str(record.id).encode("utf-8", "surrogatepass")))
        lines.append(record.line)
        yield record
    if not lines:
        raise DataError(f"{path}: contains no documents")
    suspects = _lines_of_repeated(hashes, lines)
    if suspects:  # confirmed on the ids themselves: equal hashes of different ids are no duplicate
        seen: dict[str, int] = {}
        for r in _iter_jsonl(path, text_field=text_field, id_field=id_field, carry_errors=carry_errors):
            if r.line in suspects:
                if str(r.id) in seen:
                    raise DataError(f"{_at(path, r.line, unit='line')}: duplicate id {r.id!r} "
                                    f"(also on line {seen[str(r.id)]})")
                seen[str(r.id)] = r.line


def _lines_of_repeated(hashes: array, lines: array) -> set[int]:
    """The lines whose id hash another line has too."""
    h = np.frombuffer(hashes, dtype=np.uint64)
    order = np.argsort(h)
    hs = h[order]
    same = np.flatnonzero(hs[1:] == hs[:-1])
    if not len(same):
        return set()
    at = np.frombuffer(lines, dtype=np.int64)
    return set(at[order[same]].tolist()) | set(at[order[same + 1]].tolist())


@dataclass(frozen=True)
class RecordFile:
    """A data file read as it is used: iterating it yields its :class:`Record` s, a JSONL file
    one line at a time (:func:`iter_records`), any other format through :func:`read_records`.

    Hand it instead of a list to :func:`lmaudit.scoring.score.score_stream` (or
    ``score_to_dir``) to score a file larger than memory; an engine that reads files itself
    (Ray Data, on the cluster) reads it there instead.
    """

    path: Path
    text_field: str = "text"
    id_field: str = "id"
    fmt: str = "auto"
    split: str | None = None
    rows: int | None = None  # the number of records, when a pass over the file has counted them

    @property
    def streamed(self) -> bool:
        """Whether iterating reads one line at a time (JSONL) rather than the whole file."""
        path = Path(self.path)
        # iter_records knows JSONL by its name (.jsonl, .jsonl.gz); read_records reads the rest.
        return self.fmt in ("auto", "jsonl") and path.is_file() and path.name.lower().endswith((".jsonl", ".jsonl.gz"))

    def __iter__(self) -> Iterator[Record]:
        if self.streamed:
            return iter_records(self.path, text_field=self.text_field, id_field=self.id_field)
        return iter(read_records(self.path, text_field=self.text_field, id_field=self.id_field, fmt=self.fmt,
                                 split=self.split))


def _read_utf8(path: Path) -> str:
    """Decode a whole file as strict UTF-8, gunzipping it first if it is gzip.

    Byte offsets in errors count from the start of the (decompressed) stream.
    """
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from e
    skip = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start
        line = raw.count(b"\n", 0, offset) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8: byte 0x{raw[offset]:02x} at byte offset {offset}"
        ) from e


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a strict-UTF-8 file read one line at a time (gunzipped if it
    is gzip): what ``_split_lines(_read_utf8(path))`` gives, without the whole file in memory.

    Lines end at ``\n`` only (as in :func:`_split_lines`), a trailing ``\r`` is dropped, a
    BOM at the start is skipped, and an invalid byte is reported with its line and its byte
    offset from the start of the (decompressed) stream, when its line is reached.
    """
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    opener = gzip.open if gzipped else open
    offset = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                skip = len(_BOM) if number == 1 and raw.startswith(_BOM) else 0
                try:
                    line = raw[skip:].decode("utf-8")
                except UnicodeDecodeError as e:
                    at = offset + skip + e.start
                    raise DataError(f"{path}:{number}: not valid UTF-8: byte 0x{raw[skip + e.start]:02x} "
                                    f"at byte offset {at}") from e
                offset += len(raw)
                yield number, line.removesuffix("\n").removesuffix("\r")
    except (OSError, EOFError) as e:
        if not gzipped:
            raise
        raise DataError(f"{path}: not a valid gzip file ({e})") from e


def _at(source: str | Path, number: int, *, unit: str) -> str:
    """The ``path:line`` / ``path:row N`` prefix of every per-row error."""
    return f"{source}:{number}" if unit == "line" else f"{source}:row {number}"


def _split_lines(text: str) -> list[str]:
    # Split on "\n" only: str.splitlines() would also break on U+2028 and
    # friends, which may stand unescaped inside JSON strings and documents.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start a new one
    return [line.removesuffix("\r") for line in lines]


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _read_jsonl(path: Path, *, text_field: str, id_field: str, carry_errors: bool = False) -> list[Record]:
    return list(_iter_jsonl(path, text_field=text_field, id_field=id_field, carry_errors=carry_errors))


def _iter_jsonl(path: Path, *, text_field: str, id_field: str, carry_errors: bool = False) -> Iterator[Record]:
    # The first non-blank line decides whether ids come from the file.
    first_row_line: int | None = None
    has_ids = False
    for number, line in _utf8_lines(path):
        where = _at(path, number, unit="line")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON: {e}") from e
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, found {_json_type(row)}")
        upstream = row.get("error") if carry_errors and text_field not in row else None
        if isinstance(upstream, str) and upstream:
            text = ""
        else:
            upstream, text = None, _text_value(row, text_field, where=where)

        if first_row_line is None:
            first_row_line, has_ids = number, id_field in row
        if (id_field in row) != has_ids:
            state = "present" if id_field in row else "missing"
            other = "has it" if has_ids else "does not"
            raise DataError(
                f"{where}: field {id_field!r} is {state}, but line {first_row_line} {other}; "
                "give every row an id or none"
            )
        row_id = _id_value(row[id_field], id_field, where=where) if has_ids else number
        meta = {k: v for k, v in row.items() if k not in (text_field, id_field)}
        yield Record(id=row_id, text=text, source=str(path), line=number, meta=meta, error=upstream)


def _text_value(row: dict[str, Any], text_field: str, *, where: str) -> str:
    if text_field not in row:
        fields = ", ".join(repr(k) for k in row) or "none"
        raise DataError(f"{where}: field {text_field!r} is missing (row has fields: {fields})")
    text = row[text_field]
    if not isinstance(text, str):
        raise DataError(f"{where}: field {text_field!r} must be a string, found {_json_type(text)}")
    return text


def _id_value(value: Any, id_field: str, *, where: str) -> str | int:
    # bool is a subclass of int, but True as an id is a mistake, not a number.
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise DataError(
        f"{where}: field {id_field!r} must be a string or an integer, found {_json_type(value)}"
    )


def _read_text_lines(path: Path) -> list[Record]:
    lines = _split_lines(_read_utf8(path))
    return [
        Record(id=n, text=line, source=str(path), line=n)
        for n, line in enumerate(lines, start=1)
    ]


def _read_text_dir(path: Path) -> list[Record]:
    """One document per ``*.txt`` file, searched recursively, sorted by relative path.

    Each file's text is kept whole, final newline included, because the bytes
    a model saw are what membership tests measure.
    """
    files = sorted(
        (f for f in path.rglob("*.txt") if f.is_file()),
        key=lambda f: f.relative_to(path).as_posix(),
    )
    if not files:
        raise DataError(f"{path}: contains no documents (no .txt files found)")
    return [
        Record(id=f.relative_to(path).as_posix(), text=_read_utf8(f), source=str(f), line=1)
        for f in files
    ]


def _read_parquet(path: Path, *, text_field: str, id_field: str) -> list[Record]:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read as Parquet ({e})") from e
    return _records_from_table(table, path, text_field=text_field, id_field=id_field)


def _read_hf(path: Path, *, text_field: str, id_field: str, split: str | None) -> list[Record]:
    import datasets  # heavy import, only needed for this format

    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot load as a saved Hugging Face dataset ({e})") from e
    if isinstance(loaded, datasets.DatasetDict):
        splits = ", ".join(repr(s) for s in loaded)
        if split is None:
            if len(loaded) != 1:
                raise DataError(f"{path}: has several splits ({splits}); choose one with --split")
            (split,) = loaded
        if split not in loaded:
            raise DataError(f"{path}: has no split {split!r} (splits: {splits})")
        loaded = loaded[split]
    elif split is not None:
        raise DataError(f"{path}: is one dataset without splits, but split {split!r} was given")
    # The arrow view respects any index mapping (select/shuffle) on the dataset.
    table = loaded.with_format("arrow")[:]
    return _records_from_table(table, path, text_field=text_field, id_field=id_field)


def _records_from_table(
    table: pa.Table, path: Path, *, text_field: str, id_field: str
) -> list[Record]:
    """Shared column rules for Parquet files and saved datasets."""
    if table.num_rows == 0:
        return []  # read_records reports the empty input
    columns = table.column_names
    if text_field not in columns:
        available = ", ".join(repr(c) for c in columns)
        raise DataError(f"{path}: field {text_field!r} is missing (columns: {available})")
    text_type = table.schema.field(text_field).type
    # An all-null column has type null; let the row check below name its first row.
    if not (_is_string_type(text_type) or pa.types.is_null(text_type)):
        raise DataError(f"{path}: field {text_field!r} must be a string column, found {text_type}")
    texts = table.column(text_field).to_pylist()

    if id_field in columns:
        id_type = table.schema.field(id_field).type
        if not (pa.types.is_integer(id_type) or _is_string_type(id_type)):
            raise DataError(
                f"{path}: field {id_field!r} must be a string or integer column, found {id_type}"
            )
        ids = table.column(id_field).to_pylist()
    else:
        ids = list(range(1, table.num_rows + 1))

    meta_names = [c for c in columns if c not in (text_field, id_field)]
    meta_columns = {c: _jsonable_column(table.column(c)) for c in meta_names}

    records = []
    for row, (text, row_id) in enumerate(zip(texts, ids), start=1):
        where = _at(path, row, unit="row")
        if text is None:
            raise DataError(f"{where}: field {text_field!r} is null")
        if row_id is None:
            raise DataError(f"{where}: field {id_field!r} is null")
        meta = {c: values[row - 1] for c, values in meta_columns.items()}
        records.append(Record(id=row_id, text=text, source=str(path), line=row, meta=meta))
    return records


def _jsonable_column(column: pa.ChunkedArray) -> list[Any]:
    values = column.to_pylist()
    if _is_json_native(column.type):
        return values
    # Timestamps, decimals, bytes and the like have no JSON form; keep their text
    # rather than drop the column.
    return [None if v is None else str(v) for v in values]


def _is_json_native(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _is_json_native(t.value_type)
    if pa.types.is_struct(t):
        return all(_is_json_native(t.field(i).type) for i in range(t.num_fields))
    return (
        pa.types.is_null(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or _is_string_type(t)
    )


def _is_string_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _check_unique_ids(records: list[Record], *, unit: str) -> None:
    # Compare ids as text: output files may key rows by the id's string form,
    # where 1 and "1" would collide.
    seen: dict[str, int] = {}
    for record in records:
        key = str(record.id)
        if key in seen:
            where = _at(record.source, record.line, unit=unit)
            raise DataError(f"{where}: duplicate id {record.id!r} (also on {unit} {seen[key]})")
        seen[key] = record.line


def align_by_id(public: Sequence[Record], private: Sequence[Sequence[Record]]) -> list[list[Record]]:
    """For each record of ``public``, its partner in each of ``private`` (in that order), matched by id.

    Used wherever rows of several files belong together (a public text and its private
    versions, a model output and its reference); a missing partner is an error, never a
    silently dropped row.

    Raises:
        DataError: A private file lacks an id the public file has, or has one it lacks;
            the message names the file and the id (and its line).
    """
    rows = []
    by_file = []
    public_ids = {r.id for r in public}
    for version in private:
        index = {r.id: r for r in version}
        extra = [r for r in version if r.id not in public_ids]
        if extra:
            r = extra[0]
            raise DataError(f"{r.source}:{r.line}: id {r.id!r} has no partner in {public[0].source} "
                            f"({len(extra)} such ids)")
        by_file.append(index)
    for rec in public:
        partners = []
        for index, version in zip(by_file, private):
            if rec.id not in index:
                source = version[0].source if version else "a private file"
                raise DataError(f"{source}: no row with id {rec.id!r} ({rec.source}:{rec.line}); "
                                "every row needs a partner in every file")
            partners.append(index[rec.id])
        rows.append(partners)
    return rows
