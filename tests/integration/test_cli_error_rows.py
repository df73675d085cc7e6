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


# Each case: a command's arguments given the tiny testbed and a folder for inputs, written clean or
# with one row that cannot be processed (id "bad"); and what the command calls a row.
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


def _copying(tb, d, bad):
    rows = [{"id": "a", "generated": " the same words", "target": " the same words"},
            {"id": "b", "generated": " other words", "target": " the true words"}]
    if bad:  # as lmaudit extract writes a document too short to extract
        rows.append({"id": "bad", "n_tokens": 9, "error": "text has 9 tokens, fewer than prefix + suffix = 64"})
    samples = _write(d / "samples.jsonl", rows)
    return ["copying", "--outputs", samples, "--output-field", "generated", "--references", samples,
            "--reference-field", "target", "--bootstrap", 20]


CASES = {"score": (_score, "documents"), "extract": (_extract, "documents"), "knowledge": (_knowledge, "questions"),
         "membership": (_membership, "documents"), "dataset-inference": (_dataset_inference, "documents"),
         "acr": (_acr, "targets"), "copying": (_copying, "pairs")}


@pytest.mark.parametrize("command", CASES)
def test_one_error_row_gives_exit_status_1_a_count_and_complete_results(command, request, tmp_path):
    build, unit = CASES[command]
    tb = None if command == "copying" else request.getfixturevalue("tiny_testbed")[0]  # copying runs no model
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
        assert results["kind"] == command  # what a report reads to pick the section's renderer
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


def test_copying_carries_extracts_error_rows_and_refuses_a_row_without_its_field(tmp_path):
    """An extract row without `generated` but with an `error` becomes a copying error row that
    names the file and line and gives the upstream error, on either side; a row without the field
    and without an upstream error still fails, naming file, line and field, and leaves no results."""
    outputs = _write(tmp_path / "outputs.jsonl", [{"id": "a", "generated": " some words"},
                                                  {"id": "short", "error": "text has 9 tokens, fewer than 64"},
                                                  {"id": "c", "generated": " more words"}])
    references = _write(tmp_path / "references.jsonl", [{"id": "a", "target": " some words"},
                                                        {"id": "short", "target": " unused"},
                                                        {"id": "c", "error": "the reference failed upstream"}])
    args = ["--quiet", "copying", "--outputs", str(outputs), "--output-field", "generated", "--references",
            str(references), "--reference-field", "target", "--bootstrap", "20"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert res.exit_code == 1 and "2 of 3 pairs" in " ".join(res.stderr.split()), res.output
    rows = _rows(tmp_path / "run/samples.jsonl")
    assert [r["id"] for r in rows] == ["a", "short", "c"] and rows[0]["rouge_l_f1"] == 1.0
    assert rows[1] == {"id": "short", "error": f"upstream error ({outputs}:2): text has 9 tokens, fewer than 64"}
    assert rows[2] == {"id": "c", "error": f"upstream error ({references}:3): the reference failed upstream"}
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["n_pairs"] == 1 and results["n_errors"] == 2 and results["means"]["rouge_l_f1"] == 1.0
    assert results["provenance"]["data"][0]["n_upstream_errors"] == 1

    _write(outputs, [{"id": "a", "generated": " some words"}, {"id": "short", "n_tokens": 9},
                     {"id": "c", "generated": " more words"}])
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "refused")])
    assert res.exit_code == 2 and f"{outputs}:2: field 'generated' is missing" in " ".join(res.stderr.split())
    assert not (tmp_path / "refused/results.json").exists()


def test_acr_carries_extracts_error_rows(tiny_testbed, tmp_path):
    """acr reads extract's samples.jsonl as it is (--text-field target): a row without `target`
    but with an `error` is an ACR error row giving the upstream error, and --first N keeps the
    first N rows, recorded beside the file's own row count."""
    tb, _ = tiny_testbed
    data = _write(tmp_path / "samples.jsonl", [{"id": "a", "target": "born in"},
                                               {"id": "short", "error": "text has 9 tokens, fewer than 64"},
                                               {"id": "c", "target": "not read"},
                                               {"id": "d", "error": "not read either"}])
    res = runner.invoke(app, ["--quiet", "acr", "--model", str(tb / "model"), "--data", str(data), "--text-field",
                              "target", "--first", "2", "--steps", "2", "--candidates", "4", "--top-k", "4",
                              "--max-prompt-tokens", "1", "--out", str(tmp_path / "run")])
    assert res.exit_code == 1 and "1 of 2 targets" in " ".join(res.stderr.split()), res.output
    rows = _rows(tmp_path / "run/samples.jsonl")
    assert [r["id"] for r in rows] == ["a", "short"] and "error" not in rows[0]
    assert rows[1]["error"] == f"upstream error ({data}:2): text has 9 tokens, fewer than 64"
    entry = json.loads((tmp_path / "run/results.json").read_text())["provenance"]["data"][0]
    assert entry["n_rows"] == 4 and entry["first"] == 2
    assert (entry["n_upstream_errors"], entry["n_upstream_errors_first"]) == (2, 1)  # the file's; the selection's


def test_an_unscored_null_pool_document_is_counted_apart_from_the_test(tiny_testbed, tmp_path):
    """It is an error row (exit 1), but of the null calibration: the test's documents are all in."""
    tb = tiny_testbed[0]
    pool = _documents(tb, "nonmembers", 30)[10:] + [{"id": "bad", "text": ""}]
    args = _dataset_inference(tb, tmp_path, bad=False) + ["--null-pool", _write(tmp_path / "pool.jsonl", pool)]
    res = runner.invoke(app, ["--quiet", *map(str, args), "--out", str(tmp_path / "run")])
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert res.exit_code == 1, res.output
    assert (results["n_errors"], results["n_pool_errors"]) == (0, 1)
    assert (results["n_suspect"], results["n_validation"]) == (10, 10)
    assert "1 null-pool documents left out of the null calibration" in " ".join(res.stderr.split())
    assert "left out of the test" not in res.stderr
