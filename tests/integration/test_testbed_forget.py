"""The tiny testbed's forget split: F and R partition the members, the retrain model saw exactly
R, and the split changes nothing of the plain testbed."""

import hashlib
import json
import math
from collections import Counter

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.models.hf import HFModel
from lmaudit.testbed.build import SIZES, build_testbed, load_complete
from lmaudit.testbed.load import load_forget, load_knowledge, load_splits


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_forget_split_leaves_the_target_and_every_shared_file_identical(tiny_testbed, tiny_forget_testbed):
    (plain, info), (out, finfo) = tiny_testbed, tiny_forget_testbed
    shared = sorted(p.relative_to(plain).as_posix() for p in (plain / "data").rglob("*.jsonl"))
    assert len(shared) == 12
    for name in ["model/model.safetensors", "model/tokenizer.json", *shared]:
        assert _sha256(out / name) == _sha256(plain / name), name
    assert finfo["model_fingerprint"] == info["model_fingerprint"] and finfo["measured"] == info["measured"]
    # testbed.json: the same keys plus "forget"; "data" the same entries plus the split's files.
    assert set(finfo) == set(info) | {"forget"} and "forget" not in info
    assert {k: finfo["data"][k] for k in info["data"]} == info["data"]
    assert set(finfo["data"]) - set(info["data"]) == {"forget", "retain", "knowledge/forget", "knowledge/retain",
                                                      "knowledge/holdout"}
    assert not (plain / "retrain").exists() and not (out / "retrain-checkpoint.pt").exists()


def test_forget_and_retain_partition_the_members_stratified(tiny_forget_testbed):
    out, info = tiny_forget_testbed
    members = _rows(out / "data" / "members.jsonl")
    forget, retain = _rows(out / "data" / "forget.jsonl"), _rows(out / "data" / "retain.jsonl")
    assert len(forget) == 8 and not {r["id"] for r in forget} & {r["id"] for r in retain}
    assert sorted(forget + retain, key=lambda r: r["id"]) == members  # same rows, same keys
    assert Counter(r["duplication"] for r in forget) == {1: 4, 16: 4}
    assert info["forget"]["selection"] == {"n": 8, "seed": 0, "field": "duplication",
                                           "levels": {"1": {"members": 32, "forget": 4},
                                                      "16": {"members": 32, "forget": 4}}}
    split = load_forget(out)
    assert [r.id for r in split["forget"]] == [r["id"] for r in forget]
    assert [r.id for r in split["holdout"]] == [r.id for r in load_splits(out)[1]]
    assert split["target_path"] == out / "model" and split["retrain_path"] == out / "retrain"


def test_forget_knowledge_files_carry_truth_ratio_answers(tiny_forget_testbed):
    out, _ = tiny_forget_testbed
    split, plain = load_forget(out), load_knowledge(out)
    by_id = {q.id: q for q in plain["members"] + plain["nonmembers"]}
    for name, docs in (("forget", split["forget"]), ("retain", split["retain"]), ("holdout", split["holdout"])):
        questions = split["knowledge"][name]
        assert len(questions) == 9 * len(docs) and {q.meta["doc_id"] for q in questions} == {d.id for d in docs}
        for q in questions:
            same = by_id[q.id]
            assert q.text == same.text and {k: q.meta[k] for k in same.meta} == same.meta  # members.jsonl's keys ...
            assert set(q.meta) - set(same.meta) == {"paraphrased_answer", "perturbed_answers"}  # ... plus two
            assert q.meta["answer"] in q.meta["paraphrased_answer"] and len(set(q.meta["perturbed_answers"])) == 3
        assert all("duplication" in q.meta for q in questions) == (name != "holdout")
    assert [q.id for q in split["knowledge"]["shots"]] == [q.id for q in plain["shots"]]


def test_the_retrain_model_saw_exactly_members_minus_forget(tiny_forget_testbed):
    out, info = tiny_forget_testbed
    cfg = SIZES["tiny"].train
    retain = _rows(out / "data" / "retain.jsonl")
    retrain = info["forget"]["retrain"]
    copies = sum(r["duplication"] for r in retain)
    assert retrain["sequences"] == copies
    assert retrain["steps"] == math.ceil(copies / cfg.batch_size) * cfg.epochs
    # Every token trained on, counted by hand: each retained copy with its BOS and EOS.
    lm = HFModel.from_pretrained(str(out / "retrain"), device="cpu")
    lengths = [len(x) + 2 for x in lm.encode([r["text"] for r in retain])]
    assert retrain["train_tokens"] == cfg.epochs * sum(n * r["duplication"] for n, r in zip(lengths, retain))
    assert lm.fingerprint() == retrain["model_fingerprint"] != info["model_fingerprint"]
    target, other = load_file(out / "model" / "model.safetensors"), load_file(out / "retrain" / "model.safetensors")
    assert target.keys() == other.keys() and all(target[k].shape == other[k].shape for k in target)
    assert any(not (target[k] == other[k]).all() for k in target)
    assert json.loads((out / "retrain" / "config.json").read_text()) == json.loads((out / "model" / "config.json").read_text())


def test_the_retrain_model_treats_forget_like_holdout(tiny_forget_testbed):
    _, info = tiny_forget_testbed
    m = info["forget"]["measured"]
    target, retrain = m["target"], m["retrain"]
    for model in (target, retrain):
        assert {model[s]["n"] for s in ("forget", "retain", "holdout")} <= {8, 56, 64}
    # The target memorised F (loss far below H); the retrain model never saw F: its F loss is
    # near its H loss, and far above the target's.
    assert target["holdout"]["mean_loss"] - target["forget"]["mean_loss"] > 0.8
    assert abs(retrain["forget"]["mean_loss"] - retrain["holdout"]["mean_loss"]) < 0.5
    assert retrain["forget"]["mean_loss"] > target["forget"]["mean_loss"] + 0.8
    assert retrain["retain"]["mean_loss"] < retrain["forget"]["mean_loss"] - 0.5  # it did learn R
    assert target["forget_by_duplication"]["16"]["mean_loss"] < target["forget_by_duplication"]["1"]["mean_loss"]
    assert retrain["forget"]["extraction_rate"] == retrain["holdout"]["extraction_rate"] == 0.0
    assert m["knowledge_documents"]["forget"] == {"n": 8, "of": 8}
    assert target["forget"]["knowledge"]["n"] + target["forget"]["knowledge"]["n_errors"] == 72


def test_load_complete_matches_the_forget_split(tiny_testbed, tiny_forget_testbed):
    (plain, _), (out, _) = tiny_testbed, tiny_forget_testbed
    assert load_complete(out, seed=0, size="tiny", forget=8) is not None
    assert load_complete(out, seed=0, size="tiny") is not None  # the target and plain files are the same
    assert load_complete(out, seed=0, size="tiny", forget=7) is None
    assert load_complete(plain, seed=0, size="tiny", forget=8) is None


def test_load_forget_on_a_plain_testbed_says_how_to_build_one(tiny_testbed):
    out, _ = tiny_testbed
    with pytest.raises(ValueError, match=r"testbed\.json has no forget split.*--forget N"):
        load_forget(out)


@pytest.mark.parametrize("n", ["0", "64", "-3"])
def test_forget_option_is_validated(tmp_path, n):
    res = CliRunner().invoke(app, ["testbed", "--out", str(tmp_path / "tb"), "--size", "tiny", "--forget", n])
    assert res.exit_code == 2
    assert "--forget must be at least 1 and less than the 64 members" in " ".join(res.output.split())
    assert not (tmp_path / "tb").exists()
    with pytest.raises(ValueError, match="1 <= N < 64"):
        build_testbed(tmp_path / "tb", size="tiny", forget=int(n))
    assert not (tmp_path / "tb").exists()  # refused before anything is written


def test_a_build_killed_while_training_the_retrain_model_resumes_it(tiny_forget_testbed, tmp_path):
    out, info = tiny_forget_testbed
    target_steps = info["steps"]

    class Killed(Exception):
        pass

    def kill(step, total):
        if step == target_steps + 40:  # one count over both trainings: step 40 of the retrain model
            raise Killed

    with pytest.raises(Killed):
        build_testbed(tmp_path, seed=0, size="tiny", forget=8, on_step=kill, checkpoint_every=5)
    assert (tmp_path / "retrain-checkpoint.pt").exists()
    again = build_testbed(tmp_path, seed=0, size="tiny", forget=8, checkpoint_every=5)
    assert again["forget"]["retrain"]["resumed_from_step"] == 40
    for name in ("model", "retrain"):
        assert _sha256(tmp_path / name / "model.safetensors") == _sha256(out / name / "model.safetensors")
    assert again["forget"]["measured"] == info["forget"]["measured"]
    assert not (tmp_path / "retrain-checkpoint.pt").exists()


def test_a_forget_split_is_added_to_a_built_testbed_without_training_its_target_again(
        tiny_testbed, tiny_forget_testbed, tmp_path):
    import shutil

    (plain, _), (out, info) = tiny_testbed, tiny_forget_testbed
    shutil.copytree(plain, tmp_path / "tb")
    target = (tmp_path / "tb" / "model" / "model.safetensors").stat().st_mtime_ns
    steps = []
    added = build_testbed(tmp_path / "tb", seed=0, size="tiny", forget=8, on_step=lambda s, t: steps.append(t))
    assert (tmp_path / "tb" / "model" / "model.safetensors").stat().st_mtime_ns == target  # not written again
    assert set(steps) == {info["forget"]["retrain"]["steps"]}  # only the retrain model was trained
    assert added["forget"].pop("added_to_built_testbed") is True and added["forget"].pop("wall_time_s") > 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "tb").as_posix() for p in (tmp_path / "tb").rglob("*") if p.is_file())
    for name in files:  # the same as a build with the split from nothing
        if name != "testbed.json":
            assert _sha256(tmp_path / "tb" / name) == _sha256(out / name), name
    assert added["data"] == info["data"] and added["forget"]["measured"] == info["forget"]["measured"]
    assert {k: v for k, v in added["forget"]["retrain"].items() if "time" not in k} == \
        {k: v for k, v in info["forget"]["retrain"].items() if "time" not in k}
    assert load_complete(tmp_path / "tb", seed=0, size="tiny", forget=8) is not None
