"""STAMP-style paired tests: alignment by id, and the statistics against hand computations."""

import itertools

import numpy as np
import pytest
from scipy import stats as st

from lmaudit.data import DataError, Record
from lmaudit.data import align_by_id
from lmaudit.membership.paired import paired_tests, run_paired_test


def _recs(ids, source, texts=None):
    return [Record(id=i, text=(texts or {}).get(i, f"text {i}"), source=source, line=n + 1) for n, i in enumerate(ids)]


def test_alignment_is_by_id_not_by_position():
    public = _recs(["a", "b", "c"], "public.jsonl")
    v1 = _recs(["c", "a", "b"], "v1.jsonl")
    rows = align_by_id(public, [v1])
    assert [row[0].id for row in rows] == ["a", "b", "c"]


def test_a_missing_partner_names_the_file_and_id():
    public = _recs(["a", "b", "c"], "public.jsonl")
    with pytest.raises(DataError, match=r"v2.jsonl: no row with id 'b' \(public.jsonl:2\)"):
        align_by_id(public, [_recs(["a", "b", "c"], "v1.jsonl"), _recs(["a", "c"], "v2.jsonl")])
    with pytest.raises(DataError, match=r"v1.jsonl:4: id 'z' has no partner"):
        align_by_id(public, [_recs(["a", "b", "c", "z"], "v1.jsonl")])


def test_statistics_against_hand_computation():
    rng = np.random.default_rng(0)
    public = rng.normal(2.0, 0.3, 9)
    private = public[:, None] + rng.normal(0.1, 0.2, (9, 3))
    res = paired_tests(public, private)
    d = private.mean(axis=1) - public
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    assert res["paired_t"]["statistic"] == pytest.approx(-t)  # ttest_rel(public, private) has the sign flipped
    assert res["paired_t"]["p_value"] == pytest.approx(st.t.sf(t, len(d) - 1))
    assert res["mean_difference"] == pytest.approx(d.mean())
    # Exact Wilcoxon signed-rank p by enumerating all 2^9 sign patterns (no ties, no zeros).
    ranks = st.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    null = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    assert res["wilcoxon"]["p_value"] == pytest.approx(np.mean([w >= observed for w in null]))


def test_unscorable_versions_are_an_error(tiny_lm, corpus_texts):
    ids = ["x", "y", "z"]
    public = _recs(ids, "pub", dict(zip(ids, corpus_texts[:3])))
    private = _recs(ids, "priv", {"x": corpus_texts[3], "y": "", "z": corpus_texts[5]})
    with pytest.raises(ValueError, match=r"1 versions could not be scored.*priv:2 id 'y': empty text"):
        run_paired_test(tiny_lm, public, [private])
    ok = run_paired_test(tiny_lm, public, [_recs(ids, "priv", dict(zip(ids, corpus_texts[3:6])))])
    assert [s["id"] for s in ok.samples] == ids and ok.results["n_items"] == 3
