"""ACR on the default testbed: which length search, at which budget, finds the shortest prompts.

Targets, as issue 5 sets them: ``--members`` member documents whose 32-token continuation
greedy extraction reproduces exactly, and ``--nonmembers`` non-member documents; each target is
the first L tokens of that continuation, L uniform in 24..32 (seeds 0 and 1). Every search in
``--searches`` runs on the same targets at the same budget (``--budget``):

- ``demo``: the demo's CPU budget (100 steps at the first length, 50 candidates, top-k 128,
  patience 25);
- ``paper``: ``lmaudit acr``'s default, the paper's (200 steps, 100 candidates, top-k 250,
  every length runs its full steps).

Searches (``lmaudit.memorization.acr``): ``shrink`` starts one token shorter than the target
and shrinks; ``grow`` is the paper's order (start at 5 tokens, +5 and 1.2× steps after each
failure, then shrink). No time cap: the budget is in steps, so rows do not depend on the load.

Targets run interleaved (member, non-member, member, ...), every search on one target before
the next target, and each finished search is saved in the run's ACR cache (``<out>/cache.sqlite``):
a run stopped part-way still gives a side-by-side comparison of the targets done, and the same
command resumes it. At the end each search's run is written like ``lmaudit acr`` writes it
(``<out>/<search>/``) and the comparison to ``<out>/compare.md`` and ``compare.json``.

    python benchmarks/bench_acr.py --testbed lmaudit-demo --out runs/bench-acr-demo --budget demo
    python benchmarks/bench_acr.py --testbed lmaudit-demo --out runs/bench-acr-paper --budget paper --first 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lmaudit.memorization.acr import ACRCache, ACRConfig, acr_to_dir, continuation_targets, run_acr
from lmaudit.memorization.extraction import ExtractionConfig, run_extraction
from lmaudit.models.hf import HFModel
from lmaudit.stats import proportion_ci
from lmaudit.testbed.load import load_splits

BUDGETS = {
    "demo": dict(steps=100, n_candidates=50, top_k=128, patience=25),
    "paper": dict(steps=200, n_candidates=100, top_k=250, patience=None),
}
SEARCHES = {"shrink": dict(start_tokens=None), "grow": dict(start_tokens=5, grow_tokens=5, steps_growth=1.2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testbed", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--nonmembers", type=int, default=20)
    parser.add_argument("--first", type=int, default=None, help="only the first N targets of each group")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="demo")
    parser.add_argument("--searches", default="shrink,grow", help=f"comma-separated, of {', '.join(SEARCHES)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    searches = args.searches.split(",")
    if unknown := set(searches) - set(SEARCHES):
        parser.error(f"unknown search(es): {', '.join(sorted(unknown))}")
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = HFModel.from_pretrained(f"{args.testbed}/model", device="cpu")
    members, nonmembers = load_splits(args.testbed)
    started = time.time()
    _, rows = run_extraction(lm, members, config=ExtractionConfig(n_bootstrap=10), batch_size=64)
    extracted = [m for m, r in zip(members, rows) if r.get("exact_match")]
    groups = [continuation_targets(lm, extracted, n=args.members, group="member", seed=0)[: args.first],
              continuation_targets(lm, nonmembers, n=args.nonmembers, group="nonmember", seed=1)[: args.first]]
    # Interleaved, so that a run stopped part-way has compared both groups.
    targets = [t for pair in zip(*groups) for t in pair] + groups[0][len(groups[1]):] + groups[1][len(groups[0]):]
    print(f"{len(extracted)} members extracted; {len(targets)} targets chosen in {time.time() - started:.1f} s; "
          f"{torch.get_num_threads()} threads", flush=True)

    out = Path(args.out)
    configs = {s: ACRConfig(**BUDGETS[args.budget], **SEARCHES[s]) for s in searches}
    cache_path = out / "cache.sqlite"
    with ACRCache(cache_path) as cache:
        for k in range(1, len(targets) + 1):
            for s in searches:
                # A target's seed is its index, so the prefix run searches target k only.
                row = run_acr(lm, targets[:k], config=configs[s], cache=cache).samples[-1]
                print(f"{k:>3} {row['id']:<10} {row['group']:<10} {s:<7} prompt {row['prompt_tokens']} / "
                      f"{row['target_tokens']}  steps {row['steps']:>5}  {row['seconds']:>7.1f} s", flush=True)
    runs = {s: acr_to_dir(lm, targets, out / s, config=configs[s], cache_path=cache_path,
                          command=f"bench_acr --budget {args.budget} {s}") for s in searches}
    samples = {s: [json.loads(x) for x in open(out / s / "samples.jsonl")] for s in searches}
    report = compare(samples, args.budget)
    (out / "compare.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "compare.md").write_text(report["markdown"])
    print(report["markdown"])
    del runs


def compare(samples: dict[str, list[dict]], budget: str) -> dict:
    """Per group and search: prompts found, memorized (ACR > 1) with its interval, median
    ACR, GCG steps and seconds; per target: the prompt length each search found."""
    summary: dict = {}
    lines = [f"Budget: {budget}. Per group and search (memorized: ACR > 1, 95% Clopper-Pearson interval):", "",
             "| group | search | n | memorized | 95% CI | median ACR (found) | mean prompt tokens (found) "
             "| shorter than the other search | GCG steps | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    names = list(samples)
    for group in ("member", "nonmember"):
        for s in names:
            rows = [r for r in samples[s] if r.get("group") == group]
            if not rows:
                continue
            mem = sum(bool(r["memorized"]) for r in rows)
            lo, hi = proportion_ci(mem, len(rows))
            found = [r for r in rows if r["prompt_tokens"] is not None]
            others = {o: {r["id"]: r for r in samples[o]} for o in names if o != s}
            shorter = sum(1 for r in rows if r["prompt_tokens"] is not None and all(
                (o[r["id"]]["prompt_tokens"] or 10**9) > r["prompt_tokens"] for o in others.values()))
            entry = {"n": len(rows), "memorized": mem, "ci": [lo, hi], "n_found": len(found),
                     "acr_median": float(np.median([r["acr"] for r in found])) if found else None,
                     "prompt_tokens_mean": float(np.mean([r["prompt_tokens"] for r in found])) if found else None,
                     "shorter_than_others": shorter, "steps": sum(r["steps"] for r in rows),
                     "seconds": round(sum(r["seconds"] for r in rows), 1)}
            summary.setdefault(group, {})[s] = entry
            med = f"{entry['acr_median']:.2f}" if found else "–"
            mean = f"{entry['prompt_tokens_mean']:.1f}" if found else "–"
            lines.append(f"| {group} | {s} | {len(rows)} | {mem} | {lo:.2f}–{hi:.2f} | {med} | {mean} | {shorter} "
                         f"| {entry['steps']:,} | {entry['seconds']:,.0f} |")
    lines += ["", "Per target: prompt tokens found / GCG steps (– : none shorter than the target):", "",
              "| target | group | tokens | " + " | ".join(names) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for i, r in enumerate(samples[names[0]]):
        cells = [f"{samples[s][i]['prompt_tokens'] or '–'} / {samples[s][i]['steps']:,}" for s in names]
        lines.append(f"| {r['id']} | {r['group']} | {r['target_tokens']} | " + " | ".join(cells) + " |")
    return {"budget": budget, "by_group": summary, "markdown": "\n".join(lines) + "\n"}


if __name__ == "__main__":
    main()
