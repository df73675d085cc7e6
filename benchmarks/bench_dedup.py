"""Near-duplicates (lmaudit.corpus.dedup) beside datasketch, on one core, on the corpus that
bench_corpus_index.py generates (testbed biographies, 5,000 documents per seed).

  sketch     shingling + MinHash (128 values, word 5-grams) of every document, MiB of input
             text per second: lmaudit (NFKC, lowercasing, numpy word and shingle hashing,
             rensa's digest matrix), and in parts: the numpy shingling, rensa alone on the
             ready 64-bit shingle hashes, and the copy of the digests into numpy
  dedup      find_near_duplicates(threshold=0.8): sketch + LSH candidates + exact verification
  datasketch MinHash(num_perm=128).update_batch of the same shingles (as UTF-8 strings, built
             in Python with str.split after the same normalisation), then MinHashLSH(0.8)
             insert and query of every document
  planted    --planted F adds near-copies (one word changed) of a fraction F of the documents,
             so that verification has work to do

    OMP_NUM_THREADS=1 python benchmarks/bench_dedup.py --mib 50     # about a minute
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # rensa's batch APIs use a Rayon pool: one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_corpus_index import corpus  # noqa: E402

from lmaudit.corpus import dedup  # noqa: E402
from lmaudit.data import Record  # noqa: E402


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def planted(records: list[Record], fraction: float, seed: int = 0) -> tuple[list[Record], list[tuple]]:
    """The records plus the near-copies, and the (original id, copy id) pairs."""
    rng = random.Random(seed)
    extra, pairs = [], []
    for i, r in enumerate(rng.sample(records, int(fraction * len(records)))):
        w = r.text.split()
        w[rng.randrange(len(w))] = "changed"
        extra.append(Record(id=f"copy-{i}", text=" ".join(w), source="planted", line=i + 1))
        pairs.append((r, extra[-1]))
    return records + extra, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=50)
    parser.add_argument("--planted", type=float, default=0.0)
    parser.add_argument("--no-datasketch", action="store_true")
    args = parser.parse_args()
    records, pairs = planted(corpus(args.mib), args.planted)
    texts = [r.text for r in records]
    mib = sum(len(t.encode()) for t in texts) / 2**20
    out: dict = {"docs": len(texts), "input_mib": round(mib, 1), "planted": args.planted}

    def rate(seconds: float) -> float:
        return round(mib / seconds, 1)

    _, wall, cpu = timed(lambda: dedup._sketch(texts, 5, 128, 0))
    out["lmaudit_sketch"] = {"s": round(wall, 2), "cpu_s": round(cpu, 2), "mib_per_s": rate(wall),
                             "mib_per_cpu_s": rate(cpu)}

    # The parts, chunk by chunk as _sketch does them.
    from rensa import RMinHash

    t_shingle = t_rensa = t_copy = 0.0
    for a, b in dedup._chunks(texts):
        t = time.process_time()
        hashes, counts = dedup._word_hashes([dedup.normalize(x) for x in texts[a:b]])
        sh, n_sh = dedup._shingle_hashes(hashes, counts, 5)
        offsets = np.concatenate(([0], np.cumsum(n_sh[n_sh > 0]))).astype(np.uint64)
        t_shingle += time.process_time() - t
        t = time.process_time()
        matrix = RMinHash.digest_matrix_from_flat_token_hashes(sh, offsets, 128, 0)
        t_rensa += time.process_time() - t
        t = time.process_time()
        dedup._digests(matrix, 128)
        t_copy += time.process_time() - t
    # CPU seconds: on a shared machine wall time counts other processes' turns too.
    out["parts_cpu"] = {"shingling_mib_per_s": rate(t_shingle), "rensa_minhash_mib_per_s": rate(t_rensa),
                    "digests_to_numpy_mib_per_s": rate(t_copy)}

    found, wall, cpu = timed(lambda: dedup.find_near_duplicates(records, threshold=0.8))
    out["lmaudit_dedup"] = {"s": round(wall, 2), "cpu_s": round(cpu, 2), "mib_per_s": rate(wall),
                            "mib_per_cpu_s": rate(cpu),
                            "clusters": len(found.clusters), "in_clusters": found.n_in_clusters,
                            "candidates": found.n_candidates, "rejected": found.n_rejected,
                            "exact_copies": found.n_exact_copies}
    if pairs:  # recall of the planted pairs at or above the threshold, by exact Jaccard
        together = {i: c.ids for c in found.clusters for i in c.ids}
        above = [(a.id, b.id) for a, b in pairs if dedup.jaccard(dedup.shingles(a.text), dedup.shingles(b.text)) >= 0.8]
        out["planted_pairs"] = {"n": len(pairs), "at_or_above_0.8": len(above),
                                "found": sum(1 for a, b in above if b in together.get(a, ()))}

    if not args.no_datasketch:
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError:
            out["datasketch"] = "not installed (pip install datasketch)"
        else:
            def shingle_strings():
                rows = []
                for text in texts:
                    w = dedup.words(text)
                    rows.append([" ".join(w[i:i + 5]).encode() for i in range(max(1, len(w) - 4))])
                return rows

            shingled, _, t_sh = timed(shingle_strings)

            def sketch():
                sigs = []
                for row in shingled:
                    m = MinHash(num_perm=128, seed=1)
                    m.update_batch(row)
                    sigs.append(m)
                return sigs

            sigs, _, t_mh = timed(sketch)

            def lsh():
                index = MinHashLSH(threshold=0.8, num_perm=128)
                for i, m in enumerate(sigs):
                    index.insert(i, m)
                return sum(len(index.query(m)) - 1 for m in sigs) // 2

            pairs, _, t_lsh = timed(lsh)
            out["datasketch_cpu"] = {"shingling_mib_per_s": rate(t_sh), "minhash_mib_per_s": rate(t_mh),
                                 "shingling_and_minhash_mib_per_s": rate(t_sh + t_mh),
                                 "lsh_cpu_s": round(t_lsh, 2), "candidates": pairs,
                                 "sketch_and_lsh_cpu_s": round(t_sh + t_mh + t_lsh, 2)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
