"""The tiny testbed's goldfish model: it changes nothing of the plain testbed, it trained on the
target's sequences with exactly the goldfish-dropped targets left out, and testbed.json's
side-by-side figures agree with a recomputation by hand."""

import hashlib
import json
import math
import shutil
import struct

import numpy as np
import pytest
import torch
import xxhash
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.stats import proportion_ci
from lmaudit.takedown.goldfish import GoldfishConfig
from lmaudit.testbed.build import SIZES, build_testbed, load_complete


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _dropped(ids, *, k=4, h=13, seed=0):
    """Brute force, straight from xxhash: which positions of ``ids`` the goldfish loss drops."""
    return [False] + [xxhash.xxh3_64_intdigest(b"".join(struct.pack("<I", t) for t in ids[max(0, i - h) : i]),
                                               seed=seed) % k == 0 for i in range(1, len(ids))]


def test_a_goldfish_model_leaves_the_target_and_every_file_identical(tiny_testbed, tiny_goldfish_testbed):
    (plain, info), (out, ginfo) = tiny_testbed, tiny_goldfish_testbed
    shared = [p for p in _files(plain) if p != "testbed.json"]
    assert "model/model.safetensors" in shared and len([p for p in shared if p.startswith("data/")]) == 12
    for name in shared:
        assert _sha256(out / name) == _sha256(plain / name), name
    assert set(_files(out)) - set(shared) == {"testbed.json", "goldfish/model.safetensors", "goldfish/config.json",
                                              "goldfish/generation_config.json", "goldfish/tokenizer.json",
                                              "goldfish/tokenizer_config.json"}
    assert set(ginfo) == set(info) | {"goldfish"} and "goldfish" not in info
    same = {k for k in info if "time" not in k and k != "environment"}
    assert {k: ginfo[k] for k in same} == {k: info[k] for k in same}
    assert not (plain / "goldfish").exists() and not (out / "goldfish-checkpoint.pt").exists()


def test_the_goldfish_model_trained_on_the_targets_sequences_minus_the_dropped_targets(tiny_goldfish_testbed):
    out, info = tiny_goldfish_testbed
    g = info["goldfish"]
    assert g["config"] == {"k": 4, "h": 13, "key": 0, "scheme": "hash"}
    members = _rows(out / "data" / "members.jsonl")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out / "goldfish")
    bos, eos, epochs = tok.bos_token_id, tok.eos_token_id, SIZES["tiny"].train.epochs
    seqs = [([bos, *tok(r["text"], add_special_tokens=False)["input_ids"], eos], r["duplication"]) for r in members]
    model = g["model"]
    assert model["sequences"] == sum(d for _, d in seqs) and model["steps"] == info["steps"]
    assert model["train_tokens"] == info["train_tokens"] == epochs * sum(len(s) * d for s, d in seqs)
    assert model["target_tokens"] == epochs * sum((len(s) - 1) * d for s, d in seqs)  # all but each BOS
    assert model["goldfish_dropped_tokens"] == epochs * sum(sum(_dropped(s)) * d for s, d in seqs)
    p = model["goldfish_dropped_tokens"] / model["target_tokens"]
    assert abs(p - 0.25) < 0.05  # templated text: not independent draws, so a loose band
    assert model["model_fingerprint"] != info["model_fingerprint"]
    assert json.loads((out / "goldfish" / "config.json").read_text()) == json.loads((out / "model" / "config.json").read_text())


def test_side_by_side_figures_match_a_recomputation_by_hand(tiny_goldfish_testbed):
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, info = tiny_goldfish_testbed
    m = info["goldfish"]["measured"]
    # The standard model is the target: its figures are the testbed's own.
    plain = info["measured"]
    for split in ("members", "nonmembers"):
        assert m["standard"][split]["mean_loss"] == plain[split]["mean_loss"]
        assert m["standard"][split]["extraction"]["rate"] == plain[split]["extraction_rate"]
    for level, fig in plain["members_by_duplication"].items():
        assert m["standard"]["members_by_duplication"][level]["extraction"]["rate"] == fig["extraction_rate"]

    members, nonmembers = _rows(out / "data" / "members.jsonl"), _rows(out / "data" / "nonmembers.jsonl")
    tok = AutoTokenizer.from_pretrained(out / "model")
    for name, folder in (("standard", "model"), ("goldfish", "goldfish")):
        lm = AutoModelForCausalLM.from_pretrained(out / folder).eval()
        losses, kept_losses = {}, {}
        for r in members + nonmembers:
            ids = tok(r["text"], add_special_tokens=False)["input_ids"]
            seq = [tok.bos_token_id, *ids]
            with torch.no_grad():
                logp = torch.log_softmax(lm(torch.tensor([seq])).logits[0].float(), -1)
            lp = np.array([logp[t - 1, seq[t]].item() for t in range(1, len(seq))])
            drop = np.array(_dropped([*seq, tok.eos_token_id])[1 : len(seq)])
            losses[r["id"]], kept_losses[r["id"]] = -lp.mean(), -lp[~drop].mean()
        fig = m[name]
        for split, rows in (("members", members), ("nonmembers", nonmembers)):
            assert fig[split]["mean_loss"] == pytest.approx(np.mean([losses[r["id"]] for r in rows]), abs=2e-4)
            assert fig[split]["mean_loss_kept"] == pytest.approx(np.mean([kept_losses[r["id"]] for r in rows]), abs=2e-4)
            e = fig[split]["extraction"]
            assert e["rate"] == round(e["successes"] / len(rows), 4)
            assert e["ci"] == [round(v, 4) for v in proportion_ci(e["successes"], len(rows))]
            assert e["ci"][0] <= e["rate"] <= e["ci"][1] and 0 <= fig[split]["rouge_l_f1_mean"] <= 1
        labels = [1] * len(members) + [0] * len(nonmembers)
        for field, values in (("loss_attack", losses), ("kept_loss_attack", kept_losses)):
            want = roc_auc_score(labels, [-values[r["id"]] for r in members + nonmembers])
            assert fig[field]["auc"] == pytest.approx(want, abs=2e-3)
            assert fig[field]["ci"][0] <= fig[field]["auc"] <= fig[field]["ci"][1]
            sixteen = [r for r in members if r["duplication"] == 16]
            want16 = roc_auc_score([1] * len(sixteen) + [0] * len(nonmembers),
                                   [-values[r["id"]] for r in sixteen + nonmembers])
            assert fig[field]["by_duplication"]["16"]["auc"] == pytest.approx(want16, abs=2e-3)
    # What the goldfish loss is for: the goldfish model never saw 1/4 of the targets, so it is
    # less sure of its members' text; it still learnt them (kept-token loss far below non-members').
    s, g = m["standard"]["members_by_duplication"]["16"], m["goldfish"]["members_by_duplication"]["16"]
    assert g["extraction"]["rate"] <= s["extraction"]["rate"] and g["mean_loss"] > s["mean_loss"]
    assert m["goldfish"]["members"]["mean_loss_kept"] < m["goldfish"]["nonmembers"]["mean_loss_kept"] - 0.5


def test_load_complete_matches_the_goldfish_configuration(tiny_testbed, tiny_goldfish_testbed):
    (plain, _), (out, _) = tiny_testbed, tiny_goldfish_testbed
    assert load_complete(out, seed=0, size="tiny", goldfish=(4, 13)) is not None
    assert load_complete(out, seed=0, size="tiny", goldfish=GoldfishConfig(k=4, h=13)) is not None
    assert load_complete(out, seed=0, size="tiny") is not None  # the target and plain files are the same
    assert load_complete(out, seed=0, size="tiny", goldfish=(4, 12)) is None
    assert load_complete(plain, seed=0, size="tiny", goldfish=(4, 13)) is None


@pytest.mark.parametrize("value,message", [("1", "k must be at least 2"), ("4,0", "h must be at least 1"),
                                           ("4,x", "--goldfish takes K or K,H"), ("4,13,2", "--goldfish takes K or K,H"),
                                           ("\u00b2", "--goldfish takes K or K,H"), (str(2**64), "at most 2**32")])
def test_goldfish_option_is_validated(tmp_path, value, message):
    res = CliRunner().invoke(app, ["testbed", "--out", str(tmp_path / "tb"), "--size", "tiny", "--goldfish", value])
    assert res.exit_code == 2 and message in " ".join(res.output.split())
    assert not (tmp_path / "tb").exists()
    with pytest.raises(ValueError):
        build_testbed(tmp_path / "tb", size="tiny", goldfish=(1, 13))
    assert not (tmp_path / "tb").exists()  # refused before anything is written


@pytest.mark.slow
def test_a_goldfish_model_is_added_to_a_built_testbed_without_training_its_target_again(
        tiny_testbed, tiny_goldfish_testbed, tmp_path):
    (plain, _), (out, info) = tiny_testbed, tiny_goldfish_testbed
    shutil.copytree(plain, tmp_path / "tb")
    target = (tmp_path / "tb" / "model" / "model.safetensors").stat().st_mtime_ns
    steps = []
    added = build_testbed(tmp_path / "tb", seed=0, size="tiny", goldfish=(4, 13), on_step=lambda s, t: steps.append(t))
    assert (tmp_path / "tb" / "model" / "model.safetensors").stat().st_mtime_ns == target  # not written again
    assert set(steps) == {info["goldfish"]["model"]["steps"]}  # only the goldfish model was trained
    assert added["goldfish"].pop("added_to_built_testbed") is True and added["goldfish"].pop("wall_time_s") > 0
    assert _files(tmp_path / "tb") == _files(out)
    for name in _files(out):  # the same as a build with the goldfish model from nothing
        if name != "testbed.json":
            assert _sha256(tmp_path / "tb" / name) == _sha256(out / name), name
    assert added["goldfish"]["measured"] == info["goldfish"]["measured"]
    assert {k: v for k, v in added["goldfish"]["model"].items() if "time" not in k} == \
        {k: v for k, v in info["goldfish"]["model"].items() if "time" not in k}
    assert load_complete(tmp_path / "tb", seed=0, size="tiny", goldfish=(4, 13)) is not None


@pytest.mark.slow
def test_adding_a_goldfish_model_keeps_a_forget_split(tiny_forget_testbed, tiny_goldfish_testbed, tmp_path):
    (forget, finfo), (out, ginfo) = tiny_forget_testbed, tiny_goldfish_testbed
    shutil.copytree(forget, tmp_path / "tb")
    res = CliRunner().invoke(app, ["testbed", "--out", str(tmp_path / "tb"), "--size", "tiny", "--goldfish", "4,13"])
    assert res.exit_code == 0, res.output
    line = " ".join(res.output.split())
    assert "added a goldfish model" in line and "goldfish k=4 h=13 (standard → goldfish): extraction of 16x members" in line
    info = json.loads((tmp_path / "tb" / "testbed.json").read_text())
    assert info["forget"] == finfo["forget"] and info["data"] == finfo["data"]
    for name in ("model/model.safetensors", "retrain/model.safetensors"):
        assert _sha256(tmp_path / "tb" / name) == _sha256(forget / name)
    assert _sha256(tmp_path / "tb" / "goldfish" / "model.safetensors") == _sha256(out / "goldfish" / "model.safetensors")
    assert info["goldfish"]["measured"] == ginfo["goldfish"]["measured"]
    assert load_complete(tmp_path / "tb", seed=0, size="tiny", forget=8, goldfish=(4, 13)) is not None
    # The same command again has nothing to add: the split, the target and the goldfish model stay.
    before = {name: _sha256(tmp_path / "tb" / name) for name in ("model/model.safetensors", "retrain/model.safetensors",
                                                                  "goldfish/model.safetensors", "testbed.json")}
    res = CliRunner().invoke(app, ["testbed", "--out", str(tmp_path / "tb"), "--size", "tiny", "--goldfish", "4,13"])
    assert res.exit_code == 0, res.output
    assert {name: _sha256(tmp_path / "tb" / name) for name in before} == before


@pytest.mark.slow
def test_replacing_the_goldfish_model_never_leaves_the_old_record_beside_another_model(tiny_goldfish_testbed, tmp_path,
                                                                                     monkeypatch):
    import lmaudit.testbed.build as build

    out, info = tiny_goldfish_testbed
    shutil.copytree(out, tmp_path / "tb")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # killed while training the new goldfish model

    monkeypatch.setattr(build, "_train_retrain", killed)
    with pytest.raises(KeyboardInterrupt):
        build_testbed(tmp_path / "tb", seed=0, size="tiny", goldfish=(2, 13))
    left = json.loads((tmp_path / "tb" / "testbed.json").read_text())
    # A complete testbed without a goldfish model: neither the old record nor the new one.
    assert left["complete"] and "goldfish" not in left and left["model_fingerprint"] == info["model_fingerprint"]
    assert load_complete(tmp_path / "tb", seed=0, size="tiny", goldfish=(4, 13)) is None
    assert load_complete(tmp_path / "tb", seed=0, size="tiny") is not None


@pytest.mark.slow
def test_a_build_killed_while_training_the_goldfish_model_resumes_it(tiny_goldfish_testbed, tmp_path):
    out, info = tiny_goldfish_testbed
    target_steps = info["steps"]

    class Killed(Exception):
        pass

    def kill(step, total):
        assert total == 2 * target_steps  # one count over both trainings
        if step == target_steps + 40:
            raise Killed

    with pytest.raises(Killed):
        build_testbed(tmp_path, seed=0, size="tiny", goldfish=(4, 13), on_step=kill, checkpoint_every=5)
    assert (tmp_path / "goldfish-checkpoint.pt").exists()
    again = build_testbed(tmp_path, seed=0, size="tiny", goldfish=(4, 13), checkpoint_every=5)
    assert again["goldfish"]["model"]["resumed_from_step"] == 40
    for name in ("model", "goldfish"):
        assert _sha256(tmp_path / name / "model.safetensors") == _sha256(out / name / "model.safetensors")
    assert {k: v for k, v in again["goldfish"]["model"].items() if "time" not in k and k != "resumed_from_step"} == \
        {k: v for k, v in info["goldfish"]["model"].items() if "time" not in k and k != "resumed_from_step"}
    assert not (tmp_path / "goldfish-checkpoint.pt").exists()
    assert math.isfinite(again["goldfish"]["model"]["final_train_loss"])


def test_goldfish_info_reads_the_record_or_says_how_to_add_one(tiny_testbed, tiny_goldfish_testbed):
    from lmaudit.testbed.load import goldfish_info

    (plain, _), (out, info) = tiny_testbed, tiny_goldfish_testbed
    assert goldfish_info(out) == info["goldfish"] and (out / goldfish_info(out)["model"]["path"]).is_dir()
    with pytest.raises(ValueError, match=r"has no goldfish model.*--goldfish 4,13"):
        goldfish_info(plain)
