"""Streamed scoring: score_stream and score_to_dir over inputs of any size, written as they come."""

import gc
import json
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest

from lmaudit.data import DataError, Record, RecordFile
from lmaudit.models.base import ScoringPolicy
from lmaudit.models.fake import FakeLM
from lmaudit.scoring.run import score_to_dir, summarize
from lmaudit.scoring.score import score_records, score_stream


def _docs(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "Ada", "was", "born", "in", "1815", "é", "\u2028"]
    docs = [Record(id=f"d{i}", text=" ".join(rng.choice(words, size=rng.integers(3, 60))), source="", line=i + 1)
            for i in range(n)]
    docs[3] = Record(id=3, text="", source="", line=4)  # an error row keeps its place
    return docs


@pytest.fixture(scope="module")
def lm():
    return FakeLM(["the cat sat on the mat"], max_length=32)  # 32: long documents need windows


def test_one_chunk_is_score_records_bit_for_bit(lm):
    docs = _docs(50)
    whole = score_records(lm, docs, batch_size=4)
    streamed = list(score_stream(lm, iter(docs), batch_size=4, chunk_docs=50))
    assert [s.row() for s in streamed] == [s.row() for s in whole]


def test_small_chunks_keep_every_row_in_order(lm):
    docs = _docs(103)
    whole = score_records(lm, docs, batch_size=4)
    streamed = list(score_stream(lm, iter(docs), batch_size=4, chunk_docs=10))
    assert [s.id for s in streamed] == [d.id for d in docs]
    for a, b in zip(whole, streamed):
        assert (a.error, a.n_tokens, a.n_windows) == (b.error, b.n_tokens, b.n_windows)
        if a.error is None:  # batches differ, so float rounding may
            assert abs(a.logprob_mean - b.logprob_mean) < 1e-6
            np.testing.assert_array_equal(a.stats.token_ids, b.stats.token_ids)


def test_score_to_dir_writes_rows_as_chunks_finish(lm, tmp_path):
    docs = _docs(95)
    out = tmp_path / "run"
    seen = []

    def progress(n):
        partial = out / "samples.jsonl.partial"
        seen.append(len(partial.read_text().splitlines()) if partial.exists() else None)

    result = score_to_dir(lm, iter(docs), out, batch_size=4, chunk_docs=20, progress=progress)
    # While chunk k is scored, the rows of chunks 0..k-1 are already on disk.
    assert seen[0] == 0 and max(s for s in seen if s is not None) >= 80
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [d.id for d in docs]
    table = pq.ParquetFile(out / "tokens.parquet")
    assert table.metadata.num_rows == 95 and table.metadata.num_row_groups == 5
    tokens = table.read().to_pydict()
    assert tokens["id"] == [str(d.id) for d in docs] and tokens["logprob"][3] == []
    # The figures are those of the whole list scored at once (chunks change batches only).
    whole = summarize(score_records(lm, docs, batch_size=4))
    for k, v in whole.items():
        assert result["summary"][k] == pytest.approx(v, abs=1e-6), k
    assert result["files"]["samples"]["rows"] == result["files"]["tokens"]["rows"] == 95


def test_a_record_file_is_streamed_and_counted(lm, tmp_path):
    path = tmp_path / "d.jsonl"
    docs = _docs(30)
    path.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    result = score_to_dir(lm, RecordFile(path), tmp_path / "run", data=[{"path": str(path), "n_rows": None}])
    assert result["provenance"]["data"][0]["n_rows"] == 30 and result["summary"]["n_rows"] == 30


def test_a_bad_row_late_in_the_file_leaves_nothing_complete(lm, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": "the cat"}) + "\n" for i in range(50)) + "{not json\n")
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"d\.jsonl:51"):
        score_to_dir(lm, RecordFile(path), out, chunk_docs=8)
    assert not (out / "results.json").exists()
    assert sorted(p.name for p in out.iterdir()) == [".lmaudit-run.json"]  # no partial or renamed file


def _peak(lm, n, tmp_path) -> int:
    text = "the cat sat on the mat and the dog sat on the log"  # 50 tokens: two windows of 32
    docs = (Record(id=i, text=text, source="", line=i + 1) for i in range(n))
    gc.collect()
    tracemalloc.start()
    score_to_dir(lm, docs, tmp_path / f"run{n}", batch_size=8, chunk_docs=200, policy=ScoringPolicy(max_length=32))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_documents(lm, tmp_path):
    small, large = _peak(lm, 600, tmp_path), _peak(lm, 2400, tmp_path)
    # Holding every score would cost over 1.5 KB a document here (50 tokens x 5 statistics x
    # 4 bytes, plus the objects). Streamed, what grows is a float per document, a Parquet
    # footer entry per chunk, and the 1 MiB read buffer of the final sha256 while the
    # samples file (about 170 bytes a row) is smaller than that: under 300 bytes a document.
    assert large - small < 1800 * 300, (small, large)


def test_a_file_that_changes_between_its_check_and_its_scoring_fails(lm, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": "the cat"}) + "\n" for i in range(5)))
    counted = RecordFile(path, rows=4)  # what a check pass found before a row was appended
    with pytest.raises(DataError, match="4 rows when checked, 5 when scored"):
        score_to_dir(lm, counted, tmp_path / "run")
    assert not (tmp_path / "run" / "results.json").exists()
