"""What caching NPO's reference log-likelihoods saves: cached once before training versus a frozen
copy of the model run at every step, side by side.

Each mode runs in a fresh subprocess (so peak RSS, from ``resource.getrusage``, is that run's
alone) on a model of the default testbed's shape (``TrainConfig()`` defaults: Llama, hidden 192,
4 layers, context 256; vocabulary 2,048; random weights: speed and memory only) and a forget set
of 100 corpus documents, full fine-tuning, NPO without a retain loss:

  cached     UnlearnConfig(ref_logprobs="cached"): one pass over the forget set before training
  recompute  UnlearnConfig(ref_logprobs="recompute"): a frozen deep copy, one extra forward per step

    python benchmarks/bench_unlearn_npo_cache.py --epochs 2 --batch-size 8
    python benchmarks/bench_unlearn_npo_cache.py --hidden-size 768 --n-layers 12   # a wider model
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(args) -> dict:
    import torch

    from lmaudit.data import Record
    from lmaudit.testbed.corpus import generate_corpus
    from lmaudit.testbed.tokenizer import train_tokenizer
    from lmaudit.testbed.train import TrainConfig, build_model
    from lmaudit.unlearning.train import UnlearnConfig, unlearn

    torch.set_num_threads(args.threads)
    texts = [r["text"] for r in generate_corpus(400, seed=0)]
    tokenizer = train_tokenizer(texts, vocab_size=2048)
    shape = TrainConfig(hidden_size=args.hidden_size or TrainConfig.hidden_size,
                        n_layers=args.n_layers or TrainConfig.n_layers,
                        n_heads=args.n_heads or TrainConfig.n_heads)
    torch.manual_seed(0)
    model = build_model(shape, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    # ~100 tokens each: the first 100 tokens of each of 100 documents, decoded back to text.
    forget = []
    for i, text in enumerate(texts[:100]):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:100]
        forget.append(Record(id=i, text=tokenizer.decode(ids), source="bench", line=i + 1))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    config = UnlearnConfig(method="npo", lr=1e-5, epochs=args.epochs, batch_size=args.batch_size,
                           ref_logprobs=args.mode, seed=0)
    started = time.perf_counter()
    figures = unlearn(model, tokenizer, forget, None, config)["figures"]
    return {
        "mode": args.mode,
        "parameters": sum(p.numel() for p in model.parameters()),
        "forget_docs": len(forget),
        "forget_tokens": figures["forget_tokens"],
        "steps": figures["steps"],
        "ref_logprob_time_s": figures["ref_logprob_time_s"],
        "train_time_s": figures["train_time_s"],
        "time_per_step_s": figures["time_per_step_s"],
        "wall_s": round(time.perf_counter() - started, 3),
        "peak_rss_before_mb": round(rss_before / 2**20, 1),
        "peak_rss_mb": round(figures["process_peak_rss_bytes"] / 2**20, 1),
        "final_forget_loss": figures["loss_curve"][-1]["forget"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=None)
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--n-heads", type=int, default=None)
    parser.add_argument("--mode", choices=("cached", "recompute"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # the child: one measurement, printed as JSON
        print(json.dumps(child(args)))
        return
    rows = []
    for mode in ("cached", "recompute"):
        cmd = [sys.executable, __file__, "--mode", mode, *sys.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    keys = ["mode", "steps", "ref_logprob_time_s", "train_time_s", "time_per_step_s", "wall_s",
            "peak_rss_before_mb", "peak_rss_mb", "final_forget_loss"]
    print(f"{rows[0]['parameters']:,} parameters, {rows[0]['forget_docs']} forget documents, "
          f"{rows[0]['forget_tokens']:,} tokens")
    print("| " + " | ".join(keys) + " |")
    print("| " + " | ".join("---" for _ in keys) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    c, r = rows
    print(f"recompute / cached: time per step {r['time_per_step_s'] / c['time_per_step_s']:.2f}x, "
          f"peak RSS +{r['peak_rss_mb'] - c['peak_rss_mb']:.1f} MB")


if __name__ == "__main__":
    main()
