"""Near-duplicates (lmaudit.corpus.dedup) against brute force: every pair's exact Jaccard."""

import itertools
import json
import random

import numpy as np
import pytest

from lmaudit.corpus import dedup
from lmaudit.corpus.dedup import annotated_rows, choose_bands, find_near_duplicates, jaccard, near_copies, shingles, words
from lmaudit.data import DataError, Record, read_records
from lmaudit.report.results import breakdown

VOCAB = [f"w{i}" for i in range(400)] + ["café", "naïve", "ｆｕｌｌ", "ﬁn", "日本語", "x"]


def _recs(texts, source="corpus.jsonl"):
    return [Record(id=f"d{i}", text=t, source=source, line=i + 1) for i, t in enumerate(texts)]


def _mutate(rng, text, n_changes):
    w = text.split()
    for _ in range(n_changes):
        w[rng.randrange(len(w))] = rng.choice(VOCAB)
    return " ".join(w)


def _planted_corpus(seed, n_base=40, length=60):
    """Random documents, plus near-copies of some of them with 0-6 changed words, exact copies
    with other punctuation and case, short and empty documents."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(length // 2, length))) for _ in range(n_base)]
    for _ in range(25):
        texts.append(_mutate(rng, rng.choice(texts[:n_base]), rng.randint(0, 6)))
    texts.append(texts[0].upper().replace(" ", ",  "))  # same words after normalising
    texts += ["w1 w2", "w1 w2", "W1, w2!", "w3", "", "  ...  ", "w1 w2 w3 w4"]
    rng.shuffle(texts)
    return texts


def _brute_clusters(texts, threshold, k=5):
    sets = [shingles(t, k) for t in texts]
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    pairs = {}
    for a, b in itertools.combinations(range(len(texts)), 2):
        if sets[a] and sets[b]:
            j = jaccard(sets[a], sets[b])
            if j >= threshold:
                pairs[(a, b)] = j
                parent[find(b)] = find(a)
    comps = {}
    for i in range(len(texts)):
        if sets[i]:
            comps.setdefault(find(i), []).append(i)
    return sorted(sorted(c) for c in comps.values() if len(c) > 1), pairs


# ------------------------------------------------------------------ shingling by hand

def test_words_and_shingles_by_hand():
    assert words("The CAT, sat--on  the\tmat.") == ["the", "cat", "sat", "on", "the", "mat"]
    # NFKC: full-width letters, the fi ligature and a non-breaking space fold; non-ASCII punctuation stays.
    assert words("Ｃａｆé\u00a0ﬁne «x»") == ["café", "fine", "«x»"]
    assert shingles("a b c d e f", 5) == {("a", "b", "c", "d", "e"), ("b", "c", "d", "e", "f")}
    assert shingles("a b c d e f", 3) == {("a", "b", "c"), ("b", "c", "d"), ("c", "d", "e"), ("d", "e", "f")}
    assert shingles("Hello, World", 5) == {("hello", "world")}  # short: the whole word sequence
    assert shingles("", 5) == set() and shingles(" !?, ", 5) == set()
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5 and jaccard(set(), set()) == 0.0


def test_vectorised_words_agree_with_the_reference_split():
    rng = random.Random(3)
    alphabet = list("abc ,.!\t\n-é日ﬁＡ\u00a0\u2028'\"_") + ["\x00", "\x7f", "\U0001f600"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    hashes, counts = dedup._word_hashes([dedup.normalize(t) for t in texts])
    assert counts.tolist() == [len(words(t)) for t in texts]
    flat = [w for t in texts for w in words(t)]
    by_word = {}
    for w, h in zip(flat, hashes.tolist()):
        assert by_word.setdefault(w, h) == h  # one hash per word
    assert len(set(by_word.values())) == len(by_word)  # and distinct words, distinct hashes


def test_vectorised_shingle_hashes_are_one_per_reference_shingle():
    rng = random.Random(4)
    texts = [" ".join(rng.choice(VOCAB[:6]) for _ in range(rng.randint(0, 12))) for _ in range(200)]
    hashes, counts = dedup._word_hashes([dedup.normalize(t) for t in texts])
    sh, n_sh = dedup._shingle_hashes(hashes, counts, 3)
    start = 0
    seen = {}
    for t, n in zip(texts, n_sh.tolist()):
        mine = sh[start:start + n].tolist()
        start += n
        ref = shingles(t, 3)
        assert len(set(mine)) == len(ref)
        w = words(t)
        tuples = [tuple(w[i:i + 3]) for i in range(len(w) - 2)] if len(w) >= 3 else ([tuple(w)] if w else [])
        for tup, h in zip(tuples, mine):
            assert seen.setdefault(tup, h) == h
    assert len(set(seen.values())) == len(seen)


# ------------------------------------------------------------------ LSH parameters

def test_bands_are_the_longest_that_catch_a_pair_at_the_threshold_95_percent_of_the_time():
    p = choose_bands(0.8, 128)
    assert (p.bands, p.rows) == (18, 7) and p.p_candidate(0.8) >= 0.95
    longer = dedup.LSHParams(128, 128 // 8, 8, 0.8)
    assert longer.p_candidate(0.8) < 0.95
    assert p.p_candidate(0.8) == pytest.approx(1 - (1 - 0.8 ** 7) ** 18)
    assert choose_bands(0.5, 128, bands=32).rows == 4
    with pytest.raises(ValueError, match="threshold"):
        choose_bands(0.0)
    with pytest.raises(ValueError, match="bands"):
        choose_bands(0.8, 128, bands=200)


def test_the_module_doc_states_the_true_s_curve_of_the_default_banding():
    # Review B finding 7: the doc said 0.9998 at 0.9 and 0.23 at 0.6.
    def p(s):
        return 1 - (1 - s ** 7) ** 18

    doc = " ".join(dedup.__doc__.split())
    assert f"({p(0.8):.3f} at s = 0.8, {p(0.9):.6f} at 0.9, {p(0.6):.3f} at 0.6)" in doc
    assert (f"{p(0.9):.6f}", f"{p(0.6):.3f}") == ("0.999992", "0.400")


@pytest.mark.parametrize("threshold, num_perm, bands, best", [(0.01, 128, None, True), (0.8, 1, None, True),
                                                               (0.5, 4, None, True), (0.8, 128, 1, False)])
def test_a_banding_below_95_percent_says_so(threshold, num_perm, bands, best):
    # choose_bands(0.01, 128) gave 128 x 1 at p = 0.72 and called the case "unreachable".
    p = choose_bands(threshold, num_perm, bands=bands)
    got = p.p_candidate(threshold)
    assert got < 0.95 and p.warning is not None and f"{got:.3f}" in p.warning
    assert p.describe()["warning"] == p.warning
    if best:  # no banding of num_perm values does better than bands of one row: 1 - (1 - t)^num_perm
        assert (p.bands, p.rows) == (num_perm, 1) and got == pytest.approx(1 - (1 - threshold) ** num_perm)
        assert "no banding" in p.warning
    else:
        assert "more bands of fewer rows" in p.warning
    assert choose_bands(0.8, 128).warning is None and "warning" not in choose_bands(0.8, 128).describe()


def test_the_share_in_clusters_is_a_count_without_an_interval():
    # Review B finding 2: /tmp/review-B/incluster.py, 400 texts present twice in 2,000 documents.
    from lmaudit.corpus.dedup_run import dedup_summary

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    base = [" ".join(rng.choice(vocab) for _ in range(50)) for _ in range(400)]
    recs = [Record(id=i, text=t, source="c", line=i + 1) for i, t in enumerate(base + base[:100])]
    s = dedup_summary(find_near_duplicates(recs), threshold=0.8, shingle=5)
    assert (s["n_in_clusters"], s["n_with_shingles"], s["in_clusters_rate"]) == (200, 500, 0.4)
    assert "in_clusters_rate_ci" not in s and "no interval" in s["definitions"]["in_clusters_rate"]
    assert "warnings" not in s


# ------------------------------------------------------------------ clusters against brute force

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_clusters_equal_brute_force_on_planted_corpora(seed, threshold):
    texts = _planted_corpus(seed)
    found = find_near_duplicates(_recs(texts), threshold=threshold)
    brute, pairs = _brute_clusters(texts, threshold)
    mine = sorted(sorted(c.index) for c in found.clusters)
    # Precision is exact (every output pair was verified); recall: pairs well above the
    # threshold are caught with probability ~1, so the components agree on these corpora.
    assert all(set(c) <= set(b) for c in mine for b in brute if set(c) & set(b))
    assert mine == brute
    for c in found.clusters:
        inside = [j for (a, b), j in pairs.items() if a in c.index and b in c.index]
        assert min(inside) <= c.min_jaccard and c.max_jaccard == max(inside)
        assert c.min_jaccard >= threshold
    assert found.empty_ids == [f"d{i}" for i, t in enumerate(texts) if not words(t)]
    assert found.n_short == sum(1 for t in texts if 0 < len(words(t)) < 5)
    assert 0 <= found.n_verified <= found.n_candidates


def test_every_verified_pair_is_above_the_threshold_and_pairs_well_above_are_found():
    rng = random.Random(11)
    texts = [" ".join(rng.choice(VOCAB) for _ in range(200)) for _ in range(60)]
    texts += [_mutate(rng, t, rng.randint(1, 3)) for t in texts[:60]]  # Jaccard ~0.85-0.97
    found = find_near_duplicates(_recs(texts), threshold=0.7)
    _, pairs = _brute_clusters(texts, 0.7)
    well_above = [p for p, j in pairs.items() if j >= 0.8]
    together = {i: c.index for c in found.clusters for i in c.index}
    caught = sum(1 for a, b in well_above if b in together.get(a, ()))
    assert len(well_above) >= 55 and caught == len(well_above)
    # The candidates the LSH proposed and verification rejected are counted.
    assert found.n_rejected == found.n_candidates - found.n_verified


def test_exact_copies_are_merged_before_lsh_and_counted():
    texts = ["one two three four five six"] * 4 + ["One, two; three four five six."] + ["w1 w2 w3 w4 w5 w6 w7"]
    found = find_near_duplicates(_recs(texts))
    assert [c.ids for c in found.clusters] == [["d0", "d1", "d2", "d3", "d4"]]
    assert found.n_exact_copies == 4 and found.n_candidates == 0
    assert (found.clusters[0].min_jaccard, found.clusters[0].n_pairs) == (1.0, 4)


def test_short_and_empty_documents():
    texts = ["hello world", "Hello, world!", "hello there world", "", "   ", "hello"]
    found = find_near_duplicates(_recs(texts))
    assert [c.ids for c in found.clusters] == [["d0", "d1"]]  # short: only its exact word sequence matches
    assert found.empty_ids == ["d3", "d4"] and found.n_short == 4 and found.n_documents == 6


def test_duplicate_ids_are_refused_with_file_and_line():
    recs = [Record(id="a", text="x y", source="one.jsonl", line=3), Record(id="a", text="x z", source="two.jsonl",
                                                                            line=7)]
    with pytest.raises(DataError, match=r"two\.jsonl:7: duplicate id 'a' \(also one\.jsonl:3\)"):
        find_near_duplicates(recs)
    with pytest.raises(DataError, match="two.jsonl:7"):
        near_copies(recs, recs[:1])


def test_non_utf8_input_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": 1, "text": "fine"}\n{"id": 2, "text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid UTF-8"):
        read_records(path)


# ------------------------------------------------------------------ near-copies against brute force

@pytest.mark.parametrize("seed", range(4))
def test_near_copy_counts_equal_brute_force(seed):
    rng = random.Random(100 + seed)
    base = [" ".join(rng.choice(VOCAB) for _ in range(80)) for _ in range(30)]
    corpus = list(base)
    for i, t in enumerate(base[:10]):
        corpus += [_mutate(rng, t, rng.randint(0, 4)) for _ in range(i)]  # i near-copies of base[i]
    corpus += ["", "w1 w2"]
    rng.shuffle(corpus)
    queries = base[:12] + ["w1, W2", "", " ".join(rng.choice(VOCAB) for _ in range(80))]
    got = near_copies(_recs(queries, "q.jsonl"), _recs(corpus), threshold=0.8, top=3)
    csets = [shingles(t) for t in corpus]
    for q, r in zip(queries, got):
        qs = shingles(q)
        if not qs:
            assert r.count is None and "no word" in r.error
            continue
        truth = sorted(((jaccard(qs, s), i) for i, s in enumerate(csets) if s and jaccard(qs, s) >= 0.8),
                       key=lambda x: (-x[0], x[1]))
        assert r.count == len(truth)
        assert r.ids == [f"d{i}" for _, i in truth[:3]] and r.jaccards == [j for j, _ in truth[:3]]
        assert r.n_rejected <= r.n_candidates


def test_near_copy_counts_feed_the_duplication_breakdown_of_extraction_and_copying(tmp_path):
    """The tie to the existing breakdowns: rows written with the count as `duplication` are
    broken down by it, each level holding exactly the queries with that count."""
    from lmaudit.memorization.copying_run import run_copying
    from lmaudit.memorization.extraction import _rates, ExtractionConfig

    rng = random.Random(7)
    base = [" ".join(rng.choice(VOCAB) for _ in range(60)) for _ in range(6)]
    corpus = [t for i, t in enumerate(base) for _ in range(i % 3)]  # 0, 1 or 2 copies
    queries = [Record(id=f"q{i}", text=t, source="q.jsonl", line=i + 1, meta={"lang": "xx"})
               for i, t in enumerate(base)]
    found = near_copies(queries, _recs(corpus))
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in annotated_rows(queries, found, text_field="text",
                                                                          id_field="id", count_field="duplication")))
    rows = read_records(path)
    assert [r.meta for r in rows] == [{"lang": "xx", "duplication": i % 3} for i in range(6)]
    # copying's own by-duplication breakdown over these rows as references
    results, _ = run_copying(rows, rows)
    assert {k: v["n"] for k, v in results["by_duplication"].items()} == {"0": 2, "1": 2, "2": 2}
    # extraction's breakdown code over rows carrying the field as extraction writes it
    ext_rows = [{"id": r.id, "duplication": r.meta["duplication"], "exact_match": True, "token_match": 1.0,
                 "longest_match_tokens": 1} for r in rows]
    by = breakdown(ext_rows, "duplication", lambda g: _rates(g, ExtractionConfig(n_bootstrap=10)))
    levels = {k: sorted(r["id"] for r in ext_rows if str(r["duplication"]) == k) for k in by}
    assert levels == {str(c): sorted(q.id for q, f in zip(queries, found) if f.count == c) for c in (0, 1, 2)}


def test_signatures_are_rensas_on_the_shingle_hashes():
    from rensa import RMinHash

    texts = ["a b c d e f g h", "x y z"]
    sk = dedup._sketch(texts, 5, 64, 3)
    hashes, counts = dedup._word_hashes([dedup.normalize(t) for t in texts])
    sh, n = dedup._shingle_hashes(hashes, counts, 5)
    offsets = np.concatenate(([0], np.cumsum(n))).astype(np.uint64)
    rows = RMinHash.digest_matrix_from_flat_token_hashes(sh, offsets, 64, 3).to_rows()
    assert sk.signatures.tolist() == rows
