"""Scoring speed: lmaudit's batched kernel vs a research-code loop vs the bare forward pass.

Scores the same documents three ways, on the same model and machine, in one run:
  naive    batch 1, full-vocabulary softmax moved to the host, a Python loop over tokens
           computing the same statistics (log p, vocabulary mean and std, entropy)
  forward  the bare batched forward pass alone, on the batches lmaudit builds (a lower bound)
  lmaudit  score_records: tokenise, bucket, forward, float32 statistics, reassemble
and checks that naive and lmaudit agree.

    python benchmarks/bench_scoring.py --testbed lmaudit-demo --n 2000
    python benchmarks/bench_scoring.py --testbed lmaudit-demo --n 2000 --vocab-size 32000

--vocab-size swaps the testbed model for one of the same architecture with a realistic
vocabulary (Llama 2 has 32,000 tokens, Pythia 50,304) and random weights: the scores are
meaningless, the timings are not. The testbed model's 2,048-token vocabulary makes the
per-token host work of the naive loop unusually cheap.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from lmaudit.data import Record
from lmaudit.models.base import ScoringPolicy
from lmaudit.models.hf import HFModel
from lmaudit.ops.padding import pad_batch
from lmaudit.scoring.score import plan_windows, score_records
from lmaudit.testbed.load import load_splits


def naive(lm: HFModel, texts: list[str]) -> list[np.ndarray]:
    """What research code typically does (mimir-style): one document at a time, per-token loop."""
    out = []
    for text in texts:
        ids = [lm.bos_token_id, *lm.encode([text])[0]]
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float().cpu().numpy()  # (T, V) on the host
        rows = []
        for t in range(1, len(ids)):
            x = logits[t - 1]
            logp = x - x.max() - math.log(np.exp(x - x.max()).sum())
            p = np.exp(logp)
            mu = float((p * logp).sum())
            sd = float(np.sqrt((p * (logp - mu) ** 2).sum()))
            rows.append((float(logp[ids[t]]), mu, sd, -mu))
        out.append(np.array(rows))
    return out


def bare_forward(lm: HFModel, texts: list[str], batch_size: int) -> None:
    """The batched forward passes alone, on the same length-bucketed batches as lmaudit."""
    policy = ScoringPolicy().resolved(lm.max_length)
    seqs = [w for ids in lm.encode(texts) for w, _ in plan_windows(ids, policy, bos_token_id=lm.bos_token_id)[0]]
    seqs.sort(key=len)
    batches = [pad_batch(seqs[i : i + batch_size], pad_token_id=lm.pad_token_id)[:3] for i in range(0, len(seqs), batch_size)]
    start = time.perf_counter()
    with torch.inference_mode():
        for ids, mask, pos in batches:
            lm.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--testbed", default="lmaudit-demo", help="a testbed directory (lmaudit testbed / lmaudit demo)")
    ap.add_argument("--n", type=int, default=2000, help="documents to score")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--naive-n", type=int, default=None, help="score only this many documents the naive way and extrapolate (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of forward and lmaudit; the median is reported")
    ap.add_argument("--vocab-size", type=int, default=None, help="random-weight model of the testbed's shape with this vocabulary")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    lm = HFModel.from_pretrained(f"{args.testbed}/model", device="cpu")
    if args.vocab_size:
        from transformers import AutoModelForCausalLM

        config = lm.model.config
        config.vocab_size = args.vocab_size
        torch.manual_seed(0)
        lm = HFModel(AutoModelForCausalLM.from_config(config).eval(), lm.tokenizer, name=f"random-vocab{args.vocab_size}")
    members, nonmembers = load_splits(args.testbed)
    records = (members + nonmembers)[: args.n]
    texts = [r.text for r in records]
    records = [Record(id=r.id, text=r.text, source="bench", line=i + 1) for i, r in enumerate(records)]

    lm.token_stats([[lm.bos_token_id, *lm.encode(texts[:1])[0]]], [1])  # warm-up

    # Interleaved, so slow phases of a shared machine hit both alike; medians reported.
    forward_runs, lmaudit_runs = [], []
    for _ in range(args.repeats):
        forward_runs.append(bare_forward(lm, texts, args.batch_size))
        start = time.perf_counter()
        scores = score_records(lm, records, batch_size=args.batch_size)
        lmaudit_runs.append(time.perf_counter() - start)
    t_forward, t_lmaudit = float(np.median(forward_runs)), float(np.median(lmaudit_runs))

    n_naive = args.naive_n or len(texts)
    start = time.perf_counter()
    ref = naive(lm, texts[:n_naive])
    t_naive = (time.perf_counter() - start) * len(texts) / n_naive

    diff = max(
        float(np.abs(np.stack([s.stats.logprob, s.stats.vocab_mean, s.stats.vocab_std, s.stats.entropy], 1) - r).max())
        for s, r in zip(scores, ref)
    )
    n_tokens = sum(s.n_tokens for s in scores)
    figures = {
        "model": lm.name,
        "vocab_size": lm.model.config.vocab_size,
        "documents": len(texts),
        "tokens": n_tokens,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "naive_s": round(t_naive, 2),
        "naive_documents_timed": n_naive,
        "forward_s": round(t_forward, 2),
        "lmaudit_s": round(t_lmaudit, 2),
        "forward_runs_s": [round(t, 2) for t in forward_runs],
        "lmaudit_runs_s": [round(t, 2) for t in lmaudit_runs],
        "speedup_vs_naive": round(t_naive / t_lmaudit, 1),
        "lmaudit_over_forward": round(t_lmaudit / t_forward, 3),
        "max_abs_diff_vs_naive": diff,
        "lmaudit_tokens_per_s": round(n_tokens / t_lmaudit),
        "torch": torch.__version__,
    }
    print(f"{'method':<10}{'seconds':>10}{'tokens/s':>12}")
    for name, t in (("naive", t_naive), ("forward", t_forward), ("lmaudit", t_lmaudit)):
        print(f"{name:<10}{t:>10.2f}{n_tokens / t:>12.0f}")
    print(f"lmaudit is {figures['speedup_vs_naive']}x faster than naive and takes "
          f"{figures['lmaudit_over_forward']}x the bare forward pass; max |diff| vs naive {diff:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
