"""Fetching robots.txt and tdmrep.json live into a snapshot folder (``lmaudit consent --fetch``).

Off by default: an audit reads stored, dated snapshots, so that it can be repeated and
checked. Fetching is the explicit way to add today's snapshot of each site, as RFC 9309
section 2.3 describes a crawler's fetch:

* ``GET https://HOST/robots.txt`` with a User-Agent naming lmaudit and a timeout;
* redirects followed by hand, up to five (the RFC: "SHOULD follow at least five consecutive
  redirects, even across authorities"); a chain longer than that is recorded with its last
  3xx status, which :func:`lmaudit.corpus.robots.availability` reads as "unavailable";
* the body read up to 500 KiB (the RFC's minimum parsing limit; the rest may be ignored), and
  the truncation recorded;
* 2xx: the body is written to ``DATE.txt``; any other status to ``DATE.status``; no answer
  (refused, timed out, DNS failure, TLS error) to ``DATE.status`` as ``unreachable``.

``/.well-known/tdmrep.json`` is fetched the same way, and every outcome is recorded: a 2xx
body that parses as TDMRep is written to ``DATE.tdmrep.json``; anything else to
``DATE.tdmrep.status``: ``404`` or ``410`` (no file: the site declares no reservation, which
also ends an earlier file), another status, ``unreachable``, or ``invalid`` (a body that is not a
tdmrep.json; the fetch log gives the reason). Those last ones are "unknown": they end no earlier
record, and a site with no other record is left out of the TDMRep shares.

The robots snapshot (``DATE.txt`` or ``DATE.status``) marks the day as fetched: both files are
fetched first, today's robots snapshot removed, the TDMRep record written, and the robots
snapshot written last. A site with a robots snapshot of the date already is not fetched again
(its files are reported "kept") unless ``refetch``: a rerun never replaces what an earlier fetch
recorded the same day, and one stopped half-way (no robots snapshot) is fetched again in full.
Every file is written under a hidden temporary name (which the snapshot reader skips) and
renamed into place.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import string
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urljoin, urlsplit

from lmaudit.corpus.tdmrep import parse_tdmrep

DEFAULT_BASE = "https://{host}"
MAX_BYTES = 500 * 1024
MAX_REDIRECTS = 5
TIMEOUT = 10.0


def check_base(base: str) -> str:
    """``base`` checked as a ``--fetch-base`` template: ``{host}`` at least once and no other
    ``{...}`` field, conversion or format spec (``{{`` and ``}}`` stand for braces).

    >>> check_base("http://127.0.0.1:8000/{host}")
    'http://127.0.0.1:8000/{host}'

    Raises:
        ValueError: naming the template and the field that is not ``{host}``.
    """
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(base) if name is not None]
    except ValueError as err:  # a lone "{" or "}"
        raise ValueError(f"--fetch-base {base!r}: {err} (write {{{{ and }}}} for a literal brace)") from None
    for name, spec, conv in fields:
        if name != "host" or spec or conv:
            shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"--fetch-base {base!r}: {shown} is not a field it can fill; the only one is {{host}}")
    if not fields:
        raise ValueError(f"--fetch-base {base!r} must contain {{host}} (e.g. https://{{host}})")
    return base


def user_agent() -> str:
    """The User-Agent of every fetch: lmaudit, its version, and what it fetches for."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("lmaudit")
    except PackageNotFoundError:
        v = "dev"
    return f"lmaudit/{v} (consent audit: robots.txt and tdmrep.json only)"


@dataclass(frozen=True)
class Fetched:
    """One fetch: ``status`` None when there was no answer (``error`` says why)."""

    url: str
    final_url: str
    status: int | None
    body: bytes | None = None
    redirects: int = 0
    truncated: bool = False
    error: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urlopen then raises HTTPError with the 3xx, and the loop below follows it


def fetch(url: str, *, timeout: float = TIMEOUT, max_bytes: int = MAX_BYTES,
          max_redirects: int = MAX_REDIRECTS) -> Fetched:
    """GET ``url`` as RFC 9309 fetches a robots.txt (see the module doc); never raises for the network."""
    current, redirects = url, 0
    headers = {"User-Agent": user_agent()}
    opener = urllib.request.build_opener(_NoRedirect)  # per call: proxies as the environment says now
    while True:
        try:
            with opener.open(urllib.request.Request(current, headers=headers), timeout=timeout) as resp:
                body = resp.read(max_bytes + 1)
                return Fetched(url, current, resp.status, body[:max_bytes], redirects, len(body) > max_bytes)
        except urllib.error.HTTPError as err:
            location = err.headers.get("Location") if 300 <= err.code < 400 else None
            err.close()
            if location is None:
                return Fetched(url, current, err.code, None, redirects)
            if redirects >= max_redirects:
                return Fetched(url, current, err.code, None, redirects,
                               error=f"more than {max_redirects} redirects")
            nxt = urljoin(current, location)
            if urlsplit(nxt).scheme not in ("http", "https"):
                return Fetched(url, current, None, None, redirects, error=f"redirect to a non-HTTP URL {nxt!r}")
            current, redirects = nxt, redirects + 1
        except (urllib.error.URLError, HTTPException, socket.timeout, TimeoutError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            return Fetched(url, current, None, None, redirects, error=f"{type(err).__name__}: {reason}")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _log(f: Fetched) -> dict:
    d = asdict(f)
    body = d.pop("body")
    d["bytes"] = None if body is None else len(body)
    return d


def snapshot_host(folder: str | Path, host: str, *, day: dt.date, base: str = DEFAULT_BASE, refetch: bool = False,
                  timeout: float = TIMEOUT, fetcher: Callable[..., Fetched] = fetch) -> dict:
    """Fetch ``host``'s robots.txt and tdmrep.json into ``folder/host`` as ``day``'s snapshot.

    ``base`` is the URL template the paths are appended to (``{host}`` replaced), by default
    ``https://{host}``; tests and mirrors pass another. Returns the host's fetch log entry.
    """
    site = Path(folder) / host
    if site.resolve().parent != Path(folder).resolve():
        raise ValueError(f"{host!r} is not a host name: {site} would not be a folder directly inside {folder}")
    site.mkdir(parents=True, exist_ok=True)
    root = base.format(host=host).rstrip("/")
    stamp = day.isoformat()
    txt, status = site / f"{stamp}.txt", site / f"{stamp}.status"
    tdm, tdm_status = site / f"{stamp}.tdmrep.json", site / f"{stamp}.tdmrep.status"
    entry: dict = {"host": host}
    if (txt.exists() or status.exists()) and not refetch:
        # The robots snapshot is written last, so its presence means the whole day was recorded.
        entry["robots"] = {"outcome": "kept", "file": str(txt if txt.exists() else status)}
        entry["tdmrep"] = {"outcome": "kept", "file": next((str(p) for p in (tdm, tdm_status) if p.exists()), None)}
        return entry
    robots_f = fetcher(f"{root}/robots.txt", timeout=timeout)
    tdm_f = fetcher(f"{root}/.well-known/tdmrep.json", timeout=timeout)
    # The day's robots snapshot marks it as fetched: removed first and written last, so that a run
    # stopped anywhere in between leaves none, and the next run fetches the site again in full.
    txt.unlink(missing_ok=True)
    status.unlink(missing_ok=True)
    entry["tdmrep"] = _record_tdmrep(tdm_f, tdm, tdm_status)
    if robots_f.status is not None and 200 <= robots_f.status < 300:
        _write(txt, robots_f.body or b"")
        written = txt
    else:
        _write(status, f"{'unreachable' if robots_f.status is None else robots_f.status}\n".encode())
        written = status
    entry["robots"] = {"outcome": "written", "file": str(written), **_log(robots_f)}
    return {"host": host, "robots": entry["robots"], "tdmrep": entry["tdmrep"]}  # robots first, as before


def _record_tdmrep(f: Fetched, tdm: Path, tdm_status: Path) -> dict:
    """Write the day's TDMRep record: the file, or a ``.tdmrep.status`` saying why there is none."""
    log = _log(f)
    record, why = None, None
    if f.status is not None and 200 <= f.status < 300:
        try:
            parse_tdmrep((f.body or b"").decode("utf-8"), source=f.final_url)
        except (ValueError, UnicodeDecodeError) as err:  # a JSON error is a ValueError too
            record, why = "invalid", str(err)
    else:
        record = "unreachable" if f.status is None else str(f.status)
    if record is None:
        tdm_status.unlink(missing_ok=True)
        _write(tdm, f.body or b"")
        return {"outcome": "written", "file": str(tdm), **log}
    tdm.unlink(missing_ok=True)
    _write(tdm_status, f"{record}\n".encode())
    if record in ("404", "410"):
        outcome = "absent: the site declares no reservation"
    else:
        outcome = (f"{'invalid' if record == 'invalid' else 'no file'} ({record}): TDMRep unknown this day; "
                   "an earlier record stays in force")
    return {"outcome": outcome, "file": str(tdm_status), **({"reason": why} if why else {}), **log}


def snapshot_hosts(folder: str | Path, hosts: Sequence[str], *, day: dt.date | None = None,
                   base: str = DEFAULT_BASE, refetch: bool = False, timeout: float = TIMEOUT, workers: int = 8,
                   fetcher: Callable[..., Fetched] = fetch) -> dict:
    """:func:`snapshot_host` for every host (``workers`` at a time); the fetch log of a run.

    Returns:
        ``{"date", "base", "user_agent", "max_bytes", "max_redirects", "timeout", "hosts": [...]}``
        with one entry per host, in the order given.
    """
    check_base(base)
    day = day or dt.date.today()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        entries = list(pool.map(lambda h: snapshot_host(folder, h, day=day, base=base, refetch=refetch,
                                                        timeout=timeout, fetcher=fetcher), hosts))
    return {"date": day.isoformat(), "base": base, "user_agent": user_agent(), "max_bytes": MAX_BYTES,
            "max_redirects": MAX_REDIRECTS, "timeout": timeout, "hosts": entries}
