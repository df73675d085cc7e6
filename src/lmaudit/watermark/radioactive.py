"""Radioactivity: was this model trained on my watermarked text?

Sander, Fernandez, Durmus, Douze, Furon (2024), "Watermarking Makes Language Models
Radioactive" (https://arxiv.org/abs/2402.14904): a model fine-tuned on watermarked text
learns the green-list bias, so its own predictions are green more often than γ under the
data owner's key. Two tests, both pooled over all texts:

- **open model** (:func:`reading_test`, the model's predictions are readable): feed texts to
  the suspect model, take its most likely next token at every position, and score that
  prediction under the key with the context the text itself gives (the seed of the text's
  preceding tokens, the candidate itself for selfhash).
- **closed model** (:func:`closed_test`, only generations are available): generate from
  prompts and score the generated tokens as the ordinary detector does.

Every (seed, token) pair is counted once over all texts: the paper's deduplication. Without
it, a model that repeats a phrase repeats the same coin, and the binomial p-value is invalid.

Why the p-value is valid under the null (the model never saw text under this key): a
position's value depends only on its (seed, token) pair through a keyed hash, and the
prediction depends only on the text and the model. Feeding the watermarked texts themselves
is fine: the text's own token at a position was biased green, but the prediction's pair is a
fresh coin unless it repeats an earlier pair, which deduplication removes. The null-key
calibration (:func:`null_calibration`) checks this on the very model and texts under test:
under keys the texts were never watermarked with, p < α must occur at rate α.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lmaudit.models.base import GenerationConfig, require
from lmaudit.stats import proportion_ci
from lmaudit.watermark.config import WatermarkConfig
from lmaudit.watermark.detect import DEFAULT_ALPHA, Positions, first_occurrences, positions
from lmaudit.watermark.schemes import SCHEMES, Scheme, build
from lmaudit.watermark.seeding import values_np


def predictions(lm, texts_ids: Sequence[Sequence[int]], *, batch_size: int = 16) -> list[np.ndarray]:
    """The model's argmax next token at every position of each text (BOS prepended, so the
    text's first token is predicted too); a text longer than the context is cut into chunks
    that each start with BOS (every position still gets one prediction)."""
    require(lm, "predictions", audit="the open-model radioactivity test")
    width = lm.max_length - 1
    chunks, owner = [], []
    for i, ids in enumerate(texts_ids):
        for a in range(0, len(ids), width):
            chunks.append([lm.bos_token_id, *ids[a : a + width]])
            owner.append(i)
    preds: list[list[np.ndarray]] = [[] for _ in texts_ids]
    order = sorted(range(len(chunks)), key=lambda j: len(chunks[j]))  # length buckets: little padding
    out: dict[int, np.ndarray] = {}
    for a in range(0, len(order), batch_size):
        batch = order[a : a + batch_size]
        for j, p in zip(batch, lm.top_predictions([chunks[j] for j in batch], [1] * len(batch))):
            out[j] = p
    for j in range(len(chunks)):
        preds[owner[j]].append(out[j])
    return [np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in preds]


def _pooled(at: Positions, config: WatermarkConfig, scheme: Scheme, *, dedup: bool, alpha: float) -> dict:
    seeds, values = values_np(config.seeding, config.h, scheme.stream_key, at.prev, at.tokens)
    keep = first_occurrences(seeds, at.tokens) if dedup else np.ones(len(values), dtype=bool)
    t = int(keep.sum())
    total = float(scheme.score(values)[keep].sum())
    row = {"n_positions": int(len(values)), "n_repeated": int(len(values) - t), "n_scored": t, "score": round(total, 6)}
    if scheme.name == "kgw":
        row["green_fraction"] = round(total / t, 6) if t else None
        row["gamma"] = scheme.gamma
    if t == 0:
        return row | {"z": None, "p_value": None, "detected": None}
    p = float(scheme.pvalue(total, t))
    return row | {"z": round(float(scheme.z(total, t)), 4), "p_value": p, "detected": bool(p < alpha)}


def reading_positions(texts_ids: Sequence[Sequence[int]], preds: Sequence[np.ndarray], c: int) -> Positions:
    """The text's contexts with the model's predictions in place of the text's tokens."""
    at, _ = positions(texts_ids, c)
    pred_flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in preds]) if preds else np.zeros(0, np.int64)
    lengths = np.array([len(x) for x in texts_ids], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    at.tokens = pred_flat[starts[at.doc] + at.pos].astype(np.uint32)
    return at


def null_calibration(at: Positions, config: WatermarkConfig, *, n_keys: int = 1000, seed: int = 0,
                     dedup: bool = True, alphas: Sequence[float] = (0.01, 0.05, 0.1)) -> dict:
    """The same pooled test under ``n_keys`` random keys the texts were not watermarked with
    (keys drawn from 64-bit integers; one in 2⁶⁴ could be the real key). A valid test gives
    p < α at rate α: each rate comes with its Clopper-Pearson interval and n."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, size=n_keys, dtype=np.int64)
    p = np.array([_pooled(at, config, SCHEMES.get(config.scheme)(config, int(k)), dedup=dedup, alpha=0.5)["p_value"]
                  for k in keys], dtype=np.float64)
    ok = p[np.isfinite(p)]
    rates = {}
    for a in alphas:
        k = int((ok < a).sum())
        lo, hi = proportion_ci(k, len(ok)) if len(ok) else (None, None)
        rates[str(a)] = {"alpha": a, "k": k, "n": int(len(ok)), "rate": k / len(ok) if len(ok) else None,
                         "ci": [lo, hi], "within": bool(lo is not None and lo <= a <= hi)}
    return {"n_keys": n_keys, "seed": seed, "rates": rates,
            "p_quantiles": {q: float(np.quantile(ok, float(q))) for q in ("0.01", "0.05", "0.5")} if len(ok) else {},
            "min_p": float(ok.min()) if len(ok) else None}


def reading_test(lm, texts_ids: Sequence[Sequence[int]], config: WatermarkConfig, key: int, *, dedup: bool = True,
                 alpha: float = DEFAULT_ALPHA, null_keys: int = 0, seed: int = 0, batch_size: int = 16) -> dict:
    """The open-model test: the suspect's predictions on ``texts_ids`` (token ids, no BOS)
    scored under ``key``, pooled and deduplicated; with ``null_keys``, the calibration too."""
    config.check(key=key, lm=lm)
    preds = predictions(lm, texts_ids, batch_size=batch_size)
    at = reading_positions(texts_ids, preds, config.context)
    out = {"setting": "open", "n_texts": len(texts_ids), **_pooled(at, config, build(config, key), dedup=dedup,
                                                                    alpha=alpha)}
    out["prediction_matches_text"] = _match_rate(texts_ids, preds)
    if null_keys:
        out["null_keys"] = null_calibration(at, config, n_keys=null_keys, seed=seed, dedup=dedup)
    return out


def closed_test(lm, prompts: Sequence[Sequence[int]], config: WatermarkConfig, key: int, *,
                generation: GenerationConfig, dedup: bool = True, alpha: float = DEFAULT_ALPHA, null_keys: int = 0,
                seed: int = 0, batch_size: int | None = None) -> tuple[dict, list[list[int]]]:
    """The closed-model test: the suspect's own generations from ``prompts`` (prompt
    excluded), scored under ``key``, pooled and deduplicated. Returns (result, generations)."""
    config.check(key=key, lm=lm)
    gens = lm.generate(prompts, generation, batch_size=batch_size)
    at, _ = positions(gens, config.context)
    out = {"setting": "closed", "n_texts": len(gens), "n_generated_tokens": int(sum(map(len, gens))),
           **_pooled(at, config, build(config, key), dedup=dedup, alpha=alpha)}
    if null_keys:
        out["null_keys"] = null_calibration(at, config, n_keys=null_keys, seed=seed, dedup=dedup)
    return out, gens


def _match_rate(texts_ids, preds) -> dict:
    n = int(sum(len(p) for p in preds))
    k = int(sum(int((np.asarray(t) == p).sum()) for t, p in zip(texts_ids, preds)))
    return {"k": k, "n": n, "rate": k / n if n else None}
