"""lmaudit's exact-substring index and infini-gram's, side by side on one corpus, in one run.

  corpus   benchmarks/make_corpus.py (--size-mib of UTF-8 text: testbed biographies plus
           standard-library sources; reused when it exists with the same parameters)
  lmaudit  build_index with one shard; with two shards of half the corpus sorted one after the
           other; and with the same two shards sorted at once in two worker processes
           (jobs=2), the records being read meanwhile (libdivsufsort is single-threaded: the
           second core is used only that way); queries run on the 1-shard and 2-shard indexes
  infgram  the PyPI package ``infini-gram`` (2.6.0), made byte-level: every document's UTF-8
           bytes become u16 tokens (token id = byte value, 0-255), each document preceded by
           infini-gram's u16 separator 0xFFFF, which no byte token equals, so in neither tool can
           a query match across two documents (lmaudit separates documents with the byte 0xFF,
           which UTF-8 never holds). Its u8 indexes would reserve 0xFF, and its own tokenizing
           step with no tokenizer packs raw bytes two per u16 token, so this script writes the
           ``tokenized.0``/``offset.0`` files itself (timed as part of infini-gram's build) and
           runs ``python -m infini_gram.indexing`` for the suffix array (--cpus, --mem).

Every build runs in its own child process; peak RAM is the largest summed PSS (proportional set
size: shared pages counted once) of the child and its descendants (infini-gram's indexer starts
one process per CPU), sampled every 50 ms; it includes the Python interpreter (~0.06 GiB).

Queries: 1,000 random substrings of 8-64 bytes of randomly chosen documents, cut at any byte
(not at UTF-8 character boundaries: both indexes are byte-level and lmaudit's count takes
bytes), plus 50 random strings (absent, almost surely) and 50 strings made of a document's end
and the next document's start (present only if they occur inside some document). Both tools
must give identical counts on all 1,100; a mismatch is printed and the script exits 1.
``attribute``: 100 texts of 1,000 characters alternating pieces of corpus documents (20-200
characters) with invented words; lmaudit's attribute(min_bytes=32) and infini-gram's
attribute(min_len=32 tokens = bytes, no delimiters, no word-boundary rule), whose maximal spans
are the same definition, so on texts that are all ASCII their spans (bytes, counts) must agree.
Latency: time.perf_counter around each call, in the same process, after one untimed pass over
the same queries (warm: the index files are in the page cache).

Install infini-gram for this benchmark only (it is not an lmaudit dependency):

    pip install --target /work/bench/ig/site infini-gram     # or pip install infini-gram
    PYTHONPATH=src:/work/bench/ig/site python benchmarks/bench_corpus_vs_infinigram.py --size-mib 64
    PYTHONPATH=src:/work/bench/ig/site python benchmarks/bench_corpus_vs_infinigram.py \\
        --size-mib 1024 --corpus /work/bench/corpus1g --work /work/bench/corpus1g-idx

Without it the lmaudit columns are measured and infini-gram's are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEP16 = 0xFFFF


# --------------------------------------------------------------------------- children (builds)

def iter_corpus(path: Path):
    """The corpus's documents as lightweight records, streamed (never all in memory)."""
    from lmaudit.data import Record

    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            row = json.loads(line)
            yield Record(id=row["id"], text=row["text"], source=str(path), line=line_no)


def child_lmaudit_build(corpus: Path, out: Path, shard_bytes: int, jobs: int = 1) -> dict:
    from lmaudit.corpus.index import build_index

    t = time.perf_counter()
    index = build_index(iter_corpus(corpus), out, shard_bytes=shard_bytes, overwrite=True, jobs=jobs)
    seconds = time.perf_counter() - t
    result = {"seconds": seconds, "shards": len(index.shards), "n_bytes": index.n_bytes, "n_docs": index.n_docs}
    index.close()
    return result


def child_ig_tokenize(corpus: Path, out: Path, chunk_bytes: int = 64 << 20) -> dict:
    """Write infini-gram's ``tokenized.0`` (u16 byte tokens, 0xFFFF before each document) and
    ``offset.0`` (u64 byte offset of each document's separator)."""
    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    base = 0  # bytes written to tokenized.0
    n_docs = 0
    with open(out / "tokenized.0", "wb") as ds, open(out / "offset.0", "wb") as od:
        buf = bytearray()

        def flush() -> None:
            nonlocal base, buf
            if not buf:
                return
            raw = np.frombuffer(bytes(buf), dtype=np.uint8)
            tokens = raw.astype("<u2")
            seps = np.flatnonzero(raw == 0xFF)  # 0xFF never occurs in UTF-8: it marks a document start
            tokens[seps] = SEP16
            ds.write(tokens.tobytes())
            od.write((base + 2 * seps.astype(np.uint64)).astype("<u8").tobytes())
            base += 2 * len(raw)
            buf = bytearray()

        for record in iter_corpus(corpus):
            buf += b"\xff"
            buf += record.text.encode("utf-8", "surrogatepass")
            n_docs += 1
            if len(buf) >= chunk_bytes:
                flush()
        flush()
    return {"seconds": time.perf_counter() - t, "n_docs": n_docs}


def run_child(argv: list[str], env: dict | None = None) -> dict:
    """Run ``argv``; its wall time, CPU time, and the peak of its process tree's summed PSS
    (sampled): proportional set sizes, so pages two processes share (infini-gram's parallel
    jobs map the same token file) are counted once."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [parent] + parent.children(recursive=True)
            total = 0
            for p in procs:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - t
    out, err = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} …: exit {proc.returncode}\n{err[-3000:]}")
    last = [line for line in out.splitlines() if line.startswith("{")]
    return {"wall_s": wall, "peak_pss": peak, "cpu_s": cpu,
            "result": json.loads(last[-1]) if last else {}, "log_tail": (out + err)[-2000:]}


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- queries

def sample_documents(corpus: Path, n_docs: int, rng: random.Random, n_sample: int, n_pairs: int):
    """Texts (bytes) of ``n_sample`` random documents and ``n_pairs`` random adjacent pairs."""
    wanted = set(rng.sample(range(n_docs), min(n_docs, n_sample)))
    firsts = rng.sample(range(n_docs - 1), min(n_docs - 1, n_pairs))
    wanted_pairs = set(firsts) | {i + 1 for i in firsts}
    docs, by_index = [], {}
    with open(corpus, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i in wanted or i in wanted_pairs:
                b = json.loads(line)["text"].encode("utf-8", "surrogatepass")
                if i in wanted:
                    docs.append(b)
                if i in wanted_pairs:
                    by_index[i] = b
    return docs, [(by_index[i], by_index[i + 1]) for i in firsts]


def make_queries(docs: list[bytes], pairs: list[tuple[bytes, bytes]], rng: random.Random, n: int):
    present, absent, across = [], [], []
    long_docs = [d for d in docs if len(d) >= 8]
    while len(present) < n:
        b = rng.choice(long_docs)
        i = rng.randrange(len(b) - 7)
        present.append(b[i : i + rng.randint(8, 64)])
    alphabet = "abcdefghijklmnopqrstuvwxyzQXZ0123456789 éßøł€"
    for _ in range(50):
        s = "".join(rng.choice(alphabet) for _ in range(64)).encode()
        absent.append(s[: rng.randint(8, 64)])
    for a, b in pairs:
        k = rng.randint(8, 64)
        hi = max(1, min(k - 1, len(a)))
        left = rng.randint(min(hi, max(1, k - len(b))), hi)
        across.append(a[len(a) - left :] + b[: k - left])
    across = [q for q in across if q]
    return present, absent, across


def make_outputs(docs: list[bytes], rng: random.Random, n: int, chars: int = 1000) -> list[str]:
    syllables = ["ka", "zu", "mi", "tor", "vel", "qua", "rin", "po", "sel", "dax", "nor", "wi"]
    texts = [d.decode("utf-8", "surrogatepass") for d in docs if d]
    outputs = []
    for _ in range(n):
        text = ""
        while len(text) < chars:
            if rng.random() < 0.5:
                doc = rng.choice(texts)
                i = rng.randrange(len(doc))
                text += doc[i : i + rng.randint(20, 200)]
            else:
                words = ("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
                         for _ in range(rng.randint(3, 20)))
                text += " " + " ".join(words) + " "
        outputs.append(text[:chars])
    return outputs


def timed(fn, items, warm: bool = True) -> tuple[list, list[float]]:
    if warm:
        for x in items:
            fn(x)
    results, times = [], []
    for x in items:
        t = time.perf_counter()
        results.append(fn(x))
        times.append(time.perf_counter() - t)
    return results, times


def stats_ms(times: list[float]) -> dict:
    return {"median_ms": 1e3 * float(np.median(times)), "p99_ms": 1e3 * float(np.percentile(times, 99)),
            "n": len(times)}


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=float, default=64, help="corpus size (UTF-8 text)")
    parser.add_argument("--corpus", default=None, help="corpus folder (default /work/bench/corpus-{size}mib)")
    parser.add_argument("--work", default=None,
                        help="folder for the indexes (default {corpus}-idx; removed unless --keep)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--outputs", type=int, default=100)
    parser.add_argument("--ig-cpus", type=int, default=2, help="infini-gram indexer --cpus")
    parser.add_argument("--ig-mem", type=int, default=12, help="infini-gram indexer --mem (GiB it may use)")
    parser.add_argument("--skip-infinigram", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the indexes")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--child", choices=["lmaudit-build", "ig-tokenize"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus-file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--shard-bytes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "lmaudit-build":
        print(json.dumps(child_lmaudit_build(Path(args.corpus_file), Path(args.out), args.shard_bytes, args.jobs)))
        return
    if args.child == "ig-tokenize":
        print(json.dumps(child_ig_tokenize(Path(args.corpus_file), Path(args.out))))
        return

    sys.path.insert(0, str(HERE))
    from make_corpus import make_corpus

    size_tag = f"{args.size_mib:g}mib"
    corpus_dir = Path(args.corpus or f"/work/bench/corpus-{size_tag}")
    work = Path(args.work or f"{corpus_dir}-idx")
    manifest = make_corpus(args.size_mib, corpus_dir, seed=args.seed)
    corpus = corpus_dir / manifest["file"]
    n_bytes, n_docs = manifest["n_bytes"], manifest["n_docs"]
    gib = n_bytes / 2**30

    ig_reason = None
    if args.skip_infinigram:
        ig_reason = "--skip-infinigram"
    else:
        import importlib.util

        if importlib.util.find_spec("infini_gram") is None:
            ig_reason = ("infini-gram is not installed; install it with "
                         "`pip install --target /work/bench/ig/site infini-gram` and put that folder on PYTHONPATH")
    if ig_reason:
        print(f"infini-gram skipped: {ig_reason}", file=sys.stderr)

    marker = work / ".bench_corpus_vs_infinigram"  # what this script made, and may remove
    if work.exists():
        if not marker.exists():
            sys.exit(f"{work} exists and was not made by this script (no {marker.name}): choose another --work")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    marker.touch()
    me = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    figures: dict = {"corpus": {k: manifest[k] for k in ("n_docs", "n_bytes", "n_empty_docs", "code_share", "sha256")},
                     "builds": {}}
    figures["corpus"]["path"] = str(corpus)

    # (shard bytes, jobs): one shard; two shards sorted one after the other; the same two sorted
    # at once in two worker processes (build_index(jobs=2), `lmaudit index build --jobs 2`).
    builds = {"lmaudit_1": (n_bytes + 1, 1), "lmaudit_2": (-(-n_bytes // 2), 1), "lmaudit_2j": (-(-n_bytes // 2), 2)}
    for name, (shard_bytes, jobs) in builds.items():
        print(f"building {name} …", file=sys.stderr, flush=True)
        r = run_child(me + ["--child", "lmaudit-build", "--corpus-file", str(corpus), "--out", str(work / name),
                            "--shard-bytes", str(shard_bytes), "--jobs", str(jobs)], env)
        figures["builds"][name] = {"seconds": r["result"]["seconds"], "wall_s": r["wall_s"],
                                   "shards": r["result"]["shards"], "peak_pss": r["peak_pss"], "cpu_s": r["cpu_s"],
                                   "disk": disk_bytes(work / name)}
    if not ig_reason:
        ig = work / "infinigram"
        print("infini-gram: writing byte tokens …", file=sys.stderr, flush=True)
        tok = run_child(me + ["--child", "ig-tokenize", "--corpus-file", str(corpus), "--out", str(ig)], env)
        print("infini-gram: building the suffix array …", file=sys.stderr, flush=True)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        ulimit = hard if hard != resource.RLIM_INFINITY else 1048576
        sa = run_child([sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(corpus_dir),
                        "--save_dir", str(ig), "--temp_dir", str(ig / "tmp"), "--token_dtype", "u16",
                        "--version", "4", "--cpus", str(args.ig_cpus), "--mem", str(args.ig_mem),
                        "--ulimit", str(ulimit)], env)
        if not (ig / "table.0").is_file():
            sys.exit(f"infini-gram's indexer wrote no table.0:\n{sa['log_tail']}")
        shutil.rmtree(ig / "tmp", ignore_errors=True)
        figures["builds"]["infinigram"] = {
            "seconds": tok["result"]["seconds"] + sa["wall_s"], "tokenize_s": tok["result"]["seconds"],
            "suffix_array_s": sa["wall_s"], "peak_pss": max(tok["peak_pss"], sa["peak_pss"]),
            "cpu_s": tok["cpu_s"] + sa["cpu_s"],
            "disk": disk_bytes(ig), "cpus": args.ig_cpus, "mem_gib": args.ig_mem}

    # ---- queries
    from lmaudit.corpus.index import load_index

    rng = random.Random(args.seed)
    docs, pairs = sample_documents(corpus, n_docs, rng, n_sample=3000, n_pairs=50)
    present, absent, across = make_queries(docs, pairs, rng, args.queries)
    allq = present + absent + across
    outputs = make_outputs(docs, rng, args.outputs)
    # The two 2-shard indexes are the same files: checked here by their manifests' sha256s.
    same = [json.loads((work / n / "index.json").read_text())["shards"] for n in ("lmaudit_2", "lmaudit_2j")]
    if same[0] != same[1]:
        sys.exit("the 2-shard indexes built with jobs=1 and jobs=2 differ")
    lm = {name: load_index(work / name) for name in builds if name != "lmaudit_2j"}
    engine = None
    if not ig_reason:
        from infini_gram.engine import InfiniGramEngine

        engine = InfiniGramEngine(index_dir=str(work / "infinigram"), eos_token_id=256, vocab_size=257,
                                  version=4, token_dtype="u16")
    counts, lat = {}, {}
    for name, index in lm.items():
        counts[name], t = timed(index.count, allq)
        lat[name] = {"count": stats_ms(t[: len(present)])}
    if engine is not None:
        ids = [list(q) for q in allq]
        res, t = timed(engine.count, ids)
        counts["infinigram"] = [r["count"] for r in res]
        lat["infinigram"] = {"count": stats_ms(t[: len(present)])}
    names = list(counts)
    mismatches = [(q, {n: counts[n][i] for n in names}) for i, q in enumerate(allq)
                  if len({counts[n][i] for n in names}) > 1]
    kinds = [("random substrings", 0, len(present)), ("random strings", len(present), len(present) + len(absent)),
             ("across a document boundary", len(present) + len(absent), len(allq))]
    figures["queries"] = {k: {"n": b - a, "zero": sum(counts[names[0]][i] == 0 for i in range(a, b)),
                              "median_count": float(np.median(counts[names[0]][a:b]))} for k, a, b in kinds}
    figures["queries"]["identical"] = len(allq) - len(mismatches)
    figures["queries"]["total"] = len(allq)

    spans = {}
    for name, index in lm.items():
        res, t = timed(lambda s: index.attribute(s, min_bytes=32), outputs)
        spans[name] = [[(s.byte_start, s.byte_end, s.count) for s in r] for r in res]
        lat[name]["attribute"] = stats_ms(t)
    if engine is not None:
        res, t = timed(lambda s: engine.attribute(list(s.encode("utf-8", "surrogatepass")), [], 32, 10**15, False),
                       outputs)
        spans["infinigram"] = [[(s["l"], s["r"], s["count"]) for s in r["spans"]] for r in res]
        lat["infinigram"]["attribute"] = stats_ms(t)
    ascii_texts = [i for i, s in enumerate(outputs) if s.isascii()]
    span_mismatch = [i for i in ascii_texts if len({tuple(spans[n][i]) for n in spans}) > 1]
    figures["attribute"] = {"texts": len(outputs), "ascii_texts_compared": len(ascii_texts),
                            "ascii_texts_identical": len(ascii_texts) - len(span_mismatch),
                            "spans_per_text_median": float(np.median([len(s) for s in spans[names[0]]]))}
    figures["latency"] = lat
    for index in lm.values():
        index.close()
    if not args.keep:
        shutil.rmtree(work)

    print(table(figures, gib, names))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    bad = False
    if mismatches:
        bad = True
        print(f"\nCOUNT MISMATCHES: {len(mismatches)} of {len(allq)}")
        for q, c in mismatches[:20]:
            print(f"  {q!r}: {c}")
    if span_mismatch:
        bad = True
        print(f"\nATTRIBUTE SPAN MISMATCHES on {len(span_mismatch)} ASCII texts (first shown)")
        i = span_mismatch[0]
        for n in spans:
            print(f"  {n}: {spans[n][i][:8]}")
    if bad:
        sys.exit(1)


def table(f: dict, gib: float, names: list[str]) -> str:
    labels = {"lmaudit_1": "lmaudit, 1 shard", "lmaudit_2": "lmaudit, 2 shards (sequential)",
              "lmaudit_2j": "lmaudit, 2 shards, --jobs 2",
              "infinigram": "infini-gram 2.6.0 (u16 byte tokens)"}
    c = f["corpus"]
    n_bytes = c["n_bytes"]
    cols = [n for n in ("lmaudit_1", "lmaudit_2", "lmaudit_2j", "infinigram") if n in f["builds"]]
    rows = [["build (s)"], ["build (min/GiB)"], ["build CPU time (s, all processes)"],
            ["disk bytes per input byte"], ["peak RAM (GiB, summed PSS)"],
            ["peak RAM per input byte"], ["count median / p99 (ms)"], ["attribute 1 KB median / p99 (ms)"]]
    for n in cols:
        b, lat = f["builds"][n], f["latency"].get(n, {})
        extra = (f" (tokens {b['tokenize_s']:.1f} + SA {b['suffix_array_s']:.1f}, --cpus {b['cpus']})"
                 if n == "infinigram" else "")
        rows[0].append(f"{b['seconds']:.1f}{extra}")
        rows[1].append(f"{b['seconds'] / 60 / gib:.2f}")
        rows[2].append(f"{b['cpu_s']:.1f}")
        rows[3].append(f"{b['disk'] / n_bytes:.2f}")
        rows[4].append(f"{b['peak_pss'] / 2**30:.2f}")
        rows[5].append(f"{b['peak_pss'] / n_bytes:.1f}")
        rows[6].append(f"{lat['count']['median_ms']:.3f} / {lat['count']['p99_ms']:.3f}" if "count" in lat else
                       "as 2 shards")
        rows[7].append(f"{lat['attribute']['median_ms']:.1f} / {lat['attribute']['p99_ms']:.1f}"
                       if "attribute" in lat else "as 2 shards")
    q, a = f["queries"], f["attribute"]
    lines = [f"Corpus: {c['n_docs']:,} documents, {n_bytes / 2**20:.1f} MiB of UTF-8 text "
             f"({c['code_share']:.1%} stdlib code, {c['n_empty_docs']} empty), sha256 {c['sha256'][:12]}…",
             "",
             "| | " + " | ".join(labels[n] for n in cols) + " |",
             "| --- |" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["",
              f"Counts identical in {', '.join(labels[n] for n in names)}: "
              f"{q['identical']:,} of {q['total']:,} queries "
              f"({q['random substrings']['n']} random 8-64-byte substrings, median count "
              f"{q['random substrings']['median_count']:g}; {q['random strings']['n']} random strings, "
              f"{q['random strings']['zero']} absent; {q['across a document boundary']['n']} across a document "
              f"boundary, {q['across a document boundary']['zero']} absent).",
              f"attribute(min 32 bytes): identical spans on {a['ascii_texts_identical']} of the "
              f"{a['ascii_texts_compared']} all-ASCII texts of {a['texts']} (median {a['spans_per_text_median']:g} "
              "spans a text). Latency: warm (one untimed pass first), time.perf_counter per call."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
