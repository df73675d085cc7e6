"""Batched generation against a hand-written greedy loop; logits processors; seeded sampling."""

import torch
from transformers import LogitsProcessor

from lmaudit.models.base import GenerationConfig


def _argmax_loop(model, prompt, n):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            ids.append(int(logits.argmax()))
    return ids[len(prompt):]


def _prompts(lm, texts):
    return [[lm.bos_token_id, *ids[: 3 + 2 * i]] for i, ids in enumerate(lm.encode(texts))]


def test_greedy_matches_an_argmax_loop_and_is_batch_invariant(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:5])  # different lengths: left padding in the batch
    cfg = GenerationConfig(max_new_tokens=8, stop_at_eos=False)
    batched = tiny_lm.generate(prompts, cfg, batch_size=5)
    for prompt, got in zip(prompts, batched):
        assert got == _argmax_loop(tiny_lm.model, prompt, 8)
    assert batched == tiny_lm.generate(prompts, cfg, batch_size=1)


class _Force(LogitsProcessor):
    def __init__(self, token):
        self.token = token

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token] = 0.0
        return forced


def test_logits_processors_are_applied(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:3])
    out = tiny_lm.generate(prompts, GenerationConfig(max_new_tokens=5, stop_at_eos=False), logits_processor=[_Force(7)])
    assert out == [[7] * 5] * 3


def test_stop_at_eos_cuts_after_the_first_eos(tiny_lm, corpus_texts):
    eos = tiny_lm.eos_token_id
    out = tiny_lm.generate(_prompts(tiny_lm, corpus_texts[:2]), GenerationConfig(max_new_tokens=6), logits_processor=[_Force(eos)])
    assert out == [[eos], [eos]]


def test_sampling_is_seeded(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:4])
    a = tiny_lm.generate(prompts, GenerationConfig(max_new_tokens=10, do_sample=True, seed=3, stop_at_eos=False))
    b = tiny_lm.generate(prompts, GenerationConfig(max_new_tokens=10, do_sample=True, seed=3, stop_at_eos=False))
    c = tiny_lm.generate(prompts, GenerationConfig(max_new_tokens=10, do_sample=True, seed=4, stop_at_eos=False))
    assert a == b and a != c
    assert all(len(x) == 10 for x in a)


def test_checkpoint_generation_defaults_do_not_leak_into_greedy(tiny_lm, corpus_texts):
    prompts = _prompts(tiny_lm, corpus_texts[:2])
    cfg = GenerationConfig(max_new_tokens=8, stop_at_eos=False)
    plain = tiny_lm.generate(prompts, cfg)
    saved = tiny_lm.model.generation_config
    tiny_lm.model.generation_config = saved.__class__(repetition_penalty=50.0, no_repeat_ngram_size=1, pad_token_id=0)
    try:
        assert tiny_lm.generate(prompts, cfg) == plain
        assert tiny_lm.model.generation_config.repetition_penalty == 50.0  # restored afterwards
    finally:
        tiny_lm.model.generation_config = saved
