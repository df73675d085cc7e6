"""Scale-out: the Ray engine against the local one, and memory against the number of documents.

Two measurements, each running the real command line (`lmaudit score`) in a fresh process:

  ray     The same scoring job with --engine local and --engine ray (--workers 2 on this
          machine), alternating, --rounds times; wall time of the whole command (model
          loading, Ray's start and stop included), the median of each, their ratio, and the
          two outputs compared: ids and order, token counts, max |Δ logprob_mean|.
  memory  Peak RSS of `lmaudit score` (local engine) on 10k, 100k and 1M documents: flat
          when inputs are streamed and results written as they come.

    python benchmarks/bench_scale.py ray --model lmaudit-demo/model --docs 20000 --rounds 3
    python benchmarks/bench_scale.py memory --model lmaudit-demo/model --sizes 10000 100000 1000000 \\
        --max-length 64

Documents come from the testbed generator (biographies, 360 characters on average), written
once to --work. --max-length/--overflow truncate (memory only) cut the compute per document,
so a million documents fit in minutes; memory per document in flight does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def make_docs(path: Path, n: int, seed: int = 17) -> Path:
    """n testbed documents in JSONL (made once; generated in slices so this script stays small too)."""
    if path.exists():
        return path
    from lmaudit.testbed.corpus import generate_corpus

    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w") as f:
        made, part = 0, 0
        while made < n:
            k = min(50_000, n - made)
            for i, row in enumerate(generate_corpus(k, seed=f"{seed}-{part}")):
                f.write(json.dumps({"id": f"doc-{made + i:07d}", "text": row["text"]}) + "\n")
            made, part = made + k, part + 1
    os.replace(tmp, path)
    return path


def run_score(model: str, data: Path, out: Path, *extra: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, from GNU time) of one `lmaudit score` run."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "lmaudit", "-q", "score", "--model", model,
           "--data", str(data), "--out", str(out), "--device", "cpu", "--overwrite", "--no-cache", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return wall, int(res.stderr.strip().splitlines()[-1])


def compare(a: Path, b: Path) -> dict:
    ra = [json.loads(x) for x in (a / "samples.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (b / "samples.jsonl").read_text().splitlines()]
    ok = [(x, y) for x, y in zip(ra, rb) if x["error"] is None and y["error"] is None]
    return {"rows": [len(ra), len(rb)], "same_ids_in_order": [x["id"] for x in ra] == [y["id"] for y in rb],
            "same_n_tokens": all(x["n_tokens"] == y["n_tokens"] for x, y in zip(ra, rb)),
            "same_errors": [x["error"] for x in ra] == [y["error"] for y in rb],
            "max_abs_diff_logprob_mean": max((abs(x["logprob_mean"] - y["logprob_mean"]) for x, y in ok), default=0.0),
            "bit_identical_rows": sum(x == y for x, y in zip(ra, rb))}


def bench_ray(args) -> dict:
    data = make_docs(args.work / f"docs-{args.docs}.jsonl", args.docs)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for r in range(args.rounds):
        order = ("local", "ray") if r % 2 == 0 else ("ray", "local")  # alternate: the machine's speed drifts
        for engine in order:
            extra = ["--engine", "ray", "--workers", str(args.workers)] if engine == "ray" else []
            wall, rss = run_score(args.model, data, args.work / f"out-{engine}", "--batch-size", str(args.batch_size),
                                  *extra)
            times[engine].append(wall)
            print(f"round {r + 1}: {engine:5s} {wall:7.1f} s  peak RSS of the driver {rss / 1024:.0f} MiB", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"docs": args.docs, "rounds": args.rounds, "workers": args.workers, "times_s": times, "median_s": med,
              "ratio_ray_to_local": med["ray"] / med["local"],
              "outputs": compare(args.work / "out-local", args.work / "out-ray")}
    print(json.dumps(result, indent=2))
    return result


def bench_memory(args) -> dict:
    rows = []
    extra = ["--batch-size", str(args.batch_size)]
    if args.max_length:
        extra += ["--max-length", str(args.max_length), "--overflow", "truncate"]
    for n in args.sizes:
        data = make_docs(args.work / f"docs-{n}.jsonl", n)
        wall, rss = run_score(args.model, data, args.work / f"mem-{n}", *extra)
        summary = json.loads((args.work / f"mem-{n}" / "results.json").read_text())["summary"]
        rows.append({"docs": n, "file_mib": round(data.stat().st_size / 2**20, 1), "peak_rss_mib": round(rss / 1024),
                     "wall_s": round(wall, 1), "n_scored": summary["n_scored"], "n_tokens": summary["n_tokens"]})
        print(json.dumps(rows[-1]), flush=True)
    return {"policy": extra, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ray", "memory"])
    ap.add_argument("--model", required=True, help="A model folder (the testbed's: lmaudit-demo/model).")
    ap.add_argument("--work", type=Path, default=Path("bench-scale"), help="Where documents and runs go.")
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--max-length", type=int, default=0, help="memory: truncate documents to this many tokens")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = bench_ray(args) if args.what == "ray" else bench_memory(args)
    (args.work / f"{args.what}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
