"""Reports opened in headless Chromium: built from the tiny testbed's real runs (the demo, and
extraction + copying on documents written to attack the page), then checked as a reader's
browser sees them: no console error, no request, every section and plot drawn, hostile text
shown as text, and verdicts that say what results.json says."""

import json
import math

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
BAD_ID = 'doc"><svg onload="window.__pwned=3">'


def _run(*args):
    res = CliRunner().invoke(app, ["--quiet", *map(str, args)])
    assert res.exit_code in (0, 1), res.output
    return res


@pytest.fixture(scope="module")
def report(tiny_testbed, tmp_path_factory):
    """One report of the tiny demo's runs and of extraction + copying on hostile documents."""
    import shutil

    out, _ = tiny_testbed
    tmp = tmp_path_factory.mktemp("report")
    shutil.copytree(out, tmp / "demo")
    _run("demo", "--out", tmp / "demo", "--size", "tiny")
    members = [json.loads(x) for x in (out / "data" / "members.jsonl").read_text().splitlines()]
    hostile = [{"id": BAD_ID, "text": members[0]["text"]},
               {"id": "payload", "text": PAYLOAD + " " + members[1]["text"]},
               {"id": "plain", "text": members[2]["text"]}]
    data = tmp / "hostile.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in hostile))
    _run("extract", "--model", out / "model", "--data", data, "--prefix-tokens", 8, "--suffix-tokens", 16,
         "--out", tmp / "extract")
    _run("copying", "--outputs", tmp / "extract" / "samples.jsonl", "--output-field", "generated",
         "--references", data, "--out", tmp / "copying")
    page = tmp / "report.html"
    res = CliRunner().invoke(app, ["report", str(tmp / "demo"), str(tmp / "extract"), str(tmp / "copying"),
                                   "--out", str(page), "--title", PAYLOAD])
    assert res.exit_code == 0, res.output
    return page, tmp


@pytest.fixture(scope="module")
def opened(report, browser):
    return browser.open(report[0])


def test_no_console_error_and_no_request(opened):
    assert opened.console == []
    assert opened.requests == []


def test_every_section_and_plot_is_drawn(opened, report):
    _, tmp = report
    expected = 1 + sum(1 for d in (tmp / "demo" / "results").iterdir() if (d / "results.json").exists()) + 2
    sizes = opened.js("Array.from(document.querySelectorAll('section.run'))"
                      ".map(s => [s.dataset.kind, s.getBoundingClientRect().height])")
    assert len(sizes) == expected
    assert all(height > 50 for _, height in sizes), sizes
    kinds = {kind for kind, _ in sizes}
    assert kinds == {"demo", "score", "membership", "dataset-inference", "paired-test", "extract", "copying",
                     "knowledge", "acr", "takedown-eval", "watermark-generate", "watermark-detect",
                     "watermark-radioactivity", "attribute", "dedup", "consent"}
    plots = opened.js("Array.from(document.querySelectorAll('svg.plot'))"
                      ".map(p => { const r = p.getBoundingClientRect(); return [r.width, r.height]; })")
    assert len(plots) >= 8 and all(w > 100 and h > 50 for w, h in plots), plots
    # Every kind with per-document results has a sample browser with rows in it.
    rows = opened.js("Array.from(document.querySelectorAll('div.samples'))"
                     ".map(d => d.querySelectorAll('tbody tr').length)")
    assert rows and all(n > 0 for n in rows), rows


def test_hostile_text_is_shown_as_text_and_runs_nothing(opened, browser):
    assert opened.js("typeof window.__pwned") == "undefined"
    text = opened.js("document.body.innerText")
    assert PAYLOAD in text  # the title, and the document's text in the extraction cases
    assert opened.js("document.title") == PAYLOAD
    assert opened.js("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert opened.js("document.querySelectorAll('svg[onload], [onerror]').length") == 0
    # The hostile id is found, as text, through the sample browser's filter.
    found = opened.script("""
        const holder = document.querySelector('#run-extract div.samples');  // the hostile run, not the demo's
        const box = holder.querySelector('input');
        box.value = 'svg onload'; box.dispatchEvent(new Event('input'));
        return Array.from(holder.querySelectorAll('tbody td')).map(td => td.textContent);""")
    assert BAD_ID in found
    assert opened.js("typeof window.__pwned") == "undefined"


def _verdict(opened, section):
    return opened.js(f"document.querySelector('#{section} .verdict').innerText")


def test_verdicts_say_what_results_json_says(opened, report):
    _, tmp = report
    res = tmp / "demo" / "results"
    membership = json.loads((res / "membership" / "results.json").read_text())
    name, best = max(((k, v) for k, v in membership["attacks"].items() if v["auc"] is not None),
                     key=lambda kv: kv[1]["auc"])
    text = _verdict(opened, "run-membership")
    assert f"{name}, has AUC {best['auc']:.3g}" in text
    lo, hi = best["auc_ci"]
    assert f"95% CI {lo:.3g}-{hi:.3g}" in text
    assert f"{membership['n_members']:,} members and {membership['n_nonmembers']:,} non-members" in text

    di = json.loads((res / "dataset_inference" / "results.json").read_text())
    text = _verdict(opened, "run-dataset-inference")
    p = di["p_value"]
    assert (f"{p:.1e}" if p < 1e-3 else f"{p:.2g}") in text
    null = di["null_calibration"]
    assert f"{null['rejections']} of {null['trials']}" in text
    assert f"{100 * null['false_positive_rate']:.1f}%" in text

    extract = json.loads((tmp / "extract" / "results.json").read_text())
    text = _verdict(opened, "run-extract")
    k = round(extract["exact_match_rate"] * extract["n"])
    assert f"{k} of {extract['n']}" in text or (k == 0 and f"none of {extract['n']}" in text)
    upper = extract["exact_match_rate_ci"][1]
    assert f"{100 * upper:.1f}%" in text


def test_the_report_opens_quickly(report, browser):
    """Not a speed test (benchmarks/ has that): a sanity bound that catches a page that hangs."""
    times = browser.open_time(report[0])
    assert math.isfinite(times.load) and times.load < 30


def test_the_sample_browser_shows_odd_cells_as_they_are(browser, make_run, tmp_path):
    """Text in a number column and false in a yes/no column, as a user's file can hold them:
    shown as given, nothing thrown (one throw would leave every later browser empty)."""
    from lmaudit.report.page import write_report

    rows = [{"id": "a", "duplication": "high", "exact_match": False, "token_match": 0.5, "longest_match_tokens": 3,
             "target": "x", "generated": "y"},
            {"id": "b", "duplication": 4, "exact_match": True, "token_match": 1.0, "longest_match_tokens": 9,
             "target": "x", "generated": "x"}]
    folder = make_run("extract", {"n": 2}, rows)
    write_report([folder], tmp_path / "odd.html")
    page = browser.open(tmp_path / "odd.html")
    assert page.console == []
    cells = page.js("Array.from(document.querySelectorAll('div.samples tbody tr'))"
                    ".map(tr => Array.from(tr.children).map(td => td.textContent))")
    by_id = {row[0]: row for row in cells}
    assert "high" in by_id["a"] and "no" in by_id["a"] and "yes" not in by_id["a"]
    assert "yes" in by_id["b"] and "4" in by_id["b"]
