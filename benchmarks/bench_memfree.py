"""MemFree: index build time and size, and the processor's cost per decoding step.

  index  NgramIndex.build on a synthetic corpus (uniform random ids, vocabulary 32,000,
         documents of 1,005 tokens, n = 6) of 1M and 5M n-grams, exact and Bloom (fp 1e-3):
         build, save and load seconds, bytes on disk and in memory, and peak traced memory
         while building (tracemalloc, the 1M size only: it slows the Bloom build)
  step   one processor call on (B, 128) ids and (B, V) float32 scores, B = 1 and 32,
         V = 2,048 and 32,000, against a no-op processor, on the 5M index; "miss": random
         ids (no row ends on a protected prefix, the common case); "copy": every row ends on
         a protected prefix and its highest score is the protected continuation (the model
         is about to copy, so the token must be banned); for scale, torch.argmax over the
         scores (the greedy pick every step makes anyway)

    python benchmarks/bench_memfree.py            # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import tracemalloc

import numpy as np
import torch

from lmaudit.takedown.memfree import MemFreeProcessor, NgramIndex

VOCAB, N, DOC = 32_000, 6, 1_005


def corpus(ngrams: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, DOC, dtype=np.int32) for _ in range(ngrams // (DOC - N + 1))]


def build_figures(docs, kind: str, trace: bool) -> tuple[dict, NgramIndex]:
    start = time.perf_counter()
    index = NgramIndex.build(docs, N, tokenizer_fingerprint="bench", kind=kind)
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        index.save(tmp)
        save_s = time.perf_counter() - start
        start = time.perf_counter()
        NgramIndex.load(tmp)
        load_s = time.perf_counter() - start
    peak = None
    if trace:
        tracemalloc.start()
        NgramIndex.build(docs, N, tokenizer_fingerprint="bench", kind=kind)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    m = index.meta
    per_m = 1e6 / m["ngram_occurrences"]
    return {
        "kind": kind, "ngrams": m["ngram_occurrences"], "build_s": round(build_s, 2), "save_s": round(save_s, 2),
        "load_s": round(load_s, 2), "disk_MB": round(m["bytes_on_disk"] / 1e6, 1),
        "memory_MB": round(m["memory_bytes"] / 1e6, 1), "disk_MB_per_M": round(m["bytes_on_disk"] / 1e6 * per_m, 2),
        "memory_MB_per_M": round(m["memory_bytes"] / 1e6 * per_m, 2),
        "build_s_per_M": round(build_s * per_m, 2),
        "build_peak_MB": round(peak / 1e6, 1) if peak is not None else None,
    }, index


def step_us(proc, ids, scores, repeats: int) -> float:
    """Median microseconds per call (this VM is shared: the median resists other jobs' bursts)."""
    for _ in range(5):
        proc(ids, scores)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc(ids, scores)
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000", help="n-gram counts of the synthetic corpora")
    parser.add_argument("--repeats", type=int, default=200, help="processor calls timed per cell")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sizes = [int(s) for s in args.sizes.split(",")]
    builds, indices = [], {}
    for size in sizes:
        docs = corpus(size)
        for kind in ("exact", "bloom"):
            fig, index = build_figures(docs, kind, trace=size == sizes[0])
            builds.append(fig)
            indices[kind] = index
            print(json.dumps(fig), flush=True)
    protected = docs  # the largest corpus: the indices in `indices` are built from it

    rng = np.random.default_rng(1)
    steps = []
    for V in (2_048, 32_000):
        for B in (1, 32):
            miss_ids = torch.as_tensor(rng.integers(0, VOCAB, (B, 128)))
            copy_ids = miss_ids.clone()
            scores = torch.randn(B, V, generator=torch.Generator().manual_seed(0))
            copy_scores = scores.clone()
            for b in range(B):
                while True:  # a protected n-gram whose last id fits this vocabulary
                    doc = protected[int(rng.integers(len(protected)))]
                    at = int(rng.integers(0, DOC - N + 1))
                    if doc[at + N - 1] < V:
                        break
                copy_ids[b, -(N - 1):] = torch.as_tensor(doc[at : at + N - 1].astype(np.int64))
                copy_scores[b, int(doc[at + N - 1])] = 10.0  # the model wants to copy it
            row = {"V": V, "B": B, "noop_us": round(step_us(lambda i, s: s, miss_ids, scores, args.repeats), 1),
                   "argmax_us": round(step_us(lambda i, s: s.argmax(dim=-1), miss_ids, scores, args.repeats), 1)}
            for kind in ("exact", "bloom"):
                proc = MemFreeProcessor(indices[kind])
                row[f"{kind}_miss_us"] = round(step_us(proc, miss_ids, scores, args.repeats), 1)
                proc = MemFreeProcessor(indices[kind])
                row[f"{kind}_copy_us"] = round(step_us(proc, copy_ids, copy_scores, args.repeats), 1)
                row[f"{kind}_copy_banned_per_call"] = round(proc.stats()["tokens_banned"] / proc.stats()["steps"], 2)
            steps.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                      "threads": args.threads, "builds": builds, "steps": steps}, indent=2))


if __name__ == "__main__":
    main()
