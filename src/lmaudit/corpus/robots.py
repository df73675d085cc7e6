"""robots.txt read as RFC 9309 says: groups, an agent's effective rules, and all / some / none.

A consent audit asks, per site and AI crawler, one question a crawler library does not answer:
do the agent's rules allow *every* path of the site, *some* paths, or *none*? (Longpre et al.
2024, "Consent in Crisis", report exactly this split.) Answering it needs the agent's
effective rule set, so this module parses the groups itself, following RFC 9309:

* product tokens match case-insensitively and exactly (``ClaudeBot`` never falls back on a
  ``Claude`` group); a user-agent value such as ``GPTBot/1.0`` is read as its leading
  token ``GPTBot``, as Google's reference parser (by the RFC's authors) does;
* consecutive ``User-agent`` lines (blank and comment lines between them allowed) open one
  group, which the first rule line closes; every group naming the agent is merged; an agent
  named by no group takes the merged ``*`` groups; with neither, nothing is restricted;
* other records (``Sitemap``, ``Crawl-delay``, unknown keys) do not end a group: the RFC's
  section 2.2.4 says their parsing MUST NOT interfere, "a Sitemaps record MUST NOT
  terminate a group";
* the longest matching pattern wins (length in octets of the pattern as written, ``*`` and
  ``$`` included); an allow and a disallow of equal length: allow wins; no match: allowed;
  ``*`` matches any sequence, a final ``$`` anchors the end; ``/robots.txt`` is always allowed;
* a robots.txt answered with HTTP 4xx (or a redirect chain that never ends) is "unavailable"
  and restricts nothing; 5xx or no answer is "unreachable": everything is disallowed.

Lines the RFC's grammar does not cover are ignored and *counted* (:attr:`RobotsTxt.malformed`,
with line numbers); lines read leniently, as Google's parser and protego also read them
(``Dissallow``, ``User agent``, a missing colon, ``GPTBot/1.0``) are listed separately in
:attr:`RobotsTxt.repaired`, so an audit can show both.

Per-URL decisions (:meth:`RobotsTxt.can_fetch`) go through protego, a maintained parser, run on
the agent's effective group as computed here. protego on a whole file differs from RFC 9309
in a few places, each pinned by a test in tests/unit/test_consent.py:

1. agent selection by substring: a ``Google`` group is applied to ``Google-Extended``
   (RFC 9309: exact token; ``Google-Extended`` takes ``*``);
2. a user-agent value with a version, ``GPTBot/1.0``, matches no query for ``GPTBot``;
3. ``Crawl-delay`` (or any unknown record) between two user-agent lines splits the group;
4. a pattern ending in ``$`` is also read as a literal ``$`` prefix (``Disallow: /*.php$``
   disallows ``/a.php$x``);
5. ``Allow: /x/index.html`` also allows ``/x/`` (a Google extension, not in the RFC).

Hence the split: protego does the matching (percent-encoding, wildcards, precedence), this
module the grouping, which removes gaps 1-3. Gaps 4 and 5 stay in per-URL decisions (they
touch only URLs holding a literal ``$`` and directory URLs beside an allowed ``index.html``);
the all / some / none verdicts follow the RFC exactly and do not have them.

The all / some / none classification (:func:`classify`) is exact: plain files are settled
directly, the rest by exploring the product of the rules' pattern automata over every path.
It returns an allowed and a disallowed example path, which the tests check against protego
and brute force.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import urlsplit

ALL, SOME, NONE, UNKNOWN = "all", "some", "none", "unknown"

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_IDENTIFIER = re.compile(r"[A-Za-z_-]+")

_USER_AGENT_KEYS = {"user-agent": None, "useragent": "'useragent' read as 'user-agent'",
                    "user agent": "'user agent' read as 'user-agent'"}
_ALLOW_KEYS = {"allow": None}
_DISALLOW_KEYS = {"disallow": None, **{k: f"misspelled {k!r} read as 'disallow'" for k in
                                       ("dissallow", "dissalow", "disalow", "diasllow", "disallaw")}}
# Records outside RFC 9309 that are in common use: not errors, ignored, transparent to groups.
_OTHER_KEYS = frozenset({"sitemap", "sitemaps", "site-map", "crawl-delay", "crawl delay", "request-rate",
                         "request rate", "visit-time", "visit time", "host", "clean-param", "noindex",
                         "content-signal", "content-usage"})
_KNOWN_KEYS = set(_USER_AGENT_KEYS) | set(_ALLOW_KEYS) | set(_DISALLOW_KEYS) | _OTHER_KEYS

# Whether a snapshot's robots.txt was read ("ok"), answered 4xx ("unavailable") or not at all.
OK, UNAVAILABLE, UNREACHABLE = "ok", "unavailable", "unreachable"


def availability(status: int | None) -> str:
    """RFC 9309 section 2.3.1 outcome of fetching robots.txt with HTTP ``status`` (None: no answer).

    2xx: the file is read (``"ok"``). 3xx: the snapshot holds the end of the redirect chain, so a
    3xx left means more than five redirects, which the RFC lets a crawler treat as unavailable.
    4xx: ``"unavailable"`` (no restriction). 5xx or None: ``"unreachable"`` (complete disallow).

    >>> [availability(s) for s in (200, 404, 503, None)]
    ['ok', 'unavailable', 'unreachable', 'unreachable']
    """
    if status is None:
        return UNREACHABLE
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"HTTP status must be an integer in 100..599 or None (unreachable), got {status!r}")
    if status < 300:
        return OK
    if status < 500:
        return UNAVAILABLE
    return UNREACHABLE


def canonical(text: str, *, pattern: bool = False) -> str:
    """``text`` with its percent-encoding normalised, so that patterns and paths compare octet by octet.

    RFC 9309 section 2.2.2: escapes of unreserved characters are decoded (``%62`` is ``b``),
    other octets are %-encoded with upper-case hex (non-ASCII as UTF-8). Kept literally: the
    unreserved characters, ``/`` and ``=``, and in a pattern ``*`` (the wildcard). Kept
    escaped: ``%2F`` and ``%25`` (decoding them would change the path), and in a pattern
    ``%2A`` (a literal star). protego normalises the same way, so decisions and verdicts agree.

    >>> canonical("/foo/bar/%62%61%7a"), canonical("/a?b=ツ"), canonical("/a%2fb")
    ('/foo/bar/baz', '/a%3Fb=%E3%83%84', '/a%2Fb')
    """
    kept = {"2F", "25", "2A"} if pattern else {"2F", "25"}
    data = text.encode("utf-8")
    out: list[str] = []
    i = 0
    while i < len(data):
        c = data[i]
        if c == 0x25 and i + 2 < len(data) and chr(data[i + 1]) in _HEX and chr(data[i + 2]) in _HEX:
            code = data[i + 1: i + 3].decode("ascii").upper()
            i += 3
            if code in kept:
                out.append("%" + code)
                continue
            c = int(code, 16)
        else:
            i += 1
            if c == 0x25:  # a '%' that starts no escape stands for itself
                out.append("%")
                continue
            if pattern and c == 0x2A:
                out.append("*")
                continue
        ch = chr(c)
        out.append(ch if c < 0x80 and (ch in _UNRESERVED or ch in "/=") else f"%{c:02X}")
    return "".join(out)


def url_path(url: str) -> str:
    """The part of ``url`` rules match against: path and query, canonical; ``/`` when empty.

    >>> url_path("https://example.com/a b?q=1#frag"), url_path("https://example.com")
    ('/a%20b%3Fq=1', '/')
    """
    url = url.partition("#")[0]
    parts = urlsplit(url)
    path = parts.path or "/"
    if "?" in url:
        path += "?" + parts.query
    if not path.startswith("/"):
        path = "/" + path
    return canonical(path)


@dataclass(frozen=True)
class Rule:
    """One allow or disallow line.

    Attributes:
        allow: True for ``Allow``, False for ``Disallow``.
        value: The value as written (comment and surrounding whitespace removed).
        pattern: ``value`` in :func:`canonical` form, a final ``$`` kept as the anchor.
        line: 1-based line number in the file (0 for a rule implied by an unreachable file).
    """

    allow: bool
    value: str
    pattern: str
    line: int

    @property
    def priority(self) -> int:
        """Match length in octets (RFC 9309 "the most octets"), wildcards and anchor included."""
        return len(self.pattern)


@dataclass(frozen=True)
class LineNote:
    """A robots.txt line ignored (malformed) or read leniently (repaired), and why."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class Group:
    """A group: the product tokens of its user-agent lines (lower case; ``*``) and its rules."""

    agents: tuple[str, ...]
    rules: tuple[Rule, ...]
    line: int


@dataclass(frozen=True)
class EffectiveRules:
    """The rules one agent obeys, and where they come from.

    Attributes:
        agent: The product token asked about, as given.
        source: ``"agent"`` (groups naming it), ``"*"`` (the ``*`` groups), ``"none"`` (no
            applicable group: unrestricted), ``"unavailable"`` (robots.txt answered 4xx:
            unrestricted) or ``"unreachable"`` (5xx / no answer: everything disallowed).
        rules: The merged rules, in file order.
        group_lines: First line of each group merged.
    """

    agent: str
    source: str
    rules: tuple[Rule, ...]
    group_lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class Classification:
    """Whether rules allow all, some or none of a site's paths, with an example path of each kind.

    ``allowed_example`` is None when no path is allowed, ``disallowed_example`` when none is
    disallowed; both are canonical paths (``/robots.txt`` is never used as an example).
    """

    verdict: str
    allowed_example: str | None
    disallowed_example: str | None


def _product_token(value: str) -> str | None:
    """The product token a user-agent value names: ``*``, or its leading ``[A-Za-z_-]`` run."""
    if value == "*" or (value.startswith("*") and value[1:2].isspace()):
        return "*"
    m = _IDENTIFIER.match(value)
    return m.group(0).lower() if m else None


def _split_line(text: str) -> tuple[str, str, str | None] | None:
    """(key, value, repair note) of a non-empty line, or None when it has no key-value shape."""
    if ":" in text:
        key, _, value = text.partition(":")
        key = " ".join(key.split()).lower()
        return (key, value.strip(), None) if key else None
    # No colon: accept "<known key> <value>", as Google's parser and protego do.
    words = text.split()
    for n in (1, 2):
        key = " ".join(words[:n]).lower()
        if key in _KNOWN_KEYS and len(words) == n + 1:
            return key, words[n], "no ':' after the key; read as a key-value pair"
    return None


@dataclass(frozen=True)
class RobotsTxt:
    """A parsed robots.txt (or the absence of one), ready to answer per agent.

    Build it with :meth:`parse`. ``status`` is the HTTP status of the fetch (None: no answer);
    only a 2xx body is parsed.

    >>> r = RobotsTxt.parse("User-agent: GPTBot\\nDisallow: /\\n\\nUser-agent: *\\nDisallow: /private/")
    >>> r.verdict("gptbot"), r.verdict("CCBot"), r.can_fetch("https://x.org/private/a", "CCBot")
    ('none', 'some', False)
    """

    groups: tuple[Group, ...]
    malformed: tuple[LineNote, ...] = ()
    repaired: tuple[LineNote, ...] = ()
    status: int | None = 200
    _protego: dict = field(default_factory=dict, compare=False, repr=False)
    _verdicts: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, *, status: int | None = 200) -> "RobotsTxt":
        """Parse ``text`` as the body of a robots.txt fetched with HTTP ``status``."""
        if availability(status) != OK:
            return cls(groups=(), status=status)
        text = text.removeprefix("\ufeff")
        groups: list[tuple[list[str], list[Rule], int]] = []
        malformed: list[LineNote] = []
        repaired: list[LineNote] = []
        open_agents = False  # the last group line was a user-agent line: the next one joins it
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.partition("#")[0].strip()
            if not line:
                continue
            split = _split_line(line)
            if split is None:
                malformed.append(LineNote(n, raw, "no 'key: value' shape"))
                continue
            key, value, note = split
            if note:
                repaired.append(LineNote(n, raw, note))
            if key in _USER_AGENT_KEYS:
                if _USER_AGENT_KEYS[key]:
                    repaired.append(LineNote(n, raw, _USER_AGENT_KEYS[key]))
                if not open_agents:
                    groups.append(([], [], n))
                open_agents = True
                token = _product_token(value)
                if token is None:
                    malformed.append(LineNote(n, raw, f"user-agent value {value!r} is not a product token"))
                    continue
                if token != "*" and token != value.lower():
                    repaired.append(LineNote(n, raw, f"user-agent {value!r} read as product token {token!r}"))
                groups[-1][0].append(token)
            elif key in _ALLOW_KEYS or key in _DISALLOW_KEYS:
                if not groups:
                    malformed.append(LineNote(n, raw, "rule before any user-agent line"))
                    continue
                open_agents = False
                allow = key in _ALLOW_KEYS
                if not allow and _DISALLOW_KEYS[key]:
                    repaired.append(LineNote(n, raw, _DISALLOW_KEYS[key]))
                if not value:
                    continue  # an empty pattern matches nothing, but still closes the user-agent lines
                if value[0] not in "/*":
                    malformed.append(LineNote(n, raw, f"path pattern {value!r} starts with neither '/' nor '*'"))
                    continue
                anchored = value.endswith("$")
                body = canonical(value[:-1] if anchored else value, pattern=True)
                groups[-1][1].append(Rule(allow, value, body + ("$" if anchored else ""), n))
            elif key not in _OTHER_KEYS:
                malformed.append(LineNote(n, raw, f"unknown record {key!r}"))
        return cls(groups=tuple(Group(tuple(a), tuple(r), ln) for a, r, ln in groups),
                   malformed=tuple(malformed), repaired=tuple(repaired), status=status)

    @property
    def availability(self) -> str:
        """``"ok"``, ``"unavailable"`` (4xx: no restriction) or ``"unreachable"`` (all disallowed)."""
        return availability(self.status)

    def effective_rules(self, agent: str) -> EffectiveRules:
        """The rules ``agent`` (a product token, any case) obeys under RFC 9309."""
        if _product_token(agent) != agent.lower() or agent == "*":
            raise ValueError(f"agent must be a product token of letters, '_' and '-', got {agent!r}")
        state = self.availability
        if state == UNAVAILABLE:
            return EffectiveRules(agent, UNAVAILABLE, ())
        if state == UNREACHABLE:
            return EffectiveRules(agent, UNREACHABLE, (Rule(False, "/", "/", 0),))
        for token, source in ((agent.lower(), "agent"), ("*", "*")):
            hits = [g for g in self.groups if token in g.agents]
            if hits:
                return EffectiveRules(agent, source, tuple(r for g in hits for r in g.rules),
                                      tuple(g.line for g in hits))
        return EffectiveRules(agent, "none", ())

    def can_fetch(self, url: str, agent: str) -> bool:
        """Whether ``agent`` may fetch ``url``: protego's matcher on the agent's effective group."""
        rules = self.effective_rules(agent).rules
        if not rules:
            return True
        key = agent.lower()
        parser = self._protego.get(key)
        if parser is None:
            from protego import Protego

            body = "".join(f"{'Allow' if r.allow else 'Disallow'}: {r.value}\n" for r in rules)
            parser = self._protego[key] = Protego.parse("User-agent: lmaudit-effective\n" + body)
        return parser.can_fetch(url, "lmaudit-effective")

    def classify(self, agent: str) -> Classification:
        """All / some / none for ``agent``, with example paths (see :func:`classify`)."""
        key = agent.lower()
        if key not in self._verdicts:
            self._verdicts[key] = classify(self.effective_rules(agent).rules)
        return self._verdicts[key]

    def verdict(self, agent: str) -> str:
        """``"all"``, ``"some"`` or ``"none"``: which of the site's paths ``agent`` may fetch."""
        return self.classify(agent).verdict


# --- pattern automata -------------------------------------------------------------------------
# A pattern P (canonical, without its final "$") is an NFA over positions 0..len(P): position i
# has matched P[:i]; a "*" at i loops on every character and is skippable. A pattern without "$"
# matches a prefix of the path, so reaching len(P) is absorbing; with "$" it must end there.


@dataclass(frozen=True)
class _Compiled:
    body: str
    anchored: bool

    @classmethod
    def of(cls, pattern: str) -> "_Compiled":
        anchored = pattern.endswith("$")
        body = pattern[:-1] if anchored else pattern
        # "P*$" matches exactly the paths "P" matches as a prefix; read unanchored, it can be
        # folded once matched (see classify), which keeps wildcard-heavy files tractable.
        return cls(body, anchored and not body.endswith("*"))

    def closure(self, positions) -> frozenset:
        out = set()
        for i in positions:
            out.add(i)
            while i < len(self.body) and self.body[i] == "*":
                i += 1
                out.add(i)
        end = len(self.body)
        if not self.anchored and end in out:
            return frozenset((end,))  # matched for good: drop the rest, the state stays small
        return frozenset(out)

    def step(self, state: frozenset, ch: str) -> frozenset:
        end = len(self.body)
        if not self.anchored and end in state:
            return state
        nxt = []
        for i in state:
            if i == end:
                continue
            p = self.body[i]
            if p == "*":
                nxt.append(i)
            elif p == ch:
                nxt.append(i + 1)
        return self.closure(nxt)

    def matched(self, state: frozenset) -> bool:
        return len(self.body) in state

    def settled(self, state: frozenset) -> bool:
        """True when no continuation can change whether the pattern matches."""
        return not state or (not self.anchored and self.matched(state))


def matches(pattern: str, path: str) -> bool:
    """Whether a canonical ``pattern`` (``*`` wildcards, final ``$`` anchor) matches canonical ``path``.

    >>> matches("/fish*.php", "/fishheads/catfish.php%3Fparameters"), matches("/*.php$", "/a.php/")
    (True, False)
    """
    c = _Compiled.of(pattern)
    state = c.closure((0,))
    for ch in path:
        if c.settled(state):
            break
        state = c.step(state, ch)
    return c.matched(state)


def decide(rules: Sequence[Rule], path: str) -> bool:
    """RFC 9309's decision for canonical ``path``: the longest match wins, allow on ties, no match allows.

    An independent implementation of what :meth:`RobotsTxt.can_fetch` asks protego; the tests
    compare the two.
    """
    if path == "/robots.txt":
        return True
    best = None
    for r in rules:
        if matches(r.pattern, path) and (best is None or (r.priority, r.allow) > (best.priority, best.allow)):
            best = r
    return True if best is None else best.allow


def _regex(pattern: str) -> re.Pattern:
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    return re.compile(".*".join(map(re.escape, body.split("*"))) + (r"\Z" if anchored else ""), re.DOTALL)


def _matches_every_path(pattern: str) -> bool:
    """``/``, ``/*``, ``*``, ``/*$``, ``*$`` and the like: patterns every path matches."""
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    rest = body[1:] if body.startswith("/") else body
    return set(rest) <= {"*"} and (not anchored or "*" in rest)


def _quick(rules: Sequence[Rule]) -> Classification | None:
    """The verdict when plain cases settle it: no disallow; a catch-all disallow and no allow;
    or an allowed and a disallowed path among each pattern written out literally (stars as
    nothing), alone or followed by one more character. None when these do not settle it."""
    if all(r.allow for r in rules):
        return Classification(ALL, "/", None)
    if not any(r.allow for r in rules) and any(_matches_every_path(r.pattern) for r in rules):
        return Classification(NONE, None, "/")
    ordered = [(_regex(r.pattern), r.allow) for r in sorted(rules, key=lambda r: (r.priority, r.allow), reverse=True)]
    allowed_ex = disallowed_ex = None
    for r in [None, *rules]:
        base = "/" if r is None else "/" + r.pattern.rstrip("$").replace("*", "").lstrip("/")
        for path in (base, base + "0"):
            if path == "/robots.txt":
                continue
            allowed = next((allow for rx, allow in ordered if rx.match(path)), True)
            if allowed:
                allowed_ex = allowed_ex or path
            else:
                disallowed_ex = disallowed_ex or path
            if allowed_ex and disallowed_ex:
                return Classification(SOME, allowed_ex, disallowed_ex)
    return None


def classify(rules: Sequence[Rule], *, max_states: int = 200_000) -> Classification:
    """Whether ``rules`` allow every path, some paths, or none (``/robots.txt`` aside), with examples.

    Plain cases are settled directly (see ``_quick``); the rest exactly, by breadth-first search
    over the product of the patterns' automata. A search state holds every live pattern's NFA
    position set after reading a path, so every path reaching a state gets the same decision.
    Two reductions keep the product small without changing any decision: a pattern without
    ``$`` that has matched stays matched, so only the strongest such match is kept (as a
    (length, allow) key); and a pattern that cannot beat that key is dropped. From each state
    only the characters the live patterns can consume next are tried, plus one character none
    of them can (all such characters lead to the same state). The search stops once it has
    seen an allowed and a disallowed path ("some"), or every reachable state.

    Raises:
        RuntimeError: if more than ``max_states`` states are reachable (a robots.txt with
            hundreds of interleaved wildcard patterns); no real file seen comes near.

    >>> r = RobotsTxt.parse("User-agent: *\\nDisallow: /\\nAllow: /$")
    >>> classify(r.effective_rules("x").rules)
    Classification(verdict='some', allowed_example='/', disallowed_example='/0')
    """
    if not rules:
        return Classification(ALL, "/", None)
    return _quick(rules) or _search(rules, max_states)


def _search(rules: Sequence[Rule], max_states: int) -> Classification:
    """The exact breadth-first search of :func:`classify` (its examples are the shortest paths)."""
    autos = [_Compiled.of(r.pattern) for r in rules]
    keys = [(r.priority, r.allow) for r in rules]
    exempt = _Compiled.of("/robots.txt$")
    empty = frozenset()

    def settle(best: int, sets: list) -> tuple:
        # Fold matched prefix patterns into ``best``; drop every pattern that cannot beat it.
        for i, s in enumerate(sets):
            if s and not autos[i].anchored and autos[i].matched(s):
                if best < 0 or keys[i] > keys[best]:
                    best = i
                sets[i] = empty
        if best >= 0:
            sets = [s if s and keys[i] > keys[best] else empty for i, s in enumerate(sets)]
        return best, tuple(sets)

    def step(state: tuple, ch: str) -> tuple:
        best, sets, ex = state
        return (*settle(best, [a.step(s, ch) if s else s for a, s in zip(autos, sets)]), exempt.step(ex, ch))

    best, sets = settle(-1, [a.closure((0,)) for a in autos])
    start = step((best, sets, exempt.closure((0,))), "/")
    allowed_ex = disallowed_ex = None
    seen = {start}
    queue = deque([(start, "/")])
    while queue:
        state, path = queue.popleft()
        best, sets, ex = state
        if not exempt.matched(ex):
            win = max([i for i, s in enumerate(sets) if s and autos[i].matched(s)] + ([best] if best >= 0 else []),
                      key=lambda i: keys[i], default=None)
            if win is None or rules[win].allow:
                allowed_ex = allowed_ex or path
            else:
                disallowed_ex = disallowed_ex or path
            if allowed_ex and disallowed_ex:
                return Classification(SOME, allowed_ex, disallowed_ex)
        if not any(sets) and not exempt.matched(ex):
            continue  # no continuation can change the decision
        nexts = {a.body[i] for a, s in zip(autos, sets) for i in s if i < len(a.body) and a.body[i] != "*"}
        nexts |= {exempt.body[i] for i in ex if i < len(exempt.body)}
        other = next((c for c in "0123456789abcdefghijklmnopqrstuvwxyz" if c not in nexts), None)
        for ch in sorted(nexts | ({other} if other else set())):
            nxt = step(state, ch)
            if nxt not in seen:
                if len(seen) >= max_states:
                    raise RuntimeError(f"robots.txt rules reach more than {max_states} automaton states; "
                                       "cannot classify them exactly")
                seen.add(nxt)
                queue.append((nxt, path + ch))
    return Classification(ALL if disallowed_ex is None else NONE, allowed_ex, disallowed_ex)
