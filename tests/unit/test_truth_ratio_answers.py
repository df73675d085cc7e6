"""Paraphrased and perturbed answers of the testbed's knowledge questions (TOFU's truth ratio)."""

import re

import pytest

from lmaudit.testbed.corpus import ANSWER_FORMS, generate_corpus, knowledge_questions, truth_ratio_answers


def _questions(n=40):
    for i, row in enumerate(generate_corpus(n, seed=7)):
        for q in knowledge_questions(row["text"], row["facts"]):
            yield {**q, "id": f"bio-{i:05d}/{q['kind']}"}, row["facts"]


def test_every_question_kind_has_a_form():
    kinds = [q["kind"] for q, _ in _questions(1)]
    assert sorted(kinds) == sorted(ANSWER_FORMS) and len(kinds) == 9


def test_paraphrase_holds_the_true_value_and_perturbed_answers_other_values_in_the_same_form():
    for q, facts in _questions():
        paraphrased, perturbed = truth_ratio_answers(q, facts, seed=0)
        lead = "a " if q["kind"] == "first_work" else ""
        form = lead + ANSWER_FORMS[q["kind"]]
        assert paraphrased == form.format(q["answer"]) and paraphrased != q["answer"]
        pattern = re.compile(re.escape(form).replace(r"\{\}", "(.+)"))
        values = [pattern.fullmatch(p).group(1) for p in perturbed]
        assert len(perturbed) == 3 and len(set(values)) == 3  # three different wrong values
        assert q["answer"] not in values and paraphrased not in perturbed
        if q["kind"] == "first_work":
            assert not set(values) & set(facts["works"])  # not the person's other work either
        if q["kind"].endswith("_year"):
            assert all(v.isdigit() and abs(int(v) - int(q["answer"])) <= 10 for v in values)


def test_perturbed_answers_are_drawn_per_question_id_and_seed():
    q, facts = next(_questions(1))
    first = truth_ratio_answers(q, facts, seed=0)
    assert truth_ratio_answers(q, facts, seed=0) == first  # deterministic
    others = {tuple(truth_ratio_answers(q, facts, seed=s)[1]) for s in range(1, 6)}
    others |= {tuple(truth_ratio_answers({**q, "id": f"bio-99999/{q['kind']}"}, facts, seed=0)[1])}
    assert len(others - {tuple(first[1])}) >= 2


def test_an_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown question kind 'age'"):
        truth_ratio_answers({"id": "x/age", "kind": "age", "answer": "3"}, {}, seed=0)
