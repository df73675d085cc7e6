"""The consent audit: did the sites a corpus was collected from let AI crawlers take it?

Longpre et al. (2024, "Consent in Crisis", the Data Provenance Initiative) read the
robots.txt of the sites behind C4, RefinedWeb and Dolma per AI crawler (GPTBot, CCBot,
Google-Extended, ClaudeBot, ...) and report the share of *tokens* from sites that restrict
each one. This module does the same offline, from stored snapshots, and adds TDMRep, the
EU's machine-readable opt-out, which none of the public audits reads.

Snapshots. Consent changes over time and a corpus was collected at a date, so verdicts are
given "as of" a date from a folder of dated files::

    ROBOTS_DIR/
      example.com/               # the URL's host, lower case, with ":port" if the URL names one
        2023-04-01.txt           # robots.txt body fetched that day (HTTP 200 unless a .status says)
        2023-04-01.status        # optional: the HTTP status ("404", "503") or "unreachable"
        2024-04-01.txt
        2024-04-01.tdmrep.json   # optional: /.well-known/tdmrep.json fetched that day
        2024-05-01.tdmrep.status # optional: why there is no tdmrep.json that day ("404", "503", "unreachable")

For a date, each site uses its latest robots snapshot on or before it (a ``.status`` alone is
a snapshot: ``404`` means no restriction, ``503`` or ``unreachable`` complete disallow, as
RFC 9309 says). A site with no snapshot by then is ``"unknown"``, never "allowed": absence of
evidence is reported as such.

TDMRep is read separately, from the site's latest *conclusive* record on or before the date: a
``.tdmrep.json`` (its rules; ``[]`` records that a site dropped its file) or a
``.tdmrep.status`` of 404 or 410 (no file: the site declares no reservation). A
``.tdmrep.status`` holding anything else (a 5xx, another status, ``unreachable``, or
``invalid`` for a body that is not a tdmrep.json) records a fetch that learnt nothing: it ends
no earlier record. A site with no conclusive record declares none only when its robots
snapshot in force was answered (2xx or 4xx: a folder written by hand records "no file" by
writing nothing) and no tdmrep fetch of it failed; otherwise (robots.txt 5xx or unreachable, a
failed tdmrep fetch, no snapshot at all) its TDMRep is ``unknown`` and its documents are left
out of the TDMRep shares, never counted as "declares none". Scheme is ignored (http and https share
a folder), and ``www.example.com`` is a different site from ``example.com``, as for robots.txt.
Only a DNS name (letters, digits, hyphens; no empty label) or an IP literal names a site
(:func:`valid_host`): a URL whose host is ``..`` or ``.`` has no usable host, since its folder
would be the snapshot folder's parent or the folder itself.
Any other file name in a host folder is an error, so that a misnamed snapshot is not silently
skipped.

Corpus weighting. Every document with a URL gets, per agent, the site's verdict (all / some
/ none / unknown) and whether its own URL may be fetched; totals are counted in documents and
in tokens. Every document of a site shares the site's verdict (and its TDMRep file), so the
independent units are sites, not documents or tokens: a binomial interval over 200 documents
from two sites would claim 200 draws where there are two. Document and token shares therefore
come with a site-cluster bootstrap interval: the sites are drawn with replacement
(:data:`BOOTSTRAP` replicates, seeded), and each replicate's share is recomputed over the
documents (tokens) of the sites it drew (:func:`lmaudit.stats.cluster_ratio_ci`). With few
sites the interval is wide, as it should be; with one site it is a point.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from lmaudit.corpus.robots import ALL, NONE, SOME, UNKNOWN, LineNote, RobotsTxt
from lmaudit.corpus.tdmrep import TDMRep, read_tdmrep
from lmaudit.data import Record
from lmaudit.stats import cluster_ratio_ci

_UNDECODED = re.compile("[\udc80-\udcff]")
_SNAPSHOT = re.compile(r"(\d{4}-\d{2}-\d{2})\.(txt|status|tdmrep\.json|tdmrep\.status)")
TDM_ABSENT = ("404", "410")  # a tdmrep.status that means "no file": the site declares no reservation
VERDICTS = (ALL, SOME, NONE, UNKNOWN)
BOOTSTRAP = 1000  # replicates of the site-cluster bootstrap
INTERVAL = "site-cluster bootstrap"

# The AI crawlers an audit asks about by default: the product tokens of the crawlers that
# collect training data or fetch for AI answers, as their operators document them (OpenAI's
# GPTBot and ChatGPT-User, Common Crawl's CCBot, Google's Google-Extended, Anthropic's ClaudeBot
# and its older anthropic-ai, PerplexityBot, ByteDance's Bytespider, Apple's Applebot-Extended,
# Meta's meta-externalagent, cohere-ai); Longpre et al. (2024) audit most of these. Tokens
# match case-insensitively, so the spelling here is only for display.
AI_AGENTS = ("GPTBot", "ChatGPT-User", "CCBot", "Google-Extended", "ClaudeBot", "anthropic-ai", "PerplexityBot",
             "Bytespider", "Applebot-Extended", "meta-externalagent", "cohere-ai")

# A small snapshot folder and corpus shipped with lmaudit (package data): ten fictional sites,
# one per rule of RFC 9309 an audit has to get right, and 40 documents over them and one site
# without a snapshot. tests/unit/test_consent_fixture.py lists every verdict, derived by hand.
FIXTURE = Path(__file__).parent / "fixtures" / "consent"


def copy_consent_fixture(dest: str | Path) -> Path:
    """Copy the shipped consent fixture to ``dest`` (``robots/`` and ``corpus.jsonl``); return ``dest``.

    Raises:
        FileExistsError: ``dest`` exists already (nothing is overwritten).
    """
    import shutil

    dest = Path(dest)
    shutil.copytree(FIXTURE, dest)
    return dest


_LABEL = re.compile(r"[a-z0-9-]{1,63}")


def valid_host(host: str) -> bool:
    """Whether ``host`` (lower case, no port) can name a site folder: a DNS name (labels of
    letters, digits and hyphens, at most 63 characters each, none empty, so neither ``.`` nor
    ``..``; 253 characters in all) or an IP address literal.

    The host becomes a folder name under the snapshot folder (and ``--fetch`` writes there), so
    anything else (``..``, ``.``, a trailing dot, ``/``, ``%``) is refused rather than cleaned.

    >>> [valid_host(h) for h in ("news.example.com", "xn--bcher-kva.de", "127.0.0.1", "::1", "..", ".", "a..b")]
    [True, True, True, True, False, False, False]
    """
    if not host or len(host) > 253:
        return False
    if all(_LABEL.fullmatch(label) for label in host.split(".")):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return "%" not in host  # an IPv6 zone ("fe80::1%eth0") names an interface of this machine, not a site


def host_of(url: str) -> str | None:
    """The snapshot folder name for ``url``: lower-case host, ``:port`` if given; None without a
    host or with one that is neither a DNS name nor an IP literal (:func:`valid_host`).

    A host with non-ASCII letters is written in its ASCII (IDNA, ``xn--``) form, as DNS sees it.

    >>> host_of("https://News.Example.com:8080/a?b"), host_of("example.com/a"), host_of("https://../x")
    ('news.example.com:8080', None, None)
    """
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:  # e.g. a port that is not a number
        return None
    if not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    if not valid_host(host):
        return None
    return f"{host}:{port}" if port is not None else host


@dataclass(frozen=True)
class SiteConsent:
    """One site's consent signals as of a date.

    Attributes:
        host: The site (snapshot folder name).
        snapshot: Date of the robots.txt snapshot used; None when there is none on or before
            the date (every verdict is then ``"unknown"``).
        robots: The parsed robots.txt (or its 4xx / 5xx outcome); None without a snapshot.
        robots_file: The file the snapshot was read from (the ``.txt``, else the ``.status``).
        tdmrep: The tdmrep.json in force, if its latest conclusive record is one.
        tdmrep_snapshot: The date of the TDMRep record read (file or status).
        tdmrep_status: What the ``.tdmrep.status`` read holds when that record is one (``"404"``:
            no file; ``"503"``, ``"unreachable"``, ``"invalid"``: a fetch that learnt nothing).
        tdmrep_file: The record read (a ``.tdmrep.json`` or ``.tdmrep.status`` path).
    """

    host: str
    snapshot: dt.date | None = None
    robots: RobotsTxt | None = None
    robots_file: str | None = None
    tdmrep: TDMRep | None = None
    tdmrep_snapshot: dt.date | None = None
    tdmrep_status: str | None = None
    tdmrep_file: str | None = None

    @property
    def tdmrep_state(self) -> str:
        """``"file"`` (a tdmrep.json in force), ``"none"`` (the site declares no reservation: a
        404/410, or no record beside an answered robots.txt) or ``"unknown"`` (see the module doc)."""
        if self.tdmrep is not None:
            return "file"
        if self.tdmrep_status is not None:
            return "none" if self.tdmrep_status in TDM_ABSENT else UNKNOWN
        if self.robots is None or self.robots.availability == "unreachable":
            return UNKNOWN
        return "none"

    def verdict(self, agent: str) -> str:
        """``"all"``, ``"some"``, ``"none"``, or ``"unknown"`` without a snapshot."""
        return UNKNOWN if self.robots is None else self.robots.verdict(agent)

    def can_fetch(self, url: str, agent: str) -> bool | None:
        """Whether ``agent`` may fetch ``url``; None without a snapshot."""
        return None if self.robots is None else self.robots.can_fetch(url, agent)

    def tdm_reserved(self, url: str) -> bool | None:
        """TDMRep reservation for ``url``: True / False as declared, None if no file or no rule matches
        (see :attr:`tdmrep_state` for whether "no file" is known)."""
        return None if self.tdmrep is None else self.tdmrep.reserved(url)

    def to_dict(self, agents: Sequence[str]) -> dict:
        """JSON-ready summary: verdicts with their source and example paths, malformed lines, TDMRep."""
        out: dict = {"host": self.host, "snapshot": _iso(self.snapshot), "robots_file": self.robots_file,
                     "tdmrep_snapshot": _iso(self.tdmrep_snapshot), "tdmrep_state": self.tdmrep_state,
                     "tdmrep_status": self.tdmrep_status, "tdmrep_file": self.tdmrep_file}
        if self.robots is None:
            out["agents"] = {a: {"verdict": UNKNOWN} for a in agents}
        else:
            r = self.robots
            out["status"] = r.status
            out["availability"] = r.availability
            out["agents"] = {}
            for a in agents:
                eff, c = r.effective_rules(a), r.classify(a)
                out["agents"][a] = {"verdict": c.verdict, "source": eff.source, "group_lines": list(eff.group_lines),
                                    "allowed_example": c.allowed_example, "disallowed_example": c.disallowed_example}
            out["malformed"] = [{"line": n.line, "text": n.text, "reason": n.reason} for n in r.malformed]
            out["repaired"] = [{"line": n.line, "text": n.text, "reason": n.reason} for n in r.repaired]
        if self.tdmrep is not None:
            out["tdmrep"] = [{"location": t.location, "tdm-reservation": t.reservation, "tdm-policy": t.policy}
                             for t in self.tdmrep.rules]
        return out


def _iso(d: dt.date | None) -> str | None:
    return None if d is None else d.isoformat()


def _parse_date(text: str, path: Path) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{path}: {text!r} is not a calendar date (YYYY-MM-DD)") from None


def _read_status(path: Path) -> int | None:
    text = path.read_text(encoding="utf-8").strip()
    if text.lower() == "unreachable":
        return None
    if not re.fullmatch(r"[1-5]\d\d", text):
        raise ValueError(f"{path}: must hold an HTTP status (e.g. 404, 503) or 'unreachable', got {text!r}")
    return int(text)


def _read_tdm_status(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip().lower()
    if text not in ("unreachable", "invalid") and not re.fullmatch(r"[1-5]\d\d", text):
        raise ValueError(f"{path}: must hold an HTTP status (e.g. 404, 503), 'unreachable' or 'invalid', got {text!r}")
    return text


def parse_robots_bytes(data: bytes, *, status: int | None = 200) -> RobotsTxt:
    """Parse a stored robots.txt body, whatever its bytes.

    RFC 9309 says the file is UTF-8. Each byte that is not (a Latin-1 ``é`` in a path) is read
    as U+FFFD and its line is still *used*: dropping a ``Disallow`` line for one byte would
    overstate consent, and a rule holding U+FFFD only matches paths that hold it. Each such
    line is listed in :attr:`RobotsTxt.repaired` (reason starting "not UTF-8"), beside the
    other lines read leniently, so an audit counts and shows it. A U+FFFD written in the file
    as valid UTF-8 is not flagged.

    >>> r = parse_robots_bytes(b"User-agent: *\\nDisallow: /caf\\xe9/\\n")
    >>> [(n.line, n.reason[:10]) for n in r.repaired], r.verdict("GPTBot")
    ([(2, 'not UTF-8:')], 'some')
    """
    text = data.decode("utf-8", errors="surrogateescape")  # each undecodable byte: one of U+DC80..U+DCFF
    if not _UNDECODED.search(text):
        return RobotsTxt.parse(text, status=status)
    clean = _UNDECODED.sub("\ufffd", text)
    robots = RobotsTxt.parse(clean, status=status)
    # RobotsTxt.parse numbers the lines of str.splitlines() after dropping a BOM: the same here.
    bad = [LineNote(n, _UNDECODED.sub("\ufffd", line), f"not UTF-8: {len(_UNDECODED.findall(line))} byte(s) "
                    "read as U+FFFD (RFC 9309: the file is UTF-8); the line is still used")
           for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1) if _UNDECODED.search(line)]
    return replace(robots, repaired=tuple(sorted(robots.repaired + tuple(bad), key=lambda note: note.line)))


def load_site(folder: str | Path, host: str, *, as_of: dt.date | str | None = None) -> SiteConsent:
    """Read ``folder/host``'s snapshots in force on ``as_of`` (default: the latest ones).

    Raises:
        ValueError: a file name outside the layout, an impossible date, a bad ``.status``, a
            2xx status without its ``.txt``, a malformed tdmrep.json or .tdmrep.status, or a
            tdmrep.json and a .tdmrep.status of the same day; each names the file.
    """
    if isinstance(as_of, str):
        as_of = _parse_date(as_of, Path("as_of"))
    site_dir = Path(folder) / host
    robots_dates: dict[dt.date, dict[str, Path]] = {}
    tdm_dates: dict[dt.date, dict[str, Path]] = {}
    if site_dir.is_dir():
        for path in sorted(site_dir.iterdir()):
            if path.name.startswith("."):
                continue
            m = _SNAPSHOT.fullmatch(path.name)
            if m is None or not path.is_file():
                raise ValueError(f"{path}: not a snapshot file; expected YYYY-MM-DD.txt, YYYY-MM-DD.status "
                                 "YYYY-MM-DD.tdmrep.json or YYYY-MM-DD.tdmrep.status")
            day = _parse_date(m.group(1), path)
            if as_of is not None and day > as_of:
                continue
            if m.group(2).startswith("tdmrep."):
                tdm_dates.setdefault(day, {})[m.group(2)] = path
            else:
                robots_dates.setdefault(day, {})[m.group(2)] = path
    site = SiteConsent(host)
    if robots_dates:
        day = max(robots_dates)
        files = robots_dates[day]
        status = _read_status(files["status"]) if "status" in files else 200
        if "txt" in files:
            robots = parse_robots_bytes(files["txt"].read_bytes(), status=status)
        elif status is not None and 200 <= status < 300:
            raise ValueError(f"{files['status']}: status {status} needs the robots.txt body in {day}.txt")
        else:
            robots = RobotsTxt.parse("", status=status)
        site = SiteConsent(host, day, robots, str(files.get("txt", files.get("status"))))
    conclusive, failed = [], []
    for day, files in sorted(tdm_dates.items()):
        if len(files) > 1:
            raise ValueError(f"{files['tdmrep.status']}: {files['tdmrep.json'].name} of the same day says the fetch "
                             "found a file; keep one of the two")
        (kind, path), = files.items()
        status = _read_tdm_status(path) if kind == "tdmrep.status" else None
        (conclusive if status is None or status in TDM_ABSENT else failed).append((day, path, status))
    if conclusive:  # the latest one decides; a failed fetch since then ends nothing
        day, path, status = conclusive[-1]
        tdmrep = read_tdmrep(path) if status is None else None
        site = replace(site, tdmrep=tdmrep, tdmrep_snapshot=day, tdmrep_status=status, tdmrep_file=str(path))
    elif failed:
        day, path, status = failed[-1]
        site = replace(site, tdmrep_snapshot=day, tdmrep_status=status, tdmrep_file=str(path))
    return site


def load_sites(folder: str | Path, *, as_of: dt.date | str | None = None,
               hosts: Iterable[str] | None = None) -> dict[str, SiteConsent]:
    """Every site in ``folder`` (and every host in ``hosts``, present or not) as of ``as_of``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: robots snapshot folder not found")
    names = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    names |= set(hosts or ())
    return {h: load_site(folder, h, as_of=as_of) for h in sorted(names)}


def verdicts(folder: str | Path, agents: Sequence[str], *, as_of: dt.date | str | None = None,
             hosts: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """``{host: {agent: "all" | "some" | "none" | "unknown"}}`` from the snapshots in force on ``as_of``.

    ``hosts`` adds sites to report even without a folder (they come out ``"unknown"``).
    """
    return {h: {a: s.verdict(a) for a in agents} for h, s in load_sites(folder, as_of=as_of, hosts=hosts).items()}


# --- corpus weighting -------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentConsent:
    """One document's consent signals.

    Attributes:
        id: The record's id.
        url: Its URL (None when the record has none).
        host: The site it maps to (None: no usable URL; counted as unknown).
        tokens: Its length under the token counter.
        site: Per agent, the site's verdict.
        allowed: Per agent, whether the document's own URL may be fetched (None: unknown).
        tdm_reserved: TDMRep reservation for its URL (None: no file, no matching rule, or unknown).
        tdm: ``"reserved"``, ``"not_reserved"``, ``"unset"`` (the site declares nothing for the
            URL) or ``"unknown"`` (no usable URL, or the site's TDMRep is unknown).
        note: Why the document is unknown, when it is for a reason other than a missing snapshot.
    """

    id: str | int
    url: str | None
    host: str | None
    tokens: int
    site: dict[str, str]
    allowed: dict[str, bool | None]
    tdm_reserved: bool | None = None
    note: str | None = None
    tdm: str = UNKNOWN


@dataclass(frozen=True)
class CorpusConsent:
    """Per-document signals and their totals (see :meth:`totals`)."""

    agents: tuple[str, ...]
    documents: tuple[DocumentConsent, ...]
    sites: Mapping[str, SiteConsent] = field(repr=False)
    level: float = 0.95
    seed: int = 0

    def totals(self) -> dict:
        """Per agent: documents and tokens by site verdict and by own-URL decision, and the headline shares.

        ``restricted`` is the Data Provenance Initiative's figure: the share of documents and of
        tokens from sites whose verdict for the agent is ``some`` or ``none``, among documents
        whose site has a snapshot. ``fully_restricted`` counts ``none`` only; ``disallowed``
        counts documents whose own URL is disallowed. Each share has a site-cluster bootstrap
        interval (``interval``: :data:`INTERVAL`; ``n_sites``: the sites in its denominator).
        """
        out: dict = {"agents": {}}
        hosts = [d.host for d in self.documents]
        for a in self.agents:
            docs = dict.fromkeys(VERDICTS, 0)
            toks = dict.fromkeys(VERDICTS, 0)
            ddocs = {"allowed": 0, "disallowed": 0, "unknown": 0}
            dtoks = dict.fromkeys(ddocs, 0)
            for d in self.documents:
                docs[d.site[a]] += 1
                toks[d.site[a]] += d.tokens
                key = {True: "allowed", False: "disallowed", None: "unknown"}[d.allowed[a]]
                ddocs[key] += 1
                dtoks[key] += d.tokens
            known = [d.site[a] != UNKNOWN for d in self.documents]
            out["agents"][a] = {
                "documents": docs, "tokens": toks, "url_documents": ddocs, "url_tokens": dtoks,
                "restricted": self._share([d.site[a] in (SOME, NONE) for d in self.documents], known, hosts),
                "fully_restricted": self._share([d.site[a] == NONE for d in self.documents], known, hosts),
                "disallowed": self._share([d.allowed[a] is False for d in self.documents], known, hosts),
            }
        tdm = {"reserved": 0, "not_reserved": 0, "unset": 0, "unknown": 0}
        tdm_t = dict.fromkeys(tdm, 0)
        for d in self.documents:
            tdm[d.tdm] += 1
            tdm_t[d.tdm] += d.tokens
        out["tdmrep"] = {"documents": tdm, "tokens": tdm_t,
                         "reserved": self._share([d.tdm == "reserved" for d in self.documents],
                                                 [d.tdm != UNKNOWN for d in self.documents], hosts)}
        out["documents"] = len(self.documents)
        out["tokens"] = sum(d.tokens for d in self.documents)
        out["intervals"] = {"method": INTERVAL, "replicates": BOOTSTRAP, "seed": self.seed, "level": self.level,
                            "why": INTERVAL_WHY}
        return out

    def _share(self, hit: Sequence[bool], known: Sequence[bool], hosts: Sequence[str | None]) -> dict:
        """A share in documents and in tokens (``hit`` among ``known``), each with its site-cluster
        bootstrap interval over the sites of the known documents."""
        per_site: dict[str, list[int]] = {}  # host -> [documents hit, known, tokens hit, known]
        for d, h, k, host in zip(self.documents, hit, known, hosts):
            if k:
                c = per_site.setdefault(host or "", [0, 0, 0, 0])
                c[0] += bool(h)
                c[1] += 1
                c[2] += d.tokens if h else 0
                c[3] += d.tokens
        counts = list(per_site.values())
        out = {}
        for unit, (i, j) in (("documents", (0, 1)), ("tokens", (2, 3))):
            k, n = sum(c[i] for c in counts), sum(c[j] for c in counts)
            ci = (cluster_ratio_ci([c[i] for c in counts], [c[j] for c in counts], n_bootstrap=BOOTSTRAP,
                                   level=self.level, seed=self.seed) if n else None)
            out[unit] = {"k": k, "n": n, "rate": k / n if n else None, "ci": list(ci) if ci else None,
                         "interval": INTERVAL, "n_sites": sum(1 for c in counts if c[j])}
        return out

    def rows(self) -> list[dict]:
        """One JSON-ready row per document, keyed by id (a samples.jsonl)."""
        return [{"id": d.id, "url": d.url, "host": d.host, "tokens": d.tokens, "site": d.site,
                 "allowed": d.allowed, "tdm_reserved": d.tdm_reserved, "tdm": d.tdm, "note": d.note}
                for d in self.documents]


INTERVAL_WHY = ("documents of one site share its verdict (and its TDMRep file), so sites, not documents or tokens, "
                "are the independent draws: each interval resamples the sites with replacement and recomputes the "
                "share over their documents (tokens)")


def _tdm_key(site: SiteConsent, url: str) -> str:
    if site.tdmrep_state == UNKNOWN:
        return UNKNOWN
    return {True: "reserved", False: "not_reserved", None: "unset"}[site.tdm_reserved(url)]


def _words(text: str) -> int:
    return len(text.split())


def corpus_consent(records: Sequence[Record], sites: Mapping[str, SiteConsent] | str | Path,
                   agents: Sequence[str], *, url_field: str = "url", as_of: dt.date | str | None = None,
                   count_tokens: Callable[[str], int] = _words, level: float = 0.95,
                   seed: int = 0) -> CorpusConsent:
    """Give every document its consent signals per agent and total them by documents and tokens.

    Args:
        records: The corpus; each record's URL is read from ``record.meta[url_field]``.
        sites: A snapshot folder (read as of ``as_of``) or sites already loaded by :func:`load_sites`.
        agents: Product tokens of the crawlers to audit (e.g. ``["GPTBot", "CCBot"]``).
        url_field: The field holding the URL.
        as_of: The date the verdicts hold on (only with a folder); default the latest snapshots.
        count_tokens: Tokens in a text; default whitespace-separated words. Pass a tokenizer's
            ``lambda t: len(tok(t).input_ids)`` for model tokens.
        level: Confidence level of the site-cluster bootstrap intervals of the shares.
        seed: Seeds the bootstrap.

    A document without a usable URL, or whose site has no snapshot, is counted as unknown,
    never dropped and never taken as allowed.
    """
    hosts = []
    for r in records:
        url = r.meta.get(url_field)
        hosts.append(host_of(url) if isinstance(url, str) else None)
    if isinstance(sites, (str, Path)):
        sites = load_sites(sites, as_of=as_of, hosts={h for h in hosts if h})
    elif as_of is not None:
        raise ValueError("as_of applies to a snapshot folder; sites already loaded carry their own date")
    docs = []
    for r, host in zip(records, hosts):
        url = r.meta.get(url_field)
        tokens = count_tokens(r.text)
        note = None
        if not isinstance(url, str):
            note = f"no {url_field!r} field" if url is None else f"{url_field!r} is not a string"
        elif host is None:
            note = f"URL {url!r} has no host name (a DNS name or an IP address)"
        site = sites.get(host) if host else None
        if site is None:
            site = SiteConsent(host or "")
        docs.append(DocumentConsent(
            id=r.id, url=url if isinstance(url, str) else None, host=host, tokens=tokens,
            site={a: site.verdict(a) for a in agents},
            allowed={a: site.can_fetch(url, a) for a in agents} if host else dict.fromkeys(agents),
            tdm_reserved=site.tdm_reserved(url) if host else None, note=note,
            tdm=_tdm_key(site, url) if host else UNKNOWN))
    return CorpusConsent(tuple(agents), tuple(docs), sites, level, seed)
