"""The goldfish loss (lmaudit.takedown.goldfish): the mask against a brute-force recomputation
that calls xxhash itself, its statistics, and the collator inside a real model's loss and a
Hugging Face Trainer."""

import math
import struct

import numpy as np
import pytest
import torch
import xxhash

from lmaudit.takedown.goldfish import GoldfishCollator, GoldfishConfig, goldfish_labels, goldfish_mask


def brute_force(ids, *, k, h, seed):
    """Drop position i iff XXH3-64 of the (up to) h ids before it, each packed as 4 little-endian
    bytes, seeded, is 0 mod k; written without numpy so it shares nothing with the module."""
    out = [False]
    for i in range(1, len(ids)):
        context = b"".join(struct.pack("<I", int(t)) for t in ids[max(0, i - h) : i])
        out.append(xxhash.xxh3_64_intdigest(context, seed=seed) % k == 0)
    return out


@pytest.mark.parametrize("k,h,key", [(4, 13, 0), (2, 1, 7), (3, 5, 2**64 - 1), (7, 30, 123456789)])
def test_mask_equals_brute_force(k, h, key):
    rng = np.random.default_rng(k * 1000 + h)
    for n in (1, 2, h, h + 1, 200):
        ids = rng.integers(0, 50_000, size=n).tolist()
        want = brute_force(ids, k=k, h=h, seed=key)
        cfg = GoldfishConfig(k=k, h=h, key=key)
        assert goldfish_mask(ids, cfg).tolist() == want
        assert goldfish_mask(np.array(ids, dtype=np.int64), cfg).tolist() == want  # numpy in
        assert goldfish_mask(torch.tensor(ids), cfg).tolist() == want  # torch in


def test_a_string_key_seeds_with_its_own_hash():
    ids = list(range(5, 105))
    seed = xxhash.xxh3_64_intdigest("takedown-2024".encode("utf-8"))
    assert goldfish_mask(ids, GoldfishConfig(key="takedown-2024")).tolist() == brute_force(ids, k=4, h=13, seed=seed)
    assert goldfish_mask(ids, GoldfishConfig(key="other")).tolist() != goldfish_mask(ids, GoldfishConfig(key=0)).tolist()


def test_position_zero_is_never_dropped_and_empty_is_fine():
    for key in range(200):  # the first target is decided by BOS alone: dropped for ~1/k of keys
        assert not goldfish_mask([1, 2, 3], GoldfishConfig(key=key))[0]
    assert goldfish_mask([], GoldfishConfig()).shape == (0,)
    assert sum(goldfish_mask([1, 2], GoldfishConfig(k=4, key=key))[1] for key in range(400)) in range(70, 131)


def test_static_scheme_drops_every_kth_position():
    mask = goldfish_mask(list(range(23)), GoldfishConfig(k=5, scheme="static"))
    assert np.flatnonzero(mask).tolist() == [5, 10, 15, 20]
    assert goldfish_mask([9] * 23, GoldfishConfig(k=5, scheme="static")).tolist() == mask.tolist()  # text-blind


def test_permuting_the_context_changes_decisions():
    # A product (or any symmetric) hash gives a permuted context the same decision every time;
    # an order-sensitive one disagrees as two independent draws do: 2·(1/k)(1 − 1/k) = 0.375.
    rng = np.random.default_rng(1)
    cfg, n = GoldfishConfig(k=4, h=13), 4000
    disagree = 0
    for _ in range(n):
        context = rng.integers(1, 50_000, size=13)
        target = rng.integers(1, 50_000)
        shuffled = rng.permutation(context)
        a = goldfish_mask([*context, target], cfg)[13]
        b = goldfish_mask([*shuffled, target], cfg)[13]
        disagree += a != b
    assert abs(disagree / n - 0.375) < 4 * math.sqrt(0.375 * 0.625 / n)


def test_token_zero_is_an_id_like_any_other():
    # The public product hash is 0 whenever a context holds token 0, so those tokens all get one
    # decision. Here sequences half made of 0s still drop 1/k of their tokens ...
    rng = np.random.default_rng(2)
    ids = np.where(rng.random(100_000) < 0.5, 0, rng.integers(1, 1000, size=100_000))
    frac = goldfish_mask(ids, GoldfishConfig(k=4)).mean()
    assert abs(frac - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(ids))
    # ... and a run of 0s is one repeated context past its first h tokens, so it gets one decision
    # (any context hash must): dropped for ~1/k of the keys, not for all or none of them.
    zeros = [0] * 40
    masks = np.array([goldfish_mask(zeros, GoldfishConfig(k=4, h=13, key=key)) for key in range(800)])
    assert (masks[:, 13:] == masks[:, [13]]).all()
    assert abs(masks[:, 20].mean() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 800)
    # Within one key, the first h positions see contexts of 1..h zeros: they differ from each other.
    assert 0 < masks[:, 1:13].mean() < 1 and len({tuple(m[1:14]) for m in masks}) > 100


@pytest.mark.parametrize("k", [2, 4, 7])
def test_drop_fraction_is_one_in_k(k):
    ids = np.random.default_rng(k).integers(0, 50_000, size=200_001)
    frac = goldfish_mask(ids, GoldfishConfig(k=k, h=13, key=99))[1:].mean()
    p = 1 / k
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / 200_000)


def test_a_passage_drops_the_same_tokens_wherever_it_appears():
    rng = np.random.default_rng(3)
    passage = rng.integers(0, 50_000, size=120).tolist()
    cfg = GoldfishConfig(k=4, h=13, key=5)
    masks = []
    for offset in (0, 1, 7, 50, 301):
        seq = [1, *rng.integers(0, 50_000, size=offset).tolist(), *passage, *rng.integers(0, 50_000, size=9).tolist()]
        start = 1 + offset
        masks.append(goldfish_mask(seq, cfg)[start : start + len(passage)])
    for m in masks[1:]:
        assert (m[13:] == masks[0][13:]).all()  # beyond its first h tokens, the context is the passage's own
    assert masks[0][13:].sum() > 10


def test_config_validation_and_dict():
    for bad, match in [({"k": 1}, "k must be at least 2"), ({"h": 0}, "h must be at least 1"),
                       ({"scheme": "table"}, "scheme must be one of hash, static"), ({"key": -1}, r"\[0, 2\*\*64\)"),
                       ({"k": 4.0}, "k must be an integer"), ({"key": 1.5}, "key must be an int or a string")]:
        with pytest.raises(ValueError, match=match):
            GoldfishConfig(**bad)
    cfg = GoldfishConfig(k=3, h=8, key="x", scheme="hash")
    assert cfg.to_dict() == {"k": 3, "h": 8, "key": "x", "scheme": "hash"}
    assert GoldfishConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="pass input_ids"):
        goldfish_mask([1, -100, 3], cfg)
    with pytest.raises(ValueError, match="1-D"):
        goldfish_mask([[1, 2]], cfg)


def test_labels_respect_padding_side_packing_and_existing_ignores():
    cfg = GoldfishConfig(k=3, h=4, key=11)
    rng = np.random.default_rng(4)
    a, b = rng.integers(3, 500, size=30).tolist(), rng.integers(3, 500, size=18).tolist()
    want_a, want_b = brute_force(a, k=3, h=4, seed=11), brute_force(b, k=3, h=4, seed=11)
    for side in ("right", "left"):
        ids = torch.zeros((2, 30), dtype=torch.long)
        mask = torch.zeros((2, 30), dtype=torch.long)
        ids[0], mask[0] = torch.tensor(a), 1
        cols = slice(12, 30) if side == "left" else slice(0, 18)
        ids[1, cols], mask[1, cols] = torch.tensor(b), 1
        labels = ids.masked_fill(mask == 0, -100)
        labels[0, 2] = -100  # e.g. a prompt token: stays ignored
        out = goldfish_labels(ids, labels, cfg, attention_mask=mask)
        assert out[0].tolist() == [-100 if (d or i == 2) else t for i, (t, d) in enumerate(zip(a, want_a))]
        assert out[1, cols].tolist() == [-100 if d else t for t, d in zip(b, want_b)]
        assert (out[1][mask[1] == 0] == -100).all() and labels[0, 3] == a[3]  # input unchanged
    # Two documents packed into one row, position ids restarting at 0: each gets its own mask.
    packed = torch.tensor([a + b])
    positions = torch.tensor([list(range(30)) + list(range(18))])
    out = goldfish_labels(packed, packed.clone(), cfg, position_ids=positions)
    drop = (out[0] == -100).tolist()
    assert drop == want_a + want_b
    assert goldfish_labels(packed.numpy(), packed.numpy(), cfg, position_ids=positions.numpy()).tolist() == out.tolist()


def _tiny_llama(vocab=97):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                        bos_token_id=1, eos_token_id=2, pad_token_id=0))


def _features(rng, n=4, vocab=97):
    return [{"input_ids": [1, *rng.integers(3, vocab, size=int(rng.integers(20, 60))).tolist(), 2]} for _ in range(n)]


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_gradient_is_that_of_the_kept_tokens_alone(side):
    model = _tiny_llama()
    rng = np.random.default_rng(5)
    features = _features(rng)
    cfg = GoldfishConfig(k=4, h=13, key=3)
    collate = GoldfishCollator(cfg, pad_token_id=0, padding_side=side)
    batch = collate(features)
    got = _grads(model, model(**batch).loss)

    # By hand: log p of each kept target (brute-force mask, on each unpadded sequence), averaged.
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    terms, dropped, targets = [], 0, 0
    for row, f in enumerate(features):
        seq = f["input_ids"]
        start = batch["input_ids"].shape[1] - len(seq) if side == "left" else 0
        drop = brute_force(seq, k=4, h=13, seed=3)
        for i in range(1, len(seq)):
            targets += 1
            dropped += drop[i]
            if not drop[i]:
                terms.append(logp[row, start + i - 1, seq[i]])
    want = _grads(model, -torch.stack(terms).mean())
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert (collate.n_batches, collate.n_targets, collate.n_dropped) == (1, targets, dropped) and dropped > 0

    # Labels at dropped positions cannot change the gradient; at a kept one they do.
    changed = [{**f, "labels": list(f["input_ids"])} for f in features]
    drop0 = brute_force(features[0]["input_ids"], k=4, h=13, seed=3)
    i_drop = drop0.index(True)
    changed[0]["labels"][i_drop] = 50 if changed[0]["labels"][i_drop] != 50 else 51
    again = GoldfishCollator(cfg, pad_token_id=0, padding_side=side)(changed)
    assert torch.equal(again["labels"], batch["labels"])
    for g, w in zip(_grads(model, model(**again).loss), got):
        assert torch.equal(g, w)
    i_kept = next(i for i in range(1, len(drop0)) if not drop0[i])
    changed[0]["labels"][i_kept] = 50 if changed[0]["labels"][i_kept] != 50 else 51
    other = GoldfishCollator(cfg, pad_token_id=0, padding_side=side)(changed)
    assert any(not torch.equal(g, w) for g, w in zip(_grads(model, model(**other).loss), got))


def test_collator_wraps_a_base_collator_and_keeps_its_ignores():
    from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    vocab = {f"t{i}": i for i in range(97)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t3")), pad_token="t0")
    rng = np.random.default_rng(6)
    features = _features(rng, n=3)
    for f in features:  # SFT: the first 5 tokens are the prompt, never a target
        f["labels"] = [-100] * 5 + f["input_ids"][5:]
    collate = GoldfishCollator(GoldfishConfig(k=2, h=3), base=DataCollatorForSeq2Seq(tok, padding=True))
    batch = collate(features)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        drop = brute_force(f["input_ids"], k=2, h=3, seed=0)
        want = [-100 if (i < 5 or drop[i]) else t for i, t in enumerate(f["input_ids"])]
        assert batch["labels"][row, :n].tolist() == want
    assert collate.n_targets == sum(len(f["input_ids"]) - 5 for f in features)


def test_collator_needs_a_pad_id_for_ragged_batches():
    with pytest.raises(ValueError, match="needs pad_token_id"):
        GoldfishCollator(GoldfishConfig())([{"input_ids": [1, 2, 3]}, {"input_ids": [1, 2]}])
    batch = GoldfishCollator(GoldfishConfig(k=2, h=1))([{"input_ids": [1, 2, 3]}, {"input_ids": [1, 4, 3]}])
    assert batch["attention_mask"].all()


def test_trainer_runs_with_the_collator(tmp_path):
    from transformers import Trainer, TrainingArguments

    torch.set_num_threads(1)
    model = _tiny_llama()
    before = [p.detach().clone() for p in model.parameters()]
    rng = np.random.default_rng(7)
    collate = GoldfishCollator(GoldfishConfig(k=4, h=13), pad_token_id=0)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                             report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=_features(rng, n=12), data_collator=collate)
    trainer.train()
    assert collate.n_batches >= 3 and 0.1 < collate.n_dropped / collate.n_targets < 0.4
    assert [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_the_resume_key_names_the_goldfish_config_only_when_set():
    from lmaudit.testbed.train import TrainConfig, training_key

    model, cfg, seqs = _tiny_llama(), TrainConfig(), [[1, 5, 6, 2], [1, 7, 2]]
    plain = training_key(model, seqs, cfg, seed=0)
    assert training_key(model, seqs, cfg, seed=0, goldfish=None) == plain
    keys = {training_key(model, seqs, cfg, seed=0, goldfish=g)
            for g in (GoldfishConfig(), GoldfishConfig(k=3), GoldfishConfig(h=12), GoldfishConfig(key="a"),
                      GoldfishConfig(scheme="static"))}
    assert len(keys) == 5 and plain not in keys
