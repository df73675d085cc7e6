"""The vLLM backend against the Hugging Face backend on a real engine: needs a CUDA GPU and vllm
(`pip install 'lmaudit[vllm]'`), and is skipped, with the reason shown, without them.

The model is a tiny Llama built here with random weights and the repository's test tokenizer
(no download). Both backends run it in float32: per-token log-probabilities agree to 1e-3 and
greedy continuations are the same tokens.
"""

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM backend tests need a CUDA GPU (none visible)"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vLLM backend tests need vllm (pip install 'lmaudit[vllm]')"),
]

TEXTS = [f"Member {i} was born in {1900 + 7 * i} in Port {chr(65 + i)}ville and kept {i + 2} goats, "
         f"then moved to Lake {chr(75 + i)}ham with {i + 3} dogs." for i in range(32)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, request):
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmaudit.models.hf import HFModel
    from lmaudit.models.vllm import VLLMModel
    from lmaudit.testbed.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("vllm") / "model"
    tokenizer = train_tokenizer(TEXTS, vocab_size=400)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    hf = HFModel.from_pretrained(str(path), dtype="float32", device="cuda")
    vl = VLLMModel.from_pretrained(str(path), dtype="float32", gpu_memory_utilization=0.3)
    yield hf, vl
    del vl


def test_token_logprobs_agree_with_the_hf_backend(pair):
    hf, vl = pair
    seqs = [[hf.bos_token_id, *ids] for ids in hf.encode(TEXTS)]
    starts = [1 + i % 4 for i in range(len(seqs))]
    a, b = vl.token_stats(seqs, starts), hf.token_stats(seqs, starts)
    for x, y in zip(a, b):
        assert x.token_ids.tolist() == y.token_ids.tolist()
        assert float(abs(x.logprob - y.logprob).max()) < 1e-3
    assert vl.fingerprint() == hf.fingerprint() and vl.tokenizer_fingerprint() == hf.tokenizer_fingerprint()
    assert vl.dtype == "float32"


def test_greedy_generation_equals_the_hf_backend(pair):
    from lmaudit.models.base import GenerationConfig

    hf, vl = pair
    prompts = [[hf.bos_token_id, *ids[:8]] for ids in hf.encode(TEXTS)]
    for stop in (True, False):
        config = GenerationConfig(max_new_tokens=24, stop_at_eos=stop)
        assert vl.generate(prompts, config) == hf.generate(prompts, config)


def test_a_window_of_the_full_context_length_is_scored(pair):
    hf, vl = pair
    seq = ([hf.bos_token_id] + hf.encode([" ".join(TEXTS)])[0])[: vl.max_length]
    assert len(seq) == vl.max_length
    assert len(vl.token_stats([seq], [1])[0]) == vl.max_length - 1
