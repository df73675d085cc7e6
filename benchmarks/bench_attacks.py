"""Cost of the logits-only attack suite next to the one scoring pass it reads.

Runs, interleaved and repeated, on the same model and documents:
  scoring  score_records alone: one forward pass per batch plus the token statistics
  suite    the same scoring pass, then every logits-only attack (loss, zlib, Min-K% and
           Min-K%++ at seven k each): what `lmaudit membership --attacks` with those costs
           before evaluation
and, once, the evaluation that follows (AUC with 1,000 bootstrap replicates, TPR at three
FPRs and the ROC for each attack) and the blind baselines, reported but not part of the ratio.

    python benchmarks/bench_attacks.py --testbed lmaudit-demo --n 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from lmaudit.membership.base import ATTACKS, expand
from lmaudit.membership.blind import run_blind_baselines
from lmaudit.membership.evaluate import evaluate_scores
from lmaudit.membership.run import score_attacks
from lmaudit.models.base import ScoringPolicy
from lmaudit.models.hf import HFModel
from lmaudit.scoring.score import score_records
from lmaudit.testbed.load import load_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testbed", required=True)
    parser.add_argument("--n", type=int, default=1000, help="members and non-members each")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    lm = HFModel.from_pretrained(f"{args.testbed}/model", device="cpu")
    members, nonmembers = load_splits(args.testbed)
    records = members[: args.n] + nonmembers[: args.n]
    attacks = [a for a in expand(ATTACKS.names()) if a.logits_only]
    policy = ScoringPolicy()
    score_records(lm, records[:64], batch_size=args.batch_size)  # warm-up: allocator, thread pool

    times: dict[str, list[float]] = {"scoring": [], "suite": []}
    per_attack: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        score_records(lm, records, policy=policy, batch_size=args.batch_size)
        times["scoring"].append(time.perf_counter() - start)
        start = time.perf_counter()
        _, outputs, timings = score_attacks(lm, records, attacks, policy=policy, batch_size=args.batch_size,
                                            cache=None, on_pass=None, seed=0)
        times["suite"].append(time.perf_counter() - start)
        for k, v in timings.items():
            per_attack.setdefault(k, []).append(v)

    labels = np.array([1] * args.n + [0] * args.n)
    start = time.perf_counter()
    for out in outputs.values():
        evaluate_scores(out.values[labels == 1], out.values[labels == 0])
    evaluation = time.perf_counter() - start
    start = time.perf_counter()
    run_blind_baselines([r.text for r in members[: args.n]], [r.text for r in nonmembers[: args.n]])
    blind = time.perf_counter() - start

    med = {k: statistics.median(v) for k, v in times.items()}
    attack_total = sum(statistics.median(v) for k, v in per_attack.items() if k != "scoring")
    print(json.dumps({
        "documents": len(records), "attacks": len(attacks), "torch_threads": torch.get_num_threads(),
        "scoring_s": {"median": round(med["scoring"], 3), "runs": [round(t, 3) for t in times["scoring"]]},
        "suite_s": {"median": round(med["suite"], 3), "runs": [round(t, 3) for t in times["suite"]]},
        "suite_over_scoring": round(med["suite"] / med["scoring"], 3),
        "attacks_only_s": round(attack_total, 3),
        "evaluation_s (once, all attacks)": round(evaluation, 3),
        "blind_baselines_s (once)": round(blind, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
