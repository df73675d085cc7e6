"""Every attack against a brute-force computation from the model's own logits (float64)."""

import math
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from lmaudit.data import Record
from lmaudit.membership.attacks.dc_pdd import DCPDD
from lmaudit.membership.attacks.min_k import MinK
from lmaudit.membership.attacks.neighbourhood import Neighbourhood
from lmaudit.membership.attacks.recall import ReCaLL
from lmaudit.membership.base import ATTACKS, Attack, expand, lowest_count, make_attack
from lmaudit.membership.perturb.edits import NothingToEdit, apply_edit, edit_rates
from lmaudit.membership.run import score_attacks, select_attacks
from lmaudit.models.base import ScoringPolicy
from lmaudit.models.hf import HFModel
from lmaudit.testbed.tokenizer import train_tokenizer


def _records(texts):
    return [Record(id=f"d{i}", text=t, source="test", line=i + 1) for i, t in enumerate(texts)]


def _brute(lm, text):
    """log p of each text token after BOS, and μ, σ of log p over the vocabulary, in float64."""
    ids = [lm.bos_token_id, *lm.tokenizer(text, add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0, :-1].double()
    logp = torch.log_softmax(logits, -1)
    lp = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sd = ((p * logp**2).sum(-1) - mu**2).clamp_min(0).sqrt()
    return np.array(ids[1:]), lp, mu.numpy(), sd.numpy()


def _run(lm, texts, attacks, policy=ScoringPolicy(), **kw):
    _, outputs, _ = score_attacks(lm, _records(texts), attacks, policy=policy, batch_size=3, cache=None,
                                  on_pass=None, seed=0, **kw)
    return outputs


def _lowest_mean(x, k):
    n = max(1, int(math.floor(k * len(x) + 1e-9)))
    return float(np.mean(sorted(x)[:n]))


def test_logits_only_attacks_match_brute_force(tiny_lm, corpus_texts):
    texts = corpus_texts[:5]
    attacks = expand(["loss", "zlib", "min_k", "min_k_pp"])
    out = _run(tiny_lm, texts, attacks)
    for i, text in enumerate(texts):
        _, lp, mu, sd = _brute(tiny_lm, text)
        assert out["loss"].values[i] == pytest.approx(lp.mean(), abs=1e-4)
        assert out["zlib"].values[i] == pytest.approx(lp.mean() / len(zlib.compress(text.encode())), rel=1e-4)
        z = (lp - mu) / sd
        for k in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
            assert out[f"min_k@{k:g}"].values[i] == pytest.approx(_lowest_mean(lp, k), abs=1e-4)
            assert out[f"min_k_pp@{k:g}"].values[i] == pytest.approx(_lowest_mean(z, k), abs=1e-3)


def test_max_k_is_the_mean_of_the_likeliest_tokens_and_minus_maini_et_als_feature(tiny_lm, corpus_texts):
    texts = corpus_texts[:4]
    out = _run(tiny_lm, texts, expand(["max_k", "min_k"]))
    for i, text in enumerate(texts):
        lp = _brute(tiny_lm, text)[1]
        losses = sorted(-lp)  # Maini et al.: per-token losses, ascending; "k_min_probs" takes the first int(N·k)
        for k in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
            top = -np.sort(-lp)[: max(1, int(math.floor(k * len(lp) + 1e-9)))]
            assert out[f"max_k@{k:g}"].values[i] == pytest.approx(top.mean(), abs=1e-4)
            if int(len(lp) * k) == math.floor(k * len(lp) + 1e-9):  # their int() and our ⌊kN⌋ agree
                peer = np.mean(losses[: max(1, int(len(losses) * k))])
                assert out[f"max_k@{k:g}"].values[i] == pytest.approx(-peer, abs=1e-4)
            assert out[f"max_k@{k:g}"].values[i] >= out[f"min_k@{k:g}"].values[i]  # the other end
        assert out["max_k@0.6"].values[i] <= out["max_k@0.05"].values[i]  # fewer, likelier tokens


def test_perplexity_is_minus_exp_of_the_loss_and_ranks_as_the_loss_does(tiny_lm, corpus_texts):
    texts = corpus_texts[:6]
    out = _run(tiny_lm, texts, expand(["perplexity", "loss"]))
    for i, text in enumerate(texts):
        assert out["perplexity"].values[i] == pytest.approx(-np.exp(-_brute(tiny_lm, text)[1].mean()), rel=1e-4)
    assert (np.argsort(out["perplexity"].values) == np.argsort(out["loss"].values)).all()


def test_min_k_count_is_floor_of_k_n_with_at_least_one():
    assert lowest_count(0.3, 10) == 3  # 0.3 * 10 is 3.0000000000000004
    assert lowest_count(0.29, 100) == 29  # 0.29 * 100 is 28.999999999999996
    assert lowest_count(0.05, 10) == 1  # floor(0.5) = 0 → at least one
    assert lowest_count(0.2, 1) == 1 and lowest_count(1.0, 10) == 10


def test_lowercase_is_the_ratio_of_losses(tiny_lm, corpus_texts):
    texts = corpus_texts[5:8]
    out = _run(tiny_lm, texts, expand(["lowercase"]))
    for i, text in enumerate(texts):
        expected = _brute(tiny_lm, text.lower())[1].mean() / _brute(tiny_lm, text)[1].mean()
        assert out["lowercase"].values[i] == pytest.approx(expected, rel=1e-4)


def test_reference_model_is_scored_with_its_own_tokenizer(tiny_lm, corpus_texts, make_tiny):
    other_tok = train_tokenizer(corpus_texts[10:], vocab_size=300)
    ref = HFModel(make_tiny("llama", len(other_tok)), other_tok, name="ref")
    texts = corpus_texts[:4]
    assert ref.encode(texts) != tiny_lm.encode(texts)  # the point of the test: different tokenisations
    out = _run(tiny_lm, texts, expand(["reference_diff", "reference_ratio"]), reference_model=ref)
    for i, text in enumerate(texts):
        loss, ref_loss = -_brute(tiny_lm, text)[1].mean(), -_brute(ref, text)[1].mean()
        assert out["reference_diff"].values[i] == pytest.approx(ref_loss - loss, abs=1e-4)
        assert out["reference_ratio"].values[i] == pytest.approx(ref_loss / loss, rel=1e-4)


def test_several_reference_models_give_one_feature_each_in_the_order_given(tiny_lm, corpus_texts, make_tiny):
    from lmaudit.membership.dataset_inference import DatasetInferenceConfig, run_dataset_inference
    from lmaudit.membership.run import MembershipConfig, run_membership

    other_tok = train_tokenizer(corpus_texts[10:], vocab_size=300)
    refs = [HFModel(make_tiny("llama", len(other_tok)), other_tok, name="ref-llama"),
            HFModel(make_tiny("gpt2", len(tiny_lm.tokenizer)), tiny_lm.tokenizer, name="ref-gpt2")]
    recs = _records(corpus_texts[:12])
    res = run_membership(tiny_lm, recs[:6], recs[6:], reference_model=refs,
                         config=MembershipConfig(attacks="loss,reference_diff,reference_ratio", blind_baselines=False,
                                                 n_bootstrap=10))
    assert list(res.results["attacks"]) == ["loss", "reference_diff@1", "reference_diff@2", "reference_ratio@1",
                                            "reference_ratio@2"]
    assert [res.results["attacks"][f"reference_diff@{i}"]["info"]["reference_model"] for i in (1, 2)] == [
        "ref-llama", "ref-gpt2"]
    assert [m["name"] for m in res.provenance["reference_models"]] == ["ref-llama", "ref-gpt2"]
    for row, rec in zip(res.samples, recs):
        loss = -_brute(tiny_lm, rec.text)[1].mean()
        for i, ref in enumerate(refs, 1):
            ref_loss = -_brute(ref, rec.text)[1].mean()
            assert row["scores"][f"reference_diff@{i}"] == pytest.approx(ref_loss - loss, abs=1e-4)
            assert row["scores"][f"reference_ratio@{i}"] == pytest.approx(ref_loss / loss, rel=1e-4)
    # One model keeps the bare labels; dataset inference (and its null pool's pass) takes several.
    one = run_membership(tiny_lm, recs[:6], recs[6:], reference_model=refs[1],
                         config=MembershipConfig(attacks="reference_diff", blind_baselines=False, n_bootstrap=10))
    assert list(one.results["attacks"]) == ["reference_diff"]
    assert [r["scores"]["reference_diff"] for r in one.samples] == [r["scores"]["reference_diff@2"] for r in res.samples]
    # A printed label names one model's feature back; a model beyond those given is refused before any pass.
    second = run_membership(tiny_lm, recs[:6], recs[6:], reference_model=refs,
                            config=MembershipConfig(attacks="reference_diff@2", blind_baselines=False, n_bootstrap=10))
    assert list(second.results["attacks"]) == ["reference_diff@2"]
    assert [r["scores"]["reference_diff@2"] for r in second.samples] == [r["scores"]["reference_diff@2"] for r in res.samples]
    with pytest.raises(ValueError, match="names reference model 3, but 2 were given"):
        run_membership(tiny_lm, recs[:6], recs[6:], reference_model=refs, config=MembershipConfig(attacks="reference_ratio@3"))
    with pytest.raises(ValueError, match="listed twice: reference_diff@1"):
        run_membership(tiny_lm, recs[:6], recs[6:], reference_model=refs,
                       config=MembershipConfig(attacks="reference_diff,reference_diff@1"))
    di = run_dataset_inference(tiny_lm, recs[:4], recs[4:8], reference_model=refs, null_pool=recs[8:],
                               config=DatasetInferenceConfig(attacks="loss,reference_diff", null_trials=2))
    assert set(di.results["feature_weights"]) == {"loss", "reference_diff@1", "reference_diff@2"}
    assert all(r["features"]["reference_diff@2"] is not None for r in di.samples if r["set"] == "null_pool")


def test_recall_conditions_on_the_prefix_and_scores_the_same_tokens(tiny_lm, corpus_texts):
    texts, prefix = corpus_texts[:3], [corpus_texts[20][:120], corpus_texts[21][:120]]
    out = _run(tiny_lm, texts, [ReCaLL()], prefix=_records(prefix))
    assert out["recall"].info["shots_used"] == 2
    enc = lambda t: tiny_lm.tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    for i, text in enumerate(texts):
        ctx = [tiny_lm.bos_token_id, *enc(prefix[0]), tiny_lm.eos_token_id, *enc(prefix[1]), tiny_lm.eos_token_id]
        ids = ctx + enc(text)
        with torch.no_grad():
            logp = torch.log_softmax(tiny_lm.model(torch.tensor([ids])).logits[0, :-1].double(), -1)
        cond = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])][len(ctx) - 1 :].mean().item()
        assert out["recall"].values[i] == pytest.approx(cond / -_brute(tiny_lm, text)[1].mean(), rel=1e-4)


def test_recall_without_bos_scores_the_same_tokens_as_the_plain_pass(tiny_lm, corpus_texts):
    texts, prefix = corpus_texts[:2], [corpus_texts[20][:120]]
    out = _run(tiny_lm, texts, [ReCaLL()], policy=ScoringPolicy(bos="none"), prefix=_records(prefix))
    enc = lambda t: tiny_lm.tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    for i, text in enumerate(texts):
        x, ctx = enc(text), [*enc(prefix[0]), tiny_lm.eos_token_id]

        def loss_of_x_after_first(ids, start):  # mean loss of x[1:], x starting at ids[start]
            with torch.no_grad():
                logp = torch.log_softmax(tiny_lm.model(torch.tensor([ids])).logits[0, :-1].double(), -1)
            return -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])][start:].mean().item()

        expected = loss_of_x_after_first(ctx + x, len(ctx)) / loss_of_x_after_first(x, 0)
        assert out["recall"].values[i] == pytest.approx(expected, rel=1e-4)


def test_recall_ignores_truncated_texts_when_sizing_the_prefix(tiny_lm, corpus_texts):
    texts = [corpus_texts[0][:100], " ".join(corpus_texts[1:6]), corpus_texts[2][:100]]  # the middle one overflows
    policy = ScoringPolicy(max_length=160, overflow="truncate")
    out = _run(tiny_lm, texts, [ReCaLL()], policy=policy, prefix=_records([corpus_texts[20][:60]]))
    assert np.isfinite(out["recall"].values[[0, 2]]).all() and out["recall"].info["shots_used"] == 1
    assert "longer than the context" in out["recall"].errors[1]


def test_a_given_recall_prefix_is_taken_out_of_the_evaluation():
    from lmaudit.membership.run import draw_prefix

    pool = _records(["a text", "b text", "c text"])
    prefix, rest, excluded = draw_prefix([ReCaLL()], _records(["b text"]), pool, shots=5, seed=0, set_name="nonmember")
    assert [r.text for r in rest] == ["a text", "c text"] and [e["id"] for e in excluded] == ["d1"]
    assert draw_prefix(expand(["loss"]), _records(["b text"]), pool, shots=5, seed=0, set_name="x")[1] == pool


def test_zlib_matches_documents_by_position_when_ids_collide(tiny_lm, corpus_texts):
    from lmaudit.membership.run import run_membership, MembershipConfig

    members = [Record(id=i + 1, text=t, source="m.txt", line=i + 1) for i, t in enumerate(corpus_texts[:3])]
    nonmembers = [Record(id=i + 1, text=t, source="n.txt", line=i + 1) for i, t in enumerate(corpus_texts[3:9])]
    res = run_membership(tiny_lm, members, nonmembers, config=MembershipConfig(attacks="zlib", blind_baselines=False,
                                                                                n_bootstrap=10))
    for row, rec in zip(res.samples, members + nonmembers):
        assert row["id"] == rec.id
        expected = _brute(tiny_lm, rec.text)[1].mean() / len(zlib.compress(rec.text.encode()))
        assert row["scores"]["zlib"] == pytest.approx(expected, rel=1e-4)


def test_a_reference_model_with_a_shorter_context_fails_before_any_work(tiny_lm, corpus_texts, make_tiny):
    from lmaudit.membership.run import run_membership, MembershipConfig

    ref = HFModel(make_tiny("llama", len(tiny_lm.tokenizer), n_positions=64), tiny_lm.tokenizer, name="short-ref")
    recs = _records(corpus_texts[:4])
    with pytest.raises(ValueError, match="reference model short-ref: max_length=512 exceeds"):
        run_membership(tiny_lm, recs[:2], recs[2:], reference_model=ref, policy=ScoringPolicy(max_length=512),
                       config=MembershipConfig(attacks="reference_diff"))
    # Without a max_length each model uses its own context: the reference windows long texts.
    res = run_membership(tiny_lm, recs[:2], recs[2:], reference_model=ref,
                         config=MembershipConfig(attacks="reference_diff", blind_baselines=False, n_bootstrap=10))
    assert all(np.isfinite(r["scores"]["reference_diff"]) for r in res.samples)


def test_recall_uses_only_whole_prefix_documents_that_fit(tiny_lm, corpus_texts):
    policy_max = tiny_lm.max_length
    long_prefix = [" ".join(corpus_texts[30:38])] * 3  # each far longer than the context
    out = _run(tiny_lm, corpus_texts[:2], [ReCaLL()], prefix=_records(long_prefix))
    assert out["recall"].info["shots_used"] == 0 and policy_max == 512
    assert np.isnan(out["recall"].values).all()
    assert all("prefix document fits" in e for e in out["recall"].errors)


@pytest.mark.parametrize("max_alpha", [0.01, 1e9])
def test_dc_pdd_first_occurrences_and_clipping(tiny_lm, corpus_texts, max_alpha):
    texts, corpus = corpus_texts[:4], corpus_texts[30:50]
    out = _run(tiny_lm, texts, [DCPDD(max_alpha=max_alpha)], reference_corpus=_records(corpus))
    counts = Counter(t for c in corpus for t in tiny_lm.tokenizer(c, add_special_tokens=False)["input_ids"])
    total, vocab = sum(counts.values()), tiny_lm.model.get_input_embeddings().num_embeddings
    for i, text in enumerate(texts):
        ids, lp, _, _ = _brute(tiny_lm, text)
        seen, alphas = set(), []
        for tok, l in zip(ids, lp):
            if tok in seen:
                continue
            seen.add(tok)
            f = (counts[tok] + 1) / (total + vocab)
            alphas.append(min(math.exp(l) * math.log(1 / f), max_alpha))
        assert out["dc_pdd"].values[i] == pytest.approx(np.mean(alphas), rel=1e-4)


class _FixedPerturber:
    name = "fixed"

    def perturb(self, texts, *, n, seed):
        return [[t + " and more", t.replace("a", "o"), t[::-1]][:n] for t in texts]

    def describe(self):
        return {"name": self.name}


def test_neighbourhood_is_the_mean_neighbour_loss_minus_the_loss(tiny_lm, corpus_texts):
    texts = corpus_texts[:3]
    out = _run(tiny_lm, texts, [Neighbourhood(n_neighbours=3)], perturber=_FixedPerturber())
    for i, text in enumerate(texts):
        neighbours = _FixedPerturber().perturb([text], n=3, seed=0)[0]
        expected = np.mean([-_brute(tiny_lm, t)[1].mean() for t in neighbours]) + _brute(tiny_lm, text)[1].mean()
        assert out["neighbourhood"].values[i] == pytest.approx(expected, abs=1e-4)
    assert out["neighbourhood"].info["perturber"] == {"name": "fixed"}


KINDS = ("word_swap", "typos", "deletion", "case", "whitespace", "underscores")


def test_perturbation_attacks_are_the_edited_loss_against_the_loss(tiny_lm, corpus_texts):
    # A text without letters (no typos, no case to flip), a one-word text (nothing to delete or
    # swap in), and an empty one (a scoring error, for every kind).
    texts = [*corpus_texts[:2], "2024 - 1999 = 25 ?", "Hello", ""]
    out = _run(tiny_lm, texts, expand(["perturb_diff", "perturb_ratio"]))
    assert set(out) == {f"perturb_{f}@{k}" for f in ("diff", "ratio") for k in KINDS}
    for kind in KINDS:
        diff, ratio = out[f"perturb_diff@{kind}"], out[f"perturb_ratio@{kind}"]
        assert diff.info == ratio.info == {"edit": {"kind": kind, **edit_rates(kind)}}
        for i, text in enumerate(texts[:-1]):
            try:
                edited = apply_edit(kind, text, seed=0)
            except NothingToEdit as err:
                assert np.isnan(diff.values[i]) and np.isnan(ratio.values[i])
                assert diff.errors[i] == ratio.errors[i] == f"perturbation {kind}: the text {err}"
                continue
            loss, edited_loss = -_brute(tiny_lm, text)[1].mean(), -_brute(tiny_lm, edited)[1].mean()
            assert diff.errors[i] is None and ratio.errors[i] is None
            assert diff.values[i] == pytest.approx(edited_loss - loss, abs=1e-4)
            assert ratio.values[i] == pytest.approx(edited_loss / loss, rel=1e-4)
        assert "empty text" in diff.errors[-1] and "empty text" in ratio.errors[-1]
    # The texts each edit cannot change are exactly those with nothing to change.
    unscored = {k: [i for i, e in enumerate(out[f"perturb_diff@{k}"].errors[:-1]) if e] for k in KINDS}
    assert unscored == {"word_swap": [3], "typos": [2], "deletion": [3], "case": [2], "whitespace": [],
                        "underscores": [3]}


def _count_passes(lm, texts, attacks, batch_size=3):
    passes = []

    def on_pass(what, n):
        passes.append((what, n))

    _, outputs, _ = score_attacks(lm, _records(texts), attacks, policy=ScoringPolicy(), batch_size=batch_size,
                                  cache=None, on_pass=on_pass, seed=0)
    return outputs, passes


def test_both_perturbation_attacks_of_a_kind_share_one_pass(tiny_lm, corpus_texts):
    texts = [*corpus_texts[:3], "2024 = 25"]
    _, passes = _count_passes(tiny_lm, texts, expand(["perturb_diff@typos", "perturb_ratio@typos", "loss"]))
    assert passes == [("scoring", 4), ("perturbed texts (typos)", 3)]  # the text without letters is not edited
    _, passes = _count_passes(tiny_lm, texts[2:], expand(["perturb_ratio", "perturb_diff"]))
    assert [what for what, _ in passes] == ["scoring", *(f"perturbed texts ({k})" for k in KINDS)]


def test_perturbation_scores_do_not_depend_on_the_batch(tiny_lm, corpus_texts):
    attacks = expand(["perturb_diff@word_swap", "perturb_ratio@typos", "perturb_diff@deletion"])
    alone, _ = _count_passes(tiny_lm, corpus_texts[:3], attacks)
    mixed, _ = _count_passes(tiny_lm, [corpus_texts[2], corpus_texts[7], corpus_texts[0]], attacks, batch_size=2)
    for label, o in alone.items():
        # The same edits, so the same scores up to float32 differences from other batch paddings.
        np.testing.assert_allclose(mixed[label].values[[2, 0]], o.values[[0, 2]], rtol=1e-4, err_msg=label)


def test_perturb_ratio_refuses_a_text_whose_loss_is_zero():
    from lmaudit.models.fake import FakeLM

    known = "Every word here is known."
    lm = FakeLM([known], boost=1000.0)  # so sure of its one text that every log p is exactly 0 in float32
    out = _run(lm, [known, "Another text, never seen."], expand(["perturb_ratio@typos", "perturb_diff@typos"]))
    ratio, diff = out["perturb_ratio@typos"], out["perturb_diff@typos"]
    assert np.isnan(ratio.values[0]) and ratio.errors[0] == "loss of the text is exactly 0: the ratio is undefined"
    assert diff.values[0] > 0 and diff.errors[0] is None  # the difference is defined
    assert np.isfinite(ratio.values[1]) and ratio.errors[1] is None


def test_perturbation_labels_expansion_and_selection():
    assert [a.label for a in expand(["perturb_diff"])] == [
        "perturb_diff@word_swap", "perturb_diff@typos", "perturb_diff@deletion", "perturb_diff@case",
        "perturb_diff@whitespace", "perturb_diff@underscores"]
    case = make_attack("perturb_ratio@case")
    assert case.kind == "case" and case.label == "perturb_ratio@case"
    assert make_attack("perturb_diff@typos").params() == {"kind": "typos"}
    with pytest.raises(ValueError, match="perturb_diff@typo: unknown perturbation 'typo'; one of word_swap"):
        make_attack("perturb_diff@typo")
    with pytest.raises(ValueError, match="listed twice: perturb_diff@case"):
        expand(["perturb_diff", "perturb_diff@case"])
    assert not any(a.label.startswith("perturb_") for a in select_attacks(None))  # extra passes: named, not default
    assert {f"perturb_ratio@{k}" for k in KINDS} <= {a.label for a in select_attacks("all")}
    assert [a.label for a in select_attacks("loss,perturb_ratio@whitespace")] == ["loss", "perturb_ratio@whitespace"]


def test_gradnorm_matches_autograd_and_leaves_no_gradients(tiny_lm, corpus_texts):
    texts = corpus_texts[:2]
    out = _run(tiny_lm, texts, expand(["gradnorm"]))
    model = tiny_lm.model
    for i, text in enumerate(texts):
        ids = torch.tensor([[tiny_lm.bos_token_id, *tiny_lm.encode([text])[0]]])
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids).logits[0, :-1].float(), ids[0, 1:])
        loss.backward()
        expected = -np.mean([p.grad.norm().item() for p in model.parameters()])
        assert out["gradnorm"].values[i] == pytest.approx(expected, rel=1e-4)
    model.zero_grad(set_to_none=True)
    _run(tiny_lm, texts, expand(["gradnorm"]))
    assert all(p.grad is None for p in model.parameters())


def test_error_rows_stay_in_place(tiny_lm, corpus_texts):
    texts = [corpus_texts[0], "", corpus_texts[1]]
    out = _run(tiny_lm, texts, expand(["loss", "min_k@0.2", "lowercase"]))
    for o in out.values():
        assert np.isnan(o.values[1]) and "empty text" in o.errors[1]
        assert np.isfinite(o.values[[0, 2]]).all() and o.errors[0] is None


def test_registry_names_sweeps_and_errors():
    assert {"loss", "zlib", "lowercase", "min_k", "min_k_pp", "reference_diff", "reference_ratio", "recall", "dc_pdd",
            "neighbourhood", "gradnorm", "max_k", "perturb_diff", "perturb_ratio"} <= set(ATTACKS.names())
    assert [a.label for a in expand(["min_k"])] == [f"min_k@{k:g}" for k in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)]
    assert make_attack("min_k_pp@0.3").k == 0.3
    with pytest.raises(KeyError, match="did you mean 'min_k'"):
        make_attack("mink")
    with pytest.raises(ValueError, match="takes no @ parameter"):
        make_attack("loss@0.2")
    for bare in ("min_k@", "perturb_diff@"):  # not the default k or kind: a typo
        with pytest.raises(ValueError, match="nothing after @"):
            expand([bare])
    assert make_attack("reference_diff@2").reference == 2 and make_attack("reference_diff@2").label == "reference_diff@2"
    assert [a.label for a in expand(["reference_ratio"])] == ["reference_ratio"]  # the run gives one per model
    with pytest.raises(ValueError, match="k must lie"):
        make_attack("min_k@1.5")
    with pytest.raises(ValueError, match="listed twice"):
        expand(["min_k", "min_k@0.2"])
    for name in ATTACKS.names():  # every attack documents its paper and access
        cls = ATTACKS.get(name)
        assert cls.paper and cls.access in ("black-box", "logits", "gradients") and "Paper" in cls.__doc__


def test_swept_labels_are_unchanged_and_a_sweep_may_take_names():
    # Written out, not formatted: results.json keys and figures must not move.
    assert [a.label for a in expand(["min_k", "min_k_pp", "max_k"])] == [
        f"{name}@{k}" for name in ("min_k", "min_k_pp", "max_k")
        for k in ("0.05", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6")]
    assert make_attack("min_k@0.20").label == "min_k@0.2" and make_attack("min_k@.3").k == 0.3
    with pytest.raises(ValueError, match="min_k@big: could not convert"):
        make_attack("min_k@big")

    @dataclass(frozen=True)
    class Named(Attack):  # not registered: the label and the parsing are the class's own
        name, paper, access, sweep, sweep_values = "named", "-", "logits", "style", ("plain", "fancy")
        style: str = "plain"

    assert Named(style="fancy").label == "named@fancy" and Named.parse_sweep("0.5") == "0.5"
    assert Named.parse_sweep("fancy") == "fancy" and MinK.parse_sweep("0.5") == 0.5


def test_attack_selection():
    default = [a.label for a in select_attacks(None)]
    assert "loss" in default and "min_k@0.2" in default and "lowercase" in default
    assert not {"recall", "neighbourhood", "gradnorm", "dc_pdd", "reference_diff"} & set(default)
    assert not any(label.startswith("max_k") for label in default)  # a dataset-inference feature, named
    assert "max_k@0.2" in [a.label for a in select_attacks("all")]
    with_ref = [a.label for a in select_attacks(None, available=["reference_model", "reference_corpus"])]
    assert {"reference_diff", "reference_ratio", "dc_pdd"} <= set(with_ref)
    everything = [a.label for a in select_attacks("all")]
    assert {"recall", "neighbourhood", "gradnorm"} <= set(everything) and "dc_pdd" not in everything
    with pytest.raises(ValueError, match="reference_diff needs reference_model"):
        select_attacks("loss,reference_diff")
    assert [a.label for a in select_attacks("loss, zlib")] == ["loss", "zlib"]


class _SpyPerturber:
    """The default word swap, remembering the neighbours of its last successful call."""

    name = "word_swap"

    def __init__(self):
        from lmaudit.membership.perturb import WordSwapPerturber

        self.inner, self.made = WordSwapPerturber(), {}

    def perturb(self, texts, *, n, seed):
        out = self.inner.perturb(texts, n=n, seed=seed)
        self.made = dict(zip(texts, out))
        return out

    def describe(self):
        return self.inner.describe()


def test_one_unperturbable_document_changes_no_other_documents_neighbours(tiny_lm, corpus_texts):
    """A text without words gets its own error row, citing its id and index; every other text,
    including one that can only be perturbed with words from the others ("yes yes yes"), keeps
    the neighbours it gets when the odd text is absent."""
    good = [corpus_texts[0], "yes yes yes", corpus_texts[1]]
    spy_without, spy_with = _SpyPerturber(), _SpyPerturber()
    without = _run(tiny_lm, good, [Neighbourhood(n_neighbours=3)], perturber=spy_without)["neighbourhood"]
    with_odd = _run(tiny_lm, [good[0], good[1], " ?! ", good[2]], [Neighbourhood(n_neighbours=3)],
                    perturber=spy_with)["neighbourhood"]
    assert spy_with.made == spy_without.made and set(spy_with.made) == set(good)
    assert with_odd.errors[2] == "no neighbours: document 'd2' (index 2) has no word to replace"
    assert [with_odd.errors[i] for i in (0, 1, 3)] == [None] * 3
    # Same neighbours, so the same scores up to float32 differences from other batch paddings.
    np.testing.assert_allclose(with_odd.values[[0, 1, 3]], without.values, rtol=1e-5)


# Texts whose lowercased kept part takes fewer tokens than 15: truncating the lowercased whole
# text instead would score more of it than the text's loss covers.
_TRUNCATED = (12, 17, 18, 0)


def _kept_texts(lm, texts, width):
    """Each text's first ``width`` tokens decoded, checked to re-encode to exactly those tokens."""
    out = []
    for text in texts:
        ids = lm.encode([text])[0][:width]
        out.append(lm.decode(ids))
        assert lm.encode([out[-1]])[0] == ids
    return out


@pytest.mark.parametrize("attack", ["zlib", "lowercase"])
def test_zlib_and_lowercase_under_truncation_describe_the_kept_text(tiny_lm, corpus_texts, attack):
    """overflow="truncate" at max_length 16: the loss covers BOS + the first 15 tokens, so the
    compressed size and the lowercased text must be those of the same 15 tokens."""
    texts = [*(corpus_texts[i] for i in _TRUNCATED), "short text"]
    assert len(tiny_lm.encode([texts[0]])[0]) > 100  # truncation really happens
    out = _run(tiny_lm, texts, expand([attack]), policy=ScoringPolicy(max_length=16, overflow="truncate"))[attack]
    for i, kept in enumerate(_kept_texts(tiny_lm, texts, 15)):
        lp = _brute(tiny_lm, kept)[1]
        if attack == "zlib":
            assert out.values[i] == pytest.approx(lp.mean() / len(zlib.compress(kept.encode())), rel=1e-4)
        else:
            low_ids, low_lp, _, _ = _brute(tiny_lm, kept.lower())
            assert len(low_ids) <= 15  # these texts' lowercased kept parts fit one window
            assert out.values[i] == pytest.approx(low_lp.mean() / lp.mean(), rel=1e-4)


def test_perturbation_under_truncation_edits_the_kept_text(tiny_lm, corpus_texts):
    """As lowercase: the edit applies to the 15 tokens the loss covers, not to the whole text
    (deletion, so the edited copy fits in one window and brute force needs none)."""
    texts = [corpus_texts[i] for i in _TRUNCATED]
    policy = ScoringPolicy(max_length=16, overflow="truncate")
    out = _run(tiny_lm, texts, expand(["perturb_diff@deletion"]), policy=policy)["perturb_diff@deletion"]
    for i, kept in enumerate(_kept_texts(tiny_lm, texts, 15)):
        ids, lp, _, _ = _brute(tiny_lm, apply_edit("deletion", kept, seed=0))
        assert len(ids) < 15
        assert out.values[i] == pytest.approx(-lp.mean() + _brute(tiny_lm, kept)[1].mean(), abs=1e-4)


def test_a_perturb_error_naming_no_text_stops_the_run_instead_of_looping(tiny_lm, corpus_texts):
    from lmaudit.membership.perturb import PerturbError

    class Refuses:
        name = "refuses"

        def perturb(self, texts, *, n, seed):
            raise PerturbError({})

        def describe(self):
            return {"name": self.name}

    with pytest.raises(ValueError, match="naming no text"):
        _run(tiny_lm, corpus_texts[:3], [Neighbourhood(n_neighbours=2)], perturber=Refuses())

