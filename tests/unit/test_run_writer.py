"""The run writer: results.json last and only on success; every file listed with rows and sha256."""

import hashlib
import json

import pytest

from lmaudit.report.results import read_results
from lmaudit.report.run import RunResult, RunWriter


def _complete_run(out):
    with RunWriter(out, kind="score", command="first") as run:
        run.samples([{"id": 1}])
        run.finish(summary={}, provenance={})
    assert read_results(out / "results.json")["complete"] is True


def test_a_finished_run_lists_its_files_with_rows_and_sha256(tmp_path):
    with RunWriter(tmp_path / "run", kind="score", command="lmaudit x", started=0.0) as run:
        run.samples(({"id": i} for i in range(3)))  # a generator: rows are counted while written
        run.samples([{"id": "a"}], name="excluded")
        written = run.finish(summary={"n": 3}, provenance={"seed": 7}, extra={"section": [1]})
    out = tmp_path / "run"
    loaded = read_results(out / "results.json")
    assert loaded == json.loads(json.dumps(written))
    assert loaded["command"] == "lmaudit x" and loaded["summary"] == {"n": 3} and loaded["section"] == [1]
    assert loaded["kind"] == "score"  # what the run is, whatever command line ran it
    assert loaded["provenance"]["seed"] == 7 and "git_commit" in loaded["provenance"]
    assert loaded["files"] == {
        "samples": {"path": "samples.jsonl", "rows": 3,
                    "sha256": hashlib.sha256((out / "samples.jsonl").read_bytes()).hexdigest()},
        "excluded": {"path": "excluded.jsonl", "rows": 1,
                     "sha256": hashlib.sha256((out / "excluded.jsonl").read_bytes()).hexdigest()},
    }
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3
    assert not list(out.glob("*.partial"))


def test_results_json_is_removed_on_entry(tmp_path):
    _complete_run(tmp_path)
    with RunWriter(tmp_path, kind="score", command="second") as run:
        assert not (tmp_path / "results.json").exists()  # before any work is done
        run.finish(summary={}, provenance={})


@pytest.mark.parametrize("where", ["before files", "while writing samples", "after finish"])
def test_a_failure_leaves_nothing_complete(tmp_path, where):
    _complete_run(tmp_path)

    def rows():
        yield {"id": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with RunWriter(tmp_path, kind="score", command="second") as run:
            if where == "before files":
                raise RuntimeError("boom")
            if where == "while writing samples":
                run.samples(rows())
            run.finish(summary={}, provenance={})
            raise RuntimeError("boom")
    assert not (tmp_path / "results.json").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_leaving_without_finish_is_an_error_not_a_silent_incomplete_run(tmp_path):
    with pytest.raises(RuntimeError, match="without finish"):
        with RunWriter(tmp_path, kind="score", command="x") as run:
            run.samples([{"id": 1}])
    assert not (tmp_path / "results.json").exists()


def test_files_cannot_follow_results_json(tmp_path):
    with pytest.raises(RuntimeError, match="before finish"):
        with RunWriter(tmp_path, kind="score", command="x") as run:
            run.finish(summary={}, provenance={})
            run.samples([{"id": 1}])
    assert not (tmp_path / "results.json").exists()


def test_run_result_reads_as_the_results_and_samples_tuple():
    result = RunResult(results={"a": 1}, samples=[{"id": 1}], provenance={"seed": 0})
    results, samples = result
    assert results == {"a": 1} and samples == [{"id": 1}]
    assert result[0] is result.results and result[1] is result.samples
