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
position's value depends only on its (seed, token) pair through a keyed hash, and a model
that never saw the key can only learn about a coin from text the watermarked generator wrote
after looking at it. The texts fed to the suspect are such text: at every step the generator
looked at the coins of all candidates under that step's seed, and biased its choice by them.
A model that copies from its context (an induction head: after "A", predict what followed
"A" before) would carry that bias into its predictions, so every position whose coin the
generator may have looked at earlier in the same text is left out before counting
(:func:`examined_earlier`; for the closed test, coins of the prompt). What is left is coins
the text never depended on: each is green with probability γ under the null whatever the
model does with the text (how many are left depends on the text, not on those coins).
The cost is power: on the testbed's templated text the open test keeps about 5% of positions
with selfhash (whose seed is shared by consecutive steps), still p ≈ 10⁻⁹ for the copy
fine-tuned on watermarked text. The null-key calibration (:func:`null_calibration`) checks
the test on the very model and texts under keys the texts were never watermarked with; it
cannot see a bias that needs the true key, which is why the filter is not optional.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def examined_earlier(at: Positions, cand: np.ndarray, seeds: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     config: WatermarkConfig, stream_key: int) -> np.ndarray:
    """(N,) bool: the coin of position k, its (seed, ``cand[k]``) pair, may already have been
    used by the watermarked generator that wrote the text, at a position j < pos[k] of the
    same text with lo[k] <= j < hi[k] (the text's watermarked stretch). A model that copies
    from its context predicts the tokens such a step chose, which were biased green, so these
    positions are left out: without this, a model never trained on the data but able to copy
    (an induction head) tested radioactive under the true key (the review's finding: p < 0.05
    for 95% of keys with lefthash).

    At step j the generator saw the coin of every candidate under the seed that candidate gets
    at j. For seedings whose seed depends only on the context that seed is the text's own seed
    at j, so the test is exact: an examined position with the same seed. For selfhash the seed
    is the minimum of the candidate-anchored hashes of the window and of the candidate itself:
    a position is left out when that minimum is the candidate's own term (shared by every step
    where it is the minimum) or its minimising token sits in a window the generator examined
    (a superset of the exact condition: more positions left out, never fewer).
    """
    n = len(seeds)
    doc = at.doc.astype(np.int64)
    # lo and hi are one value per text in both setups (each position carries its text's).
    lo_j = np.maximum(lo, config.context)  # a step the generator hashed has its whole context
    upper = np.minimum(hi, at.pos)  # j < pos and j < hi
    if config.seeding != "selfhash":
        # Earliest examined position of the same text with the same seed.
        ex = (at.pos >= lo_j) & (at.pos < hi)
        code = (doc.astype(np.uint64) << np.uint64(32)) | seeds.astype(np.uint64)
        ecode, epos = code[ex], at.pos[ex]
        order = np.lexsort((epos, ecode))
        ecode, epos = ecode[order], epos[order]
        k = np.searchsorted(ecode, code)
        found = k < len(ecode)
        found[found] = ecode[k[found]] == code[found]
        first = np.where(found, epos[np.minimum(k, max(len(epos) - 1, 0))] if len(epos) else 0, np.iinfo(np.int64).max)
        return first < upper
    from lmaudit.watermark.prf import combine_np

    anchor = combine_np(stream_key, cand)  # (N,)
    own = combine_np(anchor, cand)
    if at.prev.shape[1] == 0:
        return lo < upper  # h = 1: the seed is always the candidate's own term (see below)
    window = combine_np(anchor[:, None], at.prev)  # (N, c)
    # <=: when the candidate sits in its own window its term there is its own term, and the
    # seed is still the self-coin every step can reach (the re-review's finding: with <, a
    # model repeating the previous token tested radioactive under 52% of keys with selfhash).
    is_self = own <= window.min(axis=1)
    # The self-coin does not depend on the context: any step the generator hashed may have
    # looked at it, those before the text's first full context included (from lo, not lo_j).
    self_examined = lo < upper
    any_examined = lo_j < upper
    # The minimising token y of the window: is y inside the window of some examined step j,
    # i.e. does y occur at a position q with j in [q + 1, q + c] for some lo_j <= j < upper?
    c = at.prev.shape[1]
    y = at.prev[np.arange(n), window.argmin(axis=1)].astype(np.int64)
    q_lo, q_hi = np.maximum(lo_j - c, 0), upper - 2  # occurrences q with q + c >= lo_j and q + 1 <= upper - 1
    occ_doc, occ_tok, occ_pos = _occurrences(at)
    # One sortable integer per (text, token, position): an occurrence of y in [q_lo, q_hi] is
    # the first code at or after (text, y, q_lo), if it is at most (text, y, q_hi).
    width = int(max(occ_pos.max(initial=0), at.pos.max(initial=0))) + 2
    vocab = int(max(occ_tok.max(initial=0), y.max(initial=0))) + 1
    if (int(doc.max(initial=0)) + 1) * vocab * width >= 2**62:
        raise ValueError("too many texts, token ids or positions for one radioactivity test: split the texts")
    comp = np.sort((occ_doc.astype(np.int64) * vocab + occ_tok.astype(np.int64)) * width + occ_pos)
    base = (doc * vocab + y) * width
    k = np.searchsorted(comp, base + q_lo)
    nxt = comp[np.minimum(k, len(comp) - 1)] if len(comp) else np.full(n, -1)
    hit = (k < len(comp)) & (nxt <= base + q_hi) & (q_lo <= q_hi)
    return (is_self & self_examined) | (~is_self & any_examined & hit)


def _occurrences(at: Positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text, token, position) of every token the positions' windows show, each once."""
    c = at.prev.shape[1]
    doc = np.repeat(at.doc, c)
    pos = (at.pos[:, None] - c + np.arange(c)[None, :]).reshape(-1)
    tok = at.prev.reshape(-1)
    code = (doc.astype(np.uint64) << np.uint64(32)) | pos.astype(np.uint64)
    _, first = np.unique(code, return_index=True)
    return doc[first], tok[first], pos[first]


def _pooled(at: Positions, cand: np.ndarray, tested: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            config: WatermarkConfig, scheme: Scheme, *, dedup: bool, alpha: float) -> dict:
    """The pooled test of the candidates ``cand`` at the ``tested`` positions, leaving out
    coins the generator examined in [lo, hi) (:func:`examined_earlier`) and, with ``dedup``,
    repeated (seed, token) pairs over all texts."""
    seeds, values = values_np(config.seeding, config.h, scheme.stream_key, at.prev, cand)
    used = examined_earlier(at, cand, seeds, lo, hi, config, scheme.stream_key)
    keep = tested & ~used
    if dedup:
        keep &= first_occurrences(seeds, cand, np.where(keep, 0, 1))  # pairs counted once, kept positions first
    t = int(keep.sum())
    total = float(scheme.score(values)[keep].sum())
    row = {"n_positions": int(tested.sum()), "n_examined": int((tested & used).sum()),
           "n_repeated": int((tested & ~used).sum()) - t, "n_scored": t, "score": round(total, 6)}
    if scheme.name == "kgw":
        row["green_fraction"] = round(total / t, 6) if t else None
        row["gamma"] = scheme.gamma
    if t == 0:
        return row | {"z": None, "p_value": None, "log10_p_value": None, "detected": None}
    log_p = float(scheme.log_pvalue(total, t))
    return row | {"z": round(float(scheme.z(total, t)), 4), "p_value": float(np.exp(log_p)),
                  "log10_p_value": round(log_p / np.log(10), 4), "detected": bool(log_p < np.log(alpha))}


@dataclass
class Setup:
    """One pooled test's inputs: the positions, what is scored at each, and where the
    watermarked generator may have examined coins (``lo`` <= j < ``hi``, per position)."""

    at: Positions
    cand: np.ndarray
    tested: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def run(self, config: WatermarkConfig, scheme: Scheme, *, dedup: bool, alpha: float) -> dict:
        return _pooled(self.at, self.cand, self.tested, self.lo, self.hi, config, scheme, dedup=dedup, alpha=alpha)


def reading_setup(texts_ids: Sequence[Sequence[int]], preds: Sequence[np.ndarray], c: int) -> Setup:
    """The text's contexts with the model's predictions as candidates; the whole text may be
    watermarked."""
    at, lengths = positions(texts_ids, c)
    pred_flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in preds]) if preds else np.zeros(0, np.int64)
    starts = np.cumsum(lengths) - lengths
    cand = pred_flat[starts[at.doc] + at.pos].astype(np.uint32)
    n = len(cand)
    return Setup(at, cand, np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64), lengths[at.doc])


def closed_setup(prompts: Sequence[Sequence[int]], gens: Sequence[Sequence[int]], c: int) -> Setup:
    """Prompt (without BOS) + generation: the generated tokens are tested, with contexts that
    may reach into the prompt; the prompt may be watermarked text."""
    seqs = [list(p[1:]) + list(g) for p, g in zip(prompts, gens)]
    plen = np.array([len(p) - 1 for p in prompts], dtype=np.int64)
    at, _ = positions(seqs, c)
    tested = at.pos >= plen[at.doc]
    return Setup(at, at.tokens.copy(), tested, np.zeros(len(tested), dtype=np.int64), plen[at.doc])


def null_calibration(setup: Setup, config: WatermarkConfig, *, n_keys: int = 1000, seed: int = 0,
                     dedup: bool = True, alphas: Sequence[float] = (0.01, 0.05, 0.1)) -> dict:
    """The same pooled test under ``n_keys`` random keys the texts were not watermarked with
    (keys drawn from 64-bit integers; one in 2⁶⁴ could be the real key). A valid test gives
    p < α at rate α: each rate comes with its Clopper-Pearson interval and n. It cannot see a
    bias that needs the true key (a model copying the text's own green choices): that is what
    :func:`examined_earlier` removes."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, size=n_keys, dtype=np.int64)
    p = np.array([setup.run(config, SCHEMES.get(config.scheme)(config, int(k)), dedup=dedup, alpha=0.5)["p_value"]
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
    setup = reading_setup(texts_ids, preds, config.context)
    out = {"setting": "open", "n_texts": len(texts_ids), **setup.run(config, build(config, key), dedup=dedup,
                                                                       alpha=alpha)}
    out["prediction_matches_text"] = _match_rate(texts_ids, preds)
    if null_keys:
        out["null_keys"] = null_calibration(setup, config, n_keys=null_keys, seed=seed, dedup=dedup)
    return out


def closed_test(lm, prompts: Sequence[Sequence[int]], config: WatermarkConfig, key: int, *,
                generation: GenerationConfig, dedup: bool = True, alpha: float = DEFAULT_ALPHA, null_keys: int = 0,
                seed: int = 0, batch_size: int | None = None) -> tuple[dict, list[list[int]]]:
    """The closed-model test: the suspect's own generations from ``prompts`` (BOS first; the
    generated tokens are scored, their contexts may reach into the prompt), scored under
    ``key``, pooled and deduplicated. Returns (result, generations)."""
    config.check(key=key, lm=lm)
    gens = lm.generate(prompts, generation, batch_size=batch_size)
    setup = closed_setup(prompts, gens, config.context)
    out = {"setting": "closed", "n_texts": len(gens), "n_generated_tokens": int(sum(map(len, gens))),
           **setup.run(config, build(config, key), dedup=dedup, alpha=alpha)}
    if null_keys:
        out["null_keys"] = null_calibration(setup, config, n_keys=null_keys, seed=seed, dedup=dedup)
    return out, gens


def _match_rate(texts_ids, preds) -> dict:
    n = int(sum(len(p) for p in preds))
    k = int(sum(int((np.asarray(t) == p).sum()) for t, p in zip(texts_ids, preds)))
    return {"k": k, "n": n, "rate": k / n if n else None}
