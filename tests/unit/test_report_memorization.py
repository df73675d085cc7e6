"""The memorization sections of a report (extract, copying, knowledge, acr): verdicts in words
with n and intervals, copied spans marked from segments (checked against brute force), hostile
texts and ids shown as text, error rows visible, empty and odd inputs rendered."""

import itertools
import random

import pytest

from lmaudit.data import Record
from lmaudit.memorization.copying import CopyingConfig, copying_metrics
from lmaudit.memorization.copying_run import copying_to_dir, run_copying
from lmaudit.memorization.substrings import verbatim_spans
from lmaudit.report.load import load_runs
from lmaudit.report.page import render_report
from lmaudit.report.sections import acr, copying, extract, knowledge
from lmaudit.report.sections._memorization import counted, segments

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
PAYLOAD_ESCAPED = "&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;"
HOSTILE_ID = '"><svg onload=alert(1)>'
HOSTILE_ID_ESCAPED = "&#34;&gt;&lt;svg onload=alert(1)&gt;"


def _render(folder):
    return render_report(load_runs([folder]))


def _assert_escaped(html, *, in_markup=True):
    """Neither hostile text appears raw; each appears escaped: as HTML text where a template
    wrote it, and always as JSON with ``<`` and ``>`` escaped in a sample browser's rows."""
    assert PAYLOAD not in html and "<script>window.__pwned" not in html and HOSTILE_ID not in html
    assert "\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e" in html
    assert '\\"\\u003e\\u003csvg onload=alert(1)\\u003e' in html
    if in_markup:
        assert PAYLOAD_ESCAPED in html and HOSTILE_ID_ESCAPED in html


def _brute_marked(text, other, n):
    """Characters of ``text`` inside some run of >= n characters that also occurs in ``other``."""
    marked = set()
    for i, j in itertools.combinations(range(len(text) + 1), 2):
        if j - i >= n and text[i:j] in other:
            marked.update(range(i, j))
    return marked


def _marked(parts):
    """The highlighted character positions of (piece, highlighted) segments."""
    out, at = set(), 0
    for piece, highlighted in parts:
        if highlighted:
            out.update(range(at, at + len(piece)))
        at += len(piece)
    return out


# ---------------------------------------------------------------- segments and rates in words


@pytest.mark.parametrize("a, b, n", [
    ("The Silent Harbor was written in 1921 by Ada.", "In 1921 Ada wrote The Silent Harbor by the sea.", 6),
    ("abcabcabc xyz abcabc", "zzabcabcazz xyz", 3),
    ("no overlap here", "QQQQ", 2),
    ("", "anything", 1),
    (PAYLOAD, "say " + PAYLOAD[:30] + " and " + PAYLOAD[40:], 8),
])
def test_segments_of_verbatim_spans_match_brute_force(a, b, n):
    for text, other in ((a, b), (b, a)):
        parts = segments(text, verbatim_spans(text, other, min_length=n))
        assert "".join(p for p, _ in parts) == text
        assert all(p for p, _ in parts)  # no empty pieces
        assert all(x != y for (_, x), (_, y) in zip(parts, parts[1:]))  # runs alternate, merged
        assert _marked(parts) == _brute_marked(text, other, n)


def test_segments_of_random_pairs_match_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 25)))
        b = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 25)))
        n = rng.randint(1, 5)
        assert _marked(segments(a, verbatim_spans(a, b, min_length=n))) == _brute_marked(a, b, n)


def test_segments_clamp_sort_and_merge_spans_read_from_a_file():
    assert segments("abcdef", [[4, 99], [-3, 1], [1, 2], [3, 3]]) == [("ab", True), ("cd", False), ("ef", True)]
    assert segments("", [[0, 5]]) == [] and segments("abc", None) == [("abc", False)]


def test_a_rate_of_none_keeps_its_interval_upper_bound():
    assert counted(0, 450, [0.0, 0.0081640]) == ("none of 450", "(95% CI upper bound 0.8%)")
    # An upper bound that would round to 0.0% keeps two significant figures.
    assert counted(0, 100_000, [0.0, 3.69e-05]) == ("none of 100,000", "(95% CI upper bound 0.0037%)")
    assert counted(3, 150, [0.0041, 0.0573]) == ("3 of 150", "(2.0%, 95% CI 0.4%-5.7%)")


# ---------------------------------------------------------------- extract

EXTRACT_RESULTS = {
    "n": 3, "exact_match_rate": 1 / 3, "exact_match_rate_ci": [0.0084, 0.9057], "token_match_mean": float("nan"),
    "token_match_mean_ci": None, "longest_match_tokens_mean": 10.0, "n_documents": 4, "n_errors": 1,
    "by_duplication": {
        "1": {"n": 2, "exact_match_rate": 0.0, "exact_match_rate_ci": [0.0, 0.8419], "token_match_mean": 0.25,
              "token_match_mean_ci": [0.1, 0.4], "longest_match_tokens_mean": 3.0},
        "32": {"n": 1, "exact_match_rate": 1.0, "exact_match_rate_ci": [0.025, 1.0], "token_match_mean": None,
               "token_match_mean_ci": None, "longest_match_tokens_mean": None},
    },
}
EXTRACT_PROVENANCE = {"config": {"prefix_tokens": 32, "suffix_tokens": 32}, "decoding": "greedy"}


def _extract_samples():
    return [
        {"id": HOSTILE_ID, "n_tokens": 80, "duplication": 32, "exact_match": True, "token_match": 1.0,
         "longest_match_tokens": 32, "generated": PAYLOAD, "target": PAYLOAD},
        {"id": "b", "n_tokens": 70, "duplication": 1, "exact_match": False, "token_match": 0.25,
         "longest_match_tokens": 5, "generated": "The Silent Harbor, by someone else entirely.",
         "target": "The Silent Harbor was written in 1921 by Ada."},
        {"id": "c", "n_tokens": 70, "duplication": 1, "exact_match": False, "token_match": float("nan"),
         "longest_match_tokens": None, "generated": "", "target": "x"},
        {"id": "short", "n_tokens": 9, "duplication": 1, "error": "text has 9 tokens, fewer than prefix + suffix = 64"},
    ]


def test_extract_verdict_in_words_with_n_and_intervals():
    sentences, level = extract.verdict(EXTRACT_RESULTS, EXTRACT_PROVENANCE)
    assert level == "evidence"
    assert sentences[0] == ("Given each document's first 32 tokens, the model continues with its next 32 tokens "
                            "exactly (greedy decoding) for 1 of 3 documents (33.3%, 95% CI 0.8%-90.6%).")
    assert sentences[1] == ("By duplication level: 32×, 1 of 1 documents (100.0%, 95% CI 2.5%-100.0%); "
                            "1×, none of 2 (95% CI upper bound 84.2%).")
    assert "NaN" in sentences[2]  # an undefined mean is shown as such, never as 0
    none, level = extract.verdict({**EXTRACT_RESULTS, "exact_match_rate": 0.0, "exact_match_rate_ci": [0, 0.7076],
                                   "by_duplication": {}}, EXTRACT_PROVENANCE)
    assert level == "weak" and "for none of 3 documents (95% CI upper bound 70.8%)" in none[0]
    empty, level = extract.verdict({}, {})
    assert level == "warning" and empty == ["No document could be tested: 0 documents, 0 of them error rows."]


def test_extract_cases_rank_by_longest_run_and_mark_both_sides():
    cases = extract.cases(_extract_samples(), min_chars=6)
    assert [c["id"] for c in cases] == [HOSTILE_ID, "b", "c"]  # the error row is not a case; None ranks last
    b = _extract_samples()[1]
    assert _marked(cases[1]["reference"]) == _brute_marked(b["target"], b["generated"], 6)
    assert _marked(cases[1]["output"]) == _brute_marked(b["generated"], b["target"], 6)
    assert cases[2]["output"] == [] and cases[2]["reference"] == [("x", False)]


def test_extract_page_escapes_hostile_text_and_shows_error_rows(make_run):
    html = _render(make_run("extract", EXTRACT_RESULTS, _extract_samples(), provenance=EXTRACT_PROVENANCE))
    _assert_escaped(html)
    assert f"<mark>{PAYLOAD_ESCAPED}</mark>" in html  # the whole reproduced text marked, as text
    assert "1 of 4 documents is an error row" in html and "Rows with errors" in html
    assert "none of 2 (95% CI upper bound 84.2%)" in html and "0 of 2 (0.0%, 95% CI 0.0%-84.2%)" in html
    assert "fewer than prefix + suffix = 64" in html  # the error's text travels with its row


# ---------------------------------------------------------------- copying

def test_copying_rows_carry_both_texts_and_the_duplication_level(tmp_path):
    outs = [Record(id="a", text="The Silent Harbor was written in 1921 by Ada Wickham.", source="o", line=1),
            Record(id="b", text="Nothing alike.", source="o", line=2, meta={"duplication": 4}),
            Record(id="c", text="", source="o", line=3, error="text has 9 tokens")]
    refs = [Record(id="a", text="The Silent Harbor was written in 1921 by Ada Wickham of Norvale.", source="r", line=1,
                   meta={"duplication": 32}),
            Record(id="b", text="The Silent Harbor.", source="r", line=2),
            Record(id="c", text="x", source="r", line=3)]
    results, rows = run_copying(outs, refs)
    assert rows[0]["output"] == outs[0].text and rows[0]["reference"] == refs[0].text
    assert rows[0]["duplication"] == 32 and rows[1]["duplication"] == 4  # the reference's level, else the output's
    assert set(rows[2]) == {"id", "error"}  # an upstream error row stays as it was
    assert list(results["by_duplication"]) == ["4", "32"]
    assert results["by_duplication"]["32"]["literal_copy_rate"] == 1.0 and results["by_duplication"]["4"]["n"] == 1
    # The folder alone renders: the data files may not travel with the report.
    folder = tmp_path / "run"
    copying_to_dir(outs, refs, folder, config=CopyingConfig(span_min_chars=10))
    html = _render(folder)
    assert "<mark>The Silent Harbor was written in 1921 by Ada Wickham</mark>" in html
    assert "of Norvale." in html and "upstream error (o:3): text has 9 tokens" in html


COPYING_RESULTS = {
    "n_pairs": 2, "n_errors": 1, "definitions": {"literal_copy": "ROUGE-L F1 of the first 50 rouge_score tokens, "
                                                 "Porter-stemmed, >= 0.8 (CopyBench)"},
    "means": {"rouge_l_f1": 0.5, "rouge_l_f1_ci": [0.1, 0.9], "lcs_words": None, "lcs_words_ci": None,
              "lcs_chars": float("nan")},
    "verbmem": 50.0, "literal_copy_rate": 0.0, "literal_copy_rate_ci": [0.0, 0.8419], "n_with_verbatim_spans": 1,
    "by_duplication": {"32": {"n": 2, "literal_copy_rate": 0.0, "literal_copy_rate_ci": [0.0, 0.8419],
                              "rouge_l_f1_mean": 0.5, "rouge_l_f1_mean_ci": [0.1, 0.9], "lcs_words_mean": 3.0}},
}


def _copying_samples(min_chars):
    config = CopyingConfig(span_min_chars=min_chars)
    ref = "once upon a time " + PAYLOAD + " the end"
    out = "we read: " + PAYLOAD + " and more"
    other_ref, other_out = "The Silent Harbor was written in 1921.", "A harbor was written, silent, in 1921."
    return [
        {"id": HOSTILE_ID, "output": out, "reference": ref, "duplication": 32, **copying_metrics(out, ref, config)},
        {"id": "b", "output": other_out, "reference": other_ref, "duplication": 32,
         **copying_metrics(other_out, other_ref, config)},
        {"id": "c", "error": "upstream error (out.jsonl:3): text has 9 tokens"},
    ]


def test_copying_verdict_says_none_with_its_upper_bound():
    sentences, level = copying.verdict(COPYING_RESULTS, {"config": {"span_min_chars": 7}})
    assert level == "info"
    assert sentences[0].startswith("none of 2 outputs (95% CI upper bound 84.2%) are literal copies of their reference")
    assert "1 of 2 outputs (50.0%, 95% CI 1.3%-98.7%) contains a verbatim span of at least 7 characters" in sentences[-1]
    assert copying.verdict({}, {}) == (["No pair could be compared: 0 pairs, 0 of them error rows."], "warning")


def test_copying_cases_mark_the_recorded_output_spans_and_the_reference_spans_at_the_runs_minimum():
    samples = _copying_samples(7)
    cases = copying.cases(samples, min_chars=7)
    assert [c["id"] for c in cases] == [HOSTILE_ID, "b"]
    for case, row in zip(cases, samples):
        assert _marked(case["output"]) == _brute_marked(row["output"], row["reference"], 7)
        assert _marked(case["reference"]) == _brute_marked(row["reference"], row["output"], 7)


def test_copying_page_escapes_hostile_text_and_uses_the_runs_span_minimum(make_run):
    html = _render(make_run("copying", COPYING_RESULTS, _copying_samples(7), provenance={"config": {"span_min_chars": 7}}))
    _assert_escaped(html)
    assert f"<mark> {PAYLOAD_ESCAPED} </mark>" in html  # shared with its surrounding spaces
    assert "at least 7 characters" in html and "1 of 3 pairs is an error row" in html
    assert "0 of 2 (0.0%, 95% CI 0.0%-84.2%)" in html and "text has 9 tokens" in html


def test_copying_page_of_a_run_without_texts_says_so(make_run):
    rows = [{k: v for k, v in r.items() if k not in ("output", "reference")} for r in _copying_samples(7)]
    html = _render(make_run("copying", COPYING_RESULTS, rows))
    assert "do not carry the output and reference texts" in html and "<mark>" not in html


# ---------------------------------------------------------------- knowledge

KNOWLEDGE_RESULTS = {
    "n": 2, "exact_match_rate": 0.5, "exact_match_rate_ci": [0.0126, 0.9874], "rouge_l_f1_mean": None,
    "rouge_l_f1_mean_ci": None, "n_items": 4, "n_errors": 1,
    "excluded": [{"id": "q0", "reason": "drawn as a shot"}], "shots": [{"question": "Q?", "answer": "A"}],
    "by_duplication": {"4": {"n": 2, "exact_match_rate": 0.5, "exact_match_rate_ci": [0.0126, 0.9874],
                             "rouge_l_f1_mean": float("nan"), "rouge_l_f1_mean_ci": None}},
    "by_kind": {"prize": {"n": 1, "exact_match_rate": 0.0, "exact_match_rate_ci": [0.0, 0.975],
                          "rouge_l_f1_mean": 0.0, "rouge_l_f1_mean_ci": [0.0, 0.0]},
                HOSTILE_ID: {"n": 1, "exact_match_rate": 1.0, "exact_match_rate_ci": [0.025, 1.0]}},
    "by_verbatim": {"False": {"n": 2, "exact_match_rate": 0.5, "exact_match_rate_ci": [0.0126, 0.9874]}},
}


def _knowledge_samples():
    return [
        {"id": HOSTILE_ID, "question": PAYLOAD, "answer": "The Crimson Atlas", "kind": HOSTILE_ID, "duplication": 4,
         "verbatim": False, "prediction": "the Crimson Atlas", "exact_match": True, "rouge_l_f1": 1.0},
        {"id": "b", "question": "She won the", "answer": "Fenmere Award", "kind": "prize", "duplication": 4,
         "verbatim": False, "prediction": PAYLOAD, "exact_match": False, "rouge_l_f1": float("nan")},
        {"id": "c", "question": "Too long", "answer": "x", "error": "prompt of 600 tokens + 12 new exceeds the context"},
    ]


def test_knowledge_verdict_and_best_answers():
    sentences, level = knowledge.verdict(KNOWLEDGE_RESULTS)
    assert level == "info"
    assert sentences[0] == ("The model's answer matches the true one exactly (after normalisation) for 1 of 2 "
                            "questions (50.0%, 95% CI 1.3%-98.7%); mean ROUGE-L F1 n/a.")
    assert sentences[1] == "By duplication level: 4×, 1 of 2 questions (50.0%, 95% CI 1.3%-98.7%)."
    assert sentences[2] == "Exact answers by wording: reworded questions, 1 of 2 (50.0%, 95% CI 1.3%-98.7%)."
    assert "1 question was not asked" in sentences[3]
    assert [c["id"] for c in knowledge.cases(_knowledge_samples())] == [HOSTILE_ID, "b"]
    assert knowledge.verdict({})[1] == "warning"


def test_knowledge_page_escapes_hostile_text_and_shows_every_breakdown(make_run):
    html = _render(make_run("knowledge", KNOWLEDGE_RESULTS, _knowledge_samples(),
                            provenance={"config": {"template": "cloze", "n_shots": 1, "max_new_tokens": 12}}))
    _assert_escaped(html)
    for heading in ("By duplication level", "By kind of fact", "By question wording", "Not asked"):
        assert heading in html
    assert "0 of 1 (0.0%, 95% CI 0.0%-97.5%)" in html and "1 of 3 questions asked is an error row" in html
    assert "exceeds the context" in html and "drawn as a shot" in html


# ---------------------------------------------------------------- acr

def _acr_row(i, group, status, acr_value, **kw):
    return {"id": f"t{i}", "target": f"target {i}", "target_tokens": 24, "group": group, "status": status,
            "acr": acr_value, "memorized": None if status == "inconclusive" else status == "memorized",
            "prompt": None if acr_value is None else f"prompt {i}",
            "prompt_tokens": None if acr_value is None else round(24 / acr_value), "steps": 100, "seconds": 1.5, **kw}


ACR_RESULTS = {
    "n": 3, "n_inconclusive": 1, "memorized_rate": 1 / 3, "memorized_rate_ci": [0.0084, 0.9057], "n_success": 2,
    "acr_median": 1.6, "seconds_mean": 1.5, "n_targets": 5, "n_errors": 1, "compute": {"steps": 400, "seconds": 6.0},
    "by_group": {"member": {"n": 3, "n_inconclusive": 1, "memorized_rate": 1 / 3, "memorized_rate_ci": [0.0084, 0.9057],
                            "n_success": 2, "acr_median": 1.6, "seconds_mean": 1.5}},
}
ACR_PROVENANCE = {"config": {"steps": 100, "top_k": 128, "n_candidates": 50, "patience": 25, "max_seconds": 600}}


def _acr_samples():
    return [_acr_row(0, "member", "memorized", 2.4, id=HOSTILE_ID, target=PAYLOAD),
            _acr_row(1, "member", "not_memorized", 0.8),
            _acr_row(2, "member", "not_memorized", None),
            _acr_row(3, "member", "inconclusive", None),
            {"id": "t4", "target": "", "target_tokens": 0, "group": "member", "status": "error",
             "error": "upstream error (targets.jsonl:5): text has 0 tokens"}]


def test_acr_verdict_single_group_says_not_memorized_is_not_proof():
    sentences, level = acr.verdict(ACR_RESULTS, ACR_PROVENANCE)
    assert level == "evidence"
    assert sentences[0] == ("The search found a prompt shorter than its target (ACR > 1: memorized) for 1 of 3 "
                            "targets (33.3%, 95% CI 0.8%-90.6%).")
    assert sentences[1] == "By group: members, 1 of 3 targets (33.3%, 95% CI 0.8%-90.6%)."
    assert "compute-bounded search (100 GCG steps at the first length, top-k 128, 50 candidates per step, " \
           "patience 25, at most 600 s a target) found no prompt shorter than the target: it is not proof that none " \
           "exists." in sentences[2]
    assert acr.inconclusive_warning(ACR_RESULTS, ACR_PROVENANCE) == (
        "1 target was stopped by the 600 s time cap before a verdict: inconclusive, counted in no rate.")
    none, level = acr.verdict({**ACR_RESULTS, "memorized_rate": 0.0, "memorized_rate_ci": [0.0, 0.7076]}, {})
    assert level == "weak" and "for none of 3 targets (95% CI upper bound 70.8%)" in none[0]
    assert acr.verdict({"n": 0, "n_inconclusive": 2, "n_targets": 2}, {})[1] == "warning"


def test_acr_page_escapes_hostile_text_counts_errors_and_draws_both_groups(make_run):
    html = _render(make_run("acr", ACR_RESULTS, _acr_samples(), provenance=ACR_PROVENANCE))
    _assert_escaped(html, in_markup=False)  # targets are listed in the sample browser only
    assert "1 of 5 targets is an error row" in html and "text has 0 tokens" in html
    assert "ACR = 1: memorized above" in html and "members (n = 2)" in html and "non-members (n =" not in html
    both = {**ACR_RESULTS, "by_group": {**ACR_RESULTS["by_group"], "nonmember": {
        "n": 1, "n_inconclusive": 0, "memorized_rate": 0.0, "memorized_rate_ci": [0.0, 0.975], "n_success": 1,
        "acr_median": 1.2, "seconds_mean": 2.0}}}
    rows = _acr_samples() + [_acr_row(5, "nonmember", "memorized", 1.2)]
    html = _render(make_run("acr", both, rows, name="acr-both", provenance=ACR_PROVENANCE))
    assert "members (n = 2)" in html and "non-members (n = 1)" in html
    assert "non-members, none of 1 (95% CI upper bound 97.5%)" in html


# ---------------------------------------------------------------- every kind, empty

@pytest.mark.parametrize("kind", ["extract", "copying", "knowledge", "acr"])
def test_an_empty_run_of_every_kind_renders(make_run, kind):
    html = _render(make_run(kind, {}, []))
    assert 'class="verdict level-warning"' in html and "Rows with errors" not in html


def test_nan_everywhere_renders(make_run):
    nan = float("nan")
    results = {"n": 1, "exact_match_rate": nan, "exact_match_rate_ci": [nan, nan], "n_documents": 1, "n_errors": 0,
               "by_duplication": {"1": {"n": 1, "exact_match_rate": None}}}
    row = {"id": "a", "duplication": 1, "exact_match": None, "token_match": nan, "longest_match_tokens": nan,
           "generated": "abc", "target": "abc"}
    html = _render(make_run("extract", results, [row]))
    assert "n/a of 1 (n/a)" in html and "NaN" in html
