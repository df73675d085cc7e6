"""Result files are written atomically and carry provenance."""

import json

import pytest

from lmaudit.report.results import environment, read_results, write_jsonl, write_results


def test_results_json_has_schema_and_provenance(tmp_path):
    written = write_results(tmp_path / "results.json", kind="score", command="lmaudit x", provenance={"seed": 3},
                            summary={"a": 1}, started=0.0, files={})
    loaded = read_results(tmp_path / "results.json")
    assert loaded == json.loads(json.dumps(written))
    assert loaded["schema_version"] == 1 and loaded["complete"] is True
    assert loaded["provenance"]["seed"] == 3
    assert set(environment()) <= set(loaded["provenance"])
    assert not list(tmp_path.glob("*.partial"))


def test_incomplete_results_are_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 1, "complete": False}))
    with pytest.raises(ValueError, match="not marked complete"):
        read_results(tmp_path / "results.json")


def test_a_failed_write_leaves_no_file(tmp_path):
    def rows():
        yield {"id": 1}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(tmp_path / "samples.jsonl", rows())
    assert not (tmp_path / "samples.jsonl").exists()
    assert not list(tmp_path.iterdir())  # no .partial left behind either
