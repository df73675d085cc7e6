"""Extraction-style generation and scoring: the HF backend vs the vLLM backend on the same model.

Builds a randomly initialised Llama-shaped model locally (no download): by default ~1.1B
parameters (hidden 2048, 16 layers, 32 heads, intermediate 5632, vocabulary 32,000, 2,048
positions), saved as safetensors with a word-level tokenizer of synthetic tokens in a
temporary folder. Then, with each backend in turn (HF first, freed before vLLM starts):

- greedy generation, as extraction runs it: ``--prompts`` prompts of ``--prompt-tokens`` random
  token ids after BOS, ``--new-tokens`` new tokens each, no stop at EOS; tokens/s counts new tokens;
- scoring: ``token_stats`` of the same prompts followed by their HF continuation; tokens/s counts
  scored tokens.

It prints tokens/s, the vLLM engine's start-up time, and how far the two backends agree:
identical continuations, mean common prefix, and the largest |Δ log-probability|. With random
weights in bfloat16 many next-token choices are near-ties, so greedy continuations may part
after a few tokens; float32 (``--dtype float32``) makes them agree much more often.

    python benchmarks/bench_vllm.py                      # on a GPU, ~1B model
    python benchmarks/bench_vllm.py --tiny               # any machine with vllm (a CPU build too)
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FULL = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=32,
            intermediate_size=5632, vocab_size=32000, max_position_embeddings=2048)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=176, vocab_size=512, max_position_embeddings=256)


def build(path: Path, shape: dict, dtype: str) -> None:
    """A random Llama of ``shape`` and a word-level tokenizer over its vocabulary, saved in ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, shape["vocab_size"])}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(**shape, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialising 1B parameters is much faster on a GPU
        model = LlamaForCausalLM(config)
    model.to(getattr(torch, dtype)).save_pretrained(path)  # safetensors
    del model


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="A tiny model and workload: checks the script on any machine.")
    ap.add_argument("--prompts", type=int, default=None, help="Prompts (default 512; --tiny 16).")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="Prompt tokens after BOS (default 64; --tiny 16).")
    ap.add_argument("--new-tokens", type=int, default=None, help="New tokens per prompt (default 64; --tiny 16).")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default bfloat16; --tiny float32).")
    ap.add_argument("--hf-batch-size", type=int, default=64, help="Prompts per HF generate call.")
    ap.add_argument("--gpu-memory-utilization", type=float, default=None,
                    help="vLLM's share of GPU memory (default 0.8; --tiny 0.1: on a CPU build it is a share of RAM).")
    ap.add_argument("--model-dir", type=Path, default=None, help="Build the model here (default: a temporary folder).")
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = ap.parse_args()
    tiny = args.tiny
    n = args.prompts or (16 if tiny else 512)
    p_tokens = args.prompt_tokens or (16 if tiny else 64)
    new = args.new_tokens or (16 if tiny else 64)
    dtype = args.dtype or ("float32" if tiny else "bfloat16")
    util = args.gpu_memory_utilization or (0.1 if tiny else 0.8)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(2)

    from lmaudit.models.base import GenerationConfig
    from lmaudit.models.hf import HFModel
    from lmaudit.models.vllm import VLLMModel

    shape = TINY if tiny else FULL
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model_dir or Path(tmp) / "model"
        _, t_build = timed(lambda: build(path, shape, dtype))
        d, layers = shape["hidden_size"], shape["num_hidden_layers"]  # embeddings + head, attention + MLP
        n_params = 2 * shape["vocab_size"] * d + layers * (4 * d * d + 3 * d * shape["intermediate_size"])
        print(f"model: ~{n_params / 1e6:,.1f}M parameters ({'tiny' if tiny else '1B'} Llama shape), {dtype}, built in "
              f"{t_build:.1f} s; workload: {n} prompts x {p_tokens} tokens, {new} new tokens, greedy; device {device}")
        rng = np.random.default_rng(0)
        prompts = [[1, *rng.integers(4, shape["vocab_size"], p_tokens).tolist()] for _ in range(n)]
        config = GenerationConfig(max_new_tokens=new, stop_at_eos=False)
        figures: dict = {"model": {"shape": shape, "dtype": dtype, "params_approx": n_params}, "device": device,
                         "prompts": n, "prompt_tokens": p_tokens, "new_tokens": new}

        hf = HFModel.from_pretrained(str(path), dtype=dtype, device=device)
        hf.generate(prompts[:2], GenerationConfig(max_new_tokens=2, stop_at_eos=False))  # warm-up, both paths
        hf.token_stats([p + [4] for p in prompts[:2]], [1, 1])
        gen_hf, t = timed(lambda: hf.generate(prompts, config, batch_size=args.hf_batch_size))
        seqs = [p + g for p, g in zip(prompts, gen_hf)]
        starts = [len(p) for p in prompts]
        stats_hf, ts = timed(lambda: [s for i in range(0, n, args.hf_batch_size)
                                      for s in hf.token_stats(seqs[i:i + args.hf_batch_size],
                                                              starts[i:i + args.hf_batch_size])])
        n_scored = sum(len(s) for s in stats_hf)
        figures["hf"] = {"generate_s": t, "generate_tokens_per_s": n * new / t, "score_s": ts,
                         "score_tokens_per_s": n_scored / ts, "batch_size": args.hf_batch_size}
        fp_hf = hf.fingerprint()
        hf = None  # freed before vLLM takes its share of the GPU
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

        vl, t_start = timed(lambda: VLLMModel.from_pretrained(str(path), dtype=dtype, device="auto",
                                                               gpu_memory_utilization=util))
        vl.generate(prompts[:2], GenerationConfig(max_new_tokens=2, stop_at_eos=False))  # warm-up, both paths
        vl.token_stats(seqs[:2], starts[:2])
        gen_vl, t = timed(lambda: vl.generate(prompts, config))
        stats_vl, ts = timed(lambda: vl.token_stats(seqs, starts))
        figures["vllm"] = {"engine_start_s": t_start, "generate_s": t, "generate_tokens_per_s": n * new / t,
                           "score_s": ts, "score_tokens_per_s": n_scored / ts,
                           "gpu_memory_utilization": util}

        def prefix(a, b):
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            return k

        figures["agreement"] = {
            "identical_continuations": sum(a == b for a, b in zip(gen_hf, gen_vl)),
            "mean_common_prefix_tokens": float(np.mean([prefix(a, b) for a, b in zip(gen_hf, gen_vl)])),
            "max_abs_logprob_diff": max(float(np.abs(a.logprob - b.logprob).max()) for a, b in zip(stats_hf, stats_vl)),
            "same_fingerprint": vl.fingerprint() == fp_hf,
        }

    h, v, a = figures["hf"], figures["vllm"], figures["agreement"]
    print(f"{'backend':8} {'generate tok/s':>15} {'score tok/s':>12} {'generate s':>11} {'score s':>8}")
    for name, f in (("hf", h), ("vllm", v)):
        print(f"{name:8} {f['generate_tokens_per_s']:15,.0f} {f['score_tokens_per_s']:12,.0f} {f['generate_s']:11.2f} "
              f"{f['score_s']:8.2f}")
    print(f"vLLM/HF: generation x{v['generate_tokens_per_s'] / h['generate_tokens_per_s']:.2f}, scoring "
          f"x{v['score_tokens_per_s'] / h['score_tokens_per_s']:.2f}; vLLM engine start {v['engine_start_s']:.1f} s")
    print(f"agreement: {a['identical_continuations']}/{n} identical continuations, mean common prefix "
          f"{a['mean_common_prefix_tokens']:.1f}/{new} tokens, max |dlogprob| {a['max_abs_logprob_diff']:.2e}, "
          f"same fingerprint {a['same_fingerprint']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":  # vLLM spawns its engine core
    main()
