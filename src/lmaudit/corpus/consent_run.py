"""``lmaudit consent`` in Python: per-site verdicts, corpus weighting and the files of a run.

:func:`run_consent` reads a snapshot folder as of a date (see :mod:`lmaudit.corpus.consent`
for its layout) and, given a corpus, weights the verdicts by documents and tokens;
:func:`consent_to_dir` writes the run: ``samples.jsonl`` (one row per site), with a corpus
``documents.jsonl`` (one row per document), and ``results.json``.

Site shares. For each agent, the sites with a snapshot split into all / some / none; each
share has an exact (Clopper-Pearson) interval over those sites, and ``unknown`` (no
snapshot on or before the date) is a share of every site audited. The intervals treat the
sites as a sample from the sites a corpus like this one draws from; for the sites listed
and no others, the counts are exact and the intervals can be ignored.

Corpus shares (documents and tokens from restricting sites, TDMRep reservations) have a
site-cluster bootstrap interval instead (see :mod:`lmaudit.corpus.consent`): every document of
a site shares its verdict, so the sites are the draws there too.

Documents without a URL. A corpus row whose URL field is missing, not a string, or a URL
with no host is kept: its document counts as ``unknown`` for every agent (never as allowed),
its row in documents.jsonl says why (``note``) and where (``line``), and ``corpus.no_url``
counts them. Only a corpus where *no* row has the field is an error (a misspelt
``--url-field`` would otherwise make every document unknown).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable, Iterable, Sequence

from lmaudit.corpus.consent import VERDICTS, SiteConsent, _words, corpus_consent, host_of, load_sites
from lmaudit.corpus.robots import NONE, SOME, UNKNOWN, RobotsTxt
from lmaudit.data import DataError, Record, sha256_file
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.stats import rate_summary



def check_agents(agents: Sequence[str]) -> list[str]:
    """``agents`` as given, checked: product tokens (letters, ``_``, ``-``), none twice in any case.

    Raises:
        ValueError: an empty list, a value that is not a product token, or a repeated agent.
    """
    agents = [a.strip() for a in agents if a.strip()]
    if not agents:
        raise ValueError("--agents names no agent")
    probe = RobotsTxt.parse("")
    seen: dict[str, str] = {}
    for a in agents:
        try:
            probe.effective_rules(a)
        except ValueError:
            raise ValueError(f"--agents: {a!r} is not a user-agent product token (letters, '_' and '-' only, "
                             "e.g. GPTBot, Google-Extended)") from None
        if a.lower() in seen:
            raise ValueError(f"--agents names {seen[a.lower()]!r} and {a!r}: product tokens match case-insensitively, "
                             "so they are one agent")
        seen[a.lower()] = a
    return agents


def check_hosts(hosts: Iterable[str]) -> list[str]:
    """Host names as snapshot folders name them (lower case, ``:port`` if any), checked.

    Each becomes a folder under the snapshot folder (and ``--fetch`` writes into it), so only
    a DNS name or an IP literal is accepted (:func:`lmaudit.corpus.consent.valid_host`): ``..``
    or ``.`` would name the snapshot folder's parent or the folder itself.

    Raises:
        ValueError: a value with a scheme, a path, user info, or a host that is neither a DNS
            name (letters, digits, hyphens; no empty label) nor an IP literal.
    """
    out = []
    for h in hosts:
        h = h.strip()
        if not h:
            continue
        parsed = host_of(f"https://{h}")
        if (parsed is None or any(c in h for c in "/\\@?#") or (h.isascii() and parsed != h.lower())):
            raise ValueError(f"--hosts: {h!r} is not a host name (a DNS name such as example.com, or an IP "
                             "address, with :port if any; no scheme or path)")
        out.append(parsed)
    return sorted(set(out))


def corpus_hosts(records: Sequence[Record], url_field: str) -> list[str]:
    """The hosts of the corpus's URLs (sorted, each once).

    Raises:
        DataError: no row has ``url_field`` (naming the file and the first row's line).
    """
    if records and not any(url_field in r.meta for r in records):
        first = records[0]
        raise DataError(f"{first.source}:{first.line}: no row has the field {url_field!r} (the URL of each "
                        f"document; fields of this row: {', '.join(sorted(first.meta)) or 'none'}); "
                        "pass --url-field")
    return sorted({h for r in records if isinstance(u := r.meta.get(url_field), str) and (h := host_of(u))})


def _snapshot_files(folder: Path, site: SiteConsent) -> list[dict]:
    """The files a site's verdicts and TDMRep were read from (path, date, role, sha256)."""
    out = []
    if site.snapshot is not None:
        for suffix, role in (("txt", "robots.txt"), ("status", "robots status")):
            path = folder / site.host / f"{site.snapshot.isoformat()}.{suffix}"
            if path.is_file():
                out.append({"host": site.host, "role": role, "date": site.snapshot.isoformat(), "path": str(path),
                            "sha256": sha256_file(path)})
    if site.tdmrep_file is not None:
        path = Path(site.tdmrep_file)
        out.append({"host": site.host, "role": "tdmrep.json" if site.tdmrep is not None else "tdmrep status",
                    "date": site.tdmrep_snapshot.isoformat(), "path": str(path), "sha256": sha256_file(path)})
    return out


def _notes(site: SiteConsent, kind: str) -> list[dict]:
    if site.robots is None:
        return []
    return [{"file": site.robots_file, "line": n.line, "text": n.text, "reason": n.reason}
            for n in getattr(site.robots, kind)]


def _site_row(site: SiteConsent, agents: Sequence[str], n_documents: int | None) -> dict:
    d = site.to_dict(agents)
    row = {"host": site.host, "snapshot": d["snapshot"], "status": d.get("status"),
           "availability": d.get("availability"), "robots_file": d["robots_file"],
           "verdict": {a: v["verdict"] for a, v in d["agents"].items()}, "agents": d["agents"]}
    malformed, repaired = _notes(site, "malformed"), _notes(site, "repaired")
    row |= {"n_malformed": len(malformed), "malformed": malformed, "n_repaired": len(repaired), "repaired": repaired,
            "tdmrep_snapshot": d["tdmrep_snapshot"], "tdmrep": d.get("tdmrep"), "tdmrep_state": d["tdmrep_state"],
            "tdmrep_status": d["tdmrep_status"]}
    if n_documents is not None:
        row["n_documents"] = n_documents
    return row


def _site_shares(rows: list[dict], agents: Sequence[str], level: float) -> dict:
    out = {}
    for a in agents:
        counts = dict.fromkeys(VERDICTS, 0)
        for r in rows:
            counts[r["verdict"][a]] += 1
        n, known = len(rows), len(rows) - counts[UNKNOWN]
        out[a] = {"n": n, "n_known": known, "counts": counts,
                  **{v: rate_summary(counts[v], known, level=level) for v in VERDICTS if v != UNKNOWN},
                  "restricted": rate_summary(counts[SOME] + counts[NONE], known, level=level),
                  "unknown": rate_summary(counts[UNKNOWN], n, level=level)}
    return out


def _line_counts(rows: list[dict], key: str) -> dict:
    by_site = {r["host"]: r[f"n_{key}"] for r in rows if r[f"n_{key}"]}
    return {"lines": sum(by_site.values()), "sites": len(by_site), "by_site": by_site}


def run_consent(robots: str | Path, agents: Sequence[str], *, as_of: dt.date | str | None = None,
                records: Sequence[Record] | None = None, url_field: str = "url", hosts: Iterable[str] = (),
                count_tokens: Callable[[str], int] = _words, token_unit: str = "whitespace-separated words",
                level: float = 0.95) -> RunResult:
    """The consent audit of the sites in ``robots`` (and of ``hosts`` and the corpus's hosts).

    Args:
        robots: The snapshot folder.
        agents: Product tokens to audit (see :data:`lmaudit.corpus.consent.AI_AGENTS`).
        as_of: The date verdicts hold on; default each site's latest snapshot.
        records: A corpus; each record's URL is ``record.meta[url_field]``.
        hosts: Sites to report even without a snapshot folder (they come out unknown).
        count_tokens: Tokens of a text, named by ``token_unit``.
        level: Confidence level of every interval.

    Returns:
        A :class:`RunResult`: results with ``as_of``, ``agents``, ``n_sites``, per-agent site
        shares (``sites``), ``availability``, ``malformed`` and ``repaired`` line counts
        (total, sites, per site), ``tdmrep`` (sites with a file, sites reserving something, sites
        declaring none, sites whose TDMRep is unknown),
        and with a corpus ``corpus`` (:meth:`CorpusConsent.totals` plus ``no_url``); samples:
        one row per site; provenance: ``snapshots`` (every file read, with its sha256).
        With a corpus, ``documents`` (one row per document) is added to the results object
        under ``_documents`` for :func:`consent_to_dir` to write (and popped there).

    Raises:
        ValueError: a bad agent, a bad snapshot folder or file (naming it).
        DataError: no corpus row has ``url_field``.
    """
    agents = check_agents(agents)
    if isinstance(as_of, str):
        as_of = dt.date.fromisoformat(as_of)
    extra_hosts = set(check_hosts(hosts))
    if records is not None:
        extra_hosts |= set(corpus_hosts(records, url_field))
    folder = Path(robots)
    sites = load_sites(folder, as_of=as_of, hosts=extra_hosts)
    corpus = None
    per_host: dict[str, int] = {}
    if records is not None:
        corpus = corpus_consent(records, sites, agents, url_field=url_field, count_tokens=count_tokens, level=level)
        for d in corpus.documents:
            if d.host:
                per_host[d.host] = per_host.get(d.host, 0) + 1
    rows = [_site_row(s, agents, per_host.get(h, 0) if corpus else None) for h, s in sites.items()]
    availability = {"ok": 0, "unavailable": 0, "unreachable": 0, "no snapshot": 0}
    for r in rows:
        availability[r["availability"] or "no snapshot"] += 1
    tdm_sites = {r["host"]: {"snapshot": r["tdmrep_snapshot"], "rules": len(r["tdmrep"]),
                             "reserving_rules": sum(t["tdm-reservation"] for t in r["tdmrep"])}
                 for r in rows if r["tdmrep"] is not None}
    results: dict = {
        "as_of": as_of.isoformat() if as_of else None,
        "agents": list(agents),
        "n_sites": len(rows),
        "sites": _site_shares(rows, agents, level),
        "availability": availability,
        "malformed": _line_counts(rows, "malformed"),
        "repaired": _line_counts(rows, "repaired"),
        "tdmrep": {"sites_with_file": len(tdm_sites),
                   "sites_reserving": sum(1 for t in tdm_sites.values() if t["reserving_rules"]),
                   "sites_declaring_none": sum(1 for r in rows if r["tdmrep_state"] == "none"),
                   "sites_unknown": sum(1 for r in rows if r["tdmrep_state"] == UNKNOWN), "by_site": tdm_sites},
        "level": level,
        "n_errors": 0,
    }
    results["repaired"]["not_utf8_lines"] = sum(1 for r in rows for n in r["repaired"]
                                                if n["reason"].startswith("not UTF-8"))
    if corpus is not None:
        totals = corpus.totals()
        no_url = [d for d in corpus.documents if d.host is None]
        totals["no_url"] = {"documents": len(no_url), "tokens": sum(d.tokens for d in no_url)}
        totals |= {"url_field": url_field, "token_unit": token_unit}
        results["corpus"] = totals
        results["_documents"] = [{**row, "line": r.line, "source": r.source}
                                 for row, r in zip(corpus.rows(), records)]
    snapshots = [f for s in sites.values() for f in _snapshot_files(folder, s)]
    provenance = {"robots": str(folder), "as_of": results["as_of"], "agents": list(agents), "snapshots": snapshots}
    return RunResult(results=results, samples=rows, provenance=provenance)


def consent_to_dir(robots: str | Path, agents: Sequence[str], out: str | Path, *, as_of: dt.date | str | None = None,
                   records: Sequence[Record] | None = None, url_field: str = "url", hosts: Iterable[str] = (),
                   count_tokens: Callable[[str], int] = _words, token_unit: str = "whitespace-separated words",
                   level: float = 0.95, data: list[dict] | None = None, fetch: dict | None = None,
                   command: str = "consent", started: float | None = None) -> dict:
    """:func:`run_consent`, then write ``samples.jsonl`` (sites), ``documents.jsonl`` (with a
    corpus) and ``results.json`` into ``out``; ``fetch`` (what a live fetch did) is recorded as is."""
    with RunWriter(out, kind="consent", command=command, started=started) as run:
        result = run_consent(robots, agents, as_of=as_of, records=records, url_field=url_field, hosts=hosts,
                             count_tokens=count_tokens, token_unit=token_unit, level=level)
        r = result.results
        documents = r.pop("_documents", None)
        run.samples(result.samples)
        if documents is not None:
            run.samples(documents, name="documents")
        if fetch is not None:
            r["fetch"] = fetch
        summary = {"as_of": r["as_of"], "n_sites": r["n_sites"], "n_agents": len(r["agents"]),
                   "malformed_lines": r["malformed"]["lines"],
                   "restricted_sites": {a: s["restricted"]["rate"] for a, s in r["sites"].items()}}
        if "corpus" in r:
            summary["n_documents"] = r["corpus"]["documents"]
            summary["restricted_tokens"] = {a: s["restricted"]["tokens"]["rate"]
                                            for a, s in r["corpus"]["agents"].items()}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=r)
