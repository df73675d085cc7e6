"""Knowledge memorization (MUSE KnowMem, TOFU): can the model answer questions about the facts in a text?

Verbatim extraction asks whether the model repeats a text; this asks whether it learned what the
text says. Each item is a question and its answer; the model answers greedily after a few
worked examples (shots), and the answer is scored against the truth with ROUGE-L (F1, as MUSE
reports KnowMem; recall, as TOFU does) and normalised exact match.

Two prompt templates:

- ``qa`` (MUSE): ``Question: {question}\\nAnswer: {answer}`` per shot, shots separated by a
  blank line; the model's answer is its continuation up to the first blank line or the next
  ``Question:`` (as MUSE cuts). MUSE's prompt ends ``"Answer: "`` with a space; this one ends
  ``"Answer:"``, since BPE tokenizers attach the space to the answer's first word and a
  trailing space makes the model predict an unusual token.
- ``cloze``: the question is the beginning of a statement and the answer completes it, for
  models that never saw a question-answer format (the testbed's). Shots are complete
  statements separated by a space; the model's answer is the first ``n`` words of its
  continuation, ``n`` the number of words in the true answer, so that exact match means
  "the continuation starts with the answer" rather than "the model stopped where the
  reference did".

Shots come from a separate file (``shots=``) or, without one, are drawn from the items themselves
with ``seed``. Either way every item whose question equals a shot's question (compared after
:func:`normalize_answer`, so case, punctuation and spacing do not hide a duplicate) is taken
out of the evaluation and listed under ``excluded`` with the reason, since an item whose answer
is in its own prompt would be scored as known. Drawn shots are compared by question too, not
only by position: a question repeated in the file is left out with its drawn copy.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from lmaudit.data import DataError, Record
from lmaudit.engines import on_engine
from lmaudit.memorization.copying import rouge_l
from lmaudit.models.base import GenerationConfig, LanguageModel
from lmaudit.report.results import breakdown, model_provenance
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.stats import bootstrap_mean_ci, proportion_ci


@dataclass(frozen=True)
class Template:
    """How shots and the question are written, and where the model's answer ends."""

    shot: str
    query: str
    separator: str


TEMPLATES = {
    "qa": Template(shot="Question: {question}\nAnswer: {answer}", query="Question: {question}\nAnswer:", separator="\n\n"),
    "cloze": Template(shot="{question} {answer}.", query="{question}", separator=" "),
}


@dataclass(frozen=True)
class KnowledgeConfig:
    """Options of a knowledge run.

    Attributes:
        template: A key of :data:`TEMPLATES`.
        n_shots: Worked examples before each question (MUSE uses a few; 0 is zero-shot).
        max_new_tokens: Tokens generated per answer (MUSE: 32).
        stem: Porter-stem words before ROUGE (needs nltk).
        bos: "prepend" puts the model's BOS (EOS for GPT-2-style models) before the prompt,
            as :class:`~lmaudit.models.base.ScoringPolicy` does; "none" does not.
        n_bootstrap: Bootstrap replicates for the ROUGE intervals (the exact-match rate's
            interval is Clopper-Pearson).
        seed: Seeds the draw of shots from the items and the bootstrap.
    """

    template: Literal["qa", "cloze"] = "qa"
    n_shots: int = 3
    max_new_tokens: int = 32
    stem: bool = False
    bos: Literal["prepend", "none"] = "prepend"
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown template {self.template!r}: use one of {', '.join(TEMPLATES)}")
        if self.bos not in ("prepend", "none"):
            raise ValueError(f"bos must be 'prepend' or 'none', got {self.bos!r}")
        if self.n_shots < 0 or self.max_new_tokens < 1:
            raise ValueError("n_shots must be >= 0 and max_new_tokens >= 1")


def answer_of(record: Record, field: str = "answer") -> str:
    """The true answer of a question record (its ``field``), or a DataError naming file, line and field."""
    answer = record.meta.get(field)
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{record.source}:{record.line}: field {field!r} must be a non-empty string, "
                        f"got {type(answer).__name__ if answer is not None else 'nothing'}")
    return answer


def build_prompt(question: str, shots: Sequence[tuple[str, str]], template: str) -> str:
    """The prompt for one question after ``shots`` (question, answer) pairs.

    >>> print(build_prompt("Who?", [("What?", "That.")], "qa"))
    Question: What?
    Answer: That.
    <BLANKLINE>
    Question: Who?
    Answer:
    """
    t = TEMPLATES[template]
    parts = [t.shot.format(question=q, answer=a.rstrip(".") if template == "cloze" else a) for q, a in shots]
    return t.separator.join([*parts, t.query.format(question=question)])


def cut_answer(continuation: str, reference: str, template: str) -> str:
    """The model's answer within its continuation (see the module docstring).

    >>> cut_answer(" Paris.\\n\\nQuestion: next", "Paris", "qa")
    'Paris.'
    >>> cut_answer(" Paris\\nQuestion: next", "Paris", "qa")
    'Paris'
    >>> cut_answer(" the Silent Tide in 1954.", "The Silent Tide", "cloze")
    'the Silent Tide'
    """
    if template == "qa":
        for stop in ("\n\n", "\nQuestion", "Question:"):
            continuation = continuation.split(stop, 1)[0]
        return continuation.strip()
    n = len(reference.split())
    return " ".join(continuation.split()[:n])


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces.

    >>> normalize_answer("The  Silent Tide.")
    'silent tide'
    """
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def answer_metrics(prediction: str, answer: str, *, stem: bool = False) -> dict:
    """exact_match (normalised equality), rouge_l_f1 and rouge_l_recall of one answer.

    >>> answer_metrics("the Silent Tide", "The Silent Tide")["exact_match"]
    True
    """
    _, recall, f1 = rouge_l(prediction, answer, stem=stem)
    return {"exact_match": normalize_answer(prediction) == normalize_answer(answer),
            "rouge_l_f1": f1, "rouge_l_recall": recall}


def _summary(rows: list[dict], cfg: KnowledgeConfig) -> dict:
    ok = [r for r in rows if "prediction" in r]
    if not ok:
        return {"n": 0, "exact_match_rate": None, "rouge_l_f1_mean": None, "rouge_l_recall_mean": None}
    exact = sum(bool(r["exact_match"]) for r in ok)
    out: dict = {"n": len(ok), "exact_match_rate": exact / len(ok),
                 "exact_match_rate_ci": list(proportion_ci(exact, len(ok)))}  # Clopper-Pearson
    for key, name in (("rouge_l_f1", "rouge_l_f1_mean"), ("rouge_l_recall", "rouge_l_recall_mean")):
        values = [float(r[key]) for r in ok]
        out[name] = float(np.mean(values))
        out[f"{name}_ci"] = list(bootstrap_mean_ci(values, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed))
    return out


def select_shots(items: Sequence[Record], shots: Sequence[Record] | None, *, config: KnowledgeConfig,
                 answer_field: str = "answer") -> tuple[list[str], list[tuple[str, str]], list[dict], list[int]]:
    """The shots and the questions left to ask, as :func:`run_knowledge` chooses them (no model
    needed, so the command line checks its inputs with it before loading one).

    Returns:
        (each item's answer, the (question, answer) shots, the excluded items with their
        reason, the indices of the items to ask).

    Raises:
        DataError: An item or shot lacks its answer (names file, line and field).
        ValueError: Too few shots, or no question left to ask.
    """
    cfg = config
    answers = [answer_of(r, answer_field) for r in items]
    if shots is None:
        if cfg.n_shots and len(items) <= cfg.n_shots:
            where = f" in {items[0].source}" if items else ""
            raise ValueError(f"{cfg.n_shots} shots drawn from {len(items)} questions{where} would leave none to evaluate: "
                             "give a shots file or fewer shots")
        drawn = sorted(random.Random(cfg.seed).sample(range(len(items)), cfg.n_shots))
        shot_pairs = [(items[i].text, answers[i]) for i in drawn]
        reasons = {i: "drawn as a shot" for i in drawn}
    else:
        used = list(shots[: cfg.n_shots])
        if len(used) < cfg.n_shots:
            where = f" ({shots[0].source})" if shots else ""
            raise ValueError(f"{cfg.n_shots} shots asked for, the shots file{where} has {len(used)}")
        shot_pairs = [(s.text, answer_of(s, answer_field)) for s in used]
        reasons = {}
    # By question, not id or position: two files numbered by line share ids without sharing
    # questions, and a question repeated in the file would otherwise be asked with its answer shown.
    shot_of = {}
    for k, (q, _) in enumerate(shot_pairs):
        shot_of.setdefault(normalize_answer(q), k)
    for i, r in enumerate(items):
        k = shot_of.get(normalize_answer(r.text))
        if k is not None and i not in reasons:
            reasons[i] = f"same question as shot {k}"
    excluded = [{"id": items[i].id, "reason": reasons[i]} for i in sorted(reasons)]
    keep = [i for i in range(len(items)) if i not in reasons]
    if items and not keep:
        raise ValueError(f"every question in {items[0].source} is one of the {len(shot_pairs)} shots: none is left "
                         "to evaluate")
    return answers, shot_pairs, excluded, keep


def run_knowledge(model: LanguageModel, items: Sequence[Record], *, shots: Sequence[Record] | None = None,
                  config: KnowledgeConfig = KnowledgeConfig(), answer_field: str = "answer", batch_size: int = 16,
                  progress: Callable[[int], None] | None = None, engine=None) -> RunResult:
    """Answer every question greedily after the shots and score the answers.

    Args:
        items: Question records: ``text`` is the question, ``meta[answer_field]`` the answer;
            ``duplication``, ``kind`` and ``verbatim`` fields, when present, give breakdowns.
        shots: Worked examples (records like ``items``); the first ``n_shots`` are used. None:
            ``n_shots`` items drawn with the seed serve as shots. Items whose question equals a
            shot's are not evaluated; ``excluded`` lists each with its reason.
        engine: Where the generation runs: None (the model as given), "local", "ray", or an
            engine object (:mod:`lmaudit.engines`); the answers are the local engine's.

    Returns:
        A :class:`RunResult` (unpacks as ``results, samples``): rates with bootstrap intervals
        (overall, by duplication, by kind); one row per evaluated item, in order; and the
        provenance.
    """
    model = on_engine(model, engine)
    cfg = config
    answers, shot_pairs, excluded, keep = select_shots(items, shots, config=cfg, answer_field=answer_field)
    prompts_text = [build_prompt(items[i].text, shot_pairs, cfg.template) for i in keep]
    bos = [model.bos_token_id] if cfg.bos == "prepend" and model.bos_token_id is not None else []
    prompts = [[*bos, *x] for x in model.encode(prompts_text)]
    rows: list[dict] = []
    todo = []
    for i, p in zip(keep, prompts):
        rec = items[i]
        row = {"id": rec.id, "question": rec.text, "answer": answers[i]}
        row |= {k: rec.meta[k] for k in ("kind", "duplication", "verbatim", "doc_id") if k in rec.meta}
        if len(p) + cfg.max_new_tokens > model.max_length:
            row["error"] = (f"prompt of {len(p)} tokens + {cfg.max_new_tokens} new exceeds the context "
                            f"length {model.max_length}: use fewer shots or a shorter question")
        else:
            todo.append((len(rows), p))
        rows.append(row)
    generated = model.generate([p for _, p in todo], GenerationConfig(max_new_tokens=cfg.max_new_tokens),
                               batch_size=batch_size)
    eos = model.eos_token_id
    for (j, _), g in zip(todo, generated):
        continuation = model.decode([t for t in g if t != eos])
        row = rows[j]
        row["continuation"] = continuation
        row["prediction"] = cut_answer(continuation, row["answer"], cfg.template)
        row.update(answer_metrics(row["prediction"], row["answer"], stem=cfg.stem))
        if progress:
            progress(1)
    results = {**_summary(rows, cfg), "n_items": len(items), "n_errors": sum(1 for r in rows if "error" in r),
               "excluded": excluded, "shots": [{"question": q, "answer": a} for q, a in shot_pairs]}
    for field in ("duplication", "kind", "verbatim"):
        if any(field in r for r in rows):
            results[f"by_{field}"] = breakdown(rows, field, lambda group: _summary(group, cfg))
    provenance = {"model": model_provenance(model), "config": asdict(cfg), "batch_size": batch_size,
                  "decoding": "greedy", "template": asdict(TEMPLATES[cfg.template]),
                  "shots_from": "shots file" if shots is not None else "drawn from the items (excluded)",
                  "answer_field": answer_field, "seed": cfg.seed}
    return RunResult(results=results, samples=rows, provenance=provenance)


def knowledge_to_dir(model: LanguageModel, items: Sequence[Record], out: str | Path, *,
                     shots: Sequence[Record] | None = None, config: KnowledgeConfig = KnowledgeConfig(),
                     answer_field: str = "answer", batch_size: int = 16, data: list[dict] | None = None, command: str = "knowledge",
                     started: float | None = None, progress=None, engine=None) -> dict:
    """:func:`run_knowledge`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    with RunWriter(out, kind="knowledge", command=command, started=started) as run:
        result = run_knowledge(model, items, shots=shots, config=config, answer_field=answer_field,
                               batch_size=batch_size, progress=progress, engine=engine)
        run.samples(result.samples)
        summary = {k: result.results[k]
                   for k in ("n", "exact_match_rate", "rouge_l_f1_mean", "rouge_l_recall_mean", "n_errors")}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=result.results)
