"""Shared fixtures: tiny randomly initialised models built in-process (no downloads), the tiny
testbed (integration and browser tests), and run folders for report tests."""

import pytest
import torch

from lmaudit.models.hf import HFModel
from lmaudit.testbed.build import build_testbed
from lmaudit.testbed.corpus import generate_corpus
from lmaudit.testbed.tokenizer import train_tokenizer


@pytest.fixture(scope="session")
def corpus_texts():
    return [r["text"] for r in generate_corpus(60, seed=123)]


@pytest.fixture(scope="session")
def tokenizer(corpus_texts):
    return train_tokenizer(corpus_texts, vocab_size=400)


def _tiny(arch: str, vocab_size: int, n_positions: int = 512):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
        return GPT2LMHeadModel(cfg)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=n_positions,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def tiny_lm(request, tokenizer):
    """A tiny random model of each architecture family (absolute vs rotary positions)."""
    return HFModel(_tiny(request.param, len(tokenizer)), tokenizer, name=f"tiny-{request.param}")


@pytest.fixture
def make_tiny():
    return _tiny


@pytest.fixture
def make_run(tmp_path):
    """``make_run(kind, results, samples, name=...)``: a run folder written the way commands
    write theirs (RunWriter: samples.jsonl, then results.json with provenance), for report tests.
    ``results`` are the kind's top-level sections; ``summary`` defaults to {}."""
    from lmaudit.report.run import RunWriter

    def make(kind: str, results: dict, samples: list[dict], *, name: str | None = None, summary: dict | None = None,
             provenance: dict | None = None):
        out = tmp_path / (name or kind)
        with RunWriter(out, kind=kind, command=f"lmaudit {kind} (test)") as run:
            run.samples(samples)
            run.finish(summary=summary if summary is not None else {}, provenance=provenance or {}, extra=results)
        return out

    return make


@pytest.fixture(scope="session")
def tiny_testbed(tmp_path_factory):
    """The tiny testbed, built once per test session (~15 s)."""
    out = tmp_path_factory.mktemp("tiny-testbed")
    info = build_testbed(out, seed=0, size="tiny")
    return out, info


@pytest.fixture(scope="session")
def tiny_shifted_testbed(tmp_path_factory):
    """The tiny testbed with non-members of another era (``shift="era"``), built once per session (~15 s).

    Its members, tokenizer and model are those of ``tiny_testbed``; only the non-members differ.
    """
    out = tmp_path_factory.mktemp("tiny-shifted-testbed")
    info = build_testbed(out, seed=0, size="tiny", shift="era")
    return out, info


@pytest.fixture(scope="session")
def tiny_forget_testbed(tmp_path_factory):
    """The tiny testbed with a forget split of 8 members (4 seen once, 4 seen 16 times) and its
    retrain model, built once per session (~20 s). Its target model and every file of
    ``tiny_testbed`` are the same; it adds retrain/, data/{forget,retain}.jsonl and
    data/knowledge/{forget,retain,holdout}.jsonl."""
    out = tmp_path_factory.mktemp("tiny-forget-testbed")
    info = build_testbed(out, seed=0, size="tiny", forget=8)
    return out, info


@pytest.fixture(scope="session")
def tiny_goldfish_testbed(tmp_path_factory):
    """The tiny testbed with a goldfish model (k=4, h=13) in goldfish/, built once per session
    (~20 s). Its target model and every file of ``tiny_testbed`` are the same."""
    out = tmp_path_factory.mktemp("tiny-goldfish-testbed")
    info = build_testbed(out, seed=0, size="tiny", goldfish=(4, 13))
    return out, info
