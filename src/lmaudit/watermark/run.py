"""The watermark commands' runs: each writes ``samples.jsonl`` and ``results.json`` (with
provenance and the watermark configuration) through :class:`~lmaudit.report.run.RunWriter`,
so a run that fails leaves no results.json."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.engines import on_engine
from lmaudit.models.base import GenerationConfig, require
from lmaudit.report.results import model_provenance
from lmaudit.report.run import RunWriter
from lmaudit.stats import rate_summary
from lmaudit.watermark.config import WatermarkConfig
from lmaudit.watermark.detect import DEFAULT_ALPHA, DEFAULT_MIN_TOKENS, check_options, detect_tokens
from lmaudit.watermark.normalize import normalize as _normalize
from lmaudit.watermark.processor import generate

#: results.json ``kind`` of each command.
KINDS = ("watermark-generate", "watermark-detect", "watermark-evaluate", "watermark-radioactivity")


def prompts_of(lm, records: Sequence[Record], prompt_tokens: int) -> tuple[list[int], list[list[int]], list[dict]]:
    """(indices of usable records, their prompts: BOS + the first ``prompt_tokens`` tokens, or
    the whole text when 0; error rows for the others)."""
    ids = lm.encode([r.text for r in records])
    ok, prompts, errors = [], [], []
    for i, (r, x) in enumerate(zip(records, ids)):
        if prompt_tokens and len(x) < prompt_tokens:
            errors.append({"id": r.id, "error": f"{len(x)} tokens, fewer than the {prompt_tokens}-token prompt"})
            continue
        ok.append(i)
        prompts.append([lm.bos_token_id, *(x[:prompt_tokens] if prompt_tokens else x)])
    return ok, prompts, errors


def detection_summary(rows: list[dict], *, alpha: float) -> dict:
    tested = [r for r in rows if "error" not in r and not r["too_short"]]
    return {"n": len(rows), "n_tested": len(tested), "n_too_short": sum(1 for r in rows if r.get("too_short")),
            "alpha": alpha, "detected": rate_summary(sum(r["detected"] for r in tested), len(tested))}


def generate_to_dir(lm, records: Sequence[Record], config: WatermarkConfig | None, key: int | None, out: str | Path, *,
                    generation: GenerationConfig, prompt_tokens: int = 16, batch_size: int | None = None,
                    data: list[dict] | None = None, command: str = "watermark generate",
                    started: float | None = None, engine=None) -> dict:
    """Watermarked continuations of each record's prompt (``config`` None: unwatermarked, the
    same decoding), with the generator's own detection of each (its token ids, no
    re-tokenisation), in ``out``: samples.jsonl (id, prompt, text, n_new_tokens, detection),
    watermark.json (the config, when watermarked) and results.json.

    ``engine``: where the generation runs: None (the model as given), "local", "ray", or an
    engine object (:mod:`lmaudit.engines`); the continuations are the local engine's."""
    if config is not None:  # before the run folder is touched
        require(lm, "logits_processors", audit="watermarked generation")
    lm = on_engine(lm, engine)
    with RunWriter(out, kind="watermark-generate", command=command, started=started) as run:
        ok, prompts, errors = prompts_of(lm, records, prompt_tokens)
        gens = generate(lm, prompts, config, key, generation=generation, batch_size=batch_size)
        det = detect_tokens(gens, config, key) if config is not None else [{} for _ in gens]
        rows = [{"id": records[i].id, "prompt": lm.decode(p[1:]), "text": lm.decode(g), "n_new_tokens": len(g),
                 **({"detection": d} if d else {})} for i, p, g, d in zip(ok, prompts, gens, det)]
        order = {r.id: n for n, r in enumerate(records)}
        rows = sorted(rows + errors, key=lambda r: order[r["id"]])
        run.samples(rows)
        if config is not None:
            config.save(Path(out) / "watermark.json")
        summary = {"n": len(records), "n_generated": len(gens), "n_errors": len(errors), "watermarked": config is not None,
                   **({"self_check": detection_summary(det, alpha=DEFAULT_ALPHA)} if config is not None else {})}
        provenance = {"model": model_provenance(lm), "generation": asdict(generation), "prompt_tokens": prompt_tokens,
                      "batch_size": batch_size, "data": data or []}
        return run.finish(summary=summary, provenance=provenance,
                          extra={"watermark": config.to_dict() if config is not None else None})


def _pieces(lm, ids: list[int], spans: dict) -> list[dict]:
    """Each reported window with the text before, inside and after it, for highlighting."""
    out = []
    for w in spans["windows"]:
        a, b = w["start"], w["end"]
        out.append(w | {"text_before": lm.decode(ids[:a]), "text_window": lm.decode(ids[a:b]),
                        "text_after": lm.decode(ids[b:])})
    return out


def detect_to_dir(lm, records: Sequence[Record], config: WatermarkConfig, key: int, out: str | Path, *,
                  min_tokens: int = DEFAULT_MIN_TOKENS, alpha: float = DEFAULT_ALPHA, dedup: bool = True,
                  normalize: bool = True, spans: bool = True, data: list[dict] | None = None,
                  command: str = "watermark detect", started: float | None = None) -> dict:
    """Detection of each record's text (re-tokenised by ``lm``'s tokenizer; the key and the
    tokenizer are checked against ``config`` first): samples.jsonl holds each text's counts,
    z, exact p-value, its z/p curve over T and (``spans``) its best windows."""
    check_options(min_tokens=min_tokens, alpha=alpha)
    config.check(key=key, lm=lm)
    with RunWriter(out, kind="watermark-detect", command=command, started=started) as run:
        texts = [_normalize(r.text) if normalize else r.text for r in records]
        ids = lm.encode(texts)
        rows = detect_tokens(ids, config, key, dedup=dedup, min_tokens=min_tokens, alpha=alpha, with_curve=True,
                             with_spans=spans)
        samples = []
        for r, x, d in zip(records, ids, rows):
            if spans:
                d["spans"] = {"searched": d["spans"]["searched"], "windows": _pieces(lm, x, d["spans"])}
            samples.append({"id": r.id, **d})
        run.samples(samples)
        summary = detection_summary(rows, alpha=alpha)
        if spans:
            # Over the texts that had a window to search (a text too short for one has none).
            searched = [s for s in samples if s["spans"]["searched"]]
            found = [s for s in searched if s["spans"]["windows"][0]["log10_p_corrected"] < np.log10(alpha)]
            summary["windows_detected"] = rate_summary(len(found), len(searched))
        provenance = {"tokenizer": lm.tokenizer_fingerprint(), "model": getattr(lm, "name", None),
                      "options": {"min_tokens": min_tokens, "alpha": alpha, "dedup": dedup, "normalize": normalize,
                                  "spans": spans}, "data": data or []}
        return run.finish(summary=summary, provenance=provenance, extra={"watermark": config.to_dict()})


def evaluate_to_dir(lm, records: Sequence[Record], key: int, out: str | Path, *, config, oracle=None, paraphraser=None,
                    batch_size: int | None = None, data: list[dict] | None = None,
                    command: str = "watermark evaluate", started: float | None = None,
                    on_step: Callable[[str], None] | None = None, engine=None) -> dict:
    """:func:`lmaudit.watermark.evaluate.run_watermark_eval`, written to ``out``; ``engine`` as
    there."""
    from lmaudit.watermark.evaluate import run_watermark_eval

    require(lm, "logits_processors", audit="the watermark evaluation")  # before the run folder is touched
    lm = on_engine(lm, engine)

    with RunWriter(out, kind="watermark-evaluate", command=command, started=started) as run:
        result = run_watermark_eval(lm, records, key, config=config, oracle=oracle, paraphraser=paraphraser,
                                    batch_size=batch_size, on_step=on_step)
        run.samples(result.samples)
        ev = result.results["watermark_eval"]
        summary = {"n_prompts": ev["n_prompts"], "n_errors": ev["n_errors"],
                   "auc": {p: {a: m.get("auc") for a, m in s["attacks"].items()} for p, s in ev["schemes"].items()}}
        provenance = {**result.provenance, "model": model_provenance(lm),
                      "oracle": model_provenance(oracle) if oracle is not None else "the model itself",
                      "data": data or []}
        return run.finish(summary=summary, provenance=provenance, extra=result.results)


def radioactivity_to_dir(lm, records: Sequence[Record], config: WatermarkConfig, key: int, out: str | Path, *,
                         settings: Sequence[str] = ("open", "closed"), prompt_tokens: int = 16,
                         generation: GenerationConfig = GenerationConfig(max_new_tokens=64, stop_at_eos=False),
                         null_keys: int = 1000,
                         alpha: float = DEFAULT_ALPHA, dedup: bool = True, seed: int = 0, batch_size: int = 16,
                         data: list[dict] | None = None, command: str = "watermark radioactivity",
                         started: float | None = None, engine=None) -> dict:
    """Was ``lm`` trained on text watermarked under ``key``? The open-model test reads the
    whole texts of ``records``; the closed-model test prompts with their first
    ``prompt_tokens`` tokens. Both pooled and deduplicated (:mod:`lmaudit.watermark.radioactive`),
    with the null-key calibration. samples.jsonl: one row per record (its prediction match
    rate, or its generation).

    ``engine``: where the closed test's generation runs: None (the model as given), "local",
    "ray", or an engine object (:mod:`lmaudit.engines`). The open test reads the model's
    predictions in this process."""
    from lmaudit.watermark.radioactive import closed_test, reading_test

    check_options(min_tokens=1, alpha=alpha)
    bad = sorted(set(settings) - {"open", "closed"})
    if bad or not settings:
        raise ValueError(f"settings must be open and/or closed, got {', '.join(settings) or 'none'}")
    config.check(key=key, lm=lm)
    lm = on_engine(lm, engine)
    with RunWriter(out, kind="watermark-radioactivity", command=command, started=started) as run:
        tests, rows = {}, [{"id": r.id} for r in records]
        if "open" in settings:
            texts = lm.encode([r.text for r in records])
            tests["open"] = reading_test(lm, texts, config, key, dedup=dedup, alpha=alpha, null_keys=null_keys,
                                         seed=seed, batch_size=batch_size)
            for row, x in zip(rows, texts):
                row["n_tokens"] = len(x)
        if "closed" in settings:
            ok, prompts, errors = prompts_of(lm, records, prompt_tokens)
            result, gens = closed_test(lm, prompts, config, key, generation=generation, dedup=dedup, alpha=alpha,
                                       null_keys=null_keys, seed=seed, batch_size=batch_size)
            tests["closed"] = result | {"n_errors": len(errors)}
            for i, g in zip(ok, gens):
                rows[i]["generation"] = lm.decode(g)
            for e in errors:
                rows[[r.id for r in records].index(e["id"])]["error"] = e["error"]
        run.samples(rows)
        summary = {name: {k: t.get(k) for k in ("n_scored", "green_fraction", "z", "p_value", "detected")}
                   for name, t in tests.items()}
        provenance = {"model": model_provenance(lm), "generation": asdict(generation), "prompt_tokens": prompt_tokens,
                      "options": {"alpha": alpha, "dedup": dedup, "null_keys": null_keys, "seed": seed},
                      "batch_size": batch_size, "data": data or []}
        return run.finish(summary=summary, provenance=provenance,
                          extra={"watermark": config.to_dict(), "radioactivity": tests})


__all__ = ["KINDS", "detect_to_dir", "evaluate_to_dir", "generate_to_dir", "radioactivity_to_dir"]
