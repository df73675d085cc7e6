"""``lmaudit search`` end to end on an index built here: hits shown and written as a traceable run
that agrees with the Python API, pages, --build, and refusals (no BM25 index, a stale one, a
malformed query) before --out is touched."""

import json

from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.corpus.bm25 import build_bm25, load_bm25
from lmaudit.corpus.index import build_index
from lmaudit.data import Record, sha256_file

runner = CliRunner()

TEXTS = ["Ada was the philosopher of Valdoria, born in 1802.", "Valdoria exports tin.", "Nothing to see.",
         "The philosopher wrote of cats.", "", "A philosopher's view: of Valdoria, of tin, of everything."]


def _index(tmp_path, *, bm25=True):
    index = build_index([Record(id=i if i % 2 else f"doc-{i}", text=t, source="c.jsonl", line=i + 1)
                         for i, t in enumerate(TEXTS)], tmp_path / "idx")
    if bm25:
        build_bm25(index)
    return index


def test_search_writes_the_hits_as_a_run_that_matches_the_api(tmp_path):
    index = _index(tmp_path)
    out = tmp_path / "run"
    res = runner.invoke(app, ["search", "--index", str(index.path), 'philosopher "of Valdoria"', "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "doc-0" in res.output and "philosopher of Valdoria" in res.output
    r = json.loads((out / "results.json").read_text())
    want = load_bm25(index.path).search('philosopher "of Valdoria"')
    assert r["complete"] and r["kind"] == "search" and r["n_matching"] == 3 == r["n_hits"]
    assert r["words"] == ["philosopher"] and r["phrases"] == ["of valdoria"]
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [(x["rank"], x["id"], x["doc"], x["score"]) for x in rows] == \
           [(i + 1, h.doc_id, h.doc, h.score) for i, h in enumerate(want)]
    assert rows[0]["id"] == "doc-0" and isinstance(rows[1]["id"], int)  # ids keep their type
    (entry,) = r["provenance"]["data"]
    assert entry["index_manifest_sha256"] == sha256_file(index.path / "index.json")
    assert r["files"]["samples"]["rows"] == 3


def test_pages_quiet_summary_and_no_out(tmp_path):
    index = _index(tmp_path)
    res = runner.invoke(app, ["--quiet", "search", "--index", str(index.path), "philosopher", "--limit", "1",
                              "--offset", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    second = load_bm25(index.path).search("philosopher")[1]
    assert summary["n_matching"] == 3 and summary["hits"] == [{"rank": 2, "id": second.doc_id,
                                                               "score": second.score}]


def test_missing_bm25_is_refused_naming_the_fix_and_build_makes_it(tmp_path):
    index = _index(tmp_path, bm25=False)
    out = tmp_path / "run"
    res = runner.invoke(app, ["search", "--index", str(index.path), "tin", "--out", str(out)])
    assert res.exit_code == 2 and "no BM25 index" in res.output and "--build" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["search", "--index", str(index.path), "tin", "--build"])
    assert res.exit_code == 0 and "Valdoria exports tin" in res.output


def test_stale_index_and_malformed_query_are_refused_before_out(tmp_path):
    index = _index(tmp_path)
    out = tmp_path / "run"
    res = runner.invoke(app, ["search", "--index", str(index.path), '"of Valdoria', "--out", str(out)])
    assert res.exit_code == 2 and "double quote" in res.output and not out.exists()
    index.append([Record(id="new", text="tin again", source="more.jsonl", line=1)])
    res = runner.invoke(app, ["search", "--index", str(index.path), "tin", "--out", str(out)])
    assert res.exit_code == 2 and "appended to since" in res.output and not out.exists()
    res = runner.invoke(app, ["search", "--index", str(index.path), "tin", "--build", "--out", str(out)])
    assert res.exit_code == 0 and json.loads((out / "results.json").read_text())["n_matching"] == 3  # docs 1, 5 and the new one
    res = runner.invoke(app, ["search", "--index", str(tmp_path / "nowhere"), "tin"])
    assert res.exit_code == 2 and "not an lmaudit index" in res.output


def test_report_shows_the_query_and_its_hits(tmp_path):
    index = _index(tmp_path)
    out = tmp_path / "run"
    res = runner.invoke(app, ["search", "--index", str(index.path), 'philosopher "of Valdoria"', "--out", str(out),
                              "--report"])
    assert res.exit_code == 0, res.output
    html = (out / "report.html").read_text()
    assert "Corpus search (BM25)" in html and "shown generically" not in html
    assert "matches 3 of 6 documents" in html and "hits 1 to 3 are listed" in html
    assert 'href="#guide-search"' in html and 'id="guide-search"' in html
    assert "doc-0" in html and "Phrases searched word for word: &#34;of valdoria&#34;." in html
    res = runner.invoke(app, ["search", "--index", str(index.path), "tin", "--report"])
    assert res.exit_code == 2 and "--report needs --out" in res.output


def test_a_query_with_rich_markup_is_shown_as_typed(tmp_path):
    index = _index(tmp_path)
    res = runner.invoke(app, ["search", "--index", str(index.path), "tin [/x] [red]"])
    assert res.exit_code == 0, res.output
    assert "'tin [/x] [red]'" in res.output
