"""Tests for the consent audit (lmaudit.corpus.robots, .tdmrep, .consent).

Expectations come from outside the code under test: the examples of RFC 9309 and of Google's
robots.txt documentation (written out by hand below), protego (a maintained parser) on the
same files, a brute-force enumeration of short paths, and totals computed by hand.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random

import numpy as np
import pytest
from protego import Protego

from lmaudit.corpus.consent import corpus_consent, host_of, load_site, load_sites, verdicts
from lmaudit.corpus.robots import (
    ALL,
    NONE,
    SOME,
    UNKNOWN,
    RobotsTxt,
    availability,
    canonical,
    classify,
    decide,
    matches,
    url_path,
    _search,
)
from lmaudit.corpus.tdmrep import parse_tdmrep, read_tdmrep
from lmaudit.data import Record

U = "https://example.com"


def _pattern(value: str) -> str:
    anchored = value.endswith("$")
    return canonical(value[:-1] if anchored else value, pattern=True) + ("$" if anchored else "")


# --- path matching: Google's documented examples (developers.google.com, "URL matching based on path values")

PATTERN_CASES = [
    ("/", ["/", "/a", "/fish/x.html"], []),
    ("/*", ["/", "/a", "/fish/x.html"], []),
    ("/$", ["/"], ["/a", "/index.html"]),
    ("/fish", ["/fish", "/fish.html", "/fish/salmon.html", "/fishheads", "/fishheads/yummy.html",
               "/fish.php?id=anything"], ["/Fish.asp", "/catfish", "/?id=fish", "/desert/fish"]),
    ("/fish*", ["/fish", "/fish.html", "/fish/salmon.html", "/fishheads", "/fishheads/yummy.html",
                "/fish.php?id=anything"], ["/Fish.asp", "/catfish", "/?id=fish", "/desert/fish"]),
    ("/fish/", ["/fish/", "/fish/?id=anything", "/fish/salmon.htm"],
     ["/fish", "/fish.html", "/animals/fish/", "/Fish/Salmon.asp"]),
    ("/*.php", ["/index.php", "/filename.php", "/folder/filename.php", "/folder/filename.php?parameters",
                "/folder/any.php.file.html", "/filename.php/"], ["/", "/windows.PHP"]),
    ("/*.php$", ["/filename.php", "/folder/filename.php"],
     ["/filename.php?parameters", "/filename.php/", "/filename.php5", "/windows.PHP"]),
    ("/fish*.php", ["/fish.php", "/fishheads/catfish.php?parameters"], ["/Fish.PHP"]),
    ("/*/fish", ["/desert/fish", "/a/b/fish/x", "//fish"], ["/fish", "/fis", "/desert/Fish"]),
    # RFC 9309 section 5.1: "*" designates any character, including "/"; the pattern need not start with "/".
    ("*.gif$", ["/a.gif", "/x/y/z.gif"], ["/a.gif/", "/a.gifs", "/a.GIF"]),
]


@pytest.mark.parametrize("value,hits,misses", PATTERN_CASES)
def test_pattern_examples_match_and_protego_agrees(value, hits, misses):
    robots = RobotsTxt.parse(f"User-agent: *\nDisallow: {value}\n")
    raw = Protego.parse(f"User-agent: *\nDisallow: {value}\n")
    for path, expected in [(p, True) for p in hits] + [(p, False) for p in misses]:
        assert matches(_pattern(value), url_path(U + path)) is expected, (value, path)
        assert robots.can_fetch(U + path, "AnyBot") is (not expected), (value, path)
        assert raw.can_fetch(U + path, "AnyBot") is (not expected), (value, path)


# --- precedence: Google's documented examples, and RFC 9309 section 5.2 ("Longest Match")

PRECEDENCE_CASES = [
    ("Allow: /p\nDisallow: /", "/page", True),
    ("Allow: /folder\nDisallow: /folder", "/folder/page", True),  # equal length: allow wins
    ("Disallow: /folder\nAllow: /folder", "/folder/page", True),  # order does not matter
    ("Allow: /page\nDisallow: /*.htm", "/page.htm", False),  # 6 octets beat 5
    ("Allow: /page\nDisallow: /*.ph", "/page.php", True),  # 5 and 5: allow wins
    ("Allow: /$\nDisallow: /", "/", True),
    ("Allow: /$\nDisallow: /", "/page.htm", False),
    ("Allow: /example/page/\nDisallow: /example/page/disallowed.gif", "/example/page/disallowed.gif", False),
    ("Allow: /example/page/\nDisallow: /example/page/disallowed.gif", "/example/page/other.gif", True),
    ("Disallow: /", "/robots.txt", True),  # implicitly allowed
]


@pytest.mark.parametrize("rules,path,allowed", PRECEDENCE_CASES)
def test_longest_match_and_allow_on_ties(rules, path, allowed):
    text = f"User-agent: FooBot\n{rules}\n"
    robots = RobotsTxt.parse(text)
    assert robots.can_fetch(U + path, "FooBot") is allowed
    assert decide(robots.effective_rules("FooBot").rules, url_path(U + path)) is allowed
    assert Protego.parse(text).can_fetch(U + path, "FooBot") is allowed


# --- groups: RFC 9309 section 5.1's example file, and section 2.2.1's tables

RFC_EXAMPLE = """User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot
"""


def test_rfc_simple_example():
    r = RobotsTxt.parse(RFC_EXAMPLE)
    assert r.malformed == () and r.repaired == ()
    expect = {  # (agent, path): allowed, as the RFC's prose describes each group
        ("OtherBot", "/x.gif"): False, ("OtherBot", "/example/a"): False, ("OtherBot", "/publications/a"): True,
        ("OtherBot", "/publications/a.gif"): True,  # "/publications/" (14 octets) beats "*.gif$" (6)
        ("OtherBot", "/a.html"): True,
        ("foobot", "/a"): False, ("foobot", "/example/page.html"): True, ("foobot", "/example/allowed.gif"): True,
        ("foobot", "/example/other.gif"): False,
        ("barbot", "/example/page.html"): False, ("bazbot", "/example/page.html"): False,
        ("barbot", "/x.gif"): True,  # its own group, not "*": .gif files are allowed
        ("quxbot", "/example/a"): True, ("quxbot", "/x.gif"): True,  # empty last group: unrestricted
    }
    raw = Protego.parse(RFC_EXAMPLE)
    for (agent, path), allowed in expect.items():
        assert r.can_fetch(U + path, agent) is allowed, (agent, path)
        assert raw.can_fetch(U + path, agent) is allowed, (agent, path)
    assert {a: r.verdict(a) for a in ("OtherBot", "foobot", "barbot", "bazbot", "quxbot")} == {
        "OtherBot": SOME, "foobot": SOME, "barbot": SOME, "bazbot": SOME, "quxbot": ALL}
    assert r.effective_rules("quxbot").source == "agent"
    assert r.effective_rules("OtherBot").source == "*"
    assert r.effective_rules("barbot").group_lines == (11,)


def test_groups_for_one_agent_merge_case_insensitively():
    text = "user-agent: ExampleBot\ndisallow: /foo\ndisallow: /bar\n\nuser-agent: *\ndisallow: /star\n\n" \
           "USER-AGENT: examplebot\ndisallow: /baz\n"
    r = RobotsTxt.parse(text)
    for agent in ("ExampleBot", "examplebot", "EXAMPLEBOT"):
        eff = r.effective_rules(agent)
        assert [x.value for x in eff.rules] == ["/foo", "/bar", "/baz"] and eff.group_lines == (1, 8)
        assert [r.can_fetch(U + p, agent) for p in ("/foo", "/bar", "/baz", "/star", "/ok")] == [
            False, False, False, True, True]  # the "*" group does not add to a named agent's rules


def test_unknown_agent_inherits_star_and_no_group_is_unrestricted():
    star = RobotsTxt.parse("user-agent: *\ndisallow: /foo\ndisallow: /bar\n\nuser-agent: BazBot\ndisallow: /baz\n")
    assert star.effective_rules("ExampleBot").source == "*"
    assert [star.can_fetch(U + p, "ExampleBot") for p in ("/foo", "/bar", "/baz")] == [False, False, True]
    only_baz = RobotsTxt.parse("user-agent: BazBot\ndisallow: /\n")
    assert only_baz.effective_rules("ExampleBot").source == "none"
    assert only_baz.verdict("ExampleBot") == ALL and only_baz.verdict("BazBot") == NONE
    for empty in ("", "# only a comment\n", "Sitemap: https://example.com/s.xml\n"):
        assert RobotsTxt.parse(empty).verdict("GPTBot") == ALL
    # A group naming the agent with no rule at all: unrestricted, even though "*" disallows all.
    named = RobotsTxt.parse("User-agent: *\nDisallow: /\n\nUser-agent: GPTBot\n")
    assert named.verdict("GPTBot") == ALL and named.verdict("CCBot") == NONE


def test_consecutive_user_agent_lines_share_rules_and_a_rule_closes_them():
    r = RobotsTxt.parse("User-agent: a\n\n# comment\nUser-agent: b\nDisallow: /x\nUser-agent: c\nDisallow: /y\n")
    assert [g.agents for g in r.groups] == [("a", "b"), ("c",)]
    assert not r.can_fetch(U + "/x", "a") and r.can_fetch(U + "/y", "a") and not r.can_fetch(U + "/y", "c")
    # An empty Disallow is a rule: it closes the user-agent lines and restricts nothing.
    r = RobotsTxt.parse("User-agent: a\nDisallow:\nUser-agent: b\nDisallow: /\n")
    assert r.verdict("a") == ALL and r.verdict("b") == NONE


def test_other_records_do_not_end_a_group():
    # RFC 9309 2.2.4: other records MUST NOT interfere; "a Sitemaps record MUST NOT terminate a group".
    for other in ("Sitemap: https://example.com/s.xml", "Crawl-delay: 5", "Request-rate: 1/5"):
        r = RobotsTxt.parse(f"User-agent: GPTBot\n{other}\nUser-agent: CCBot\nDisallow: /\n")
        assert r.verdict("GPTBot") == NONE and r.verdict("CCBot") == NONE, other
        assert r.malformed == ()


# --- protego's gaps against RFC 9309: pinned, so a protego release that changes them is noticed


def test_protego_gap_agent_substring():
    text = "User-agent: Google\nDisallow: /\n"
    assert Protego.parse(text).can_fetch(U + "/a", "Google-Extended") is False  # protego: "Google" covers it
    r = RobotsTxt.parse(text)
    assert r.can_fetch(U + "/a", "Google-Extended") is True and r.verdict("Google-Extended") == ALL  # RFC: exact
    assert r.verdict("google") == NONE


def test_protego_gap_versioned_user_agent():
    text = "User-agent: GPTBot/1.0\nDisallow: /\n"
    assert Protego.parse(text).can_fetch(U + "/a", "GPTBot") is True
    r = RobotsTxt.parse(text)
    assert r.verdict("GPTBot") == NONE
    assert [(n.line, n.reason) for n in r.repaired] == [(1, "user-agent 'GPTBot/1.0' read as product token 'gptbot'")]


def test_protego_gap_other_record_splits_group():
    text = "User-agent: GPTBot\nCrawl-delay: 5\nUser-agent: CCBot\nDisallow: /\n"
    assert Protego.parse(text).can_fetch(U + "/a", "GPTBot") is True
    assert RobotsTxt.parse(text).can_fetch(U + "/a", "GPTBot") is False


def test_protego_gap_dollar_also_literal_and_index_html():
    # Kept in decisions (documented in robots.py); the RFC decision and the verdict are exact.
    text = "User-agent: *\nDisallow: /*.php$\n"
    r = RobotsTxt.parse(text)
    assert Protego.parse(text).can_fetch(U + "/a.php$x", "x") is False
    assert r.can_fetch(U + "/a.php$x", "x") is False
    assert decide(r.effective_rules("x").rules, url_path(U + "/a.php$x")) is True
    text = "User-agent: *\nDisallow: /\nAllow: /x/index.html\n"
    r = RobotsTxt.parse(text)
    assert r.can_fetch(U + "/x/", "x") is True
    assert decide(r.effective_rules("x").rules, url_path(U + "/x/")) is False


# --- percent-encoding: RFC 9309 section 2.2.2 and 2.2.3 tables


@pytest.mark.parametrize("value,url", [
    ("/foo/bar?baz=quz", "/foo/bar?baz=quz"),
    ("/foo/bar/ツ", "/foo/bar/%E3%83%84"),
    ("/foo/bar/%E3%83%84", "/foo/bar/ツ"),
    ("/foo/bar/%62%61%7A", "/foo/bar/baz"),
    ("/path/file-with-a-%2A.html", "/path/file-with-a-*.html"),
    ("/path/foo-%24", "/path/foo-$"),
])
def test_percent_encoding_examples(value, url):
    assert matches(_pattern(value), url_path(U + url))
    assert RobotsTxt.parse(f"User-agent: *\nDisallow: {value}\n").can_fetch(U + url, "x") is False


def test_escaped_star_and_slash_stay_literal():
    assert not matches(_pattern("/a%2Ab"), url_path(U + "/axxb"))  # %2A is a star character, not a wildcard
    assert not matches(_pattern("/a%2Fb"), url_path(U + "/a/b"))  # %2F is not a path separator


# --- HTTP status of the robots.txt fetch (RFC 9309 2.3.1)


@pytest.mark.parametrize("status,expected,fetch", [
    (200, SOME, False), (404, ALL, True), (403, ALL, True), (301, ALL, True),
    (500, NONE, False), (503, NONE, False), (None, NONE, False)])
def test_status(status, expected, fetch):
    r = RobotsTxt.parse("User-agent: *\nDisallow: /private\n", status=status)
    assert r.verdict("GPTBot") == expected
    assert r.can_fetch(U + "/private", "GPTBot") is fetch
    assert r.can_fetch(U + "/public", "GPTBot") is (status != 500 and status != 503 and status is not None)


def test_status_values():
    assert [availability(s) for s in (200, 204, 302, 404, 429, 500, 599, None)] == [
        "ok", "ok", "unavailable", "unavailable", "unavailable", "unreachable", "unreachable", "unreachable"]
    for bad in (99, 600, "404"):
        with pytest.raises(ValueError, match="HTTP status"):
            availability(bad)


# --- malformed and repaired lines


def test_malformed_lines_are_ignored_and_counted():
    text = "\n".join([
        "Disallow: /before",            # 1: no group yet
        "User-agent: GPTBot",           # 2
        "this line has no key value",   # 3
        "Disallow: /a   # comment",     # 4: fine
        "Foo: bar",                     # 5: unknown record
        "Disallow: nopath",             # 6: pattern must start with / or *
        "Sitemap: https://e.com/s.xml", # 7: a known other record, fine
        "User-agent: *bot",             # 8: not a product token
        "Disallow: /b",                 # 9: rule of a group that names nobody
        "Allow /c",                     # 10: missing colon, repaired
        "Dissallow: /d",                # 11: typo, repaired
        "User agent: CCBot",            # 12: repaired
        "Disallow: /e",                 # 13
    ])
    r = RobotsTxt.parse(text)
    assert [(n.line, n.reason.split(" ")[0]) for n in r.malformed] == [
        (1, "rule"), (3, "no"), (5, "unknown"), (6, "path"), (8, "user-agent")]
    assert [n.line for n in r.repaired] == [10, 11, 12]
    assert [x.value for x in r.effective_rules("GPTBot").rules] == ["/a"]
    # Lines 9-11 belong to the group line 8 opened, which names no agent; line 12 opens CCBot's.
    assert [(g.agents, [(x.allow, x.value) for x in g.rules]) for g in r.groups[1:]] == [
        ((), [(False, "/b"), (True, "/c"), (False, "/d")]), (("ccbot",), [(False, "/e")])]
    assert r.verdict("OtherBot") == ALL  # "*bot" is not "*"
    typo = "User-agent: CCBot\nDissallow: /d\n"  # protego reads the typo the same way
    assert Protego.parse(typo).can_fetch(U + "/d", "CCBot") is RobotsTxt.parse(typo).can_fetch(U + "/d", "CCBot") is False


def test_bom_crlf_and_invalid_agent_query():
    r = RobotsTxt.parse("\ufeffUser-agent: *\r\nDisallow: /x\r\n")
    assert r.verdict("a") == SOME and r.malformed == ()
    for bad in ("*", "GPT Bot", "GPTBot/1.0", ""):
        with pytest.raises(ValueError, match="product token"):
            r.verdict(bad)


# --- all / some / none


@pytest.mark.parametrize("rules,verdict", [
    ("Disallow: /", NONE),
    ("Disallow: /*", NONE),
    ("Disallow: *", NONE),
    ("Disallow:", ALL),
    ("Allow: /", ALL),
    ("Disallow: /\nAllow: /", ALL),  # equal length: allow
    ("Disallow: /a", SOME),
    ("Disallow: /$", SOME),
    ("Disallow: /\nAllow: /$", SOME),
    ("Disallow: /\nAllow: /robots.txt$", NONE),  # /robots.txt is allowed anyway and is not a content path
    ("Disallow: /a$\nAllow: /*a$", ALL),  # every path the disallow matches, a longer allow matches too
    ("Disallow: /\nAllow: /a$\nDisallow: /*a$", NONE),  # the only allowed path is taken back by a longer rule
    ("Disallow: /*a\nDisallow: /\nAllow: /*", SOME),
    ("Disallow: /*.gif$\nAllow: /*.gif$", ALL),
])
def test_classification_cases(rules, verdict):
    r = RobotsTxt.parse(f"User-agent: *\n{rules}\n")
    c = r.classify("AnyBot")
    assert c.verdict == verdict
    for example, allowed in ((c.allowed_example, True), (c.disallowed_example, False)):
        if example is not None:
            assert r.can_fetch(U + example, "AnyBot") is allowed


def _random_rules(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 4)):
        body = "/" + "".join(rng.choice("ab/*") for _ in range(rng.randint(0, 3)))
        if rng.random() < 0.2:
            body = "*" + body[1:]
        if rng.random() < 0.3:
            body += "$"
        lines.append(f"{rng.choice(['Allow', 'Disallow'])}: {body}")
    return "\n".join(lines)


def test_classification_and_decisions_against_brute_force_and_protego():
    rng = random.Random(0)
    paths = ["/" + "".join(t) for n in range(6) for t in itertools.product("ab/c", repeat=n)]
    seen = {ALL: 0, SOME: 0, NONE: 0}
    for _ in range(200):
        text = "User-agent: *\n" + _random_rules(rng) + "\n"
        r = RobotsTxt.parse(text)
        rules = r.effective_rules("x").rules
        raw = Protego.parse(text)
        outcomes = set()
        for p in paths:
            ours = decide(rules, p)
            assert ours is raw.can_fetch(U + p, "x") is r.can_fetch(U + p, "x"), (text, p)
            outcomes.add(ours)
        c, searched = classify(rules), _search(rules, 10_000)  # with and without the shortcuts
        assert c.verdict == searched.verdict, text
        seen[c.verdict] += 1
        if outcomes == {True, False}:
            assert c.verdict == SOME, text
        if c.verdict == ALL:
            assert outcomes == {True}, text
        elif c.verdict == NONE:
            assert outcomes == {False}, text
        for found in (c, searched):
            for example, allowed in ((found.allowed_example, True), (found.disallowed_example, False)):
                if example is not None:
                    assert decide(rules, example) is allowed is raw.can_fetch(U + example, "x"), text
    assert min(seen.values()) >= 10, seen  # the random files exercise all three verdicts


def test_classify_needs_no_rules_and_caps_states():
    assert classify([]).verdict == ALL
    rules = RobotsTxt.parse("User-agent: *\nDisallow: /a$\nAllow: /*a$\n").effective_rules("x").rules
    assert classify(rules).verdict == ALL  # settled only by the search
    with pytest.raises(RuntimeError, match="automaton states"):
        classify(rules, max_states=2)


# --- snapshots


def _site(root, host, files):
    d = root / host
    d.mkdir(parents=True)
    for name, body in files.items():
        (d / name).write_text(body, encoding="utf-8")


def test_snapshot_as_of_dates(tmp_path):
    _site(tmp_path, "a.com", {"2023-01-01.txt": "User-agent: *\nDisallow:\n",
                              "2024-01-01.txt": "User-agent: GPTBot\nDisallow: /\n",
                              "2024-06-01.status": "503\n"})
    _site(tmp_path, "b.com", {"2024-01-01.status": "404"})
    agents = ["GPTBot", "CCBot"]
    assert verdicts(tmp_path, agents, as_of="2022-12-31", hosts=["c.com"]) == {
        "a.com": {"GPTBot": UNKNOWN, "CCBot": UNKNOWN}, "b.com": {"GPTBot": UNKNOWN, "CCBot": UNKNOWN},
        "c.com": {"GPTBot": UNKNOWN, "CCBot": UNKNOWN}}
    assert verdicts(tmp_path, agents, as_of=dt.date(2023, 12, 31))["a.com"] == {"GPTBot": ALL, "CCBot": ALL}
    assert verdicts(tmp_path, agents, as_of="2024-01-01")["a.com"] == {"GPTBot": NONE, "CCBot": ALL}  # same day counts
    v = verdicts(tmp_path, agents, as_of="2024-07-01")
    assert v["a.com"] == {"GPTBot": NONE, "CCBot": NONE} and v["b.com"] == {"GPTBot": ALL, "CCBot": ALL}
    assert verdicts(tmp_path, agents) == v  # default: the latest snapshots
    site = load_site(tmp_path, "a.com", as_of="2024-02-01")
    assert site.snapshot == dt.date(2024, 1, 1) and site.robots_file.endswith("2024-01-01.txt")
    d = site.to_dict(agents)
    assert d["agents"]["GPTBot"] == {"verdict": NONE, "source": "agent", "group_lines": [1],
                                     "allowed_example": None, "disallowed_example": "/"}
    assert load_site(tmp_path, "a.com", as_of="2024-06-01").robots.availability == "unreachable"


def test_snapshot_status_with_body_and_unreachable(tmp_path):
    _site(tmp_path, "a.com", {"2024-01-01.txt": "User-agent: *\nDisallow: /x\n", "2024-01-01.status": "200",
                              "2024-02-01.status": "unreachable", "2024-03-01.txt": "User-agent: *\nDisallow: /\n",
                              "2024-03-01.status": "410"})
    assert verdicts(tmp_path, ["a"], as_of="2024-01-15")["a.com"]["a"] == SOME
    assert verdicts(tmp_path, ["a"], as_of="2024-02-15")["a.com"]["a"] == NONE
    assert verdicts(tmp_path, ["a"], as_of="2024-03-15")["a.com"]["a"] == ALL  # a 410 body is not read


@pytest.mark.parametrize("files,message", [
    ({"2024-1-1.txt": ""}, "not a snapshot file"),
    ({"notes.md": ""}, "not a snapshot file"),
    ({"2024-02-30.txt": ""}, "not a calendar date"),
    ({"2024-01-01.status": "OK"}, "HTTP status"),
    ({"2024-01-01.status": "200"}, "needs the robots.txt body"),
    ({"2024-01-01.tdmrep.json": "[{"}, "not valid JSON"),
])
def test_snapshot_errors_name_the_file(tmp_path, files, message):
    _site(tmp_path, "a.com", files)
    with pytest.raises(ValueError, match=message) as e:
        load_sites(tmp_path)
    assert "a.com" in str(e.value)


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_sites(tmp_path / "nope")


# --- TDMRep


SPEC_TDMREP = json.dumps([
    {"location": "/directory-a/", "tdm-reservation": 1},
    {"location": "/directory-b/html/", "tdm-reservation": 1, "tdm-policy": "https://provider.com/policies/policy.json"},
    {"location": "/directory-b/images/*.jpg", "tdm-reservation": 0},
])


def test_tdmrep_spec_example():
    t = parse_tdmrep(SPEC_TDMREP)
    assert t.reserved(U + "/directory-a/x.pdf") is True
    assert t.rule_for(U + "/directory-b/html/p.html").policy == "https://provider.com/policies/policy.json"
    assert t.reserved(U + "/directory-b/images/2024/cat.jpg") is False
    assert t.reserved(U + "/directory-b/images/cat.png") is None  # no rule: unset
    assert t.reserved(U + "/Directory-a/x.pdf") is None  # case-sensitive


def test_tdmrep_first_rule_in_sequence_wins_and_anchors():
    t = parse_tdmrep('[{"location": "/", "tdm-reservation": 0}, {"location": "/news/", "tdm-reservation": 1}]')
    assert t.reserved(U + "/news/a") is False  # the first match decides, not the longest
    t = parse_tdmrep('[{"location": "/*.pdf$", "tdm-reservation": 1}, {"location": "*", "tdm-reservation": 0}]')
    assert t.reserved(U + "/a/b.pdf") is True and t.reserved(U + "/a/b.pdf?x") is False
    assert parse_tdmrep("[]").reserved(U + "/") is None


@pytest.mark.parametrize("text,message", [
    ('{"location": "/"}', "JSON array"),
    ("[1]", "rule 0: must be an object"),
    ('[{"tdm-reservation": 1}]', "rule 0: 'location'"),
    ('[{"location": "news", "tdm-reservation": 1}]', "rule 0: 'location'"),
    ('[{"location": "/", "tdm-reservation": 1}, {"location": "/", "tdm-reservation": 2}]', "rule 1: 'tdm-reservation'"),
    ('[{"location": "/", "tdm-reservation": true}]', "'tdm-reservation' must be 0 or 1"),
    ('[{"location": "/", "tdm-reservation": "1"}]', "'tdm-reservation' must be 0 or 1"),
    ('[{"location": "/", "tdm-reservation": 1, "tdm-policy": 3}]', "'tdm-policy'"),
    ('[{"location": "/", "tdm-reservation": 1}', "not valid JSON \\(line 1"),
])
def test_tdmrep_errors_name_file_and_rule(tmp_path, text, message):
    path = tmp_path / "2024-01-01.tdmrep.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as e:
        read_tdmrep(path)
    assert str(path) in str(e.value)


def test_tdmrep_snapshot_chosen_by_date(tmp_path):
    _site(tmp_path, "a.com", {"2023-01-01.txt": "", "2023-06-01.tdmrep.json": '[{"location": "/", "tdm-reservation": 1}]',
                              "2024-01-01.tdmrep.json": "[]"})
    assert load_site(tmp_path, "a.com", as_of="2023-03-01").tdm_reserved(U + "/x") is None
    site = load_site(tmp_path, "a.com", as_of="2023-07-01")
    assert site.tdm_reserved(U + "/x") is True and site.tdmrep_snapshot == dt.date(2023, 6, 1)
    assert site.snapshot == dt.date(2023, 1, 1)  # the robots snapshot is picked independently
    assert load_site(tmp_path, "a.com").tdm_reserved(U + "/x") is None  # dropped by 2024


# --- corpus weighting


def test_corpus_weighting_against_hand_totals(tmp_path):
    _site(tmp_path, "a.com", {"2024-01-01.txt": "User-agent: GPTBot\nDisallow: /\n",
                              "2024-01-01.tdmrep.json": '[{"location": "/news/", "tdm-reservation": 1}]'})
    _site(tmp_path, "b.com", {"2024-01-01.txt": "User-agent: *\nDisallow: /private/\n"})
    _site(tmp_path, "d.com", {"2025-01-01.txt": "User-agent: *\nDisallow: /\n"})  # after as_of: unknown
    docs = [  # (url, words)
        ("https://a.com/news/1", 3), ("http://A.com/about", 5), ("https://b.com/private/x", 7),
        ("https://b.com/public", 11), ("https://c.com/x", 13), (None, 17), ("not a url", 19),
        ("https://d.com/x", 23),
    ]
    records = [Record(i, " ".join(["w"] * n), "f.jsonl", i + 1, {} if url is None else {"url": url})
               for i, (url, n) in enumerate(docs)]
    result = corpus_consent(records, tmp_path, ["GPTBot", "CCBot"], as_of="2024-06-01")
    rows = {d["id"]: d for d in result.rows()}
    assert [rows[i]["site"]["GPTBot"] for i in range(8)] == [NONE, NONE, SOME, SOME, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]
    assert [rows[i]["allowed"]["GPTBot"] for i in range(8)] == [False, False, False, True, None, None, None, None]
    assert [rows[i]["allowed"]["CCBot"] for i in range(8)] == [True, True, False, True, None, None, None, None]
    assert rows[5]["note"] == "no 'url' field" and "has no host" in rows[6]["note"]
    t = result.totals()
    assert t["documents"] == 8 and t["tokens"] == 98
    g, c = t["agents"]["GPTBot"], t["agents"]["CCBot"]
    assert g["documents"] == {ALL: 0, SOME: 2, NONE: 2, UNKNOWN: 4}
    assert g["tokens"] == {ALL: 0, SOME: 18, NONE: 8, UNKNOWN: 72}
    assert c["documents"] == {ALL: 2, SOME: 2, NONE: 0, UNKNOWN: 4}
    assert c["tokens"] == {ALL: 8, SOME: 18, NONE: 0, UNKNOWN: 72}
    assert {k: g["restricted"]["tokens"][k] for k in ("k", "n", "rate")} == {"k": 26, "n": 26, "rate": 1.0}
    assert g["fully_restricted"]["tokens"]["rate"] == pytest.approx(8 / 26)
    assert c["restricted"]["tokens"]["rate"] == pytest.approx(18 / 26)
    assert g["url_documents"] == {"allowed": 1, "disallowed": 3, "unknown": 4}
    assert {k: g["disallowed"]["tokens"][k] for k in ("k", "n", "rate")} == {"k": 15, "n": 26, "rate": pytest.approx(15 / 26)}
    assert c["restricted"]["documents"]["k"] == 2 and c["restricted"]["documents"]["n"] == 4
    # Two sites with a snapshot (b.com restricting CCBot on 2 documents, a.com not on 2): a draw of
    # the two sites gives 0, 1/2 or 1 with chances 1/4, 1/2, 1/4, so the 95% interval is [0, 1].
    assert c["restricted"]["documents"]["ci"] == [0.0, 1.0] and c["restricted"]["documents"]["n_sites"] == 2
    assert t["tdmrep"]["documents"] == {"reserved": 1, "not_reserved": 0, "unset": 3, "unknown": 4}
    assert t["tdmrep"]["reserved"]["tokens"]["rate"] == pytest.approx(3 / 26)
    # A token counter passed in: characters instead of words.
    chars = corpus_consent(records, load_sites(tmp_path, as_of="2024-06-01"), ["GPTBot"], count_tokens=len)
    assert chars.totals()["agents"]["GPTBot"]["tokens"][NONE] == len(records[0].text) + len(records[1].text)


def test_corpus_with_loaded_sites_rejects_as_of(tmp_path):
    _site(tmp_path, "a.com", {"2024-01-01.txt": ""})
    with pytest.raises(ValueError, match="as_of"):
        corpus_consent([], load_sites(tmp_path), ["GPTBot"], as_of="2024-01-01")


def test_host_of():
    assert host_of("https://Example.COM/x") == "example.com"
    assert host_of("http://example.com:81/x") == "example.com:81"
    assert host_of("https://example.com:notaport/x") is None
    assert host_of("mailto:a@b.c") is None


@pytest.mark.parametrize("url", ["https://../x", "https://./", "https://a..b/", "https://.example.com/",
                                 "https://example.com./", "https://a_b.example/", "http://[fe80::1%25eth0]/"])
def test_host_of_refuses_hosts_that_are_not_dns_names_or_ip_literals(url):
    # The host names a folder under the snapshot folder: ".." would be its parent, "." itself.
    assert host_of(url) is None


def test_host_of_keeps_dns_names_ip_literals_and_idn():
    assert host_of("https://127.0.0.1:9/x") == "127.0.0.1:9"
    assert host_of("https://[::1]/x") == "::1"
    assert host_of("https://a-b.c-d.example/") == "a-b.c-d.example"
    assert host_of("https://Bücher.de/x") == "xn--bcher-kva.de"  # the IDNA form, as DNS sees it


@pytest.mark.parametrize("bad", ["..", ".", "a..b", "..:80", "x/..", "a_b.test"])
def test_check_hosts_refuses_dot_names(bad):
    from lmaudit.corpus.consent_run import check_hosts

    with pytest.raises(ValueError, match="not a host name"):
        check_hosts([bad])
    assert check_hosts(["News.Example", "127.0.0.1:8080"]) == ["127.0.0.1:8080", "news.example"]


def test_a_corpus_url_with_a_dot_host_is_a_document_without_a_url(tmp_path):
    # Before: "https://../x" gave host "..", and reading the folder's parent failed the whole audit.
    _site(tmp_path / "robots", "a.com", {"2024-01-01.txt": "User-agent: *\nDisallow: /\n"})
    (tmp_path / "corpus.jsonl").write_text("")  # a file beside the folder, which ".." would have read
    records = [Record(id=1, text="a b", source="c.jsonl", line=1, meta={"url": "https://a.com/x"}),
               Record(id=2, text="c d e", source="c.jsonl", line=2, meta={"url": "https://../x"}),
               Record(id=3, text="f", source="c.jsonl", line=3, meta={"url": "https://./y"})]
    c = corpus_consent(records, tmp_path / "robots", ["GPTBot"])
    assert [d.host for d in c.documents] == ["a.com", None, None]
    assert "has no host name" in c.documents[1].note
    assert c.totals()["agents"]["GPTBot"]["documents"] == {ALL: 0, SOME: 0, NONE: 1, UNKNOWN: 2}


# --- TDMRep: what counts as "declares no reservation" (review B finding 4)

RESERVE = '[{"location": "/", "tdm-reservation": 1}]'


@pytest.mark.parametrize("files, state, reserved", [
    ({"2024-01-01.txt": ""}, "none", None),  # robots.txt answered, no tdmrep record: a hand-made "no file"
    ({"2024-01-01.status": "404"}, "none", None),  # robots.txt 4xx: the site answered
    ({"2024-01-01.status": "503"}, "unknown", None),  # never reached: nothing is known of its tdmrep.json
    ({"2024-01-01.status": "unreachable"}, "unknown", None),
    ({"2024-01-01.txt": "", "2024-01-01.tdmrep.status": "503"}, "unknown", None),  # the tdmrep fetch failed
    ({"2024-01-01.txt": "", "2024-01-01.tdmrep.status": "unreachable"}, "unknown", None),
    ({"2024-01-01.txt": "", "2024-01-01.tdmrep.status": "invalid"}, "unknown", None),
    ({"2024-01-01.status": "503", "2024-01-01.tdmrep.status": "404"}, "none", None),  # 404: declares none
    ({"2024-01-01.txt": "", "2024-01-01.tdmrep.status": "410"}, "none", None),
    # A failed fetch ends no earlier record, whatever the robots.txt said that day.
    ({"2023-01-01.tdmrep.json": RESERVE, "2024-01-01.status": "503", "2024-01-01.tdmrep.status": "503"}, "file", True),
    ({"2023-01-01.tdmrep.json": RESERVE, "2024-01-01.txt": "", "2024-01-01.tdmrep.status": "unreachable"}, "file", True),
    # A 404 or a stored [] does.
    ({"2023-01-01.tdmrep.json": RESERVE, "2024-01-01.txt": "", "2024-01-01.tdmrep.status": "404"}, "none", None),
    ({"2023-01-01.tdmrep.json": RESERVE, "2024-01-01.tdmrep.json": "[]"}, "file", None),
    ({"2023-01-01.tdmrep.status": "404", "2024-01-01.tdmrep.status": "503", "2024-01-01.txt": ""}, "none", None),
    ({}, "unknown", None),  # no snapshot at all
])
def test_tdmrep_state_from_the_records(tmp_path, files, state, reserved):
    _site(tmp_path, "a.com", files) if files else None
    site = load_site(tmp_path, "a.com", as_of="2024-06-01")
    assert site.tdmrep_state == state and site.tdm_reserved(U + "/x") is reserved


def test_tdmrep_unknown_is_outside_the_denominator(tmp_path):
    # /tmp/review-B/tdmunset.py: robots.txt 200, tdmrep.json timed out. It was counted "unset".
    _site(tmp_path, "s.test", {"2025-01-02.txt": "User-agent: *\nDisallow:\n", "2025-01-02.tdmrep.status": "unreachable"})
    _site(tmp_path, "r.test", {"2025-01-02.txt": "", "2025-01-02.tdmrep.json": RESERVE})
    _site(tmp_path, "n.test", {"2025-01-02.txt": "", "2025-01-02.tdmrep.status": "404"})
    records = [Record(id=i, text="a b", source="c", line=i, meta={"url": f"https://{h}/x"})
               for i, h in enumerate(["s.test", "r.test", "n.test", "n.test"])]
    t = corpus_consent(records, tmp_path, ["GPTBot"]).totals()["tdmrep"]
    assert t["documents"] == {"reserved": 1, "not_reserved": 0, "unset": 2, "unknown": 1}
    assert (t["reserved"]["documents"]["k"], t["reserved"]["documents"]["n"]) == (1, 3)
    assert [d.tdm for d in corpus_consent(records, tmp_path, ["GPTBot"]).documents] == [
        "unknown", "reserved", "unset", "unset"]


@pytest.mark.parametrize("files, message", [
    ({"2024-01-01.tdmrep.status": "gone"}, "'unreachable' or 'invalid'"),
    ({"2024-01-01.tdmrep.status": "404", "2024-01-01.tdmrep.json": "[]"}, "same day"),
])
def test_bad_tdmrep_status_records_are_refused(tmp_path, files, message):
    _site(tmp_path, "a.com", files)
    with pytest.raises(ValueError, match=message):
        load_site(tmp_path, "a.com")


# --- corpus shares: site-cluster bootstrap intervals (review B finding 3)


def _two_sites(tmp_path, n=200):
    _site(tmp_path, "a.example", {"2024-01-01.txt": "User-agent: GPTBot\nDisallow: /\n"})
    _site(tmp_path, "b.example", {"2024-01-01.txt": "User-agent: *\nDisallow:\n"})
    return [Record(id=i, text="w " * (10 + i % 7), source="c.jsonl", line=i + 1,
                   meta={"url": f"https://{'ab'[i % 2]}.example/p{i}"}) for i in range(n)]


def test_document_shares_resample_sites_not_documents(tmp_path):
    # /tmp/review-B/docci.py: 200 documents from 2 sites, one restricting GPTBot. A Clopper-Pearson
    # interval over documents said [0.429, 0.571], as if there were 200 independent draws; there are 2.
    records = _two_sites(tmp_path)
    t = corpus_consent(records, tmp_path, ["GPTBot"]).totals()
    r = t["agents"]["GPTBot"]["restricted"]
    assert (r["documents"]["k"], r["documents"]["n"]) == (100, 200)
    assert r["documents"]["ci"] == [0.0, 1.0] and r["tokens"]["ci"] == [0.0, 1.0]  # 0, 1/2, 1 by 1/4, 1/2, 1/4
    assert r["documents"]["interval"] == r["tokens"]["interval"] == "site-cluster bootstrap"
    assert t["intervals"]["method"] == "site-cluster bootstrap" and t["intervals"]["replicates"] == 1000
    # One site: one draw, no spread (a point, not the narrow binomial interval of its documents).
    one = corpus_consent(records[::2], tmp_path, ["GPTBot"]).totals()["agents"]["GPTBot"]["restricted"]
    assert one["documents"]["ci"] == [1.0, 1.0] and one["documents"]["n_sites"] == 1


def test_bootstrap_interval_agrees_with_a_plain_resampling_loop(tmp_path):
    # Twelve sites of unequal size and verdict; the interval against a loop drawing site names.
    rng = random.Random(3)
    records = []
    for s in range(12):
        body = "User-agent: GPTBot\nDisallow: /\n" if s % 3 == 0 else "User-agent: *\nDisallow: /x\n" if s % 3 == 1 else ""
        _site(tmp_path, f"s{s}.test", {"2024-01-01.txt": body})
        for j in range(rng.randint(1, 9)):
            records.append(Record(id=f"{s}-{j}", text="w " * rng.randint(1, 50), source="c", line=len(records) + 1,
                                  meta={"url": f"https://s{s}.test/x{j}"}))
    r = corpus_consent(records, tmp_path, ["GPTBot"]).totals()["agents"]["GPTBot"]["restricted"]
    by_site: dict = {}
    for d in records:
        host = d.meta["url"].split("/")[2]
        restricted = int(host[1:].split(".")[0]) % 3 != 2
        k, n, kt, nt = by_site.get(host, (0, 0, 0, 0))
        w = len(d.text.split())
        by_site[host] = (k + restricted, n + 1, kt + w * restricted, nt + w)
    loop = np.random.default_rng(11)
    names = sorted(by_site)
    docs, toks = [], []
    for _ in range(20000):
        drawn = [by_site[names[i]] for i in loop.integers(0, len(names), len(names))]
        docs.append(sum(x[0] for x in drawn) / sum(x[1] for x in drawn))
        toks.append(sum(x[2] for x in drawn) / sum(x[3] for x in drawn))
    for unit, values in (("documents", docs), ("tokens", toks)):
        assert r[unit]["ci"] == pytest.approx(list(np.quantile(values, [0.025, 0.975])), abs=0.04), unit
        assert r[unit]["ci"][0] <= r[unit]["rate"] <= r[unit]["ci"][1]
