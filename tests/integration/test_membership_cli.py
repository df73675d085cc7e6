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


def test_help_has_examples():
    for cmd in ("membership", "dataset-inference", "paired-test"):
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


def test_recall_prefix_is_taken_out_of_the_evaluation(tiny_testbed, tmp_path):
    tb, _ = tiny_testbed
    res = _run("membership", "--model", tb / "model", "--members", tb / "data/members.jsonl",
               "--nonmembers", tb / "data/nonmembers.jsonl", "--attacks", "loss,recall", "--out", tmp_path,
               "--bootstrap", 50)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "results.json").read_text())
    prefix_ids = {e["id"] for e in r["excluded"]}
    assert len(prefix_ids) == 5 and r["n_nonmembers"] == 64 - 5
    assert set(r["attacks"]["recall"]["info"]["prefix_ids"]) <= prefix_ids
    assert not prefix_ids & {s["id"] for s in _rows(tmp_path / "samples.jsonl")}


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
