"""BM25 search (lmaudit.corpus.bm25) against a brute-force BM25 written here from tantivy's
documented rules, on random small corpora: scores and rankings of word queries, phrase matches
against a scan of the token sequences, multi-byte UTF-8 and over-long words, empty documents,
pagination, ids of both types, appends, and the manifest (unfinished builds, stale or mismatched
indexes, other format versions, malformed queries).

The brute force follows tantivy's BM25 (src/query/bm25.rs): k1 = 1.2, b = 0.75,
idf = ln(1 + (N - n + 0.5) / (n + 0.5)), the average length over every document, a phrase scored
with the sum of its words' idfs and its frequency; and its default analyzer: runs of
alphanumeric characters, those of 40 UTF-8 bytes or more dropped (keeping their position),
lowercased one character at a time. Document lengths go through tantivy's one-byte length code,
written out here from its description: exact below 24, then 24 plus a number with four
significant bits (the leading one and three more), rounded down.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from lmaudit.corpus import bm25 as bm25_mod
from lmaudit.corpus.bm25 import Bm25FormatError, build_bm25, load_bm25, update_bm25
from lmaudit.corpus.index import build_index
from lmaudit.data import Record

K1, B = 1.2, 0.75
# Words whose characters Python's isalnum and Rust's is_alphanumeric agree on: ASCII, accented,
# Greek (upper case too: lowercased per character), CJK, digits; a 40-byte word of 2-byte
# characters (20 characters: dropped by bytes, not characters) and a 39-byte one (kept).
VOCAB = ["cat", "Cat", "sat", "mat", "the", "café", "ΣΟΦΙΑ", "σοφια", "日本", "x1", "42", "straße",
         "é" * 20, "a" * 39, "b" * 40]
SEPARATORS = [" ", " ", " ", ", ", ". ", "-", "'", " 🙂 ", "\n", "—"]


# --- brute force ---------------------------------------------------------------------------

def tokens(text):
    """(position, word) of every word tantivy's default analyzer keeps."""
    out, run, pos = [], "", 0
    for ch in text + " ":
        if ch.isalnum():
            run += ch
            continue
        if run:
            if len(run.encode("utf-8")) < 40:
                out.append((pos, "".join(c.lower() for c in run)))
            pos += 1
            run = ""
    return out


def stored_length(n):
    """A length as tantivy's one-byte code gives it back (rounded down)."""
    if n < 24:
        return n
    m = n - 24
    if m < 8:
        return n
    e = m.bit_length() - 4  # keep the leading bit and three more
    return 24 + ((m >> e) << e)


class BruteBm25:
    def __init__(self, texts):
        self.docs = [tokens(t) for t in texts]
        self.n = len(texts)
        self.avg = sum(len(d) for d in self.docs) / self.n

    def df(self, word):
        return sum(any(w == word for _, w in d) for d in self.docs)

    def idf(self, word):
        n = self.df(word)
        return math.log(1 + (self.n - n + 0.5) / (n + 0.5))

    def part(self, idf, freq, d):
        norm = K1 * (1 - B + B * stored_length(len(self.docs[d])) / self.avg)
        return idf * (1 + K1) * freq / (freq + norm)

    def phrase_freq(self, phrase, d):
        at = {(p, w) for p, w in self.docs[d]}
        return sum(all((p + k, w) in at for k, w in phrase) for p, _ in self.docs[d])

    def scores(self, words, phrases):
        """{doc: score} of the documents matching one of ``words`` (distinct) or ``phrases``."""
        out = {}
        for d, toks in enumerate(self.docs):
            s, hit = 0.0, False
            for w in words:
                tf = sum(t == w for _, t in toks)
                if tf:
                    s, hit = s + self.part(self.idf(w), tf, d), True
            for ph in phrases:
                pf = self.phrase_freq(ph, d)
                if pf:
                    s, hit = s + self.part(sum(self.idf(w) for _, w in ph), pf, d), True
            if hit:
                out[d] = s
        return out


# --- helpers -------------------------------------------------------------------------------

def records(texts, *, start=0, ids=None):
    return [Record(id=ids[i] if ids else f"d{start + i}", text=t, source="corpus.jsonl", line=start + i + 1)
            for i, t in enumerate(texts)]


def random_text(rng):
    n = rng.choice([0, 1, 3, rng.randint(0, 90)])  # up to 90 words: lengths past 40 are rounded
    return "".join(rng.choice(VOCAB) + rng.choice(SEPARATORS) for _ in range(n)).strip()


def make(tmp_path, texts, **kw):
    index = build_index(records(texts, **kw), tmp_path / "idx", shard_bytes=2000)
    return index, build_bm25(index)


def check_query(bm25, brute, query, words, phrases):
    want = brute.scores(words, phrases)
    hits = bm25.search(query, limit=brute.n + 1)
    got = {h.doc: h.score for h in hits}
    assert set(got) == set(want), query
    for d, s in want.items():
        # tantivy computes in 32-bit floats: ln(1 + x) for a word in most documents loses digits.
        assert got[d] == pytest.approx(s, rel=5e-5), (query, d)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)  # ranked best first
    assert bm25.count(query) == len(want)


# --- scores and phrases against brute force ------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_word_queries_score_and_rank_as_brute_force_bm25(tmp_path, seed):
    rng = random.Random(seed)
    texts = [random_text(rng) for _ in range(rng.randint(5, 60))]
    _, bm25 = make(tmp_path, texts)
    brute = BruteBm25(texts)
    for _ in range(25):
        picked = rng.sample(VOCAB, rng.randint(1, 3))
        query = rng.choice([" ", ", ", " AND "]).join(picked)
        words = list(dict.fromkeys(w for _, w in tokens(query)))
        if not words:  # only over-long words
            with pytest.raises(ValueError, match="no word"):
                bm25.search(query)
            continue
        check_query(bm25, brute, query, words, [])


@pytest.mark.parametrize("seed", range(4))
def test_phrase_queries_match_a_scan_of_the_token_sequences(tmp_path, seed):
    rng = random.Random(100 + seed)
    texts = [random_text(rng) for _ in range(rng.randint(5, 60))]
    _, bm25 = make(tmp_path, texts)
    brute = BruteBm25(texts)
    for _ in range(25):
        source = tokens(rng.choice(texts))
        if len(source) >= 2 and rng.random() < 0.7:  # a phrase from a document
            i = rng.randrange(len(source) - 1)
            run = source[i: i + rng.randint(2, 4)]
            phrase_text = " ".join(w for _, w in run)
            phrase = [(p - run[0][0], w) for p, w in run]
        else:  # random words, most often found nowhere in that order
            run = rng.sample(["cat", "sat", "mat", "the", "café"], rng.randint(2, 3))
            phrase_text = " ".join(run)
            phrase = list(enumerate(run))
        if len({w for _, w in phrase}) < 2 or any(b[0] - a[0] != 1 for a, b in zip(phrase, phrase[1:])):
            continue  # a run across a dropped word: written as text, it would not be this phrase
        matched = {d for d in range(len(texts)) if brute.phrase_freq(phrase, d)}
        assert {h.doc for h in bm25.search(f'"{phrase_text}"', limit=len(texts))} == matched
        check_query(bm25, brute, f'"{phrase_text}"', [], [phrase])
        check_query(bm25, brute, f'x1 "{phrase_text}"', ["x1"], [phrase])  # a word and a phrase, summed


def test_phrases_never_cross_a_dropped_word_or_a_document(tmp_path):
    long = "é" * 20  # 40 bytes: dropped, but it keeps its place
    texts = [f"cat {long} sat", "cat sat", "the cat", "sat mat", f"cat {'a' * 39} sat"]
    _, bm25 = make(tmp_path, texts)
    assert [h.doc for h in bm25.search('"cat sat"')] == [1]
    # The query's dropped word keeps its place too, and any word fills it.
    assert {h.doc for h in bm25.search(f'"cat {long} sat"')} == {0, 4}
    with pytest.raises(ValueError, match="no word"):
        bm25.search(long)
    assert [h.doc for h in bm25.search('"' + "a" * 39 + ' sat"')] == [4]  # 39 bytes: kept
    assert [h.doc for h in bm25.search('"cat the"')] == []  # "the cat" | "sat mat": not across documents


def test_multibyte_words_are_lowercased_per_character(tmp_path):
    texts = ["ΣΟΦΙΑ and Café", "σοφια", "日本 語", "straße STRASSE", "e-mail don't"]
    _, bm25 = make(tmp_path, texts)
    assert {h.doc for h in bm25.search("σοφια")} == {0, 1}
    assert {h.doc for h in bm25.search("CAFÉ")} == {0}
    assert {h.doc for h in bm25.search("日本")} == {2}
    assert {h.doc for h in bm25.search("straße")} == {3}  # no folding: ß is not ss
    assert [h.doc for h in bm25.search("don't")] == [4]  # punctuation splits words, never a syntax error
    assert [h.doc for h in bm25.search('"e mail"')] == [4]
    check_query(bm25, BruteBm25(texts), "ΣΟΦΙΑ 日本 mail", ["σοφια", "日本", "mail"], [])


def test_empty_documents_count_in_n_and_the_average_and_match_nothing(tmp_path):
    texts = ["", "cat sat", "", "...", "cat"]
    _, bm25 = make(tmp_path, texts)
    brute = BruteBm25(texts)
    assert brute.n == 5 and brute.avg == 3 / 5
    check_query(bm25, brute, "cat sat", ["cat", "sat"], [])
    assert {h.doc for h in bm25.search("cat")} == {1, 4}


def test_repeated_words_count_once_and_pages_slice_the_ranking(tmp_path):
    rng = random.Random(7)
    texts = [random_text(rng) for _ in range(40)]
    _, bm25 = make(tmp_path, texts)
    brute = BruteBm25(texts)
    check_query(bm25, brute, "cat cat CAT", ["cat"], [])
    full = bm25.search("cat mat", limit=100)
    assert len(full) > 6
    pages = [bm25.search("cat mat", limit=3, offset=k) for k in range(0, len(full), 3)]
    assert [h.score for p in pages for h in p] == [h.score for h in full]
    assert bm25.search("cat", limit=0) == []


def test_ids_round_trip_with_their_types_and_snippets_show_the_match(tmp_path):
    texts = ["a long introduction " * 20 + "and then the Valdoria philosopher", "nothing here", "Valdoria"]
    index = build_index(records(texts, ids=[7, "7", "x"]), tmp_path / "idx")
    bm25 = build_bm25(index)
    hits = bm25.search("valdoria")
    assert [(h.doc_id, h.doc) for h in hits] == [("x", 2), (7, 0)]
    assert "Valdoria philosopher" in hits[1].snippet and hits[1].snippet.startswith("…")
    assert hits[1].to_dict()["doc_id"] == 7


@pytest.mark.parametrize("query", ['"the cat', 'cat "sat" "mat', "", "   ", "!!! ...", '""'])
def test_malformed_or_wordless_queries_are_value_errors_naming_the_query(tmp_path, query):
    _, bm25 = make(tmp_path, ["the cat sat"])
    with pytest.raises(ValueError, match="query"):
        bm25.search(query)


def test_operators_are_plain_words(tmp_path):
    _, bm25 = make(tmp_path, ["cat and dog", "dog", "title cat"])
    assert {h.doc for h in bm25.search("cat AND dog")} == {0, 1, 2}  # "and" is a word; no conjunction
    assert {h.doc for h in bm25.search("title:cat -dog")} == {0, 1, 2}


# --- appends and the manifest --------------------------------------------------------------

def test_append_then_update_equals_a_fresh_build(tmp_path):
    rng = random.Random(3)
    first, more = [random_text(rng) for _ in range(20)], [random_text(rng) for _ in range(15)]
    index, bm25 = make(tmp_path, first)
    index.append(records(more, start=20))
    with pytest.raises(Bm25FormatError, match="appended to since.*update_bm25"):
        load_bm25(index)
    bm25 = update_bm25(index)
    assert bm25.n_docs == 35 and load_bm25(tmp_path / "idx").n_docs == 35
    brute = BruteBm25(first + more)
    check_query(bm25, brute, "cat café", ["cat", "café"], [])
    fresh = build_bm25(build_index(records(first + more), tmp_path / "fresh"))
    assert [(h.doc, h.score) for h in fresh.search("the mat", limit=50)] == \
           [(h.doc, h.score) for h in bm25.search("the mat", limit=50)]


def test_unfinished_build_is_refused_and_a_new_build_replaces_it(tmp_path, monkeypatch):
    index = build_index(records(["cat", "sat"]), tmp_path / "idx")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bm25_mod, "_write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        build_bm25(index)
    monkeypatch.undo()
    assert (tmp_path / "idx" / "bm25").is_dir()
    with pytest.raises(Bm25FormatError, match="did not finish"):
        load_bm25(index)
    assert [h.doc for h in build_bm25(index).search("sat")] == [1]


def test_killed_update_is_refused_and_update_rebuilds(tmp_path, monkeypatch):
    index, _ = make(tmp_path, ["cat", "sat"])
    index.append(records(["mat"], start=2))
    monkeypatch.setattr(bm25_mod, "_write_manifest", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        update_bm25(index)
    monkeypatch.undo()
    with pytest.raises(Bm25FormatError, match="did not finish"):
        load_bm25(index)
    assert [h.doc for h in update_bm25(index).search("mat")] == [2]


def test_missing_existing_mismatched_and_other_version_indexes(tmp_path):
    index = build_index(records(["cat", "sat"]), tmp_path / "idx")
    with pytest.raises(Bm25FormatError, match="has no BM25 index.*index build"):
        load_bm25(tmp_path / "idx")
    build_bm25(index)
    with pytest.raises(FileExistsError, match="overwrite"):
        build_bm25(index)
    rebuilt = build_index(records(["cat", "mat"]), tmp_path / "idx", overwrite=True)
    with pytest.raises(Bm25FormatError, match="rebuilt since.*lmaudit index build"):
        load_bm25(rebuilt)
    assert [h.doc_id for h in build_bm25(rebuilt, overwrite=True).search("mat")] == ["d1"]
    manifest = tmp_path / "idx" / "bm25" / "bm25.json"
    m = json.loads(manifest.read_text())
    assert m["n_docs"] == 2 and m["tantivy_version"] and m["tokenizer"]["drop_tokens_of_bytes"] == 40
    m["format_version"] = 99
    manifest.write_text(json.dumps(m))
    with pytest.raises(Bm25FormatError, match="format version 99"):
        load_bm25(rebuilt)


def test_rebuilt_suffix_index_of_the_same_documents_still_matches(tmp_path):
    build_bm25(build_index(records(["cat", "sat"]), tmp_path / "idx"))
    same = build_index(records(["cat", "sat"]), tmp_path / "idx", overwrite=True)
    assert load_bm25(same).search("cat")[0].doc_id == "d0"


def test_a_lone_surrogate_is_indexed_as_a_separator(tmp_path):
    _, bm25 = make(tmp_path, ["cat\ud800sat", "cat sat"])  # the suffix index keeps the surrogate; tantivy cannot
    assert {h.doc for h in bm25.search('"cat sat"')} == {0, 1}
    assert bm25.search("sat", limit=2)[0].snippet in ("cat\ud800sat", "cat sat")


def test_a_bm25_folder_of_the_users_own_is_never_removed(tmp_path):
    from lmaudit.corpus.bm25 import build_bm25
    from lmaudit.corpus.index import build_index
    from lmaudit.data import Record

    index = build_index([Record(id="a", text="the cat sat", source="-", line=1)], tmp_path / "idx")
    (tmp_path / "idx" / "bm25").mkdir()
    (tmp_path / "idx" / "bm25" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        build_bm25(index, overwrite=True)
    assert (tmp_path / "idx" / "bm25" / "notes.txt").read_text() == "mine"
    (tmp_path / "idx" / "bm25" / "notes.txt").unlink()
    build_bm25(index)
    assert build_bm25(index, overwrite=True).search("cat")[0].doc_id == "a"  # its own files are replaced
