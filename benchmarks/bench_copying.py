"""Copying metrics at scale, and how the exact longest-common-substring routine grows.

  pairs    every metric of `copying_metrics` on N pairs of ~200-word texts (testbed-style
           biographies joined in threes; each output is paired with another text, so the
           matches are the short shared phrases real non-copies have)
  scaling  longest_common_substring on two random texts of n characters, n = 1k ... 1M

    python benchmarks/bench_copying.py --pairs 10000
"""

from __future__ import annotations

import argparse
import json
import random
import time

from lmaudit.memorization.copying import copying_metrics
from lmaudit.memorization.substrings import longest_common_substring
from lmaudit.testbed.corpus import generate_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--max-chars", type=int, default=1_000_000)
    args = parser.parse_args()

    bios = [r["text"] for r in generate_corpus(3000, seed="bench-copying")]
    texts = [" ".join(bios[i : i + 3]) for i in range(0, 2997, 3)]  # 999 texts of ~190 words
    rng = random.Random(0)
    pairs = [(texts[i % len(texts)], texts[rng.randrange(len(texts))]) for i in range(args.pairs)]
    start = time.perf_counter()
    for out, ref in pairs:
        copying_metrics(out, ref)
    pair_s = time.perf_counter() - start

    scaling = {}
    n = 1000
    while n <= args.max_chars:
        a = "".join(rng.choice("abcdefghij ") for _ in range(n))
        b = "".join(rng.choice("abcdefghij ") for _ in range(n))
        start = time.perf_counter()
        longest_common_substring(a, b)
        scaling[n] = round(time.perf_counter() - start, 4)
        n *= 10
    print(json.dumps({"pairs": args.pairs, "mean_words": round(sum(len(t.split()) for t in texts) / len(texts), 1),
                      "pairs_s": round(pair_s, 2), "per_pair_ms": round(1000 * pair_s / args.pairs, 3),
                      "lcs_scaling_s": scaling}, indent=2))


if __name__ == "__main__":
    main()
