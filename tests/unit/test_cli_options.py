"""The shared CLI option groups: declared once, present in every command that takes them."""

from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.cli.options import DataOptions, ModelOptions, ScoringOptions, option_groups

runner = CliRunner()
# command -> its groups, and the fields it leaves out (see each command's option_groups(omit=...)).
GROUPS = {
    "score": ([ModelOptions, ScoringOptions, DataOptions], ()),
    "membership": ([ModelOptions, ScoringOptions, DataOptions], ()),
    "dataset-inference": ([ModelOptions, ScoringOptions, DataOptions], ()),
    "paired-test": ([ModelOptions, ScoringOptions, DataOptions], ()),
    "extract": ([ModelOptions, DataOptions], ()),
    "knowledge": ([ModelOptions, DataOptions], ("text_field",)),
    "acr": ([ModelOptions, DataOptions], ("batch_size",)),
    "copying": ([DataOptions], ()),
}


def _params(command: str) -> dict:
    return {p.name: p for p in typer.main.get_command(app).commands[command].params}


@pytest.mark.parametrize("command", GROUPS)
def test_every_command_has_every_option_of_its_groups_with_help(command):
    groups, omitted = GROUPS[command]
    params = _params(command)
    for group in groups:
        for f in fields(group):
            assert (f.name in params) == (f.name not in omitted), (command, f.name)
    assert all(p.help for p in params.values()), command


def test_flags_and_defaults_are_those_the_readme_documents():
    params = _params("score")
    assert params["fmt"].opts == ["--format"] and params["no_cache"].opts == ["--no-cache"]
    assert set(params["model"].opts) == {"--model", "-m"} and params["model"].required
    defaults = {name: params[name].default for name in ("bos", "overflow", "padding_side", "batch_size", "dtype",
                                                        "device", "text_field", "id_field", "fmt")}
    assert defaults == {"bos": "prepend", "overflow": "window", "padding_side": "right", "batch_size": 16,
                        "dtype": "float32", "device": "auto", "text_field": "text", "id_field": "id", "fmt": "auto"}


def test_the_command_gets_one_instance_per_group():
    seen = {}

    @option_groups(omit=("split",))
    def command(name: str = typer.Option("x"), *, scoring: ScoringOptions, inputs: DataOptions) -> None:
        seen.update(name=name, scoring=scoring, inputs=inputs)

    toy = typer.Typer()
    toy.command()(command)
    toy.command("other")(lambda: None)  # a second command, so the first keeps its name
    res = runner.invoke(toy, ["command", "--padding-side", "left", "--format", "jsonl", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert seen["name"] == "x" and seen["inputs"] == DataOptions(fmt="jsonl")
    assert seen["scoring"].policy().padding_side == "left" and seen["scoring"].cache_path("o") is None
    assert "--split" not in runner.invoke(toy, ["command", "--help"]).output


def test_a_bad_policy_fails_before_a_model_is_loaded(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1, "text": "fine"}\n')
    for command, args in (("score", ["--data", data]), ("membership", ["--members", data, "--nonmembers", data]),
                          ("paired-test", ["--public", data, "--private", data])):
        res = runner.invoke(app, [command, "--model", str(tmp_path / "no-model"), *map(str, args),
                                  "--out", str(tmp_path / "run"), "--padding-side", "middle"])
        assert res.exit_code == 2 and "padding_side must be 'right' or 'left'" in res.output, res.output
