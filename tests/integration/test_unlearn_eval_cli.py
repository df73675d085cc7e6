"""``lmaudit unlearn-eval`` end to end on a forget split of the tiny testbed.

The split is made here (8 members as F, the rest as R, the non-members as H; paraphrased and
perturbed answers synthesised from the questions' own answers) in the on-disk layout of a
testbed built with ``--forget``. Its "retrain" model is the target's copy: these tests check the
plumbing, not that the target leaks.
"""

import json
import shutil
from collections import defaultdict

import pytest
from typer.testing import CliRunner

from lmaudit.cli import app
from lmaudit.data import read_records
from lmaudit.testbed.forget import select_forget

runner = CliRunner()
CRITERIA = ("verbmem_forget", "extraction_forget", "knowmem_forget", "knowmem_retain", "auc_forget_holdout", "privleak",
            "loss", "tofu", "forget_quality", "model_utility")


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def forget_testbed(tiny_testbed, tmp_path_factory):
    src, _ = tiny_testbed
    out = tmp_path_factory.mktemp("forget-testbed")
    members = read_records(src / "data" / "members.jsonl")
    forget, retain, _ = select_forget(members, 8, seed=0)
    doc_rows = lambda recs: [{"id": r.id, "text": r.text, **r.meta} for r in recs]  # noqa: E731
    _write(out / "data" / "forget.jsonl", doc_rows(forget))
    _write(out / "data" / "retain.jsonl", doc_rows(retain))
    shutil.copy(src / "data" / "nonmembers.jsonl", out / "data" / "nonmembers.jsonl")
    questions = {s: [json.loads(x) for x in (src / "data" / "knowledge" / f"{s}.jsonl").read_text().splitlines()]
                 for s in ("members", "nonmembers", "shots")}
    answers = defaultdict(list)
    for q in questions["members"] + questions["nonmembers"]:
        answers[q["kind"]].append(q["answer"])

    def synth(q):  # the paraphrase is the answer itself; wrong answers: others of the same kind
        wrong = [a for a in dict.fromkeys(answers[q["kind"]]) if a != q["answer"]][:3]
        return {**q, "paraphrased_answer": q["answer"], "perturbed_answers": wrong}

    in_f = {r.id for r in forget}
    knowledge = out / "data" / "knowledge"
    _write(knowledge / "forget.jsonl", [synth(q) for q in questions["members"] if q["doc_id"] in in_f])
    _write(knowledge / "retain.jsonl", [synth(q) for q in questions["members"] if q["doc_id"] not in in_f])
    _write(knowledge / "holdout.jsonl", [synth(q) for q in questions["nonmembers"]])
    _write(knowledge / "shots.jsonl", questions["shots"])
    shutil.copytree(src / "model", out / "model")
    shutil.copytree(src / "model", out / "retrain")
    return out


def _run(*args):
    return runner.invoke(app, ["--quiet", "unlearn-eval", *map(str, args)])


def test_every_criterion_for_target_retrain_and_a_candidate(forget_testbed, tmp_path):
    out = tmp_path / "run"
    res = _run("--testbed", forget_testbed, "--model", forget_testbed / "model", "--knowledge-docs", 4,
               "--bootstrap", 100, "--out", out)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "unlearn-eval" and results["complete"]
    candidate = str(forget_testbed / "model")
    assert set(results["models"]) == {"target", "retrain", candidate}
    for label, row in results["models"].items():
        for key in CRITERIA:
            assert row[key] is not None, (label, key)
        assert set(row["tofu"]) == {"forget", "retain", "holdout"}
        assert row["verbmem_forget"]["n"] == 8 and row["privleak"]["n_holdout"] == 64
        assert row["forget_quality"]["n_unlearned"] == 72  # 9 questions per forget document
    assert results["models"]["retrain"]["privleak"]["value"] == 0
    assert results["models"][candidate]["forget_quality"]["p_value"] == 1  # the same weights as the retrain copy
    assert results["knowledge_subsample"]["retain"] == {"n_docs": 4, "of_docs": 56, "seed": 0, "subsampled": True}
    roles = {e["role"] for e in results["provenance"]["data"]}
    assert roles == {"forget", "retain", "holdout", "forget knowledge", "retain knowledge", "holdout knowledge", "shots"}
    assert set(results["provenance"]["models"]) == {"target", "retrain", candidate}
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(summary["models"]) == set(results["models"])
    assert summary["models"]["retrain"]["privleak"] == 0


def test_missing_retrain_is_an_error(forget_testbed, tmp_path):
    data = forget_testbed / "data"
    res = _run("--target", forget_testbed / "model", "--forget", data / "forget.jsonl", "--retain",
               data / "retain.jsonl", "--holdout", data / "nonmembers.jsonl", "--out", tmp_path / "run")
    assert res.exit_code == 2 and "retrain model" in res.output and "no default" in res.output
    assert not (tmp_path / "run" / "results.json").exists()


def test_forget_and_retain_overlap_is_an_error_naming_the_ids(forget_testbed, tmp_path):
    data = forget_testbed / "data"
    forget = [json.loads(x) for x in (data / "forget.jsonl").read_text().splitlines()]
    retain = tmp_path / "retain.jsonl"
    retain.write_text((data / "retain.jsonl").read_text() + json.dumps(forget[0]) + "\n")
    res = _run("--testbed", forget_testbed, "--retain", retain, "--out", tmp_path / "run")
    assert res.exit_code == 2 and f"share 1 document id: {forget[0]['id']}" in res.output
