"""A re-run that fails while reading its input leaves no earlier result looking current."""

import json
import re

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

GOOD = b'{"id": 1, "text": "fine", "question": "q", "answer": "a"}\n'
BAD = GOOD + b'{"id": 2, "text": "ok"\n'  # line 2 is not valid JSON

# command -> its arguments, with BAD standing for the malformed file and GOOD for a valid one.
COMMANDS = {
    "score": ["--model", "MODEL", "--data", "BAD"],
    "membership": ["--model", "MODEL", "--members", "BAD", "--nonmembers", "GOOD"],
    "dataset-inference": ["--model", "MODEL", "--suspect", "BAD", "--validation", "GOOD"],
    "paired-test": ["--model", "MODEL", "--public", "BAD", "--private", "GOOD"],
    "extract": ["--model", "MODEL", "--data", "BAD"],
    "copying": ["--outputs", "BAD", "--references", "GOOD"],
    "knowledge": ["--model", "MODEL", "--data", "BAD", "--n-shots", "0"],
    "acr": ["--model", "MODEL", "--data", "BAD"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_rerun_with_bad_input_leaves_nothing_marked_complete(command, tmp_path):
    files = {"BAD": tmp_path / "bad.jsonl", "GOOD": tmp_path / "good.jsonl", "MODEL": tmp_path / "no-model"}
    files["BAD"].write_bytes(BAD)
    files["GOOD"].write_bytes(GOOD)
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"schema_version": 1, "complete": True}))  # an earlier run
    args = [str(files.get(a, a)) for a in COMMANDS[command]]
    res = CliRunner().invoke(app, ["--quiet", command, *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert re.search(r"bad\.jsonl:2", " ".join(res.output.split())), res.output  # names file and line
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_that_is_a_file_is_refused_and_kept(command, tmp_path):
    files = {"BAD": tmp_path / "good.jsonl", "GOOD": tmp_path / "good.jsonl", "MODEL": tmp_path / "no-model"}
    files["GOOD"].write_bytes(GOOD)
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    args = [str(files.get(a, a)) for a in COMMANDS[command]]
    res = CliRunner().invoke(app, ["--quiet", command, *args, "--out", str(out)])
    assert res.exit_code == 2 and "is a file, not a folder" in " ".join(res.output.split()), res.output
    assert out.read_text() == "mine\n"
