"""The tiny testbed: files, fields, ground truth and determinism."""

import json

import pytest

from lmaudit.data import read_records
from lmaudit.models.hf import HFModel
from lmaudit.testbed.build import SIZES, build_testbed, load_complete


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
    with open(copy / "data" / "members.jsonl", "a") as f:
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
