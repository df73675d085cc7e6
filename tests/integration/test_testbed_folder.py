"""A testbed build, and the demo, never delete what lmaudit did not create."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.testbed.build import build_testbed, load_complete
from lmaudit.testbed.folder import NotATestbedError


def _users_project(folder):
    """A folder of someone's own work, laid out like a testbed but not one."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "mine.csv").write_text("a,b\n1,2\n")
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(b"\x00" * 8)
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_a_build_refuses_a_folder_that_is_not_a_testbed_and_deletes_nothing(tmp_path):
    before = _users_project(tmp_path)
    with pytest.raises(NotATestbedError, match=r"not an lmaudit testbed.*data/, model/"):
        build_testbed(tmp_path, seed=0, size="tiny")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "data" / "mine.csv").read_text() == "a,b\n1,2\n"


def test_a_rebuild_refuses_a_testbed_holding_a_users_file_in_model_or_data(tiny_testbed, tmp_path):
    """A testbed.json makes a folder a testbed, not everything in it lmaudit's: a file dropped
    into data/ or model/ beside the generated ones is never deleted by a rebuild."""
    for stray in ("data/mine.jsonl", "model/notes/x.txt"):
        tb = tmp_path / stray.replace("/", "_")
        shutil.copytree(tiny_testbed[0], tb)
        (tb / stray).parent.mkdir(parents=True, exist_ok=True)
        (tb / stray).write_text("my own\n")
        before = sorted(p.relative_to(tb) for p in tb.rglob("*"))
        with pytest.raises(NotATestbedError, match=stray):
            build_testbed(tb, seed=1, size="tiny")
        assert sorted(p.relative_to(tb) for p in tb.rglob("*")) == before  # nothing deleted, marker unchanged
        assert (tb / stray).read_text() == "my own\n"


def test_the_testbed_command_refuses_it_with_a_message_naming_folder_and_contents(tmp_path):
    before = _users_project(tmp_path)
    res = CliRunner().invoke(app, ["--quiet", "testbed", "--out", str(tmp_path), "--size", "tiny"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert str(tmp_path) in text and "data/, model/" in text and "not an lmaudit testbed" in text
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_testbed_or_an_unfinished_build_is_rebuilt(tiny_testbed, tmp_path):
    out, info = tiny_testbed
    shutil.copytree(out, tmp_path / "tb")
    (tmp_path / "tb" / "model" / "model.safetensors").unlink()  # damaged: load_complete says rebuild
    again = build_testbed(tmp_path / "tb", seed=0, size="tiny")
    assert again["model_fingerprint"] == info["model_fingerprint"]
    assert load_complete(tmp_path / "tb", seed=0, size="tiny") is not None

    # A build killed part-way leaves its marker: the folder is still lmaudit's to rebuild.
    marker = json.loads((tmp_path / "tb" / "testbed.json").read_text())
    (tmp_path / "tb" / "testbed.json").write_text(json.dumps({**marker, "complete": False}))
    assert load_complete(tmp_path / "tb", seed=0, size="tiny") is None
    assert build_testbed(tmp_path / "tb", seed=0, size="tiny")["complete"]


def test_the_demo_refuses_a_folder_that_is_not_a_testbed(tmp_path):
    before = _users_project(tmp_path)
    res = CliRunner().invoke(app, ["--quiet", "demo", "--out", str(tmp_path), "--size", "tiny"])
    assert res.exit_code == 2 and "not an lmaudit testbed" in " ".join(res.output.split())
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_the_demo_keeps_a_results_folder_holding_what_lmaudit_did_not_write(tiny_testbed, tmp_path):
    out, _ = tiny_testbed
    shutil.copytree(out, tmp_path / "demo")
    (tmp_path / "demo" / "results" / "membership").mkdir(parents=True)
    (tmp_path / "demo" / "results" / "membership" / "results.json").write_text("{}")
    (tmp_path / "demo" / "results" / "notes.txt").write_text("mine")
    # A folder of the user's that only looks like a run (its file names are lmaudit's).
    (tmp_path / "demo" / "results" / "my-run").mkdir()
    (tmp_path / "demo" / "results" / "my-run" / "samples.jsonl").write_text("{}\n")
    # seed 1 does not match the saved testbed, so the demo would rebuild it and clear results/
    res = CliRunner().invoke(app, ["--quiet", "demo", "--out", str(tmp_path / "demo"), "--size", "tiny", "--seed", "1"])
    assert res.exit_code == 2 and "my-run/, notes.txt" in " ".join(res.output.split())
    assert (tmp_path / "demo" / "results" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "demo" / "results" / "my-run" / "samples.jsonl").exists()
    assert json.loads((tmp_path / "demo" / "testbed.json").read_text())["seed"] == 0  # nothing rebuilt
