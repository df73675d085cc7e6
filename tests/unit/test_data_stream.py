"""iter_records, the streamed JSONL reader: the same records and the same errors as
read_records (which now reads JSONL through the same generator), and memory that does not grow
with the file."""

import gzip
import json
import random
import tracemalloc

import pytest

from lmaudit.data import DataError, iter_records, read_records

PIECES = ["plain", "é ü", "😀", "line\u2028sep", "tab\tq", "", "  spaced  ", "quote\"s", "back\\slash"]


def _random_file(rng, path, *, gz=False):
    lines = []
    for i in range(rng.randint(1, 40)):
        if rng.random() < 0.1:
            lines.append(rng.choice(["", "   ", "\r"]))  # blank lines are skipped
        row = {"id": f"d{i}", "text": "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 5)))}
        if rng.random() < 0.3:
            row["duplication"] = rng.choice([1, 4, 32])
        lines.append(json.dumps(row, ensure_ascii=rng.random() < 0.5))
    ending = rng.choice(["\n", "\r\n"])
    data = (b"\xef\xbb\xbf" if rng.random() < 0.2 else b"") + (ending.join(lines) + rng.choice(["", ending])).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("seed", range(12))
def test_streamed_records_equal_the_whole_file_read_by_hand(tmp_path, seed):
    rng = random.Random(seed)
    path = _random_file(rng, tmp_path / ("d.jsonl.gz" if seed % 3 == 0 else "d.jsonl"), gz=seed % 3 == 0)
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if seed % 3 == 0 else raw).decode("utf-8-sig")
    want = [(n, json.loads(line)) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    got = list(iter_records(path))
    assert [(r.line, r.id, r.text, r.meta) for r in got] == [
        (n, row["id"], row["text"], {k: v for k, v in row.items() if k not in ("id", "text")}) for n, row in want]
    assert got == read_records(path)


@pytest.mark.parametrize("content, message", [
    (b'{"id": "a", "text": "x"}\n{"id": "b", "text": "caf\xe9"}\n', "d.jsonl:2: not valid UTF-8: byte 0xe9 at byte offset 49"),  # 25 + 24
    (b'\xef\xbb\xbf{"id": "a", "text": "\xff"}\n', "d.jsonl:1: not valid UTF-8: byte 0xff at byte offset 24"),  # BOM 3 + 21
    (b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "d.jsonl:2: duplicate id 'a' (also on line 1)"),
    (b'{"id": "a", "text": "x"}\n{"id": 1, "txt": "y"}\n', "d.jsonl:2: field 'text' is missing"),
    (b'{"id": "a", "text": "x"}\n[1]\n', "d.jsonl:2: expected a JSON object, found an array"),
    (b'\n \n', "d.jsonl: contains no documents"),
])
def test_bad_rows_give_the_errors_read_records_gives(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as whole:
        read_records(path)
    with pytest.raises(DataError) as streamed:
        list(iter_records(path))
    assert message in str(streamed.value) and str(streamed.value) == str(whole.value)


def test_a_truncated_gzip_and_other_formats_are_refused(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress("".join(f'{{"id": {i}, "text": "x"}}\n' for i in range(1000)).encode())[:-20])
    with pytest.raises(DataError, match="not a valid gzip file"):
        list(iter_records(path))
    (tmp_path / "d.txt").write_text("a\n")
    with pytest.raises(DataError, match="streamed reading takes a JSONL file"):
        list(iter_records(tmp_path / "d.txt"))


def test_memory_does_not_grow_with_the_file(tmp_path):
    """Reading a 24 MB file record by record, the peak of Python allocations stays a small
    fraction of it (a whole-file read would hold the file's text at least once)."""
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(60_000):
            f.write(json.dumps({"id": i, "text": f"document {i} " + "word " * 75}) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    n = sum(1 for _ in iter_records(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # What stays is the set of ids seen (about 100 bytes each: 6 MB here), not the texts.
    assert n == 60_000 and size > 24e6 and peak < 0.4 * size, (peak, size)


@pytest.mark.parametrize("seed", range(20))
def test_the_first_duplicate_id_is_named_as_read_records_names_it(tmp_path, seed):
    # Ids from a small pool, so repeats are many and overlapping; 1 and "1" collide as text.
    rng = random.Random(seed)
    pool = [1, "1", "a", "b", "007", 7, "x y", "é"]
    n = rng.randint(2, 40)
    ids = rng.sample(range(10_000), n) if seed % 5 == 0 else [rng.choice(pool + list(range(20))) for _ in range(n)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"t{k}"}) + "\n" for k, i in enumerate(ids)))
    if len({str(i) for i in ids}) == n:
        assert [r.id for r in iter_records(path)] == ids
        return
    with pytest.raises(DataError) as whole:
        read_records(path)
    with pytest.raises(DataError) as streamed:
        list(iter_records(path))
    assert str(streamed.value) == str(whole.value) and "duplicate id" in str(whole.value)


def test_ids_whose_hashes_collide_are_not_duplicates_and_a_later_repeat_is_still_found(tmp_path, monkeypatch):
    # Every id hashes alike: only the re-read comparison of the ids can tell them apart.
    import xxhash

    monkeypatch.setattr(xxhash, "xxh3_64_intdigest", lambda b: 42)
    path = tmp_path / "d.jsonl"
    ids = ["x", "y", "z", "y", "x"]
    path.write_text("".join(json.dumps({"id": i, "text": "t"}) + "\n" for i in ids))
    with pytest.raises(DataError, match=r"d\.jsonl:4: duplicate id 'y' \(also on line 2\)"):
        list(iter_records(path))
    path.write_text("".join(json.dumps({"id": i, "text": "t"}) + "\n" for i in ids[:3]))
    assert [r.id for r in iter_records(path)] == ids[:3]
