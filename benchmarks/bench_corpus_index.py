"""The exact-substring index (lmaudit.corpus.index): build speed, disk and RAM per input byte,
and query latency, on the testbed generator's biographies.

  corpus   testbed biographies (lmaudit.testbed.corpus.generate_corpus, 5,000 documents per
           seed, seeds 0, 1, … until the size is reached), ids "s{seed}-{i}"
  build    build_index with one shard (--shard-mib larger than the corpus) and with shards of
           --small-shard-mib: seconds, MiB/s, bytes on disk per input byte, and the peak RSS
           increase over the process before the build per shard byte (ru_maxrss)
  count    1,000 random 8-64-byte substrings of the documents (median and p99, ms)
  attr     attribute(min_bytes=32) on 100 texts of about 1 KB, half copied pieces, half
           generated words (median and p99, ms)

    python benchmarks/bench_corpus_index.py --mib 50     # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lmaudit.corpus.index import build_index
from lmaudit.data import Record
from lmaudit.testbed.corpus import generate_corpus


def corpus(mib: float) -> list[Record]:
    records, size, seed = [], 0, 0
    while size < mib * 2**20:
        for i, row in enumerate(generate_corpus(5000, seed=seed)):
            records.append(Record(id=f"s{seed}-{i}", text=row["text"], source="generated", line=len(records) + 1))
            size += len(row["text"].encode())
        seed += 1
    return records


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=50)
    parser.add_argument("--small-shard-mib", type=float, default=8)
    parser.add_argument("--only", choices=["one_shard", "small_shards"],
                        help="run one build in this process (the default runs each in its own, for ru_maxrss)")
    args = parser.parse_args()
    if args.only is None:
        for label in ("one_shard", "small_shards"):
            subprocess.run([sys.executable, __file__, "--mib", str(args.mib), "--small-shard-mib",
                            str(args.small_shard_mib), "--only", label], check=True)
        return
    records = corpus(args.mib)
    n_bytes = sum(len(r.text.encode()) for r in records)
    out = {"docs": len(records), "input_mib": round(n_bytes / 2**20, 1)}
    rng = random.Random(0)
    tmp = Path(tempfile.mkdtemp())
    try:
        shard_mib = {"one_shard": 4 * args.mib, "small_shards": args.small_shard_mib}[args.only]
        for label in (args.only,):
            shard_bytes = int(shard_mib * 2**20)
            before = rss_now()
            t = time.perf_counter()
            index = build_index(records, tmp / label, shard_bytes=shard_bytes)
            seconds = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
            largest = max(s.entry["n_bytes"] for s in index.shards)
            out[label] = {"shards": len(index.shards), "seconds": round(seconds, 2),
                          "mib_per_s": round(n_bytes / 2**20 / seconds, 1),
                          "disk_per_byte": round(disk(tmp / label) / n_bytes, 3),
                          "peak_rss_over_largest_shard": round(peak / largest, 2)}
            queries = []
            for _ in range(1000):
                b = rng.choice(records).text.encode()
                i, k = rng.randrange(max(1, len(b) - 8)), rng.randint(8, 64)
                queries.append(b[i : i + k])
            times = []
            for q in queries:
                t = time.perf_counter()
                index.count(q)
                times.append(time.perf_counter() - t)
            out[label]["count_ms"] = {"median": round(1e3 * float(np.median(times)), 3),
                                      "p99": round(1e3 * float(np.percentile(times, 99)), 3)}
            words = " ".join(r.text for r in records[-200:]).split()
            times = []
            for _ in range(100):
                text = ""
                while len(text) < 1000:
                    if rng.random() < 0.5:
                        doc = rng.choice(records).text
                        i = rng.randrange(len(doc))
                        text += doc[i : i + rng.randint(20, 200)]
                    else:
                        text += " " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) + " "
                t = time.perf_counter()
                index.attribute(text[:1000], min_bytes=32)
                times.append(time.perf_counter() - t)
            out[label]["attribute_1kb_ms"] = {"median": round(1e3 * float(np.median(times)), 1),
                                              "p99": round(1e3 * float(np.percentile(times, 99)), 1)}
            index.close()
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
