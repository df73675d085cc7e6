"""The watermark report sections, on runs written by the real run functions on FakeLM:
generation (config and self-check with its interval), detection (the best window marked in
its text, escaped; the verdict's counts equal to samples.jsonl's), evaluation (every attack's
row, the by-length table), radioactivity (a FakeLM that memorised watermarked text against one
that never saw it); and the verdict rules at their boundaries on hand-made figures."""

import json
import re

import pytest
from markupsafe import escape

from lmaudit.data import Record
from lmaudit.models.base import GenerationConfig
from lmaudit.models.fake import FakeLM
from lmaudit.report.load import load_runs
from lmaudit.report.page import render_report
from lmaudit.report.sections import watermark as wm
from lmaudit.watermark.config import WatermarkConfig
from lmaudit.watermark.evaluate import WatermarkEvalConfig
from lmaudit.watermark.run import detect_to_dir, evaluate_to_dir, generate_to_dir, radioactivity_to_dir

KEY = 20240917
HOSTILE = "<script>alert('wm')</script>"
PROMPTS = ["The cat sat on the mat and looked at", "Once upon a time in a small village there",
           "In 1990 the committee decided that every", "A list of things to remember before the",
           "Rivers carry water from the mountains to", "She opened the letter and read the first"]


def _records(texts, prefix="d"):
    return [Record(id=f"{prefix}{i}", text=t, source="test", line=i + 1) for i, t in enumerate(texts)]


def _text(html: str) -> str:
    """The page's visible text, plots and scripts left out, whitespace collapsed."""
    html = re.sub(r"<svg.*?</svg>|<script.*?</script>|<style.*?</style>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _samples(folder):
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wm-report")
    lm = FakeLM()
    config = WatermarkConfig.create(lm, KEY, preset="lefthash", delta=4)
    generate_to_dir(lm, _records(PROMPTS), config, KEY, tmp / "gen", prompt_tokens=8,
                          generation=GenerationConfig(max_new_tokens=150, do_sample=True, temperature=0.7,
                                                      stop_at_eos=False, seed=1))
    gen_rows = _samples(tmp / "gen")
    texts = [r["text"] for r in gen_rows]
    strongest = min(gen_rows, key=lambda r: r["detection"]["p_value"])["text"]
    plain = [r.text for r in _records(PROMPTS)] + ["Rain fell all day on the quiet town, and nobody went out."]
    mixed = (_records(texts, "wm") + _records(plain, "human")
             + [Record(id="hostile", text=HOSTILE + " " + plain[0] + " " + strongest, source="test", line=1),
                Record(id="short", text="hi", source="test", line=2)])
    detect_to_dir(lm, mixed, config, KEY, tmp / "detect")
    # A model that memorised the watermarked documents (prompt + watermarked continuation) against one that never saw them.
    full = [p + t for p, t in zip(PROMPTS, texts)]
    trained = FakeLM(full * 3)
    for name, model in (("radio-trained", trained), ("radio-control", FakeLM())):
        radioactivity_to_dir(model, _records(full), config, KEY, tmp / name, settings=("closed",), prompt_tokens=8,
                             generation=GenerationConfig(max_new_tokens=140), null_keys=200, batch_size=8)
    evaluate_to_dir(lm, _records([p + " and then some more words follow here." for p in PROMPTS]), KEY, tmp / "eval",
                    config=WatermarkEvalConfig(presets=("lefthash", "gumbel"), attacks="none,delete(fraction=0.3)",
                                               max_new_tokens=40, temperature=0.7, delta=4.0, lengths=(16, 40),
                                               n_bootstrap=50))
    return tmp


def test_generate_page_shows_config_self_check_and_examples(runs):
    results = json.loads((runs / "gen" / "results.json").read_text())
    det = results["summary"]["self_check"]["detected"]
    assert det["n"] == len(PROMPTS) and det["k"] >= 4  # δ = 4 on FakeLM: the watermark is strong
    text = _text(render_report(load_runs([runs / "gen"])))
    assert "lefthash (KGW, hash seeding, h = 1, γ = 0.25, δ = 4; key id " + results["watermark"]["key_id"] in text
    lo, hi = det["ci"]
    assert f"{det['k']} of {det['n']} continuations ({100 * det['k'] / det['n']:.1f}%, 95% CI {100 * lo:.1f}%-" in text
    # The example with the smallest p is shown with its text (escaped, whole) and its p.
    best = min(_samples(runs / "gen"), key=lambda r: r["detection"]["p_value"])
    assert str(escape(best["text"])) in render_report(load_runs([runs / "gen"]))
    assert wm.generate_verdict(results["summary"], results["watermark"], results["provenance"])[1] == "info"


def test_detect_verdict_counts_equal_the_rows(runs):
    rows = _samples(runs / "detect")
    results = json.loads((runs / "detect" / "results.json").read_text())
    tested = [r for r in rows if not r["too_short"]]
    k = sum(r["detected"] for r in tested)
    assert k >= 3 and not any(r["detected"] for r in tested if r["id"].startswith("human"))
    sentences, level, _ = wm.detect_verdict(results["summary"], rows, results["watermark"],
                                            results["provenance"]["options"])
    assert sentences[0].startswith(f"{k} of {len(tested)} texts (")
    assert f"1 of {len(rows)} too short to test (fewer than 16 scored tokens)" in sentences[0]
    # Some p is far below α/n: strong.
    assert min(r["p_value"] for r in tested) < 1e-3 / len(tested) and level == "strong"


def test_detect_page_marks_the_best_window_and_escapes_the_text(runs):
    html = render_report(load_runs([runs / "detect"]))
    hostile = next(r for r in _samples(runs / "detect") if r["id"] == "hostile")
    window = hostile["spans"]["windows"][0]
    assert window["p_corrected"] < 1e-3  # the pasted watermarked passage is found
    assert f"<mark>{escape(window['text_window'])}</mark>" in html
    assert HOSTILE not in html and str(escape(HOSTILE)) in html  # the text is data, never markup
    text = _text(html)
    assert "Bonferroni over the windows searched" in text
    assert f"{window['p_corrected']:.1e}" in text and f"{hostile['spans']['searched']}" in text
    assert html.count("<svg") >= 1 and "z of α = 0.001" in html  # the z-over-T plot with the α level


def test_window_segments_cut_long_context_and_keep_the_window_whole():
    w = {"text_before": "a" * 500, "text_window": "WINDOW<b>", "text_after": "z" * 10}
    parts = wm.window_segments(w, 100)
    assert parts == [("…" + "a" * 100, False), ("WINDOW<b>", True), ("z" * 10, False)]
    assert wm.window_segments({"text_before": "", "text_window": "w", "text_after": ""}) == [("w", True)]


def test_detect_levels_at_their_boundaries():
    options = {"min_tokens": 16}
    rows = [{"id": "a", "p_value": 4e-4, "z": 3.3, "n_scored": 50, "detected": True}]
    summary = {"n": 2, "n_tested": 2, "n_too_short": 0, "alpha": 1e-3, "detected": {"k": 1, "n": 2, "ci": [0.01, 0.99]}}
    # 4e-4 < α but not < α/2 = 5e-4? It is: strong. At 6e-4 it is only evidence.
    assert wm.detect_verdict(summary, rows, None, options)[1] == "strong"
    sentences, level, _ = wm.detect_verdict(summary, [rows[0] | {"p_value": 6e-4}], None, options)
    assert level == "evidence" and any("α/n = 5.0e-04" in s for s in sentences)
    none = {**summary, "detected": {"k": 0, "n": 2, "ci": [0, 0.84]}}
    sentences, level, _ = wm.detect_verdict(none, [rows[0] | {"p_value": 0.2, "detected": False}], None, options)
    assert level == "weak" and "none of 2 texts (95% CI upper bound 84.0%)" in sentences[0]
    assert wm.detect_verdict({"n": 1, "n_tested": 0, "n_too_short": 1}, [], None, options)[1] == "warning"


def test_radioactivity_trained_model_is_strong_and_control_is_weak(runs):
    trained = json.loads((runs / "radio-trained" / "results.json").read_text())["radioactivity"]["closed"]
    control = json.loads((runs / "radio-control" / "results.json").read_text())["radioactivity"]["closed"]
    assert trained["p_value"] < 1e-3 and control["p_value"] > 1e-3
    html = render_report(load_runs([runs / "radio-trained", runs / "radio-control"]))
    text = _text(html)
    assert "STRONG EVIDENCE" in text.upper() and "weak or no evidence" in text
    assert wm.P_MEANING in text
    gf, gamma = trained["green_fraction"], trained["gamma"]
    assert f"{100 * gf:.1f}% green against γ = {100 * gamma:.1f}% expected" in text
    rate = trained["null_keys"]["rates"]["0.05"]
    assert f"{rate['k']} of {rate['n']} (" in text and "Null-key calibration" in text


def _setting(p, *, within=(True, True, True), null=True):
    t = {"n_positions": 100, "n_texts": 4, "n_scored": 80, "n_repeated": 20, "green_fraction": 0.4, "gamma": 0.25,
         "z": 3.1, "p_value": p, "detected": p < 1e-3}
    if null:
        t["null_keys"] = {"n_keys": 1000, "rates": {str(a): {"alpha": a, "k": int(1000 * a), "n": 1000,
                                                              "ci": [a * 0.7, a * 1.3], "within": w}
                                                    for a, w in zip((0.01, 0.05, 0.1), within)}}
    return t


def test_radioactivity_levels_at_their_boundaries():
    assert wm.radioactivity_verdict({"open": _setting(9e-4)}, 1e-3)[1] == "strong"
    # p < α = 0.01 but not below 10⁻³: evidence, and the reason is given.
    sentences, level, _ = wm.radioactivity_verdict({"open": _setting(5e-3)}, 1e-2)
    assert level == "evidence" and any("not below 0.001" in s for s in sentences)
    sentences, level, _ = wm.radioactivity_verdict({"open": _setting(1e-6, null=False)}, 1e-3)
    assert level == "evidence" and any("no null-key calibration ran" in s for s in sentences)
    sentences, level, warnings = wm.radioactivity_verdict({"open": _setting(1e-6, within=(True, False, True))}, 1e-3)
    assert level == "warning" and "p < 0.05 in 50 of 1,000" in warnings[0] and "not valid" in warnings[0]
    assert wm.radioactivity_verdict({"closed": _setting(0.3)}, 1e-3)[1] == "weak"


def test_evaluate_page_has_every_attack_row_and_the_length_table(runs):
    results = json.loads((runs / "eval" / "results.json").read_text())["watermark_eval"]
    html = render_report(load_runs([runs / "eval"]))
    text = _text(html)
    for scheme, s in results["schemes"].items():
        for attack, a in s["attacks"].items():
            d = a["detection_rate"]
            assert f"{d['k']} of {d['n']} (" in text
        assert f"{scheme}: unattacked AUC " in text
    lefthash = results["schemes"]["lefthash"]["attacks"]["delete(fraction=0.3)"]
    lo, hi = lefthash["auc_ci"]
    assert f"{wm.num(lefthash['auc'])} (95% CI {wm.num(lo)}-{wm.num(hi)})" in text
    assert "Detection against the number of generated tokens" in text and "mean log perplexity ratio" in text
    by = results["schemes"]["gumbel"]["by_length"]["40"]["watermarked"]
    assert f"{by['k']} of {by['n']} (" in text
    sentences, level, _ = wm.evaluate_verdict(results, 1e-3)
    assert level == "info" and any(s.startswith("Most robust: ") for s in sentences)
    assert any("the strongest attack, delete(fraction=0.3)" in s for s in sentences)


def test_config_text_names_the_preset_and_omits_kgw_parameters_for_gumbel():
    assert wm.config_text(None) == "no watermark"
    assert wm.config_text({"scheme": "kgw", "seeding": "hash", "h": 3, "gamma": 0.5, "delta": 1, "key_id": "k"}) \
        == "custom (KGW, hash seeding, h = 3, γ = 0.5, δ = 1; key id k)"
    assert abs(wm.z_of(0.05) - 1.6449) < 1e-3 and wm.z_of(0) is None
