"""``lmaudit unlearn-bench`` end to end on the tiny forget testbed, with the smallest sweep:
the files it writes, C5 and C6 at each method's best setting (WHP's C6 skipped, with its
reason), the leaderboard's reruns reproducing the sweep, and its --report."""

import json

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.report.load import load_runs

runner = CliRunner()


@pytest.mark.slow
def test_unlearn_bench_writes_its_files_and_report(tiny_forget_testbed, tmp_path):
    testbed, _ = tiny_forget_testbed
    out = tmp_path / "bench"
    methods, lrs, epochs = ["ga", "whp"], ["1e-3"], 1
    result = runner.invoke(app, ["--quiet", "unlearn-bench", "--testbed", str(testbed), "--out", str(out),
                                 "--methods", ",".join(methods), "--lrs", ",".join(lrs), "--epochs", str(epochs),
                                 "--scale-sizes", "4", "--requests", "2", "--bootstrap", "50",
                                 "--knowledge-docs", "5", "--report"])
    assert result.exit_code == 0, result.output

    r = json.loads((out / "results.json").read_text())
    assert r["complete"] is True and r["kind"] == "unlearn-bench"
    for key in ("config", "sets", "reference", "leaderboard", "sweep", "runs", "scalability", "sustainability",
                "selection", "timings"):
        assert key in r, key
    assert set(r["files"]) >= {"samples", "leaderboard", "frontier"}
    run = load_runs([out])[0]  # every listed file present with its rows and sha256
    assert not run.problems

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == len(methods) * len(lrs) * epochs == len(r["sweep"])
    assert {(s["method"], s["epoch"]) for s in samples} == {(m, 1) for m in methods}

    board = (out / "leaderboard.md").read_text()
    assert board.startswith("| model |") and "ga lr=0.001 epoch=1" in board and "whp lr=0.001 epoch=1" in board
    assert (out / "frontier.svg").read_text().lstrip().startswith("<svg")

    rows = {e["method"]: e for e in r["leaderboard"] if e["method"]}
    assert set(rows) == set(methods)
    assert all(e["rerun_matches_sweep"] is True for e in rows.values())
    assert [e["model"] for e in r["leaderboard"][:2]] == ["target", "retrain"]

    assert r["sets"]["forget"] == 8 and r["sets"]["requests"] == [4, 4] and r["sets"]["scale_sizes"] == [4]
    assert [x["n_forget"] for x in r["scalability"]["ga"]] == [4, 8]
    assert "inference-time" in r["sustainability"]["whp"]["skipped"]
    assert [x["request"] for x in r["sustainability"]["ga"]] == [1, 2]
    assert [x["n_removed"] for x in r["sustainability"]["ga"]] == [4, 8]

    html = (out / "report.html").read_text()
    assert "Unlearning benchmark" in html and 'id="guide-unlearning"' in html
