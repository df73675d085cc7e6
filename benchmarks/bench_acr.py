"""ACR on the default testbed: memorized members against non-members, and the cost on this machine.

Targets, as issue 5 sets them: ``--members`` member documents whose 32-token continuation
greedy extraction reproduces exactly, and ``--nonmembers`` non-member documents; each target is
the first L tokens of that continuation, L uniform in 24..32. Every target gets the full
search (``lmaudit.memorization.acr``); the run is written like ``lmaudit acr`` writes it.
``--compare N`` also runs the paper's length order (start at 5 tokens and grow) on the first
N targets of each group, for a side-by-side comparison on the same targets.

    python benchmarks/bench_acr.py --testbed lmaudit-demo --out runs/bench-acr
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from lmaudit.memorization.acr import ACRConfig, acr_to_dir, continuation_targets
from lmaudit.memorization.extraction import ExtractionConfig, run_extraction
from lmaudit.models.hf import HFModel
from lmaudit.testbed.load import load_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testbed", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--nonmembers", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--top-k", type=int, default=128)
    parser.add_argument("--patience", type=int, default=25)
    parser.add_argument("--compare", type=int, default=0, help="targets per group also run in the paper's order")
    args = parser.parse_args()

    lm = HFModel.from_pretrained(f"{args.testbed}/model", device="cpu")
    members, nonmembers = load_splits(args.testbed)
    started = time.time()
    _, rows = run_extraction(lm, members, config=ExtractionConfig(n_bootstrap=10), batch_size=64)
    extracted = [m for m, r in zip(members, rows) if r.get("exact_match")]
    targets = (continuation_targets(lm, extracted, n=args.members, group="member", seed=0)
               + continuation_targets(lm, nonmembers, n=args.nonmembers, group="nonmember", seed=1))
    print(f"{len(extracted)} members extracted; targets chosen in {time.time() - started:.1f} s")
    config = ACRConfig(steps=args.steps, n_candidates=args.candidates, top_k=args.top_k, patience=args.patience)
    runs = {"shrink": (config, targets)}
    if args.compare:
        few = [t for g in ("member", "nonmember") for t in [x for x in targets if x.meta["group"] == g][: args.compare]]
        runs["paper order"] = (replace(config, start_tokens=5), few)
    report = {}
    for name, (cfg, recs) in runs.items():
        r = acr_to_dir(lm, recs, f"{args.out}/{name.replace(' ', '-')}", config=cfg, command=f"bench_acr {name}")
        report[name] = {"targets": len(recs), "seconds": r["compute"]["seconds"], "steps": r["compute"]["steps"],
                        **{g: {k: v[k] for k in ("n", "memorized_rate", "n_success", "acr_median", "seconds_mean")}
                           for g, v in r["by_group"].items()}}
        print(name, json.dumps(report[name], indent=1))
    if args.compare:
        import itertools

        rows = {name: [json.loads(x) for x in open(f"{args.out}/{name.replace(' ', '-')}/samples.jsonl")] for name in runs}
        print(f"{'target':<12}{'group':<11}{'tokens':>7}" + "".join(f"{n + ' ACR':>16}{'s':>7}" for n in runs))
        by_id = {n: {r["id"]: r for r in rs} for n, rs in rows.items()}
        for r in itertools.islice(rows["paper order"], None):
            cells = "".join(f"{(by_id[n][r['id']]['acr'] or 0):>16.2f}{by_id[n][r['id']]['seconds']:>7.1f}" for n in runs)
            print(f"{r['id']:<12}{r['group']:<11}{r['target_tokens']:>7}{cells}")


if __name__ == "__main__":
    main()
