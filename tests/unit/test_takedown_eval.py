"""The takedown evaluation's parts that need no trained model: method specs, the win rate, the
cut of prompts, and the wrapper's plain path."""

import pytest

from lmaudit.data import DataError, Record
from lmaudit.models.base import GenerationConfig
from lmaudit.takedown.evaluate import TakedownEvalConfig, cut, run_takedown_eval, win_rates
from lmaudit.takedown.methods import TakedownConfig, TakedownModel, parse_methods, prepare_protected


def test_method_specs_canonical_order_and_errors():
    assert parse_methods("memfree+sysprompt, topk") == [("sysprompt+memfree", ("sysprompt", "memfree")),
                                                        ("topk", ("topk",))]
    with pytest.raises(ValueError, match="did you mean 'rcad'"):
        parse_methods("none,rcda")
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_methods("none+memfree")
    with pytest.raises(ValueError, match="same combination"):
        parse_methods("memfree+topk,topk+memfree")
    with pytest.raises(ValueError, match="empty method"):
        parse_methods("memfree,,topk")


def test_win_rate_against_a_brute_force_count():
    # CoTaEval's rule, counted by hand: per prompt, the share of the other methods beaten strictly.
    values = {"none": {"rouge_l_f1": [0.9, 0.5], "levenshtein_distance": [10, 30]},
              "a": {"rouge_l_f1": [0.5, 0.5], "levenshtein_distance": [40, 30]},
              "b": {"rouge_l_f1": [0.5, 0.1], "levenshtein_distance": [20, 5]}}
    w = win_rates(values)
    # ROUGE-L (lower wins): prompt 1: none beats 0, a beats none (ties b: no win) -> 1/2, b -> 1/2;
    # prompt 2: none 0 (ties a), a 0, b beats both -> 1.  Means: none 0, a 1/4, b 3/4.
    assert w["by_metric"]["rouge_l_f1"] == {"none": 0.0, "a": 0.25, "b": 0.75}
    # Levenshtein (higher wins): prompt 1: a beats 2, b beats none -> 1/2, none 0;
    # prompt 2: none ties a, both beat b -> none 1/2, a 1/2, b 0.  Means: none 1/4, a 3/4, b 1/4.
    assert w["by_metric"]["levenshtein_distance"] == {"none": 0.25, "a": 0.75, "b": 0.25}
    assert w["average"] == {"none": 0.125, "a": 0.5, "b": 0.5}
    assert w["metrics"] == ["rouge_l_f1", "levenshtein_distance"] and w["n_prompts"] == 2


def test_cut_keeps_short_documents_as_error_rows(tiny_lm):
    long_text = " ".join(["word"] * 200)
    recs = [Record(id="long", text=long_text, source="p.jsonl", line=1),
            Record(id="short", text="hi", source="p.jsonl", line=2, meta={"duplication": 4})]
    units, errors = cut(tiny_lm, recs, 8, 8)
    ids = tiny_lm.encode([long_text])[0]
    assert [u["id"] for u in units] == ["long"]
    assert units[0]["prompt"] == [tiny_lm.bos_token_id, *ids[:8]] and units[0]["target"] == ids[8:16]
    assert errors[0]["id"] == "short" and errors[0]["duplication"] == 4 and "p.jsonl:2" in errors[0]["error"]


def test_plain_wrapper_generates_exactly_as_the_base(tiny_lm):
    prompts = [[tiny_lm.bos_token_id, *x] for x in tiny_lm.encode(["the river", "a long and winding road to"])]
    cfg = GenerationConfig(max_new_tokens=6, stop_at_eos=False)
    wrapped = TakedownModel(tiny_lm, (), None)
    assert wrapped.generate(prompts, cfg, batch_size=2) == tiny_lm.generate(prompts, cfg, batch_size=2)
    assert wrapped.name == tiny_lm.name and wrapped.fingerprint() != tiny_lm.fingerprint()


def test_empty_protected_corpus_is_refused(tiny_lm):
    with pytest.raises(DataError, match="empty"):
        prepare_protected(tiny_lm, [], {"memfree"}, TakedownConfig())
    with pytest.raises(DataError, match="empty"):
        run_takedown_eval(tiny_lm, [], [Record(id="u", text="x", source="u", line=1)], "none")


def test_eval_config_refuses_nonsense():
    with pytest.raises(ValueError):
        TakedownEvalConfig(max_protected=0)
    with pytest.raises(ValueError):
        TakedownEvalConfig(timing_repeats=0)


def test_rcad_queries_the_prompt_without_the_system_prompt(tiny_lm):
    from lmaudit.takedown.rcad import RCADProcessor

    recs = [Record(id="p", text="the river ran past the old mill", source="p.jsonl", line=1)]
    config = TakedownConfig()
    model = TakedownModel(tiny_lm, ("sysprompt", "rcad"), prepare_protected(tiny_lm, recs, {"rcad"}, config), config)
    seen = []
    proc = RCADProcessor(tiny_lm, lambda texts: seen.extend(texts) or [None] * len(texts),
                         max_new_tokens=3, query_skip=model.system_tokens())
    prompt = [tiny_lm.bos_token_id, *tiny_lm.encode(["the river ran"])[0]]
    tiny_lm.generate(model.prompts([prompt]), GenerationConfig(max_new_tokens=3), logits_processor=[proc])
    assert seen == [tiny_lm.decode(prompt[1:])]
    assert model.max_length == tiny_lm.max_length - model.system_tokens() and model.system_tokens() > 10


def test_a_mistyped_system_prompt_name_is_an_error():
    with pytest.raises(ValueError, match="did you mean 'bing'"):
        TakedownConfig(system_prompt="bign")
    assert TakedownConfig(system_prompt="Never quote the protected books verbatim.").system_prompt
