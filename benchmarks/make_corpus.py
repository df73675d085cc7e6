"""A reproducible text corpus of a given size for the corpus-index benchmarks (JSONL, id + text).

Two kinds of documents, interleaved at seeded places:

  bio    testbed biographies (lmaudit.testbed.corpus.generate_corpus, 5,000 documents per seed,
         seeds seed*100000, +1, … until the size is reached), ids "bio-{seed}-{i}". The
         generator writes about 19 MiB/s on one core here, so 1 GiB takes about a minute: fast
         enough, but its sentence frames repeat, so alone it is an unusually repetitive corpus.
  py     this machine's Python standard-library sources (every ``*.py`` under
         ``sysconfig.get_paths()["stdlib"]`` outside site-packages, sorted, then taken in a seeded
         shuffle; one document per file, ids "py:{relative path}"), up to --code-share of the
         corpus (about 33 MiB exist, so the share falls below it past ~260 MiB). Code brings other byte statistics, long
         repeats (licence headers), non-ASCII text and empty documents (empty ``__init__.py``).
         Files that are not UTF-8 are left out and listed in the manifest with the reason.

The size counts the documents' UTF-8 text bytes (not the JSONL's escapes). ``OUT/manifest.json``,
written last and atomically, records the parameters, the lmaudit and Python versions, every
source file with its sha256, the counts, and the sha256 of ``corpus.jsonl``: the same command
on a machine with the same Python gives the same file, and the manifest says whether it did.
An existing corpus with the same parameters is reused.

    python benchmarks/make_corpus.py --size-mib 1024 --out /work/bench/corpus1g   # about 2 min
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import sysconfig
import time
from pathlib import Path
from typing import Iterator

import lmaudit
from lmaudit.data import sha256_file
from lmaudit.testbed.corpus import generate_corpus

FORMAT = "lmaudit.bench.corpus/1"
BIOS_PER_SEED = 5000


def stdlib_files() -> tuple[Path, list[Path]]:
    """The standard library's folder and its ``*.py`` files outside site-packages, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py")
                   if "site-packages" not in p.relative_to(root).parts and p.is_file())
    return root, files


def code_documents(limit_bytes: int, seed: int) -> tuple[list[tuple[str, str]], list[dict], list[dict]]:
    """Standard-library files (a seeded shuffle of the sorted list) as ``(id, text)`` up to
    ``limit_bytes`` of text; the files taken, with sha256; the files skipped, with the reason."""
    root, files = stdlib_files()
    random.Random(f"code-{seed}").shuffle(files)
    docs, sources, skipped, size = [], [], [], 0
    for path in files:
        if size >= limit_bytes:
            break
        raw = path.read_bytes()
        rel = path.relative_to(root).as_posix()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            skipped.append({"path": rel, "reason": f"not UTF-8 at byte {e.start}"})
            continue
        docs.append((f"py:{rel}", text))
        sources.append({"path": rel, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
        size += len(raw)
    return docs, sources, skipped


def biographies(seed: int) -> Iterator[tuple[str, str]]:
    """Testbed biographies, endlessly: ``BIOS_PER_SEED`` per generator seed."""
    s = seed * 100_000
    while True:
        for i, row in enumerate(generate_corpus(BIOS_PER_SEED, seed=s)):
            yield f"bio-{s}-{i}", row["text"]
        s += 1


def make_corpus(size_mib: float, out: str | os.PathLike, *, seed: int = 0, code_share: float = 0.125,
                quiet: bool = False) -> dict:
    """Write ``out/corpus.jsonl`` and ``out/manifest.json``; return the manifest (reused if it matches)."""
    out = Path(out)
    params = {"size_mib": size_mib, "seed": seed, "code_share": code_share,
              "python": sys.version.split()[0], "lmaudit_version": lmaudit.__version__}
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("format") == FORMAT and old.get("params") == params:
            if not quiet:
                print(f"{out}: corpus with these parameters exists; reused", file=sys.stderr)
            return old
        manifest_path.unlink()  # a corpus of other parameters: no manifest until this one is done
    out.mkdir(parents=True, exist_ok=True)
    target = int(size_mib * 2**20)
    t0 = time.perf_counter()
    code, sources, skipped = code_documents(int(code_share * target), seed)
    code_bytes = sum(len(t.encode("utf-8")) for _, t in code)
    # Spread the code documents over the corpus: each goes after a seeded number of biographies.
    rng = random.Random(seed)
    n_bios_est = max(1, (target - code_bytes) // 360)  # biographies average ~360 bytes
    slots = sorted(rng.randrange(n_bios_est) for _ in code)
    order = list(range(len(code)))
    rng.shuffle(order)
    n_docs = n_bytes = n_empty = 0
    bios = biographies(seed)
    queue = [(slot, code[j]) for slot, j in zip(slots, order)]
    q = 0
    tmp = out / "corpus.jsonl.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        n_bio = 0
        while n_bytes < target or q < len(queue):
            if q < len(queue) and (queue[q][0] <= n_bio or n_bytes >= target):
                doc_id, text = queue[q][1]
                q += 1
            else:
                doc_id, text = next(bios)
                n_bio += 1
            b = len(text.encode("utf-8"))
            f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
            n_docs += 1
            n_bytes += b
            n_empty += b == 0
    os.replace(tmp, out / "corpus.jsonl")
    manifest = {
        "format": FORMAT, "params": params, "file": "corpus.jsonl",
        "sha256": sha256_file(out / "corpus.jsonl"),
        "n_docs": n_docs, "n_bytes": n_bytes, "n_empty_docs": n_empty,
        "n_biographies": n_bio, "n_code_docs": len(code), "code_bytes": code_bytes,
        "code_share": round(code_bytes / n_bytes, 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "code_sources": sources, "code_skipped": skipped,
    }
    part = out / "manifest.json.partial"
    part.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(part, manifest_path)
    if not quiet:
        print(f"{out / 'corpus.jsonl'}: {n_docs:,} documents, {n_bytes / 2**20:.1f} MiB of text "
              f"({manifest['code_share']:.1%} code), {manifest['seconds']} s", file=sys.stderr)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=float, required=True, help="UTF-8 text bytes to write, in MiB")
    parser.add_argument("--out", required=True, help="folder for corpus.jsonl and manifest.json (not the repo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code-share", type=float, default=0.125,
                        help="share of the size taken from standard-library sources, as far as they go")
    args = parser.parse_args()
    if args.size_mib <= 0 or not 0 <= args.code_share < 1:
        parser.error("--size-mib must be positive and --code-share in [0, 1)")
    make_corpus(args.size_mib, args.out, seed=args.seed, code_share=args.code_share)


if __name__ == "__main__":
    main()
