"""The Ray engine against the local one, on a local Ray instance (started once per test process).

Every test here runs under an alarm: a Ray pipeline that cannot get the resources it asks for
waits forever without an error, and a test must fail instead.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason='the Ray engine needs pip install "lmaudit[ray]"')

from lmaudit.data import DataError, RecordFile, Record, read_records  # noqa: E402
from lmaudit.engines import EngineError, get_engine, on_engine  # noqa: E402
from lmaudit.models.base import GenerationConfig  # noqa: E402
from lmaudit.models.hf import HFModel  # noqa: E402
from lmaudit.scoring.run import score_to_dir  # noqa: E402
from lmaudit.scoring.score import score_records  # noqa: E402

pytestmark = pytest.mark.slow
TOL = 1e-6  # |Δ logprob_mean|: batches differ between engines, so float32 sums round differently


@pytest.fixture(autouse=True)
def deadline():
    def expire(*_):
        raise TimeoutError("a Ray test ran past 240 s (a pipeline waiting for resources hangs silently)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(240)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def lm(tiny_testbed):
    tb, _ = tiny_testbed
    return HFModel.from_pretrained(str(tb / "model"), device="cpu")


@pytest.fixture(scope="module")
def docs(tiny_testbed):
    tb, _ = tiny_testbed
    records = read_records(tb / "data" / "members.jsonl") + read_records(tb / "data" / "nonmembers.jsonl")
    records = [Record(id=f"d{i}", text=r.text, source="", line=i + 1) for i, r in enumerate(records)]
    # Ids Ray's own JSON reader changes ("007" -> 7), a text it reads as a date, a long text
    # that needs several windows, and an empty text (an error row).
    odd = [Record(id="007", text="2021-01-01", source="", line=0), Record(id=7, text="Ada was born.", source="", line=0),
           Record(id="long", text=" ".join(r.text for r in records[:30]), source="", line=0),
           Record(id="empty", text="", source="", line=0)]
    half = len(records) // 2
    return records[:half] + odd + records[half:]


def engine(**kw):
    return get_engine("ray", workers=2, docs_per_task=32, **kw)


def _same(local, ray_scores):
    assert [s.id for s in ray_scores] == [s.id for s in local]  # same ids, same order, nothing lost
    for a, b in zip(local, ray_scores):
        assert (a.error is None) == (b.error is None) and a.error == b.error
        assert (a.n_tokens, a.n_windows, a.n_text_tokens) == (b.n_tokens, b.n_windows, b.n_text_tokens)
        if a.error is None:
            assert abs(a.logprob_mean - b.logprob_mean) < TOL
            np.testing.assert_array_equal(a.stats.token_ids, b.stats.token_ids)
            for f in ("logprob", "vocab_mean", "vocab_std", "entropy"):
                np.testing.assert_allclose(getattr(a.stats, f), getattr(b.stats, f), atol=1e-4)


def test_scores_equal_the_local_engine(lm, docs):
    local = score_records(lm, docs, batch_size=8)
    on_ray = score_records(on_engine(lm, engine()), docs, batch_size=8)
    _same(local, on_ray)
    by_id = {str(s.id): s for s in on_ray}
    assert isinstance(by_id["007"].id, str) and isinstance(by_id["7"].id, int)  # "007" stays a string, 7 an int
    assert by_id["long"].n_windows > 1 and by_id["empty"].error is not None
    assert len(docs) > 100


def test_a_record_file_is_read_by_ray_data(lm, docs, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    source = RecordFile(path)
    local = score_to_dir(lm, source, tmp_path / "local", batch_size=8)
    on_ray = score_to_dir(lm, source, tmp_path / "ray", batch_size=8, engine=engine())
    a = [json.loads(x) for x in (tmp_path / "local" / "samples.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "ray" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in a] == [r["id"] for r in b] == [d.id for d in docs]
    assert max(abs(x["logprob_mean"] - y["logprob_mean"]) for x, y in zip(a, b) if x["error"] is None) < TOL
    assert on_ray["complete"] and on_ray["summary"]["n_rows"] == local["summary"]["n_rows"] == len(docs)
    used = on_ray["provenance"]["model"]["engine"]
    assert (used["name"], used["workers"], used["device"], used["address"]) == ("ray", 2, "cpu", "local instance")
    assert abs(on_ray["summary"]["token_loss"] - local["summary"]["token_loss"]) < TOL


def test_a_bad_row_names_file_and_line_and_leaves_no_result(lm, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"doc {i}"}) + "\n" for i in range(700))
                    + '{"id": 700, "txt": "no text"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:701: field 'text' is missing"):
        score_to_dir(lm, RecordFile(path), tmp_path / "out", engine=engine())
    assert not (tmp_path / "out" / "results.json").exists()
    assert not list((tmp_path / "out").glob("*.partial")) and not (tmp_path / "out" / "samples.jsonl").exists()


def _scoring_actor_pids() -> list[int]:
    import psutil

    pids = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "MapBatches(_Scorer)" in " ".join(p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def test_a_killed_worker_is_replaced_and_no_row_is_lost(lm, docs):
    many = [Record(id=f"{i}-{d.id}", text=d.text, source="", line=0) for i in range(3) for d in docs]
    killed = []

    def kill_one(n):
        # At the first result a worker is busy with the next batch: kill it mid-batch.
        if not killed:
            pids = _scoring_actor_pids()
            assert pids, "no scoring worker found to kill"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    local = score_records(lm, many, batch_size=8)
    on_ray = score_records(on_engine(lm, engine()), many, batch_size=8, progress=kill_one)
    assert killed
    _same(local, on_ray)  # every id once, in order, the same numbers


def test_an_unretried_worker_error_ends_the_run_without_a_result(lm, docs, tiny_testbed, tmp_path):
    # A worker that loads other weights than the driver's refuses to score.
    tb, _ = tiny_testbed
    other = tmp_path / "other-model"
    shutil.copytree(tb / "model", other)
    changed = HFModel.from_pretrained(str(other), device="cpu")
    for p in changed.model.parameters():
        p.data.mul_(1.5)
        break
    changed.model.save_pretrained(other)
    lm_other = HFModel.from_pretrained(str(tb / "model"), device="cpu")
    lm_other.load_spec = {**lm_other.load_spec, "name_or_path": str(other)}
    with pytest.raises(EngineError, match="differ from the driver's"):
        score_to_dir(lm_other, docs[:40], tmp_path / "out", engine=engine())
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_model_built_in_memory_is_refused(tiny_lm):
    with pytest.raises(ValueError, match="save_pretrained"):
        on_engine(tiny_lm, engine())


def test_generation_equals_the_local_engine_greedy_and_sampled(lm, docs):
    prompts = [[lm.bos_token_id, *ids[: 4 + i % 7]] for i, ids in enumerate(lm.encode([d.text for d in docs[:45]]))]
    remote = on_engine(lm, engine())
    for config in (GenerationConfig(max_new_tokens=12), GenerationConfig(max_new_tokens=12, do_sample=True, seed=5),
                   GenerationConfig(max_new_tokens=12, do_sample=True, temperature=0.7, top_k=20, stop_at_eos=False)):
        assert remote.generate(prompts, config, batch_size=4) == lm.generate(prompts, config, batch_size=4)


def test_index_shards_sorted_on_ray_are_the_same_files(docs, tmp_path):
    from lmaudit.corpus.index import build_index

    build_index(docs, tmp_path / "local", shard_bytes=4000, jobs=1)
    build_index(docs, tmp_path / "ray", shard_bytes=4000, jobs=2, engine=engine())
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file())
    assert len([f for f in files if f.name == "text.bin"]) > 3
    assert files == sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*") if p.is_file())
    for f in files:
        if f.name != "index.json":  # the manifest records when it was built
            assert (tmp_path / "local" / f).read_bytes() == (tmp_path / "ray" / f).read_bytes(), f


def _cache_rows(path: Path) -> int:
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM stats").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_killed_driver_resumes_from_the_cache(tiny_testbed, docs, tmp_path):
    tb, _ = tiny_testbed
    data = tmp_path / "docs.jsonl"
    # Enough work (batches of 2) that results still arrive when the first is committed.
    many = [{"id": f"{i}-{d.id}", "text": d.text} for i in range(16) for d in docs if d.text]
    data.write_text("".join(json.dumps(r) + "\n" for r in many))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lmaudit", "-q", "score", "--model", str(tb / "model"), "--data", str(data),
           "--out", str(out), "--device", "cpu", "--engine", "ray", "--workers", "2", "--batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    # Its own session, so that killing the group takes the driver and the Ray instance it started.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while _cache_rows(out / "cache.sqlite") == 0 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        done_before_kill = _cache_rows(out / "cache.sqlite")
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert 0 < done_before_kill < len(many)
    assert not (out / "results.json").exists()  # a killed run never looks complete
    done = subprocess.run([*cmd, "--overwrite"], env=env, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert result["complete"] and result["summary"]["n_rows"] == len(many)
    assert result["summary"]["n_from_cache"] >= done_before_kill  # finished documents were not scored again
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in many]
    lm = HFModel.from_pretrained(str(tb / "model"), device="cpu")
    local = score_records(lm, [Record(id=r["id"], text=r["text"], source="", line=0) for r in many], batch_size=2)
    assert max(abs(a.logprob_mean - r["logprob_mean"]) for a, r in zip(local, rows)) < TOL
