"""`lmaudit unlearn` end to end on the tiny testbed: the model it writes loads, results.json records
the run, a WHP output runs under every audit command, and bad inputs leave no result."""

import json

from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.models.hf import HFModel

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["--quiet", *map(str, args)])


def _split(tb, tmp_path):
    """The first 4 members to forget, the next 12 to retain."""
    members = (tb / "data" / "members.jsonl").read_text().splitlines()
    forget, retain = tmp_path / "forget.jsonl", tmp_path / "retain.jsonl"
    forget.write_text("\n".join(members[:4]) + "\n")
    retain.write_text("\n".join(members[4:16]) + "\n")
    return forget, retain, [json.loads(m)["id"] for m in members[:4]]


def test_unlearn_writes_a_loadable_model_and_its_results(tiny_testbed, tmp_path):
    tb, info = tiny_testbed
    forget, retain, _ = _split(tb, tmp_path)
    out = tmp_path / "npo"
    res = _run("unlearn", "--model", tb / "model", "--forget", forget, "--retain", retain, "--method", "npo",
               "--retain-loss", "kl", "--lr", "1e-3", "--epochs", "2", "--lora-r", "4", "--train-data",
               tb / "data" / "members.jsonl", "--out", out)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and results["kind"] == "unlearn"
    config = results["provenance"]["config"]
    assert config["method"] == "npo" and config["retain_loss"] == "kl" and config["lora_r"] == 4
    assert [d["role"] for d in results["provenance"]["data"]] == ["forget", "retain", "training data"]
    models = results["provenance"]["models"]
    assert models["before"]["fingerprint"] == info["model_fingerprint"]
    curve = results["unlearn"]["loss_curve"]
    assert len(curve) == results["summary"]["steps"] == 2 and curve[-1]["forget"] < curve[0]["forget"]
    lm = HFModel.from_pretrained(str(out / "model"), device="cpu")  # a plain causal LM, merged
    assert lm.fingerprint() == models["after"]["fingerprint"] != models["before"]["fingerprint"]
    assert (out / "adapter" / "adapter_config.json").is_file()


def test_a_whp_output_runs_under_the_audit_commands(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    forget, _, _ = _split(tb, tmp_path)
    out = tmp_path / "whp"
    res = _run("unlearn", "--model", tb / "model", "--forget", forget, "--method", "whp", "--alpha", "2",
               "--lr", "1e-3", "--epochs", "1", "--out", out)
    assert res.exit_code == 0, res.output
    after = json.loads((out / "results.json").read_text())["provenance"]["models"]["after"]
    assert after["whp"] and (out / "model" / "lmaudit_whp.json").is_file()
    res = _run("score", "--model", out / "model", "--data", forget, "--out", tmp_path / "score")
    assert res.exit_code == 0, res.output
    scored = json.loads((tmp_path / "score" / "results.json").read_text())["provenance"]["model"]
    assert scored["fingerprint"] == after["fingerprint"] and scored["name"].startswith("whp(")
    res = _run("extract", "--model", out / "model", "--data", forget, "--out", tmp_path / "extract")
    assert res.exit_code == 0, res.output
    # ...but it is no set of weights to unlearn from: refused in one line, not a traceback.
    res = _run("unlearn", "--model", out / "model", "--forget", forget, "--out", tmp_path / "again")
    assert res.exit_code == 2 and "inference-time combination" in " ".join(res.output.split())


def test_bad_inputs_fail_without_a_result(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    forget, retain, ids = _split(tb, tmp_path)
    overlap = tmp_path / "overlap.jsonl"
    overlap.write_text(retain.read_text() + forget.read_text().splitlines()[1] + "\n")
    out = tmp_path / "bad"
    res = _run("unlearn", "--model", tb / "model", "--forget", forget, "--retain", overlap, "--retain-loss", "nll",
               "--out", out)
    assert res.exit_code == 2 and ids[1] in res.output and "the forget and retain sets share" in " ".join(res.output.split())
    assert not (out / "results.json").exists()
    # A document longer than --max-length is an error naming it, and leaves no result.
    res = _run("unlearn", "--model", tb / "model", "--forget", forget, "--max-length", "8", "--out", out)
    assert res.exit_code == 2 and ids[0] in res.output and not (out / "results.json").exists()
    # A retain set no loss reads is refused, not silently ignored.
    res = _run("unlearn", "--model", tb / "model", "--forget", forget, "--retain", retain, "--out", out)
    assert res.exit_code == 2 and "--retain-loss is none" in " ".join(res.output.split())
    assert not (out / "results.json").exists()
