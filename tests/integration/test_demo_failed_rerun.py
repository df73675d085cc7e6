"""A demo re-run that fails part-way leaves no results/results.json claiming to be complete."""

import json
import shutil

from typer.testing import CliRunner

from lmaudit.cli import app


def test_a_demo_rerun_failing_after_scoring_leaves_nothing_complete(tiny_testbed, tmp_path, monkeypatch):
    import lmaudit.membership.run as membership

    out, _ = tiny_testbed
    demo = tmp_path / "demo"
    shutil.copytree(out, demo)
    # An earlier complete demo (a full one takes minutes on 2 cores; its content does not matter here).
    for run in ("", "membership"):
        (demo / "results" / run).mkdir(parents=True, exist_ok=True)
        (demo / "results" / run / "results.json").write_text(json.dumps({"schema_version": 1, "complete": True}))

    def killed(*args, **kwargs):
        raise RuntimeError("killed in membership")

    monkeypatch.setattr(membership, "run_membership", killed)  # after both splits are scored
    res = CliRunner().invoke(app, ["--quiet", "demo", "--out", str(demo), "--size", "tiny"])
    assert res.exit_code != 0 and "killed in membership" in str(res.exception)
    assert json.loads((demo / "results" / "members" / "results.json").read_text())["complete"]  # some work was done
    assert not (demo / "results" / "results.json").exists()
    assert not (demo / "results" / "membership" / "results.json").exists()
    assert not list(demo.rglob("*.partial"))
