"""Tests for lmaudit.data: every format round-trips and every bad input fails loudly."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmaudit.data import DataError, Record, data_fingerprint, read_records


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _summary(records: list[Record]) -> list[tuple[object, str, int]]:
    return [(r.id, r.text, r.line) for r in records]


# --- JSONL -----------------------------------------------------------------


def test_jsonl_ids_from_field_and_meta(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "data.jsonl",
        [{"id": "a", "text": "first", "lang": "en"}, {"id": 7, "text": "", "tags": [1, 2]}],
    )
    records = read_records(path)
    assert records == [
        Record(id="a", text="first", source=str(path), line=1, meta={"lang": "en"}),
        Record(id=7, text="", source=str(path), line=2, meta={"tags": [1, 2]}),
    ]


def test_jsonl_custom_fields(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"key": "k1", "body": "hello", "id": 5}])
    (record,) = read_records(path, text_field="body", id_field="key")
    assert (record.id, record.text, record.meta) == ("k1", "hello", {"id": 5})


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        # Ids default to line numbers; blank lines are skipped but still counted.
        ("data.jsonl", b'{"text": "x"}\n\n   \n{"text": "y"}\r\n\n', [(1, "x", 1), (4, "y", 4)]),
        (
            "data.jsonl.gz",
            gzip.compress(b'{"text": "zipped \xc3\xa9"}\n'),
            [(1, "zipped \u00e9", 1)],
        ),
        ("bom.jsonl", b'\xef\xbb\xbf{"text": "t"}\n', [(1, "t", 1)]),
        # U+2028 may stand unescaped in a JSON string; it must not split the line.
        (
            "data.jsonl",
            '{"text": "a\u2028b"}\n{"text": "c"}\n'.encode(),
            [(1, "a\u2028b", 1), (2, "c", 2)],
        ),
        ("docs.txt", b"a\nb", [(1, "a", 1), (2, "b", 2)]),
        ("bom.txt", b"\xef\xbb\xbfa\n", [(1, "a", 1)]),
    ],
)
def test_small_files_round_trip(
    tmp_path: Path, name: str, content: bytes, expected: list[tuple[object, str, int]]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert _summary(read_records(path)) == expected


def test_jsonl_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.jsonl:3: invalid JSON: Expecting value"):
        read_records(path)


def test_jsonl_row_not_an_object(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"text": "ok"}, ["text"]])
    with pytest.raises(DataError, match=r"data\.jsonl:2: expected a JSON object, found an array"):
        read_records(path)


def test_jsonl_missing_text_field_lists_fields(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"id": 1, "body": "b"}])
    expected = "data.jsonl:1: field 'text' is missing (row has fields: 'id', 'body')"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_records(path)


def test_jsonl_carries_upstream_error_rows_only_when_asked(tmp_path: Path) -> None:
    """An lmaudit error row (no text field, an `error`) is read with its error when asked; a row
    without the field and without an upstream error (or with `error: null`) still fails."""
    path = _write_jsonl(tmp_path / "s.jsonl", [{"id": "a", "generated": "x"}, {"id": "b", "error": "too short"}])
    a, b = read_records(path, text_field="generated", carry_errors=True)
    assert (a.text, a.error) == ("x", None)
    assert (b.id, b.text, b.error, b.line, b.meta) == ("b", "", "too short", 2, {"error": "too short"})
    with pytest.raises(DataError, match=r"s\.jsonl:2: field 'generated' is missing"):
        read_records(path, text_field="generated")
    for row in ({"id": "b"}, {"id": "b", "error": None}, {"id": "b", "error": ""}):
        _write_jsonl(path, [{"id": "a", "generated": "x"}, row])
        with pytest.raises(DataError, match=r"s\.jsonl:2: field 'generated' is missing"):
            read_records(path, text_field="generated", carry_errors=True)


@pytest.mark.parametrize(
    ("value", "found"), [(None, "null"), (3, "an integer"), (["a"], "an array")]
)
def test_jsonl_text_not_a_string(tmp_path: Path, value: object, found: str) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"text": "ok"}, {"text": value}])
    expected = f"data.jsonl:2: field 'text' must be a string, found {found}"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_records(path)


def test_jsonl_ids_on_some_rows_only(tmp_path: Path) -> None:
    missing = _write_jsonl(tmp_path / "missing.jsonl", [{"id": 1, "text": "a"}, {"text": "b"}])
    expected = r"missing\.jsonl:2: field 'id' is missing, but line 1 has it"
    with pytest.raises(DataError, match=expected):
        read_records(missing)
    present = _write_jsonl(tmp_path / "present.jsonl", [{"text": "a"}, {"id": 2, "text": "b"}])
    expected = r"present\.jsonl:2: field 'id' is present, but line 1 does not"
    with pytest.raises(DataError, match=expected):
        read_records(present)


@pytest.mark.parametrize(
    ("value", "found"), [(1.5, "a number"), (True, "a boolean"), (None, "null")]
)
def test_jsonl_id_of_wrong_type(tmp_path: Path, value: object, found: str) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"id": value, "text": "a"}])
    expected = f"data.jsonl:1: field 'id' must be a string or an integer, found {found}"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_records(path)


def test_jsonl_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "data.jsonl",
        [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}, {"id": "a", "text": "3"}],
    )
    with pytest.raises(DataError, match=r"data\.jsonl:3: duplicate id 'a' \(also on line 1\)"):
        read_records(path)


def test_ids_that_print_the_same_are_duplicates(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"id": 1, "text": "x"}, {"id": "1", "text": "y"}])
    with pytest.raises(DataError, match=r"data\.jsonl:2: duplicate id '1' \(also on line 1\)"):
        read_records(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.jsonl", b"", "data.jsonl: contains no documents"),
        ("data.jsonl", b"\n  \n\n", "data.jsonl: contains no documents"),
        ("data.jsonl", b"\xef\xbb\xbf", "data.jsonl: contains no documents"),
        ("docs.txt", b"", "docs.txt: contains no documents"),
        # Line 2 starts at byte 15; the bad byte follows '{"text": "' (10 bytes).
        (
            "data.jsonl",
            b'{"text": "ok"}\n{"text": "\xff"}\n',
            "data.jsonl:2: not valid UTF-8: byte 0xff at byte offset 25",
        ),
        # The offset is into the file, so it counts the 3-byte BOM.
        (
            "docs.txt",
            b"\xef\xbb\xbfab\xc3",
            "docs.txt:1: not valid UTF-8: byte 0xc3 at byte offset 5",
        ),
        (
            "data.jsonl.gz",
            gzip.compress(b'{"text": "x"}\n')[:-6],
            "data.jsonl.gz: not a valid gzip file",
        ),
        ("data.parquet", b"hello", "data.parquet: cannot read as Parquet"),
    ],
)
def test_bad_bytes(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)):
        read_records(path)


# --- text lines and folders --------------------------------------------------


def test_text_lines_keep_empty_middle_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_bytes(b"one\r\n\ntwo \nthree\n")
    records = read_records(path)
    assert _summary(records) == [(1, "one", 1), (2, "", 2), (3, "two ", 3), (4, "three", 4)]
    assert all(r.meta == {} and r.source == str(path) for r in records)


def test_text_dir_one_document_per_file(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("bee\n", encoding="utf-8")
    (folder / "a.txt").write_text("ay", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("", encoding="utf-8")
    (folder / "notes.md").write_text("ignored", encoding="utf-8")
    records = read_records(folder)
    assert _summary(records) == [("a.txt", "ay", 1), ("b.txt", "bee\n", 1), ("sub/c.txt", "", 1)]
    assert records[2].source == str(folder / "sub" / "c.txt")


def test_text_dir_without_txt_files(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"docs: contains no documents \(no \.txt files found\)"):
        read_records(tmp_path / "docs")


def test_text_dir_bad_encoding_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "bad.txt").write_bytes(b"fine\nnot \xe9 fine\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: not valid UTF-8: byte 0xe9 at byte offset 9"):
        read_records(tmp_path / "docs")


# --- Parquet -----------------------------------------------------------------


def test_parquet_with_id_column_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    pq.write_table(
        pa.table({"id": ["x", "y"], "text": ["one", ""], "score": [0.5, None], "at": [when, when]}),
        path,
    )
    records = read_records(path)
    assert _summary(records) == [("x", "one", 1), ("y", "", 2)]
    assert records[0].meta == {"score": 0.5, "at": "2024-01-02 03:04:05"}
    assert records[1].meta == {"score": None, "at": "2024-01-02 03:04:05"}
    json.dumps([r.meta for r in records])  # meta must stay JSON-serialisable


def test_parquet_without_id_column_numbers_rows(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), path)
    assert _summary(read_records(path)) == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]


def test_parquet_missing_text_column_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"id": [1], "body": ["b"]}), path)
    expected = "data.parquet: field 'text' is missing (columns: 'id', 'body')"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_records(path)


def test_parquet_null_text_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": ["a", "b", None]}), path)
    with pytest.raises(DataError, match=r"data\.parquet:row 3: field 'text' is null"):
        read_records(path)


def test_parquet_text_column_of_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    expected = "data.parquet: field 'text' must be a string column, found int64"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_records(path)


def test_parquet_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"id": [4, 5, 4], "text": ["a", "b", "c"]}), path)
    with pytest.raises(DataError, match=r"data\.parquet:row 3: duplicate id 4 \(also on row 1\)"):
        read_records(path)


def test_parquet_with_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(DataError, match=r"data\.parquet: contains no documents"):
        read_records(path)


# --- saved Hugging Face datasets ----------------------------------------------


def test_hf_dataset_round_trip(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": ["p", "q"], "id": [10, 11], "label": [0, 1]}).save_to_disk(
        str(folder)
    )
    records = read_records(folder)
    assert _summary(records) == [(10, "p", 1), (11, "q", 2)]
    assert [r.meta for r in records] == [{"label": 0}, {"label": 1}]
    assert records[0].source == str(folder)


def test_hf_dataset_dict_needs_a_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["t1", "t2"]}),
            "test": datasets.Dataset.from_dict({"text": ["s1"]}),
        }
    ).save_to_disk(str(folder))
    with pytest.raises(DataError, match=r"dd: has several splits \('train', 'test'\); choose one"):
        read_records(folder)
    assert _summary(read_records(folder, split="test")) == [(1, "s1", 1)]
    assert _summary(read_records(folder, split="train")) == [(1, "t1", 1), (2, "t2", 2)]
    with pytest.raises(DataError, match=r"dd: has no split 'valid' \(splits: 'train', 'test'\)"):
        read_records(folder, split="valid")


def test_hf_dataset_dict_with_one_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    datasets.DatasetDict({"only": datasets.Dataset.from_dict({"text": ["o"]})}).save_to_disk(
        str(folder)
    )
    assert _summary(read_records(folder)) == [(1, "o", 1)]


def test_hf_column_rules_match_parquet(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"body": ["a"], "id": [1]}).save_to_disk(str(folder))
    with pytest.raises(DataError, match=r"ds: field 'text' is missing \(columns: 'body', 'id'\)"):
        read_records(folder)
    with pytest.raises(DataError, match=r"ds: is one dataset without splits, but split 'train'"):
        read_records(folder, text_field="body", split="train")


# --- dispatch ----------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file or directory"):
        read_records(tmp_path / "nope.jsonl")


def test_unknown_suffix_suggests_format(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.json", [{"text": "a"}])
    with pytest.raises(DataError, match=r"data\.json: cannot tell the format .* pass --format"):
        read_records(path)
    assert _summary(read_records(path, fmt="jsonl")) == [(1, "a", 1)]


def test_format_and_path_kind_must_agree(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"text": "a"}])
    with pytest.raises(DataError, match=r"data\.jsonl: format 'textdir' needs a folder"):
        read_records(path, fmt="textdir")
    with pytest.raises(DataError, match=r"data\.jsonl: unknown format 'csv'"):
        read_records(path, fmt="csv")
    with pytest.raises(DataError, match=r"data\.jsonl: split 'train' was given"):
        read_records(path, split="train")


# --- fingerprint ---------------------------------------------------------------


def test_fingerprint_of_a_file(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    c.write_bytes(b"same bytez")
    fa, fb, fc = data_fingerprint(a), data_fingerprint(b), data_fingerprint(c)
    assert fa == {"path": str(a), "abs_path": str(a.resolve()), "sha256": hashlib.sha256(b"same bytes").hexdigest(),
                  "bytes": 10}
    assert fa["sha256"] == fb["sha256"]
    assert fa["sha256"] != fc["sha256"]


def test_fingerprint_of_a_folder(tmp_path: Path) -> None:
    def make(name: str, files: dict[str, bytes]) -> dict:
        folder = tmp_path / name
        for rel, data in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        return data_fingerprint(folder)

    base = make("one", {"a.txt": b"x", "sub/b.txt": b"yz"})
    assert base["bytes"] == 3
    assert make("two", {"sub/b.txt": b"yz", "a.txt": b"x"})["sha256"] == base["sha256"]
    assert make("three", {"a.txt": b"x", "sub/b.txt": b"yZ"})["sha256"] != base["sha256"]
    assert make("four", {"c.txt": b"x", "sub/b.txt": b"yz"})["sha256"] != base["sha256"]


def test_fingerprint_of_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"gone: no such file or directory"):
        data_fingerprint(tmp_path / "gone")
