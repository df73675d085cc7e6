"""The exact-substring index (lmaudit.corpus.index): every answer against a brute-force scan of
the documents with ``bytes.find`` / ``in`` on random small corpora (multi-byte UTF-8, empty
documents, many shards), queries across document boundaries, pagination, attribution's
maximality by enumerating every substring, and the manifest: written last, killed builds and
appends, format-version refusal, tampered files, duplicate ids."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lmaudit.corpus import index as index_mod
from lmaudit.corpus.index import IndexFormatError, build_index, load_index
from lmaudit.corpus.shard import sa_dtype
from lmaudit.data import DataError, Record

ALPHABET = ["a", "b", "c", " ", "é", "€", "😀"]  # 1-, 2-, 3- and 4-byte characters


def records(texts, *, start=0):
    return [Record(id=f"d{start + i}", text=t, source="corpus.jsonl", line=start + i + 1)
            for i, t in enumerate(texts)]


def random_texts(rng, n_docs, max_len=30):
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 3, rng.randint(0, max_len)])))
            for _ in range(n_docs)]


def enc(s):
    return s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s


# --- brute force ---------------------------------------------------------------------------

def bf_hits(texts, q):
    q, hits = enc(q), []
    for d, t in enumerate(texts):
        b, i = enc(t), enc(t).find(q)
        while i != -1:
            hits.append((d, i))
            i = b.find(q, i + 1)
    return hits


def bf_longest(texts, q):
    docs = [enc(t) for t in texts]
    best = 0
    for k in range(1, len(q) + 1):
        if any(enc(q[:k]) in d for d in docs):
            best = k
    return q[:best]


def bf_attribute(texts, text, min_bytes, max_docs):
    docs = [enc(t) for t in texts]
    found = lambda i, j: any(enc(text[i:j]) in d for d in docs)  # noqa: E731
    spans = []
    for i in range(len(text)):
        for j in range(i + 1, len(text) + 1):
            if (len(enc(text[i:j])) >= min_bytes and found(i, j) and not (i > 0 and found(i - 1, j))
                    and not (j < len(text) and found(i, j + 1))):
                hits = bf_hits(texts, text[i:j])
                holders = sorted({d for d, _ in hits})
                spans.append((i, j, text[i:j], len(hits), len(holders), tuple(f"d{d}" for d in holders[:max_docs])))
    return spans


def spans_of(index, text, min_bytes, max_docs=3):
    return [(s.start, s.end, s.text, s.count, s.n_docs, s.docs)
            for s in index.attribute(text, min_bytes=min_bytes, max_docs=max_docs)]


def queries_for(rng, texts):
    """Substrings of the documents, random strings, and strings across a document boundary."""
    qs = []
    for _ in range(12):
        t = rng.choice(texts)
        if t:
            i = rng.randrange(len(t))
            qs.append(t[i : i + rng.randint(1, 8)])
        qs.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 5))))
    for a, b in zip(texts, texts[1:]):
        if a and b:
            qs.append(a[-2:] + b[:2])
    qs.append("".join(texts) + "a")  # longer than any document
    return qs


# --- queries against brute force -----------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_queries_equal_brute_force(tmp_path, seed):
    rng = random.Random(seed)
    texts = random_texts(rng, rng.randint(1, 12))
    shard_bytes = rng.choice([1, 8, 40, 10**6])  # one document per shard … one shard
    index = build_index(records(texts), tmp_path / "idx", shard_bytes=shard_bytes)
    assert index.n_docs == len(texts) and index.n_bytes == sum(len(enc(t)) for t in texts)
    for q in queries_for(rng, texts):
        want = bf_hits(texts, q)
        assert index.count(q) == len(want), q
        assert [(h.doc, h.offset) for h in index.locate(q, limit=10**6)] == want, q
        assert [h.doc_id for h in index.locate(q, limit=10**6)] == [f"d{d}" for d, _ in want]
        assert index.longest(q) == bf_longest(texts, q), q
        b = enc(q)  # bytes queries may cut a character anywhere
        for cut in {1, max(1, len(b) // 2), len(b)}:
            assert index.count(b[:cut]) == len(bf_hits(texts, b[:cut]))
            assert index.longest(b[:cut]) == bf_longest(texts, b[:cut])
    for d, t in enumerate(texts):
        assert index.document(d) == t


@pytest.mark.parametrize("seed", range(8))
def test_attribute_equals_brute_force(tmp_path, seed):
    rng = random.Random(100 + seed)
    texts = random_texts(rng, rng.randint(1, 8), max_len=25)
    index = build_index(records(texts), tmp_path / "idx", shard_bytes=rng.choice([10, 10**6]))
    for _ in range(4):
        # Pieces copied from documents, glued with random characters: spans to find, some overlapping.
        parts = []
        for _ in range(rng.randint(1, 4)):
            t = rng.choice(texts)
            i = rng.randrange(len(t) + 1)
            parts.append(t[i : i + rng.randint(2, 12)])
            parts.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 3))))
        text = "".join(parts)
        for min_bytes in (1, 4, 9):
            assert spans_of(index, text, min_bytes) == bf_attribute(texts, text, min_bytes, 3), (text, min_bytes)


def test_attribute_offsets_highlight_the_text(tmp_path):
    index = build_index(records(["le café au lait", "x"]), tmp_path / "idx")
    text = "un café au lait?"
    [span] = index.attribute(text, min_bytes=6)
    assert (span.start, span.end, span.text) == (2, 15, " café au lait")  # maximal: "n" before and "?" after are not
    data = text.encode()
    assert data[span.byte_start : span.byte_end] == span.text.encode() and (span.byte_start, span.byte_end) == (2, 16)
    assert span.to_dict()["docs"] == ["d0"] and json.dumps(span.to_dict())


def test_boundaries_pagination_and_empty_documents(tmp_path):
    texts = ["abc", "", "cab", "", "abcabc"]
    index = build_index(records(texts), tmp_path / "idx", shard_bytes=3)
    assert len(index.shards) == 3  # "abc" | "" "cab" | "" "abcabc"
    assert index.count("cc") == 0 and index.count("ca") == 2  # "abc|cab" is not "abccab"
    assert index.count("bc" + "ca") == 0 and index.count("\xff") == 0 and index.count(b"c\xffc") == 0
    everything = index.locate("abc", limit=100)
    assert [(h.doc_id, h.offset) for h in everything] == [("d0", 0), ("d4", 0), ("d4", 3)]
    pages = [index.locate("abc", offset=o, limit=2) for o in (0, 2, 4)]
    assert [h for p in pages for h in p] == everything and pages[-1] == []
    assert [h.doc_id for h in index.locate("a", offset=1, limit=3)] == ["d2", "d4", "d4"]
    assert index.locate("abc", limit=0) == []
    assert index.document(1) == "" and index.document(3) == ""
    assert index.longest("abcabcabc") == "abcabc" and index.longest("zzz") == ""
    with pytest.raises(ValueError, match="empty query"):
        index.count("")
    empty = build_index(records(["", ""]), tmp_path / "empty")  # a shard of separators only
    assert empty.n_docs == 2 and empty.count("a") == 0 and empty.locate("a") == [] and empty.document(1) == ""
    with pytest.raises(ValueError, match="non-negative"):
        index.locate("a", offset=-1)


def test_lone_surrogates_are_indexed_as_surrogatepass(tmp_path):
    index = build_index(records(["ab\ud800cd", "x"]), tmp_path / "idx")
    assert index.count("b\ud800c") == 1 and index.count("\ud800".encode("utf-8", "surrogatepass")) == 1
    assert index.document(0) == "ab\ud800cd"
    assert [s.text for s in index.attribute("zb\ud800cz", min_bytes=3)] == ["b\ud800c"]


def test_sa_dtype_is_the_smallest_sufficient(tmp_path):
    assert [sa_dtype(n).name for n in (1, 256, 257, 65536, 65537, 2**32, 2**32 + 1)] == \
        ["uint8", "uint8", "uint16", "uint16", "uint32", "uint32", "uint64"]
    rng = random.Random(0)
    for size, dtype in ((100, "uint8"), (300, "uint16"), (70_000, "uint32")):
        texts = ["".join(rng.choice("ab") for _ in range(size)), "ba"]
        index = build_index(records(texts), tmp_path / dtype)
        assert index.manifest["shards"][0]["sa_dtype"] == dtype and index.shards[0].sa.dtype == dtype
        assert isinstance(index.shards[0].sa, np.memmap)
        for q in ("abab", "bbb", "ba", texts[0][50:90]):
            assert index.count(q) == len(bf_hits(texts, q))
            assert [(h.doc, h.offset) for h in index.locate(q, limit=10**6)] == bf_hits(texts, q)


# --- appending -----------------------------------------------------------------------------

def test_append_adds_shards_without_rewriting_old_ones(tmp_path):
    rng = random.Random(7)
    first, second = random_texts(rng, 6), random_texts(rng, 5)
    index = build_index(records(first), tmp_path / "idx", shard_bytes=20)
    old = {s.entry["name"]: s.entry for s in index.shards}
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "idx").glob("shard-*/*")}
    index.append(records(second, start=len(first)))
    assert {s.entry["name"]: s.entry for s in index.shards if s.entry["name"] in old} == old
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    texts = first + second
    for idx in (index, load_index(tmp_path / "idx", verify=True)):
        assert idx.n_docs == len(texts)
        for q in queries_for(rng, texts):
            assert [(h.doc, h.offset) for h in idx.locate(q, limit=10**6)] == bf_hits(texts, q)
    with pytest.raises(DataError, match="'d0'"):
        index.append(records(["again"]))


# --- manifest, killed builds, versions -----------------------------------------------------

def test_manifest_is_written_last_and_a_killed_build_restarts_cleanly(tmp_path, monkeypatch):
    out, texts = tmp_path / "idx", ["one doc", "two doc", "three"]
    calls = []
    real = index_mod.write_shard

    def dying(folder, *args):
        calls.append(folder.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing the second shard
        return real(folder, *args)

    monkeypatch.setattr(index_mod, "write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        build_index(records(texts), out, shard_bytes=1)
    assert (out / "shard-00000" / "sa.npy").exists() and not (out / "index.json").exists()
    with pytest.raises(IndexFormatError, match="did not finish"):
        load_index(out)
    monkeypatch.setattr(index_mod, "write_shard", real)
    index = build_index(records(texts), out, shard_bytes=1)
    assert index.count("doc") == 2 and len(index.shards) == 3

    # A killed append leaves the previous index whole; the next append replaces the leftover.
    calls.clear()
    monkeypatch.setattr(index_mod, "write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        index.append(records(["four doc", "five doc"], start=3), shard_bytes=1)
    monkeypatch.setattr(index_mod, "write_shard", real)
    assert (out / "shard-00003" / "sa.npy").exists()  # written, but never listed
    again = load_index(out, verify=True)
    assert again.n_docs == 3 and again.count("doc") == 2
    again.append(records(["four doc", "five doc"], start=3), shard_bytes=1)
    assert load_index(out, verify=True).count("doc") == 4


def test_removing_the_manifest_leaves_no_index(tmp_path):
    out = tmp_path / "idx"
    build_index(records(["abc"]), out)
    (out / "index.json").unlink()
    with pytest.raises(IndexFormatError, match="did not finish"):
        load_index(out)
    with pytest.raises(IndexFormatError, match="not an lmaudit index"):
        load_index(tmp_path)


def test_existing_index_needs_overwrite(tmp_path):
    out = tmp_path / "idx"
    build_index(records(["abc", "def", "ghi"]), out, shard_bytes=1)
    with pytest.raises(FileExistsError, match="append"):
        build_index(records(["xyz"]), out)
    index = build_index(records(["xyz"]), out, overwrite=True)
    assert index.count("abc") == 0 and index.count("y") == 1
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-00000"]


def test_other_format_version_is_refused_other_lmaudit_version_is_read(tmp_path):
    out = tmp_path / "idx"
    build_index(records(["abc"]), out)
    manifest = json.loads((out / "index.json").read_text())
    (out / "index.json").write_text(json.dumps({**manifest, "lmaudit_version": "9.9.9"}))
    assert load_index(out).count("b") == 1
    (out / "index.json").write_text(json.dumps({**manifest, "format_version": 99, "lmaudit_version": "9.9.9"}))
    with pytest.raises(IndexFormatError, match=r"format version 99 \(written by lmaudit 9\.9\.9\).*reads version 1"):
        load_index(out)


def test_changed_files_are_detected(tmp_path):
    out = tmp_path / "idx"
    build_index(records(["abcdef"]), out)
    text = out / "shard-00000" / "text.bin"
    text.write_bytes(b"abcdeg\xff")  # same size: only the sha256 tells
    assert load_index(out).count("abc") == 1
    with pytest.raises(IndexFormatError, match="sha256 differs"):
        load_index(out, verify=True)
    text.write_bytes(b"abc\xff")
    with pytest.raises(IndexFormatError, match="size differs"):
        load_index(out)


def test_duplicate_ids_are_named_and_no_index_is_written(tmp_path):
    recs = records(["a", "b", "c", "d"])
    recs[2] = Record(id="d0", text="c", source="more.jsonl", line=7)
    recs[3] = Record(id="d1", text="d", source="more.jsonl", line=8)
    with pytest.raises(DataError, match=r"2 duplicate.*'d0' \(corpus.jsonl:1 and more.jsonl:7\).*'d1'"):
        build_index(recs, tmp_path / "idx", shard_bytes=1)
    assert not (tmp_path / "idx" / "index.json").exists()


def test_empty_corpus_and_bad_arguments(tmp_path):
    index = build_index([], tmp_path / "idx")
    assert index.n_docs == 0 and index.count("a") == 0 and index.longest("a") == "" and index.attribute("abc") == []
    with pytest.raises(ValueError, match="shard_bytes"):
        build_index(records(["a"]), tmp_path / "other", shard_bytes=0)
    with pytest.raises(TypeError):
        index.count(3)
    with pytest.raises(ValueError, match="min_bytes"):
        index.attribute("abc", min_bytes=0)


def test_records_reads_back_every_document_in_order_across_shards_and_appends(tmp_path):
    docs = [Record(id=f"d{i}", text=t, source="-", line=i + 1)
            for i, t in enumerate(["alpha", "", "gamma é", "delta\u00ff", "epsilon"])]
    index = build_index(docs[:3], tmp_path / "idx", shard_bytes=4)
    index.append(docs[3:])
    assert list(index.records()) == [(d.id, d.text) for d in docs]
    assert list(index.records(first=2)) == [(d.id, d.text) for d in docs[2:]]


def bf_words_inside(text, i, j):
    """Words (maximal runs of non-space characters) lying wholly inside text[i:j], by a scan."""
    n, k = 0, 0
    while k < len(text):
        if text[k].isspace():
            k += 1
            continue
        w0 = k
        while k < len(text) and not text[k].isspace():
            k += 1
        n += i <= w0 and k <= j
    return n


@pytest.mark.parametrize("seed", range(6))
def test_attribute_word_threshold_and_source_equal_brute_force(tmp_path, seed):
    rng = random.Random(300 + seed)
    texts = random_texts(rng, rng.randint(2, 8), max_len=30)
    index = build_index(records(texts), tmp_path / "idx", shard_bytes=rng.choice([12, 10**6]))
    for _ in range(4):
        text = "".join(rng.choice(texts)[rng.randrange(5):][: rng.randint(3, 15)] + rng.choice(["", " ", "z"])
                       for _ in range(rng.randint(1, 3)))
        source = rng.randrange(len(texts))
        for min_words in (1, 2, 3):
            want = [(i, j, t) for i, j, t, *_ in bf_attribute(texts, text, 1, 3)
                    if bf_words_inside(text, i, j) >= min_words]
            got = index.attribute(text, min_bytes=1, min_words=min_words, source=f"d{source}")
            assert [(s.start, s.end, s.text) for s in got] == want, (text, min_words)
            for s in got:
                assert s.n_words == bf_words_inside(text, s.start, s.end) >= min_words
                # The source holds the span iff its text contains it: all holders, not only those listed.
                assert s.from_source == (enc(s.text) in enc(texts[source]))
    assert all(s.from_source is None for s in index.attribute(texts[0] + "q", min_bytes=1))


def test_attribute_source_is_found_among_holders_past_the_listed_ones(tmp_path):
    texts = [f"shared phrase here {i}" for i in range(30)]
    index = build_index(records(texts), tmp_path / "idx")
    [span] = index.attribute("a shared phrase here 29", min_bytes=10, max_docs=2, source="d29")
    assert span.text == "shared phrase here 29" and span.n_docs == 1 and span.from_source
    [span] = index.attribute("a shared phrase here !", min_bytes=10, max_docs=2, source=29 - 2)
    assert span.n_docs == 30 and span.docs == ("d0", "d1") and span.from_source is False  # "27" is not "d27"
    [span] = index.attribute("a shared phrase here !", min_bytes=10, max_docs=2, source="d27")
    assert span.from_source is True


def test_a_rebuild_that_fails_or_is_killed_leaves_the_old_index(tmp_path, monkeypatch):
    out = tmp_path / "idx"
    build_index(records(["old one", "old two", "old three"]), out, shard_bytes=1)
    dup = [Record(id="x", text="new", source="new.jsonl", line=1), Record(id="x", text="new", source="new.jsonl", line=2)]
    with pytest.raises(DataError, match="new.jsonl:1 and new.jsonl:2"):
        build_index(dup, out, overwrite=True)
    assert load_index(out, verify=True).count("old") == 3
    real, calls = index_mod.write_shard, []

    def dying(folder, *args):
        calls.append(folder)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing the new index's second shard
        return real(folder, *args)

    monkeypatch.setattr(index_mod, "write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        build_index(records(["new a", "new b"]), out, shard_bytes=1, overwrite=True)
    assert calls[0].parent.name == ".rebuild"
    assert load_index(out, verify=True).count("old") == 3  # untouched
    monkeypatch.setattr(index_mod, "write_shard", real)
    index = build_index(records(["new a", "new b"]), out, shard_bytes=1, overwrite=True)
    assert index.count("old") == 0 and index.count("new") == 2
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-00000", "shard-00001"]


def test_a_file_named_index_json_that_lmaudit_did_not_write_is_never_replaced(tmp_path):
    out = tmp_path / "idx"
    out.mkdir()
    (out / "index.json").write_text('{"my": "settings"}')
    with pytest.raises(IndexFormatError, match="format None"):
        build_index(records(["abc"]), out, overwrite=True)
    assert (out / "index.json").read_text() == '{"my": "settings"}'


@pytest.mark.parametrize("length", [63, 64, 65, 255, 257, 1100])
def test_attribute_finds_matches_longer_than_its_first_lookup(tmp_path, length):
    """Matches are looked up 64 bytes first, then 4 times longer: lengths around each step."""
    rng = random.Random(length)
    doc = "".join(rng.choice("abcdefgh ") for _ in range(1500))
    index = build_index(records([doc, doc[::-1]]), tmp_path / "idx")
    start = rng.randrange(100)
    text = "Q" + doc[start : start + length] + "Q" + doc[:40] + "é"
    spans = [(s.start, s.end, s.count) for s in index.attribute(text, min_bytes=32)]
    assert spans[0] == (1, 1 + length, doc.count(doc[start : start + length]))
    assert [(i, j) for i, j, *_ in spans] == [(i, j) for i, j, *_ in bf_attribute([doc, doc[::-1]], text, 32, 3)]


def test_parallel_shard_builds_write_the_same_index(tmp_path):
    rng = random.Random(7)
    texts = random_texts(rng, 60, max_len=40)
    serial = build_index(records(texts), tmp_path / "one", shard_bytes=50)
    parallel = build_index(records(texts), tmp_path / "two", shard_bytes=50, jobs=2)
    assert len(serial.manifest["shards"]) > 4
    assert parallel.manifest["shards"] == serial.manifest["shards"]  # names, counts and every file's sha256
    parallel.append(records(["abc", "ab"], start=60), jobs=2)
    assert parallel.count("ab") == sum(t.count("ab") for t in texts) + 2
    with pytest.raises(DataError, match="duplicate"):
        build_index(records(texts) + records(texts[:1]), tmp_path / "three", shard_bytes=50, jobs=2)
    assert not (tmp_path / "three" / "index.json").exists()
