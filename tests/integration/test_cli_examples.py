"""Every command's `--help` example runs as written (issue 11), in a folder where the demo's
testbed is `lmaudit-demo` (with the forget split `lmaudit demo --all` adds): the tiny testbed
with its forget split stands in for it."""

import json
import shlex
import shutil

import pytest
import typer
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.report.results import is_lmaudit_report

runner = CliRunner()

# Where each command leaves its result file, under its --out (default: results.json).
RESULT_FILE = {"demo": "results/results.json", "testbed": "testbed.json"}


def _examples() -> dict[str, list[str]]:
    """{command: its example's arguments}, read from each registered command's epilog: the
    paragraph that starts with "Example: lmaudit "."""
    examples = {}
    for name, command in _commands().items():
        (line,) = [p for p in (command.epilog or "").split("\n\n") if p.startswith("Example: ")]
        argv = shlex.split(line.removeprefix("Example: "))
        assert argv[1 : 1 + len(name.split())] == name.split() and argv[0] == "lmaudit", line
        examples[name] = argv[1:]
    return examples


def _commands() -> dict:
    """Every command by its name on the command line; a group's ("watermark") as "group sub"."""
    out = {}
    for name, command in typer.main.get_command(app).commands.items():
        subs = getattr(command, "commands", None)
        out.update({f"{name} {sub}": c for sub, c in subs.items()} if subs else {name: command})
    return out


def _out(argv: list[str]) -> str | None:
    """The example's --out; None for a command that only prints (`index count`)."""
    return next((argv[i + 1] for i, a in enumerate(argv) if a in ("--out", "-o")), None)


def _reads(argv: list[str], folder: str | None) -> bool:
    """Whether the example reads ``folder`` (another example's --out) or a file in it."""
    return folder is not None and any(a == folder or a.startswith(folder + "/") for a in argv)


def _in_dependency_order(examples: dict[str, list[str]]) -> list[str]:
    """Commands ordered so that an example reading under another's --out (copying reads
    runs/extract/samples.jsonl, every audit reads lmaudit-demo/) runs after it."""
    needs = {name: {other for other, argv in examples.items() if other != name
                    and _reads([a for a in examples[name] if a != _out(examples[name])], _out(argv))}
             for name in examples}
    order: list[str] = []
    while len(order) < len(examples):
        ready = sorted(n for n in examples if n not in order and needs[n] <= set(order))
        assert ready, f"examples that depend on each other: {needs}"
        order += ready
    return order


def test_examples_are_read_from_every_command_and_ordered_by_what_they_read():
    examples = _examples()
    assert set(examples) == set(_commands())
    assert {"watermark generate", "watermark detect", "watermark evaluate", "watermark radioactivity"} <= set(examples)
    order = _in_dependency_order(examples)
    assert order[0] == "demo" and order.index("extract") < min(order.index("copying"), order.index("acr"))


# Every command, the demo's every audit and a testbed build among them: 15 minutes on 2 cores
# shared with two other jobs (the demo 5.5 of them), so slow.
@pytest.mark.slow
def test_every_help_example_runs_as_written(tiny_forget_testbed, tmp_path, monkeypatch):
    tb, _ = tiny_forget_testbed
    shutil.copytree(tb, tmp_path / "lmaudit-demo")  # a copy: the demo writes its results into it
    monkeypatch.chdir(tmp_path)
    examples = _examples()
    for name in _in_dependency_order(examples):
        argv = examples[name]
        if name == "demo":
            # As written it would replace the tiny testbed by the default one (about 4 minutes of
            # training); on the tiny one it runs every audit all the same.
            argv = [*argv, "--size", "tiny"]
        res = runner.invoke(app, argv)
        assert res.exit_code == 0, (name, res.output)
        if name == "report":  # its --out is the page itself
            assert is_lmaudit_report(tmp_path / _out(argv)) and res.output.count("report of ") == 1
            continue
        if _out(argv) is None:  # a lookup: its answer is what it prints
            assert res.output.strip(), name
            continue
        if name == "index build":  # an index, not a run: its manifest is written last
            assert json.loads((tmp_path / _out(argv) / "index.json").read_text())["n_docs"] > 0
            continue
        result = tmp_path / _out(argv) / RESULT_FILE.get(name, "results.json")
        assert json.loads(result.read_text())["complete"], name
