"""What the goldfish loss costs in training: the testbed's own training loop with and without it,
interleaved on the same sequences and initial weights, and the mask alone per token; and, on a
testbed with a goldfish model, why a few documents are still extracted from it.

    python benchmarks/bench_goldfish.py --testbed tb --steps 60 --repeats 2

Prints one JSON object: seconds per step of each (median over repeats) and their ratio, the
mask's cost in microseconds per token over every sequence the recipe trains on, and (when the
testbed has goldfish/) each model's teacher-forced greedy accuracy on the extraction test's
continuation tokens, dropped and kept ones apart, for the most-duplicated members and for
400 non-members.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--testbed", required=True, type=Path, help="A built testbed (its model/ tokenizer and members).")
    ap.add_argument("--steps", type=int, default=60, help="Training steps per run.")
    ap.add_argument("--repeats", type=int, default=2, help="Runs of each, interleaved.")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--h", type=int, default=13)
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from lmaudit.takedown.goldfish import GoldfishConfig, goldfish_mask
    from lmaudit.testbed.build import SIZES
    from lmaudit.testbed.train import build_model, train

    cfg = SIZES[json.loads((args.testbed / "testbed.json").read_text())["size"]]
    tok = AutoTokenizer.from_pretrained(args.testbed / "model")
    members = [json.loads(x) for x in (args.testbed / "data" / "members.jsonl").read_text().splitlines()]
    ids = tok([r["text"] for r in members], add_special_tokens=False)["input_ids"]
    sequences = [[tok.bos_token_id, *x, tok.eos_token_id] for x, r in zip(ids, members) for _ in range(r["duplication"])]
    recorded = json.loads((args.testbed / "testbed.json").read_text()).get("goldfish")
    # The testbed's own goldfish model is measured with the mask it was trained with.
    gcfg = GoldfishConfig(**recorded["config"]) if recorded else GoldfishConfig(k=args.k, h=args.h)

    started = time.perf_counter()
    n_tokens = sum(goldfish_mask(s, gcfg).size for s in sequences)
    mask_s = time.perf_counter() - started

    subset = random.Random(0).sample(sequences, args.steps * cfg.train.batch_size)
    times: dict[str, list[float]] = {"standard": [], "goldfish": []}
    for _ in range(args.repeats):
        for name, g in (("standard", None), ("goldfish", gcfg)):
            torch.manual_seed(0)
            model = build_model(cfg.train, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            t = time.perf_counter()
            figures = train(model, subset, cfg.train, seed=0, pad_token_id=tok.pad_token_id, goldfish=g)
            times[name].append((time.perf_counter() - t) / figures["steps"])
    per_step = {name: statistics.median(v) for name, v in times.items()}
    accuracy = token_accuracy(args.testbed, cfg, gcfg, tok) if (args.testbed / "goldfish").is_dir() else None
    print(json.dumps({
        "steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "s_per_step": {name: round(v, 4) for name, v in per_step.items()},
        "all_s_per_step": {name: [round(x, 4) for x in v] for name, v in times.items()},
        "goldfish_over_standard": round(per_step["goldfish"] / per_step["standard"], 3),
        "mask": {"tokens": n_tokens, "seconds": round(mask_s, 3), "us_per_token": round(mask_s / n_tokens * 1e6, 3)},
        "continuation_token_accuracy": accuracy,
    }, indent=2))


def token_accuracy(testbed: Path, cfg, gcfg, tok, *, n_nonmembers: int = 400) -> dict:
    """Greedy next-token accuracy, teacher-forced on the true text, at the extraction test's
    continuation positions (32 + 1 .. 32 + 32 of [BOS] + ids), split by the goldfish mask of the
    sequence as trained: a dropped token the goldfish model gets right is guessed, not remembered,
    if it gets non-members' tokens right as often."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from lmaudit.takedown.goldfish import goldfish_mask

    rows = {s: [json.loads(x) for x in (testbed / "data" / f"{s}.jsonl").read_text().splitlines()]
            for s in ("members", "nonmembers")}
    top = max(r["duplication"] for r in rows["members"])
    groups = {f"members_{top}x": [r for r in rows["members"] if r["duplication"] == top],
              "nonmembers": rows["nonmembers"][:n_nonmembers]}
    p, c = cfg.prefix_tokens, cfg.continuation_tokens
    out = {}
    for name, folder in (("standard", "model"), ("goldfish", "goldfish")):
        lm = AutoModelForCausalLM.from_pretrained(testbed / folder).eval()
        for group, docs in groups.items():
            right: dict[bool, list[bool]] = {True: [], False: []}
            for r in docs:
                seq = [tok.bos_token_id, *tok(r["text"], add_special_tokens=False)["input_ids"]]
                with torch.no_grad():
                    pred = lm(torch.tensor([seq[: p + c + 1]])).logits[0].argmax(-1).tolist()
                drop = goldfish_mask([*seq, tok.eos_token_id], gcfg)
                for t in range(p + 1, p + c + 1):
                    right[bool(drop[t])].append(pred[t - 1] == seq[t])
            out[f"{name}/{group}"] = {"dropped": round(float(np.mean(right[True])), 4),
                                      "kept": round(float(np.mean(right[False])), 4),
                                      "dropped_per_continuation": round(len(right[True]) / len(docs), 2)}
    return out


if __name__ == "__main__":
    main()
