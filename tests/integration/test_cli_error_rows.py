"""One exit rule for every command that writes a samples.jsonl row per input (issue 11): the run
finishes and writes its results, the terminal counts the error rows (also with --quiet), and the
exit status is 1 when there is one, 0 when there is none."""

import json

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

runner = CliRunner()


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _documents(tb, split, n):
    return _rows(tb / "data" / f"{split}.jsonl")[:n]


# Each case: (command, what a row is, its arguments given a folder of inputs, and the inputs:
# clean ones, and the same with one row that cannot be processed, whose id is "bad").
def _score(tb, d, bad):
    docs = _documents(tb, "members", 3) + ([{"id": "bad", "text": ""}] if bad else [])
    return ["score", "--model", tb / "model", "--data", _write(d / "docs.jsonl", docs)]


def _extract(tb, d, bad):
    docs = _documents(tb, "members", 3) + ([{"id": "bad", "text": "too short"}] if bad else [])
    return ["extract", "--model", tb / "model", "--data", _write(d / "docs.jsonl", docs), "--prefix-tokens", 8,
            "--suffix-tokens", 8, "--bootstrap", 20]


def _knowledge(tb, d, bad):
    items = _rows(tb / "data/knowledge/members.jsonl")[:3]
    if bad:  # longer than the model's 256-token context
        items.append({"id": "bad", "question": " ".join(["word"] * 300), "answer": "x"})
    return ["knowledge", "--model", tb / "model", "--data", _write(d / "q.jsonl", items), "--n-shots", 0,
            "--template", "cloze", "--max-new-tokens", 4, "--bootstrap", 20]


def _membership(tb, d, bad):
    members = _documents(tb, "members", 10) + ([{"id": "bad", "text": ""}] if bad else [])
    return ["membership", "--model", tb / "model", "--members", _write(d / "m.jsonl", members),
            "--nonmembers", _write(d / "n.jsonl", _documents(tb, "nonmembers", 10)), "--attacks", "loss,zlib",
            "--bootstrap", 20]


def _dataset_inference(tb, d, bad):
    suspect = _documents(tb, "members", 10) + ([{"id": "bad", "text": ""}] if bad else [])
    return ["dataset-inference", "--model", tb / "model", "--suspect", _write(d / "s.jsonl", suspect),
            "--validation", _write(d / "v.jsonl", _documents(tb, "nonmembers", 10)), "--attacks", "loss,zlib",
            "--null-trials", 5]


def _acr(tb, d, bad):
    targets = [{"id": "a", "text": "born in"}] + ([{"id": "bad", "text": ""}] if bad else [])
    return ["acr", "--model", tb / "model", "--data", _write(d / "t.jsonl", targets), "--steps", 2, "--candidates", 4,
            "--top-k", 4, "--max-prompt-tokens", 1]


CASES = {"score": (_score, "documents"), "extract": (_extract, "documents"), "knowledge": (_knowledge, "questions"),
         "membership": (_membership, "documents"), "dataset-inference": (_dataset_inference, "documents"),
         "acr": (_acr, "targets")}


@pytest.mark.parametrize("command", CASES)
def test_one_error_row_gives_exit_status_1_a_count_and_complete_results(command, tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    build, unit = CASES[command]
    for bad in (False, True):
        d = tmp_path / ("bad" if bad else "clean")
        d.mkdir()
        out = d / "run"
        res = runner.invoke(app, ["--quiet", *map(str, build(tb, d, bad)), "--out", str(out)])
        results = json.loads((out / "results.json").read_text())
        rows = _rows(out / "samples.jsonl")
        # --quiet: the summary is still the one line on stdout, whatever the status.
        assert json.loads(res.stdout) == results["summary"], res.output
        assert results["complete"] and results["files"]["samples"]["rows"] == len(rows)
        errors = [r["id"] for r in rows if r.get("error")]
        if not bad:
            assert res.exit_code == 0, res.output
            assert errors == [] and "error" not in res.stderr
            continue
        assert res.exit_code == 1, res.output
        assert errors == ["bad"]
        assert results["summary"]["n_errors"] == 1
        message = " ".join(res.stderr.split())
        assert f"error: 1 of {len(rows)} {unit}" in message and f"{out}/samples.jsonl" in message, message
