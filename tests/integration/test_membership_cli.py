"""membership, dataset-inference and paired-test end to end on the tiny testbed, whose truth is known."""

import json

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app

runner = CliRunner()


def _run(*args, quiet=True):
    return runner.invoke(app, [*(["--quiet"] if quiet else []), *map(str, args)])


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _table(results, capsys, monkeypatch, width=100):
    """show_membership's lines at ``width`` columns, and its rows as {attack: cells}."""
    from lmaudit.cli import common
    from lmaudit.cli.membership import show_membership

    monkeypatch.setattr(common.state, "quiet", False)
    monkeypatch.setattr(common.console, "_width", width)
    show_membership(results)
    lines = capsys.readouterr().err.splitlines()
    rows: dict = {}  # an attack's cells across the tables its columns were split into
    for line in lines:
        if "│" in line:
            cells = [c.strip() for c in line.split("│")]
            rows.setdefault(cells[0], []).extend(cells[1:])
    return lines, {name: cells for name, cells in rows.items() if len(cells) == 8}


# Half the last shown digit (0.1% or 0.001), and a hair for a tie shown rounded to even (0.3125 as 31.2%).
SHOWN = 5e-4 + 1e-9


def _figure(cell):
    """(value, starred) of a table cell: "86.1%*" is (0.861, True), "0.936" is (0.936, False)."""
    star = cell.endswith("*")
    text = cell.rstrip("*")
    return (float(text[:-1]) / 100 if text.endswith("%") else float(text)), star


def test_help_has_examples():
    for cmd in ("membership", "dataset-inference", "paired-test", "extract", "copying", "knowledge", "acr"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and f"lmaudit {cmd}" in res.output


def test_membership_on_the_tiny_testbed(tiny_testbed, tmp_path):
    tb, info = tiny_testbed
    res = _run("membership", "--model", tb / "model", "--members", tb / "data/members.jsonl",
               "--nonmembers", tb / "data/nonmembers.jsonl", "--reference-corpus", tb / "data/reference.jsonl",
               "--out", tmp_path, "--bootstrap", 200)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    n = info["n_members"]
    assert r["complete"] and r["n_members"] == n and r["n_nonmembers"] == info["n_nonmembers"]
    expected = {"loss", "zlib", "lowercase", "dc_pdd", *(f"min_k@{k:g}" for k in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)),
                *(f"min_k_pp@{k:g}" for k in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6))}
    assert set(r["attacks"]) == expected
    for name, a in r["attacks"].items():
        assert a["auc_ci"][0] <= a["auc"] <= a["auc_ci"][1]
        assert set(a["tpr_at_fpr"]) == {"0.1", "0.01", "0.001"}
        assert a["tpr_at_fpr"]["0.001"]["unreliable"]  # 64 non-members cannot support 0.1% FPR
        assert a["paper"] and a["higher_means"] == "member"
    # The tiny model memorised its 16x members: loss separates the splits, in the right direction.
    assert r["attacks"]["loss"]["auc"] > 0.7
    assert set(r["blind_baselines"]) == {"bag_of_words", "length", "dates_numbers"}
    assert r["distribution_shift_flag"] is False
    assert r["provenance"]["model"]["fingerprint"] == info["model_fingerprint"]
    assert [d["role"] for d in r["provenance"]["data"]] == ["members", "nonmembers", "reference corpus"]
    samples = _rows(tmp_path / "samples.jsonl")
    assert len(samples) == 2 * n and r["files"]["samples"]["rows"] == 2 * n
    members = [json.loads(x)["id"] for x in (tb / "data/members.jsonl").read_text().splitlines()]
    assert [s["id"] for s in samples[:n]] == members and {s["set"] for s in samples[:n]} == {"member"}
    assert set(samples[0]["scores"]) == expected


def test_the_table_shows_results_json_figures_within_100_columns(tiny_testbed, tmp_path, capsys, monkeypatch):
    tb, info = tiny_testbed
    res = _run("membership", "--model", tb / "model", "--members", tb / "data/members.jsonl",
               "--nonmembers", tb / "data/nonmembers.jsonl", "--attacks", "loss,zlib,min_k_pp,lowercase",
               "--out", tmp_path, "--bootstrap", 50)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    lines, rows = _table(r, capsys, monkeypatch)
    assert max(map(len, lines)) <= 100 and not any("…" in line for line in lines)
    assert set(rows) == {*r["attacks"], *(f"blind: {b}" for b in r["blind_baselines"])}
    for name, a in r["attacks"].items():
        cells = dict(zip(["AUC", "CI", "TPR@10", "TPR@5", "TPR@1", "TPR@0.1", "FPR@95", "AP"], rows[name]))
        assert _figure(cells["AUC"])[0] == pytest.approx(a["auc"], abs=SHOWN)
        tpr = a["tpr_at_fpr"]
        for col, figure, key in (("TPR@10", tpr["0.1"], "tpr"), ("TPR@5", a["tpr_at_5pct_fpr"], "tpr"),
                                 ("TPR@1", tpr["0.01"], "tpr"), ("TPR@0.1", tpr["0.001"], "tpr"),
                                 ("FPR@95", a["fpr_at_95pct_tpr"], "fpr")):
            value, starred = _figure(cells[col])
            assert value == pytest.approx(figure[key], abs=SHOWN) and starred == figure["unreliable"], (name, col)
        assert _figure(cells["AP"]) == (pytest.approx(a["average_precision"]["value"], abs=SHOWN), False)
    # 64 non-members: TPR at 5% FPR rests on 3 of them, so it is starred, and the legend says so.
    assert all(_figure(rows[name][3])[1] for name in r["attacks"])
    legend = " ".join(" ".join(lines).split())
    assert f"TPR@5%FPR: at most 3 of {info['n_nonmembers']} non-members above its threshold" in legend
    assert "AP: average precision, 0.50 for a random ranking" in legend


def test_recall_prefix_is_taken_out_of_the_evaluation(tiny_testbed, tmp_path):
    """Documents left out by design are not error rows: exit status 0. Texts are cut to their
    first 30 words, so that a prefix document fits beside each in the tiny model's 256-token
    context (beside whole ones none does: recall then scores nothing, every row is an error row)."""
    tb, _ = tiny_testbed
    for split in ("members", "nonmembers"):
        cut = [{**r, "text": " ".join(r["text"].split()[:30])} for r in _rows(tb / f"data/{split}.jsonl")]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cut))
    res = _run("membership", "--model", tb / "model", "--members", tmp_path / "members.jsonl",
               "--nonmembers", tmp_path / "nonmembers.jsonl", "--attacks", "loss,recall", "--out", tmp_path / "run",
               "--bootstrap", 50)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "run/results.json").read_text())
    prefix_ids = {e["id"] for e in r["excluded"]}
    assert len(prefix_ids) == 5 and r["n_nonmembers"] == 64 - 5
    assert r["n_errors"] == 0 and r["attacks"]["recall"]["n_nonmembers"] == 64 - 5
    assert set(r["attacks"]["recall"]["info"]["prefix_ids"]) <= prefix_ids
    assert not prefix_ids & {s["id"] for s in _rows(tmp_path / "run/samples.jsonl")}


def test_unknown_attack_and_missing_resource_are_clear_errors(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    args = ["membership", "--model", tb / "model", "--members", tb / "data/members.jsonl",
            "--nonmembers", tb / "data/nonmembers.jsonl", "--out", tmp_path]
    (tmp_path / "results.json").write_text('{"complete": true}')  # an older run's result must not survive
    res = _run(*args, "--attacks", "mink")
    assert res.exit_code == 2 and "did you mean 'min_k'" in res.output
    res = _run(*args, "--attacks", "dc_pdd")
    assert res.exit_code == 2 and "dc_pdd needs reference_corpus" in res.output
    assert not (tmp_path / "results.json").exists()


def test_shifted_non_members_raise_the_distribution_shift_flag(tiny_shifted_testbed, tmp_path):
    tb, _ = tiny_shifted_testbed
    res = _run("membership", "--model", tb / "model", "--members", tb / "data/members.jsonl",
               "--nonmembers", tb / "data/nonmembers.jsonl", "--attacks", "loss", "--out", tmp_path,
               "--bootstrap", 200, quiet=False)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["distribution_shift_flag"] is True and "dates_numbers" in r["distribution_shift"]["flagged_by"]
    assert r["blind_baselines"]["dates_numbers"]["auc"] > 0.9
    assert "DISTRIBUTION SHIFT" in res.output


def test_membership_with_two_reference_models(tiny_testbed, tmp_path, make_tiny, tokenizer):
    tb, info = tiny_testbed
    make_tiny("gpt2", len(tokenizer)).save_pretrained(tmp_path / "ref")
    tokenizer.save_pretrained(tmp_path / "ref")
    res = _run("membership", "--model", tb / "model", "--members", tb / "data/members.jsonl",
               "--nonmembers", tb / "data/nonmembers.jsonl", "--attacks", "loss,reference_diff",
               "--reference-model", tb / "model", "--reference-model", tmp_path / "ref", "--out", tmp_path / "out",
               "--bootstrap", 20)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "out/results.json").read_text())
    assert list(r["attacks"]) == ["loss", "reference_diff@1", "reference_diff@2"]
    assert [m["name"] for m in r["provenance"]["reference_models"]] == [str(tb / "model"), str(tmp_path / "ref")]
    rows = _rows(tmp_path / "out/samples.jsonl")
    assert all(row["scores"]["reference_diff@1"] == 0 for row in rows)  # the target as its own reference
    assert sum(row["scores"]["reference_diff@2"] != 0 for row in rows) == len(rows)


def test_dataset_inference_on_the_tiny_testbed(tiny_testbed, tmp_path):
    tb, info = tiny_testbed
    res = _run("dataset-inference", "--model", tb / "model", "--suspect", tb / "data/members.jsonl",
               "--validation", tb / "data/nonmembers.jsonl", "--null-trials", 20, "--permutation", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["p_value"] < 0.01 and r["significant"]
    assert r["n_suspect"] == info["n_members"] and r["n_validation"] == info["n_nonmembers"]
    null = r["null_calibration"]
    assert null["trials"] == 20 and null["false_positive_rate"] == null["rejections"] / 20 <= 0.25
    assert null["false_positive_rate_ci"][0] <= null["false_positive_rate"] <= null["false_positive_rate_ci"][1]
    assert r["distribution_shift_flag"] is False
    assert r["permutation"]["p_value"] < 0.01
    assert all(w >= 0 for w in r["feature_weights"].values())
    assert [c["n"] for c in r["p_value_curve"]] == [2, 5, 10, 20]
    halves = [s["half"] for s in _rows(tmp_path / "samples.jsonl")]
    assert halves.count("A") == halves.count("B") == info["n_members"]


def test_dataset_inference_takes_maini_et_als_perturbation_features(tiny_testbed, tmp_path):
    tb, info = tiny_testbed
    res = _run("dataset-inference", "--model", tb / "model", "--suspect", tb / "data/members.jsonl",
               "--validation", tb / "data/nonmembers.jsonl", "--attacks", "loss,perturb_diff,perturb_ratio",
               "--null-trials", 0, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    kinds = ("word_swap", "typos", "deletion", "case", "whitespace", "underscores")
    expected = {"loss", *(f"perturb_{f}@{k}" for f in ("diff", "ratio") for k in kinds)}
    assert set(r["feature_weights"]) == set(r["features"]) == expected
    assert r["features"]["perturb_ratio@typos"]["params"] == {"kind": "typos"}
    # Every testbed document has words, letters and spaces: no feature drops a document.
    assert not r["dropped_features"] and not r["excluded"] and r["n_suspect"] == info["n_members"]
    assert r["p_value"] < 0.01 and all(w >= 0 for w in r["feature_weights"].values())
    rows = _rows(tmp_path / "samples.jsonl")
    assert all(set(row["features"]) == expected and None not in row["features"].values() for row in rows)


def test_dataset_inference_flags_a_shifted_validation_set(tiny_shifted_testbed, tmp_path):
    tb, _ = tiny_shifted_testbed
    res = _run("dataset-inference", "--model", tb / "model", "--suspect", tb / "data/members.jsonl",
               "--validation", tb / "data/nonmembers.jsonl", "--null-trials", 0, "--out", tmp_path, quiet=False)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["distribution_shift_flag"] is True and "DISTRIBUTION SHIFT" in res.output


def test_dataset_inference_finds_nothing_between_two_non_member_halves(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    rows = (tb / "data/nonmembers.jsonl").read_text().splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(rows[:32]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(rows[32:]) + "\n")
    res = _run("dataset-inference", "--model", tb / "model", "--suspect", tmp_path / "a.jsonl",
               "--validation", tmp_path / "b.jsonl", "--null-trials", 0, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out/results.json").read_text())["p_value"] > 0.05


def test_dataset_inference_null_pool_calibrates_at_the_reported_size(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    members = (tb / "data/members.jsonl").read_text().splitlines()
    rows = (tb / "data/nonmembers.jsonl").read_text().splitlines()
    (tmp_path / "s.jsonl").write_text("\n".join(members[:16]) + "\n")
    (tmp_path / "v.jsonl").write_text("\n".join(rows[:24]) + "\n")
    (tmp_path / "pool.jsonl").write_text("\n".join(rows[24:]) + "\n")
    common = ["--model", tb / "model", "--suspect", tmp_path / "s.jsonl", "--validation", tmp_path / "v.jsonl",
              "--null-trials", 10]
    plain = _run("dataset-inference", *common, "--out", tmp_path / "plain")
    pooled = _run("dataset-inference", *common, "--null-pool", tmp_path / "pool.jsonl", "--out", tmp_path / "pooled")
    assert plain.exit_code == 0 and pooled.exit_code == 0, plain.output + pooled.output
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("plain", "pooled"))
    assert a["null_calibration"]["at_reported_size"] is False  # 24 validation documents cannot make 16 + 24
    assert b["null_calibration"]["at_reported_size"] is True and b["summary"]["null_at_reported_size"] is True
    size = b["null_calibration"]["calibrated_size"]
    assert (size["suspect"]["documents"], size["validation"]["documents"]) == (16, 24)
    assert b["p_value"] == a["p_value"]  # the pool never enters the reported test
    sets = [r["set"] for r in _rows(tmp_path / "pooled/samples.jsonl")]
    assert sets.count("null_pool") == len(rows) - 24
    assert [(d["role"], d["n_rows"]) for d in b["provenance"]["data"]][:3] == [
        ("suspect", 16), ("validation", 24), ("null pool", len(rows) - 24)]
    # A pool sharing a document with the validation set is refused before any model is loaded.
    (tmp_path / "bad.jsonl").write_text("\n".join(rows[20:]) + "\n")
    bad = _run("dataset-inference", *common, "--model", tmp_path / "no-model-here", "--null-pool",
               tmp_path / "bad.jsonl", "--out", tmp_path / "bad")
    assert bad.exit_code != 0 and "bad.jsonl" in bad.output and "also in the suspect or validation" in bad.output
    assert not (tmp_path / "bad/results.json").exists()


@pytest.mark.parametrize(("split", "favoured"), [("members", True), ("nonmembers", False)])
def test_paired_test_on_testbed_variants(tiny_testbed, tmp_path, split, favoured):
    tb, _ = tiny_testbed
    private = sorted((tb / "data/variants").glob(f"{split}.v*.jsonl"))
    assert len(private) == 3
    res = _run("paired-test", "--model", tb / "model", "--public", tb / f"data/{split}.jsonl",
               "--private", *private, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["n_private_versions"] == 3 and r["n_items"] == 64
    # Members were trained on their published text only; non-members on none of theirs.
    assert (r["p_value"] < 0.01) is favoured and (r["wilcoxon"]["p_value"] < 0.01) is favoured
    rows = _rows(tmp_path / "samples.jsonl")
    assert len(rows) == 64 and all(len(x["loss_private"]) == 3 for x in rows)


def test_paired_test_missing_partner_fails_and_writes_no_result(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    lines = (tb / "data/variants/members.v1.jsonl").read_text().splitlines()
    (tmp_path / "short.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    missing = json.loads(lines[-1])["id"]
    res = _run("paired-test", "--model", tb / "model", "--public", tb / "data/members.jsonl",
               "--private", tmp_path / "short.jsonl", "--out", tmp_path / "out")
    assert res.exit_code == 2 and f"no row with id '{missing}'" in res.output and "short.jsonl" in res.output
    assert not (tmp_path / "out" / "results.json").exists()


def test_extract_reproduces_the_testbed_measurement(tiny_testbed, tmp_path):
    tb, info = tiny_testbed
    res = _run("extract", "--model", tb / "model", "--data", tb / "data/members.jsonl", "--out", tmp_path,
               "--bootstrap", 100)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    measured = info["measured"]
    # testbed.json rounds to 4 decimals
    assert r["n"] == info["n_members"] and r["exact_match_rate"] == pytest.approx(measured["members"]["extraction_rate"], abs=1e-4)
    for level, v in measured["members_by_duplication"].items():
        assert r["by_duplication"][level]["exact_match_rate"] == pytest.approx(v["extraction_rate"], abs=1e-4)
    lo, hi = r["exact_match_rate_ci"]
    assert lo <= r["exact_match_rate"] <= hi
    rows = _rows(tmp_path / "samples.jsonl")
    assert len(rows) == info["n_members"] and {"exact_match", "token_match", "longest_match_tokens", "generated"} <= set(rows[0])


def test_knowledge_on_the_tiny_testbed(tiny_testbed, tmp_path):
    """Zero-shot cloze questions: members, and duplicated members most, are answered more often
    than non-members (whose facts the model never saw), and every row is accounted for."""
    tb, _ = tiny_testbed
    rates = {}
    for split in ("members", "nonmembers"):
        out = tmp_path / split
        res = _run("knowledge", "--model", tb / "model", "--data", tb / f"data/knowledge/{split}.jsonl",
                   "--shots", tb / "data/knowledge/shots.jsonl", "--template", "cloze", "--n-shots", 0,
                   "--max-new-tokens", 8, "--bootstrap", 50, "--out", out)
        assert res.exit_code == 0, res.output
        r = json.loads((out / "results.json").read_text())
        questions = _rows(tb / f"data/knowledge/{split}.jsonl")
        rows = _rows(out / "samples.jsonl")
        assert r["n"] == len(rows) == len(questions) and [x["id"] for x in rows] == [q["id"] for q in questions]
        assert r["exact_match_rate"] == pytest.approx(sum(x["exact_match"] for x in rows) / len(rows))
        assert set(r["by_kind"]) == {q["kind"] for q in questions}
        rates[split] = r
    assert rates["members"]["by_duplication"]["16"]["exact_match_rate"] > rates["nonmembers"]["exact_match_rate"]


def test_knowledge_bad_input_names_file_and_line(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"id": 1, "question": "Q?", "answer": "A"}\n{"id": 2, "question": "Q2?"}\n')
    res = _run("knowledge", "--model", tb / "model", "--data", bad, "--n-shots", 0, "--out", tmp_path / "run")
    assert res.exit_code != 0 and "qa.jsonl:2" in res.output and "'answer'" in res.output
    assert not (tmp_path / "run" / "results.json").exists()


def test_acr_on_extracted_targets_of_the_tiny_testbed(tiny_testbed, tmp_path):
    """Targets from `lmaudit extract`'s samples (--text-field target): each success is re-checked by
    generating from the reported prompt."""
    from lmaudit.models.base import GenerationConfig
    from lmaudit.models.hf import HFModel

    tb, _ = tiny_testbed
    res = _run("extract", "--model", tb / "model", "--data", tb / "data/members.jsonl", "--prefix-tokens", 16,
               "--suffix-tokens", 8, "--bootstrap", 20, "--out", tmp_path / "extract")
    assert res.exit_code == 0, res.output
    extracted = [r for r in _rows(tmp_path / "extract/samples.jsonl") if r["exact_match"]][:2]
    assert extracted, "the tiny testbed should have extractable members"
    targets = tmp_path / "targets.jsonl"
    targets.write_text("".join(json.dumps({"id": r["id"], "target": r["target"], "group": "member"}) + "\n"
                               for r in extracted))
    res = _run("acr", "--model", tb / "model", "--data", targets, "--text-field", "target", "--steps", 40,
               "--candidates", 32, "--top-k", 64, "--patience", 10, "--out", tmp_path / "acr")
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "acr/results.json").read_text())
    rows = _rows(tmp_path / "acr/samples.jsonl")
    assert r["n"] == len(rows) == len(extracted)
    assert r["provenance"]["config"]["n_candidates"] == 32 and r["compute"]["steps"] == sum(x["steps"] for x in rows)
    lm = HFModel.from_pretrained(str(tb / "model"), device="cpu")
    for row in rows:
        assert {"acr", "prompt", "steps", "seconds"} <= set(row)
        if row["success"]:
            prompt = lm.encode([row["prompt"]])[0]
            target = lm.encode([row["target"]])[0]
            out = lm.generate([[lm.bos_token_id, *prompt]], GenerationConfig(max_new_tokens=len(target), stop_at_eos=False))[0]
            assert out == target and row["acr"] == pytest.approx(len(target) / len(prompt))


def test_the_table_says_n_behind_each_attack_and_warns_on_small_samples(capsys, monkeypatch):
    from lmaudit.cli.common import state
    from lmaudit.cli.membership import show_membership

    def attack(n_m, n_n):
        return {"auc": 1.0, "auc_ci": [0.6, 1.0], "n_members": n_m, "n_nonmembers": n_n,
                "tpr_at_fpr": {"0.1": {"tpr": 1.0, "unreliable": True}}}

    results = {"n_members": 3, "n_nonmembers": 4, "attacks": {"loss": attack(3, 4), "reference_diff": attack(2, 4)}}
    monkeypatch.setattr(state, "quiet", False)
    show_membership(results)
    err = " ".join(capsys.readouterr().err.split())
    assert "reference_diff: scored 2 of 3 members and 4 of 4 non-members" in err
    assert "loss: scored" not in err
    assert "small sample: as few as 2 scored documents" in err
    big = {"n_members": 100, "n_nonmembers": 100, "attacks": {"loss": attack(100, 100)}}
    show_membership(big)
    assert "small sample" not in capsys.readouterr().err


def test_the_table_fits_100_columns_with_the_longest_attack_name(capsys, monkeypatch):
    from lmaudit.membership.base import ATTACKS, expand

    figure = {"tpr": 0.5, "fpr": 0.25, "unreliable": False, "n_nonmembers": 1000, "max_false_positives": 50}
    full = {"auc": 0.9, "auc_ci": [0.8, 0.95], "n_members": 1000, "n_nonmembers": 1000,
            "tpr_at_fpr": {"0.1": figure, "0.01": figure, "0.001": figure}, "tpr_at_5pct_fpr": figure,
            "fpr_at_95pct_tpr": figure, "average_precision": {"value": 0.875, "chance": 0.5}}
    older = {k: full[k] for k in ("auc", "auc_ci", "n_members", "n_nonmembers", "tpr_at_fpr")}  # before these figures
    longest = max((a.label for a in expand(ATTACKS.names())), key=len)
    blind = {name: {"auc": 0.5, "auc_ci": [0.45, 0.55]} for name in ("bag_of_words", "length", "dates_numbers")}
    results = {"n_members": 1000, "n_nonmembers": 1000, "attacks": {longest: full, "loss": older}, "blind_baselines": blind}
    for width in (100, 80, 60):  # narrower than the table: split into tables, never a figure cut
        lines, rows = _table(results, capsys, monkeypatch, width=width)
        assert max(map(len, lines)) <= width and not any("…" in line for line in lines)
        assert rows[longest] == ["0.900", "0.80-0.95", "50.0%", "50.0%", "50.0%", "50.0%", "25.0%", "0.875"]
        assert sum("│" in line and line.split("│")[0].strip() == longest for line in lines) == (width < 100) + 1 + (
            width < 80)
    assert rows["loss"] == ["0.900", "0.80-0.95", "50.0%", "-", "50.0%", "50.0%", "-", "-"]
    assert rows["blind: dates_numbers"] == ["0.500", "0.45-0.55", *[""] * 6]
