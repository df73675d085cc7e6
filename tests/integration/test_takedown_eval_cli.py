"""``lmaudit takedown-eval`` end to end on the tiny testbed (its 16x members protected), and its
refusals of bad input before any generation."""

import json

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.data import read_records
from lmaudit.models.base import GenerationConfig
from lmaudit.models.hf import HFModel
from lmaudit.takedown.methods import TakedownConfig, TakedownModel, prepare_protected

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
    # Plain decoding does reproduce protected text here, and MemFree had to reject the model's choice.
    assert r["methods"]["none"]["efficacy"]["exact_match"]["k"] >= 1
    assert r["methods"]["memfree"]["filter_stats"]["MemFreeProcessor"]["argmax_rejected"] > 0
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
    assert eff["batch_size"] == 32 and len(eff["runs"]) == 1
    assert eff["relative_to_none"] == pytest.approx(eff["tokens_per_s"] / r["methods"]["none"]["efficiency"]["tokens_per_s"])
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
    # The same model, but the index of other documents than those protected: refused too.
    other_docs = tmp_path / "other.jsonl"
    _write(other_docs, [json.loads(x) for x in (tb / "data" / "nonmembers.jsonl").read_text().splitlines()][:5])
    refused = runner.invoke(app, ["takedown-eval", "--model", str(tb / "model"), "--protected", str(other_docs),
                                  "--unprotected", str(tb / "data" / "nonmembers.jsonl"), "--methods", "memfree",
                                  "--memfree-index", str(out / "memfree-index"), "--out", str(tmp_path / "refused2")])
    assert refused.exit_code == 2 and "another protected corpus" in " ".join(refused.output.split())


@pytest.mark.parametrize("case", ["empty", "short", "repeated_ids", "unknown_method", "system_prompt_typo",
                                  "question_without_answer"])
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
        expect = "duplicate id"
    elif case == "question_without_answer":
        questions = [json.loads(x) for x in (tb / "data" / "knowledge" / "members.jsonl").read_text().splitlines()][:5]
        del questions[2]["answer"]
        _write(tmp_path / "q.jsonl", questions)
        expect = "q.jsonl:3: field 'answer'"
    elif case == "unknown_method":
        methods, expect = "none,memfre", "did you mean 'memfree'"
    else:
        methods, expect = "sysprompt", "did you mean 'bing'"
    _write(protected, rows)
    result = runner.invoke(app, ["takedown-eval", "--model", str(tb / "model"), "--protected", str(protected),
                                 "--unprotected", str(tb / "data" / "nonmembers.jsonl"), "--methods", methods,
                                 *(["--system-prompt", "bign"] if case == "system_prompt_typo" else []),
                                 *(["--knowledge", str(tmp_path / "q.jsonl")] if case == "question_without_answer" else []),
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert expect in " ".join(result.output.split())
    assert not (tmp_path / "run" / "results.json").exists()


def test_no_combination_with_memfree_emits_a_protected_ngram(tiny_testbed):
    # The tiny testbed's model reproduces its 16x members; R-CAD, top-k noise and the system
    # prompt change the logits or the input before MemFree runs, and none may let a protected
    # 6-gram through, those that start in the prompt included. Checked by brute force.
    tb, _ = tiny_testbed
    lm = HFModel.from_pretrained(str(tb / "model"), device="cpu")
    protected = [m for m in read_records(tb / "data" / "members.jsonl") if m.meta["duplication"] == 16]
    config = TakedownConfig(topk_sigma=1.0)
    prepared = prepare_protected(lm, protected, {"memfree", "rcad"}, config)
    n = config.memfree_n
    banned = {tuple(s[i : i + n]) for s in prepared.token_ids for i in range(len(s) - n + 1)}
    prompts = [[lm.bos_token_id, *ids[:k]] for ids in prepared.token_ids[:12] for k in (5, 20)]

    def copied(model):
        out = model.generate(prompts, GenerationConfig(max_new_tokens=24, stop_at_eos=False), batch_size=8)
        hits = 0
        for prompt, new in zip(model.prompts(prompts), out):
            seq = [*prompt, *new]
            hits += sum(tuple(seq[j - n + 1 : j + 1]) in banned for j in range(len(prompt), len(seq)))
        return hits

    assert copied(TakedownModel(lm, (), prepared, config)) > 100  # plain decoding copies
    for parts in [("memfree",), ("topk", "memfree"), ("rcad", "memfree"), ("sysprompt", "rcad", "topk", "memfree")]:
        assert copied(TakedownModel(lm, parts, prepared, config)) == 0, parts
