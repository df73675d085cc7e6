"""``lmaudit takedown-eval`` end to end on the tiny testbed (its 16x members protected), and its
refusals of bad input before any generation."""

import json

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.data import read_records
from lmaudit.models.hf import HFModel

runner = CliRunner()


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def evaluated(tiny_testbed, tmp_path_factory):
    tb, _ = tiny_testbed
    out = tmp_path_factory.mktemp("takedown") / "run"
    result = runner.invoke(app, ["takedown-eval", "--testbed", str(tb), "--out", str(out), "--methods",
                                 "memfree,topk,sysprompt+memfree", "--timing-repeats", "1", "--knowledge-docs", "4",
                                 "--max-unprotected", "12", "--bootstrap", "50", "--report"])
    assert result.exit_code == 0, result.output
    return tb, out, json.loads((out / "results.json").read_text())


def test_memfree_stops_exact_copying_and_every_figure_is_traceable(evaluated):
    tb, out, r = evaluated
    members = read_records(tb / "data" / "members.jsonl")
    protected = {m.id for m in members if m.meta["duplication"] == 16}
    assert r["complete"] and r["n_protected_documents"] == len(protected) == r["n_protected_prompts"]
    assert list(r["methods"]) == ["none", "memfree", "topk", "sysprompt+memfree"]  # plain decoding always first
    for label in ("memfree", "sysprompt+memfree"):
        assert r["methods"][label]["efficacy"]["exact_match"]["k"] == 0
        assert r["methods"][label]["settings"]["order"][-1] == "memfree"
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    # One efficacy row per protected document and method, and its figures recomputed from the rows.
    for label, m in r["methods"].items():
        mine = [x for x in rows if x["method"] == label and x["set"] == "protected"]
        assert {x["id"] for x in mine} == protected
        assert m["efficacy"]["exact_match"]["k"] == sum(x["exact_match"] for x in mine)
        assert m["efficacy"]["rouge_l_f1"]["mean"] == pytest.approx(sum(x["rouge_l_f1"] for x in mine) / len(mine))
        assert m["efficacy"]["exact_match"]["ci"][1] > 0  # 0 of n still has an upper bound
    # The paired difference is the mean of the per-document differences.
    by = {(x["method"], x["id"]): x for x in rows if x["set"] == "unprotected"}
    diffs = [by[("memfree", i)]["rouge_l_f1"] - by[("none", i)]["rouge_l_f1"] for (m, i) in by if m == "none"]
    assert r["methods"]["memfree"]["vs_none"]["rouge_l_f1_unprotected"]["mean"] == pytest.approx(sum(diffs) / len(diffs))
    assert all(x["doc_id"] in protected for x in rows if x["set"] == "knowledge_protected")
    assert not any(x["doc_id"] in protected for x in rows if x["set"] == "knowledge_unprotected")
    eff = r["methods"]["memfree"]["efficiency"]
    assert eff["batch_size"] == 32 and eff["relative_to_none"] > 0 and r["methods"]["none"]["efficiency"]["relative_to_none"] == 1
    assert set(r["win_rate"]["average"]) == set(r["methods"])
    index = json.loads((out / "memfree-index" / "memfree_index.json").read_text())
    assert index["n"] == 6 and index["documents"] == len(protected)
    html = (out / "report.html").read_text()
    assert "Takedown evaluation" in html and "sysprompt+memfree" in html


def test_a_saved_index_is_reused_and_another_tokenizer_refused(evaluated, tmp_path, tokenizer, make_tiny):
    tb, out, r = evaluated
    reused = runner.invoke(app, ["takedown-eval", "--testbed", str(tb), "--out", str(tmp_path / "again"), "--methods",
                                 "memfree", "--memfree-index", str(out / "memfree-index"), "--timing-repeats", "1",
                                 "--knowledge-docs", "2", "--max-unprotected", "4", "--bootstrap", "20"])
    assert reused.exit_code == 0, reused.output
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["memfree_index"]["loaded_from"] == str(out / "memfree-index")
    # The same protected rows come out of the loaded index as out of the built one.
    first = {x["id"]: x["output"] for x in map(json.loads, (out / "samples.jsonl").read_text().splitlines())
             if x["method"] == "memfree" and x["set"] == "protected"}
    second = {x["id"]: x["output"] for x in map(json.loads, (tmp_path / "again" / "samples.jsonl").read_text().splitlines())
              if x["method"] == "memfree" and x["set"] == "protected"}
    assert first == second
    # Another model with another tokenizer, given the index: refused, no results.json.
    other = tmp_path / "other-model"
    HFModel(make_tiny("llama", len(tokenizer)), tokenizer, name="other").model.save_pretrained(other)
    tokenizer.save_pretrained(other)
    refused = runner.invoke(app, ["takedown-eval", "--model", str(other), "--protected", str(tb / "data" / "members.jsonl"),
                                  "--unprotected", str(tb / "data" / "nonmembers.jsonl"), "--methods", "memfree",
                                  "--memfree-index", str(out / "memfree-index"), "--out", str(tmp_path / "refused")])
    assert refused.exit_code == 2 and "tokenizer" in refused.output
    assert not (tmp_path / "refused" / "results.json").exists()


@pytest.mark.parametrize("case", ["empty", "short", "repeated_ids", "unknown_method"])
def test_bad_input_is_refused_before_any_generation(case, tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    protected = tmp_path / "protected.jsonl"
    members = [json.loads(x) for x in (tb / "data" / "members.jsonl").read_text().splitlines()]
    rows, methods, expect = members[:4], "none,memfree", None
    if case == "empty":
        rows, expect = [], "protected.jsonl: contains no documents"
    elif case == "short":
        rows = [*members[:2], {"id": "tiny", "text": "A word."}]
        expect = "protected.jsonl:3"
    elif case == "repeated_ids":
        rows = [members[0], members[1], {**members[2], "id": members[0]["id"]}]
        expect = "protected.jsonl"
    else:
        methods, expect = "none,memfre", "did you mean 'memfree'"
    _write(protected, rows)
    result = runner.invoke(app, ["takedown-eval", "--model", str(tb / "model"), "--protected", str(protected),
                                 "--unprotected", str(tb / "data" / "nonmembers.jsonl"), "--methods", methods,
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert expect in " ".join(result.output.split())
    assert not (tmp_path / "run" / "results.json").exists()
