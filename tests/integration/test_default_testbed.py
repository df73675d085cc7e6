"""The default testbed really memorises: the targets the whole project relies on (~4 min)."""

import json

import pytest

from lmaudit.models.hf import HFModel
from lmaudit.testbed.build import build_testbed


@pytest.mark.slow
def test_default_testbed_memorises_members_only(tmp_path):
    info = build_testbed(tmp_path, seed=0, size="default")
    assert info["n_members"] >= 1000 and info["n_nonmembers"] >= 1000
    assert info["doc_tokens"]["min"] >= 64
    m = info["measured"]
    assert m["members"]["mean_loss"] < m["nonmembers"]["mean_loss"] - 0.5
    assert m["members"]["extraction_rate"] >= 0.25
    assert m["nonmembers"]["extraction_rate"] <= 0.02
    # Memorisation follows duplication, the ground truth later audits are judged against.
    levels = sorted(m["members_by_duplication"].items(), key=lambda kv: int(kv[0]))
    losses = [v["mean_loss"] for _, v in levels]
    assert losses == sorted(losses, reverse=True)
    # Same distribution: a blind classifier on surface features must not tell the splits apart.
    from sklearn.metrics import roc_auc_score

    lm = HFModel.from_pretrained(str(tmp_path / "model"), device="cpu")
    texts = {name: [json.loads(x)["text"] for x in (tmp_path / "data" / f"{name}.jsonl").read_text().splitlines()]
             for name in ("members", "nonmembers")}
    labels = [1] * len(texts["members"]) + [0] * len(texts["nonmembers"])
    all_texts = texts["members"] + texts["nonmembers"]
    n_tokens = [len(ids) for ids in lm.encode(all_texts)]
    for feature in (n_tokens, [len(t) for t in all_texts], [len(t) / n for t, n in zip(all_texts, n_tokens)]):
        assert 0.44 < roc_auc_score(labels, feature) < 0.56  # about 4 standard errors at n = 1,000 + 1,000

    # Independent re-check of the most-duplicated members through the public loading path,
    # with a hand-written argmax loop instead of generate().
    import torch

    top_level = int(levels[-1][0])
    members = [json.loads(x) for x in (tmp_path / "data" / "members.jsonl").read_text().splitlines()]
    top = [r for r in members if r["duplication"] == top_level][:10]
    hits = 0
    for row in top:
        ids = lm.encode([row["text"]])[0]
        seq = [lm.bos_token_id, *ids[:32]]
        with torch.no_grad():
            for _ in range(32):
                seq.append(int(lm.model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
        hits += seq[33:] == ids[32:64]
    assert hits / len(top) == pytest.approx(m["members_by_duplication"][str(top_level)]["extraction_rate"], abs=0.2)
