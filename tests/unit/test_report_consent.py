"""The consent report section: verdict sentences with n and intervals (agents with the same figure
named together), warnings for unknown sites and documents, and a page that renders the sites x
agents table in words, the shares, TDMRep and the ignored lines from a real run's folder."""

import re

from lmaudit.corpus.consent import AI_AGENTS, FIXTURE
from lmaudit.corpus.consent_run import consent_to_dir
from lmaudit.data import read_records
from lmaudit.report.load import load_runs
from lmaudit.report.page import render_report
from lmaudit.report.sections.consent import verdict


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(svg|script|style).*?</\1>", "", html, flags=re.S)))


def _share(k, n, ci):
    return {"k": k, "n": n, "rate": k / n if n else None, "ci": ci}


def _results(corpus=True):
    sites = {a: {"n": 4, "n_known": 3, "counts": {"all": 3 - k, "some": 0, "none": k, "unknown": 1},
                 "all": _share(3 - k, 3, [0.0, 1.0]), "some": _share(0, 3, [0.0, 0.708]),
                 "none": _share(k, 3, [0.0, 1.0]), "restricted": _share(k, 3, ci), "unknown": _share(1, 4, [0.006, 0.806])}
             for a, k, ci in (("GPTBot", 2, [0.094, 0.992]), ("CCBot", 0, [0.0, 0.708]), ("ClaudeBot", 2, [0.094, 0.992]))}
    r = {"as_of": "2024-06-01", "agents": ["GPTBot", "CCBot", "ClaudeBot"], "n_sites": 4, "sites": sites,
         "malformed": {"lines": 2, "sites": 1, "by_site": {"a.test": 2}},
         "repaired": {"lines": 1, "sites": 1, "by_site": {"a.test": 1}, "not_utf8_lines": 1},
         "tdmrep": {"sites_with_file": 1, "sites_reserving": 1, "by_site": {}}}
    if corpus:
        agent = {"restricted": {"documents": _share(5, 8, [0.245, 0.915]), "tokens": {"k": 500, "n": 1000, "rate": 0.5}}}
        r["corpus"] = {"documents": 10, "tokens": 1100, "token_unit": "whitespace-separated words",
                       "agents": {"GPTBot": agent, "CCBot": {"restricted": {"documents": _share(0, 8, [0.0, 0.369]),
                                                                             "tokens": {"k": 0, "n": 1000, "rate": 0.0}}},
                                  "ClaudeBot": agent},
                       "no_url": {"documents": 1, "tokens": 40},
                       "tdmrep": {"documents": {"reserved": 2, "not_reserved": 1, "unset": 5, "unknown": 2},
                                  "reserved": {"documents": _share(2, 8, [0.032, 0.651]),
                                               "tokens": {"k": 100, "n": 1000, "rate": 0.1}}}}
    return r


def test_verdict_names_each_agent_with_n_and_intervals_and_warns_about_unknowns():
    sentences, level, warnings = verdict(_results())
    text = " ".join(sentences)
    assert level == "info"
    assert ("As of 2024-06-01, of the 3 sites with a robots.txt snapshot, those restricting each AI crawler (on some "
            "or all of their paths): GPTBot and ClaudeBot: 2 of 3 (66.7%, 95% CI 9.4%-99.2%); CCBot: none of 3 "
            "(95% CI upper bound 70.8%).") in text
    assert "GPTBot and ClaudeBot: 50.0% of tokens, 5 of 8 documents (62.5%, 95% CI 24.5%-91.5%)" in text
    assert "Token shares have no interval" not in text and "site-cluster bootstrap" in text
    assert "TDMRep: 2 of 8 documents (25.0%, 95% CI 3.2%-65.1%)" in text
    assert "2 robots.txt lines in 1 site are malformed and ignored" in text and "(1 not UTF-8)" in text
    assert any("1 of 4 sites has no snapshot" in w for w in warnings)
    assert any("2 of 10 documents are unknown (1 without a URL with a host)" in w for w in warnings)
    sentences, _, _ = verdict(_results(corpus=False))
    assert not any("corpus" in s for s in sentences)
    assert verdict({"agents": [], "n_sites": 0})[1] == "warning"


def test_section_renders_a_real_run(tmp_path):
    out = tmp_path / "consent"
    consent_to_dir(FIXTURE / "robots", AI_AGENTS, out, as_of="2024-06-01",
                   records=read_records(FIXTURE / "corpus.jsonl"), command="lmaudit consent (test)")
    html = render_report(load_runs([out]))
    text = _text(html)
    assert "Consent: robots.txt and TDMRep" in text and 'href="#guide-consent"' in html
    assert 'id="guide-consent"' in html  # the guide paragraph travels with the page
    # The sites x agents table, in words: news.example's row (GPTBot none, CCBot none, the rest some).
    row = re.search(r"news\.example 2024-03-01 ok 5 ((?:\w+ ){11})", text).group(1).split()
    assert row == ["none", "some", "none"] + ["some"] * 8
    assert re.search(r"nosnap\.example none no snapshot 3 (unknown ){11}", text)
    assert "GPTBot 8 of 10 (80.0%, 95% CI 44.4%-97.5%)" in text  # the site shares table
    assert "2,117 of 2,478 (85.4%, 95% CI" in text  # GPTBot's token share, with its counts and interval
    assert "site-cluster bootstrap (1,000 replicates)" in text
    assert "/articles/" in text and "1 (reserved)" in text  # TDMRep rules
    assert "messy.test" in text and "this line is not a rule" in text and "not UTF-8" in text
    assert "Documents, most tokens first" in text
