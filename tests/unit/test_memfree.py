"""MemFree (lmaudit.takedown.memfree): the n-gram index against Python sets, the processor
against a brute-force decoder that tries candidates in score order, the prompt/output
boundary, exact equality with plain greedy decoding when nothing is protected, and the Bloom
filter's false-positive rate measured on random non-members."""

from __future__ import annotations

import json
from itertools import product
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmaudit.models.base import GenerationConfig
from lmaudit.models.fake import FakeLM
from lmaudit.models.hf import HFModel
from lmaudit.takedown import memfree
from lmaudit.takedown.memfree import (MemFreeProcessor, NgramIndex, NoNgramsError, TokenizerMismatchError,
                                      short_sequences)

FP = "test-tokenizer"


def ngram_set(sequences, n):
    return {tuple(int(t) for t in s[i : i + n]) for s in sequences for i in range(len(s) - n + 1)}


def protected_endings(full, start, protected, n):
    """The protected n-grams of ``full`` that end at or after position ``start`` (in the
    generated part), including those that begin inside the prompt."""
    return [tuple(full[j - n + 1 : j + 1]) for j in range(max(start, n - 1), len(full))
            if tuple(full[j - n + 1 : j + 1]) in protected]


def first_allowed(z, context, protected, n):
    """The brute-force rule: candidates in score order (ties: lowest id, as argmax), the first
    that completes no protected n-gram; the argmax if every one does."""
    order = sorted(range(len(z)), key=lambda t: (-float(z[t]), t))
    if len(context) < n - 1:
        return order[0]
    head = tuple(context[len(context) - n + 1 :]) if n > 1 else ()
    for t in order:
        if head + (t,) not in protected:
            return t
    return order[0]


corpora = st.lists(st.lists(st.integers(0, 4), max_size=25), min_size=1, max_size=8)


# ------------------------------------------------------------------------------ the index
def test_bad_corpora_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="n must be an integer of at least 2"):
        NgramIndex.build([[1, 2, 3]], n=1, tokenizer_fingerprint=FP)
    with pytest.raises(NoNgramsError, match="corpus is empty"):
        NgramIndex.build([], n=3, tokenizer_fingerprint=FP)
    seqs = [[1, 2], [], [4, 5, 6, 7][:2]]
    with pytest.raises(NoNgramsError, match=r"every one of the 3 .* shorter than n=3 .*indices 0, 1, 2") as err:
        NgramIndex.build(seqs, n=3, tokenizer_fingerprint=FP)
    assert err.value.short == [0, 1, 2] == short_sequences(seqs, 3)
    assert short_sequences([[1, 2, 3], [1], [1, 2, 3, 4]], 3) == [1]
    with pytest.raises(ValueError, match="sequence 1, position 2: token id -5"):
        NgramIndex.build([[1, 2, 3], [1, 2, -5]], n=2, tokenizer_fingerprint=FP)
    with pytest.raises(ValueError, match="tokenizer_fingerprint"):
        NgramIndex.build([[1, 2, 3]], n=2, tokenizer_fingerprint="")
    with pytest.raises(ValueError, match="kind"):
        NgramIndex.build([[1, 2, 3]], n=2, tokenizer_fingerprint=FP, kind="hash")
    with pytest.raises(TypeError, match="read twice"):
        NgramIndex.build(iter([[1, 2, 3]]), n=2, tokenizer_fingerprint=FP)
    empty = NgramIndex.build([[1, 2]], n=3, tokenizer_fingerprint=FP, allow_empty=True)
    assert empty.meta["ngrams"] == 0 and empty.meta["short_documents"] == 1 and not empty.contains([1, 2, 3])


@settings(max_examples=60, deadline=None)
@given(corpora, st.integers(2, 4))
def test_exact_index_answers_like_a_python_set(seqs, n):
    truth = ngram_set(seqs, n)
    index = NgramIndex.build(seqs, n, tokenizer_fingerprint=FP, kind="exact", allow_empty=True)
    assert index.meta["ngrams"] == len(truth)
    assert index.meta["ngram_occurrences"] == sum(max(0, len(s) - n + 1) for s in seqs)
    assert index.meta["short_documents"] == sum(len(s) < n for s in seqs)
    assert index.meta["tokens"] == sum(map(len, seqs)) and index.meta["documents"] == len(seqs)
    for gram in product(range(6), repeat=n):
        assert index.contains(gram) == (gram in truth)
    for head in product(range(6), repeat=n - 1):
        assert index.banned_next(head).tolist() == sorted(g[-1] for g in truth if g[:-1] == head)
        assert index.may_follow(head) == any(g[:-1] == head for g in truth)


def test_documents_are_not_joined():
    index = NgramIndex.build([[1, 2, 3], [4, 5, 6]], n=3, tokenizer_fingerprint=FP)
    assert index.contains([1, 2, 3]) and index.contains([4, 5, 6])
    assert not index.contains([2, 3, 4]) and not index.contains([3, 4, 5])


def test_exact_index_stays_exact_when_prefix_keys_collide(monkeypatch):
    """With a hash that maps many prefixes to one key, the full prefix comparison still
    keeps every answer exact (the path a 64-bit collision would take)."""
    weak = lambda prefixes: (np.asarray(prefixes, dtype=np.int64).sum(axis=1) % 3).astype(np.uint64)  # noqa: E731
    monkeypatch.setattr(memfree, "_prefix_keys", weak)
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 6, rng.integers(3, 30)) for _ in range(12)]
    truth = ngram_set(seqs, 3)
    index = NgramIndex.build(seqs, 3, tokenizer_fingerprint=FP, kind="exact")
    assert index.meta["ngrams"] == len(truth)
    for gram in product(range(7), repeat=3):
        assert index.contains(gram) == (gram in truth)
    prefixes = np.array(list(product(range(7), repeat=2)))
    rows, tokens = index.banned_pairs(prefixes)
    got = {(tuple(prefixes[r]), int(t)) for r, t in zip(rows, tokens)}
    assert got == {(g[:2], g[2]) for g in truth}


def test_exact_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 8, rng.integers(0, 40)) for _ in range(30)]
    index = NgramIndex.build(seqs, 3, tokenizer_fingerprint=FP, source="unit test")
    assert index.kind == "exact"
    index.save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / "memfree_index.json").read_text())
    assert meta["n"] == 3 and meta["kind"] == "exact" and meta["ngrams"] == len(ngram_set(seqs, 3))
    assert meta["bytes_on_disk"] == (tmp_path / "ix" / "ngrams.npy").stat().st_size
    assert meta["tokenizer_fingerprint"] == FP and meta["source"] == "unit test" and meta["format_version"] == 1
    assert {"lmaudit_version", "build_seconds", "memory_bytes", "documents", "tokens", "short_documents"} <= set(meta)
    loaded = NgramIndex.load(tmp_path / "ix", tokenizer_fingerprint=FP)
    for gram in product(range(9), repeat=3):
        assert loaded.contains(gram) == index.contains(gram)


def test_bloom_save_load_round_trip_gives_identical_answers(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 8, rng.integers(0, 40)) for _ in range(30)]
    index = NgramIndex.build(seqs, 3, tokenizer_fingerprint=FP, kind="bloom", fp_rate=0.05)
    index.save(tmp_path / "ix")
    loaded = NgramIndex.load(tmp_path / "ix")
    assert loaded.kind == "bloom" and loaded.meta["fp_rate"] == 0.05
    assert loaded.meta["bytes_on_disk"] == sum((tmp_path / "ix" / f).stat().st_size for f in loaded.meta["files"])
    for gram in product(range(9), repeat=3):
        assert loaded.contains(gram) == index.contains(gram)
        assert loaded.may_follow(gram[:2]) == index.may_follow(gram[:2])


def test_a_different_tokenizer_is_refused(tmp_path):
    NgramIndex.build([[1, 2, 3]], 2, tokenizer_fingerprint="tok-A").save(tmp_path / "ix")
    with pytest.raises(TokenizerMismatchError) as err:
        NgramIndex.load(tmp_path / "ix", tokenizer_fingerprint="tok-B")
    assert "tok-A" in str(err.value) and "tok-B" in str(err.value) and str(tmp_path / "ix") in str(err.value)
    assert NgramIndex.load(tmp_path / "ix").contains([1, 2])  # no fingerprint given: no check
    with pytest.raises(FileNotFoundError, match="not a MemFree index"):
        NgramIndex.load(tmp_path)


@pytest.mark.parametrize("fp_rate", [1e-2, 1e-3])
def test_bloom_never_misses_and_its_false_positive_rate_is_as_configured(fp_rate):
    rng = np.random.default_rng(7)
    seqs = [rng.integers(0, 1000, 204) for _ in range(100)]  # 20,000 4-grams, practically all distinct
    members = ngram_set(seqs, 4)
    index = NgramIndex.build(seqs, 4, tokenizer_fingerprint=FP, kind="bloom", fp_rate=fp_rate)
    assert all(index.contains(g) for g in members)  # never under-blocks
    assert all(index.may_follow(g[:3]) for g in members)
    # What matters while decoding: a protected prefix followed by another token. Only the
    # n-gram filter stands between it and a wrong ban, so the rate is the configured one.
    heads = [g[:3] for g in members]
    probes = [heads[i] + (t,) for i, t in zip(rng.integers(0, len(heads), 200_000), rng.integers(0, 1000, 200_000))]
    probes = [g for g in probes if g not in members]
    measured = sum(index.contains(g) for g in probes) / len(probes)
    # rbloom rounds the number of hash functions down, so the rate sits a little above.
    assert 0.5 * fp_rate < measured < 1.5 * fp_rate, measured
    # Random 4-grams must pass the prefix filter too: far rarer.
    randoms = [tuple(g) for g in rng.integers(0, 1000, (200_000, 4)).tolist()]
    assert sum(index.contains(g) for g in randoms if g not in members) / len(randoms) < 0.2 * fp_rate


# -------------------------------------------------------------------------- the processor
def _reference_bans(index_set, input_ids, V, n):
    out = torch.zeros(input_ids.shape[0], V, dtype=torch.bool)
    if input_ids.shape[1] >= n - 1:
        for b, row in enumerate(input_ids.tolist()):
            head = tuple(row[len(row) - n + 1 :])
            for t in range(V):
                out[b, t] = head + (t,) in index_set
    return out


@settings(max_examples=40, deadline=None)
@given(corpora, st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_exact_processor_bans_exactly_the_protected_completions(seqs, n, seed):
    g = torch.Generator().manual_seed(seed)
    B, T, V = 6, 5, 6
    input_ids = torch.randint(0, 5, (B, T), generator=g)
    if len(seqs[0]) >= n:  # one row surely ends on a protected prefix
        input_ids[0, -(n - 1):] = torch.as_tensor(seqs[0][: n - 1])
    scores = torch.randn(B, V, generator=g)
    before = scores.clone()
    truth = ngram_set(seqs, n)
    index = NgramIndex.build(seqs, n, tokenizer_fingerprint=FP, kind="exact", allow_empty=True)
    proc = MemFreeProcessor(index)
    out = proc(input_ids, scores)
    assert torch.equal(scores, before)  # the caller's tensor is not modified
    banned = _reference_bans(truth, input_ids, V, n)
    all_banned = banned.all(dim=1)
    expect = torch.where(banned & ~all_banned[:, None], torch.tensor(float("-inf")), scores)
    assert torch.equal(out, expect)
    st_ = proc.stats()
    live = banned & ~all_banned[:, None]
    assert st_["rows_all_banned"] == int(all_banned.sum())
    assert st_["tokens_banned"] == int(live.sum()) and st_["rows_with_bans"] == int(live.any(1).sum())
    assert st_["argmax_rejected"] == int(live[torch.arange(B), scores.argmax(1)].sum())
    assert st_["steps"] == 1 and st_["rows_checked"] == B
    proc.reset_stats()
    assert proc.stats()["steps"] == 0


@settings(max_examples=40, deadline=None)
@given(corpora, st.integers(2, 4), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_bloom_processor_tests_candidates_in_score_order(seqs, n, top_clean, seed):
    """Integer scores make ties common: the order must be (score, lowest id), as argmax."""
    g = torch.Generator().manual_seed(seed)
    B, V = 6, 7
    input_ids = torch.randint(0, 5, (B, 5), generator=g)
    scores = torch.randint(-2, 3, (B, V), generator=g).float()
    index = NgramIndex.build(seqs, n, tokenizer_fingerprint=FP, kind="bloom", allow_empty=True)
    oracle = {g_ for g_ in product(range(V), repeat=n) if index.contains(g_)}  # the filter's own answers
    assert ngram_set(seqs, n) <= oracle
    proc = MemFreeProcessor(index, top_clean=top_clean)
    out = proc(input_ids, scores)
    for b in range(B):
        z, ctx = scores[b].tolist(), input_ids[b].tolist()
        order = sorted(range(V), key=lambda t: (-z[t], t))
        bad = [tuple(ctx[-(n - 1):]) + (t,) in oracle for t in order]
        if all(bad):
            assert torch.equal(out[b], scores[b])
            continue
        # Walk: ban each failing candidate until top_clean have passed; leave the rest.
        expect, passed = scores[b].clone(), 0
        for t, is_bad in zip(order, bad):
            if is_bad:
                expect[t] = float("-inf")
            else:
                passed += 1
                if passed == top_clean:
                    break
        assert torch.equal(out[b], expect), b
        assert int(out[b].argmax()) == first_allowed(z, ctx, oracle, n)


def test_processor_edge_cases():
    index = NgramIndex.build([[1, 2, 3, 4]], 4, tokenizer_fingerprint=FP)
    proc = MemFreeProcessor(index)
    scores = torch.randn(2, 6)
    assert proc(torch.tensor([[1, 2], [2, 3]]), scores) is scores  # fewer than n - 1 tokens: nothing to check
    assert proc.stats()["rows_checked"] == 0 and proc.stats()["steps"] == 1
    # Pads in the window are ordinary tokens: (0, 0, 5) protected bans 5 after two pads.
    padded = NgramIndex.build([[0, 0, 5]], 3, tokenizer_fingerprint=FP)
    out = MemFreeProcessor(padded)(torch.tensor([[0, 0, 0], [7, 0, 0]]), torch.zeros(2, 8))
    assert out[0, 5] == float("-inf") and out[1, 5] == float("-inf") and (out[:, :5] == 0).all()
    # Ids beyond the model's vocabulary are ignored; a full ban leaves the row as it was.
    tiny = NgramIndex.build([[1, 0], [1, 1], [1, 9]], 2, tokenizer_fingerprint=FP)
    proc = MemFreeProcessor(tiny)
    scores = torch.tensor([[0.0, 1.0]])
    assert torch.equal(proc(torch.tensor([[1]]), scores), scores)
    assert proc.stats()["rows_all_banned"] == 1 and proc.stats()["tokens_banned"] == 0
    # Other dtypes take torch's path instead of numpy's (as CUDA tensors do); same result.
    ids, z = torch.tensor([[1, 2, 3], [4, 2, 3]]), torch.tensor([[0.0, 1.0, 0.5, 0.0, 3.0], [0.0, 1.0, 0.5, 0.0, 3.0]])
    for kind in ("exact", "bloom"):
        proc = MemFreeProcessor(NgramIndex.build([[1, 2, 3, 4]], 4, tokenizer_fingerprint=FP, kind=kind))
        want = proc(ids, z)
        assert want[0, 4] == float("-inf") and torch.equal(want[1], z[1])
        for dtype in (torch.float64, torch.bfloat16):
            assert torch.equal(proc(ids, z.to(dtype)), want.to(dtype))
        assert proc.stats()["argmax_rejected"] == 3
    with pytest.raises(ValueError, match="top_clean"):
        MemFreeProcessor(index, top_clean=0)
    with pytest.raises(ValueError, match="max_candidates"):
        MemFreeProcessor(index, top_clean=3, max_candidates=2)


# ---------------------------------------------------------------- decoding with FakeLM
def fake_reference(lm, prompt, steps, protected, n):
    seq = list(prompt)
    for _ in range(steps):
        z = torch.as_tensor(lm.logits(seq), dtype=torch.float32).tolist()  # what FakeLM.generate scores
        seq.append(first_allowed(z, seq, protected, n))
    return seq[len(prompt):]


texts = st.lists(st.text(alphabet="ab ", min_size=0, max_size=30), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None)
@given(texts, st.integers(2, 6), st.sampled_from(["exact", "bloom"]), st.data())
def test_fakelm_greedy_never_completes_a_protected_ngram_and_matches_brute_force(docs, n, kind, data):
    """FakeLM has memorised the protected texts, so plain greedy decoding copies them: MemFree
    must steer away, including from n-grams that begin inside the prompt."""
    lm = FakeLM(docs)
    seqs = lm.encode(docs)
    if not ngram_set(seqs, n):
        return
    index = NgramIndex.build(seqs, n, tokenizer_fingerprint=lm.tokenizer_fingerprint(), kind=kind)
    protected = ngram_set(seqs, n)
    doc = data.draw(st.sampled_from([s for s in seqs if len(s) >= n]))
    cut = data.draw(st.integers(n - 1, len(doc) - 1))
    prompt = [lm.bos_token_id, *doc[:cut]]  # its last n - 1 tokens are a protected prefix
    proc = MemFreeProcessor(index)
    cfg = GenerationConfig(max_new_tokens=12, stop_at_eos=False)
    new = lm.generate([prompt], cfg, logits_processor=[proc])[0]
    full = prompt + new
    assert protected_endings(full, len(prompt), protected, n) == []
    if kind == "exact":
        assert new == fake_reference(lm, prompt, 12, protected, n)
    else:  # the filter's false positives over the 258-token vocabulary are its own; check with them
        oracle = lambda ctx, t: index.contains([*ctx[len(ctx) - n + 1 :], t])  # noqa: E731
        seq = list(prompt)
        for _ in range(12):
            z = torch.as_tensor(lm.logits(seq), dtype=torch.float32).tolist()
            order = sorted(range(len(z)), key=lambda t: (-z[t], t))
            seq.append(next((t for t in order if not oracle(seq, t)), order[0]))
        assert new == seq[len(prompt):]
    assert proc.stats()["steps"] == 12 and proc.stats()["rows_checked"] == 12


def test_fakelm_sampling_never_completes_a_protected_ngram():
    docs = ["abba abab baab", "bbaa aabb abab", "a b a b ab ba"]
    lm = FakeLM(docs)
    seqs = lm.encode(docs)
    protected = ngram_set(seqs, 3)
    for kind, top_clean, cfg in [("exact", 1, GenerationConfig(max_new_tokens=30, do_sample=True, stop_at_eos=False)),
                                 ("bloom", 5, GenerationConfig(max_new_tokens=30, do_sample=True, top_k=5,
                                                               stop_at_eos=False))]:
        index = NgramIndex.build(seqs, 3, tokenizer_fingerprint=FP, kind=kind)
        proc = MemFreeProcessor(index, top_clean=top_clean)
        for seed in range(5):
            prompt = [lm.bos_token_id, *seqs[seed % 3][:4]]
            new = lm.generate([prompt], GenerationConfig(**{**cfg.__dict__, "seed": seed}), logits_processor=[proc])[0]
            assert protected_endings(prompt + new, len(prompt), protected, 3) == []
        assert proc.stats()["tokens_banned"] > 0


# -------------------------------------------------------------- decoding with a tiny HF model
V_TINY = 32


@pytest.fixture(scope="module")
def tiny_hf():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V_TINY, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    tokenizer = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)  # ids only: no text here
    return HFModel(LlamaForCausalLM(cfg), tokenizer, name="tiny-llama-v32", batch_size=8)


def hf_reference(model, prompt, steps, protected, n):
    """Brute force: a full forward pass per step, no cache, no padding, no processor."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            z = model(input_ids=torch.tensor([seq])).logits[0, -1].tolist()
            seq.append(first_allowed(z, seq, protected, n))
    return seq[len(prompt):]


def _prompts(rng, count, lo=1, hi=9):
    return [[1, *rng.integers(3, V_TINY, rng.integers(lo, hi)).tolist()] for _ in range(count)]


def _split_at_pad(seqs, pad=0):
    """Documents without the pad id (split there), so left padding cannot meet them."""
    out = []
    for s in seqs:
        cur = []
        for t in s:
            if t == pad:
                out.append(cur)
                cur = []
            else:
                cur.append(t)
        out.append(cur)
    return [d for d in out if d]


@pytest.mark.parametrize("n", [3, 4])
def test_hf_greedy_with_memfree_equals_a_brute_force_decoder(tiny_hf, n):
    rng = np.random.default_rng(n)
    cfg = GenerationConfig(max_new_tokens=16, stop_at_eos=False)
    prompts = _prompts(rng, 8)  # different lengths: left padding in the batch
    # Protect what the model would say on its own (so MemFree must act often) plus noise.
    plain = tiny_hf.generate(_prompts(rng, 8) + prompts[:4], cfg)
    corpus = _split_at_pad([p + g for p, g in zip(_prompts(rng, 8) + prompts[:4], plain)])
    corpus += [rng.integers(3, V_TINY, 40).tolist() for _ in range(5)]
    protected = ngram_set(corpus, n)
    index = NgramIndex.build(corpus, n, tokenizer_fingerprint=FP)
    proc = MemFreeProcessor(index)
    got = tiny_hf.generate(prompts, cfg, logits_processor=[proc], batch_size=8)
    for prompt, new in zip(prompts, got):
        assert protected_endings(prompt + new, len(prompt), protected, n) == []
        assert new == hf_reference(tiny_hf.model, prompt, 16, protected, n)
    assert proc.stats()["argmax_rejected"] > 0  # MemFree did change the greedy path
    assert proc.stats()["steps"] == 16 and proc.stats()["rows_checked"] >= 8 * (16 - n)


def test_hf_boundary_ngrams_starting_in_the_prompt_are_blocked(tiny_hf):
    """Prompts whose last n - 1 tokens are a protected prefix and whose greedy next token
    completes it: the public code (which checks generated tokens only) would emit it."""
    rng = np.random.default_rng(11)
    n = 4
    prompts = _prompts(rng, 6, lo=3)
    first = [g[0] for g in tiny_hf.generate(prompts, GenerationConfig(max_new_tokens=1, stop_at_eos=False))]
    corpus = [p[-(n - 1):] + [t] for p, t in zip(prompts, first)]
    for kind in ("exact", "bloom"):
        index = NgramIndex.build(corpus, n, tokenizer_fingerprint=FP, kind=kind)
        proc = MemFreeProcessor(index)
        got = tiny_hf.generate(prompts, GenerationConfig(max_new_tokens=6, stop_at_eos=False), logits_processor=[proc])
        for prompt, new, plain_first in zip(prompts, got, first):
            assert new[0] != plain_first
            assert protected_endings(prompt + new, len(prompt), ngram_set(corpus, n), n) == []
        assert proc.stats()["argmax_rejected"] >= len(prompts)


def test_hf_random_corpora_property(tiny_hf):
    """Many seeded random cases: corpora over the tiny vocabulary collide with the output often."""
    cfg = GenerationConfig(max_new_tokens=12, stop_at_eos=False)
    rejected = 0
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        n = int(rng.integers(2, 6))
        corpus = [rng.integers(0, V_TINY, rng.integers(0, 60)).tolist() for _ in range(int(rng.integers(1, 30)))]
        if not ngram_set(corpus, n):
            continue
        prompts = _prompts(rng, 5, hi=12)
        kind = ["exact", "bloom"][seed % 2]
        proc = MemFreeProcessor(NgramIndex.build(corpus, n, tokenizer_fingerprint=FP, kind=kind))
        for prompt, new in zip(prompts, tiny_hf.generate(prompts, cfg, logits_processor=[proc])):
            assert protected_endings(prompt + new, len(prompt), ngram_set(corpus, n), n) == []
        rejected += proc.stats()["argmax_rejected"]
    assert rejected > 0


def test_hf_nothing_protected_gives_plain_greedy_exactly(tiny_hf):
    rng = np.random.default_rng(3)
    prompts = _prompts(rng, 7)  # batch of 7 with left padding
    cfg = GenerationConfig(max_new_tokens=14, stop_at_eos=False)
    plain = tiny_hf.generate(prompts, cfg, batch_size=7)
    empty = NgramIndex.build([[5, 6], [7]], 3, tokenizer_fingerprint=FP, allow_empty=True)  # no 3-gram at all
    unseen = NgramIndex.build([[V_TINY + i for i in range(10)]], 3, tokenizer_fingerprint=FP)  # ids the model lacks
    for index in (empty, unseen):
        proc = MemFreeProcessor(index)
        assert tiny_hf.generate(prompts, cfg, logits_processor=[proc], batch_size=7) == plain
        assert proc.stats()["rows_checked"] > 0 and proc.stats()["tokens_banned"] == 0


def test_transformers_generate_accepts_the_processor(tiny_hf):
    from transformers import LogitsProcessorList

    rng = np.random.default_rng(5)
    prompt = _prompts(rng, 1, lo=6)[0]
    plain = tiny_hf.generate([prompt], GenerationConfig(max_new_tokens=10, stop_at_eos=False))[0]
    corpus = [prompt + plain]
    index = NgramIndex.build(corpus, 3, tokenizer_fingerprint=FP)
    ids = torch.tensor([prompt])
    out = tiny_hf.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                                 logits_processor=LogitsProcessorList([MemFreeProcessor(index)]), pad_token_id=0,
                                 eos_token_id=[])
    new = out[0, len(prompt):].tolist()
    assert protected_endings(prompt + new, len(prompt), ngram_set(corpus, 3), 3) == []
    assert new == hf_reference(tiny_hf.model, prompt, 10, ngram_set(corpus, 3), 3)


def test_candidate_order_is_score_then_lowest_id():
    """The Bloom walk's order, against a full sort, with ties and -inf, across its chunking."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        V = int(rng.integers(1, 300))
        z = rng.integers(-3, 4, V).astype(np.float32)
        z[rng.random(V) < 0.2] = -np.inf
        want = [i for i in sorted(range(V), key=lambda i: (-z[i], i)) if z[i] > -np.inf]
        got = list(memfree._ranked(z, levels=int(rng.integers(0, 4)), first=int(rng.integers(1, 5))))
        assert got == want
