"""Live fetching (lmaudit.corpus.fetch, `lmaudit consent --fetch`) against a local HTTP server:
200, 404, 503, redirects (five followed, a longer chain given up), a timeout, a closed port, a
body over 500 KiB, an invalid tdmrep.json and a dropped one. No internet: 127.0.0.1 only."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.corpus.consent import load_site, verdicts
from lmaudit.corpus.fetch import MAX_BYTES, fetch, snapshot_hosts
from lmaudit.corpus.robots import ALL, NONE, SOME

DAY = dt.date(2025, 1, 2)
GPT_NONE = b"User-agent: GPTBot\nDisallow: /\n"
RESERVE_ALL = b'[{"location": "/", "tdm-reservation": 1}]'
BIG = b"User-agent: *\n" + b"# filler line of a very long robots.txt\n" * 14000 + b"Disallow: /\n"  # > 500 KiB


def _routes(path: str):
    """(status, headers, body, delay) for a request path ``/HOST/...``."""
    host, _, rest = path.lstrip("/").partition("/")
    rest = "/" + rest
    robots, tdm = rest == "/robots.txt", rest == "/.well-known/tdmrep.json"
    if host == "ok.test":
        return (200, {}, GPT_NONE, 0) if robots else (200, {}, RESERVE_ALL, 0) if tdm else (404, {}, b"", 0)
    if host == "missing.test":
        return 404, {}, b"not here", 0
    if host == "busy.test":
        return 503, {}, b"busy", 0
    if host == "moved.test":  # a relative redirect to another site's file
        return (301, {"Location": "/ok.test/robots.txt"}, b"", 0) if robots else (404, {}, b"", 0)
    if host == "chain.test":  # exactly five redirects, then the file
        if robots:
            return 302, {"Location": "/chain.test/hop/1"}, b"", 0
        if rest.startswith("/hop/"):
            n = int(rest.rsplit("/", 1)[1])
            return 302, {"Location": f"/chain.test/hop/{n + 1}" if n < 4 else "/chain.test/final"}, b"", 0
        if rest == "/final":
            return 200, {}, b"User-agent: *\nDisallow: /x\n", 0
        return 404, {}, b"", 0
    if host == "loop.test":  # redirects for ever
        return 302, {"Location": path}, b"", 0
    if host == "slow.test":
        return 200, {}, GPT_NONE, 4
    if host == "big.test":
        return (200, {}, BIG, 0) if robots else (404, {}, b"", 0)
    if host == "badtdm.test":
        return (200, {}, b"", 0) if robots else (200, {}, b"{not json", 0)
    return 404, {}, b"", 0


@pytest.fixture(scope="module")
def server():
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("User-Agent", "")))
            status, headers, body, delay = _routes(self.path)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout case)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # the default 5 drops the SYNs of eight parallel fetches: a 1 s retry

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # a proxy set for the machine must not catch these
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_fetch_follows_five_redirects_gives_up_after_and_truncates(server):
    base, seen = server
    f = fetch(f"{base}/chain.test/robots.txt")
    assert f.status == 200 and f.redirects == 5 and f.body == b"User-agent: *\nDisallow: /x\n"
    before = len(seen)
    f = fetch(f"{base}/loop.test/robots.txt")
    assert f.status == 302 and f.redirects == 5 and "more than 5 redirects" in f.error
    assert len(seen) - before == 6  # the first request and five redirects followed
    f = fetch(f"{base}/big.test/robots.txt")
    assert f.truncated and len(f.body) == MAX_BYTES == 500 * 1024
    f = fetch(f"{base}/slow.test/robots.txt", timeout=0.3)
    assert f.status is None and "timed out" in f.error.lower()
    f = fetch(f"http://127.0.0.1:{_closed_port()}/x/robots.txt")
    assert f.status is None and f.error
    assert all(ua.startswith("lmaudit/") for _, ua in seen)


HOSTS = ["ok.test", "missing.test", "busy.test", "moved.test", "chain.test", "loop.test", "slow.test", "big.test",
         "badtdm.test"]


def test_snapshots_written_as_dated_files_and_audited(server, tmp_path):
    base, _ = server
    robots = tmp_path / "robots"
    (robots / "missing.test").mkdir(parents=True)
    (robots / "missing.test" / "2024-01-01.tdmrep.json").write_bytes(RESERVE_ALL)  # dropped since
    log = snapshot_hosts(robots, HOSTS, day=DAY, base=base + "/{host}", timeout=2)
    entries = {e["host"]: e for e in log["hosts"]}
    d = "2025-01-02"
    assert (robots / "ok.test" / f"{d}.txt").read_bytes() == GPT_NONE
    assert (robots / "ok.test" / f"{d}.tdmrep.json").read_bytes() == RESERVE_ALL
    assert (robots / "missing.test" / f"{d}.status").read_text() == "404\n"
    # Every TDMRep outcome is recorded: 404 (no file; ends the earlier reservation), 503, invalid.
    assert (robots / "missing.test" / f"{d}.tdmrep.status").read_text() == "404\n"
    assert not (robots / "missing.test" / f"{d}.tdmrep.json").exists()
    assert (robots / "busy.test" / f"{d}.status").read_text() == "503\n"
    assert (robots / "busy.test" / f"{d}.tdmrep.status").read_text() == "503\n"
    assert not (robots / "busy.test" / f"{d}.tdmrep.json").exists()
    assert (robots / "slow.test" / f"{d}.tdmrep.status").read_text() == "unreachable\n"
    assert (robots / "moved.test" / f"{d}.txt").read_bytes() == GPT_NONE
    assert entries["moved.test"]["robots"]["final_url"].endswith("/ok.test/robots.txt")
    assert (robots / "loop.test" / f"{d}.status").read_text() == "302\n"
    assert (robots / "slow.test" / f"{d}.status").read_text() == "unreachable\n"
    assert entries["big.test"]["robots"]["truncated"] and (robots / "big.test" / f"{d}.txt").stat().st_size == MAX_BYTES
    assert entries["badtdm.test"]["tdmrep"]["outcome"].startswith("invalid")
    assert "not valid JSON" in entries["badtdm.test"]["tdmrep"]["reason"]
    assert not (robots / "badtdm.test" / f"{d}.tdmrep.json").exists()
    assert (robots / "badtdm.test" / f"{d}.tdmrep.status").read_text() == "invalid\n"
    states = {h: load_site(robots, h, as_of=DAY).tdmrep_state for h in HOSTS}
    assert states == {"ok.test": "file", "missing.test": "none", "busy.test": "unknown", "moved.test": "none",
                      "chain.test": "none", "loop.test": "unknown",  # its tdmrep.json redirects for ever: 302
                      "slow.test": "unknown", "big.test": "none", "badtdm.test": "unknown"}
    assert load_site(robots, "missing.test", as_of=DAY).tdm_reserved("https://missing.test/x") is None
    assert not list(robots.rglob(".*.tmp"))
    v = verdicts(robots, ["GPTBot", "CCBot"], as_of=DAY)
    assert v == {"ok.test": {"GPTBot": NONE, "CCBot": ALL}, "missing.test": {"GPTBot": ALL, "CCBot": ALL},
                 "busy.test": {"GPTBot": NONE, "CCBot": NONE}, "moved.test": {"GPTBot": NONE, "CCBot": ALL},
                 "chain.test": {"GPTBot": SOME, "CCBot": SOME},
                 "loop.test": {"GPTBot": ALL, "CCBot": ALL},  # more than five redirects: unavailable
                 "slow.test": {"GPTBot": NONE, "CCBot": NONE},  # timed out: unreachable
                 "big.test": {"GPTBot": ALL, "CCBot": ALL},  # its "Disallow: /" lies beyond 500 KiB
                 "badtdm.test": {"GPTBot": ALL, "CCBot": ALL}}
    # A closed port: unreachable, complete disallow.
    snapshot_hosts(robots, ["closed.test"], day=DAY, base=f"http://127.0.0.1:{_closed_port()}/{{host}}")
    assert (robots / "closed.test" / f"{d}.status").read_text() == "unreachable\n"


def test_a_second_fetch_the_same_day_keeps_the_snapshot_unless_refetch(server, tmp_path):
    base, seen = server
    robots = tmp_path / "robots"
    (robots / "ok.test").mkdir(parents=True)
    (robots / "ok.test" / "2025-01-02.txt").write_text("User-agent: *\nDisallow:\n")  # recorded earlier that day
    before = len(seen)
    log = snapshot_hosts(robots, ["ok.test"], day=DAY, base=base + "/{host}")
    assert log["hosts"][0]["robots"]["outcome"] == "kept" and len(seen) == before
    assert (robots / "ok.test" / "2025-01-02.txt").read_text() == "User-agent: *\nDisallow:\n"
    log = snapshot_hosts(robots, ["ok.test"], day=DAY, base=base + "/{host}", refetch=True)
    assert log["hosts"][0]["robots"]["outcome"] == "written"
    assert (robots / "ok.test" / "2025-01-02.txt").read_bytes() == GPT_NONE
    with pytest.raises(ValueError, match="must contain"):
        snapshot_hosts(robots, ["ok.test"], base=base)


def test_cli_fetch_writes_todays_snapshots_and_audits_them(server, tmp_path):
    base, _ = server
    robots, out = tmp_path / "robots", tmp_path / "run"
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "url": u, "text": "a b c"}) + "\n" for i, u in enumerate(
        ["https://ok.test/a", "https://busy.test/b", "https://missing.test/c"])))
    res = CliRunner().invoke(app, ["consent", "--robots", str(robots), "--corpus", str(corpus), "--agents", "GPTBot",
                                   "--fetch", "--fetch-base", base + "/{host}", "--fetch-timeout", "2",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    today = dt.date.today().isoformat()
    assert (robots / "ok.test" / f"{today}.txt").read_bytes() == GPT_NONE
    r = json.loads((out / "results.json").read_text())
    assert r["as_of"] == today and r["fetch"]["date"] == today and len(r["fetch"]["hosts"]) == 3
    assert r["sites"]["GPTBot"]["counts"] == {"all": 1, "some": 0, "none": 2, "unknown": 0}
    assert {s["host"] for s in r["provenance"]["snapshots"]} == {"ok.test", "busy.test", "missing.test"}
    # Options checked before anything is fetched or written.
    for extra, message in ((["--as-of", "2024-01-01"], "--as-of with --fetch"),
                           (["--fetch-base", "http://x"], "must contain {host}")):
        res = CliRunner().invoke(app, ["consent", "--robots", str(robots), "--corpus", str(corpus), "--fetch",
                                       *extra, "--out", str(tmp_path / "bad")])
        assert res.exit_code == 2 and message in res.output, res.output
        assert not (tmp_path / "bad").exists()
    res = CliRunner().invoke(app, ["consent", "--robots", str(robots), "--fetch", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "--corpus" in res.output and "--hosts" in res.output


@pytest.mark.parametrize("host", ["..", ".", "a/../.."])
def test_snapshot_host_refuses_a_folder_outside_the_snapshot_folder(tmp_path, host):
    from lmaudit.corpus.fetch import Fetched, snapshot_host

    robots = tmp_path / "snaps" / "robots"
    robots.mkdir(parents=True)
    calls = []

    def fetcher(url, timeout):
        calls.append(url)
        return Fetched(url, url, 200, b"User-agent: *\nDisallow:\n")

    with pytest.raises(ValueError, match="not a host name"):
        snapshot_host(robots, host, day=DAY, fetcher=fetcher)
    assert calls == [] and sorted(p.name for p in tmp_path.rglob("*")) == ["robots", "snaps"]


@pytest.mark.parametrize("kill", ["between the fetches", "between the writes"])
def test_a_fetch_stopped_half_way_is_fetched_again_in_full(tmp_path, monkeypatch, kill):
    # Review B finding 5: the robots file was written before tdmrep.json was fetched, so a run
    # killed in between left a day that every rerun "kept", with a withdrawn reservation in force.
    from lmaudit.corpus import fetch as fetch_mod
    from lmaudit.corpus.fetch import Fetched, snapshot_host

    robots = tmp_path / "robots"
    (robots / "s.test").mkdir(parents=True)
    (robots / "s.test" / "2024-01-01.tdmrep.json").write_bytes(RESERVE_ALL)  # withdrawn since (404 today)
    calls = []

    def live(url, timeout):
        calls.append(url)
        return Fetched(url, url, 200, b"User-agent: *\nDisallow:\n") if url.endswith("robots.txt") else Fetched(url, url, 404)

    class Killed(Exception):
        pass

    if kill == "between the fetches":
        def first(url, timeout):
            if url.endswith("tdmrep.json"):
                raise Killed
            return live(url, timeout)
    else:
        first = live
        real_write = fetch_mod._write

        def write(path, data):
            if path.name == f"{DAY.isoformat()}.txt":  # the robots snapshot: the last write
                raise Killed
            real_write(path, data)

        monkeypatch.setattr(fetch_mod, "_write", write)
    with pytest.raises(Killed):
        snapshot_host(robots, "s.test", day=DAY, fetcher=first)
    monkeypatch.undo()
    names = {p.name for p in (robots / "s.test").iterdir()}
    assert not names & {f"{DAY}.txt", f"{DAY}.status"}  # no robots snapshot: the day is not done
    calls.clear()
    entry = snapshot_host(robots, "s.test", day=DAY, fetcher=live)
    assert entry["robots"]["outcome"] == "written" and entry["tdmrep"]["file"].endswith(f"{DAY}.tdmrep.status")
    assert len(calls) == 2  # both files fetched again
    site = load_site(robots, "s.test", as_of=DAY)
    assert site.tdm_reserved("https://s.test/a") is None and site.tdmrep_state == "none"
    assert snapshot_host(robots, "s.test", day=DAY, fetcher=live)["robots"]["outcome"] == "kept"
