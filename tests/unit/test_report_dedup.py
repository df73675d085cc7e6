"""The report section of `lmaudit dedup` (kind ``dedup``)."""

from lmaudit.report.load import load_runs
from lmaudit.report.page import render_report
from lmaudit.report.sections import dedup

PAYLOAD = "<script>window.__pwned=1</script>"

RESULTS = {"threshold": 0.8, "shingling": {"size": 5, "definition": "word 5-grams"}, "n_documents": 10, "n_empty": 1,
           "n_with_shingles": 9, "n_short": 0, "n_exact_copies": 1, "n_clusters": 1, "n_in_clusters": 3,
           "in_clusters_rate": 3 / 9, "largest_cluster": 3, "n_candidates": 4,
           "n_verified": 2, "n_rejected": 2,
           "lsh": {"num_perm": 128, "bands": 18, "rows": 7, "p_candidate_at_threshold": 0.986,
                   "s_curve": {"0.50": 0.13, "0.80": 0.986}, "formula": "P = 1 - (1 - s^rows)^bands"}}


def test_verdict_gives_counts_with_n_and_intervals_and_the_lsh_recall():
    sentences, level = dedup.verdict(RESULTS)
    text = " ".join(sentences)
    assert level == "info"
    # A count of this corpus, with no interval (review B finding 2).
    assert "3 of 9 documents (33.3%) are in 1 cluster of near-duplicates" in text and "no interval" in text
    assert "95% CI 7.5%" not in dedup.verdict({**RESULTS, "in_clusters_rate_ci": [0.075, 0.70]})[0][0]
    assert "proposed 4 candidate pairs; exact verification rejected 2" in text and "probability 0.986" in text
    assert "1 of 10 documents have no word" in text
    q = {**RESULTS, "queries": {"n_queries": 5, "n_errors": 1, "n_with_copies": 0, "with_copies_rate_ci": [0, 0.6],
                                "max_count": 0, "mean_count": 0.0, "count_field": "duplication"}}
    assert "none of 4 query documents (95% CI upper bound 60.0%)" in " ".join(dedup.verdict(q)[0])


def test_page_escapes_hostile_text_and_lists_clusters_and_query_errors(make_run):
    results = {**RESULTS, "queries": {"n_queries": 2, "n_errors": 1, "n_with_copies": 1, "with_copies_rate": 1.0,
                                      "with_copies_rate_ci": [0.025, 1.0], "by_count": {"3": 1}, "max_count": 3,
                                      "mean_count": 3.0, "count_field": "duplication"}}
    rows = [{"id": "q1", "near_copies": 3, "ids": ["a", "b", "c"], "jaccards": [1, 1, 0.9], "n_candidates": 2,
             "n_rejected": 0, "text": PAYLOAD}, {"id": "q2", "error": "q.jsonl:2: the text has no word"}]
    folder = make_run("dedup", results, rows)
    (folder / "clusters.jsonl").write_text('{"id": "cluster-1", "size": 3, "ids": ["a", "b", "c"], '
                                           '"min_jaccard": 0.9, "max_jaccard": 1.0, "text": "<b>x</b>"}\n')
    html = render_report(load_runs([folder]))
    assert PAYLOAD not in html and "<b>x</b>" not in html
    assert "cluster-1" in html and "Rows with errors" in html and 'href="#guide-dedup"' in html


def test_an_empty_run_renders_with_a_warning(make_run):
    html = render_report(load_runs([make_run("dedup", {}, [])]))
    assert 'class="verdict level-warning"' in html and "No document was read." in html


def test_the_lsh_warning_is_shown_and_the_share_has_no_interval(make_run):
    warning = "LSH: a pair at Jaccard 0.8 becomes a candidate with probability 0.800 only"
    html = render_report(load_runs([make_run("dedup", {**RESULTS, "warnings": [warning]}, [])]))
    text = " ".join(html.split())
    assert warning in text and "3 of 9 (33.3%; a count of this corpus, no interval)" in text
