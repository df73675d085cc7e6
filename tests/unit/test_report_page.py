"""lmaudit report: what it refuses, what it escapes, and that the page loads nothing."""

import base64
import hashlib
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.report.load import ReportError, load_runs
from lmaudit.report.page import json_for_script, render_report, write_report
from lmaudit.report.results import invalidate_results
from lmaudit.report.run import RUN_MARK, RunWriter, remove_run

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
BAD_ID = '"><svg onload=window.__pwned=3>'


def _membership(make_run, ids=("a", "b", "c", "d")):
    samples = [{"id": i, "set": "member" if k % 2 == 0 else "nonmember", "n_tokens": 5,
                "scores": {"loss": float(-k)}} for k, i in enumerate(ids)]
    attack = {"auc": 0.75, "auc_ci": [0.5, 1.0], "n_members": 2, "n_nonmembers": 2, "tpr_at_fpr": {}}
    results = {"n_members": 2, "n_nonmembers": 2, "attacks": {"loss": attack}, "blind_baselines": {},
               "distribution_shift_flag": None, "excluded": [], "n_errors": 0}
    return make_run("membership", results, samples, summary={"n_members": 2, "n_nonmembers": 2})


def test_a_folder_without_a_run_is_refused_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match=r"empty: holds no lmaudit run"):
        load_runs([tmp_path / "empty"])


def test_an_unknown_schema_version_is_refused_even_when_incomplete_runs_are_allowed(make_run):
    folder = _membership(make_run)
    results = json.loads((folder / "results.json").read_text())
    results["schema_version"] = 99
    (folder / "results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match=r"results\.json: schema_version 99; this lmaudit reads version 1"):
        load_runs([folder], allow_incomplete=True)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_text("".join(p.read_text().splitlines(keepends=True)[:-1])), "changed or truncated"),
    (lambda p: p.write_text(p.read_text()[:-7]), "changed or truncated"),
    (lambda p: p.unlink(), "missing"),
])
def test_a_missing_or_truncated_samples_file_is_refused_naming_it(make_run, tmp_path, damage, message):
    folder = _membership(make_run)
    damage(folder / "samples.jsonl")
    with pytest.raises(ReportError, match=re.escape(str(folder / "samples.jsonl")) + ".*" + message):
        write_report([folder], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()  # nothing half-written
    # Allowed, it is shown under the banner, with the problem named.
    written = write_report([folder], tmp_path / "r.html", allow_incomplete=True)
    html = (tmp_path / "r.html").read_text()
    assert written["incomplete"] == 1 and "INCOMPLETE" in html and message in html


def test_a_run_that_never_finished_is_refused_or_shown_as_incomplete(tmp_path):
    folder = tmp_path / "dead"
    with pytest.raises(RuntimeError):
        with RunWriter(folder, kind="membership", command="lmaudit membership --x") as run:
            run.samples([{"id": "a"}])
            raise RuntimeError("killed")
    assert (folder / RUN_MARK).exists() and not (folder / "results.json").exists()
    with pytest.raises(ReportError, match=r"dead/results\.json: missing: the run \(lmaudit membership --x\) did not finish"):
        load_runs([folder])
    html = render_report(load_runs([folder], allow_incomplete=True))
    assert "INCOMPLETE: 1 of 1 run did not finish" in html and "No results to show" in html


def test_an_unknown_kind_renders_its_summary_generically(make_run):
    folder = make_run("future-audit", {"x": 1}, [{"id": "a"}], summary={"removal_rate": 0.25, "n": 8,
                                                                          "nested": {"ci": [0.1, 0.6]}})
    html = render_report(load_runs([folder]))
    assert "no reader for &#39;future-audit&#39; runs" in html
    assert re.search(r"<th>removal_rate</th><td[^>]*>0\.25</td>", html)
    assert re.search(r"<th>nested\.ci</th><td[^>]*>0\.1-0\.6</td>", html)


def test_text_from_data_is_escaped_everywhere(make_run):
    folder = _membership(make_run, ids=(PAYLOAD, BAD_ID, "</script><script>window.__pwned=4</script>", "d"))
    html = render_report(load_runs([folder]), title=PAYLOAD)
    for raw in ("<script>window.__pwned", "<img src=x", "<svg onload", "</script><script>"):
        assert raw not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html  # the title, as text
    # Inside the JSON of the sample browser, no "<" at all: nothing can close the element.
    data = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S)
    assert data and all("<" not in block for block in data)
    assert [row[0] for row in json.loads(data[0])["rows"]][:2] == [PAYLOAD, BAD_ID]  # the ids, intact as data


def test_json_for_script_round_trips():
    value = {"a": "</script>&<>\u2028\u2029", "b": [1, None]}
    assert json.loads(str(json_for_script(value))) == value


def test_the_page_loads_nothing_and_allows_only_its_own_script(make_run):
    html = render_report(load_runs([_membership(make_run)]))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    # No element fetches anything: no src, no stylesheet link, no url() but fragment references.
    assert not re.search(r"\ssrc=", html)
    assert not re.search(r"<link\b", html)
    assert set(re.findall(r"url\(([^)]*)\)", html)) <= {u for u in re.findall(r"url\(([^)]*)\)", html) if u.startswith("#")}


def test_report_files_lmaudit_wrote_are_removed_with_their_run_but_a_users_are_kept(make_run, tmp_path):
    folder = _membership(make_run)
    write_report([folder], folder / "report.html")
    invalidate_results(folder)
    assert not (folder / "report.html").exists()  # it showed a result that is gone
    (folder / "report.html").write_text("<html>my own notes</html>")
    invalidate_results(folder)
    remove_run(folder)
    assert (folder / "report.html").read_text() == "<html>my own notes</html>"


def test_the_report_command(make_run, tmp_path):
    runner = CliRunner()
    folder = _membership(make_run)
    out = tmp_path / "out" / "r.html"
    res = runner.invoke(app, ["report", str(folder), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["path"] == str(out) and summary["runs"] == 1 and out.stat().st_size == summary["bytes"]
    (folder / "samples.jsonl").write_text("")
    res = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "again.html")])
    assert res.exit_code == 2 and "changed or truncated" in res.output
    assert not (tmp_path / "again.html").exists()
    res = runner.invoke(app, ["report", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "not a folder" in res.output
    res = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.output


def test_every_kind_renders_from_nothing_and_every_link_lands(make_run):
    """Each registered section, given a run with no figures at all, renders (no crash, no
    StrictUndefined) and every in-page link, such as "How to read these numbers", has its target."""
    from lmaudit.report.sections import sections

    folders = [make_run(kind, {}, [], name=f"empty-{kind}") for kind in sections.names()]
    html = render_report(load_runs(folders))
    assert html.count('<section class="run"') == len(sections.names()) >= 9
    targets = set(re.findall(r'href="#([^"]+)"', html))
    assert "guide-membership" in targets and "guide-worked-example" in targets
    missing = {t for t in targets if f'id="{t}"' not in html}
    assert not missing


def test_labels_from_the_data_are_drawn_as_text(make_run):
    from lmaudit.report import plots

    svg = str(plots.histograms({"_draft": [1.0, 2.0], "$\\foo$ & <b>": [3.0]}, xlabel="x", title="t"))
    assert "_draft (n = 2)" in svg  # matplotlib would hide a label starting with "_"
    assert "$\\foo$ &amp; &lt;b&gt; (n = 1)" in svg  # not TeX (which raised), not markup
    # while the log axes' own tick labels (mathtext) are still typeset, not shown as source
    roc = str(plots.roc({"$a$": (np.array([0, .1, 1]), np.array([0, .5, 1]))}, n_members=10, n_nonmembers=10))
    assert "mathdefault" not in roc and "$a$" in roc


def test_a_number_column_holding_text_is_shown_as_text(make_run):
    folder = make_run("extract", {"n": 1}, [{"id": "a", "duplication": "high", "exact_match": True,
                                             "n_tokens": "32", "token_match": 1.0}])
    html = render_report(load_runs([folder]))
    data = json.loads(re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S)[0])
    column = [c["key"] for c in data["columns"]].index("duplication")
    assert data["columns"][column]["kind"] == "num" and data["rows"][0][column] == "high"


def test_a_samples_file_that_is_not_utf8_is_refused_naming_its_line(make_run):
    folder = _membership(make_run)
    (folder / "samples.jsonl").write_bytes(b'{"id": "\xff"}\n')
    runs = load_runs([folder], allow_incomplete=True)
    assert any("samples.jsonl: line 1 is not JSON" in p for p in runs[0].problems)


def test_a_demo_that_died_is_named_as_such_from_its_out_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with RunWriter(tmp_path / "demo" / "results", kind="demo", command="lmaudit demo"):
            raise RuntimeError("killed")
    with pytest.raises(ReportError, match=r"demo/results/results\.json: missing: the run \(lmaudit demo\) did not"):
        load_runs([tmp_path / "demo"])


def test_membership_error_rows_are_a_warning(make_run):
    folder = make_run("membership", {"n_members": 2, "n_nonmembers": 2, "n_errors": 1, "attacks": {},
                                     "distribution_shift_flag": False, "blind_baselines": {}},
                      [{"id": "x", "set": "member", "scores": {}, "error": "empty text"}])
    html = render_report(load_runs([folder]))
    assert "1 of 4 documents could not be scored by every attack" in html


def test_the_report_never_replaces_a_file_of_a_run(make_run):
    folder = _membership(make_run)
    before = (folder / "samples.jsonl").read_bytes()
    for name in ("samples.jsonl", "results.json"):
        with pytest.raises(ReportError, match=f"is a file of the run in {re.escape(str(folder))}"):
            write_report([folder], folder / name)
    assert (folder / "samples.jsonl").read_bytes() == before


def test_report_flag_leaves_a_users_report_html_alone(make_run, monkeypatch):
    import typer

    from lmaudit.cli import common

    folder = _membership(make_run)
    (folder / "report.html").write_text("<html>my notes</html>")
    monkeypatch.setattr(common.state, "report", True)
    with pytest.raises(typer.Exit):
        common.start_run(folder)  # refused before anything is read
    with pytest.raises(typer.Exit):
        common.write_run_report(folder)  # and, were it reached, at the end
    assert (folder / "report.html").read_text() == "<html>my notes</html>"
    assert (folder / "results.json").exists()  # the refusal came before the run's start removed anything


def test_bool_columns_keep_false(make_run):
    folder = make_run("extract", {"n": 2}, [{"id": "a", "exact_match": False, "n_tokens": 40},
                                            {"id": "b", "exact_match": True, "n_tokens": 40}])
    html = render_report(load_runs([folder]))
    rows = json.loads(re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S)[0])["rows"]
    assert [r for r in rows[0] if isinstance(r, bool)] == [False] and [r for r in rows[1] if isinstance(r, bool)] == [True]


def test_the_report_never_replaces_other_files_in_a_run_folder(make_run):
    folder = _membership(make_run)
    (folder / "cache.sqlite").write_bytes(b"cache")
    with pytest.raises(ReportError, match="not a report lmaudit wrote"):
        write_report([folder], folder / "cache.sqlite")
    assert (folder / "cache.sqlite").read_bytes() == b"cache"
    (folder / "r.html.partial").write_text("mine")  # a name the old temporary file had
    write_report([folder], folder / "r.html")
    assert (folder / "r.html.partial").read_text() == "mine" and not list(folder.glob(".r.html.*"))


def test_provenance_names_each_data_file_with_its_rows_and_hash(make_run):
    entry = {"path": "data/members.jsonl", "sha256": "ab" * 32, "bytes": 919256, "role": "members", "n_rows": 1000}
    folder = make_run("score", {}, [{"id": "a"}], provenance={"data": [entry]})
    html = render_report(load_runs([folder]))
    row = re.search(r"<tr><td>members</td><td><code>data/members.jsonl</code></td>(.*?)</tr>", html).group(1)
    assert ">1,000<" in row and ">919,256<" in row and "ab" * 32 in row


def test_a_results_json_of_the_wrong_shape_is_one_error_naming_it(make_run, tmp_path):
    folder = make_run("membership", {"attacks": ["loss", 0.9], "n_members": 1, "n_nonmembers": 1}, [{"id": "a"}])
    with pytest.raises(ReportError, match=r"membership/results\.json: the membership section cannot read it"):
        write_report([folder], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
