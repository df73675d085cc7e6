"""A re-run of any command that fails part-way, into a folder holding a complete earlier run,
leaves no results.json claiming to be complete (and no ``*.partial`` file).

Each command first runs to completion on a tiny random model; the re-run then fails inside
its computation, after some of the work (the model raises on its second call, or a later
step raises).
"""

import json

import pytest

from lmaudit.data import DataError, Record
from lmaudit.models.hf import HFModel


@pytest.fixture
def lm(tokenizer, make_tiny):
    return HFModel(make_tiny("gpt2", len(tokenizer)), tokenizer, name="tiny-gpt2")


def _recs(texts, tag, **meta):
    return [Record(id=f"{tag}{i}", text=t, source=f"{tag}.jsonl", line=i + 1, meta=dict(meta))
            for i, t in enumerate(texts)]


def _fail_on_second_call(monkeypatch, obj, name):
    """Replace ``obj.name`` so that its first call works and the second raises."""
    original = getattr(obj, name)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            raise RuntimeError("injected failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapped)


def _score(lm, texts, out, fail):
    from lmaudit.scoring.run import score_to_dir

    if fail:
        _fail_on_second_call(fail, lm, "token_stats")
    return score_to_dir(lm, _recs(texts[:6], "d"), out, batch_size=2)


def _membership(lm, texts, out, fail):
    from lmaudit.membership.run import MembershipConfig, membership_to_dir

    if fail:
        _fail_on_second_call(fail, lm, "token_stats")
    return membership_to_dir(lm, _recs(texts[:6], "m"), _recs(texts[6:12], "n"), out, batch_size=4,
                             config=MembershipConfig(attacks="loss,min_k@0.2", n_bootstrap=20, blind_baselines=False))


def _dataset_inference(lm, texts, out, fail):
    from lmaudit.membership.dataset_inference import DatasetInferenceConfig, dataset_inference_to_dir

    if fail:
        _fail_on_second_call(fail, lm, "token_stats")
    return dataset_inference_to_dir(lm, _recs(texts[:10], "s"), _recs(texts[10:20], "v"), out, batch_size=8,
                                    config=DatasetInferenceConfig(attacks="loss,min_k@0.2", null_trials=2))


def _paired(lm, texts, out, fail):
    from lmaudit.membership.paired import paired_test_to_dir

    if fail:
        _fail_on_second_call(fail, lm, "token_stats")
    public = [Record(id=i, text=t, source="pub.jsonl", line=i + 1) for i, t in enumerate(texts[:4])]
    private = [Record(id=i, text=t, source="priv.jsonl", line=i + 1) for i, t in enumerate(texts[4:8])]
    return paired_test_to_dir(lm, public, [private], out, batch_size=2)


def _extraction(lm, texts, out, fail):
    from lmaudit.memorization.extraction import ExtractionConfig, extraction_to_dir

    if fail:
        _fail_on_second_call(fail, lm, "token_stats")  # ranking the sampled continuations, in batches
    return extraction_to_dir(lm, _recs(texts[:4], "d"), out, batch_size=2,
                             config=ExtractionConfig(prefix_tokens=4, suffix_tokens=3, samples=2, n_bootstrap=10))


def _copying(lm, texts, out, fail):
    from lmaudit.memorization import copying_run

    if fail:
        _fail_on_second_call(fail, copying_run, "copying_metrics")
    return copying_run.copying_to_dir(_recs(texts[:3], "x"), _recs(texts[1:4], "x"), out)


def _knowledge(lm, texts, out, fail):
    from lmaudit.memorization import knowledge

    if fail:
        _fail_on_second_call(fail, knowledge, "answer_metrics")  # scoring the second answer
    items = [Record(id=i, text=f"Where did person {i} live", source="qa.jsonl", line=i + 1, meta={"answer": f"Town {i}"})
             for i in range(5)]
    return knowledge.knowledge_to_dir(lm, items, out, batch_size=2,
                                      config=knowledge.KnowledgeConfig(n_shots=1, max_new_tokens=2, n_bootstrap=10))


def _acr(lm, texts, out, fail):
    from lmaudit.memorization import acr

    if fail:
        _fail_on_second_call(fail, acr.LengthSearch, "run")
    targets = [Record(id=i, text=" ".join(t.split()[:3]), source="t.jsonl", line=i + 1) for i, t in enumerate(texts[:2])]
    return acr.acr_to_dir(lm, targets, out, config=acr.ACRConfig(steps=2, n_candidates=4, top_k=4, max_prompt_tokens=1))


COMMANDS = {"score": _score, "membership": _membership, "dataset-inference": _dataset_inference,
            "paired-test": _paired, "extract": _extraction, "copying": _copying, "knowledge": _knowledge, "acr": _acr}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_failed_rerun_leaves_nothing_complete(command, lm, corpus_texts, tmp_path, monkeypatch):
    run = COMMANDS[command]
    written = run(lm, corpus_texts, tmp_path, None)
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True
    assert written["files"]["samples"]["rows"] > 0
    assert {"seed", "data", "git_commit"} <= set(written["provenance"])  # every command records these
    with monkeypatch.context() as fail, pytest.raises(RuntimeError, match="injected failure"):
        run(lm, corpus_texts, tmp_path, fail)
    assert not (tmp_path / "results.json").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_a_copying_rerun_with_unpaired_ids_leaves_nothing_complete(tmp_path, corpus_texts):
    from lmaudit.memorization.copying_run import copying_to_dir

    copying_to_dir(_recs(corpus_texts[:3], "x"), _recs(corpus_texts[3:6], "x"), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True
    with pytest.raises(DataError):
        copying_to_dir(_recs(corpus_texts[:3], "x"), _recs(corpus_texts[3:5], "x"), tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_provenance_is_what_the_run_resolved(lm, corpus_texts, tmp_path):
    from lmaudit.membership.run import MembershipConfig, membership_to_dir, run_membership
    from lmaudit.models.base import ScoringPolicy

    config = MembershipConfig(attacks="loss", n_bootstrap=10, blind_baselines=False, seed=5)
    args = (lm, _recs(corpus_texts[:3], "m"), _recs(corpus_texts[3:6], "n"))
    result = run_membership(*args, config=config, policy=ScoringPolicy(max_length=64), batch_size=3)
    assert result.provenance["policy"] == ScoringPolicy(max_length=64).resolved(lm.max_length).to_dict()
    assert result.provenance["policy"]["stride"] == 32  # resolved, not the None that was passed
    assert (result.provenance["batch_size"], result.provenance["seed"]) == (3, 5)
    assert result.provenance["config"]["attacks"] == "loss"
    written = membership_to_dir(*args, tmp_path, config=config, policy=ScoringPolicy(max_length=64), batch_size=3,
                                data=[{"path": "m.jsonl"}])
    assert written["provenance"] == {**written["provenance"], **result.provenance, "data": [{"path": "m.jsonl"}]}
