"""What a new user hits on the command line (issue 11, section 1): options checked before the
model loads, run folders that are not mixed, devices and offline models, --quiet, --help."""

import json
import re
import time

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line(res) -> str:
    """The error of a failed run, checked to be one line (no traceback)."""
    text = res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "error:" in text and "Traceback" not in text, text
    error = text[text.index("error:"):].strip()
    assert "\n" not in error, error
    return error


@pytest.fixture
def never_load(monkeypatch):
    """Fails the test if a command gets as far as loading a model."""
    from lmaudit.models.hf import HFModel

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(HFModel, "from_pretrained", refuse)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- 1. options checked before any model loads, and nothing left behind -------------------

def test_unknown_attack_fails_before_the_model_loads_and_leaves_no_folder(tiny_testbed, tmp_path, never_load):
    tb, _ = tiny_testbed
    out = tmp_path / "mia"
    for command, a, b in (("membership", "--members", "--nonmembers"), ("dataset-inference", "--suspect", "--validation")):
        res = _invoke(command, "--model", tb / "model", a, tb / "data/members.jsonl", b, tb / "data/nonmembers.jsonl",
                      "--attacks", "loss,foo", "--out", out)
        assert res.exit_code == 2 and "unknown attack 'foo'" in _one_line(res), res.output
        assert not out.exists()  # no cache.sqlite, no folder


def test_an_attack_lacking_its_input_fails_before_the_model_loads(tiny_testbed, tmp_path, never_load):
    tb, _ = tiny_testbed
    res = _invoke("membership", "--model", tb / "model", "--members", tb / "data/members.jsonl",
                  "--nonmembers", tb / "data/nonmembers.jsonl", "--attacks", "reference_diff", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "needs reference_model" in _one_line(res)
    assert not (tmp_path / "o").exists()


def test_paired_test_partner_missing_fails_before_the_model_loads(tmp_path, never_load):
    public = _write(tmp_path / "public.jsonl", [{"id": i, "text": f"text {i}"} for i in range(3)])
    private = _write(tmp_path / "private.jsonl", [{"id": i, "text": f"other {i}"} for i in range(2)])
    res = _invoke("paired-test", "--model", tmp_path, "--public", public, "--private", private, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "no row with id 2" in _one_line(res)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["too_few_shots", "shot_without_answer", "item_without_answer"])
def test_knowledge_questions_and_shots_are_checked_before_the_model_loads(case, tmp_path, never_load):
    items = [{"id": i, "question": f"q{i}", "answer": f"a{i}"} for i in range(4)]
    shots = [{"id": i, "question": f"s{i}", "answer": f"b{i}"} for i in range(2)]
    n_shots = 3 if case == "too_few_shots" else 2
    if case == "shot_without_answer":
        del shots[1]["answer"]
    if case == "item_without_answer":
        items[2]["answer"] = ""
    res = _invoke("knowledge", "--model", tmp_path, "--data", _write(tmp_path / "q.jsonl", items),
                  "--shots", _write(tmp_path / "s.jsonl", shots), "--n-shots", n_shots, "--out", tmp_path / "o")
    message = _one_line(res)
    assert res.exit_code == 2
    assert {"too_few_shots": "3 shots asked for", "shot_without_answer": "s.jsonl:2",
            "item_without_answer": "q.jsonl:3"}[case] in message
    assert not (tmp_path / "o").exists()


# --- 2. one command's run per folder ---------------------------------------------------------

def test_a_folder_holding_another_commands_run_is_refused_unless_overwrite(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    data = _write(tmp_path / "d.jsonl", [json.loads(x) for x in (tb / "data/members.jsonl").read_text().splitlines()[:4]])
    out = tmp_path / "run"
    assert _invoke("-q", "score", "--model", tb / "model", "--data", data, "--out", out).exit_code == 0
    scored = (out / "results.json").read_text()
    extract = ["extract", "--model", tb / "model", "--data", data, "--prefix-tokens", 8, "--suffix-tokens", 8,
               "--out", out, "-q"]
    res = _invoke(*extract)
    assert res.exit_code == 2 and "holds the run of `lmaudit score`" in _one_line(res) and "--overwrite" in res.stderr
    assert (out / "results.json").read_text() == scored  # kept as it was
    # The same command again in its own folder is a re-run (it resumes through the cache).
    assert _invoke("-q", "score", "--model", tb / "model", "--data", data, "--out", out).exit_code == 0
    res = _invoke(*extract, "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "results.json").read_text())["command"].startswith("lmaudit extract")
    assert sorted(p.name for p in out.iterdir()) == [".lmaudit-run.json", "results.json", "samples.jsonl"]


def test_a_killed_run_without_results_still_marks_its_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lmaudit-run.json").write_text(json.dumps({"command": "lmaudit -q score --out run"}))
    (out / "samples.jsonl").write_text("")
    res = _invoke("copying", "--outputs", tmp_path / "a.jsonl", "--references", tmp_path / "b.jsonl", "--out", out)
    assert res.exit_code == 2 and "`lmaudit score`" in _one_line(res)
    assert (out / "samples.jsonl").exists()


# --- 3. devices and models that cannot be had --------------------------------------------------

@pytest.mark.parametrize("device, message", [
    ("gpu", "device must be cpu, cuda, cuda:N, mps or auto, got 'gpu'"),
    ("cuda", "CPU-only build"),
    ("cuda:7", "cuda:7"),
])
def test_a_device_this_machine_lacks_is_one_line_before_anything_is_read(device, message, tmp_path, never_load):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = _invoke("score", "--model", tmp_path, "--data", tmp_path / "absent.jsonl", "--device", device,
                  "--out", tmp_path / "o")
    assert res.exit_code == 2 and message in _one_line(res), res.stderr
    assert "absent.jsonl" not in res.stderr and not (tmp_path / "o").exists()


def test_a_hub_name_not_in_the_cache_fails_at_once_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    data = _write(tmp_path / "d.jsonl", [{"id": 1, "text": "hello"}])
    started = time.perf_counter()
    res = _invoke("score", "--model", "lmaudit-test/no-such-model", "--data", data, "--out", tmp_path / "o")
    assert time.perf_counter() - started < 5
    message = _one_line(res)
    assert res.exit_code == 2 and "HF_HUB_OFFLINE" in message and "hf download lmaudit-test/no-such-model" in message


# --- 4. --quiet, before or after the command ---------------------------------------------------

@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_the_summary_as_json_and_nothing_else(where, tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    data = _write(tmp_path / "d.jsonl", [json.loads(x) for x in (tb / "data/members.jsonl").read_text().splitlines()[:3]])
    runs = {
        "score": ["--model", tb / "model", "--data", data],
        "extract": ["--model", tb / "model", "--data", data, "--prefix-tokens", 8, "--suffix-tokens", 8],
        "copying": ["--outputs", data, "--references", data],
    }
    for command, args in runs.items():
        out = tmp_path / command / where
        argv = ["-q", command, *args, "--out", out] if where == "before" else [command, *args, "--out", out, "--quiet"]
        res = _invoke(*argv)
        assert res.exit_code == 0, res.output
        assert res.stderr == "", (command, res.stderr)
        summary = json.loads(res.stdout)  # one JSON document, nothing around it
        assert summary == json.loads((out / "results.json").read_text())["summary"]


# --- 5. help -----------------------------------------------------------------------------------

def test_flags_show_no_type_in_help():
    import typer

    commands = typer.main.get_command(app).commands
    groups = [n for n, c in commands.items() if getattr(c, "commands", None)]  # watermark
    names = ["", *commands, *(f"{g} {sub}" for g in groups for sub in commands[g].commands)]
    for name in names:
        res = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and "<bool>" not in res.stdout, name
        # `index build` writes an index, not a run (--rebuild, not --overwrite); the lookups print
        # their answer (`lmaudit -q index count` quiets the rest).
        index = name.startswith("index ")
        if name not in ("", "testbed", "demo", "report", *groups) and not index:  # the audit commands
            assert all(flag in res.stdout for flag in ("--overwrite", "--quiet", "--report")), name
        if name == "index build":
            assert "--quiet" in res.stdout and "--rebuild" in res.stdout and "--overwrite" not in res.stdout
        if name == "report":
            assert "--quiet" in res.stdout and "--allow-incomplete" in res.stdout
        # Every command that runs a model (or shard sorts) over many documents, and only those.
        assert ("--engine" in res.stdout) == (name in ENGINE_COMMANDS), name
        assert ("--workers" in res.stdout) == (name in ENGINE_COMMANDS and name != "index build"), name  # --jobs there


ENGINE_COMMANDS = {"score", "membership", "dataset-inference", "paired-test", "extract", "knowledge", "takedown-eval",
                   "unlearn-eval", "watermark generate", "watermark evaluate", "watermark radioactivity",
                   "index build"}


def test_reading_a_file_does_not_say_documents_twice(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    res = _invoke("score", "--model", tb / "model", "--data", _write(tmp_path / "d.jsonl", [{"id": 1, "text": "x y"}]),
                  "--out", tmp_path / "o")
    assert res.exit_code == 0 and "read 1 row from" in " ".join(res.stderr.split())
    assert not re.search(r"documents \S* ?\(documents\)", " ".join(res.stderr.split()))
