"""Shared fixtures: tiny randomly initialised models built in-process (no downloads)."""

import pytest
import torch

from lmaudit.models.hf import HFModel
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
