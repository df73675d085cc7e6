"""`lmaudit dedup`: clusters, near-copy counts written back for the duplication breakdowns, the
report section, and how it refuses bad input."""

import json
import random

from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.corpus.dedup import jaccard, shingles

runner = CliRunner()
WORDS = [f"w{i}" for i in range(300)]


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _files(tmp_path):
    """Two corpus files: base texts, near-copies (0 or 1 changed word) of some, an empty
    document; queries: the base texts, each copied 0-3 times in the corpus, and an empty one."""
    rng = random.Random(0)
    base = [" ".join(rng.choice(WORDS) for _ in range(80)) for _ in range(8)]
    copies = []
    for i, text in enumerate(base):
        for c in range(i % 4):
            w = text.split()
            for _ in range(c // 2):  # 0 or 1 changed word: Jaccard >= 0.87
                w[rng.randrange(len(w))] = rng.choice(WORDS)
            copies.append(" ".join(w))
    a = _write(tmp_path / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(copies)] + [{"id": "e", "text": ""}])
    b = _write(tmp_path / "b.jsonl", [{"id": f"b{i}", "text": " ".join(rng.choice(WORDS) for _ in range(60))}
                                      for i in range(20)])
    q = _write(tmp_path / "q.jsonl", [{"id": f"q{i}", "text": t, "topic": i} for i, t in enumerate(base)]
               + [{"id": "q-empty", "text": " ... "}])
    return a, b, q, base, copies


def test_clusters_and_counts_against_brute_force_then_the_copying_breakdown(tmp_path):
    a, b, q, base, copies = _files(tmp_path)
    out = tmp_path / "run"
    res = _run("dedup", "--data", a, "--data", b, "--queries", q, "--threshold", "0.8", "--out", out, "--report")
    assert res.exit_code == 1, res.output  # the empty query is an error row
    assert "1 of 9 queries have no word to shingle" in " ".join(res.output.split())
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "dedup" and results["n_documents"] == len(copies) + 21 and results["n_empty"] == 1
    assert results["lsh"]["bands"] == 18 and results["lsh"]["rows"] == 7 and results["provenance"]["data"][2]["role"] == "queries"
    corpus = [r["text"] for r in _rows(a) + _rows(b)]
    truth = [sum(1 for t in corpus if shingles(t) and jaccard(shingles(t), shingles(x)) >= 0.8) for x in base]
    assert truth == [i % 4 for i in range(8)]  # the planted counts, by brute force
    rows = _rows(out / "samples.jsonl")
    assert [r.get("near_copies") for r in rows] == truth + [None] and "no word" in rows[-1]["error"]
    annotated = _rows(out / "queries.jsonl")
    assert [r.get("duplication") for r in annotated] == truth + [None]
    assert annotated[0]["topic"] == 0 and annotated[0]["text"] == base[0]
    q_results = results["queries"]
    assert q_results["by_count"] == {"0": 2, "1": 2, "2": 2, "3": 2} and q_results["n_with_copies"] == 6
    assert q_results["with_copies_rate_ci"][0] < 0.75 < q_results["with_copies_rate_ci"][1]
    clusters = _rows(out / "clusters.jsonl")
    assert sorted(c["size"] for c in clusters) == [2, 2, 3, 3]  # the copies of bases 2, 3, 6, 7 (1 copy: alone)
    assert all(c["min_jaccard"] >= 0.8 for c in clusters)
    html = (out / "report.html").read_text()
    assert "Near-duplicates" in html and 'id="guide-dedup"' in html and "Rows with errors" in html
    # The counts as the duplication field of copying's breakdown: one level per count.
    cop = tmp_path / "cop"
    res = _run("copying", "--outputs", out / "queries.jsonl", "--references", out / "queries.jsonl", "--out", cop, "-q")
    assert res.exit_code == 0, res.output
    by = json.loads((cop / "results.json").read_text())["by_duplication"]
    assert {k: v["n"] for k, v in by.items()} == {"0": 2, "1": 2, "2": 2, "3": 2}


def test_without_queries_one_row_per_cluster(tmp_path):
    rows = [{"id": i, "text": t} for i, t in enumerate(["a b c d e f g", "A b, c d e f g!", "x y z", "", "a b c d e f h"])]
    out = tmp_path / "run"
    res = _run("dedup", "--data", _write(tmp_path / "c.jsonl", rows), "--threshold", "0.5", "--out", out, "-q")
    assert res.exit_code == 0, res.output
    (cluster,) = _rows(out / "samples.jsonl")
    # {0, 1} are copies; 4 shares 2 of its 3 shingles with them: Jaccard 2/4 = 0.5.
    assert cluster["ids"] == [0, 1, 4] and cluster["min_jaccard"] == 0.5 and cluster["max_jaccard"] == 1.0
    assert cluster["where"][0].endswith("c.jsonl:1")
    results = json.loads((out / "results.json").read_text())
    assert results["n_exact_copies"] == 1 and results["n_empty"] == 1 and results["empty_ids"] == [3]
    assert results["in_clusters_rate"] == 3 / 4 and not (out / "queries.jsonl").exists()


def test_bad_input_is_refused_with_file_line_and_field(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"id": "x", "text": "one two three"}])
    b = _write(tmp_path / "b.jsonl", [{"id": "y", "text": "four"}, {"id": "x", "text": "five"}])
    res = _run("dedup", "--data", a, "--data", b, "--out", tmp_path / "r1")
    assert res.exit_code == 2 and "b.jsonl:2: duplicate id 'x'" in " ".join(res.output.split())
    assert not (tmp_path / "r1" / "results.json").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "\xff"}\n')
    res = _run("dedup", "--data", bad, "--out", tmp_path / "r2")
    assert res.exit_code == 2 and "bad.jsonl:2: not valid UTF-8" in " ".join(res.output.split())
    q = _write(tmp_path / "q.jsonl", [{"id": 1, "text": "one two", "duplication": 16}])
    res = _run("dedup", "--data", a, "--queries", q, "--out", tmp_path / "r3")
    message = " ".join(res.output.split())
    assert res.exit_code == 2 and "q.jsonl:1: field 'duplication' already exists" in message and "--count-field" in message
    res = _run("dedup", "--data", a, "--queries", q, "--count-field", "corpus_copies", "--out", tmp_path / "r4", "-q")
    assert res.exit_code == 0, res.output
    assert _rows(tmp_path / "r4" / "queries.jsonl") == [{"id": 1, "text": "one two", "duplication": 16,
                                                         "corpus_copies": 0}]
    res = _run("dedup", "--data", a, "--bands", "500", "--out", tmp_path / "r5")
    assert res.exit_code == 2 and "bands" in res.output


def test_a_banding_that_misses_pairs_is_warned_about(tmp_path):
    rows = [{"id": i, "text": t} for i, t in enumerate(["a b c d e f g", "A b, c d e f g!", "x y z"])]
    data = _write(tmp_path / "c.jsonl", rows)
    out = tmp_path / "run"
    res = _run("dedup", "--data", data, "--num-perm", "1", "--out", out)
    assert res.exit_code == 0, res.output
    message = " ".join(res.output.split())
    assert "warning: LSH: a pair at Jaccard 0.8 becomes a candidate with probability 0.800 only" in message
    results = json.loads((out / "results.json").read_text())
    assert results["lsh"]["p_candidate_at_threshold"] == 0.8 and "no banding of 1 values" in results["lsh"]["warning"]
    assert results["warnings"] == [f"LSH: {results['lsh']['warning']}"]
    assert "in_clusters_rate_ci" not in results and "no interval" in results["definitions"]["in_clusters_rate"]
    res = _run("dedup", "--data", data, "--out", tmp_path / "ok")
    assert res.exit_code == 0 and "warning" not in res.output
    assert "warnings" not in json.loads((tmp_path / "ok" / "results.json").read_text())
