"""The unlearning loop and the model-arithmetic methods, against independent computations on tiny
models: what one step does, what LoRA touches, identities at α = 0, the WHP combination by hand,
the NPO reference cache, gradient accumulation, padding and bf16."""

import copy

import numpy as np
import pytest
import torch

from lmaudit.data import Record
from lmaudit.models.base import GenerationConfig
from lmaudit.models.hf import HFModel
from lmaudit.models.whp import WHPModel
from lmaudit.unlearning.batch import sequence_logprobs
from lmaudit.unlearning.train import UnlearnConfig, _collate, _loss_batch, check_ids, unlearn


def _records(texts, prefix):
    return [Record(id=f"{prefix}{i}", text=t, source=prefix, line=i + 1) for i, t in enumerate(texts)]


@pytest.fixture
def data(corpus_texts):
    # Documents of different lengths, so batches are padded.
    return _records(corpus_texts[:8], "f"), _records(corpus_texts[8:24], "r")


@pytest.fixture
def llama(make_tiny, tokenizer):
    return make_tiny("llama", len(tokenizer))  # no dropout: train and eval forwards agree


def _nll(model, tokenizer, records):
    """Mean token NLL of each document, BOS prepended, one document at a time (no padding)."""
    out = []
    with torch.no_grad():
        for r in records:
            ids = torch.tensor([[1, *tokenizer(r.text, add_special_tokens=False)["input_ids"]]])
            out.append(model(input_ids=ids, labels=ids).loss.item())
    return np.array(out)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_one_gradient_ascent_step_raises_the_forget_loss(llama, tokenizer, data):
    forget, _ = data
    before = _nll(llama, tokenizer, forget)
    r = unlearn(llama, tokenizer, forget, None, UnlearnConfig(method="ga", lr=1e-2, epochs=1, batch_size=8))
    assert r["figures"]["steps"] == 1 and r["model"] is llama  # trained in place
    assert _nll(llama, tokenizer, forget).mean() > before.mean() + 0.01


def test_lora_updates_only_the_adapters_then_merges_into_a_plain_model(llama, tokenizer, data):
    forget, _ = data
    original = _params(llama)
    seen = {}

    def on_epoch(epoch, model):
        seen.update({n: p.detach().clone() for n, p in model.named_parameters()})

    config = UnlearnConfig(method="ga", lr=1e-2, epochs=1, batch_size=4, lora_r=4,
                           lora_target_modules=("q_proj", "v_proj"))
    r = unlearn(llama, tokenizer, forget, None, config, on_epoch=on_epoch)
    base = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p for n, p in seen.items() if "lora_" not in n}
    assert set(base) == set(original)
    assert all(torch.equal(base[n], original[n]) for n in original)  # base weights bit-identical
    lora_b = [p for n, p in seen.items() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # initialised at zero, now trained
    # Merged: a plain model whose only changed weights are those LoRA adapted.
    merged = dict(r["model"].named_parameters())
    assert set(merged) == set(original) and all(p.requires_grad for p in merged.values())
    changed = {n for n in original if not torch.equal(merged[n], original[n])}
    assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in changed)


def test_task_vector_with_alpha_zero_is_the_identity(llama, tokenizer, data):
    forget, _ = data
    base = copy.deepcopy(llama)
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    r = unlearn(llama, tokenizer, forget, None, UnlearnConfig(method="task_vector", alpha=0.0, lr=1e-2, epochs=1))
    with torch.no_grad():
        assert torch.equal(r["model"](input_ids=ids).logits, base(input_ids=ids).logits)
    # and with α = 1 the weights move opposite to fine-tuning: θ − (θ_ft − θ)
    r1 = unlearn(copy.deepcopy(base), tokenizer, forget, None, UnlearnConfig(method="task_vector", lr=1e-2, epochs=1))
    assert not torch.equal(r1["model"].lm_head.weight, base.lm_head.weight)


def test_whp_token_stats_and_generation_are_the_combined_logits(make_tiny, tokenizer):
    base = make_tiny("llama", len(tokenizer))
    torch.manual_seed(1)
    reinforced = copy.deepcopy(base)
    with torch.no_grad():
        for p in reinforced.parameters():
            p.add_(0.05 * torch.randn_like(p))
    alpha = 0.7
    whp = WHPModel(HFModel(base, tokenizer), HFModel(reinforced, tokenizer), alpha=alpha)
    seqs = [[1, 40, 41, 42, 43, 44], [1, 50, 51]]
    stats = whp.token_stats(seqs, [1, 1])
    for seq, st in zip(seqs, stats):
        with torch.no_grad():
            zb = base(input_ids=torch.tensor([seq])).logits[0, :-1].double()
            zr = reinforced(input_ids=torch.tensor([seq])).logits[0, :-1].double()
        logp = torch.log_softmax(zb - alpha * torch.clamp(zr - zb, min=0), -1)  # by hand, float64
        np.testing.assert_allclose(st.logprob, logp[torch.arange(len(seq) - 1), seq[1:]].numpy(), atol=1e-5)
        np.testing.assert_allclose(st.entropy, -(logp.exp() * logp).sum(-1).numpy(), atol=1e-4)
    # Greedy generation is the argmax loop over the combined logits (prompts of unequal lengths).
    out = whp.generate(seqs, GenerationConfig(max_new_tokens=4, stop_at_eos=False))
    for seq, new in zip(seqs, out):
        ctx = list(seq)
        for tok in new:
            with torch.no_grad():
                zb = base(input_ids=torch.tensor([ctx])).logits[0, -1]
                zr = reinforced(input_ids=torch.tensor([ctx])).logits[0, -1]
            assert tok == int((zb - alpha * torch.relu(zr - zb)).argmax())
            ctx.append(tok)
    sampled = whp.generate(seqs, GenerationConfig(max_new_tokens=4, do_sample=True, top_k=5, seed=3))
    assert sampled == whp.generate(seqs, GenerationConfig(max_new_tokens=4, do_sample=True, top_k=5, seed=3))
    # The identity covers both models and α.
    assert whp.fingerprint() != WHPModel(HFModel(base, tokenizer), HFModel(reinforced, tokenizer), 0.5).fingerprint()


def test_whp_with_alpha_zero_is_the_base_model(llama, tokenizer, data):
    forget, _ = data
    base = copy.deepcopy(llama)
    seen = []
    r = unlearn(llama, tokenizer, forget, None, UnlearnConfig(method="whp", alpha=0.0, lr=1e-2, epochs=1),
                on_epoch=lambda e, m: seen.append(m))
    assert isinstance(seen[0], WHPModel)
    whp = WHPModel(HFModel(base, tokenizer), HFModel(r["model"], tokenizer), alpha=0.0)
    seqs = [[1, 40, 41, 42, 43]]
    assert not torch.equal(r["model"].lm_head.weight, base.lm_head.weight)  # reinforced really differs
    for a, b in zip(whp.token_stats(seqs, [1]), HFModel(base, tokenizer).token_stats(seqs, [1])):
        np.testing.assert_array_equal(a.logprob, b.logprob)


def test_cached_reference_log_probs_match_recomputing_them(llama, tokenizer, data):
    forget, _ = data
    runs = {}
    for mode in ("cached", "recompute"):
        model = copy.deepcopy(llama)
        r = unlearn(model, tokenizer, forget, None,
                    UnlearnConfig(method="npo", lr=5e-3, epochs=3, batch_size=4, ref_logprobs=mode))
        runs[mode] = (r["figures"], _params(model))
    (fc, pc), (fr, pr) = runs["cached"], runs["recompute"]
    assert fc["reference"]["forget"] == "cached log-probs" and fr["reference"]["forget"] == "frozen copy"
    # At the first step θ is the reference: every log-ratio is 0 and NPO is (2/β)·log 2.
    assert fc["loss_curve"][0]["forget"] == pytest.approx(2 / 0.1 * np.log(2), abs=1e-4)
    for a, b in zip(fc["loss_curve"], fr["loss_curve"]):
        assert a["forget"] == pytest.approx(b["forget"], abs=1e-4)
    assert all(torch.allclose(pc[n], pr[n], atol=1e-5) for n in pc)


def test_two_micro_batches_of_four_equal_one_batch_of_eight(llama, tokenizer, data):
    forget, _ = data
    results = []
    for batch_size, accum in ((4, 2), (8, 1)):
        model = copy.deepcopy(llama)
        r = unlearn(model, tokenizer, forget, None, UnlearnConfig(method="npo", lr=1e-3, epochs=2,
                                                                  batch_size=batch_size, grad_accum=accum))
        results.append((r["figures"], _params(model)))
    (f1, p1), (f2, p2) = results
    assert f1["steps"] == f2["steps"] == 2
    # NPO averages per sequence, so the accumulated gradient is the big batch's: compare its
    # norm (Adam's update alone would hide a wrong scale) and the weights.
    for a, b in zip(f1["loss_curve"], f2["loss_curve"]):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
        assert a["forget"] == pytest.approx(b["forget"], abs=1e-4)
    # Adam divides by √v, which magnifies float error where a gradient is near 0: 1% of lr.
    assert all(torch.allclose(p1[n], p2[n], atol=1e-5) for n in p1)


def test_padding_is_masked_out_of_each_sequence_loss(llama, tokenizer, data):
    forget, _ = data
    seqs = [[1, *tokenizer(r.text, add_special_tokens=False)["input_ids"]] for r in forget[:3]]
    assert len({len(s) for s in seqs}) > 1
    collate = _collate(seqs, pad_token_id=0)
    with torch.no_grad():
        batch = collate([0, 1, 2])
        padded = sequence_logprobs(*_fields(_loss_batch(llama(**_inputs(batch)).logits, batch)))
        alone = [sequence_logprobs(*_fields(_loss_batch(llama(**_inputs(b)).logits, b)))
                 for b in (collate([i]) for i in range(3))]
    np.testing.assert_allclose(padded.numpy(), torch.cat(alone).numpy(), atol=1e-4)


def _inputs(batch):
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def _fields(lb):
    return lb.logits, lb.labels, lb.mask


def test_bf16_mixed_precision_trains_with_a_retain_kl(llama, tokenizer, data):
    forget, retain = data
    before = _params(llama)
    r = unlearn(llama, tokenizer, forget, retain, UnlearnConfig(method="npo", retain_loss="kl", dtype="bfloat16",
                                                                lr=1e-3, epochs=1))
    f = r["figures"]
    assert f["mixed_precision"] == "bf16"
    assert f["reference"] == {"forget": "cached log-probs", "retain": "frozen copy"}
    assert all(np.isfinite([s["forget"], s["retain"], s["total"]]).all() for s in f["loss_curve"])
    assert f["loss_curve"][0]["retain"] == pytest.approx(0, abs=1e-3)  # KL to itself at the start
    after = dict(r["model"].named_parameters())
    assert all(p.dtype == torch.float32 for p in after.values())  # master weights stay float32
    assert any(not torch.equal(after[n], before[n]) for n in before)


def test_bad_inputs_are_errors_naming_the_documents(llama, tokenizer, data):
    forget, retain = data
    with pytest.raises(ValueError, match="f1, f3"):
        check_ids(forget, [*retain, Record(id="f3", text="x", source="r", line=1),
                           Record(id="f1", text="y", source="r", line=2)])
    with pytest.raises(ValueError, match="forget document 'f0' has .* more than max_length=8"):
        unlearn(llama, tokenizer, forget, None, UnlearnConfig(method="ga", max_length=8))
    with pytest.raises(ValueError, match="needs a retain set"):
        unlearn(llama, tokenizer, forget, None, UnlearnConfig(method="ga", retain_loss="nll"))
    with pytest.raises(KeyError, match="did you mean 'kl'"):
        UnlearnConfig(retain_loss="kll")
    with pytest.raises(ValueError, match="unknown method 'npx'"):
        UnlearnConfig(method="npx")


def test_accumulation_steps_at_the_end_of_each_forget_epoch_with_a_retain_set(llama, tokenizer, data):
    """With a retain loss too, the forget loader decides when the optimiser steps: 5 micro-batches
    with grad_accum 2 step after micro-batches 2, 4 and 5 of every epoch (the last window is
    short), never carrying an epoch's gradient into the next."""
    forget, retain = data
    forget = forget[:5]
    r = unlearn(copy.deepcopy(llama), tokenizer, forget, retain,
                UnlearnConfig(method="ga", retain_loss="nll", lr=1e-3, epochs=2, batch_size=1, grad_accum=2))
    curve = r["figures"]["loss_curve"]
    assert r["figures"]["steps"] == 6
    assert [c["epoch"] for c in curve] == [1, 1, 1, 2, 2, 2]
