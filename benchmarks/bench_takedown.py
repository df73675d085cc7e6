"""Tokens per second of every decoding-time takedown method against plain greedy decoding, at
batch 1 and batch 32, side by side in one run on the default testbed.

The protected corpus is the testbed's most duplicated members (400 on the default testbed),
and the prompts are their first 32 tokens (after BOS), continued for 32 tokens: the worst case
for MemFree, whose filter rejects the model's first choice at most steps there. Each batch size
times every method on the same prompts, the methods interleaved, ``--repeats`` times; the median
counts (this VM's timings vary between identical calls).

    lmaudit testbed --out lmaudit-demo          # or: lmaudit demo
    python benchmarks/bench_takedown.py --testbed lmaudit-demo --prompts 256 --prompts-batch1 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--testbed", type=Path, required=True)
    ap.add_argument("--methods", default="none,memfree,topk,rcad,sysprompt,sysprompt+memfree")
    ap.add_argument("--prompts", type=int, default=256, help="Prompts timed at batch 32.")
    ap.add_argument("--prompts-batch1", type=int, default=32, help="Prompts timed at batch 1.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON here.")
    args = ap.parse_args()

    import torch

    from lmaudit.models.hf import HFModel
    from lmaudit.takedown.evaluate import TakedownEvalConfig, _time, cut
    from lmaudit.takedown.methods import TakedownModel, parse_methods, prepare_protected
    from lmaudit.testbed.load import load_splits

    torch.set_num_threads(args.threads)
    lm = HFModel.from_pretrained(str(args.testbed / "model"), device="cpu")
    members, _ = load_splits(args.testbed)
    top = max(r.meta["duplication"] for r in members)
    protected = [r for r in members if r.meta["duplication"] == top]
    parsed = parse_methods(args.methods)
    t = time.perf_counter()
    prepared = prepare_protected(lm, protected, {p for _, ps in parsed for p in ps}, TakedownEvalConfig().takedown)
    prepare_s = time.perf_counter() - t
    models = {label: TakedownModel(lm, parts, prepared) for label, parts in parsed}
    units, _ = cut(lm, protected, 32, 32)
    figures = {"date": time.strftime("%Y-%m-%d"), "protected_documents": len(protected), "prepare_s": round(prepare_s, 2),
               "threads": args.threads, "batches": {}}
    for batch, n in ((1, args.prompts_batch1), (32, args.prompts)):
        config = TakedownEvalConfig(batch_size=batch, timing_repeats=args.repeats)
        figures["batches"][batch] = _time(models, units[:n], config)
    print(f"{len(protected)} protected documents (duplication {top}), index and retriever built in {prepare_s:.1f} s")
    print(f"{'method':<22}" + "".join(f"{f'batch {b}: tokens/s (x plain)':>34}" for b in figures["batches"]))
    for label in models:
        cells = []
        for b, rows in figures["batches"].items():
            r = rows[label]
            cells.append(f"{r['tokens_per_s']:>10.0f} ({r['relative_to_none']:.3f}x; runs {', '.join(map(str, r['runs']))})")
        print(f"{label:<22}" + "".join(f"{c:>34}" for c in cells))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
