"""The command line end to end on the tiny testbed."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["--quiet", *map(str, args)])


def test_help_lists_subcommands_with_examples():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("score", "testbed", "demo"):
        assert cmd in res.output
        sub = runner.invoke(app, [cmd, "--help"])
        assert sub.exit_code == 0 and f"lmaudit {cmd}" in sub.output


def test_console_script_is_installed():
    import shutil

    script = shutil.which("lmaudit")
    assert script, "the lmaudit console script is not on PATH"
    for cmd in ([script, "--help"], [sys.executable, "-m", "lmaudit", "--help"]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0 and "score" in res.stdout


def test_score_writes_rows_tokens_and_provenance(tiny_testbed, tmp_path):
    out, info = tiny_testbed
    data = tmp_path / "in.jsonl"
    members = (out / "data" / "members.jsonl").read_text().splitlines()
    data.write_text("\n".join([members[0], json.dumps({"id": "blank", "text": ""}), members[1]]) + "\n")
    res = _run("score", "--model", out / "model", "--data", data, "--out", tmp_path / "run")
    assert res.exit_code == 1, res.output  # the blank document is an error row; the others are scored
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [json.loads(members[0])["id"], "blank", json.loads(members[1])["id"]]
    assert rows[1]["error"] and rows[1]["logprob_sum"] is None
    table = pq.read_table(tmp_path / "run" / "tokens.parquet").to_pylist()
    assert [t["id"] for t in table] == [str(r["id"]) for r in rows]
    assert len(table[0]["logprob"]) == rows[0]["n_tokens"] == len(table[0]["token_ids"])
    assert sum(table[0]["logprob"]) == pytest.approx(rows[0]["logprob_sum"], rel=1e-5)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    prov = results["provenance"]
    assert results["schema_version"] == 1 and results["complete"]
    assert prov["model"]["fingerprint"] == info["model_fingerprint"]
    assert prov["policy"]["bos"] == "prepend" and prov["policy"]["max_length"] == 256
    assert prov["data"][0]["sha256"] and prov["lmaudit_version"]
    assert results["summary"]["n_rows"] == 3 and results["summary"]["n_errors"] == 1


def test_report_flag_writes_the_runs_report_and_a_rerun_removes_the_stale_one(tiny_testbed, tmp_path):
    out, _ = tiny_testbed
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join([json.dumps({"id": "ok", "text": "A short text."}),
                               json.dumps({"id": "<b>blank</b>", "text": ""})]) + "\n")
    args = ["score", "--model", out / "model", "--data", data, "--out", tmp_path / "run"]
    res = _run(*args, "--report")
    assert res.exit_code == 1, res.output  # an error row: still a complete run, with its report
    summary = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert summary["report"] == str(tmp_path / "run" / "report.html")
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'data-kind="score"' in html and "<b>blank</b>" not in html
    # A rerun that fails before finishing leaves neither results.json nor the old report.
    data.write_text("not json\n")
    assert _run(*args).exit_code == 2
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "report.html").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"id": 1, "text": "fine"}\n{"id": 2, "text": "ok"\n', r"in\.jsonl:2"),
        (b'{"id": 1, "body": "x"}\n', r"in\.jsonl:1: field 'text' is missing"),
        (b"", "no documents"),
        (b'{"id": 1, "text": "caf\xe9"}\n', r"in\.jsonl:1: not valid UTF-8"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tiny_testbed, tmp_path, content, message):
    out, _ = tiny_testbed
    data = tmp_path / "in.jsonl"
    data.write_bytes(content)
    res = _run("score", "--model", out / "model", "--data", data, "--out", tmp_path / "run")
    assert res.exit_code == 2
    import re

    assert re.search(message, " ".join(res.output.split())), res.output
    assert not (tmp_path / "run").exists()  # failed before writing anything


def test_demo_on_the_tiny_testbed_reuses_it(tiny_testbed, tmp_path):
    import shutil

    out, info = tiny_testbed
    shutil.copytree(out, tmp_path / "demo")
    res = _run("demo", "--out", tmp_path / "demo", "--size", "tiny")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["members"]["n_documents"] == info["n_members"]
    assert summary["members"]["mean_doc_loss"] == pytest.approx(info["measured"]["members"]["mean_loss"], abs=1e-3)
    assert summary["members"]["mean_doc_loss"] < summary["nonmembers"]["mean_doc_loss"]
    # reused: testbed.json was not rewritten
    assert json.loads((tmp_path / "demo" / "testbed.json").read_text())["wall_time_s"] == info["wall_time_s"]
    top = json.loads((tmp_path / "demo" / "results" / "results.json").read_text())
    assert top["complete"] and top["kind"] == "demo"
    # Each sub-run says what it is, though one command line ("lmaudit demo") made them all.
    kinds = {d.name: json.loads((d / "results.json").read_text())["kind"]
             for d in (tmp_path / "demo" / "results").iterdir() if (d / "results.json").exists()}
    assert kinds["membership"] == "membership" and kinds["dataset_inference"] == "dataset-inference"
    assert kinds["acr"] == "acr" and kinds["extract_members"] == "extract" and kinds["copying_members"] == "copying"
    assert set(kinds.values()) == {"score", "membership", "dataset-inference", "paired-test", "extract", "copying",
                                   "knowledge", "acr", "takedown-eval", "watermark-generate", "watermark-detect",
                                   "watermark-radioactivity", "attribute", "dedup", "consent"}
    # The demo ends with its report, named in the summary: one section per run, the demo's first.
    report = tmp_path / "demo" / "results" / "report.html"
    assert summary["report"] == str(report)
    html = report.read_text()
    assert html.count('<section class="run"') == 1 + len(kinds)
    assert html.count('data-kind="demo"') == 1 and html.count('data-kind="membership"') == 1


def test_testbed_command_builds_a_tiny_testbed(tmp_path):
    res = _run("testbed", "--out", tmp_path / "tb", "--size", "tiny", "--seed", "3")
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "tb" / "testbed.json").read_text())
    assert info["seed"] == 3 and info["size"] == "tiny" and info["complete"]
    assert (tmp_path / "tb" / "model" / "model.safetensors").exists()
    bad = _run("testbed", "--out", tmp_path / "tb2", "--size", "huge")
    assert bad.exit_code == 2 and "--size" in bad.output


def test_score_reads_parquet_with_a_chosen_text_field_and_resumes_from_its_cache(tiny_testbed, tmp_path):
    import pyarrow as pa

    out, _ = tiny_testbed
    members = [json.loads(x) for x in (out / "data" / "members.jsonl").read_text().splitlines()][:5]
    pq.write_table(pa.table({"body": [m["text"] for m in members]}), tmp_path / "in.parquet")
    args = ("score", "--model", out / "model", "--data", tmp_path / "in.parquet", "--text-field", "body",
            "--out", tmp_path / "run", "--bos", "none")
    assert _run(*args).exit_code == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]  # row numbers when there is no id column
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["provenance"]["policy"]["bos"] == "none"
    assert results["files"]["samples"]["rows"] == 5
    assert results["summary"]["n_from_cache"] == 0
    env = results["provenance"]
    assert env["cwd"] and env["torch_threads"] >= 1 and env["data"][0]["abs_path"] == str((tmp_path / "in.parquet").resolve())
    from lmaudit.scoring.cache import ScoreCache

    assert len(ScoreCache(tmp_path / "run" / "cache.sqlite")) == 5  # a re-run is served from here
    again = _run(*args)
    assert again.exit_code == 0
    assert (tmp_path / "run" / "samples.jsonl").read_text() == "\n".join(json.dumps(r) for r in rows) + "\n"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["summary"]["n_from_cache"] == 5


def test_unusable_model_or_policy_fails_before_any_output(tiny_testbed, tmp_path):
    out, _ = tiny_testbed
    data = out / "data" / "members.jsonl"
    missing = _run("score", "--model", tmp_path / "nope", "--data", data, "--out", tmp_path / "r1")
    assert missing.exit_code == 2 and "no such model directory" in " ".join(missing.output.split())
    too_long = _run("score", "--model", out / "model", "--data", data, "--out", tmp_path / "r2", "--max-length", "999")
    assert too_long.exit_code == 2 and "context length 256" in " ".join(too_long.output.split())
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_demo_rebuilds_a_testbed_whose_tokenizer_changed(tiny_testbed, tmp_path):
    import shutil

    out, info = tiny_testbed
    shutil.copytree(out, tmp_path / "demo")
    tok = tmp_path / "demo" / "model" / "tokenizer.json"
    spec = json.loads(tok.read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:-50]  # a damaged tokenizer, same data
    tok.write_text(json.dumps(spec))
    res = _run("demo", "--out", tmp_path / "demo", "--size", "tiny")
    assert res.exit_code == 0, res.output
    rebuilt = json.loads((tmp_path / "demo" / "testbed.json").read_text())
    assert rebuilt["tokenizer_fingerprint"] == info["tokenizer_fingerprint"]  # rebuilt, same seed
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["members"]["mean_doc_loss"] == pytest.approx(info["measured"]["members"]["mean_loss"], abs=1e-3)


def test_a_failed_demo_leaves_no_result_marked_complete(tiny_testbed, tmp_path, monkeypatch):
    import shutil

    import lmaudit.testbed.build as build

    out, _ = tiny_testbed
    shutil.copytree(out, tmp_path / "demo")
    assert _run("demo", "--out", tmp_path / "demo", "--size", "tiny").exit_code == 0
    assert (tmp_path / "demo" / "results" / "results.json").exists()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during the build")

    monkeypatch.setattr(build, "build_testbed", killed)
    res = _run("demo", "--out", tmp_path / "demo", "--size", "tiny", "--seed", "1")  # needs a rebuild
    assert res.exit_code != 0
    assert not list((tmp_path / "demo").rglob("results.json"))  # nothing from the old run claims completeness
    assert _run("demo", "--out", tmp_path / "demo", "--size", "huge").exit_code == 2


def test_copying_reads_extracts_samples_as_they_are(tmp_path):
    """Commands chain: lmaudit extract's samples.jsonl holds `generated` and `target`, and
    copying reads both from that one file with --output-field / --reference-field."""
    rows = [{"id": "a", "n_tokens": 70, "exact_match": True, "generated": " the same words here", "target": " the same words here"},
            {"id": "b", "n_tokens": 70, "exact_match": False, "generated": " something else", "target": " the true text"}]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _run("copying", "--outputs", samples, "--output-field", "generated", "--references", samples,
               "--reference-field", "target", "--out", tmp_path / "copy")
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in (tmp_path / "copy" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["a", "b"] and out[0]["rouge_l_f1"] == 1.0 and out[1]["rouge_l_f1"] == 0.0


def test_demo_all_adds_a_forget_split_keeps_the_target_and_judges_an_unlearning_run(tiny_testbed, tmp_path):
    """--all on a finished plain testbed adds the forget split (its target untouched), unlearns it
    and evaluates the result beside the target and the retrain model; the plain demo says what
    it left out."""
    import shutil

    from lmaudit.cli.demo import DEMO_FORGET, DEMO_GOLDFISH, DEMO_UNLEARN

    out, info = tiny_testbed
    shutil.copytree(out, tmp_path / "demo")
    res = _run("demo", "--out", tmp_path / "demo", "--size", "tiny", "--all")
    assert res.exit_code == 0, res.output
    built = json.loads((tmp_path / "demo" / "testbed.json").read_text())
    assert built["forget"]["selection"]["n"] == DEMO_FORGET["tiny"] and built["forget"]["added_to_built_testbed"]
    assert built["model_fingerprint"] == info["model_fingerprint"]  # the target was kept
    summary = json.loads(res.output.strip().splitlines()[-1])
    label = f"{DEMO_UNLEARN['method']}+{DEMO_UNLEARN['retain_loss']}"
    models = summary["unlearning"]["models"]
    assert set(models) == {"target", "retrain", label} and summary["unlearning"]["n_forget"] == DEMO_FORGET["tiny"]
    assert models["retrain"]["privleak"] == 0.0  # the reference against itself
    results = tmp_path / "demo" / "results"
    assert json.loads((results / "unlearn" / "results.json").read_text())["kind"] == "unlearn"
    evaluation = json.loads((results / "unlearn_eval" / "results.json").read_text())
    assert evaluation["complete"] and evaluation["kind"] == "unlearn-eval"
    listed = json.loads((results / "results.json").read_text())["files"]
    assert {"unlearn", "unlearn_eval", "takedown"} <= set(listed)
    # The goldfish model beside the target, its figures those of testbed.json.
    assert built["goldfish"]["config"]["k"] == DEMO_GOLDFISH[0] and (tmp_path / "demo" / "goldfish").is_dir()
    g = summary["goldfish"]
    level = str(g["top_duplication"])
    for model in ("standard", "goldfish"):
        recorded = built["goldfish"]["measured"][model]["members_by_duplication"][level]["extraction"]
        assert g[model]["extraction_top"]["successes"] == recorded["successes"]
    # A plain rerun keeps the split and the goldfish model (the same target) and says what it left out.
    res = _run("demo", "--out", tmp_path / "demo", "--size", "tiny")
    assert res.exit_code == 0, res.output
    plain = json.loads(res.output.strip().splitlines()[-1])
    assert plain["unlearning"]["left_out"].startswith("unlearning and the goldfish loss")
    assert plain["goldfish"]["left_out"] == plain["unlearning"]["left_out"]
    assert plain["takedown"]["exact_match"]["memfree"]["k"] == 0
