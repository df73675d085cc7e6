"""Knowledge QA: prompts and answer cuts by hand, answers against a hand-written argmax loop."""

import random

import pytest
import torch

from lmaudit.data import DataError, Record
from lmaudit.memorization.knowledge import (
    KnowledgeConfig, answer_metrics, build_prompt, cut_answer, normalize_answer, run_knowledge,
)
from lmaudit.testbed.corpus import generate_corpus, knowledge_questions


def _q(i, question, answer, **meta):
    return Record(id=f"q{i}", text=question, source="qa.jsonl", line=i + 1, meta={"answer": answer, **meta})


def test_prompts_by_hand():
    shots = [("Who wrote it?", "Ada."), ("When?", "1900")]
    assert build_prompt("Where?", shots, "qa") == (
        "Question: Who wrote it?\nAnswer: Ada.\n\nQuestion: When?\nAnswer: 1900\n\nQuestion: Where?\nAnswer:")
    # Cloze shots are statements: the answer completes the question and a full stop ends it (once).
    assert build_prompt("She lived in", shots, "cloze") == "Who wrote it? Ada. When? 1900. She lived in"
    assert build_prompt("She lived in", [], "cloze") == "She lived in"


def test_answer_cuts_by_hand():
    assert cut_answer(" Paris\n\nQuestion: x", "Paris", "qa") == "Paris"
    assert cut_answer(" Paris\nQuestion: x", "Paris", "qa") == "Paris"  # MUSE's stops: a blank line or the next question
    assert cut_answer(" Paris Question: x", "Paris", "qa") == "Paris"
    assert cut_answer("\n\nParis", "Paris", "qa") == ""  # a blank line first: the model gave no answer
    # Cloze: as many words as the true answer, whatever follows.
    assert cut_answer(" The Silent Tide in 1954.", "The Silent Tide", "cloze") == "The Silent Tide"
    assert cut_answer(" 1954.", "1954", "cloze") == "1954."
    assert cut_answer("", "1954", "cloze") == ""


def test_exact_match_and_rouge_by_hand():
    assert normalize_answer("  The Silent, TIDE. ") == "silent tide"
    m = answer_metrics("1954.", "1954")
    assert m == {"exact_match": True, "rouge_l_f1": 1.0, "rouge_l_recall": 1.0}
    # 'the quiet tide' vs 'the silent tide': LCS 2 of 3 words each way.
    m = answer_metrics("the quiet tide", "The Silent Tide")
    assert not m["exact_match"] and m["rouge_l_f1"] == pytest.approx(2 / 3) and m["rouge_l_recall"] == pytest.approx(2 / 3)


def _argmax_continuation(lm, prompt, n):
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            nxt = int(lm.model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            seq.append(nxt)
            if nxt == lm.eos_token_id:
                break
    return [t for t in seq[len(prompt) :] if t != lm.eos_token_id]


@pytest.mark.parametrize("template", ["qa", "cloze"])
def test_answers_match_an_argmax_loop(tiny_lm, template):
    items = [_q(i, f"Where did person {i} live", f"Town {i}", kind="city" if i % 2 else "year", duplication=1 + i % 2)
             for i in range(6)]
    shots = [_q(10 + i, f"Where did shot {i} live", f"Shot town {i}") for i in range(2)]
    cfg = KnowledgeConfig(template=template, n_shots=2, max_new_tokens=5, n_bootstrap=20)
    results, rows = run_knowledge(tiny_lm, items, shots=shots, config=cfg, batch_size=4)
    assert [r["id"] for r in rows] == [r.id for r in items] and results["excluded"] == []
    for item, row in zip(items, rows):
        prompt = build_prompt(item.text, [(s.text, s.meta["answer"]) for s in shots], template)
        gen = _argmax_continuation(tiny_lm, [tiny_lm.bos_token_id, *tiny_lm.encode([prompt])[0]], 5)
        continuation = tiny_lm.decode(gen)
        assert row["continuation"] == continuation
        assert row["prediction"] == cut_answer(continuation, item.meta["answer"], template)
        assert row["exact_match"] == (normalize_answer(row["prediction"]) == normalize_answer(item.meta["answer"]))
    assert results["n"] == 6 and results["exact_match_rate"] == sum(r["exact_match"] for r in rows) / 6
    assert set(results["by_kind"]) == {"city", "year"} and results["by_duplication"]["2"]["n"] == 3


def test_shots_drawn_from_the_items_are_not_evaluated(tiny_lm):
    items = [_q(i, f"Question {i}", f"answer {i}") for i in range(8)]
    results, rows = run_knowledge(tiny_lm, items, config=KnowledgeConfig(n_shots=3, max_new_tokens=2, n_bootstrap=20))
    excluded = [e["id"] for e in results["excluded"]]
    assert len(excluded) == 3 and results["n"] == 5 and results["n_items"] == 8
    assert {e["reason"] for e in results["excluded"]} == {"drawn as a shot"}
    assert {r["id"] for r in rows} == {r.id for r in items} - set(excluded)
    assert [s["question"] for s in results["shots"]] == [r.text for r in items if r.id in excluded]


def test_items_that_are_shots_are_left_out(tiny_lm):
    """The same file as --data and --shots: the shots' own questions are not scored. Ids alone do
    not count: files numbered by line share ids."""
    items = [_q(i, f"Question {i}", f"answer {i}") for i in range(5)]
    shots = [_q(i, f"Question {i}", f"answer {i}") for i in range(2)] + [_q(3, "Another question", "x")]
    results, rows = run_knowledge(tiny_lm, items, shots=shots, config=KnowledgeConfig(n_shots=3, max_new_tokens=2,
                                                                                    n_bootstrap=20))
    assert results["excluded"] == [{"id": "q0", "reason": "same question as shot 0"},
                                   {"id": "q1", "reason": "same question as shot 1"}]
    assert [r["id"] for r in rows] == ["q2", "q3", "q4"]


def test_bad_answers_and_long_prompts(tiny_lm):
    with pytest.raises(DataError, match=r"qa.jsonl:2: field 'answer'"):
        run_knowledge(tiny_lm, [_q(0, "Q", "A"), Record(id="x", text="Q", source="qa.jsonl", line=2, meta={})],
                      config=KnowledgeConfig(n_shots=0))
    with pytest.raises(ValueError, match="would leave none to evaluate"):
        run_knowledge(tiny_lm, [_q(0, "Q", "A"), _q(1, "Q2", "B")], config=KnowledgeConfig(n_shots=2))
    with pytest.raises(ValueError, match=r"2 shots asked for, the shots file \(qa.jsonl\) has 1"):
        run_knowledge(tiny_lm, [_q(0, "Q", "A")], shots=[_q(1, "S", "B")], config=KnowledgeConfig(n_shots=2))
    long_question = " ".join(["word"] * 600)
    results, rows = run_knowledge(tiny_lm, [_q(0, "Q", "A"), _q(1, long_question, "A")],
                                  config=KnowledgeConfig(n_shots=0, max_new_tokens=2, n_bootstrap=20))
    assert "exceeds the context length" in rows[1]["error"] and "prediction" not in rows[1]
    assert results["n"] == 1 and results["n_errors"] == 1


def test_testbed_questions_ask_the_facts_after_the_opening():
    for row in generate_corpus(50, seed=7):
        text, f = row["text"], row["facts"]
        opening = text.split(". ", 1)[0] + "."
        expected = {"mother_job": f["mother_job"], "father_job": f["father_job"], "first_work": f["works"][0],
                    "first_work_year": str(f["work_years"][0]), "prize": f["prize"], "prize_year": str(f["prize_year"]),
                    "moved_city": f["moved_city"], "subject": f["subject"], "institution": f["institution"]}
        qs = knowledge_questions(text, f)
        assert {q["kind"]: q["answer"] for q in qs} == expected
        for q in qs:
            assert q["question"].startswith(opening + " ") and q["answer"] in text
            assert q["verbatim"] == (f"{q['question']} {q['answer']}" in text)


def test_an_exact_match_rate_of_zero_has_a_positive_upper_bound(tiny_lm):
    """Clopper-Pearson at 0/n: upper end 1 − 0.025^(1/n), never the bootstrap's point (0, 0)."""
    items = [_q(i, f"Question {i}", f"zebra quartz {i}") for i in range(6)]
    results, rows = run_knowledge(tiny_lm, items, config=KnowledgeConfig(n_shots=0, max_new_tokens=3, n_bootstrap=20))
    assert results["n"] == 6 and not any(r["exact_match"] for r in rows)
    assert results["exact_match_rate_ci"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 6)], abs=1e-9)


def _loose(question):
    return " ".join(question.casefold().split())


class _Copier:
    """A stand-in model that answers a question by copying the answer a shot gave to the same
    question in its prompt, and otherwise says "unknown": all it scores is leakage."""

    name, max_length, vocab_size, bos_token_id, eos_token_id = "copier", 10_000, 256, None, None

    def fingerprint(self):
        return "copier"

    def tokenizer_fingerprint(self):
        return "utf-8 bytes"

    def encode(self, texts):
        return [list(t.encode()) for t in texts]

    def decode(self, ids):
        return bytes(ids).decode()

    def generate(self, prompts, config, *, logits_processor=None, batch_size=None):
        out = []
        for p in prompts:
            *shots, query = self.decode(p).split("\n\n")
            seen = {_loose(q): a for q, a in (s.split("\nAnswer: ", 1) for s in shots)}
            out.append(list((" " + seen.get(_loose(query.removesuffix("\nAnswer:")), "unknown")).encode()))
        return out


def test_a_duplicate_of_a_drawn_shot_question_is_not_scored():
    """Item q5 repeats the question of q2 (differing in case and spacing only). If q2 is drawn as
    a shot, q5 must be left out, not asked with q2's answer in its prompt."""
    items = [_q(i, f"Where did person {i} live?", f"Town {i}") for i in range(5)]
    items.append(_q(5, "where did  PERSON 2 live?", "Town 2"))
    seed = next(s for s in range(100) if 2 in random.Random(s).sample(range(6), 2))  # a draw that picks q2
    results, rows = run_knowledge(_Copier(), items, config=KnowledgeConfig(n_shots=2, max_new_tokens=8, seed=seed))
    assert items[2].text in [s["question"] for s in results["shots"]]
    assert [r["id"] for r in rows if r["id"] == "q5"] == []  # before the fix: scored, and "right"
    k = [s["question"] for s in results["shots"]].index(items[2].text)
    assert {"id": "q5", "reason": f"same question as shot {k}"} in results["excluded"]
    # Only leakage could make the copier right, and nothing leaks any more.
    assert results["n"] == 3 and results["exact_match_rate"] == 0.0


def test_knowledge_bos_takes_the_scoring_policy_values(tiny_lm):
    item = _q(0, "Where did Ada live", "Norvale")
    rows = run_knowledge(tiny_lm, [item], config=KnowledgeConfig(n_shots=0, max_new_tokens=4, bos="none"))[1]
    gen = _argmax_continuation(tiny_lm, tiny_lm.encode([build_prompt(item.text, [], "qa")])[0], 4)
    assert rows[0]["continuation"] == tiny_lm.decode(gen)
    with pytest.raises(ValueError, match="bos must be 'prepend' or 'none'"):
        KnowledgeConfig(bos=False)
