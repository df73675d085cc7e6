"""The shipped consent fixture (lmaudit/corpus/fixtures/consent): every verdict, URL decision and
weighted total equals a value derived by hand from the files (the reasoning is beside each).

The fixture is what `lmaudit demo` audits and what `lmaudit consent --help` runs on; if a file
in it changes, these tables must be derived again by reading the file, not by running the code.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from scipy import stats as st

from lmaudit.corpus.consent import AI_AGENTS, FIXTURE, copy_consent_fixture, load_site, verdicts
from lmaudit.corpus.consent_run import run_consent
from lmaudit.corpus.robots import ALL, NONE, SOME, UNKNOWN
from lmaudit.data import read_records

ROBOTS = FIXTURE / "robots"

# Verdicts as of 2024-06-01: a host's default for every agent, then its exceptions.
EXPECTED = {
    # 2024-03-01.txt: GPTBot and CCBot "Disallow: /"; "*" (everyone else): "Disallow: /admin/".
    "news.example": (SOME, {"GPTBot": NONE, "CCBot": NONE}),
    # GPTBot: /private/ and /drafts/ only; "*": Allow: / (nothing disallowed).
    "blog.example": (ALL, {"GPTBot": SOME}),
    # No AI agent is named: all inherit "*" (/*.pdf$ and /cart*); Googlebot's group is not Google-Extended's.
    "shop.test": (SOME, {}),
    # GPTBot, ClaudeBot, anthropic-ai: one group (a Crawl-delay between its user-agent lines), Disallow: /.
    "multi.example": (ALL, {"GPTBot": NONE, "ClaudeBot": NONE, "anthropic-ai": NONE}),
    # CCBot's two groups combine to /a/ + /b/; everyone else takes "*": Disallow: /.
    "split.test": (NONE, {"CCBot": SOME}),
    # GPTBot: Disallow: / vs Allow: / (tie: allow); ClaudeBot: only / and /docs/ allowed; "*": /docs tie -> allow.
    "ties.example": (ALL, {"ClaudeBot": SOME}),
    "gone.example": (ALL, {}),  # 404: no restriction
    "down.test": (NONE, {}),  # 503: complete disallow
    "offline.example": (NONE, {}),  # unreachable: complete disallow
    # "*": /tmp/ and (misspelt) /old/; "GPTBot/1.0" read as GPTBot: Disallow: /.
    "messy.test": (SOME, {"GPTBot": NONE}),
    "nosnap.example": (UNKNOWN, {}),  # in the corpus, no snapshot folder
}


def _expected(host: str, agent: str) -> str:
    default, exceptions = EXPECTED[host]
    return exceptions.get(agent, default)


def test_every_site_and_agent_as_of_2024_06_01():
    got = verdicts(ROBOTS, AI_AGENTS, as_of="2024-06-01", hosts=["nosnap.example"])
    assert set(got) == set(EXPECTED)
    for host in EXPECTED:
        assert got[host] == {a: _expected(host, a) for a in AI_AGENTS}, host


def test_as_of_matters_for_the_site_that_changed():
    # news.example allowed everything on 2023-01-01; every other site's first snapshot is in 2024.
    early = verdicts(ROBOTS, ["GPTBot", "CCBot"], as_of="2023-06-01")
    assert early["news.example"] == {"GPTBot": ALL, "CCBot": ALL}
    assert all(v == {"GPTBot": UNKNOWN, "CCBot": UNKNOWN} for h, v in early.items() if h != "news.example")
    assert all(v == {"GPTBot": UNKNOWN, "CCBot": UNKNOWN} for v in verdicts(ROBOTS, ["GPTBot", "CCBot"],
                                                                                as_of="2022-12-31").values())
    assert verdicts(ROBOTS, ["GPTBot"])["news.example"] == {"GPTBot": NONE}  # latest snapshots


def test_malformed_and_repaired_lines_of_the_messy_site():
    site = load_site(ROBOTS, "messy.test")
    # Lines 5, 6, 7 of the file: no key-value shape, an unknown record, a path without "/".
    assert [n.line for n in site.robots.malformed] == [5, 6, 7]
    # Line 4 "Dissallow", line 9 "GPTBot/1.0", line 11 a Latin-1 byte (0xE9) in the path.
    assert [n.line for n in site.robots.repaired] == [4, 9, 11]
    assert site.robots.repaired[2].reason.startswith("not UTF-8: 1 byte")
    for name in ("news.example", "blog.example", "shop.test", "multi.example", "split.test", "ties.example"):
        r = load_site(ROBOTS, name).robots
        assert r.malformed == () and r.repaired == (), name


# Per document, whether GPTBot / CCBot may fetch its own URL (None: no snapshot), by reading the rules.
URL_DECISIONS = {
    "https://news.example/articles/1": (False, False), "https://news.example/articles/2": (False, False),
    "https://news.example/articles/3": (False, False), "https://news.example/admin/login": (False, False),
    "https://news.example/about": (False, False),
    "https://blog.example/posts/a": (True, True), "https://blog.example/posts/b": (True, True),
    "https://blog.example/private/notes": (False, True), "https://blog.example/drafts/d1": (False, True),
    "https://shop.test/products/1": (True, True), "https://shop.test/manual.pdf": (False, False),
    "https://shop.test/cart/view": (False, False),
    "https://shop.test/manual.pdf?dl=1": (True, True),  # "$" anchors: the query makes it not end in .pdf
    **{f"https://multi.example/{x}": (False, True) for x in "abcd"},
    "https://split.test/a/1": (False, False), "https://split.test/b/2": (False, False),
    "https://split.test/c/3": (False, True), "https://split.test/": (False, True),
    "https://ties.example/": (True, True), "https://ties.example/docs/intro": (True, True),
    "https://ties.example/other": (True, True),
    **{f"https://gone.example/{x}": (True, True) for x in "xyz"},
    **{f"https://down.test/{x}": (False, False) for x in "xyz"},
    **{f"https://offline.example/{x}": (False, False) for x in "xyz"},
    "https://messy.test/tmp/x": (False, False), "https://messy.test/old/y": (False, False),
    "https://messy.test/ok": (False, True), "https://messy.test/caf%C3%A9/menu": (False, True),
    **{f"https://nosnap.example/{x}": (None, None) for x in "abc"},
}

# Documents and words per host, counted by hand when the corpus was written.
PER_HOST = {"news.example": (5, 287), "blog.example": (4, 435), "shop.test": (4, 650), "multi.example": (4, 210),
            "split.test": (4, 200), "ties.example": (3, 163), "gone.example": (3, 198), "down.test": (3, 67),
            "offline.example": (3, 75), "messy.test": (4, 193), "nosnap.example": (3, 101)}


def test_corpus_counts_per_host_match_the_hand_table():
    rows = [json.loads(x) for x in (FIXTURE / "corpus.jsonl").read_text().splitlines()]
    counted: dict = {}
    for r in rows:
        n, w = counted.get(urlsplit(r["url"]).hostname, (0, 0))
        counted[urlsplit(r["url"]).hostname] = (n + 1, w + len(r["text"].split()))
    assert counted == PER_HOST and len(rows) == 40 and {r["url"] for r in rows} == set(URL_DECISIONS)
    assert any(r["text"] == "" for r in rows)  # an empty document, counted with 0 tokens


def test_weighted_totals_equal_a_hand_count():
    records = read_records(FIXTURE / "corpus.jsonl")
    result = run_consent(ROBOTS, AI_AGENTS, as_of="2024-06-01", records=records)
    corpus = result.results["corpus"]
    assert corpus["documents"] == 40 and corpus["tokens"] == 2579
    g, c = corpus["agents"]["GPTBot"], corpus["agents"]["CCBot"]
    # GPTBot: all = ties + gone; some = blog + shop; none = news, multi, split, down, offline, messy.
    assert g["documents"] == {ALL: 6, SOME: 8, NONE: 23, UNKNOWN: 3}
    assert g["tokens"] == {ALL: 163 + 198, SOME: 435 + 650, NONE: 287 + 210 + 200 + 67 + 75 + 193, UNKNOWN: 101}
    # CCBot: all = blog, multi, ties, gone; some = shop, split, messy; none = news, down, offline.
    assert c["documents"] == {ALL: 14, SOME: 12, NONE: 11, UNKNOWN: 3}
    assert c["tokens"] == {ALL: 435 + 210 + 163 + 198, SOME: 650 + 200 + 193, NONE: 287 + 67 + 75, UNKNOWN: 101}
    assert {k: g["restricted"]["tokens"][k] for k in ("k", "n", "rate")} == {"k": 2117, "n": 2478,
                                                                            "rate": pytest.approx(2117 / 2478)}
    assert c["restricted"]["tokens"]["rate"] == pytest.approx((1043 + 429) / 2478)
    assert g["restricted"]["documents"]["k"] == 31 and g["restricted"]["documents"]["n"] == 37
    # Site-cluster bootstrap over the 10 sites with a snapshot: wider than a binomial interval over
    # 37 documents, since the documents of a site are one draw; it holds the share.
    cp = st.binomtest(31, 37).proportion_ci(confidence_level=0.95, method="exact")
    lo, hi = g["restricted"]["documents"]["ci"]
    assert g["restricted"]["documents"]["n_sites"] == 10 and lo <= 31 / 37 <= hi and hi - lo > cp.high - cp.low
    assert g["restricted"]["documents"]["interval"] == g["restricted"]["tokens"]["interval"] == "site-cluster bootstrap"
    # Own-URL decisions: the hand table, and their totals.
    docs = result.results["_documents"]
    for d in docs:
        assert (d["allowed"]["GPTBot"], d["allowed"]["CCBot"]) == URL_DECISIONS[d["url"]], d["url"]
    # GPTBot allowed: blog 2 + shop 2 + ties 3 + gone 3; CCBot: blog 4 + shop 2 + multi 4 + split 2 + ties 3
    # + gone 3 + messy 2.
    assert g["url_documents"] == {"allowed": 10, "disallowed": 27, "unknown": 3}
    assert c["url_documents"] == {"allowed": 20, "disallowed": 17, "unknown": 3}
    # TDMRep: news.example reserves /articles/ (3 documents) and declares the rest not reserved (2).
    # No other site has a TDMRep record. Those whose robots.txt snapshot was answered (blog 4, shop 4,
    # multi 4, split 4, ties 3, messy 4, and gone.example's 404: 3) declare none: 26 unset. down.test
    # (503) and offline.example (unreachable) were never reached, so their 6 documents are unknown,
    # with nosnap.example's 3 (no snapshot at all).
    assert corpus["tdmrep"]["documents"] == {"reserved": 3, "not_reserved": 2, "unset": 26, "unknown": 9}
    assert corpus["tdmrep"]["tokens"]["unknown"] == 67 + 75 + 101
    assert corpus["tdmrep"]["tokens"]["reserved"] == 120 + 80 + 45
    assert corpus["no_url"] == {"documents": 0, "tokens": 0}


def test_site_shares_and_line_counts():
    result = run_consent(ROBOTS, ["GPTBot", "CCBot"], as_of="2024-06-01", hosts=["nosnap.example"])
    r = result.results
    assert r["n_sites"] == 11 and r["availability"] == {"ok": 7, "unavailable": 1, "unreachable": 2,
                                                         "no snapshot": 1}
    g = r["sites"]["GPTBot"]
    assert g["counts"] == {ALL: 2, SOME: 2, NONE: 6, UNKNOWN: 1}
    assert r["sites"]["CCBot"]["counts"] == {ALL: 4, SOME: 3, NONE: 3, UNKNOWN: 1}
    cp = st.binomtest(8, 10).proportion_ci(confidence_level=0.95, method="exact")
    assert g["restricted"]["k"] == 8 and g["restricted"]["ci"] == pytest.approx([cp.low, cp.high])
    assert g["unknown"]["n"] == 11 and g["none"]["n"] == 10
    assert r["malformed"] == {"lines": 3, "sites": 1, "by_site": {"messy.test": 3}}
    assert r["repaired"]["lines"] == 3 and r["repaired"]["not_utf8_lines"] == 1
    assert r["tdmrep"]["sites_with_file"] == 1 and r["tdmrep"]["sites_reserving"] == 1
    # Unknown TDMRep: down.test (503), offline.example (unreachable), nosnap.example (no snapshot).
    assert r["tdmrep"]["sites_unknown"] == 3 and r["tdmrep"]["sites_declaring_none"] == 7
    messy = next(s for s in result.samples if s["host"] == "messy.test")
    assert [(m["line"], m["file"].endswith("messy.test/2024-02-01.txt")) for m in messy["malformed"]] == [
        (5, True), (6, True), (7, True)]
    # Provenance: every file read, hashed; news.example's robots and tdmrep of 2024-03-01.
    snaps = {(s["host"], s["role"]): s for s in result.provenance["snapshots"]}
    assert snaps[("news.example", "robots.txt")]["date"] == "2024-03-01"
    assert snaps[("news.example", "tdmrep.json")]["path"].endswith("2024-03-01.tdmrep.json")
    assert snaps[("gone.example", "robots status")]["date"] == "2024-01-01"
    assert len(snaps[("blog.example", "robots.txt")]["sha256"]) == 64 and ("nosnap.example", "robots.txt") not in snaps


def test_copy_consent_fixture(tmp_path):
    dest = copy_consent_fixture(tmp_path / "consent")
    assert (dest / "corpus.jsonl").read_bytes() == (FIXTURE / "corpus.jsonl").read_bytes()
    assert verdicts(dest / "robots", ["GPTBot"], as_of="2024-06-01") == verdicts(ROBOTS, ["GPTBot"], as_of="2024-06-01")
    with pytest.raises(FileExistsError):
        copy_consent_fixture(dest)
