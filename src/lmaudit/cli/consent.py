"""``lmaudit consent``: did the sites a corpus came from let AI crawlers take it (robots.txt, TDMRep)?"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import command_line, end_run, fail, say, start_run
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, option_groups
from lmaudit.corpus.consent import AI_AGENTS

EXAMPLE = ("Example: lmaudit consent --robots lmaudit-demo/consent/robots --corpus lmaudit-demo/consent/corpus.jsonl "
           "--url-field url --as-of 2024-06-01 --out runs/consent\n\n"
           "--robots is a folder with one sub-folder per site (its host, lower case) holding dated snapshots: "
           "YYYY-MM-DD.txt (the robots.txt body), YYYY-MM-DD.status (an HTTP status such as 404 or 503, or "
           "'unreachable'), YYYY-MM-DD.tdmrep.json (the site's /.well-known/tdmrep.json) or YYYY-MM-DD.tdmrep.status "
           "(why there was none: 404 declares no reservation; 503, 'unreachable' or 'invalid' leave it unknown). "
           "Each site is read as of "
           "--as-of: its latest snapshot on or before that date; a site with none is 'unknown'.\n\n"
           "Writes OUT/samples.jsonl (one row per site: the verdict per agent, the snapshot used, malformed lines "
           "with their file and line), with --corpus OUT/documents.jsonl (one row per document), and "
           "OUT/results.json. A corpus row without a URL (or whose URL has no host) is kept and counted as 'no URL', "
           "unknown for every agent; a corpus where no row has --url-field is an error.\n\n"
           "Exit status: 0 when the audit ran; 2 when it could not (bad options, snapshot files or corpus; "
           "no results.json).")


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date (YYYY-MM-DD)")


@option_groups(omit=("split",))
def consent(
    robots: Annotated[Path, typer.Option(help="Folder of dated robots.txt snapshots, one sub-folder per site.")],
    out: OutDir,
    inputs: DataOptions,
    agents: str = typer.Option(",".join(AI_AGENTS), help="Comma-separated user-agent product tokens to audit "
                                                         "(default: common AI crawlers)."),
    as_of: Optional[str] = typer.Option(None, help="Date (YYYY-MM-DD) the verdicts hold on: each site's latest "
                                                   "snapshot on or before it (default: the latest snapshots)."),
    corpus: Optional[Path] = typer.Option(None, help="A corpus whose documents carry URLs: verdicts per document, "
                                                     "totals weighted by documents and tokens."),
    url_field: str = typer.Option("url", help="Field of --corpus holding each document's URL."),
    hosts: Optional[str] = typer.Option(None, help="Comma-separated hosts to audit besides --robots' folders "
                                                   "(with --fetch: the hosts to fetch, instead of the corpus's)."),
    fetch: bool = typer.Option(False, "--fetch", help="Fetch today's robots.txt and /.well-known/tdmrep.json of "
                                                      "every host (--hosts, else the corpus's) into --robots, then "
                                                      "audit as of today. Off by default: this goes on the network."),
    refetch: bool = typer.Option(False, "--refetch", help="With --fetch: fetch a site again even if --robots "
                                                          "already holds today's snapshot of it (replacing it)."),
    fetch_base: str = typer.Option("https://{host}", help="With --fetch: the URL each site's paths are appended "
                                                          "to, {host} replaced (a mirror, or a local server in "
                                                          "tests)."),
    fetch_timeout: float = typer.Option(10.0, min=0.1, help="With --fetch: seconds to wait for each answer."),
) -> None:
    """robots.txt verdicts per site and AI crawler (all / some / none of its paths, RFC 9309), TDMRep
    reservations, and with a corpus the share of its documents and tokens from sites that restrict each crawler."""
    from lmaudit.corpus.consent_run import check_agents, check_hosts, consent_to_dir, corpus_hosts
    from lmaudit.data import DataError

    try:
        agent_list = check_agents(agents.split(","))
        host_list = check_hosts(hosts.split(",")) if hosts else []
    except ValueError as err:
        fail(str(err))
    day = _date(as_of, "--as-of")
    if fetch:
        if day is not None:
            fail("--as-of with --fetch: a fetch audits as of today (audit an earlier date without --fetch)")
        if not host_list and corpus is None:
            fail("--fetch needs the hosts to fetch: --corpus (its URLs' hosts) or --hosts")
        if robots.exists() and not robots.is_dir():
            fail(f"--robots {robots} is a file, not a folder")
        from lmaudit.corpus.fetch import check_base

        try:
            check_base(fetch_base)
        except ValueError as err:
            fail(str(err))
    else:
        if refetch:
            fail("--refetch applies only with --fetch")
        if not robots.is_dir():
            fail(f"--robots {robots}: snapshot folder not found (or pass --fetch to fetch one)")
    if corpus is not None and not corpus.exists():
        fail(f"--corpus {corpus}: no such file or directory")
    robots_at, out_at = robots.resolve(), out.resolve()
    if out_at == robots_at or robots_at in out_at.parents:
        fail(f"--out {out} is inside --robots {robots}: every folder there is read as a site; write the run "
             "elsewhere")
    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    records, data = None, []
    if corpus is not None:
        records, entry = inputs.read(corpus, role="corpus")
        entry["url_field"] = url_field
        data.append(entry)
    log = None
    if fetch:
        from lmaudit.corpus.fetch import snapshot_hosts

        try:
            targets = host_list or corpus_hosts(records, url_field)
        except DataError as err:
            fail(str(err))
        day = dt.date.today()
        say(f"fetching robots.txt and tdmrep.json of {len(targets)} site{'s' if len(targets) != 1 else ''} "
            f"into {robots} as {day.isoformat()}")
        log = snapshot_hosts(robots, targets, day=day, base=fetch_base, refetch=refetch, timeout=fetch_timeout)
        kept = sum(1 for h in log["hosts"] if h["robots"]["outcome"] == "kept")
        unreachable = sum(1 for h in log["hosts"] if h["robots"].get("status", 0) is None)
        say(f"fetched {len(targets) - kept}, kept {kept} snapshot{'s' if kept != 1 else ''} of today "
            f"(--refetch replaces them); {unreachable} unreachable")
    try:
        results = consent_to_dir(robots, agent_list, out, as_of=day, records=records, url_field=url_field,
                                 hosts=host_list, data=data, fetch=log, command=command_line(), started=started)
    except (DataError, ValueError, RuntimeError) as err:
        fail(str(err))
    _tell(results, out)
    end_run(out, results, n_errors=0, rows="sites", why="")


def _tell(results: dict, out: Path) -> None:
    when = f"as of {results['as_of']}" if results["as_of"] else "latest snapshots"
    say(f"{results['n_sites']} sites, {len(results['agents'])} agents ({when}); "
        f"{results['malformed']['lines']} malformed robots.txt lines in {results['malformed']['sites']} "
        f"site{'s' if results['malformed']['sites'] != 1 else ''}")
    for agent, s in list(results["sites"].items())[:4]:
        c = s["counts"]
        line = f"  {agent}: sites all {c['all']}, some {c['some']}, none {c['none']}, unknown {c['unknown']}"
        if "corpus" in results:
            tok = results["corpus"]["agents"][agent]["restricted"]["tokens"]
            if tok["rate"] is not None:
                line += f"; tokens from restricting sites {tok['rate']:.1%} of {tok['n']:,}"
        say(line)
    corpus = results.get("corpus")
    if corpus and corpus["no_url"]["documents"]:
        say(f"{corpus['no_url']['documents']} documents have no URL with a host: counted as unknown "
            f"(their rows in {out}/documents.jsonl say why)")
    say(f"results in {out}/results.json, per-site rows in {out}/samples.jsonl"
        + (f", per-document rows in {out}/documents.jsonl" if corpus else ""))


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(consent)
