"""Decoding-time takedowns: top-k perturbation, R-CAD (against a cache-free brute force), BM25
retrieval, system prompts."""

import copy

import numpy as np
import pytest
import torch
from scipy import stats

from lmaudit.models.base import GenerationConfig
from lmaudit.models.fake import FakeLM
from lmaudit.models.hf import HFModel
from lmaudit.takedown.perturb import TopKPerturbation
from lmaudit.takedown.rcad import BM25Retriever, RCADProcessor, prompt_body
from lmaudit.takedown.steps import StepTracker
from lmaudit.takedown.sysprompt import SYSTEM_PROMPTS, system_prompt, with_system_prompt


def _prompts(lm, texts, lengths):
    """BOS + the first n tokens of each text: different lengths, so batches are left-padded."""
    return [[lm.bos_token_id, *ids[:n]] for ids, n in zip(lm.encode(texts), lengths)]


class _Record:
    """A processor that keeps a copy of the scores it sees (placed after the one under test)."""

    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.detach().clone())
        return scores


@pytest.fixture(scope="module")
def eos_padded_lm(tokenizer):
    """A GPT-2-like model whose pad, BOS and EOS are one token (id 2), as GPT-2's and Pythia's are."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = copy.deepcopy(tokenizer)
    tok.bos_token = tok.pad_token = tok.eos_token
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=2, eos_token_id=2, pad_token_id=2)
    lm = HFModel(GPT2LMHeadModel(cfg), tok, name="tiny-gpt2-eos-pad")
    assert lm.bos_token_id == lm.eos_token_id == lm.pad_token_id == 2
    return lm


# ------------------------------------------------------------------ step tracking
def test_step_tracker_tells_a_new_batch_from_the_next_step():
    t = StepTracker()
    a = torch.tensor([[0, 1, 5], [1, 6, 7]])
    assert t.is_new(a)
    assert not t.is_new(torch.cat([a, torch.tensor([[9], [9]])], 1))
    assert t.is_new(torch.tensor([[0, 1, 5, 9, 9, 9], [1, 6, 7, 9, 9, 9]]))  # two columns more: not one step
    assert t.is_new(torch.tensor([[0, 1, 5, 9, 8, 9, 9], [1, 6, 7, 9, 9, 9, 9]]))  # an earlier column differs
    assert not t.is_new(torch.tensor([[0, 1, 5, 9, 8, 9, 9, 3], [1, 6, 7, 9, 9, 9, 9, 3]]))
    assert t.is_new(torch.tensor([[0, 1, 5, 9, 8, 9, 9, 3, 4]]))  # another batch size
    t.reset()
    assert t.is_new(torch.tensor([[0, 1, 5, 9, 8, 9, 9, 3, 4, 5]]))


# ------------------------------------------------------------------ top-k perturbation
def test_top_k_with_zero_sigma_is_plain_greedy(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:5], [3, 9, 5, 12, 7])
    cfg = GenerationConfig(max_new_tokens=10, stop_at_eos=False)
    plain = tiny_lm.generate(prompts, cfg, batch_size=5)
    assert tiny_lm.generate(prompts, cfg, batch_size=5, logits_processor=[TopKPerturbation(sigma=0.0)]) == plain
    assert tiny_lm.generate(prompts, cfg, batch_size=2, logits_processor=[TopKPerturbation(sigma=0.0)]) == plain


def test_top_k_noise_touches_only_the_top_k_and_has_the_stated_spread():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn((64, 1000), generator=g) * 4  # continuous: no ties at the k-th place
    k, sigma = 50, 3.0
    out = TopKPerturbation(k=k, sigma=sigma, seed=7)(torch.zeros((64, 5), dtype=torch.long), scores.clone())
    diff = out - scores
    top = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(k, dim=1).indices, True)
    assert (diff[~top] == 0).all()  # the tail is untouched, bit for bit
    assert (diff[top] != 0).all()
    noise = diff[top].double().numpy()  # 3,200 draws
    assert abs(noise.std() / sigma - 1) < 0.05  # the sample std's own spread is ~1.3%
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(noise.size)
    assert stats.kstest(noise / sigma, "norm").pvalue > 1e-3


def test_top_k_noise_is_reproducible_and_seeded(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:4], [4, 8, 6, 10])
    cfg = GenerationConfig(max_new_tokens=12, stop_at_eos=False)
    p = TopKPerturbation(k=20, sigma=3.0, seed=1)
    first = tiny_lm.generate(prompts, cfg, batch_size=2, logits_processor=[p])
    # the same object again (its stream is re-seeded per batch from seed and prompt ids), and a fresh one
    assert tiny_lm.generate(prompts, cfg, batch_size=2, logits_processor=[p]) == first
    assert tiny_lm.generate(prompts, cfg, batch_size=2, logits_processor=[TopKPerturbation(k=20, sigma=3.0, seed=1)]) == first
    assert tiny_lm.generate(prompts, cfg, batch_size=2, logits_processor=[TopKPerturbation(k=20, sigma=3.0, seed=2)]) != first
    assert first != tiny_lm.generate(prompts, cfg, batch_size=2)


def test_top_k_perturbation_works_with_the_fake_model_and_breaks_verbatim_runs():
    member = "the quick brown fox jumps over the lazy dog and keeps running far away"
    lm = FakeLM([member])
    prompt = [lm.bos_token_id, *lm.encode([member[:20]])[0]]
    cfg = GenerationConfig(max_new_tokens=30, stop_at_eos=False)
    plain = lm.decode(lm.generate([prompt], cfg)[0])
    assert plain == member[20:50]  # the fake model recites its member
    noisy = lm.generate([prompt], cfg, logits_processor=[TopKPerturbation(k=5, sigma=10.0, seed=0)])
    assert noisy == lm.generate([prompt], cfg, logits_processor=[TopKPerturbation(k=5, sigma=10.0, seed=0)])
    assert lm.decode(noisy[0]) != plain


def test_top_k_refuses_bad_options():
    with pytest.raises(ValueError, match="k must"):
        TopKPerturbation(k=0)
    with pytest.raises(ValueError, match="sigma"):
        TopKPerturbation(sigma=-1.0)


# ------------------------------------------------------------------ R-CAD
def test_prompt_body_rule():
    assert prompt_body([0, 0, 1, 5, 6], pad_token_id=0, bos_token_id=1) == [5, 6]
    assert prompt_body([1, 5, 6], pad_token_id=0, bos_token_id=1) == [5, 6]
    assert prompt_body([0, 5, 6], pad_token_id=0, bos_token_id=1) == [5, 6]  # a prompt without BOS
    assert prompt_body([2, 2, 2, 5, 2], pad_token_id=2, bos_token_id=2) == [5, 2]  # pad = BOS = EOS
    assert prompt_body([1], pad_token_id=0, bos_token_id=1) == []


def _brute_force_rcad(lm, prompt, passage_ids, alpha, n):
    """Greedy R-CAD one prompt at a time, no padding, no cache: both full forward passes at every step."""
    model, bos = lm.model, lm.bos_token_id
    body = prompt_body(prompt, pad_token_id=lm.pad_token_id, bos_token_id=bos)
    seq, ctx, new, scores = list(prompt), [bos, *passage_ids, *body], [], []
    with torch.no_grad():
        for _ in range(n):
            plain = model(input_ids=torch.tensor([seq])).logits[0, -1].float()
            context = model(input_ids=torch.tensor([ctx])).logits[0, -1].float()
            mixed = (1 + alpha) * plain - alpha * context if passage_ids else plain
            token = int(mixed.argmax())
            scores.append(mixed)
            new.append(token)
            seq.append(token)
            ctx.append(token)
    return new, torch.stack(scores)


@pytest.fixture(params=["gpt2", "llama", "eos_pad"])
def rcad_lm(request, tokenizer, make_tiny, eos_padded_lm):
    """Both architectures (absolute and rotary positions), and a model whose pad = BOS = EOS."""
    if request.param == "eos_pad":
        return eos_padded_lm
    return HFModel(make_tiny(request.param, len(tokenizer)), tokenizer, name=f"tiny-{request.param}")


def _oracle(lm, corpus_texts, prompts):
    """Passages looked up by the prompt's text (every third prompt gets none)."""
    table = {lm.decode(p[1:]): (corpus_texts[20 + i] if i % 3 != 2 else None) for i, p in enumerate(prompts)}
    return lambda texts: [table[t] for t in texts], table


def test_rcad_with_alpha_zero_is_plain_greedy(rcad_lm, corpus_texts):
    lm = rcad_lm
    prompts = _prompts(lm, corpus_texts[:5], [3, 9, 5, 12, 7])
    cfg = GenerationConfig(max_new_tokens=10, stop_at_eos=False)
    passages, _ = _oracle(lm, corpus_texts, prompts)
    rcad = RCADProcessor(lm, passages, alpha=0.0, max_new_tokens=10)
    assert lm.generate(prompts, cfg, batch_size=3, logits_processor=[rcad]) == lm.generate(prompts, cfg, batch_size=3)


def test_rcad_matches_a_brute_force_reference_across_batches(rcad_lm, corpus_texts):
    lm, n, alpha = rcad_lm, 9, 1.0
    prompts = _prompts(lm, corpus_texts[:6], [3, 11, 6, 9, 4, 14])
    passages, table = _oracle(lm, corpus_texts, prompts)
    # A tight context limit, so that long passages are cut from the left.
    limit = 120
    rcad, record = RCADProcessor(lm, passages, alpha=alpha, max_context_tokens=limit, max_new_tokens=n), _Record()
    cfg = GenerationConfig(max_new_tokens=n, stop_at_eos=False)
    got = lm.generate(prompts, cfg, batch_size=3, logits_processor=[rcad, record])  # two generate() calls
    assert len(record.steps) == 2 * n
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # HFModel's bucketing
    cut = 0
    for b, rows in enumerate([order[:3], order[3:]]):
        for r, i in enumerate(rows):
            text = table[lm.decode(prompts[i][1:])]
            ids = lm.encode([text])[0] if text else []
            room = limit - 1 - (len(prompts[i]) - 1) - n
            kept = ids[max(0, len(ids) - room):]
            cut += len(ids) - len(kept)
            want, want_scores = _brute_force_rcad(lm, prompts[i], kept, alpha, n)
            assert got[i] == want, (b, i)
            seen = torch.stack([s[r] for s in record.steps[b * n:(b + 1) * n]])
            torch.testing.assert_close(seen, want_scores, atol=1e-4, rtol=1e-4)
    assert cut > 0  # the limit did cut some passages
    assert got != lm.generate(prompts, cfg, batch_size=3)  # and R-CAD changed what greedy decoding picks
    assert [p["passage"] for p in rcad.passages] == [table[lm.decode(prompts[i][1:])] for i in order[3:]]


def test_rcad_changes_the_output_and_refuses_what_it_cannot_do(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:3], [5, 6, 7])
    cfg = GenerationConfig(max_new_tokens=6, stop_at_eos=False)
    retriever = BM25Retriever(corpus_texts)
    rcad = RCADProcessor(tiny_lm, retriever, alpha=5.0, max_new_tokens=6)
    assert tiny_lm.generate(prompts, cfg, logits_processor=[rcad]) != tiny_lm.generate(prompts, cfg)
    with pytest.raises(TypeError, match="HFModel"):
        RCADProcessor(FakeLM(), retriever)
    with pytest.raises(ValueError, match="reached max_context_tokens"):  # generating past what the passage was cut for
        tiny_lm.generate(prompts, GenerationConfig(max_new_tokens=8, stop_at_eos=False),
                         logits_processor=[RCADProcessor(tiny_lm, retriever, max_context_tokens=40, max_new_tokens=2)])
    too_tight = RCADProcessor(tiny_lm, retriever, max_context_tokens=8, max_new_tokens=6)
    with pytest.raises(ValueError, match="exceeds max_context_tokens"):
        tiny_lm.generate(prompts, cfg, logits_processor=[too_tight])
    with pytest.raises(ValueError, match="max_context_tokens must"):
        RCADProcessor(tiny_lm, retriever, max_context_tokens=tiny_lm.max_length + 1)


# ------------------------------------------------------------------ retrieval
def test_bm25_finds_the_document_a_query_was_cut_from(corpus_texts, tmp_path):
    docs = corpus_texts[:40]
    retriever = BM25Retriever(docs, [f"doc-{i}" for i in range(len(docs))])
    queries = [" ".join(d.split()[5:17]) for d in docs]  # 12 words from inside each document
    hits = retriever.retrieve(queries, k=3)
    assert hits.indices.shape == (40, 3) and (np.diff(hits.scores, axis=1) <= 0).all()
    assert (hits.indices[:, 0] == np.arange(40)).mean() >= 0.95
    assert retriever.top_passages(queries[:2]) == docs[:2]
    assert retriever.top_passages(["zzzz qqqq"]) == [None]
    assert retriever.retrieve(["zzzz qqqq"]).indices.tolist() == [[-1]]
    retriever.save(tmp_path / "index")
    again = BM25Retriever.load(tmp_path / "index")
    assert again.ids == retriever.ids and again.texts == docs
    np.testing.assert_array_equal(again.retrieve(queries, k=3).indices, hits.indices)
    with pytest.raises(ValueError, match="k must"):
        retriever.retrieve(queries, k=41)


# ------------------------------------------------------------------ system prompts
def test_system_prompt_goes_after_bos_and_is_counted(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:3], [4, 7, 5])
    text = system_prompt("bing")
    new, n = with_system_prompt(tiny_lm, prompts, text)
    instruction = tiny_lm.encode([text + "\n\n"])[0]
    assert n == len(instruction) > 0
    for old, got in zip(prompts, new):
        assert got == [tiny_lm.bos_token_id, *instruction, *old[1:]]
    no_bos = [p[1:] for p in prompts]
    assert with_system_prompt(tiny_lm, no_bos, text)[0] == [[*instruction, *p] for p in no_bos]
    assert tiny_lm.decode(new[0][1 : 1 + n]) == text + "\n\n"


def test_system_prompt_is_refused_when_too_long():
    lm = FakeLM(max_length=64)
    prompt = [lm.bos_token_id, *lm.encode(["x" * 30])[0]]
    new, n = with_system_prompt(lm, [prompt], "short.", separator=" ")
    assert n == 7 and len(new[0]) == 38
    with pytest.raises(ValueError, match="prompt 0: 31 tokens"):
        with_system_prompt(lm, [prompt], SYSTEM_PROMPTS["sys_a"])
    with pytest.raises(ValueError, match="reserved"):
        with_system_prompt(lm, [prompt], "short.", separator=" ", reserve=30)
    with pytest.raises(KeyError, match="did you mean 'bing'"):
        system_prompt("bign")
