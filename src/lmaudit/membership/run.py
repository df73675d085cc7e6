"""``lmaudit membership`` in Python: score members and non-members once, run attacks, evaluate.

Example:
    >>> from lmaudit.membership import run_membership                      # doctest: +SKIP
    >>> result = run_membership(lm, members, nonmembers, attacks=["loss", "min_k_pp"])  # doctest: +SKIP
    >>> result.results["attacks"]["min_k_pp@0.2"]["auc"]                   # doctest: +SKIP
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Collection, Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.engines import get_engine, on_engine
from lmaudit.membership.base import ATTACKS, Attack, AttackContext, AttackScores, expand
from lmaudit.membership.blind import run_blind_baselines
from lmaudit.membership.evaluate import DEFAULT_FPRS, evaluate_scores
from lmaudit.models.base import LanguageModel, ScoringPolicy, has_capability, require
from lmaudit.report.results import model_provenance
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.scoring.cache import ScoreCache, open_cache
from lmaudit.scoring.score import DocScore, score_records


@dataclass(frozen=True)
class MembershipConfig:
    """Options of a membership run besides the data, the models and the resources.

    Attributes:
        attacks: Attack names (``min_k`` sweeps k; ``min_k@0.3`` picks one), ``"all"``
            for every attack whose resources are available, or None for the default set:
            the logits-only attacks, lowercase, and the reference-model and DC-PDD attacks
            when a reference model or corpus is given.
        fprs: False-positive rates at which the TPR is reported.
        n_bootstrap: Bootstrap replicates for the AUC intervals.
        blind_baselines: Run the model-free classifiers and the distribution-shift check.
        shift_threshold: AUC at which a blind baseline flags distribution shift.
        recall_shots: Non-members drawn as ReCaLL's prefix when the caller gives none.
        seed: Seeds the bootstrap, the cross-validation, ReCaLL's draw and the neighbours.
    """

    attacks: Sequence[str] | str | None = None
    fprs: Sequence[float] = DEFAULT_FPRS
    n_bootstrap: int = 1000
    blind_baselines: bool = True
    shift_threshold: float = 0.6
    recall_shots: int = 5
    seed: int = 0


@dataclass
class MembershipResult(RunResult):
    """What a run found (results.json's metric sections, one sample row per document), how
    it ran (provenance), and the attacks it ran."""

    attacks: list[Attack] = field(default_factory=list)


def select_attacks(names, *, available: Collection[str] = (), model=None) -> list[Attack]:
    """Attack objects for a request (see :attr:`MembershipConfig.attacks`), chosen by each
    attack's metadata (:class:`~lmaudit.membership.base.Attack`), never by a list of names.

    Args:
        names: Attack names, ``"all"`` or None (the default set).
        available: The run inputs given: "reference_model", "reference_corpus".
        model: The target model, whose capabilities the attacks may need (None: not checked).

    Raises:
        ValueError: An explicitly named attack lacks an input (say which).
        CapabilityError: An explicitly named attack needs a capability the model lacks.
    """
    def runnable(a: Attack) -> bool:
        return set(a.needs) <= set(available) and (
            model is None or all(has_capability(model, c) for c in a.capabilities))

    # Logits-only attacks first (they read the one scoring pass), then those adding passes.
    every = sorted(expand(ATTACKS.names()), key=lambda a: not a.logits_only)
    if names == "all":
        return [a for a in every if runnable(a)]
    if names is None:
        return [a for a in every if a.default and runnable(a)]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = expand(list(names))
    if not chosen:
        raise ValueError("no attack to run")
    for a in chosen:
        lacking = [n for n in a.needs if n not in available]
        if lacking:
            raise ValueError(f"attack {a.label} needs {', '.join(lacking)} (e.g. --reference-model / --reference-corpus)")
        if model is not None:
            require(model, *a.capabilities, audit=f"attack {a.label}")
    return chosen


def draw_prefix(attacks: Sequence[Attack], given: Sequence[Record] | None, pool: Sequence[Record], *, shots: int,
                seed: int, set_name: str) -> tuple[list[Record], list[Record], list[dict]]:
    """ReCaLL's prefix: the caller's documents, or ``shots`` drawn from ``pool`` and taken out of it.

    Returns (prefix, what remains of the pool, one "excluded" row per drawn document).
    """
    pool = list(pool)
    if not any(a.draws_prefix for a in attacks):
        return list(given or []), pool, []
    if given:
        # A prefix document left in the evaluation set would be scored with itself in
        # context (mimir's mistake): take out every document whose text is in the prefix.
        texts = {r.text for r in given}
        kept = [r for r in pool if r.text not in texts]
        return list(given), kept, [{"id": r.id, "set": set_name, "reason": "text is in the ReCaLL prefix"}
                                   for r in pool if r.text in texts]
    shots = max(0, min(shots, len(pool) - 2))
    picked = set(random.Random(f"{seed}/recall").sample(range(len(pool)), shots))
    prefix = [pool[i] for i in sorted(picked)]
    rest = [r for i, r in enumerate(pool) if i not in picked]
    return prefix, rest, [{"id": r.id, "set": set_name, "reason": "used as ReCaLL prefix"} for r in prefix]


def score_attacks(model: LanguageModel, records: Sequence[Record], attacks: Sequence[Attack], *, policy: ScoringPolicy,
                  batch_size: int, cache: ScoreCache | None, on_pass, seed: int, reference_model=None,
                  reference_corpus=None, prefix=(), perturber=None):
    """One scoring pass, then every attack. Returns (doc scores, {label: AttackScores}, timings in s)."""
    references = reference_models(reference_model)
    for ref in references:
        try:  # fail before the target's pass, not after it
            policy.resolved(ref.max_length)
        except ValueError as err:
            raise ValueError(f"reference model {ref.name}: {err}; set a max_length it can take") from None
    for attack in attacks:  # before the scoring pass, not after it
        require(model, *attack.capabilities, audit=f"attack {attack.label}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    advance = on_pass("scoring", len(records)) if on_pass else None
    scores = score_records(model, records, policy=policy, batch_size=batch_size, cache=cache, progress=advance)
    timings["scoring"] = time.perf_counter() - start
    ctx = AttackContext(model=model, records=records, scores=scores, policy=policy,
                        batch_size=batch_size, seed=seed, reference_models=references,
                        reference_corpus=reference_corpus, prefix=prefix, perturber=perturber, cache=cache,
                        on_pass=on_pass)
    outputs: dict[str, AttackScores] = {}
    for attack in attacks:
        start = time.perf_counter()
        outputs[attack.label] = attack.score(ctx)
        timings[attack.label] = time.perf_counter() - start
    return scores, outputs, timings


@dataclass
class ScoredSets:
    """Two document sets after attack selection, ReCaLL's draw and every attack's pass."""

    attacks: list[Attack]
    first: list[Record]
    second: list[Record]
    excluded: list[dict]
    scores: list[DocScore]
    outputs: dict[str, AttackScores]
    timings: dict[str, float]


def select_and_score(model: LanguageModel, first: Sequence[Record], second: Sequence[Record], *, attacks, recall_shots: int,
                     seed: int, second_name: str, reference_model=None, reference_corpus=None, recall_prefix=None,
                     perturber=None, policy: ScoringPolicy, batch_size: int, cache, on_pass) -> ScoredSets:
    """What membership and dataset inference share: pick the attacks the resources allow,
    take ReCaLL's prefix out of ``second`` (the known non-members), score both sets once
    and run every attack on them (``first`` then ``second``, in one list)."""
    references = reference_models(reference_model)
    available = [name for name, given in (("reference_model", bool(references)),
                                          ("reference_corpus", bool(reference_corpus))) if given]
    if attacks and not isinstance(attacks, str) and all(isinstance(a, Attack) for a in attacks):
        chosen = list(attacks)  # already selected (the null pool's pass reuses the run's attacks)
    else:
        chosen = select_attacks(attacks, available=available, model=model)
        if len(references) > 1:  # one reference attack per reference model, labelled @1, @2, ...
            chosen = [b for a in chosen for b in (
                [replace(a, reference=i + 1) for i in range(len(references))]
                if "reference_model" in a.needs and not getattr(a, "reference", 0) else [a])]
            labels = [a.label for a in chosen]
            if dup := sorted({x for x in labels if labels.count(x) > 1}):
                raise ValueError(f"attack listed twice: {', '.join(dup)}")
        check_references(chosen, len(references))
    prefix, second, excluded = draw_prefix(chosen, recall_prefix, second, shots=recall_shots, seed=seed,
                                           set_name=second_name)
    first = list(first)
    scores, outputs, timings = score_attacks(
        model, first + second, chosen, policy=policy, batch_size=batch_size, cache=cache, on_pass=on_pass, seed=seed,
        reference_model=reference_model, reference_corpus=reference_corpus, prefix=prefix, perturber=perturber)
    return ScoredSets(chosen, first, second, excluded, scores, outputs, timings)


def check_references(attacks: Sequence[Attack], n_references: int) -> None:
    """Refuse an attack named for a reference model beyond those given (``reference_diff@3`` of two)."""
    for a in attacks:
        if getattr(a, "reference", 0) > n_references:
            raise ValueError(f"attack {a.label} names reference model {a.reference}, but {n_references} "
                             f"{'was' if n_references == 1 else 'were'} given (--reference-model, in order)")


def reference_models(given) -> tuple:
    """The reference models of a run as a tuple: ``given`` may be None, one model or several."""
    if given is None:
        return ()
    if isinstance(given, (list, tuple)):
        return tuple(given)
    return (given,)


def models_on_engine(model, reference_model, engine):
    """``model`` and the reference model(s) on ``engine`` (one engine object shared by all, so
    they run on the same cluster); both as given when ``engine`` is None."""
    if engine is None:
        return model, reference_model
    engine = get_engine(engine)
    if isinstance(reference_model, (list, tuple)):
        reference_model = [on_engine(m, engine) for m in reference_model]
    elif reference_model is not None:
        reference_model = on_engine(reference_model, engine)
    return on_engine(model, engine), reference_model


def run_provenance(model: LanguageModel, config, *, policy: ScoringPolicy, batch_size: int, outputs: dict,
                   reference_model=None) -> dict:
    """Provenance of a membership or dataset-inference run, from the arguments it ran with:
    models, the resolved policy, options, seed (the caller adds ``data``), and the perturber
    the neighbourhood attack really used (its default when none was given; null when no
    attack perturbed)."""
    used = [o.info["perturber"] for o in outputs.values() if "perturber" in o.info]
    return {
        "model": model_provenance(model),
        # The first, as before several were possible; every one, in order, under reference_models.
        "reference_model": model_provenance(refs[0]) if (refs := reference_models(reference_model)) else None,
        "reference_models": [model_provenance(r) for r in refs],
        "policy": policy.resolved(model.max_length).to_dict(),
        "batch_size": batch_size,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "perturber": used[0] if used else None,
        "seed": config.seed,
    }


def run_membership(
    model: LanguageModel,
    members: Sequence[Record],
    nonmembers: Sequence[Record],
    *,
    config: MembershipConfig = MembershipConfig(),
    reference_model: LanguageModel | Sequence[LanguageModel] | None = None,
    reference_corpus: Sequence[Record] | None = None,
    recall_prefix: Sequence[Record] | None = None,
    perturber=None,
    policy: ScoringPolicy = ScoringPolicy(),
    batch_size: int = 16,
    cache: ScoreCache | None = None,
    on_pass: Callable[[str, int], Callable[[int], None] | None] | None = None,
    engine=None,
) -> MembershipResult:
    """Run membership attacks on known members and non-members and evaluate each.

    The target model scores every document once; logits-only attacks read that pass, and
    the others add only the passes they need (shared where two need the same one).

    Args:
        model: The audited model.
        members: Documents known to be in its training data.
        nonmembers: Documents known not to be, from the same distribution (the blind
            baselines check that claim).
        config: Which attacks and how to evaluate them.
        reference_model: Enables the reference-model attacks: one model, or several (each
            reference attack then runs once per model, labelled ``@1``, ``@2``, ...).
        reference_corpus: Enables DC-PDD (token frequencies).
        recall_prefix: Known non-members for ReCaLL's prefix; if None and ReCaLL runs,
            ``config.recall_shots`` non-members are drawn and taken out of the evaluation.
        perturber: Neighbour generator for the neighbourhood attack (default: word swaps).
        policy: Scoring policy for every pass.
        batch_size: Sequences per forward pass.
        cache: Score cache shared by every pass.
        on_pass: Called with (description, number of documents) before each pass; may
            return a callback that advances a progress bar.
        engine: Where the scoring passes run, for the audited model and every reference
            model: None (each model as given), "local", "ray", or an engine object
            (:mod:`lmaudit.engines`).

    Returns:
        A :class:`MembershipResult`; :func:`membership_to_dir` writes it to files.
    """
    model, reference_model = models_on_engine(model, reference_model, engine)
    sets = select_and_score(model, members, nonmembers, attacks=config.attacks, recall_shots=config.recall_shots,
                            seed=config.seed, second_name="nonmember", reference_model=reference_model,
                            reference_corpus=reference_corpus, recall_prefix=recall_prefix, perturber=perturber,
                            policy=policy, batch_size=batch_size, cache=cache, on_pass=on_pass)
    attacks, members, nonmembers, excluded = sets.attacks, sets.first, sets.second, sets.excluded
    scores, outputs, timings = sets.scores, sets.outputs, sets.timings
    if not members or not nonmembers:
        raise ValueError("need at least one member and one non-member document (besides any ReCaLL prefix)")
    records = members + nonmembers
    labels = np.array([1] * len(members) + [0] * len(nonmembers))

    evaluated = {}
    for attack in attacks:
        out = outputs[attack.label]
        metrics = evaluate_scores(out.values[labels == 1], out.values[labels == 0], fprs=config.fprs,
                                  n_bootstrap=config.n_bootstrap, seed=config.seed)
        evaluated[attack.label] = {**metrics, **attack.describe(), **({"info": out.info} if out.info else {})}

    results: dict = {"n_members": len(members), "n_nonmembers": len(nonmembers), "attacks": evaluated}
    if config.blind_baselines:
        start = time.perf_counter()
        blind = run_blind_baselines([r.text for r in members], [r.text for r in nonmembers], seed=config.seed,
                                    n_bootstrap=config.n_bootstrap, threshold=config.shift_threshold)
        timings["blind_baselines"] = time.perf_counter() - start
        results["blind_baselines"] = blind.pop("baselines")
        results["distribution_shift_flag"] = blind.pop("distribution_shift_flag")
        results["distribution_shift"] = blind
    else:
        results["blind_baselines"], results["distribution_shift_flag"] = {}, None
    results["excluded"] = excluded
    results["scoring_errors"] = sum(1 for s in scores if s.error)
    results["scoring_from_cache"] = sum(1 for s in scores if s.from_cache)  # the target's pass, served by the cache
    results["timings_s"] = {k: round(v, 3) for k, v in timings.items()}

    samples = []
    for i, (rec, s) in enumerate(zip(records, scores)):
        row = {"id": rec.id, "set": "member" if labels[i] else "nonmember", "n_tokens": s.n_tokens,
               "scores": {a: (None if np.isnan(o.values[i]) else float(o.values[i])) for a, o in outputs.items()}}
        errs = {a: o.errors[i] for a, o in outputs.items() if o.errors[i]}
        if errs:
            row["errors"] = errs
            row["error"] = _row_error(errs, n_attacks=len(outputs))
        samples.append(row)
    results["n_errors"] = sum(1 for row in samples if "error" in row)
    provenance = run_provenance(model, config, policy=policy, batch_size=batch_size, outputs=outputs,
                                reference_model=reference_model)
    return MembershipResult(results=results, samples=samples, provenance=provenance, attacks=attacks)


def _row_error(errors: dict[str, str], *, n_attacks: int) -> str:
    """The ``error`` of a document some attack could not score: the reason when every attack
    failed for one (an unscorable text), else which attacks failed (``errors`` has each reason)."""
    if len(errors) == n_attacks and len(set(errors.values())) == 1:
        return next(iter(errors.values()))
    return f"not scored by {', '.join(errors)} (see errors)"


def membership_to_dir(
    model: LanguageModel,
    members: Sequence[Record],
    nonmembers: Sequence[Record],
    out: str | Path,
    *,
    data: list[dict] | None = None,
    command: str = "membership",
    started: float | None = None,
    cache_path: str | Path | None = None,
    **kwargs,
) -> dict:
    """:func:`run_membership`, then write ``samples.jsonl`` and ``results.json`` into ``out``.

    ``kwargs`` are :func:`run_membership`'s options. Returns what results.json holds.
    """
    with RunWriter(out, kind="membership", command=command, started=started) as run:
        with open_cache(cache_path) as cache:
            result = run_membership(model, members, nonmembers, cache=cache, **kwargs)
        run.samples(result.samples)
        r = result.results
        best = max((a for a in r["attacks"].values() if a["auc"] is not None), key=lambda a: a["auc"], default=None)
        summary = {"n_members": r["n_members"], "n_nonmembers": r["n_nonmembers"], "n_attacks": len(r["attacks"]),
                   "best_attack": best and {"name": next(k for k, v in r["attacks"].items() if v is best),
                                            "auc": best["auc"]},
                   "distribution_shift_flag": r["distribution_shift_flag"], "n_errors": r["n_errors"]}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=r)
