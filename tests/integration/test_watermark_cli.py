"""`lmaudit watermark generate|detect|evaluate|radioactivity` on the tiny testbed, and how
they refuse bad input."""

import json

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

runner = CliRunner()
KEY = "424242"


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def generated(tiny_testbed, tmp_path_factory):
    tb, _ = tiny_testbed
    out = tmp_path_factory.mktemp("wm") / "gen"
    res = _run("watermark", "generate", "--model", tb / "model", "--data", tb / "data" / "nonmembers.jsonl",
               "--key", KEY, "--preset", "lefthash", "--delta", "4", "--max-new-tokens", "64", "--out", out, "-q")
    assert res.exit_code == 0, res.output
    return tb, out


def test_generate_then_detect_round_trip(generated, tmp_path):
    tb, gen = generated
    results = json.loads((gen / "results.json").read_text())
    rows = [json.loads(x) for x in (gen / "samples.jsonl").read_text().splitlines()]
    assert results["kind"] == "watermark-generate" and len(rows) == 64 and results["watermark"]["delta"] == 4.0
    texts = _write(tmp_path / "t.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows]
                   + [{"id": "short", "text": "a b"}])
    res = _run("watermark", "detect", "--model", tb / "model", "--config", gen / "watermark.json", "--key", KEY,
               "--data", texts, "--out", tmp_path / "d", "-q")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n_too_short"] == 1 and summary["detected"]["n"] == 64
    assert summary["detected"]["k"] >= 48, summary  # delta 4 on 64 tokens
    short = [json.loads(x) for x in (tmp_path / "d" / "samples.jsonl").read_text().splitlines()][-1]
    assert short["too_short"] and short["p_value"] is None and short["n_tokens"] >= 1
    # Another key: refused, never "not watermarked".
    res = _run("watermark", "detect", "--model", tb / "model", "--config", gen / "watermark.json", "--key", "1",
               "--data", texts, "--out", tmp_path / "e")
    assert res.exit_code == 2 and "another key" in " ".join(res.output.split())
    assert not (tmp_path / "e" / "results.json").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "contains no documents"),
    (b'{"id": 1, "text": "caf\xe9"}\n', "UTF-8"),
    (b'{"id": 1, "body": "x"}\n', "text"),
])
def test_detect_refuses_bad_input_naming_the_file(generated, tmp_path, content, message):
    import re

    tb, gen = generated
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    res = _run("watermark", "detect", "--model", tb / "model", "--config", gen / "watermark.json", "--key", KEY,
               "--data", bad, "--out", tmp_path / "o")
    assert res.exit_code == 2 and re.search(message, res.output) and "bad.jsonl" in res.output, res.output


def test_detect_refuses_a_config_of_another_format_or_tokenizer(generated, tmp_path):
    tb, gen = generated
    config = json.loads((gen / "watermark.json").read_text())
    texts = _write(tmp_path / "t.jsonl", [{"id": 1, "text": "x " * 40}])
    for change, message in (({"format": 0}, "format 0"), ({"tokenizer": "abc"}, "tokenizer")):
        path = _write(tmp_path / "c.json", []) and tmp_path / "c.json"
        path.write_text(json.dumps({**config, **change}))
        res = _run("watermark", "detect", "--model", tb / "model", "--config", path, "--key", KEY, "--data", texts,
                   "--out", tmp_path / "o")
        assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output


def test_evaluate_and_radioactivity_on_the_tiny_testbed(tiny_testbed, tmp_path):
    from lmaudit.models.hf import HFModel
    from lmaudit.testbed.load import load_splits
    from lmaudit.testbed.radioactive import RadioactiveConfig, build_pair, load_pair

    tb, _ = tiny_testbed
    res = _run("watermark", "evaluate", "--model", tb / "model", "--data", tb / "data" / "nonmembers.jsonl",
               "--key", KEY, "--presets", "lefthash,gumbel", "--attacks", "none,delete(fraction=0.3)",
               "--max-docs", "16", "--max-new-tokens", "48", "--bootstrap", "20", "--out", tmp_path / "ev", "-q")
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "ev" / "results.json").read_text())["watermark_eval"]
    assert set(ev["schemes"]) == {"lefthash", "gumbel"} and ev["n_prompts"] == 16
    g = ev["schemes"]["gumbel"]["attacks"]["none"]
    assert g["n_watermarked"] + g["n_too_short"]["watermarked"] == 16 and 0 <= g["auc"] <= 1
    # The pair: the copy fine-tuned on watermarked text tests radioactive, the control does not.
    lm = HFModel.from_pretrained(str(tb / "model"), device="cpu")
    _, non = load_splits(tb)
    cfg = RadioactiveConfig(n_texts=48, new_tokens=48, epochs=6, lr=1e-2, delta=4.0, preset="lefthash")
    pair = build_pair(lm, non, tmp_path / "pair", key=int(KEY), config=cfg)
    assert load_pair(tmp_path / "pair", target_fingerprint=lm.fingerprint(), key=int(KEY), config=cfg) == pair
    p = {}
    for name in ("watermarked", "control"):
        res = _run("watermark", "radioactivity", "--model", tmp_path / "pair" / name,
                   "--config", tmp_path / "pair" / "watermark.json", "--key", KEY, "--null-keys", "50",
                   "--prompts", tmp_path / "pair" / "data" / "watermarked.jsonl", "--out", tmp_path / name, "-q")
        assert res.exit_code == 0, res.output
        p[name] = json.loads(res.stdout.strip().splitlines()[-1])["open"]["p_value"]
    assert p["watermarked"] < 1e-3 < p["control"], p
    # A folder holding a stranger's file is refused, never emptied.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="did not write"):
        build_pair(lm, non, tmp_path / "other", key=int(KEY), config=cfg)
    assert (tmp_path / "other" / "mine.txt").read_text() == "keep"


def test_the_key_is_written_nowhere(generated, tmp_path):
    """The key's value never reaches a file: results.json's command line, the run marker and
    the report name it by its id only (as --key=K too)."""
    from lmaudit.watermark.config import key_id

    tb, gen = generated
    texts = _write(tmp_path / "t.jsonl", [{"id": 1, "text": "word " * 30}])
    res = _run("watermark", "detect", "--model", tb / "model", "--config", gen / "watermark.json", f"--key={KEY}",
               "--data", texts, "--out", tmp_path / "d", "--report", "-q")
    assert res.exit_code == 0, res.output
    for folder in (gen, tmp_path / "d"):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert any(p.name == "results.json" for p in files) and any(p.name == ".lmaudit-run.json" for p in files)
        for p in files:
            assert KEY not in p.read_text(errors="replace"), p
    assert key_id(int(KEY)) in json.loads((tmp_path / "d" / "results.json").read_text())["command"]
    assert (tmp_path / "d" / "report.html").exists()


@pytest.mark.parametrize("args, message", [
    (["generate", "--temperature", "0"], "--temperature must be positive"),
    (["generate", "--preset", "lefthsh"], "--preset must be one of"),
    (["generate", "--gamma", "1.5"], "--gamma must lie"),
    (["detect", "--alpha", "2"], "--alpha must lie"),
    (["radioactivity", "--setting", "both"], "--setting takes open, closed"),
    (["evaluate", "--presets", "selfhash,nope"], "unknown watermark preset 'nope'"),
    (["evaluate", "--attacks", "delete(fraction=2)"], "fraction"),
])
def test_bad_options_are_refused_before_anything_is_written(generated, tmp_path, args, message):
    tb, gen = generated
    command, *options = args
    needs = {"generate": ["--data", tb / "data" / "nonmembers.jsonl"],
             "detect": ["--data", gen / "samples.jsonl", "--config", gen / "watermark.json"],
             "evaluate": ["--data", tb / "data" / "nonmembers.jsonl"],
             "radioactivity": ["--prompts", gen / "samples.jsonl", "--config", gen / "watermark.json"]}[command]
    res = _run("watermark", command, "--model", tb / "model", "--key", KEY, *needs, *options, "--out", tmp_path / "o")
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "o").exists()
