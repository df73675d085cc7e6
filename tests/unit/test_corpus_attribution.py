"""`lmaudit attribute`'s run (lmaudit.corpus.attribution) against brute force on random small
corpora: the characters each output's spans cover, those from its expected document, the rates
with their intervals and the breakdown by duplication; error rows; and its report section."""

import json
import random
import re

import pytest

from lmaudit.corpus.attribution import AttributeConfig, attribute_to_dir, covered, run_attribute
from lmaudit.corpus.index import build_index
from lmaudit.data import Record
from lmaudit.report.load import load_runs
from lmaudit.report.page import render_report
from lmaudit.stats import proportion_ci

WORDS = ["the", "cat", "sat", "on", "a", "mat", "café", "😀", "dog", "ran"]


def _text(html: str) -> str:
    html = re.sub(r"<svg.*?</svg>|<script.*?</script>|<style.*?</style>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def bf_found(docs, s):
    return any(s in d for d in docs)


def bf_maximal_spans(docs, text, min_bytes):
    """(i, j) of every maximal verbatim span of at least min_bytes UTF-8 bytes, by trying them all."""
    out = []
    for i in range(len(text)):
        for j in range(i + 1, len(text) + 1):
            if (len(text[i:j].encode()) >= min_bytes and bf_found(docs, text[i:j])
                    and not (i > 0 and bf_found(docs, text[i - 1 : j]))
                    and not (j < len(text) and bf_found(docs, text[i : j + 1]))):
                out.append((i, j))
    return out


def bf_covered(spans, length):
    marked = [False] * length
    for i, j in spans:
        marked[i:j] = [True] * (j - i)
    return sum(marked)


def test_covered_counts_overlaps_once():
    assert covered([]) == 0
    assert covered([(2, 6), (0, 3), (5, 9), (12, 13), (12, 13)]) == 10


@pytest.mark.parametrize("seed", range(5))
def test_run_attribute_equals_brute_force(tmp_path, seed):
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))) for _ in range(8)]
    index = build_index([Record(id=f"m{i}", text=t, source="c.jsonl", line=i + 1) for i, t in enumerate(docs)],
                        tmp_path / "idx", shard_bytes=rng.choice([30, 10**6]))
    outputs = []
    for k in range(12):
        src = rng.randrange(len(docs))
        piece = docs[src][rng.randrange(3):][: rng.randint(5, 30)]
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3))) + piece + rng.choice(["", " zz", "!"])
        outputs.append(Record(id=f"o{k}", text=text, source="out.jsonl", line=k + 1,
                              meta={"doc": f"m{src}", "duplication": rng.choice([1, 4])}))
    config = AttributeConfig(min_bytes=6, source_field="doc", n_bootstrap=50)
    rows, results = run_attribute(index, outputs, config=config)
    with_span = with_source = 0
    for rec, row in zip(outputs, rows):
        spans = bf_maximal_spans(docs, rec.text, 6)
        source_doc = docs[int(rec.meta["doc"][1:])]
        assert [(s["start"], s["end"]) for s in row["spans"]] == spans
        assert row["attributed_chars"] == bf_covered(spans, len(rec.text))
        assert row["source_chars"] == bf_covered([(i, j) for i, j in spans if rec.text[i:j] in source_doc],
                                                 len(rec.text))
        assert row["unique_chars"] == bf_covered(
            [(i, j) for i, j in spans if sum(rec.text[i:j] in d for d in docs) == 1], len(rec.text))
        assert row["source_in_index"] and row["duplication"] == rec.meta["duplication"]
        with_span += bool(spans)
        with_source += any(rec.text[i:j] in source_doc for i, j in spans)
    assert results["with_span"] == {"k": with_span, "n": 12, "rate": with_span / 12,
                                    "ci": list(proportion_ci(with_span, 12))}
    assert results["with_source_span"]["k"] == with_source and results["with_source_span"]["n"] == with_span
    assert results["attributed_share_pooled"] == pytest.approx(
        sum(r["attributed_chars"] for r in rows) / sum(len(o.text) for o in outputs))
    by = results["by_duplication"]
    assert sum(v["n_outputs"] for v in by.values()) == 12
    for level, v in by.items():
        group = [r for r in rows if str(r["duplication"]) == level]
        assert v["attributed_chars"] == sum(r["attributed_chars"] for r in group)


def test_error_rows_are_kept_and_counted(tmp_path):
    index = build_index([Record(id="a", text="the cat sat on the mat", source="c", line=1)], tmp_path / "idx")
    outputs = [Record(id="up", text="", source="o.jsonl", line=1, error="too short to extract"),
               Record(id="nosrc", text="the cat sat", source="o.jsonl", line=2),
               Record(id="absent", text="the cat sat on", source="o.jsonl", line=3, meta={"doc": "zz"}),
               Record(id="ok", text="a cat sat on the mat!", source="o.jsonl", line=4, meta={"doc": "a"})]
    rows, results = run_attribute(index, outputs, config=AttributeConfig(min_bytes=4, source_field="doc"))
    assert [r["id"] for r in rows] == ["up", "nosrc", "absent", "ok"]
    assert rows[0]["error"] == "too short to extract"
    assert "o.jsonl:2" in rows[1]["error"] and "'doc'" in rows[1]["error"]
    assert results["n_errors"] == 2 and results["n_outputs"] == 2 and results["n_source_not_in_index"] == 1
    assert rows[2]["source_in_index"] is False and rows[2]["source_chars"] == 0
    assert rows[3]["spans"][0]["docs"] == ["a"] and rows[3]["source_share"] == 1.0
    # The output whose document is not in the corpus is in no source figure: only "ok" is.
    assert (results["with_source_span"]["k"], results["with_source_span"]["n"]) == (1, 1)
    assert results["source_share_pooled"] == 1.0 and results["source_share_mean"]["n"] == 1


def test_results_and_report(tmp_path):
    docs = ["Zelda Penford is remembered as a philosopher of Valdoria.", "A <b>bold</b> claim & more text here."]
    index = build_index([Record(id=f"m{i}", text=t, source="c", line=i + 1) for i, t in enumerate(docs)],
                        tmp_path / "idx")
    outputs = [Record(id="o0", text="She is remembered as a philosopher of Valdoria, they say.", source="o", line=1,
                      meta={"duplication": 32}),
               Record(id="o1", text="It was a <b>bold</b> claim & more text, <script>x</script>", source="o", line=2,
                      meta={"duplication": 1})]
    r = attribute_to_dir(index, outputs, tmp_path / "run", config=AttributeConfig(min_bytes=16, source_field="id"))
    assert r["complete"] and r["kind"] == "attribute" and r["provenance"]["index"]["n_docs"] == 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["spans"][0]["docs"] == ["m0"] and rows[0]["source_share"] == 0.0  # "o0" is not in the corpus
    html = render_report(load_runs([tmp_path / "run"]), title="t")
    text = _text(html)
    assert "2 of 2 outputs (100.0%, 95% CI" in text and "Attribution to the corpus" in text
    assert "2 of 2 outputs name an expected document that the index does not hold" in text
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<mark> &lt;b&gt;bold&lt;/b&gt; claim &amp; more text</mark>" in html
