"""Copying metrics against brute force: exact substrings (property-based), ROUGE, edit distance, MinHash."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmaudit.memorization.copying import CopyingConfig, copying_metrics, minhash_jaccard, rouge_1, rouge_l, rouge_tokens
from lmaudit.memorization.substrings import SuffixAutomaton, longest_common_substring, verbatim_spans


def _substrings(seq):
    return {tuple(seq[i:j]) for i in range(len(seq)) for j in range(i + 1, len(seq) + 1)}


def _brute_lcs(a, b):
    common = _substrings(a) & _substrings(b)
    return max((len(s) for s in common), default=0)


def _brute_covered(out, ref, n):
    ref_subs = _substrings(ref)
    covered = set()
    for i, j in itertools.combinations(range(len(out) + 1), 2):
        if j - i >= n and tuple(out[i:j]) in ref_subs:
            covered.update(range(i, j))
    return covered


small_text = st.text(alphabet="ab c", max_size=30)
word_lists = st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "a"]), max_size=20)


@settings(max_examples=300, deadline=None)
@given(small_text, small_text)
def test_longest_common_substring_of_characters_is_exact(a, b):
    assert longest_common_substring(a, b) == _brute_lcs(a, b)


@settings(max_examples=200, deadline=None)
@given(word_lists, word_lists)
def test_longest_common_substring_of_words_is_exact(a, b):
    assert longest_common_substring(a, b) == _brute_lcs(a, b)


@settings(max_examples=200, deadline=None)
@given(small_text, small_text, st.integers(1, 6))
def test_verbatim_spans_cover_exactly_the_long_common_runs(out, ref, n):
    spans = verbatim_spans(out, ref, min_length=n)
    covered = {i for s, e in spans for i in range(s, e)}
    assert covered == _brute_covered(out, ref, n)
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))  # disjoint, sorted, not touching


@given(small_text)
def test_automaton_has_at_most_two_states_per_item(text):
    assert len(SuffixAutomaton(text).length) <= max(1, 2 * len(text))


def test_greedy_matching_would_undercount():
    # A greedy left-to-right matcher that commits to the first match "abc" (then resumes
    # after it) misses the longer run "bcdefg" starting inside it.
    assert longest_common_substring("abcdefg", "abcxx bcdefg") == 6


def _brute_lcs_subsequence(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["The", "cat,", "sat", "on", "mat.", "A", "dog"]), max_size=15),
       st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "a", "dog!"]), max_size=15))
def test_rouge_against_brute_force(a, b):
    out, ref = " ".join(a), " ".join(b)
    ta, tb = rouge_tokens(out), rouge_tokens(ref)
    lcs = _brute_lcs_subsequence(ta, tb)
    p, r, f = rouge_l(out, ref)
    assert p == pytest.approx(lcs / len(ta) if ta else 0.0) and r == pytest.approx(lcs / len(tb) if tb else 0.0)
    assert f == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
    overlap = sum(min(ta.count(w), tb.count(w)) for w in set(ta))
    assert rouge_1(out, ref)[0] == pytest.approx(overlap / len(ta) if ta else 0.0)


def test_rouge_tokenisation_and_hand_values():
    assert rouge_tokens("Hello, World! It's 2024.") == ["hello", "world", "it", "s", "2024"]
    # "the cat sat on the mat" vs "the cat lay on the mat": LCS 5 of 6 words each side.
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx((5 / 6, 5 / 6, 5 / 6))


def _edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@settings(max_examples=100, deadline=None)
@given(small_text, small_text)
def test_levenshtein_similarity_is_normalised_edit_distance(a, b):
    sim = copying_metrics(a, b)["levenshtein_sim"]
    expected = 1 - _edit_distance(a, b) / max(len(a), len(b)) if a or b else 1.0
    assert sim == pytest.approx(expected) and 0 <= sim <= 1


def test_minhash_estimates_the_shingle_jaccard():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    for _ in range(20):
        a = " ".join(rng.choice(words, 60))
        b = a[: rng.integers(20, len(a))] + " " + " ".join(rng.choice(words, 30))
        sa, sb = ({x[i : i + 3] for i in range(len(x) - 2)} for x in (a, b))
        assert minhash_jaccard(a, b) == pytest.approx(len(sa & sb) / len(sa | sb), abs=0.15)  # 3.4 sd at 128
    assert minhash_jaccard("same text here", "same text here") == 1.0
    assert minhash_jaccard("aaaaaaa", "bbbbbbb") == 0.0


def test_all_metrics_of_a_copied_pair():
    ref = " ".join(f"word{i}" for i in range(80))
    out = " ".join(f"word{i}" for i in range(50)) + " something else entirely different here"
    m = copying_metrics(out, ref)
    assert m["literal_copy"] is True  # first 50 words identical
    assert m["lcs_words"] == 50 and m["acs_words"] == 50
    assert m["lcs_chars"] == len(" ".join(f"word{i}" for i in range(50))) + 1  # the space after word49 too
    assert m["verbatim_spans"] == [[0, m["lcs_chars"]]]
    assert copying_metrics("", ref)["lcs_chars"] == 0 and copying_metrics("", ref)["literal_copy"] is False
    # 60 words: LCS 50 of 55 output and 60 reference words, F1 = 0.870, a copy at 0.8, not at 0.9.
    assert copying_metrics(out, ref, CopyingConfig(literal_tokens=60))["literal_copy"] is True
    assert copying_metrics(out, ref, CopyingConfig(literal_tokens=60, literal_threshold=0.9))["literal_copy"] is False


def test_copying_command_pairs_rows_by_id(tmp_path):
    import json

    from typer.testing import CliRunner

    from lmaudit.cli import app

    refs = {"a": "The Silent Harbor was written in 1921 by Ada Wickham of Norvale.", "b": "Nothing alike at all."}
    outs = [("b", "Completely different words here."), ("a", refs["a"])]  # another order than the references
    (tmp_path / "refs.jsonl").write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in refs.items()))
    (tmp_path / "outs.jsonl").write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in outs))
    res = CliRunner().invoke(app, ["--quiet", "copying", "--outputs", str(tmp_path / "outs.jsonl"), "--references",
                                   str(tmp_path / "refs.jsonl"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [x["id"] for x in rows] == ["b", "a"] and rows[1]["literal_copy"] and not rows[0]["literal_copy"]
    assert rows[1]["verbatim_spans"] == [[0, len(refs["a"])]] and rows[1]["lcs_chars"] == len(refs["a"])
    assert r["n_pairs"] == 2 and r["literal_copy_rate"] == 0.5 and r["files"]["samples"]["rows"] == 2
    # Each metric's definition and every option are recorded; means carry bootstrap intervals.
    assert "CopyBench" in r["definitions"]["literal_copy"] and "unstemmed" in r["definitions"]["rouge"]
    assert r["provenance"]["config"]["literal_stem"] is True and r["provenance"]["config"]["rouge_stem"] is False
    lo, hi = r["means"]["rouge_l_f1_ci"]
    assert lo <= r["means"]["rouge_l_f1"] <= hi and r["verbmem"] == pytest.approx(100 * r["means"]["rouge_l_f1"])
    # A reference without its output is an error naming the file and the id; nothing is written.
    (tmp_path / "outs.jsonl").write_text(json.dumps({"id": "a", "text": "x"}) + "\n")
    res = CliRunner().invoke(app, ["--quiet", "copying", "--outputs", str(tmp_path / "outs.jsonl"), "--references",
                                   str(tmp_path / "refs.jsonl"), "--out", str(tmp_path / "out2")])
    assert res.exit_code == 2 and "refs.jsonl:2: id 'b' has no partner" in res.output
    assert not (tmp_path / "out2" / "results.json").exists()


def test_copying_reports_non_literal_copying_when_references_carry_it(tmp_path):
    from lmaudit.data import DataError, Record
    from lmaudit.memorization.copying_run import run_copying

    ref = Record(id=1, text="Ada met Otto at the harbor.", source="refs.jsonl", line=1,
                 meta={"characters": [["Ada Wickham", "Ada"], "Otto", "Lars"], "events": ["Ada met Otto at the harbor"]})
    out = Record(id=1, text="At the harbor, Ada met Otto and Lars.", source="outs.jsonl", line=1, meta={"prompt": "About Lars:"})
    results, rows = run_copying([out], [ref])
    assert rows[0]["characters_copied"] == ["Ada Wickham", "Otto"] and rows[0]["n_events"] == 1
    assert results["character_copy_rate"] == 0.0 and results["event_copy_rate"] == 0.0  # below 3 and 5
    # 0 of 1 item flagged: Clopper-Pearson's upper end for 0/1 is 1 − 0.025 = 0.975, with the count beside it.
    assert results["character_copy_rate_ci"] == pytest.approx([0.0, 0.975]) and results["n_with_characters"] == 1
    assert results["event_copy_rate_ci"] == pytest.approx([0.0, 0.975]) and results["n_with_events"] == 1
    assert results["event_judge"] == {"name": "keyword", "approximate": True}
    bad = Record(id=1, text="x", source="refs.jsonl", line=7, meta={"events": "not a list"})
    with pytest.raises(DataError, match="refs.jsonl:7: field 'events' must be a list of strings"):
        run_copying([out], [bad])


def test_acs_counts_overlapping_runs_once_where_cotaeval_drops_the_second():
    # Output runs found in the reference: "a b c d" (output words 0-3) and "c d e f" (2-5).
    # Their union covers all 6 output words; a greedy by-start selection keeps only the first (4).
    m = copying_metrics("a b c d e f", "a b c d x c d e f")
    assert m["acs_words"] == 6 and m["lcs_words"] == 4
    # Disjoint runs: the sum of their lengths, as CoTaEval counts them; runs under 3 words do not count.
    m = copying_metrics("p q r z s t u v w y y", "p q r . s t u v . y y")
    assert m["acs_words"] == 3 + 4 and m["lcs_words"] == 4


def test_copying_command_refuses_a_bad_option_before_reading_anything(tmp_path):
    from typer.testing import CliRunner

    from lmaudit.cli import app

    res = CliRunner().invoke(app, ["--quiet", "copying", "--outputs", str(tmp_path / "missing.jsonl"), "--references",
                                   str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out"),
                                   "--substring-normalize", "lower"])
    assert res.exit_code == 2 and "substring_normalize must be one of none, cotaeval" in res.output
    assert not (tmp_path / "out").exists()
