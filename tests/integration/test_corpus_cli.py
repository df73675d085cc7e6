"""`lmaudit index build|count|locate|longest` and `lmaudit attribute` from the command line:
answers equal the library's (itself tested against brute force), appends and rebuilds, and how
bad input and a killed build are handled."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.corpus.index import MANIFEST, IndexFormatError, load_index

runner = CliRunner()
DOCS = [{"id": "a", "text": "the cat sat on the mat"}, {"id": "b", "text": "a cat café sat"},
        {"id": "c", "text": ""}, {"id": "d", "text": "philosopher of Valdoria, she said"}]


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _lines(output):
    return [json.loads(x) for x in output.splitlines() if x.startswith("{")]


@pytest.fixture
def index(tmp_path):
    data = _write(tmp_path / "corpus.jsonl", DOCS)
    res = _run("index", "build", "--data", data, "--out", tmp_path / "idx", "--no-bm25", "-q")
    assert res.exit_code == 0, res.output
    return tmp_path / "idx"


def test_queries_answer_as_the_library(index):
    lib = load_index(index)
    res = _run("index", "count", "--index", index, "cat", "at", "mat a", "é", "--json")
    assert res.exit_code == 0, res.output
    assert [(x["query"], x["count"]) for x in _lines(res.output)] == [
        (q, lib.count(q)) for q in ("cat", "at", "mat a", "é")] == [("cat", 2), ("at", 5), ("mat a", 0), ("é", 1)]
    res = _run("index", "locate", "--index", index, "at", "--offset", "1", "--limit", "2", "--json")
    got = [(x["doc_id"], x["offset"]) for x in _lines(res.output)]
    assert got == [(h.doc_id, h.offset) for h in lib.locate("at", offset=1, limit=2)] == [("a", 9), ("a", 20)]
    res = _run("index", "longest", "--index", index, "the cat sings", "zzz", "--json")
    assert [x["longest"] for x in _lines(res.output)] == ["the cat s", ""]
    plain = _run("index", "locate", "--index", index, "cat")
    assert "occurrences 1-2 of 2" in plain.output and "a\t@4\t…the [cat] sat on the mat…" in plain.output


def test_append_rebuild_and_what_is_refused(index, tmp_path):
    more = _write(tmp_path / "more.jsonl", [{"id": "e", "text": "one more cat"}])
    again = _run("index", "build", "--data", more, "--out", index, "--no-bm25")
    assert again.exit_code == 2 and "already holds an index: --append adds to it, --rebuild replaces it" in again.output
    assert _run("index", "build", "--data", more, "--out", index, "--append", "--no-bm25").exit_code == 0
    lib = load_index(index)
    assert lib.n_docs == 5 and lib.count("cat") == 3 and len(lib.manifest["shards"]) == 2
    assert [s["path"] for s in lib.manifest["sources"]] == [str(tmp_path / "corpus.jsonl"), str(more)]
    # The same ids again: refused, naming both places; the index is unchanged.
    dup = _run("index", "build", "--data", more, "--out", index, "--append", "--no-bm25")
    assert dup.exit_code == 2 and "'e'" in dup.output and "more.jsonl:1" in dup.output
    assert load_index(index).n_docs == 5
    missing = _run("index", "build", "--data", tmp_path / "nope.jsonl", "--out", index, "--rebuild", "--no-bm25")
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output and load_index(index).n_docs == 5
    assert _run("index", "build", "--data", more, "--out", index, "--rebuild", "--no-bm25").exit_code == 0
    assert load_index(index).n_docs == 1
    for args, message in [(["--shard-size", "12 parsecs"], "--shard-size"),
                          (["--append", "--rebuild"], "give one")]:
        res = _run("index", "build", "--data", more, "--out", index, "--no-bm25", *args)
        assert res.exit_code == 2 and message in res.output, res.output
    res = _run("index", "build", "--data", more, "--out", tmp_path / "new", "--append", "--no-bm25")
    assert res.exit_code == 2 and "holds no index to add to" in res.output and not (tmp_path / "new").exists()


@pytest.mark.parametrize("content, message", [
    (b'{"id": "x", "text": "caf\xe9"}\n', "bad.jsonl:1: not valid UTF-8"),  # Latin-1
    (b'{"id": "x", "text": "ok"}\n{"id": "x", "text": "again"}\n', "duplicate"),
    (b'{"id": "x", "txt": "ok"}\n', "text"),
])
def test_bad_corpus_is_refused_with_file_and_line(tmp_path, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    res = _run("index", "build", "--data", bad, "--out", tmp_path / "idx", "--no-bm25")
    assert res.exit_code == 2 and "bad.jsonl" in res.output and message in res.output, res.output
    assert not (tmp_path / "idx" / MANIFEST).exists()


def test_queries_refuse_a_folder_that_is_not_a_finished_index(index, tmp_path):
    res = _run("index", "count", "--index", tmp_path, "cat")
    assert res.exit_code == 2 and "not an lmaudit index" in res.output
    manifest = json.loads((index / MANIFEST).read_text())
    (index / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99, "lmaudit_version": "9.9"}))
    res = _run("index", "count", "--index", index, "cat")
    assert res.exit_code == 2 and "format version 99" in res.output and "9.9" in res.output
    assert _run("index", "count", "--index", index, "").exit_code == 2


def test_a_killed_build_leaves_no_index_and_a_rerun_finishes_it(tmp_path):
    """SIGKILL a real `lmaudit index build` process partway through (many small shards), then
    run the same command again."""
    data = _write(tmp_path / "big.jsonl", [{"id": i, "text": f"document {i} " * 40} for i in range(6000)])
    out = tmp_path / "idx"
    argv = [sys.executable, "-m", "lmaudit", "index", "build", "--data", str(data), "--out", str(out),
            "--shard-size", "4KiB", "--no-bm25", "-q"]
    proc = subprocess.Popen(argv, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and len(list(out.glob("shard-*"))) >= 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(out.glob("shard-*")) and not (out / MANIFEST).exists()
    with pytest.raises(IndexFormatError, match="did not finish"):
        load_index(out)
    res = _run("index", "count", "--index", out, "document")
    assert res.exit_code == 2 and "build the index again" in res.output
    assert subprocess.run(argv).returncode == 0
    lib = load_index(out, verify=True)
    assert lib.n_docs == 6000 and lib.count("document 5999 ") == 40


def test_attribute_writes_a_run_and_reads_extract_rows(index, tmp_path):
    outputs = _write(tmp_path / "samples.jsonl", [
        {"id": "d", "generated": "she was a philosopher of Valdoria, she said so", "duplication": 32},
        {"id": "a", "generated": "nothing of the kind", "duplication": 1},
        {"id": "z", "error": "text has 3 tokens, fewer than prefix + suffix = 64"}])
    out = tmp_path / "run"
    res = _run("attribute", "--index", index, "--outputs", outputs, "--output-field", "generated",
               "--source-field", "id", "--min-bytes", "8", "--out", out)
    assert res.exit_code == 1, res.output  # one upstream error row
    assert "1 of 2 outputs hold a span" in " ".join(res.output.split())
    results = json.loads((out / "results.json").read_text())
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert results["complete"] and results["n_errors"] == 1 and [r["id"] for r in rows] == ["d", "a", "z"]
    assert rows[0]["spans"][0]["docs"] == ["d"] and rows[0]["source_share"] == 1.0
    assert results["provenance"]["index"]["n_docs"] == 4 and results["by_duplication"]["32"]["n_outputs"] == 1
    res = _run("attribute", "--index", tmp_path, "--outputs", outputs, "--out", tmp_path / "run2")
    assert res.exit_code == 2 and "not an lmaudit index" in res.output and not (tmp_path / "run2").exists()


def test_append_keeps_the_index_shard_size_and_a_failed_bm25_step_says_what_to_run(tmp_path):
    data = _write(tmp_path / "c.jsonl", [{"id": i, "text": f"text number {i} " * 5} for i in range(6)])
    more = _write(tmp_path / "m.jsonl", [{"id": i, "text": f"more text {i} " * 5} for i in range(6, 12)])
    idx = tmp_path / "idx"
    assert _run("index", "build", "--data", data, "--out", idx, "--shard-size", "100", "-q").exit_code == 0
    assert _run("index", "build", "--data", more, "--out", idx, "--append", "-q").exit_code == 0
    lib = load_index(idx)
    # Documents of about 70 bytes: a shard closes at its second one, before and after the append
    # (with the default size instead, the six appended documents would make one shard).
    assert lib.manifest["shard_bytes"] == 100 and [s["n_docs"] for s in lib.manifest["shards"]] == [2] * 6
    (idx / "bm25" / "notes.txt").write_text("mine")
    res = _run("index", "build", "--data", data, "--out", idx, "--rebuild")
    assert res.exit_code == 2 and "notes.txt" in res.output and "lmaudit search --index" in " ".join(res.output.split())
    assert load_index(idx).n_docs == 6 and (idx / "bm25" / "notes.txt").read_text() == "mine"


def test_lone_surrogates_go_through_attribute_and_its_report(tmp_path):
    data = tmp_path / "c.jsonl"
    data.write_text('{"id": "a", "text": "abc \\ud800 the quick brown fox jumps"}\n')
    assert _run("index", "build", "--data", data, "--out", tmp_path / "idx", "-q").exit_code == 0
    res = _run("attribute", "--index", tmp_path / "idx", "--outputs", data, "--min-bytes", "8", "--out",
               tmp_path / "run", "--report", "-q")
    assert res.exit_code == 0, res.output
    [row] = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert row["text"] == "abc \ud800 the quick brown fox jumps" and row["attributed_share"] == 1.0
    assert "abc \ufffd the quick" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
