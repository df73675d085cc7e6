"""--engine ray on the audit commands (issue 17): the same files as --engine local, on the tiny testbed.

Every command runs in this process through typer's CliRunner, so all of them share the one
local Ray instance the engine starts per process. Every test is bounded by an alarm: a Ray
pass that hangs (an actor pool waiting for a CPU it never gets) fails the test, not the suite.
"""

import json
import signal

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

runner = CliRunner()
LIMIT_S = 120


@pytest.fixture(autouse=True)
def time_limit():
    def expire(signum, frame):
        raise TimeoutError(f"an engine test ran past {LIMIT_S} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def ray_installed():
    pytest.importorskip("ray.data")


def _run(*args):
    res = runner.invoke(app, ["--quiet", *map(str, args)])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res


def _both(tmp_path, *args, workers=2):
    """Run ``args`` with --out local/ and --out ray/ (--engine ray --workers N); the two folders."""
    local, ray = tmp_path / "local", tmp_path / "ray"
    _run(*args, "--out", local)
    _run(*args, "--out", ray, "--engine", "ray", *(["--workers", workers] if workers else []))
    return local, ray


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _head(src, dst, n):
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return dst


# --- options, checked before anything runs -----------------------------------------------------

def test_workers_without_ray_is_refused(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    res = runner.invoke(app, ["extract", "--model", str(tb / "model"), "--data", str(tb / "data" / "members.jsonl"),
                              "--out", str(tmp_path / "o"), "--workers", "2"])
    assert res.exit_code != 0 and "--workers is an option of --engine ray" in " ".join(res.stderr.split())
    assert not (tmp_path / "o" / "results.json").exists()


def test_unknown_engine_is_refused(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    res = runner.invoke(app, ["knowledge", "--model", str(tb / "model"), "--data", str(tb / "data" / "members.jsonl"),
                              "--out", str(tmp_path / "o"), "--engine", "spark"])
    assert res.exit_code != 0 and "--engine must be one of local, ray" in " ".join(res.stderr.split())


def test_processors_say_whether_they_run_on_an_engine():
    """State read back after generate (MemFree's counters, R-CAD's passages and model) would be
    lost in a worker's copy: those two are refused; the two stateless ones are not."""
    from lmaudit.takedown.memfree import MemFreeProcessor
    from lmaudit.takedown.methods import unportable_parts
    from lmaudit.takedown.perturb import TopKPerturbation
    from lmaudit.takedown.rcad import RCADProcessor
    from lmaudit.watermark.processor import WatermarkProcessor

    assert not MemFreeProcessor.portable and "stats()" in MemFreeProcessor.portable_reason
    assert not RCADProcessor.portable and "model" in RCADProcessor.portable_reason
    assert TopKPerturbation.portable and WatermarkProcessor.portable
    assert list(unportable_parts({"sysprompt", "topk", "memfree", "rcad"})) == ["rcad", "memfree"]
    assert unportable_parts({"sysprompt", "topk"}) == {}


def test_the_ray_engine_refuses_an_unportable_processor_before_starting(ray_installed):
    from lmaudit.engines import EngineError
    from lmaudit.engines.ray import RayEngine
    from lmaudit.models.base import GenerationConfig
    from lmaudit.takedown.memfree import MemFreeProcessor

    unportable = MemFreeProcessor.__new__(MemFreeProcessor)  # the flag is the class's: no index needed
    with pytest.raises(EngineError, match="MemFreeProcessor cannot run on the Ray engine: MemFree counts"):
        RayEngine().generate(None, [[1, 2]], GenerationConfig(max_new_tokens=2), logits_processor=[unportable])


def test_on_engine_none_keeps_the_models_engine(ray_installed, tiny_testbed):
    """An audit called by another without engine= keeps the model on its engine (takedown
    evaluation calls run_knowledge); "local" takes it off."""
    from lmaudit.engines import EngineModel, on_engine
    from lmaudit.engines.ray import RayEngine
    from lmaudit.models.hf import HFModel

    tb, _ = tiny_testbed
    lm = HFModel.from_pretrained(str(tb / "model"), device="cpu")
    engine = RayEngine()
    wrapped = on_engine(lm, engine)
    assert isinstance(wrapped, EngineModel) and wrapped.local is lm
    assert on_engine(wrapped, None) is wrapped and on_engine(wrapped, engine) is wrapped
    assert on_engine(wrapped, "local") is lm and on_engine(lm, None) is lm


def test_takedown_eval_with_rcad_is_refused_on_ray(ray_installed, tiny_testbed, tmp_path, monkeypatch):
    from lmaudit.models.hf import HFModel

    tb, _ = tiny_testbed
    monkeypatch.setattr(HFModel, "from_pretrained", lambda *a, **k: pytest.fail("loaded a model before refusing"))
    out = tmp_path / "td"
    res = runner.invoke(app, ["takedown-eval", "--testbed", str(tb), "--methods", "none,topk,rcad", "--out", str(out),
                              "--engine", "ray"])
    error = " ".join(res.stderr.split())
    assert res.exit_code == 2, res.output
    assert "--engine ray cannot run rcad. rcad: R-CAD runs a second forward pass" in error
    assert "Leave rcad out of --methods, or use --engine local" in error
    assert not (out / "results.json").exists() and not (out / "memfree-index").exists()


def test_takedown_api_refuses_memfree_on_ray_and_writes_nothing(ray_installed, tiny_testbed, tmp_path):
    from lmaudit.data import read_records
    from lmaudit.engines import EngineError
    from lmaudit.models.hf import HFModel
    from lmaudit.takedown.evaluate import takedown_eval_to_dir

    tb, _ = tiny_testbed
    lm = HFModel.from_pretrained(str(tb / "model"), device="cpu")
    docs = read_records(tb / "data" / "members.jsonl")
    with pytest.raises(EngineError, match="the ray engine cannot run memfree. memfree: MemFree counts"):
        takedown_eval_to_dir(lm, docs[:4], docs[4:8], "memfree+sysprompt", tmp_path / "td", engine="ray")
    assert not (tmp_path / "td" / "results.json").exists() and not (tmp_path / "td" / "memfree-index").exists()


# --- the same results on Ray -------------------------------------------------------------------

@pytest.mark.slow
def test_extract_on_ray_equals_local(ray_installed, tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    local, ray = _both(tmp_path, "extract", "--model", tb / "model", "--data", tb / "data" / "members.jsonl",
                       "--prefix-tokens", 16, "--suffix-tokens", 16, "--batch-size", 8)
    assert (ray / "samples.jsonl").read_text() == (local / "samples.jsonl").read_text()
    assert len(_rows(ray / "samples.jsonl")) == 64
    engine = json.loads((ray / "results.json").read_text())["provenance"]["model"]["engine"]
    assert engine["name"] == "ray" and engine["workers_requested"] == 2 and 1 <= engine["workers"] <= 2
    assert "engine" not in json.loads((local / "results.json").read_text())["provenance"]["model"]


@pytest.mark.slow
def test_knowledge_greedy_on_ray_equals_local(ray_installed, tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    questions = _head(tb / "data" / "knowledge" / "members.jsonl", tmp_path / "q.jsonl", 40)
    local, ray = _both(tmp_path, "knowledge", "--model", tb / "model", "--data", questions,
                       "--shots", tb / "data" / "knowledge" / "shots.jsonl", "--template", "cloze", "--n-shots", 1,
                       "--max-new-tokens", 8, "--batch-size", 8)
    assert (ray / "samples.jsonl").read_text() == (local / "samples.jsonl").read_text()
    assert len(_rows(ray / "samples.jsonl")) == 40


@pytest.mark.slow
def test_watermark_generate_on_ray_equals_local(ray_installed, tiny_testbed, tmp_path):
    """Sampled, watermarked: the same batches and seeds on the workers give the same tokens."""
    tb, _ = tiny_testbed
    docs = _head(tb / "data" / "nonmembers.jsonl", tmp_path / "d.jsonl", 20)
    local, ray = _both(tmp_path, "watermark", "generate", "--model", tb / "model", "--data", docs, "--key", 7,
                       "--preset", "lefthash", "--max-new-tokens", 16, "--batch-size", 8, "--seed", 3)
    rows = _rows(ray / "samples.jsonl")
    assert rows == _rows(local / "samples.jsonl") and len(rows) == 20
    assert all(r["n_new_tokens"] == 16 for r in rows)
    assert (ray / "watermark.json").read_text() == (local / "watermark.json").read_text()


@pytest.mark.slow
def test_membership_on_ray_gives_the_same_scores_and_aucs(ray_installed, tiny_testbed, tmp_path):
    """The audited model and the reference model both score on the workers."""
    tb, _ = tiny_testbed
    members = _head(tb / "data" / "members.jsonl", tmp_path / "m.jsonl", 32)
    nonmembers = _head(tb / "data" / "nonmembers.jsonl", tmp_path / "n.jsonl", 32)
    local, ray = _both(tmp_path, "membership", "--model", tb / "model", "--members", members, "--nonmembers",
                       nonmembers, "--attacks", "loss,min_k@0.2,zlib,reference_diff", "--reference-model",
                       tb / "model", "--bootstrap", 20, "--no-cache")
    a, b = (json.loads((d / "results.json").read_text()) for d in (local, ray))
    assert list(a["attacks"]) == list(b["attacks"]) == ["loss", "min_k@0.2", "zlib", "reference_diff"]
    for name in a["attacks"]:
        assert b["attacks"][name]["auc"] == pytest.approx(a["attacks"][name]["auc"], abs=1e-6), name
    la, lb = _rows(local / "samples.jsonl"), _rows(ray / "samples.jsonl")
    assert [r["id"] for r in la] == [r["id"] for r in lb] and len(la) == 64
    for ra, rb in zip(la, lb):
        assert list(ra["scores"]) == list(rb["scores"]) == list(a["attacks"])
        for key, value in ra["scores"].items():
            assert rb["scores"][key] == pytest.approx(value, abs=1e-6), (ra["id"], key)
    assert b["provenance"]["model"]["engine"]["name"] == "ray"
    assert b["provenance"]["reference_model"]["engine"]["name"] == "ray"


@pytest.mark.slow
def test_index_build_on_ray_is_the_local_index_file_for_file(ray_installed, tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    args = ("index", "build", "--data", tb / "data" / "members.jsonl", "--data", tb / "data" / "reference.jsonl",
            "--jobs", 2, "--shard-size", "8KiB", "--no-bm25")
    local, ray = _both(tmp_path, *args, workers=None)
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(ray) for p in ray.rglob("*") if p.is_file())
    assert len([f for f in files if f.name == "text.bin"]) > 2  # several shards, sorted two at a time
    for f in files:
        assert (ray / f).read_bytes() == (local / f).read_bytes(), f


# --- the driver, the cluster address, the backends ------------------------------------------------


def test_an_unreachable_cluster_fails_before_any_file_is_read(tmp_path, ray_installed):
    res = runner.invoke(app, ["score", "--model", tmp_path / "no-model", "--data", tmp_path / "no-data.jsonl",
                              "--out", tmp_path / "o", "--engine", "ray", "--ray-address", "127.0.0.1:1"])
    assert res.exit_code == 2 and "127.0.0.1:1 does not answer" in " ".join(res.output.split())
    assert not (tmp_path / "o" / "results.json").exists()


def test_with_the_ray_engine_the_driver_copy_is_on_the_cpu_and_workers_get_the_device_asked(tiny_testbed,
                                                                                            monkeypatch):
    from lmaudit.cli.common import state
    from lmaudit.cli.loading import load_model
    from lmaudit.models.hf import HFModel

    tb, _ = tiny_testbed
    loaded_on = []
    real = HFModel.from_pretrained.__func__

    def spy(cls, name, **kw):  # this machine has no GPU: record the device asked of the loader
        loaded_on.append(kw["device"])
        return real(cls, name, **{**kw, "device": "cpu"})

    monkeypatch.setattr(HFModel, "from_pretrained", classmethod(spy))
    for on_cpu in (False, True):
        state.driver_on_cpu = on_cpu
        try:
            lm = load_model(str(tb / "model"), dtype="float32", device="cuda", trust_remote_code=False, batch_size=4)
        finally:
            state.driver_on_cpu = False
        assert lm.load_spec["device"] == "cuda"  # what the workers load on, either way
    assert loaded_on == ["cuda", "cpu"]  # the driver's own copy: as asked locally, on the CPU with Ray


def test_a_vllm_model_is_refused_on_the_ray_engine(ray_installed):
    from lmaudit.engines import get_engine, on_engine

    class Loaded:  # what VLLMModel.from_pretrained records
        name = "m"
        load_spec = {"backend": "vllm", "name_or_path": "/m"}

    with pytest.raises(ValueError, match="vLLM model cannot run on the Ray engine"):
        on_engine(Loaded(), get_engine("ray"))


def test_a_split_is_refused_for_a_jsonl_file_as_other_commands_refuse_it(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    res = runner.invoke(app, ["score", "--model", tb / "model", "--data", tb / "data" / "members.jsonl",
                              "--out", tmp_path / "o", "--split", "train"])
    assert res.exit_code == 2 and "only 'hf' datasets have splits" in " ".join(res.output.split())


@pytest.mark.parametrize("address", ["[::1]:1", "127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_address_that_does_not_answer_is_a_connection_error(address, ray_installed):
    from lmaudit.engines import get_engine

    with pytest.raises(ConnectionError, match="does not answer"):
        get_engine("ray", address=address).connect()
