"""The corpus-index benchmark's own parts: the corpus generator and infini-gram's byte-token files.

The benchmark asserts that lmaudit and infini-gram count alike; these tests check the pieces it
rests on against independent expectations (the JSONL itself, a brute-force scan).
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    make_corpus = _load("make_corpus").make_corpus
    out = tmp_path_factory.mktemp("corpus")
    manifest = make_corpus(0.25, out, seed=3, code_share=0.4, quiet=True)
    rows = [json.loads(line) for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    return out, manifest, rows


def test_the_corpus_is_reproducible_reaches_its_size_and_mixes_code(tiny, tmp_path):
    out, manifest, rows = tiny
    again = _load("make_corpus").make_corpus(0.25, tmp_path, seed=3, code_share=0.4, quiet=True)
    assert again["sha256"] == manifest["sha256"]
    n_bytes = sum(len(r["text"].encode()) for r in rows)
    assert n_bytes == manifest["n_bytes"] >= 0.25 * 2**20
    assert len(rows) == manifest["n_docs"] == len({r["id"] for r in rows})
    code = [r for r in rows if r["id"].startswith("py:")]
    assert len(code) == manifest["n_code_docs"] == len(manifest["code_sources"]) > 0
    assert manifest["code_bytes"] == sum(len(r["text"].encode()) for r in code)
    assert rows[0]["id"] != code[0]["id"]  # code is spread among the biographies, not first


def test_infinigram_token_files_hold_each_document_after_a_separator(tiny, tmp_path):
    out, manifest, rows = tiny
    bench = _load("bench_corpus_vs_infinigram")
    bench.child_ig_tokenize(out / "corpus.jsonl", tmp_path, chunk_bytes=10_000)  # several chunks
    tokens = np.fromfile(tmp_path / "tokenized.0", dtype="<u2")
    offsets = np.fromfile(tmp_path / "offset.0", dtype="<u8")
    assert len(offsets) == len(rows)
    ends = list(offsets[1:] // 2) + [len(tokens)]
    for row, start, end in zip(rows, offsets // 2, ends):
        assert tokens[start] == 0xFFFF
        assert bytes(tokens[start + 1 : end].astype(np.uint8)) == row["text"].encode()
        assert tokens[start + 1 : end].max(initial=0) <= 255


def _brute_count(docs: list[bytes], q: bytes) -> int:
    n = 0
    for d in docs:
        i = d.find(q)
        while i >= 0:
            n += 1
            i = d.find(q, i + 1)
    return n


@pytest.mark.slow
def test_infinigram_and_lmaudit_count_like_a_scan_on_byte_tokens(tiny, tmp_path):
    pytest.importorskip("infini_gram", reason="infini-gram is a benchmark-only package")
    from infini_gram.engine import InfiniGramEngine

    from lmaudit.corpus.index import load_index

    out, manifest, rows = tiny
    bench = _load("bench_corpus_vs_infinigram")
    bench.child_lmaudit_build(out / "corpus.jsonl", tmp_path / "lm", shard_bytes=100_000)
    bench.child_ig_tokenize(out / "corpus.jsonl", tmp_path / "ig")
    bench.run_child([sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(out), "--save_dir",
                     str(tmp_path / "ig"), "--token_dtype", "u16", "--cpus", "1", "--mem", "1",
                     "--ulimit", "1024"])
    engine = InfiniGramEngine(index_dir=str(tmp_path / "ig"), eos_token_id=256, vocab_size=257,
                              version=4, token_dtype="u16")
    index = load_index(tmp_path / "lm")
    docs = [r["text"].encode() for r in rows]
    rng = random.Random(0)
    queries = [b"Medal", b"\n    def ", "café".encode()[:4]]  # common, code, a cut character
    for _ in range(60):
        d = rng.choice([d for d in docs if len(d) >= 8])
        i = rng.randrange(len(d) - 7)
        queries.append(d[i : i + rng.randint(8, 64)])
    queries += [docs[i][-5:] + docs[i + 1][:5] for i in range(10)]  # across a boundary
    for q in queries:
        want = _brute_count(docs, q)
        assert index.count(q) == want, q
        assert engine.count(list(q))["count"] == want, q
    index.close()
