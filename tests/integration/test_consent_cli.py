"""``lmaudit consent`` end to end on the shipped fixture (copied as the demo copies it), and its
handling of bad input: each refused before anything is written, naming file, line and field, or
kept and counted (documents without a URL)."""

import json

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.cli.consent import EXAMPLE
from lmaudit.corpus.consent import AI_AGENTS, copy_consent_fixture

runner = CliRunner()


@pytest.fixture
def fixture(tmp_path):
    return copy_consent_fixture(tmp_path / "lmaudit-demo" / "consent")


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_the_help_example_runs_and_writes_every_file(fixture, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = EXAMPLE.split("\n\n")[0].removeprefix("Example: lmaudit ").split()
    res = runner.invoke(app, [*argv, "--report"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "consent"
    r = json.loads((out / "results.json").read_text())
    assert r["complete"] and r["kind"] == "consent" and r["as_of"] == "2024-06-01" and r["agents"] == list(AI_AGENTS)
    sites, docs = _rows(out / "samples.jsonl"), _rows(out / "documents.jsonl")
    assert len(sites) == r["n_sites"] == 11 and len(docs) == r["corpus"]["documents"] == 40
    assert r["files"]["documents"]["rows"] == 40 and r["files"]["samples"]["rows"] == 11
    # The totals are the rows' sums (GPTBot, by site verdict), and every row says where it came from.
    for v in ("all", "some", "none", "unknown"):
        assert r["corpus"]["agents"]["GPTBot"]["tokens"][v] == sum(d["tokens"] for d in docs if d["site"]["GPTBot"] == v)
    assert [d["line"] for d in docs] == list(range(1, 41))
    assert r["malformed"]["lines"] == sum(s["n_malformed"] for s in sites) == 3
    # Provenance: the corpus and every snapshot file, hashed.
    (data,) = r["provenance"]["data"]
    assert data["role"] == "corpus" and data["url_field"] == "url" and len(data["sha256"]) == 64
    # One robots file per site with a snapshot (10; news.example's of 2024-03-01 only) and news.example's tdmrep.json.
    assert len(r["provenance"]["snapshots"]) == 11
    assert sum(1 for s in r["provenance"]["snapshots"] if s["role"] == "tdmrep.json") == 1
    assert (out / "report.html").is_file()


def test_as_of_an_earlier_date_and_extra_hosts(fixture, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["consent", "--robots", str(fixture / "robots"), "--agents", "GPTBot,ccbot",
                              "--as-of", "2023-06-01", "--hosts", "extra.test,News.Example", "--out", str(out)])
    assert res.exit_code == 0, res.output
    sites = {s["host"]: s for s in _rows(out / "samples.jsonl")}
    assert sites["news.example"]["verdict"] == {"GPTBot": "all", "ccbot": "all"}
    assert sites["news.example"]["snapshot"] == "2023-01-01"
    assert sites["extra.test"]["verdict"] == {"GPTBot": "unknown", "ccbot": "unknown"}
    assert "corpus" not in json.loads((out / "results.json").read_text()) and not (out / "documents.jsonl").exists()


def test_documents_without_a_url_are_kept_and_counted(fixture, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "url": "https://news.example/articles/1", "text": "one two"},
        {"id": "b", "text": "three"},  # no url field
        {"id": "c", "url": "not a url", "text": "four five six"},
        {"id": "d", "url": 7, "text": ""},  # not a string; empty document
    ]) + "\n")
    out = tmp_path / "run"
    res = runner.invoke(app, ["consent", "--robots", str(fixture / "robots"), "--corpus", str(corpus),
                              "--agents", "GPTBot", "--as-of", "2024-06-01", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "3 documents have no URL with a host" in " ".join(res.output.split())
    docs = {d["id"]: d for d in _rows(out / "documents.jsonl")}
    assert docs["b"]["note"] == "no 'url' field" and docs["b"]["line"] == 2 and docs["b"]["site"]["GPTBot"] == "unknown"
    assert "has no host" in docs["c"]["note"] and docs["d"]["note"] == "'url' is not a string"
    r = json.loads((out / "results.json").read_text())
    assert r["corpus"]["no_url"] == {"documents": 3, "tokens": 4}
    assert r["corpus"]["agents"]["GPTBot"]["documents"] == {"all": 0, "some": 0, "none": 1, "unknown": 3}


def _write(path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if mode == "wb" else path.write_text)(text)
    return path


@pytest.mark.parametrize("case", ["url_field", "agent", "agent_twice", "as_of", "no_robots", "bad_snapshot",
                                  "bad_status", "duplicate_ids", "not_utf8", "bad_host", "refetch_alone"])
def test_bad_input_is_refused_with_file_line_and_field(fixture, tmp_path, case):
    robots, corpus, out = fixture / "robots", fixture / "corpus.jsonl", tmp_path / "run"
    extra, expect = [], []
    if case == "url_field":
        extra, expect = ["--corpus", str(corpus), "--url-field", "link"], [f"{corpus}:1", "'link'", "--url-field"]
    elif case == "agent":
        extra, expect = ["--agents", "GPTBot,GPT Bot"], ["'GPT Bot'", "product token"]
    elif case == "agent_twice":
        extra, expect = ["--agents", "GPTBot,gptbot"], ["'GPTBot' and 'gptbot'"]
    elif case == "as_of":
        extra, expect = ["--as-of", "2024-02-30"], ["--as-of", "not a date"]
    elif case == "no_robots":
        robots, expect = tmp_path / "nowhere", ["nowhere", "not found"]
    elif case == "bad_snapshot":
        bad = _write(robots / "shop.test" / "2024-13-01.txt", "")
        expect = [str(bad), "not a calendar date"]
    elif case == "bad_status":
        bad = _write(robots / "shop.test" / "2024-05-01.status", "OK\n")
        expect = [str(bad), "HTTP status"]
    elif case == "duplicate_ids":
        corpus = _write(tmp_path / "dup.jsonl", '{"id": 1, "url": "https://a.test/", "text": "x"}\n' * 2)
        extra, expect = ["--corpus", str(corpus)], [f"{corpus}:2", "duplicate id 1"]
    elif case == "not_utf8":
        corpus = _write(tmp_path / "bad.jsonl", b'{"id": 1, "url": "https://a.test/", "text": "x"}\n{"id": 2, "text": "\xff"}\n',
                        "wb")
        extra, expect = ["--corpus", str(corpus)], [f"{corpus}:2", "UTF-8"]
    elif case == "bad_host":
        extra, expect = ["--hosts", "https://a.test/x"], ["--hosts", "not a host name"]
    elif case == "refetch_alone":
        extra, expect = ["--refetch"], ["--refetch applies only with --fetch"]
    res = runner.invoke(app, ["consent", "--robots", str(robots), *extra, "--out", str(out)])
    message = " ".join(res.output.split())
    assert res.exit_code == 2, message
    for part in expect:
        assert part in message, (part, message)
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("host", ["..", "."])
def test_fetch_never_writes_outside_the_robots_folder(tmp_path, host):
    # Review B finding 1: host ".." made --fetch delete and write DATE.txt / DATE.status in the
    # parent of --robots. Now --hosts refuses it before anything is written.
    snaps = tmp_path / "snaps"
    (snaps / "robots").mkdir(parents=True)
    precious = snaps / "2026-11-30.txt"
    precious.write_text("precious")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    res = runner.invoke(app, ["consent", "--robots", str(snaps / "robots"), "--hosts", host, "--fetch", "--refetch",
                              "--fetch-base", "http://127.0.0.1:9/{host}", "--fetch-timeout", "1",
                              "--agents", "GPTBot", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "not a host name" in " ".join(res.output.split()), res.output
    assert precious.read_text() == "precious"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_corpus_url_with_a_dot_host_is_counted_without_a_url(fixture, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    rows = [json.loads(x) for x in (fixture / "corpus.jsonl").read_text().splitlines()]
    rows.append({"id": "dots", "url": "https://../x", "text": "one two three"})
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    res = runner.invoke(app, ["consent", "--robots", str(fixture / "robots"), "--corpus", str(corpus),
                              "--agents", "GPTBot", "--as-of", "2024-06-01", "--out", str(out)])
    assert res.exit_code == 0, res.output
    docs = {d["id"]: d for d in _rows(out / "documents.jsonl")}
    assert docs["dots"]["host"] is None and docs["dots"]["line"] == 41 and "no host name" in docs["dots"]["note"]
    r = json.loads((out / "results.json").read_text())
    assert r["corpus"]["no_url"] == {"documents": 1, "tokens": 3} and r["n_sites"] == 11


@pytest.mark.parametrize("out_in_robots", ["robots/run", "robots", "robots/news.example/run"])
def test_an_out_folder_inside_robots_is_refused_before_anything_is_written(fixture, tmp_path, monkeypatch,
                                                                           out_in_robots):
    # Review B finding 6: the run folder was read as an 11th site, and a second run failed on it
    # after removing the first run's results.json.
    monkeypatch.chdir(fixture)
    before = sorted(p.relative_to(fixture) for p in fixture.rglob("*"))
    res = runner.invoke(app, ["consent", "--robots", "robots", "--agents", "GPTBot", "--out", out_in_robots])
    assert res.exit_code == 2 and "inside --robots" in " ".join(res.output.split()), res.output
    assert sorted(p.relative_to(fixture) for p in fixture.rglob("*")) == before


@pytest.mark.parametrize("base", ["http://127.0.0.1:9/{host}/{x}", "http://127.0.0.1:9/{0}/{host}",
                                  "http://127.0.0.1:9/{host!r}", "http://127.0.0.1:9/{host"])
def test_a_fetch_base_with_another_field_is_refused_before_anything_is_written(tmp_path, base):
    # Review B finding 9: a KeyError traceback after start_run, and an empty site folder left behind.
    robots, out = tmp_path / "snaps", tmp_path / "run"
    res = runner.invoke(app, ["consent", "--robots", str(robots), "--hosts", "a.test", "--fetch",
                              "--fetch-base", base, "--agents", "GPTBot", "--out", str(out)])
    message = " ".join(res.output.split())
    assert res.exit_code == 2 and "--fetch-base" in message and "Traceback" not in message, message
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not robots.exists() and not out.exists()
