"""BM25 search (lmaudit.corpus.bm25, tantivy) beside bm25s, on the testbed generator's biographies.

  corpus   the corpus of benchmarks/bench_corpus_index.py (--mib 50: 51.7 MiB, 150,000 documents)
  index    lmaudit: build_bm25 from a suffix index built first (not timed), one indexing thread;
           bm25s: the same documents tokenized with the same analyzer (tantivy's default), then
           BM25(k1=1.2, b=0.75, method="lucene").index; seconds and MiB/s of input text
  queries  200 one-word, 200 three-word (bags) and 200 three-word phrase queries, drawn from
           random documents' words; median and p99 latency in ms of a top-10 search, one query
           at a time: lmaudit's search() (ids and snippets) and the tantivy search under it
           (ids and scores only), and bm25s.retrieve (ids and scores; bags only: it has no phrases)
  agree    for the bag queries, the share of queries whose top-10 ids are the same set in both,
           and the mean overlap; the share equal up to ties (our ten score as high by bm25s's own
           scores); and the share explained by tantivy's stored lengths (no document bm25s ranks in
           its ten and we do not scores above our tenth by tantivy's formula, computed here from
           the tokens); tantivy stores document lengths in one byte (exact to 40 words,
           then about 3 significant bits), bm25s exactly, so near-ties may swap

    OMP_NUM_THREADS=1 python benchmarks/bench_bm25.py --mib 50
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_corpus_index import corpus, disk  # noqa: E402

from lmaudit.corpus.bm25 import _analyzer, build_bm25  # noqa: E402
from lmaudit.corpus.index import build_index  # noqa: E402


def stored_length(n: int) -> int:
    """tantivy's one-byte document length, decoded (exact below 24, then 4 significant bits, rounded down)."""
    m = n - 24
    if m < 8:
        return n
    e = m.bit_length() - 4
    return 24 + ((m >> e) << e)


def ms(times: list[float]) -> str:
    a = np.array(times) * 1000
    return f"{np.median(a):7.3f} {np.percentile(a, 99):7.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=50)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    records = corpus(args.mib)
    mib = sum(len(r.text.encode()) for r in records) / 2**20
    print(f"corpus: {len(records):,} documents, {mib:.1f} MiB")
    tmp = Path(tempfile.mkdtemp())
    try:
        index = build_index(records, tmp / "idx")
        t = time.perf_counter()
        bm25 = build_bm25(index)
        lm_build = time.perf_counter() - t
        lm_disk = disk(tmp / "idx" / "bm25")

        analyzer = _analyzer()
        t = time.perf_counter()
        tokens = [analyzer.analyze(r.text) for r in records]
        bs_tok = time.perf_counter() - t
        import bm25s

        retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
        t = time.perf_counter()
        retriever.index(tokens, show_progress=False)
        bs_build = time.perf_counter() - t

        n_docs, avg = len(tokens), sum(map(len, tokens)) / len(tokens)

        def tantivy_formula(words: list[str], d: int) -> float:
            """BM25 of document d as tantivy computes it (stored lengths), from its tokens here."""
            norm = 1.2 * (0.25 + 0.75 * stored_length(len(tokens[d])) / avg)
            score = 0.0
            for w in words:
                tf = tokens[d].count(w)
                if tf:
                    df = bm25._searcher.doc_freq("text", w)
                    # idf in 32-bit floats as tantivy has it: for a word in nearly every document,
                    # ln(1 + x) of a tiny x is then off by up to about 0.1%.
                    x = np.float32(n_docs - df + 0.5) / np.float32(df + 0.5)
                    score += float(np.log(np.float32(1) + x)) * 2.2 * tf / (tf + norm)
            return score

        rng = random.Random(0)
        queries: dict[str, list[str]] = {"one word": [], "three words": [], "phrase": []}
        while min(len(q) for q in queries.values()) < args.queries:
            words = tokens[rng.randrange(len(tokens))]
            if len(words) < 3:
                continue
            i = rng.randrange(len(words) - 2)
            queries["one word"].append(rng.choice(words))
            queries["three words"].append(" ".join(rng.sample(words, 3)))
            queries["phrase"].append('"' + " ".join(words[i:i + 3]) + '"')
        queries = {k: v[:args.queries] for k, v in queries.items()}

        print(f"\n{'index':<10} {'seconds':>8} {'MiB/s':>7} {'disk/input':>10}")
        print(f"{'lmaudit':<10} {lm_build:8.1f} {mib / lm_build:7.1f} {lm_disk / (mib * 2**20):10.2f}")
        print(f"{'bm25s':<10} {bs_build:8.1f} {mib / bs_build:7.1f} {'':>10}   "
              f"(+ {bs_tok:.1f} s tokenizing with the same analyzer)")
        print(f"\n{'queries (top 10, ms)':<22} {'search() med p99':>17} {'tantivy med p99':>17} "
              f"{'bm25s med p99':>17} {'same top-10':>11} {'overlap':>8} {'up to ties':>11} {'explained':>10}")
        for kind, qs in queries.items():
            full, engine, bs, same, overlap, ties, explained = [], [], [], [], [], [], []
            for q in qs:
                t = time.perf_counter()
                hits = bm25.search(q, limit=10)
                full.append(time.perf_counter() - t)
                tq, _, _ = bm25._query(q)
                t = time.perf_counter()
                bm25._searcher.search(tq, 10, count=False)
                engine.append(time.perf_counter() - t)
                if kind == "phrase":
                    continue
                words = list(dict.fromkeys(analyzer.analyze(q)))
                t = time.perf_counter()
                docs, scores = retriever.retrieve([words], k=10, show_progress=False, n_threads=1)
                bs.append(time.perf_counter() - t)
                # bm25s fills k with documents scoring 0 (matching no word); tantivy returns matches only.
                mine, theirs = {h.doc for h in hits}, {int(d) for d, s in zip(docs[0], scores[0]) if s > 0}
                same.append(mine == theirs)
                # Up to ties: tantivy's ten are as good a top 10 by bm25s's own scores.
                full_scores = retriever.get_scores(words)
                best = np.sort(full_scores)[::-1][:len(theirs)]
                ties.append(len(mine) == len(theirs) and np.allclose(np.sort(full_scores[list(mine)])[::-1], best,
                                                                        rtol=1e-5))
                # Explained by the stored lengths: no document of bm25s's ten but not of ours beats our
                # tenth by tantivy's formula.
                floor = min((h.score for h in hits), default=0.0)
                explained.append(all(tantivy_formula(words, d) <= floor * (1 + 1e-5) for d in theirs - mine))
                overlap.append(len(mine & theirs) / max(1, len(theirs)))
            agree = (f"{np.mean(same):11.1%} {np.mean(overlap):8.1%} {np.mean(ties):11.1%} {np.mean(explained):10.1%}"
                     if same else f"{'-':>11} {'-':>8} {'-':>11} {'-':>10}")
            print(f"{kind:<22} {ms(full):>17} {ms(engine):>17} {ms(bs) if bs else '-':>17} {agree}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
