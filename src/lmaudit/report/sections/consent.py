"""Consent (kind ``consent``): which sites let which AI crawlers take their pages, as of a date;
with a corpus, the share of its documents and tokens from sites that restrict each crawler
(the Data Provenance Initiative's figure); TDMRep reservations; the robots.txt lines ignored."""

from __future__ import annotations

import json
from pathlib import Path

from lmaudit.report.fmt import num, pct
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import cell, phrase

VERDICT_WORDS = {"all": "all", "some": "some", "none": "none", "unknown": "unknown"}
SOURCE_WORDS = {"agent": "its own group", "*": "the * group", "none": "no group applies",
                "unavailable": "robots.txt answered 4xx", "unreachable": "robots.txt unreachable or 5xx"}


def _when(results: dict) -> str:
    return f"as of {results['as_of']}" if results.get("as_of") else "at each site's latest snapshot"


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _grouped(figures: list[tuple[str, str]]) -> str:
    """Agents with the same figure named together, in the order first seen: "GPTBot and ClaudeBot 8 of
    10 (...); CCBot 6 of 10 (...)" (eleven agents, most with one figure, read as two or three groups)."""
    groups: dict[str, list[str]] = {}
    for agent, figure in figures:
        groups.setdefault(figure, []).append(agent)
    return "; ".join(f"{_list(agents)}: {figure}" for figure, agents in groups.items())


INTERVAL_SENTENCE = ("Corpus intervals are site-cluster bootstrap intervals: every document of a site shares its "
                     "verdict, so the sites, not the documents or tokens, are resampled.")


def _token_share(t: dict) -> str:
    """ "62.0% of tokens (95% CI 40.1%-80.2%)", the interval when there is one."""
    ci = t.get("ci")
    tail = f" (95% CI {pct(ci[0])}-{pct(ci[1])})" if ci and len(ci) == 2 else ""
    return f"{pct(t.get('rate'))} of tokens{tail}"


def verdict(results: dict) -> tuple[list[str], str, list[str]]:
    """The verdict sentences, their level (always a measurement) and the warnings."""
    agents = results.get("agents") or []
    sites = results.get("sites") or {}
    n_sites = results.get("n_sites") or 0
    warnings: list[str] = []
    if not agents or not n_sites:
        return ["No site was audited: the snapshot folder and the corpus name none."], "warning", warnings
    known = sites[agents[0]]["n_known"]
    unknown = n_sites - known
    parts = [(a, phrase(sites[a]["restricted"]["k"], known, sites[a]["restricted"]["ci"])) for a in agents]
    sentences = [f"{_when(results).capitalize()}, of the {num(known)} site{'s' if known != 1 else ''} with a robots.txt "
                 f"snapshot, those restricting each AI crawler (on some or all of their paths): {_grouped(parts)}."]
    if unknown:
        warnings.append(f"{num(unknown)} of {num(n_sites)} sites {'has' if unknown == 1 else 'have'} no snapshot on or before the date: their "
                        "verdicts are 'unknown', left out of the site shares and never counted as allowed.")
    corpus = results.get("corpus")
    if corpus:
        first = corpus["agents"][agents[0]]["restricted"]
        n_docs, n_tok = first["documents"]["n"], first["tokens"]["n"]
        parts = []
        for a in agents:
            r = corpus["agents"][a]["restricted"]
            parts.append((a, f"{_token_share(r['tokens'])}, "
                             f"{phrase(r['documents']['k'], n_docs, r['documents']['ci'], 'documents')}"))
        sentences.append(f"Of the corpus's {num(n_docs)} documents ({num(n_tok)} {corpus.get('token_unit', 'tokens')}) "
                         f"from sites with a snapshot, the share from sites restricting each crawler: {_grouped(parts)}. "
                         f"{INTERVAL_SENTENCE}")
        left = corpus["documents"] - n_docs
        if left:
            no_url = (corpus.get("no_url") or {}).get("documents", 0)
            why = f" ({num(no_url)} without a URL with a host)" if no_url else ""
            warnings.append(f"{num(left)} of {num(corpus['documents'])} documents are unknown{why}: not in the "
                            "shares, never counted as allowed.")
        tdm = corpus.get("tdmrep") or {}
        if tdm:
            t_known = corpus["documents"] - tdm["documents"]["unknown"]
            r = tdm["reserved"]
            sentences.append(f"TDMRep: {phrase(r['documents']['k'], t_known, r['documents']['ci'], 'documents')} "
                             f"fall under a text-and-data-mining reservation ({_token_share(r['tokens'])}); "
                             f"{num(tdm['documents']['unset'])} are on sites or paths that declare none"
                             + (f"; {num(tdm['documents']['unknown'])} are unknown (no usable URL, no snapshot, or "
                                "the site's robots.txt or tdmrep.json could not be fetched) and left out"
                                if tdm['documents'].get('unknown') else "") + ".")
    t = results.get("tdmrep") or {}
    with_file, reserving = t.get("sites_with_file", 0), t.get("sites_reserving", 0)
    sentences.append(f"{num(with_file)} of {num(n_sites)} sites {'publishes' if with_file == 1 else 'publish'} a "
                     "/.well-known/tdmrep.json" + (f"; {num(reserving)} of them {'reserves' if reserving == 1 else 'reserve'} "
                                                   "text-and-data-mining rights on some path" if with_file else "") + ".")
    m, rep = results.get("malformed") or {}, results.get("repaired") or {}
    sentences.append(f"{num(m.get('lines', 0))} robots.txt line{'s' if m.get('lines', 0) != 1 else ''} in "
                     f"{num(m.get('sites', 0))} site{'s' if m.get('sites', 0) != 1 else ''} are malformed and ignored, "
                     f"as RFC 9309 says; {num(rep.get('lines', 0))} more were read leniently"
                     + (f" ({num(rep['not_utf8_lines'])} not UTF-8)" if rep.get("not_utf8_lines") else "") + ".")
    return sentences, "info", warnings


def _site_table(samples: list[dict], agents: list[str]) -> list[dict]:
    rows = []
    for s in samples:
        details = s.get("agents") or {}
        cells = []
        for a in agents:
            v = (s.get("verdict") or {}).get(a, "unknown")
            d = details.get(a) or {}
            how = [f"from {SOURCE_WORDS.get(d.get('source'), d.get('source'))}"] if d.get("source") else []
            if d.get("disallowed_example") and v == "some":
                how.append(f"e.g. {d['disallowed_example']} disallowed, {d.get('allowed_example')} allowed")
            cells.append({"word": VERDICT_WORDS.get(v, v), "title": "; ".join(how)})
        status = s.get("availability") or "no snapshot"
        if s.get("status") not in (None, 200):
            status += f" ({s['status']})"
        rows.append({"host": s.get("host"), "snapshot": s.get("snapshot") or "none", "status": status, "cells": cells,
                     "n_documents": s.get("n_documents")})
    return rows


def _documents(run: Run) -> list[dict]:
    entry = (run.results.get("files") or {}).get("documents")
    if not isinstance(entry, dict):
        return []
    path = Path(run.dir) / str(entry.get("path", ""))
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return []  # the loader has listed the problem already


@sections.register("consent")
def consent(run: Run, page: Page) -> Section:
    r = run.results
    agents = list(r.get("agents") or [])
    sentences, level, warnings = verdict(r)
    sites = r.get("sites") or {}
    shares = []
    for a in agents:
        s = sites.get(a) or {}
        c = s.get("counts") or {}
        shares.append({"agent": a, **{v: cell(c.get(v), s.get("n_known"), (s.get(v) or {}).get("ci"))
                                      for v in ("all", "some", "none")},
                       "restricted": cell(s.get("restricted", {}).get("k"), s.get("n_known"),
                                          s.get("restricted", {}).get("ci")),
                       "unknown": f"{num(c.get('unknown'))} of {num(s.get('n'))}"})
    corpus_rows = []
    corpus = r.get("corpus")
    if corpus:
        for a in agents:
            c = corpus["agents"][a]
            corpus_rows.append({
                "agent": a,
                "documents": cell(c["restricted"]["documents"]["k"], c["restricted"]["documents"]["n"],
                                  c["restricted"]["documents"]["ci"]),
                "tokens": cell(c["restricted"]["tokens"]["k"], c["restricted"]["tokens"]["n"],
                               c["restricted"]["tokens"].get("ci")),
                "fully": f"{pct(c['fully_restricted']['tokens']['rate'])}",
                "url": cell(c["disallowed"]["documents"]["k"], c["disallowed"]["documents"]["n"],
                            c["disallowed"]["documents"]["ci"])})
    notes = [{"host": s.get("host"), **n, "kind": kind} for s in run.samples
             for kind, key in (("malformed (ignored)", "malformed"), ("read leniently", "repaired"))
             for n in (s.get(key) or [])]
    tdm = [{"host": s["host"], "snapshot": s.get("tdmrep_snapshot"), "rules": s["tdmrep"]}
           for s in run.samples if s.get("tdmrep") is not None]
    documents = _documents(run)
    browser = None
    if documents:
        flat = [{"id": d.get("id"), "url": d.get("url"), "tokens": d.get("tokens"),
                 "tdm": (d.get("tdm") or {True: "reserved", False: "not_reserved", None: "unset"}.get(
                     d.get("tdm_reserved"), "unset")).replace("_", " "),
                 "note": d.get("note") or "",
                 **{f"site:{a}": (d.get("site") or {}).get(a) for a in agents},
                 **{f"url:{a}": (d.get("allowed") or {}).get(a) for a in agents}} for d in documents]
        columns = [Column("id", "id"), Column("url", "URL"), Column("tokens", "tokens", "num"),
                   *[Column(f"site:{a}", f"{a}: site") for a in agents],
                   *[Column(f"url:{a}", f"{a}: may fetch this URL", "bool") for a in agents],
                   Column("tdm", "TDMRep"), Column("note", "note")]
        browser = page.samples(f"{run.name}-consent-documents", flat, columns, sort="tokens",
                               caption="Documents, most tokens first")
    snapshots = (run.provenance.get("snapshots") or [])
    return Section(
        title="Consent: robots.txt and TDMRep", verdict=sentences, level=level, warnings=warnings,
        guide="guide-consent",
        body=page.render("consent.html.j2", agents=agents, as_of=r.get("as_of"), sites=_site_table(run.samples, agents),
                         shares=shares, corpus=corpus, corpus_rows=corpus_rows, notes=notes, tdm=tdm,
                         availability=r.get("availability") or {}, n_snapshots=len(snapshots), browser=browser,
                         fetch=r.get("fetch"), tdm_unknown=(r.get("tdmrep") or {}).get("sites_unknown")),
    )
