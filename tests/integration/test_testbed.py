"""The tiny testbed: files, fields, ground truth, variants, reference, shift and determinism."""

import json
from dataclasses import replace

import pytest

from lmaudit.data import read_records
from lmaudit.models.hf import HFModel
from lmaudit.testbed.build import SHIFTS, SIZES, build_testbed, load_complete
from lmaudit.testbed.load import load_reference, load_splits, load_variants


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_and_fields(tiny_testbed):
    out, info = tiny_testbed
    members, nonmembers = _rows(out / "data" / "members.jsonl"), _rows(out / "data" / "nonmembers.jsonl")
    cfg = SIZES["tiny"]
    assert len(members) == cfg.n_members and len(nonmembers) == cfg.n_nonmembers
    assert not {r["id"] for r in members} & {r["id"] for r in nonmembers}
    assert not {r["text"] for r in members} & {r["text"] for r in nonmembers}
    for r in members + nonmembers:
        assert r["facts"]["name"] in r["text"]  # the structured facts are the ones in the text
        assert str(r["facts"]["birth_year"]) in r["text"]
    assert sorted({r["duplication"] for r in members}) == sorted(c for c, _ in cfg.duplication)
    assert all("duplication" not in r for r in nonmembers)
    saved = json.loads((out / "testbed.json").read_text())
    assert saved == info and saved["complete"] and saved["seed"] == 0
    for key in ("final_train_loss", "wall_time_s", "epochs", "environment", "measured", "model_fingerprint"):
        assert key in saved


def test_model_loads_through_the_hugging_face_path_and_documents_are_long_enough(tiny_testbed):
    out, info = tiny_testbed
    lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    assert lm.fingerprint() == info["model_fingerprint"]
    texts = [r.text for r in read_records(out / "data" / "members.jsonl") + read_records(out / "data" / "nonmembers.jsonl")]
    assert min(len(ids) for ids in lm.encode(texts)) >= SIZES["tiny"].min_tokens


def test_the_model_learned_its_members(tiny_testbed):
    _, info = tiny_testbed
    m = info["measured"]
    assert m["members"]["mean_loss"] < m["nonmembers"]["mean_loss"] - 0.5
    dup = m["members_by_duplication"]
    assert dup["16"]["mean_loss"] < dup["1"]["mean_loss"]  # more copies, more memorization
    assert m["nonmembers"]["extraction_rate"] == 0.0


@pytest.mark.slow
def test_deterministic_for_a_seed(tiny_testbed, tmp_path):
    out, info = tiny_testbed
    again = build_testbed(tmp_path, seed=0, size="tiny")
    for name in ("members", "nonmembers"):
        assert (tmp_path / "data" / f"{name}.jsonl").read_bytes() == (out / "data" / f"{name}.jsonl").read_bytes()
    assert again["data"] == info["data"]  # variants and reference too (paths are relative)
    assert again["model_fingerprint"] == info["model_fingerprint"]
    assert again["measured"] == info["measured"]


def test_reuse_check_rejects_changed_data(tiny_testbed, tmp_path):
    out, _ = tiny_testbed
    assert load_complete(out, seed=0, size="tiny") is not None
    assert load_complete(out, seed=1, size="tiny") is None
    assert load_complete(out, seed=0, size="default") is None
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert load_complete(copy, seed=0, size="tiny") is not None  # a moved testbed is still complete
    for name in ("members.jsonl", "variants/nonmembers.v2.jsonl", "reference.jsonl"):
        shutil.copy(out / "data" / name, copy / "data" / name)
        with open(copy / "data" / name, "a") as f:
            f.write("\n")
        assert load_complete(copy, seed=0, size="tiny") is None


def test_short_documents_are_lengthened_alike(tmp_path):
    from dataclasses import replace

    # The tiny corpus has 115-165 tokens per document: a floor of 150 forces the lengthening step.
    cfg = replace(SIZES["tiny"], min_tokens=150, n_members=16, n_nonmembers=16, n_tokenizer_docs=64)
    build_testbed(tmp_path, seed=0, config=cfg)
    lm = HFModel.from_pretrained(str(tmp_path / "model"), device="cpu")
    members = [r.text for r in read_records(tmp_path / "data" / "members.jsonl")]
    nonmembers = [r.text for r in read_records(tmp_path / "data" / "nonmembers.jsonl")]
    assert min(len(ids) for ids in lm.encode(members + nonmembers)) >= 150
    lengthened = lambda texts: sum("letters is kept" in t or "spoke of a childhood" in t for t in texts)
    assert lengthened(members) > 0 and lengthened(nonmembers) > 0
    # Variants and the reference sample are lengthened the same way.
    others = [r.text for split in load_variants(tmp_path).values() for v in split for r in v]
    others += [r.text for r in load_reference(tmp_path)]
    assert min(len(ids) for ids in lm.encode(others)) >= 150 and lengthened(others) > 0


def test_variants_say_the_same_in_other_words(tiny_testbed):
    out, info = tiny_testbed
    cfg = SIZES["tiny"]
    lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    for split, published in zip(("members", "nonmembers"), load_splits(out)):
        versions = load_variants(out)[split]
        assert len(versions) == cfg.n_variants
        for j, records in enumerate(versions, 1):
            assert [r.id for r in records] == [r.id for r in published]  # same ids, same order
            assert all(r.meta == {"variant": j} for r in records)
            assert f"variants/{split}.v{j}" in info["data"]
            for r, original in zip(records, published):
                assert str(original.meta["facts"]["birth_year"]) in r.text
                assert original.meta["facts"]["name"] in r.text
            assert min(len(ids) for ids in lm.encode([r.text for r in records])) >= cfg.min_tokens
        for i, original in enumerate(published):
            texts = [original.text, *(records[i].text for records in versions)]
            assert len(set(texts)) == len(texts)  # every version differs from variant 0 and the others


def test_reference_is_a_sample_of_neither_split(tiny_testbed):
    out, info = tiny_testbed
    reference = load_reference(out)
    assert 0.9 * SIZES["tiny"].n_reference_docs <= len(reference) <= SIZES["tiny"].n_reference_docs
    assert [r.id for r in reference] == [f"ref-{i:05d}" for i in range(len(reference))]
    members, nonmembers = load_splits(out)
    assert not {r.text for r in reference} & {r.text for r in members + nonmembers}
    assert info["data"]["reference"]["path"] == "data/reference.jsonl"


def test_new_streams_leave_splits_and_tokenizer_unchanged(tiny_testbed, tmp_path):
    out, info = tiny_testbed
    tiny = SIZES["tiny"]
    # One epoch: training affects neither the data files nor the tokenizer, all this build compares.
    cfg = replace(tiny, n_variants=1, n_reference_docs=16, train=replace(tiny.train, epochs=1))
    other = build_testbed(tmp_path, seed=0, config=cfg)
    for name in ("members", "nonmembers", "variants/members.v1", "variants/nonmembers.v1"):
        assert other["data"][name]["sha256"] == info["data"][name]["sha256"], name
    assert other["tokenizer_fingerprint"] == info["tokenizer_fingerprint"]


def test_shifted_nonmembers_come_from_another_era(tiny_testbed, tiny_shifted_testbed):
    (out, info), (shifted, shifted_info) = tiny_testbed, tiny_shifted_testbed
    lo, hi = SHIFTS["era"]
    members, nonmembers = load_splits(shifted)
    assert shifted_info["shift"] == "era" and shifted_info["config"]["nonmember_shift"] == "era"
    for r in nonmembers:
        facts = r.meta["facts"]
        assert lo <= facts["birth_year"] <= hi and str(facts["birth_year"]) in r.text
        assert facts["death_year"] is None  # nobody of this era has died
    assert all(r.meta["facts"]["birth_year"] < lo for r in members)
    assert [r.id for r in nonmembers] == [r.id for r in load_splits(out)[1]]
    assert not {r.meta["facts"]["name"] for r in members} & {r.meta["facts"]["name"] for r in nonmembers}
    # Members, tokenizer and model are those of the unshifted testbed.
    assert shifted_info["data"]["members"]["sha256"] == info["data"]["members"]["sha256"]
    assert shifted_info["model_fingerprint"] == info["model_fingerprint"]
    names = [r.meta["facts"]["name"] for r in nonmembers]
    assert all(name in r.text for name, r in zip(names, load_variants(shifted)["nonmembers"][0]))
    # A testbed is reused only for the shift it was built with.
    assert load_complete(shifted, seed=0, size="tiny", shift="era") is not None
    assert load_complete(shifted, seed=0, size="tiny") is None
    assert load_complete(out, seed=0, size="tiny", shift="era") is None


def test_unknown_shift_is_refused(tmp_path):
    from typer.testing import CliRunner

    from lmaudit.cli import app

    with pytest.raises(ValueError, match="unknown non-member shift 'decade'"):
        build_testbed(tmp_path, size="tiny", shift="decade")
    res = CliRunner().invoke(app, ["testbed", "--out", str(tmp_path), "--size", "tiny", "--shift", "decade"])
    assert res.exit_code == 2 and "--shift must be one of era" in res.output


def test_a_build_killed_during_training_resumes_and_gives_the_same_model(tiny_testbed, tmp_path):
    """Killed at step 40 of 102 (inside the second epoch: its shuffled order comes from the
    checkpoint, the third epoch's from the restored random state), then run again: training
    resumes from the checkpoint and the model file is byte for byte the uninterrupted one's."""
    out, info = tiny_testbed

    class Killed(Exception):
        pass

    def kill(step, total):
        if step == 40:
            raise Killed

    with pytest.raises(Killed):
        build_testbed(tmp_path / "tb", seed=0, size="tiny", on_step=kill, checkpoint_every=5)
    assert (tmp_path / "tb" / "train-checkpoint.pt").exists()
    assert not load_complete(tmp_path / "tb", seed=0, size="tiny")  # an unfinished build is not a testbed yet
    steps = []
    again = build_testbed(tmp_path / "tb", seed=0, size="tiny", on_step=lambda s, t: steps.append(s), checkpoint_every=5)
    assert again["resumed_from_step"] == 40 and steps[0] == 60  # the first 40 steps were not trained again
    assert (tmp_path / "tb" / "model" / "model.safetensors").read_bytes() == (out / "model" / "model.safetensors").read_bytes()
    assert again["loss_curve"] == info["loss_curve"] and again["measured"] == info["measured"]
    assert not (tmp_path / "tb" / "train-checkpoint.pt").exists()
