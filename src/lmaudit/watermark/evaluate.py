"""``lmaudit watermark evaluate``: does detection survive attacks, and what does the watermark cost?

For each scheme (a preset of :data:`lmaudit.watermark.config.PRESETS`), the model continues
the same prompts twice: watermarked, and without a watermark under the same decoding (the
negatives: what the model writes anyway, which is harder to tell apart than human text).
Every attack of :mod:`lmaudit.watermark.attacks` is applied alike to both (copy-paste mixes
each into the prompt's own document, the human text), and the detector scores the result.

Per scheme × attack: ROC-AUC with its interval, TPR at FPR 1% and 0.1% (Clopper-Pearson
intervals, n, and a flag when too few negatives decide the threshold), and the detection
rate at α with its interval on both sides (the false-positive side is the measured FPR of
the exact test). Per scheme: the detection rate against the number of generated tokens T
(prefixes of the unattacked generations), and the quality cost, the oracle model's
perplexity of watermarked vs unwatermarked continuations of the same prompts.

The ranking score is −log10 p (z is not comparable across lengths). A text too short to test
is left out of the ROC and counted (``n_too_short``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from lmaudit.data import Record
from lmaudit.engines import on_engine
from lmaudit.models.base import GenerationConfig, require
from lmaudit.report.run import RunResult
from lmaudit.stats import auc_ci, bootstrap_mean_ci, rate_summary, roc_auc, tpr_at_fpr
from lmaudit.watermark.attacks import apply_attack, describe, parse_attacks
from lmaudit.watermark.config import PRESETS, WatermarkConfig
from lmaudit.watermark.detect import DEFAULT_ALPHA, DEFAULT_MIN_TOKENS, check_options, detect_tokens
from lmaudit.watermark.normalize import normalize
from lmaudit.watermark.processor import generate
from lmaudit.watermark.run import prompts_of

DEFAULT_ATTACKS = ("none,delete(fraction=0.2),substitute(fraction=0.2),truncate(fraction=0.5),"
                   "copy_paste(n_spans=1,span_words=40),whitespace,unicode,homoglyph")


@dataclass(frozen=True)
class WatermarkEvalConfig:
    """Options of :func:`run_watermark_eval`.

    Attributes:
        presets: Schemes to evaluate (names of :data:`PRESETS`).
        attacks: An :func:`~lmaudit.watermark.attacks.parse_attacks` spec.
        prompt_tokens: Prompt = the document's first tokens (after BOS).
        max_new_tokens: Tokens generated per prompt.
        temperature: Sampling temperature of both generations.
        gamma, delta: KGW's green share and bias.
        min_tokens, alpha: The detector's minimum scored positions and significance level.
        lengths: Prefix lengths T (generated tokens) of the detection-rate curve; a prefix
            scores T minus the context's few tokens, so T must exceed ``min_tokens`` to count.
        n_bootstrap: Bootstrap replicates of AUC and perplexity intervals.
        seed: Seeds sampling, attacks and bootstraps.
    """

    presets: tuple[str, ...] = ("lefthash", "selfhash", "gumbel")
    attacks: str = DEFAULT_ATTACKS
    prompt_tokens: int = 16
    max_new_tokens: int = 128
    temperature: float = 1.0
    gamma: float = 0.25
    delta: float = 2.0
    min_tokens: int = DEFAULT_MIN_TOKENS
    alpha: float = DEFAULT_ALPHA
    lengths: tuple[int, ...] = (32, 64, 128)
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.presets:
            raise ValueError("name at least one watermark preset")
        for p in self.presets:
            if p not in PRESETS:
                raise ValueError(f"unknown watermark preset {p!r} (known: {', '.join(PRESETS)})")
        if len(set(self.presets)) < len(self.presets):
            raise ValueError(f"a preset is named twice: {', '.join(self.presets)}")
        for name in ("prompt_tokens", "max_new_tokens", "n_bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must lie strictly between 0 and 1, got {self.gamma}")
        if not 0 <= self.delta < float("inf"):
            raise ValueError(f"delta must be a finite non-negative number, got {self.delta}")
        if not self.lengths or any(t < 1 for t in self.lengths):
            raise ValueError(f"lengths must be positive token counts, got {self.lengths}")
        check_options(min_tokens=self.min_tokens, alpha=self.alpha)
        parse_attacks(self.attacks)  # a bad spec fails before any generation

    def to_dict(self) -> dict:
        return asdict(self)


def _score(row: dict) -> float:
    return -float(row["log10_p_value"])  # finite where p underflows to 0


def attack_metrics(pos: list[dict], neg: list[dict], *, alpha: float, n_bootstrap: int, seed: int) -> dict:
    """ROC-AUC, TPR at FPR 1% and 0.1%, detection and false-positive rates at ``alpha``, of
    detector rows of watermarked (``pos``) and unwatermarked (``neg``) texts."""
    ps = [_score(r) for r in pos if not r["too_short"]]
    ns = [_score(r) for r in neg if not r["too_short"]]
    out = {"n_watermarked": len(ps), "n_unwatermarked": len(ns),
           "n_too_short": {"watermarked": len(pos) - len(ps), "unwatermarked": len(neg) - len(ns)},
           "detection_rate": rate_summary(sum(r["detected"] is True for r in pos), len(ps)),
           "false_positive_rate": rate_summary(sum(r["detected"] is True for r in neg), len(ns))}
    if ps and ns:
        out["auc"] = roc_auc(ps, ns)
        out["auc_ci"] = list(auc_ci(ps, ns, n_bootstrap=n_bootstrap, seed=seed))
        out["tpr_at_fpr"] = {str(f): tpr_at_fpr(ps, ns, f) for f in (0.01, 0.001)}
    return out


def _perplexity(oracle, prompts, gens) -> np.ndarray:
    """Per text, exp(mean NLL) of the generated tokens given BOS + prompt, under ``oracle``."""
    out = []
    for start in range(0, len(prompts), 16):
        seqs = [p + g for p, g in zip(prompts[start : start + 16], gens[start : start + 16])]
        keep = [i for i, g in enumerate(gens[start : start + 16]) if g]
        stats = oracle.token_stats([seqs[i] for i in keep], [len(prompts[start + i]) for i in keep])
        vals = [np.nan] * len(seqs)
        for i, s in zip(keep, stats):
            vals[i] = float(np.exp(-np.mean(s.logprob.astype(np.float64))))
        out.extend(vals)
    return np.array(out)


def _quality(oracle, prompts, wm, plain, *, n_bootstrap: int, seed: int) -> dict:
    a, b = _perplexity(oracle, prompts, wm), _perplexity(oracle, prompts, plain)
    ok = np.isfinite(a) & np.isfinite(b)
    diff = np.log(a[ok]) - np.log(b[ok])
    return {"oracle": getattr(oracle, "name", None), "n": int(ok.sum()),
            "watermarked_ppl_median": float(np.median(a[ok])) if ok.any() else None,
            "unwatermarked_ppl_median": float(np.median(b[ok])) if ok.any() else None,
            # Paired on prompt: the mean log-ratio, and the ratio of geometric means it implies.
            "mean_log_ppl_ratio": float(diff.mean()) if ok.any() else None,
            "mean_log_ppl_ratio_ci": list(bootstrap_mean_ci(diff, n_bootstrap=n_bootstrap, seed=seed)) if ok.any() else None}


def run_watermark_eval(lm, records: Sequence[Record], key: int, *, config: WatermarkEvalConfig = WatermarkEvalConfig(),
                       oracle=None, paraphraser=None, batch_size: int | None = None,
                       on_step: Callable[[str], None] | None = None, engine=None) -> RunResult:
    """The evaluation (module docstring) on the prompts of ``records`` (documents: the first
    ``prompt_tokens`` tokens prompt, the document is the human text for copy-paste).

    Rows: one per document × scheme × attack × side (watermarked / unwatermarked), with the
    detector's figures; a document too short for its prompt is an error row.

    ``engine``: where the generations run: None (the model as given), "local", "ray", or an
    engine object (:mod:`lmaudit.engines`). The oracle's perplexity is computed here.
    """
    require(lm, "logits_processors", audit="the watermark evaluation")
    lm = on_engine(lm, engine)
    attacks = parse_attacks(config.attacks, paraphraser=paraphraser)
    oracle = oracle or lm
    ok, prompts, samples = prompts_of(lm, records, config.prompt_tokens)  # error rows for documents too short
    human = [records[i].text for i in ok]
    gen = GenerationConfig(max_new_tokens=config.max_new_tokens, do_sample=True, temperature=config.temperature,
                           stop_at_eos=False, seed=config.seed)
    step = on_step or (lambda s: None)
    step("unwatermarked generation")
    plain = generate(lm, prompts, None, generation=gen, batch_size=batch_size)
    schemes, configs = {}, {}
    for preset in config.presets:
        wcfg = WatermarkConfig.create(lm, key, preset=preset, gamma=config.gamma, delta=config.delta)
        configs[preset] = wcfg.to_dict()
        step(f"{preset}: watermarked generation")
        wm = generate(lm, prompts, wcfg, key, generation=gen, batch_size=batch_size)
        detect = dict(min_tokens=config.min_tokens, alpha=config.alpha)
        by_attack = {}
        for label, attack in attacks:
            step(f"{preset}: {label}")
            sides = {}
            for side, gens in (("watermarked", wm), ("unwatermarked", plain)):
                texts = [lm.decode(g) for g in gens]
                attacked = apply_attack(attack, texts, seed=config.seed, human=human)
                rows = detect_tokens(lm.encode([normalize(a.text) for a in attacked]), wcfg, key, **detect)
                sides[side] = rows
                for i, (a, r) in enumerate(zip(attacked, rows)):
                    samples.append({"id": records[ok[i]].id, "scheme": preset, "attack": label, "side": side,
                                    **{k: r[k] for k in ("n_tokens", "n_scored", "score", "z", "p_value",
                                                         "log10_p_value", "too_short", "detected")}})
            by_attack[label] = attack_metrics(sides["watermarked"], sides["unwatermarked"], alpha=config.alpha,
                                              n_bootstrap=config.n_bootstrap, seed=config.seed)
        by_length = {}
        for t in config.lengths:
            if t > config.max_new_tokens:
                continue
            pos = detect_tokens([g[:t] for g in wm], wcfg, key, **detect)
            neg = detect_tokens([g[:t] for g in plain], wcfg, key, **detect)
            tested = {side: [r for r in rows if not r["too_short"]] for side, rows in (("watermarked", pos),
                                                                                      ("unwatermarked", neg))}
            by_length[str(t)] = {side: rate_summary(sum(r["detected"] for r in rows), len(rows))
                                 for side, rows in tested.items()}
            by_length[str(t)]["too_short"] = {"watermarked": len(pos) - len(tested["watermarked"]),
                                              "unwatermarked": len(neg) - len(tested["unwatermarked"])}
        step(f"{preset}: perplexity under the oracle")
        schemes[preset] = {"config": configs[preset], "attacks": by_attack, "by_length": by_length,
                           "quality": _quality(oracle, prompts, wm, plain, n_bootstrap=config.n_bootstrap,
                                               seed=config.seed)}
    results = {"watermark_eval": {"schemes": schemes, "attacks": {label: describe(a) for label, a in attacks},
                                  "n_prompts": len(prompts), "n_errors": len(records) - len(ok)}}
    provenance = {"config": config.to_dict(), "generation": asdict(gen),
                  "oracle": getattr(oracle, "name", None), "batch_size": batch_size}
    return RunResult(results, samples, provenance)


__all__ = ["WatermarkEvalConfig", "run_watermark_eval", "attack_metrics", "DEFAULT_ATTACKS"]
