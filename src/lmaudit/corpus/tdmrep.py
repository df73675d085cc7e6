"""TDMRep: the W3C community group's machine-readable text-and-data-mining reservation.

The EU DSM Directive (article 4) lets rightsholders reserve text and data mining "by
machine-readable means"; TDMRep is the format built for that. Where robots.txt speaks per
crawler, TDMRep speaks per path, to every miner. A site declares it in
``/.well-known/tdmrep.json``: a JSON array of rules, each an object with

* ``location``: a path pattern, matched as in robots.txt (``*`` any sequence, final ``$``
  the end; case-sensitive; percent-escapes of unreserved characters decoded);
* ``tdm-reservation``: 1 (rights reserved: do not mine) or 0 (not reserved);
* ``tdm-policy`` (optional): the URL of the rightsholder's licensing policy.

The spec: "The most specific match is the first in sequence", so the first rule whose
location matches a URL decides; no match leaves the reservation *unset* (not declared).
The HTTP header and HTML ``<meta>`` forms override the file per resource; an audit of stored
snapshots only sees the file, and says so.

A file that is not such an array is an error naming the file and the rule, never silently
"no reservation": an audit that dropped a reservation would overstate consent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmaudit.corpus.robots import canonical, matches, url_path


@dataclass(frozen=True)
class TDMRule:
    """One rule of a tdmrep.json (``index`` is its 0-based position in the array)."""

    location: str
    reservation: int
    policy: str | None
    index: int

    @property
    def pattern(self) -> str:
        anchored = self.location.endswith("$")
        body = canonical(self.location[:-1] if anchored else self.location, pattern=True)
        return body + ("$" if anchored else "")


@dataclass(frozen=True)
class TDMRep:
    """A parsed tdmrep.json.

    >>> t = parse_tdmrep('[{"location": "/news/", "tdm-reservation": 1, "tdm-policy": "https://x.org/p"},'
    ...                  ' {"location": "/", "tdm-reservation": 0}]')
    >>> t.reserved("https://x.org/news/a.html"), t.reserved("https://x.org/about"), t.rule_for("/news/").policy
    (True, False, 'https://x.org/p')
    """

    rules: tuple[TDMRule, ...]
    source: str = "<string>"

    def rule_for(self, url: str) -> TDMRule | None:
        """The first rule whose location matches ``url`` (a URL or a path), or None."""
        path = url_path(url)
        return next((r for r in self.rules if matches(r.pattern, path)), None)

    def reserved(self, url: str) -> bool | None:
        """True when TDM rights on ``url`` are reserved, False when declared not reserved, None if unset."""
        rule = self.rule_for(url)
        return None if rule is None else bool(rule.reservation)


def parse_tdmrep(text: str, *, source: str = "<string>") -> TDMRep:
    """Parse the body of a tdmrep.json; errors name ``source`` and the offending rule.

    Raises:
        ValueError: not JSON, not an array of objects, a rule without a string ``location``
            starting with ``/`` or ``*``, a ``tdm-reservation`` other than 0 or 1, or a
            ``tdm-policy`` that is not a string.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    if not isinstance(data, list):
        raise ValueError(f"{source}: tdmrep.json must hold a JSON array of rules, got {type(data).__name__}")
    rules = []
    for i, item in enumerate(data):
        where = f"{source}: rule {i}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be an object, got {type(item).__name__}")
        loc = item.get("location")
        if not isinstance(loc, str) or not loc[:1] in ("/", "*"):
            raise ValueError(f"{where}: 'location' must be a path pattern starting with '/' or '*', got {loc!r}")
        res = item.get("tdm-reservation")
        if isinstance(res, bool) or res not in (0, 1):
            raise ValueError(f"{where}: 'tdm-reservation' must be 0 or 1, got {res!r}")
        policy = item.get("tdm-policy")
        if policy is not None and not isinstance(policy, str):
            raise ValueError(f"{where}: 'tdm-policy' must be a URL string, got {policy!r}")
        rules.append(TDMRule(loc, int(res), policy, i))
    return TDMRep(tuple(rules), source)


def read_tdmrep(path: str | Path) -> TDMRep:
    """Read a stored tdmrep.json file (UTF-8)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 (byte {e.start})") from None
    return parse_tdmrep(text, source=str(path))
