"""What one model does on the evaluation's sets, item by item (:func:`measure_model`).

Per-item values, not aggregates, so that the comparison between models (and its bootstraps,
paired where two models are compared) is computed afterwards without running a model again,
and so that a sweep can measure a model after every epoch and compare later.

Definitions (checked against swj0419/muse_bench and locuslab/tofu):

- **VerbMem** (MUSE C1): the model continues the first ``prefix_tokens`` tokens of each forget
  document (BOS prepended) greedily for ``continuation_tokens`` tokens; the score is 100 × the
  ROUGE-L **F1** (unstemmed, as MUSE's ``RougeEvalLogger``: ``use_stemmer=False``, its
  ``mean_rougeL`` is the F-measure) of the decoded continuation against the true one. MUSE
  prompts with its own prompt/ground-truth pairs and generates 128 tokens; here both lengths
  are the config's (32/32). ``exact_match``: every continuation token reproduced (extraction).
- **KnowMem** (MUSE C2, and C4 on R): the question answered greedily, scored by 100 × ROUGE-L
  F1 (MUSE's ``knowmem_agg_key = "mean_rougeL"``, again the F-measure, unstemmed) against the
  answer. The prompt and the cut of the answer are :mod:`lmaudit.memorization.knowledge`'s.
- **Attack scores** (MUSE C3): the configured membership attack (MUSE: Min-40%) on every forget
  and holdout document, higher = member.
- **Loss** (C4): mean token loss (−mean log-probability, BOS prepended) of every document.
- **TOFU**: ``probability`` = exp(mean log-probability of the answer's tokens given the
  question), length-normalised as TOFU's ``exp(-avg_gt_loss)``; ``rouge_l_recall`` of the same
  greedy answer as KnowMem, **stemmed** (TOFU's ``eval_rouge_recall`` uses
  ``use_stemmer=True``); ``truth_ratio`` = geometric mean of the perturbed answers'
  length-normalised probabilities over the paraphrased answer's
  (:func:`lmaudit.unlearning.metrics.truth_ratio`).

Answer tokens. A question and its answer are scored as one text, ``prompt + " " + answer``
(the prompt is the question under the ``cloze`` template), encoded once, so the answer is
read in the tokenisation the model sees. Its tokens are those of the joint encoding after the
longest common prefix with the prompt's own encoding: where the tokenizer merges the last
prompt token with the answer's first characters, that straddling token counts as the
answer's (rows say so: ``boundary_merged``).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.memorization.copying import rouge_l
from lmaudit.memorization.extraction import match_metrics
from lmaudit.memorization.knowledge import KnowledgeConfig, build_prompt, cut_answer, select_shots
from lmaudit.models.base import GenerationConfig, LanguageModel, ScoringPolicy
from lmaudit.report.results import model_provenance
from lmaudit.unlearning.metrics import truth_ratio
from lmaudit.unlearning.sets import KNOWLEDGE_SETS, UnlearnSets


@dataclass(frozen=True)
class EvalConfig:
    """Options of an unlearning evaluation.

    Attributes:
        prefix_tokens: VerbMem's prompt: the first tokens of each forget document (after BOS).
        continuation_tokens: Tokens generated and compared with the document's next ones.
        attack: The membership attack of PrivLeak, any registered attack label
            (``min_k@0.4`` is MUSE's Min-40%). Attacks needing a reference model or corpus
            are refused.
        template: Knowledge prompt template (``cloze`` for models that never saw a question
            format, as the testbed's; ``qa`` is MUSE's).
        n_shots: Worked examples before each question, taken from the shots file.
        max_new_tokens: Tokens generated per answer (MUSE: 32; the testbed's answers are short).
        knowledge_docs: The retain and holdout questions are those of at most this many
            documents (by ``doc_id``), drawn with ``seed`` (None: all). The forget questions
            are always all asked.
        documents: R and H are scored (loss, attack) on at most this many documents each,
            drawn with ``seed`` (None: all). F is always scored whole.
        tofu: Measure TOFU's answer probabilities and truth ratios (a scoring pass for the
            answer, its paraphrase and each perturbed answer of every question) and ask the
            holdout questions (they serve only TOFU's model utility). False keeps one greedy
            answer per question (KnowMem, ROUGE-L recall): about a fifth of the cost, for a
            sweep that measures a model after every epoch.
        n_bootstrap: Bootstrap replicates of every interval.
        seed: Seeds the question subsample and the bootstraps.
        batch_size: Sequences per forward pass and prompts per generation call.
    """

    prefix_tokens: int = 32
    continuation_tokens: int = 32
    attack: str = "min_k@0.4"
    template: str = "cloze"
    n_shots: int = 0
    max_new_tokens: int = 12
    knowledge_docs: int | None = 100
    documents: int | None = None
    tofu: bool = True
    n_bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.prefix_tokens < 1 or self.continuation_tokens < 1:
            raise ValueError("prefix_tokens and continuation_tokens must be at least 1")
        if self.documents is not None and self.documents < 1:
            raise ValueError(f"documents must be at least 1 (or None for all), got {self.documents}")
        if self.knowledge_docs is not None and self.knowledge_docs < 1:
            raise ValueError(f"knowledge_docs must be at least 1 (or None for all), got {self.knowledge_docs}")
        if self.n_bootstrap < 10 or self.batch_size < 1:
            raise ValueError("n_bootstrap must be at least 10 and batch_size at least 1")
        self.knowledge_config()  # template, shots and lengths checked here
        self.make_attack()

    def knowledge_config(self) -> KnowledgeConfig:
        return KnowledgeConfig(template=self.template, n_shots=self.n_shots, max_new_tokens=self.max_new_tokens,
                               n_bootstrap=self.n_bootstrap, seed=self.seed)

    def make_attack(self):
        from lmaudit.membership.base import make_attack

        attack = make_attack(self.attack)
        if attack.needs:
            raise ValueError(f"attack {attack.label} needs {', '.join(attack.needs)}, which an unlearning "
                             "evaluation does not provide: choose a logits-only attack")
        return attack


@dataclass
class ModelMeasures:
    """One model's per-item values on the sets (see the module docstring for definitions).

    Attributes:
        name: The model's name.
        provenance: :func:`~lmaudit.report.results.model_provenance` of the model.
        documents: ``{"forget" | "retain" | "holdout": rows}``, one row per document in the
            set's order: ``loss``; ``attack`` (forget and holdout); ``verbmem`` (100 × ROUGE-L
            F1) and ``exact_match`` (forget). A value is None where the row's ``error`` says why.
        knowledge: ``{set: rows}``, one row per question asked: ``prediction``,
            ``knowmem`` (100 × ROUGE-L F1), ``rouge_l_recall`` (stemmed), ``probability``,
            ``truth_ratio``.
        timings: Seconds per component.
    """

    name: str
    provenance: dict
    documents: dict[str, list[dict]]
    knowledge: dict[str, list[dict]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def values(self, part: str, set_name: str, key: str) -> np.ndarray:
        """(n,) float64 values of ``key`` over the set's rows, NaN where missing."""
        rows = (self.documents if part == "documents" else self.knowledge).get(set_name, [])
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=np.float64)


def knowledge_subsample(items: Sequence[Record], max_docs: int | None, *, seed: int) -> tuple[list[Record], dict]:
    """The questions of at most ``max_docs`` documents (by ``meta["doc_id"]``, else the question's
    own id), drawn with ``seed``, in file order; and a record of the draw."""
    doc_of = [str(r.meta.get("doc_id", r.id)) for r in items]
    docs = sorted(set(doc_of))
    if max_docs is None or len(docs) <= max_docs:
        return list(items), {"n_docs": len(docs), "of_docs": len(docs), "seed": seed, "subsampled": False}
    chosen = set(random.Random(f"{seed}/knowledge").sample(docs, max_docs))
    kept = [r for r, d in zip(items, doc_of) if d in chosen]
    return kept, {"n_docs": max_docs, "of_docs": len(docs), "seed": seed, "subsampled": True}


def document_subsample(records: Sequence[Record], max_docs: int | None, *, seed: int, name: str) -> list[Record]:
    """At most ``max_docs`` of ``records``, drawn with ``seed`` (a stream per set ``name``), in
    file order."""
    if max_docs is None or len(records) <= max_docs:
        return list(records)
    chosen = set(random.Random(f"{seed}/documents/{name}").sample(range(len(records)), max_docs))
    return [r for i, r in enumerate(records) if i in chosen]


def measure_model(lm: LanguageModel, sets: UnlearnSets, config: EvalConfig = EvalConfig()) -> ModelMeasures:
    """Every per-item value of one model on ``sets`` (see the module docstring).

    Uses only the :class:`~lmaudit.models.base.LanguageModel` contract, so any backend (an
    unlearned checkpoint, an inference-time model) can be measured.
    """
    timings: dict[str, float] = {}
    t = time.perf_counter()
    documents = _documents(lm, sets, config)
    timings["loss_and_attack"] = time.perf_counter() - t
    t = time.perf_counter()
    _verbmem(lm, sets.forget, documents["forget"], config)
    timings["verbmem"] = time.perf_counter() - t
    knowledge: dict[str, list[dict]] = {}
    for name in KNOWLEDGE_SETS:
        items = sets.knowledge(name)
        if not items or (name == "holdout" and not config.tofu):
            continue
        if name != "forget":
            items, _ = knowledge_subsample(items, config.knowledge_docs, seed=config.seed)
        t = time.perf_counter()
        knowledge[name] = _knowledge(lm, items, sets.shots, config)
        timings[f"knowledge_{name}"] = time.perf_counter() - t
    return ModelMeasures(name=lm.name, provenance=model_provenance(lm), documents=documents, knowledge=knowledge,
                         timings={k: round(v, 3) for k, v in timings.items()})


def _documents(lm: LanguageModel, sets: UnlearnSets, config: EvalConfig) -> dict[str, list[dict]]:
    """One scoring pass over F, R and H (losses), then the attack on F and H."""
    from lmaudit.membership.base import AttackContext
    from lmaudit.scoring.score import score_records

    policy = ScoringPolicy()
    retain = document_subsample(sets.retain, config.documents, seed=config.seed, name="retain")
    holdout = document_subsample(sets.holdout, config.documents, seed=config.seed, name="holdout")
    records = [*sets.forget, *retain, *holdout]
    scores = score_records(lm, records, policy=policy, batch_size=config.batch_size)
    n_f, n_r = len(sets.forget), len(retain)
    # The attack sees F then H only: attacks that normalise over the documents (none of the
    # logits-only ones do) must not see R.
    fh = [*range(n_f), *range(n_f + n_r, len(records))]
    attack = config.make_attack()
    ctx = AttackContext(model=lm, records=[records[i] for i in fh], scores=[scores[i] for i in fh], policy=policy,
                        batch_size=config.batch_size, seed=config.seed)
    out = attack.score(ctx)
    attack_of = {i: (None if np.isnan(v) else float(v), e) for i, v, e in zip(fh, out.values, out.errors)}
    rows: dict[str, list[dict]] = {"forget": [], "retain": [], "holdout": []}
    for i, (rec, s) in enumerate(zip(records, scores)):
        name = "forget" if i < n_f else "retain" if i < n_f + n_r else "holdout"
        row = {"id": rec.id, "loss": None if s.error else -s.logprob_mean, "n_tokens": s.n_tokens}
        if "duplication" in rec.meta:
            row["duplication"] = rec.meta["duplication"]
        if s.error:
            row["error"] = s.error
        if i in attack_of:
            row["attack"], error = attack_of[i]
            if error and not s.error:
                row["error"] = f"attack: {error}"
        rows[name].append(row)
    return rows


def _verbmem(lm: LanguageModel, forget: Sequence[Record], rows: list[dict], config: EvalConfig) -> None:
    """Greedy continuations of the forget documents' prefixes, into their rows."""
    p, c = config.prefix_tokens, config.continuation_tokens
    bos = [] if lm.bos_token_id is None else [lm.bos_token_id]
    if len(bos) + p + c > lm.max_length:
        raise ValueError(f"BOS + {p} + {c} tokens exceed the context length {lm.max_length} of {lm.name}")
    ids = lm.encode([r.text for r in forget])
    todo = [i for i, x in enumerate(ids) if len(x) >= p + c]
    for i, x in enumerate(ids):
        if len(x) < p + c:
            rows[i]["verbmem"] = rows[i]["exact_match"] = None
            rows[i]["verbmem_error"] = f"text has {len(x)} tokens, fewer than prefix + continuation = {p + c}"
            rows[i].setdefault("error", f"verbmem: {rows[i]['verbmem_error']}")  # counted in n_errors
    generated = lm.generate([[*bos, *ids[i][:p]] for i in todo], GenerationConfig(max_new_tokens=c, stop_at_eos=False),
                            batch_size=config.batch_size)
    special = {lm.bos_token_id, lm.eos_token_id}
    for i, g in zip(todo, generated):
        target = ids[i][p : p + c]
        text = lm.decode([t for t in g if t not in special])
        rows[i]["verbmem"] = 100 * rouge_l(text, lm.decode(target))[2]
        rows[i]["exact_match"] = match_metrics(g, target)["exact_match"]
        rows[i]["continuation"] = text


def answer_span(prompt_ids: Sequence[int], joint_ids: Sequence[int]) -> tuple[int, bool]:
    """Where the answer starts in the joint encoding: after the longest common prefix of the
    prompt's and the joint encodings; and whether a token straddles the boundary (the prompt's
    own encoding is then not a prefix of the joint one).

    >>> answer_span([5, 6, 7], [5, 6, 7, 8, 9]), answer_span([5, 6, 7], [5, 6, 70, 9])
    ((3, False), (2, True))
    """
    k = 0
    for a, b in zip(prompt_ids, joint_ids):
        if a != b:
            break
        k += 1
    return k, k < len(prompt_ids)


def _answer_logprobs(lm: LanguageModel, prompts: Sequence[str], answers: Sequence[str],
                     batch_size: int) -> list[tuple[float | None, bool, str | None]]:
    """(mean log-probability of the answer's tokens given the prompt, boundary merged, error)
    for each (prompt, answer) pair, in order."""
    # A pair asked twice (a paraphrase equal to the answer, a shared wrong answer) is scored once.
    unique = list(dict.fromkeys(zip(prompts, answers)))
    if len(unique) < len(prompts):
        done = dict(zip(unique, _answer_logprobs(lm, [q for q, _ in unique], [a for _, a in unique], batch_size)))
        return [done[pair] for pair in zip(prompts, answers)]
    bos = [] if lm.bos_token_id is None else [lm.bos_token_id]
    prompt_ids = lm.encode(list(prompts))
    joint_ids = lm.encode([f"{q} {a}" for q, a in zip(prompts, answers)])
    out: list = [None] * len(prompts)
    units = []
    for i, (q, j) in enumerate(zip(prompt_ids, joint_ids)):
        start, merged = answer_span(q, j)
        seq = [*bos, *j]
        if start == len(j):
            out[i] = (None, merged, "the answer adds no token to the prompt")
        elif len(seq) > lm.max_length:
            out[i] = (None, merged, f"prompt and answer take {len(seq)} tokens, more than the context {lm.max_length}")
        elif not bos and start == 0:
            out[i] = (None, merged, "no token before the answer to condition on (no BOS)")
        else:
            units.append((i, seq, len(bos) + start, merged))
    units.sort(key=lambda u: len(u[1]))  # similar lengths per batch: little padding
    for b in range(0, len(units), batch_size):
        batch = units[b : b + batch_size]
        stats = lm.token_stats([u[1] for u in batch], [u[2] for u in batch])
        for (i, _, _, merged), s in zip(batch, stats):
            lp = float(np.mean(s.logprob, dtype=np.float64))
            out[i] = (lp, merged, None) if np.isfinite(lp) else (None, merged, "non-finite log-probability")
    return out


def _knowledge(lm: LanguageModel, items: Sequence[Record], shots: Sequence[Record], config: EvalConfig) -> list[dict]:
    """KnowMem and TOFU's values for each question."""
    kcfg = config.knowledge_config()
    answers, shot_pairs, excluded, keep = select_shots(items, list(shots) if kcfg.n_shots else None, config=kcfg)
    # A question left out because it is one of the shots keeps a row saying so (no values):
    # every question of the set is accounted for.
    left_out = [{"id": x["id"], "question": next(r.text for r in items if r.id == x["id"]), "excluded": x["reason"],
                 **{k: r.meta[k] for r in items if r.id == x["id"] for k in ("doc_id", "kind") if k in r.meta}}
                for x in excluded]
    items = [items[i] for i in keep]
    answers = [answers[i] for i in keep]
    prompts = [build_prompt(r.text, shot_pairs, kcfg.template) for r in items]
    bos = [] if lm.bos_token_id is None else [lm.bos_token_id]
    prompt_ids = [[*bos, *x] for x in lm.encode(prompts)]
    rows = []
    todo = []
    for i, (r, ids) in enumerate(zip(items, prompt_ids)):
        row = {"id": r.id, "question": r.text, "answer": answers[i]}
        row |= {k: r.meta[k] for k in ("doc_id", "kind", "duplication") if k in r.meta}
        if len(ids) + kcfg.max_new_tokens > lm.max_length:
            row["error"] = f"prompt of {len(ids)} tokens + {kcfg.max_new_tokens} new exceeds the context {lm.max_length}"
        else:
            todo.append(i)
        rows.append(row)
    generated = lm.generate([prompt_ids[i] for i in todo], GenerationConfig(max_new_tokens=kcfg.max_new_tokens),
                            batch_size=config.batch_size)
    for i, g in zip(todo, generated):
        continuation = lm.decode([t for t in g if t != lm.eos_token_id])
        prediction = cut_answer(continuation, answers[i], kcfg.template)
        rows[i]["prediction"] = prediction
        rows[i]["knowmem"] = 100 * rouge_l(prediction, answers[i])[2]
        rows[i]["rouge_l_recall"] = rouge_l(prediction, answers[i], stem=True)[1]
    if not config.tofu:
        return rows + left_out
    # Every answer the probabilities need, scored in one batched pass: the answer itself, the
    # paraphrase, then each perturbed answer.
    pairs = []
    for i, r in enumerate(items):
        for kind, a in [("answer", answers[i]), ("paraphrased", r.meta["paraphrased_answer"]),
                        *(("perturbed", p) for p in r.meta["perturbed_answers"])]:
            pairs.append((i, kind, prompts[i], a))
    scored = _answer_logprobs(lm, [p[2] for p in pairs], [p[3] for p in pairs], config.batch_size)
    per_item: list[dict] = [{"answer": None, "paraphrased": None, "perturbed": []} for _ in items]
    merged = [0] * len(items)
    for (i, kind, _, _), (lp, was_merged, error) in zip(pairs, scored):
        merged[i] += was_merged
        if error:
            rows[i].setdefault("error", f"{kind} answer: {error}")
            lp = None
        if kind == "perturbed":
            per_item[i]["perturbed"].append(lp)
        else:
            per_item[i][kind] = lp
    for i, v in enumerate(per_item):
        rows[i]["probability"] = None if v["answer"] is None else float(np.exp(v["answer"]))
        ok = v["paraphrased"] is not None and v["perturbed"] and all(p is not None for p in v["perturbed"])
        rows[i]["truth_ratio"] = float(truth_ratio([v["paraphrased"]], [v["perturbed"]])[0]) if ok else None
        rows[i]["boundary_merged"] = merged[i]
    return rows + left_out


def config_dict(config: EvalConfig) -> dict:
    return asdict(config)
