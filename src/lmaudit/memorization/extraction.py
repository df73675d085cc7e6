"""Extraction (Carlini et al. 2021/2023): does the model continue a document's prefix with its text?

Each document is cut into a prefix of P tokens and the S tokens that follow (the target),
in the model's own tokenisation. The model continues the prefix greedily, or samples N
continuations and keeps the one it finds most likely (lowest loss), as extraction attacks
rank candidates. Per document: ``exact_match`` (every target token reproduced: the
k-extractable definition), ``token_match`` (the fraction of target positions reproduced)
and ``longest_match_tokens`` (the longest run of target tokens reproduced verbatim, anywhere).
A document shorter than P + S tokens gets an error row, never a silent drop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.engines import on_engine
from lmaudit.memorization.substrings import longest_common_substring
from lmaudit.models.base import GenerationConfig, LanguageModel
from lmaudit.report.results import breakdown, model_provenance
from lmaudit.report.run import RunResult, RunWriter
from lmaudit.stats import bootstrap_mean_ci, proportion_ci


@dataclass(frozen=True)
class ExtractionConfig:
    """Options of an extraction run.

    Attributes:
        prefix_tokens: Tokens of the document given as the prompt (after BOS).
        suffix_tokens: Tokens that must follow (the target); also the tokens generated.
        samples: 0 for greedy decoding; N > 0 samples N continuations per document and keeps
            the one with the lowest loss under the model.
        temperature: Sampling temperature (samples > 0).
        bos: "prepend" puts the model's BOS (EOS for GPT-2-style models) before the prompt,
            as :class:`~lmaudit.models.base.ScoringPolicy` does; "none" does not.
        n_bootstrap: Bootstrap replicates for the token-match interval (the exact-match
            rate's interval is Clopper-Pearson).
        seed: Seeds sampling and the bootstrap.
    """

    prefix_tokens: int = 32
    suffix_tokens: int = 32
    samples: int = 0
    temperature: float = 1.0
    bos: Literal["prepend", "none"] = "prepend"
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bos not in ("prepend", "none"):
            raise ValueError(f"bos must be 'prepend' or 'none', got {self.bos!r}")
        if self.samples and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature!r}")


def match_metrics(generated: Sequence[int], target: Sequence[int]) -> dict:
    """exact_match, token_match (position by position) and longest_match_tokens of one continuation.

    >>> match_metrics([1, 2, 9, 4], [1, 2, 3, 4])
    {'exact_match': False, 'token_match': 0.75, 'longest_match_tokens': 2}
    """
    same = sum(g == t for g, t in zip(generated, target))
    return {"exact_match": list(generated) == list(target), "token_match": same / len(target),
            "longest_match_tokens": longest_common_substring(list(generated), list(target))}


def _rates(rows: list[dict], cfg: ExtractionConfig) -> dict:
    ok = [r for r in rows if r.get("error") is None]
    if not ok:
        return {"n": 0, "exact_match_rate": None, "token_match_mean": None}
    exact = sum(bool(r["exact_match"]) for r in ok)
    token = [r["token_match"] for r in ok]
    return {
        "n": len(ok),
        "exact_match_rate": exact / len(ok),
        "exact_match_rate_ci": list(proportion_ci(exact, len(ok))),  # Clopper-Pearson
        "token_match_mean": float(np.mean(token)),
        "token_match_mean_ci": list(bootstrap_mean_ci(token, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed)),
        "longest_match_tokens_mean": float(np.mean([r["longest_match_tokens"] for r in ok])),
    }


def run_extraction(model: LanguageModel, records: Sequence[Record], *, config: ExtractionConfig = ExtractionConfig(),
                   batch_size: int = 16, progress: Callable[[int], None] | None = None, engine=None) -> RunResult:
    """Continue every document's prefix and compare with its true continuation.

    ``engine``: where the generation runs: None (the model as given), "local", "ray", or an
    engine object (:mod:`lmaudit.engines`); the outputs are the local engine's.

    Returns:
        A :class:`RunResult` (unpacks as ``results, samples``): overall rates and means with
        their intervals and ``n``, the same per ``duplication`` level when the records carry
        one; one row per record, in order; and the provenance.
    """
    model = on_engine(model, engine)
    cfg = config
    p, s = cfg.prefix_tokens, cfg.suffix_tokens
    if p < 1 or s < 1:
        raise ValueError("prefix_tokens and suffix_tokens must be at least 1")
    bos = [model.bos_token_id] if cfg.bos == "prepend" and model.bos_token_id is not None else []
    if len(bos) + p + s > model.max_length:
        raise ValueError(f"BOS + {p} + {s} tokens exceed the model's context length {model.max_length}")
    ids = model.encode([r.text for r in records])
    rows: list[dict] = []
    todo = []
    for rec, x in zip(records, ids):
        row = {"id": rec.id, "n_tokens": len(x)}
        if "duplication" in rec.meta:
            row["duplication"] = rec.meta["duplication"]
        if len(x) < p + s:
            row["error"] = f"text has {len(x)} tokens, fewer than prefix + suffix = {p + s}"
        else:
            todo.append(len(rows))
        rows.append(row)
    prompts = [[*bos, *ids[i][:p]] for i in todo]
    targets = [ids[i][p : p + s] for i in todo]
    if cfg.samples == 0:
        gen = model.generate(prompts, GenerationConfig(max_new_tokens=s, stop_at_eos=False), batch_size=batch_size)
        chosen = [(g, None) for g in gen]
    else:
        chosen = _best_of_samples(model, prompts, cfg, batch_size)
    for i, target, (g, loss) in zip(todo, targets, chosen):
        rows[i].update(match_metrics(g, target))
        rows[i]["generated"] = model.decode(g)
        rows[i]["target"] = model.decode(target)
        if loss is not None:
            rows[i]["generated_loss"] = loss
        if progress:
            progress(1)
    results = {**_rates(rows, cfg), "n_documents": len(rows), "n_errors": sum(1 for r in rows if r.get("error"))}
    if any("duplication" in r for r in rows):
        results["by_duplication"] = breakdown(rows, "duplication", lambda group: _rates(group, cfg))
    provenance = {"model": model_provenance(model), "config": asdict(cfg), "batch_size": batch_size,
                  "decoding": "greedy" if cfg.samples == 0 else f"best of {cfg.samples} samples by loss",
                  "seed": cfg.seed}
    return RunResult(results=results, samples=rows, provenance=provenance)


def _best_of_samples(model, prompts, cfg: ExtractionConfig, batch_size: int) -> list[tuple[list[int], float]]:
    """N sampled continuations per prompt; keep the one with the lowest mean loss under the model."""
    repeated = [p for p in prompts for _ in range(cfg.samples)]
    gen = model.generate(repeated, GenerationConfig(max_new_tokens=cfg.suffix_tokens, do_sample=True,
                                                    temperature=cfg.temperature, stop_at_eos=False, seed=cfg.seed),
                         batch_size=batch_size)
    stats = []
    for b in range(0, len(repeated), batch_size):
        seqs = [[*repeated[j], *gen[j]] for j in range(b, min(b + batch_size, len(repeated)))]
        stats += model.token_stats(seqs, [len(repeated[j]) for j in range(b, min(b + batch_size, len(repeated)))])
    out = []
    for k in range(len(prompts)):
        group = range(k * cfg.samples, (k + 1) * cfg.samples)
        losses = [-float(np.mean(stats[j].logprob, dtype=np.float64)) for j in group]
        best = int(np.argmin(losses))
        out.append((gen[group[best]], losses[best]))
    return out


def extraction_to_dir(model: LanguageModel, records: Sequence[Record], out: str | Path, *,
                      config: ExtractionConfig = ExtractionConfig(), batch_size: int = 16, data: list[dict] | None = None,
                      command: str = "extract", started: float | None = None, progress=None,
                      engine=None) -> dict:
    """:func:`run_extraction`, then write ``samples.jsonl`` and ``results.json`` into ``out``."""
    with RunWriter(out, kind="extract", command=command, started=started) as run:
        result = run_extraction(model, records, config=config, batch_size=batch_size, progress=progress,
                                engine=engine)
        run.samples(result.samples)
        summary = {k: result.results[k] for k in ("n", "exact_match_rate", "token_match_mean", "n_errors")}
        return run.finish(summary=summary, provenance={**result.provenance, "data": data or []}, extra=result.results)
