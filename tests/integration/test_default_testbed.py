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

    # Issue 4's targets on the same testbed. Dataset inference: 100 members as the suspect
    # set against 100 non-members gives p < 0.01, and the validation-vs-validation false-
    # positive rate over 200 null trials stays near alpha = 0.05.
    from lmaudit.data import read_records
    from lmaudit.membership.dataset_inference import DatasetInferenceConfig, run_dataset_inference
    from lmaudit.membership.run import MembershipConfig, run_membership

    member_recs = read_records(tmp_path / "data" / "members.jsonl")
    nonmember_recs = read_records(tmp_path / "data" / "nonmembers.jsonl")
    di = run_dataset_inference(lm, member_recs[:100], nonmember_recs[:100], batch_size=32,
                               config=DatasetInferenceConfig(null_trials=200)).results
    assert di["p_value"] < 0.01 and di["n_suspect"] == di["n_validation"] == 100
    assert 0.01 <= di["null_calibration"]["false_positive_rate"] <= 0.09
    # Membership on all documents: attacks work in the right direction, blind baselines see
    # nothing (same distribution), so the run is not flagged.
    mia = run_membership(lm, member_recs, nonmember_recs, batch_size=32, config=MembershipConfig(attacks="loss,min_k@0.2"))
    assert mia.results["attacks"]["loss"]["auc"] > 0.85
    assert mia.results["distribution_shift_flag"] is False
    assert all(0.44 < b["auc"] < 0.56 for b in mia.results["blind_baselines"].values())

    # Issue 5's targets. Knowledge: members seen 32 times answer zero-shot cloze questions
    # about their facts far more often than non-members, whose facts the model never saw.
    from lmaudit.memorization.acr import ACRConfig, continuation_targets, run_acr
    from lmaudit.memorization.extraction import run_extraction
    from lmaudit.memorization.knowledge import KnowledgeConfig, run_knowledge
    from lmaudit.testbed.load import load_knowledge

    questions = load_knowledge(tmp_path)
    cloze = KnowledgeConfig(template="cloze", n_shots=0, max_new_tokens=12, n_bootstrap=100)
    first = {name: {r.id for r in recs[:300]} for name, recs in (("members", member_recs), ("nonmembers", nonmember_recs))}
    know = {name: run_knowledge(lm, [q for q in questions[name] if q.meta["doc_id"] in first[name]],
                                shots=questions["shots"], config=cloze, batch_size=64)[0]
            for name in ("members", "nonmembers")}
    assert know["members"]["by_duplication"]["32"]["exact_match_rate"] > know["nonmembers"]["exact_match_rate"] + 0.05
    # ACR: extracted members compress (ACR > 1), non-members do not, on the CPU budget the demo uses.
    _, rows = run_extraction(lm, member_recs, batch_size=64)
    extracted = [r for r, x in zip(member_recs, rows) if x.get("exact_match")]
    targets = (continuation_targets(lm, extracted, n=3, group="member", seed=0)
               + continuation_targets(lm, nonmember_recs, n=3, group="nonmember", seed=1))
    acr = run_acr(lm, targets, config=ACRConfig(steps=100, n_candidates=50, top_k=128, patience=25, max_seconds=600))[0]
    assert acr["by_group"]["member"]["memorized_rate"] >= 2 / 3
    assert acr["by_group"]["nonmember"]["memorized_rate"] <= 1 / 3
