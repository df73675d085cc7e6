"""The unlearning evaluation against independent computations: per-item values recomputed by
brute force from FakeLM's own next-token logits and from Google's rouge_score, and the
comparison's invariants (the retrain model against itself: PrivLeak 0, forget quality p = 1)."""

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from rouge_score import rouge_scorer
from scipy import stats

from lmaudit.data import DataError, Record
from lmaudit.models.base import GenerationConfig
from lmaudit.models.fake import FakeLM
from lmaudit.stats import paired_auc_bootstrap, roc_auc
from lmaudit.unlearning.compare import compare
from lmaudit.unlearning.evaluate import evaluate_unlearning, unlearn_eval_to_dir
from lmaudit.unlearning.measure import EvalConfig, answer_span, knowledge_subsample, measure_model
from lmaudit.unlearning.sets import UnlearnSets

WORDS = "amber birch cedar delta ember fjord grove heath inlet jetty knoll larch marsh nettle orchard".split()
CFG = EvalConfig(prefix_tokens=24, continuation_tokens=24, n_bootstrap=200, batch_size=4)


def _doc(rng, i):
    return " ".join(rng.choice(WORDS) for _ in range(30)) + f" entry {i}."


def _question(doc: Record, where: str, line: int) -> Record:
    first = doc.text.split()[0]
    return Record(f"{doc.id}/first", f"Record {doc.id} opens with", where, line,
                  {"answer": first, "paraphrased_answer": first.capitalize(), "doc_id": doc.id,
                   "perturbed_answers": [w for w in WORDS if w != first][:3]})


def _fixture(n=6):
    """Forget, retain and holdout documents and a question about each; a target FakeLM that
    learnt F and R (texts and the questions' statements), a retrain model that learnt R only."""
    rng = random.Random(0)
    sets = {s: [Record(f"{s[0]}{i}", _doc(rng, i), f"{s}.jsonl", i + 1) for i in range(n)]
            for s in ("forget", "retain", "holdout")}
    knowledge = {f"{s}_knowledge": [_question(r, f"{s}_q.jsonl", i + 1) for i, r in enumerate(sets[s])] for s in sets}
    seen = lambda docs: [r.text for r in docs] + [f"Record {r.id} opens with {r.text.split()[0]}" for r in docs]  # noqa: E731
    target = FakeLM(seen(sets["forget"] + sets["retain"]), name="target")
    retrain = FakeLM(seen(sets["retain"]), name="retrain")
    return UnlearnSets(**sets, **knowledge), target, retrain


@pytest.fixture(scope="module")
def fixture():
    sets, target, retrain = _fixture()
    return sets, target, retrain, {"target": measure_model(target, sets, CFG), "retrain": measure_model(retrain, sets, CFG)}


def _logprobs(lm: FakeLM, seq, start):
    """log p(seq[t] | seq[:t]) for t >= start, from the model's own logits (no kernel)."""
    out = []
    for t in range(start, len(seq)):
        z = lm.logits(seq[:t]).astype(np.float64)
        out.append(z[seq[t]] - (z.max() + math.log(np.exp(z - z.max()).sum())))
    return np.array(out)


def test_answer_probability_and_truth_ratio_by_brute_force(fixture):
    sets, target, _, measures = fixture
    for q, row in zip(sets.forget_knowledge, measures["target"].knowledge["forget"]):
        prompt = target.encode([q.text])[0]

        def mean_lp(answer):
            joint = target.encode([f"{q.text} {answer}"])[0]
            assert joint[: len(prompt)] == prompt  # bytes: the prompt is always a prefix
            return _logprobs(target, [target.bos_token_id, *joint], 1 + len(prompt)).mean()

        assert row["probability"] == pytest.approx(math.exp(mean_lp(q.meta["answer"])), rel=1e-5)
        pert = np.mean([mean_lp(a) for a in q.meta["perturbed_answers"]])
        assert row["truth_ratio"] == pytest.approx(math.exp(pert - mean_lp(q.meta["paraphrased_answer"])), rel=1e-4)
        assert row["boundary_merged"] == 0


def test_answer_span_counts_a_straddling_token_as_the_answers():
    assert answer_span([1, 2, 3], [1, 2, 3, 4]) == (3, False)
    assert answer_span([1, 2, 3], [1, 2, 34]) == (2, True)  # "3" merged with the answer's first characters


def test_verbmem_is_rouge_l_f1_of_the_greedy_continuation(fixture):
    sets, _, retrain, measures = fixture
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)  # MUSE's RougeEvalLogger
    for doc, row in zip(sets.forget, measures["retrain"].documents["forget"]):
        ids = retrain.encode([doc.text])[0]
        gen = retrain.generate([[retrain.bos_token_id, *ids[:24]]],
                               GenerationConfig(max_new_tokens=24, stop_at_eos=False))[0]
        truth = retrain.decode(ids[24:48])
        text = retrain.decode([t for t in gen if t not in (retrain.bos_token_id, retrain.eos_token_id)])
        assert row["verbmem"] == pytest.approx(100 * scorer.score(truth, text)["rougeL"].fmeasure)
        assert row["exact_match"] == (gen == ids[24:48])
    assert all(r["exact_match"] and r["verbmem"] == 100 for r in measures["target"].documents["forget"])


def test_knowmem_is_f1_and_tofu_recall_is_stemmed(fixture):
    _, _, _, measures = fixture
    f1 = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    recall = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)  # TOFU's eval_rouge_recall
    for rows in measures["retrain"].knowledge.values():
        for row in rows:
            assert row["knowmem"] == pytest.approx(100 * f1.score(row["answer"], row["prediction"])["rougeL"].fmeasure)
            assert row["rouge_l_recall"] == pytest.approx(recall.score(row["answer"], row["prediction"])["rougeL"].recall)


def test_loss_and_min_k_attack_by_brute_force(fixture):
    sets, target, _, measures = fixture
    for set_name in ("forget", "holdout"):
        for doc, row in zip(getattr(sets, set_name), measures["target"].documents[set_name]):
            lp = _logprobs(target, [target.bos_token_id, *target.encode([doc.text])[0]], 1)
            assert row["loss"] == pytest.approx(-lp.mean(), rel=1e-5)
            lowest = np.sort(lp)[: max(1, math.floor(0.4 * len(lp)))]  # Min-K% at k = 40%
            assert row["attack"] == pytest.approx(lowest.mean(), rel=1e-4)
    assert "attack" not in measures["target"].documents["retain"][0]


def _aggregates(node, path=""):
    """Every {"value", "ci", "n"...} aggregate in a compare() result."""
    if isinstance(node, dict):
        if "ci" in node and ("value" in node or "statistic" in node):
            yield path, node
        for k, v in node.items():
            yield from _aggregates(v, f"{path}/{k}")


def test_retrain_against_itself_and_every_interval(fixture):
    sets, _, _, measures = fixture
    result = compare({**measures, "same": measures["retrain"]}, target="target", retrain="retrain", n_bootstrap=300)
    for label in ("retrain", "same"):
        row = result["models"][label]
        assert row["privleak"]["value"] == 0 and row["privleak"]["ci"] == [0, 0]
        assert row["forget_quality"]["p_value"] == 1 and row["forget_quality"]["statistic"] == 0
        assert row["forget_quality"]["n_unlearned"] == len(sets.forget_knowledge)
        assert row["verbmem_forget_minus_retrain"] == {"value": 0, "ci": [0, 0], "n": len(sets.forget)}
    assert result["models"]["same"]["role"] == "candidate"
    t = result["models"]["target"]
    assert t["privleak"]["value"] > 0 and t["verbmem_forget"]["value"] == 100
    assert t["knowmem_retain_vs_target"]["value"] == 1 and t["knowmem_retain_vs_target"]["ci"] == [1, 1]
    gap = t["verbmem_forget_minus_retrain"]["value"]
    assert gap == pytest.approx(100 - result["models"]["retrain"]["verbmem_forget"]["value"])
    assert t["privleak"]["auc_retrain"] == result["models"]["retrain"]["auc_forget_holdout"]["value"]
    n = len(sets.forget)
    for label, row in result["models"].items():
        assert row["verbmem_forget"]["n"] == n and row["extraction_forget"]["n"] == n
        assert row["loss"]["retain"]["n"] == len(sets.retain) and row["privleak"]["n_holdout"] == len(sets.holdout)
        assert row["tofu"]["holdout"]["probability"]["n"] == len(sets.holdout_knowledge)
        assert row["model_utility"]["n"] == {"retain": n, "holdout": n}
        found = list(_aggregates(row))
        assert len(found) >= 15
        for path, agg in found:
            point = agg.get("value", agg.get("statistic"))
            lo, hi = agg["ci"]
            assert lo - 1e-9 <= point <= hi + 1e-9, (label, path, agg)


def test_privleak_point_is_the_metrics_formula(fixture):
    _, _, _, measures = fixture
    t = compare(measures, target="target", retrain="retrain", n_bootstrap=100)["models"]["target"]["privleak"]
    assert t["value"] == pytest.approx((t["auc"] - t["auc_retrain"]) / t["auc_retrain"] * 100)
    assert t["privleak_muse"] == pytest.approx(((1 - t["auc"]) - (1 - t["auc_retrain"])) / (1 - t["auc_retrain"]) * 100)


def test_a_missing_reference_is_an_error(fixture):
    sets, target, retrain, measures = fixture
    with pytest.raises(ValueError, match="retrain"):
        compare({"target": measures["target"]}, target="target", retrain="retrain")
    with pytest.raises(ValueError, match="retrain model is required"):
        evaluate_unlearning({}, target=target, retrain=None, sets=sets, config=CFG)
    with pytest.raises(ValueError, match="target"):
        compare(measures, target="nope", retrain="retrain")


def test_forget_and_retain_sharing_ids_is_an_error():
    sets, _, _ = _fixture(3)
    with pytest.raises(ValueError, match="share 2 document ids: f0, f1"):
        UnlearnSets(sets.forget, sets.retain + sets.forget[:2], sets.holdout)


def test_loader_names_file_line_and_field(tmp_path):
    sets, _, _ = _fixture(2)
    for name in ("forget", "retain", "holdout"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n"
                                                        for r in getattr(sets, name)))
    rows = [{"id": q.id, "question": q.text, **q.meta} for q in sets.forget_knowledge]
    del rows[1]["perturbed_answers"]
    (tmp_path / "fk.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = {s: tmp_path / f"{s}.jsonl" for s in ("forget", "retain", "holdout")}
    with pytest.raises(DataError, match=r"fk\.jsonl:2: field 'perturbed_answers'"):
        UnlearnSets.from_files(**paths, forget_knowledge=tmp_path / "fk.jsonl")
    loaded = UnlearnSets.from_files(**paths)
    assert [r.id for r in loaded.forget] == ["f0", "f1"] and [e["role"] for e in loaded.data] == list(paths)


def test_knowledge_subsample_is_seeded_by_document():
    items = [Record(f"d{d}/q{q}", "?", "k", 1, {"doc_id": f"d{d}"}) for d in range(10) for q in range(3)]
    kept, info = knowledge_subsample(items, 4, seed=1)
    assert len({r.meta["doc_id"] for r in kept}) == 4 and len(kept) == 12 and info["subsampled"]
    assert kept == knowledge_subsample(items, 4, seed=1)[0] != knowledge_subsample(items, 4, seed=2)[0]
    assert knowledge_subsample(items, None, seed=0)[0] == items


def test_paired_auc_bootstrap_draws_once_for_both():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 30), rng.normal(0, 1, 40)
    a, b = paired_auc_bootstrap(pos, neg, pos, neg, n_bootstrap=50)
    assert np.array_equal(a, b) and a.std() > 0
    a, b = paired_auc_bootstrap(pos, neg, -pos, -neg, n_bootstrap=50)  # the mirror scorer: 1 − AUC each draw
    assert np.allclose(a + b, 1)
    assert roc_auc(pos, neg) == pytest.approx(np.median(a), abs=0.1)


def test_ks_replicates_with_one_question_per_document_match_scipy_on_the_same_draw():
    from lmaudit.unlearning.compare import ks_statistic_cluster_replicates

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=25), np.round(rng.normal(0.5, 1, 25), 1)  # ties within b
    docs = np.array([f"d{i:02d}" for i in range(25)], dtype=object)  # sorted: group g is item g
    reps = ks_statistic_cluster_replicates(a, b, docs, n_bootstrap=5, seed=3)
    idx = np.random.default_rng(3).integers(0, 25, size=(5, 25))
    for k in range(5):
        assert reps[k] == pytest.approx(stats.ks_2samp(a[idx[k]], b[idx[k]]).statistic)
    assert ks_statistic_cluster_replicates(a, a, docs, n_bootstrap=5, seed=0).tolist() == [0.0] * 5


def test_run_folder_holds_every_model_and_item(fixture, tmp_path):
    sets, target, retrain, _ = fixture
    written = unlearn_eval_to_dir({"u": retrain}, tmp_path, target=target, retrain=retrain, sets=sets, config=CFG)
    assert written["kind"] == "unlearn-eval" and set(written["models"]) == {"target", "retrain", "u"}
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    per_model = 3 * len(sets.forget) + 3 * len(sets.forget_knowledge)
    assert len(rows) == 3 * per_model and {r["model"] for r in rows} == {"target", "retrain", "u"}
    assert set(written["provenance"]["models"]) == {"target", "retrain", "u"}


def test_a_sweeps_lean_measure_is_the_full_one_without_tofu_and_on_fewer_documents(fixture):
    """documents=k scores k seeded documents of R and H (all of F) with the same values as the
    full measure; tofu=False keeps the greedy answers and leaves out only TOFU's scoring and
    the holdout questions."""
    sets, target, _, measures = fixture
    lean = measure_model(target, sets, replace(CFG, documents=4, tofu=False))
    full = measures["target"]
    assert len(lean.documents["forget"]) == len(sets.forget)
    for s in ("retain", "holdout"):
        assert len(lean.documents[s]) == 4
        by_id = {r["id"]: r for r in full.documents[s]}
        assert all(r["loss"] == pytest.approx(by_id[r["id"]]["loss"]) for r in lean.documents[s])
    assert "holdout" not in lean.knowledge
    for s in ("forget", "retain"):
        assert [r["knowmem"] for r in lean.knowledge[s]] == [r["knowmem"] for r in full.knowledge[s]]
        assert all("probability" not in r and "truth_ratio" not in r for r in lean.knowledge[s])
    again = measure_model(target, sets, replace(CFG, documents=4, tofu=False))
    assert [r["id"] for r in again.documents["retain"]] == [r["id"] for r in lean.documents["retain"]]
    row = compare({"target": lean, "retrain": measure_model(fixture[2], sets, replace(CFG, documents=4, tofu=False))},
                  target="target", retrain="retrain", n_bootstrap=50)["models"]["target"]
    assert row["model_utility"] is None and row["privleak"]["n_holdout"] == 4


def test_ks_cluster_replicates_are_scipys_statistic_on_the_redrawn_documents():
    from lmaudit.unlearning.compare import _cluster_draws, ks_statistic_cluster_replicates

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(0.5, size=30)
    docs = np.repeat([f"d{i}" for i in range(10)], 3).astype(object)
    reps = ks_statistic_cluster_replicates(a, b, docs, n_bootstrap=20, seed=7)
    w, member = _cluster_draws(docs, n_bootstrap=20, seed=7)
    for got, counts in zip(reps, w):
        idx = np.concatenate([np.repeat(np.flatnonzero(member == g), c) for g, c in enumerate(counts)])
        assert got == pytest.approx(stats.ks_2samp(a[idx], b[idx]).statistic)


def test_a_question_that_is_a_shot_keeps_a_row_saying_so(fixture):
    sets, target, _, _ = fixture
    shot = sets.forget_knowledge[0]
    with_shot = replace(sets, shots=[shot])
    m = measure_model(target, with_shot, replace(CFG, n_shots=1, tofu=False))
    rows = {r["id"]: r for r in m.knowledge["forget"]}
    assert len(rows) == len(sets.forget_knowledge)  # none dropped
    assert rows[shot.id]["excluded"].startswith("same question as shot") and "knowmem" not in rows[shot.id]


def test_question_figures_count_documents_and_short_documents_are_error_rows(fixture):
    sets, target, retrain, measures = fixture
    row = compare(measures, target="target", retrain="retrain", n_bootstrap=50)["models"]["target"]
    # One question per document in this fixture: as many documents as questions.
    assert row["knowmem_forget"]["n_documents"] == row["knowmem_forget"]["n"] == len(sets.forget_knowledge)
    assert row["tofu"]["retain"]["probability"]["n_documents"] == len(sets.retain_knowledge)
    assert row["forget_quality"]["n_documents"] == len(sets.forget_knowledge)
    # A forget document shorter than prefix + continuation has no VerbMem and is an error row.
    long = replace(CFG, prefix_tokens=200, continuation_tokens=200)  # the texts are about 200 bytes
    m = measure_model(target, sets, long)
    assert all(r["verbmem"] is None and r["error"].startswith("verbmem:") for r in m.documents["forget"])
