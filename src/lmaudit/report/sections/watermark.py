"""The watermark commands' sections (kinds ``watermark-generate``, ``-detect``, ``-evaluate``,
``-radioactivity``): what was generated and how detectable it is, which texts carry the key's
watermark (with the best window of each marked in its text), how detection survives attacks
and what it costs, and whether a model trained on watermarked text.

One module for the four because they share how a configuration reads, what α and p mean and
how a detection rate is worded. Every figure comes from results.json or samples.jsonl as the
run wrote it (:mod:`lmaudit.watermark.run`); nothing is recomputed except the z that matches α,
drawn on the plot as a guide.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from lmaudit.report import plots
from lmaudit.report.fmt import MISSING, finite, num, pct, pval, rate, with_ci
from lmaudit.report.load import Run
from lmaudit.report.page import Column, Page
from lmaudit.report.sections import Section, sections
from lmaudit.report.sections._memorization import CASES, phrase

DEFAULT_ALPHA = 1e-3  # the commands' default, for a run that does not record its own
STRONG_P = 1e-3  # radioactivity: "strong" needs p below this and a calibration that holds
CONTEXT_CHARS = 200  # text shown either side of a highlighted window
CURVES_DETECTED, CURVES_OTHER = 10, 30  # texts drawn on the z-over-T plot
EXAMPLES = 3  # generate: examples shown from each end (strongest, weakest evidence)


# ---------------------------------------------------------------- shared


def preset_of(config: dict | None) -> str | None:
    """The preset whose scheme, seeding and h the configuration has, or None (a custom one).

    >>> preset_of({"scheme": "kgw", "seeding": "selfhash", "h": 4}), preset_of({"scheme": "kgw", "seeding": "hash", "h": 3})
    ('selfhash', None)
    """
    from lmaudit.watermark.config import PRESETS

    if not isinstance(config, dict):
        return None
    for name, p in PRESETS.items():
        if all(config.get(k) == v for k, v in p.items()):
            return name
    return None


def config_text(config: dict | None) -> str:
    """A watermark configuration in one phrase: preset, scheme, seeding, h, γ and δ (KGW only:
    Gumbel has neither), the key's public id.

    >>> config_text({"scheme": "kgw", "seeding": "selfhash", "h": 4, "gamma": 0.25, "delta": 2.0, "key_id": "ab12"})
    'selfhash (KGW, selfhash seeding, h = 4, γ = 0.25, δ = 2; key id ab12)'
    >>> config_text({"scheme": "gumbel", "seeding": "hash", "h": 4, "key_id": "ab12"})
    'gumbel (Gumbel, hash seeding, h = 4; key id ab12)'
    """
    if not isinstance(config, dict):
        return "no watermark"
    scheme = config.get("scheme")
    parts = [{"kgw": "KGW", "gumbel": "Gumbel"}.get(scheme, str(scheme)), f"{config.get('seeding')} seeding",
             f"h = {num(config.get('h'))}"]
    if scheme == "kgw":
        parts += [f"γ = {num(config.get('gamma'))}", f"δ = {num(config.get('delta'))}"]
    inner = f"{', '.join(parts)}; key id {config.get('key_id', MISSING)}"
    return f"{preset_of(config) or 'custom'} ({inner})"


def z_of(alpha: Any) -> float | None:
    """The z whose upper normal tail is ``alpha``: where the normal approximation puts the
    detection threshold (the exact test's varies a little with T).

    >>> round(z_of(1e-3), 3), z_of(None)
    (3.09, None)
    """
    a = finite(alpha)
    if a is None or not 0 < a < 1:
        return None
    from scipy.stats import norm

    return float(norm.isf(a))


def _rate_text(entry: Any) -> str:
    """A {k, n, ci} rate of results.json as "k of n (x%, 95% CI a-b)"."""
    if not isinstance(entry, dict):
        return MISSING
    return rate(entry.get("k"), entry.get("n"), entry.get("ci"))


def _phrase(entry: Any, noun: str = "") -> str:
    """A {k, n, ci} rate in words: "18 of 80 texts (22.5%, 95% CI ...)" or "none of 80 (upper bound ...)"."""
    entry = entry if isinstance(entry, dict) else {}
    return phrase(entry.get("k"), entry.get("n"), entry.get("ci"), noun)


def _alpha(run: Run, fallback: Any = None) -> float:
    options = run.provenance.get("options") if isinstance(run.provenance.get("options"), dict) else {}
    for a in (options.get("alpha"), (run.provenance.get("config") or {}).get("alpha"), fallback):
        if finite(a) is not None:
            return float(a)
    return DEFAULT_ALPHA


def _p_rank(row: dict) -> float:
    p = finite(row.get("p_value"))
    return math.inf if p is None else p


# ---------------------------------------------------------------- generate


def generate_verdict(summary: dict, config: dict | None, provenance: dict) -> tuple[list[str], str, list[str]]:
    """What was generated, and the generator's own detection rate with its interval. Always a
    measurement (``info``); a warning when the generator itself detects fewer than half."""
    gen = provenance.get("generation") if isinstance(provenance.get("generation"), dict) else {}
    decoding = (f"sampled at temperature {num(gen.get('temperature'))}" if gen.get("do_sample") else "greedy") \
        if gen else "decoding not recorded"
    n, made = summary.get("n"), summary.get("n_generated")
    what = f"watermarked with {config_text(config)}" if config else \
        "without a watermark (a control: the same decoding, no bias)"
    sentences = [f"{num(made)} continuations of up to {num(gen.get('max_new_tokens'))} tokens ({decoding}) from the "
                 f"first {num(provenance.get('prompt_tokens'))} tokens of {num(n)} documents, {what}."]
    warnings = []
    if summary.get("n_errors"):
        warnings.append(f"{num(summary['n_errors'])} of {num(n)} documents are shorter than the prompt: error rows, "
                        "not generated (the reason is in their `error` field).")
    check = summary.get("self_check")
    if isinstance(check, dict):
        det = check.get("detected") or {}
        short = check.get("n_too_short") or 0
        sentences.append(
            f"Self-check (the generator's own token ids, no re-tokenisation): the watermark is detected at p < "
            f"{num(check.get('alpha'))} in {_phrase(det, 'continuations')}"
            + (f"; {num(short)} too short to test." if short else "."))
        share = finite(det.get("rate"))
        if share is not None and share < 0.5:
            warnings.append(f"The generator detects its own watermark in only {pct(share)} of its continuations: at "
                            "this δ, length and temperature the watermark is weak, and a detector on the same texts "
                            "will miss most of them (a larger δ or more new tokens make it stronger).")
    return sentences, "info", warnings


def generate_rows(samples: Sequence[dict]) -> list[dict]:
    """samples.jsonl's rows with their detection flattened into columns."""
    out = []
    for r in samples:
        d = r.get("detection") if isinstance(r.get("detection"), dict) else {}
        out.append({"id": r.get("id"), "prompt": r.get("prompt"), "text": r.get("text"),
                    "n_new_tokens": r.get("n_new_tokens"), "n_scored": d.get("n_scored"), "z": d.get("z"),
                    "p_value": d.get("p_value"), "detected": d.get("detected"), "too_short": d.get("too_short"),
                    "error": r.get("error")})
    return out


def examples(rows: Sequence[dict], k: int = EXAMPLES) -> list[dict]:
    """The ``k`` tested rows with the smallest p-values and the ``k`` with the largest (each once)."""
    tested = sorted((r for r in rows if finite(r.get("p_value")) is not None), key=_p_rank)
    picked = tested[:k] + [r for r in tested[max(k, len(tested) - k):]]
    return picked


@sections.register("watermark-generate")
def watermark_generate(run: Run, page: Page) -> Section:
    r = run.results
    config = r.get("watermark")
    sentences, level, warnings = generate_verdict(run.summary, config, run.provenance)
    rows = generate_rows(run.samples)
    columns = [Column("id", "id"), Column("prompt", "prompt"), Column("text", "generated text"),
               Column("n_new_tokens", "new tokens", "num"), Column("n_scored", "scored", "num"),
               Column("z", "z", "num"), Column("p_value", "p", "num"), Column("detected", "detected", "bool"),
               *([Column("error", "error")] if any(x.get("error") for x in rows) else [])]
    samples = page.samples(f"{run.name}-watermark-generate", rows, columns, sort="z",
                           caption="Continuations, strongest watermark evidence first")
    return Section(
        title="Watermarked generation" if config else "Generation without a watermark", verdict=sentences,
        level=level, warnings=warnings, guide="guide-watermark",
        body=page.render("watermark-generate.html.j2", config=config, config_text=config_text(config),
                         examples=examples(rows), samples=samples, check=run.summary.get("self_check")),
    )


# ---------------------------------------------------------------- detect


def detect_verdict(summary: dict, samples: Sequence[dict], config: dict | None,
                   options: dict) -> tuple[list[str], str, list[str]]:
    """Levels: ``strong`` when a text's p is below α/n (it survives a Bonferroni correction over
    the n texts tested), ``evidence`` when some text is detected at α but none survives it,
    ``weak`` when none is detected, ``warning`` when no text could be tested."""
    alpha = finite(summary.get("alpha")) or DEFAULT_ALPHA
    n, tested, short = summary.get("n") or 0, summary.get("n_tested") or 0, summary.get("n_too_short") or 0
    min_tokens = options.get("min_tokens")
    short_text = (f"{num(short)} of {num(n)} too short to test (fewer than {num(min_tokens)} scored tokens)"
                  if short else "none too short to test")
    if not tested:
        return [f"No text could be tested: {short_text}."], "warning", []
    det = summary.get("detected") or {}
    k = det.get("k") or 0
    sentences = [f"{_phrase(det, 'texts')} are watermarked at p < {num(alpha)} under {config_text(config)}; "
                 f"{short_text}."]
    ok = [s for s in samples if finite(s.get("p_value")) is not None]
    best = min(ok, key=_p_rank) if ok else None
    if best is not None:
        sentences.append(f"The strongest: {best.get('id')}, p = {pval(best.get('p_value'))} (z = {num(best.get('z'))}, "
                         f"{num(best.get('n_scored'))} scored tokens, {pct(best.get('green_fraction'))} green)."
                         if best.get("green_fraction") is not None else
                         f"The strongest: {best.get('id')}, p = {pval(best.get('p_value'))} (z = {num(best.get('z'))}, "
                         f"{num(best.get('n_scored'))} scored tokens).")
    windows = summary.get("windows_detected")
    if isinstance(windows, dict):
        missed = sum(1 for s in samples if _window_p(s) is not None and _window_p(s) < alpha and s.get("detected") is not True)
        sentences.append(f"Searching windows, {_phrase(windows, 'texts')} hold a watermarked passage at "
                         f"Bonferroni-corrected p < {num(alpha)}" +
                         (f", {num(missed)} of them missed by the whole-text test (a passage diluted by other text)."
                          if missed else "."))
    warnings = []
    if k == 0:
        sentences.append("Not detected is not proof of absence: a text edited, paraphrased, too short, or generated "
                         "under another key or configuration reads as unwatermarked.")
        return sentences, "weak", warnings
    bound = alpha / tested
    if best is not None and _p_rank(best) < bound:
        level = "strong"
    else:
        level = "evidence"
        sentences.append(f"Not rated strong: no p-value is below α/n = {pval(bound)}, the level at which a detection "
                         f"survives testing {num(tested)} texts at once.")
    return sentences, level, warnings


def _window_p(sample: dict) -> float | None:
    w = _best_window(sample)
    return finite(w.get("p_corrected")) if w else None


def _best_window(sample: dict) -> dict | None:
    spans = sample.get("spans") if isinstance(sample.get("spans"), dict) else {}
    windows = spans.get("windows") or []
    return windows[0] if windows and isinstance(windows[0], dict) else None


def window_segments(window: dict, context: int = CONTEXT_CHARS) -> list[tuple[str, bool]]:
    """The text around a window as (piece, highlighted) segments for the shared ``text``
    macro: up to ``context`` characters either side (cut with "…"), the window marked.

    >>> window_segments({"text_before": "abcdef", "text_window": "WIN", "text_after": "xyz"}, 3)
    [('…def', False), ('WIN', True), ('xyz', False)]
    """
    before, inside, after = (str(window.get(k) or "") for k in ("text_before", "text_window", "text_after"))
    if len(before) > context:
        before = "…" + before[-context:]
    if len(after) > context:
        after = after[:context] + "…"
    return [(part, marked) for part, marked in ((before, False), (inside, True), (after, False)) if part]


def window_cases(samples: Sequence[dict], limit: int = CASES) -> list[dict]:
    """The texts with a searched window, smallest corrected window p first, each with its
    figures and its best window's segments."""
    have = [s for s in samples if _best_window(s) is not None]
    have.sort(key=lambda s: (_window_p(s) if _window_p(s) is not None else math.inf, _p_rank(s)))
    out = []
    for s in have[:limit]:
        w = _best_window(s)
        out.append({"id": s.get("id"), "z": s.get("z"), "p_value": s.get("p_value"), "n_scored": s.get("n_scored"),
                    "too_short": s.get("too_short"), "detected": s.get("detected"), "p_raw": w.get("p_raw"),
                    "p_corrected": w.get("p_corrected"), "window_z": w.get("z"), "window_scored": w.get("n_scored"),
                    "searched": (s.get("spans") or {}).get("searched"), "parts": window_segments(w)})
    return out


def z_plot(samples: Sequence[dict], alpha: float):
    """z over T for the detected texts (lowest p first) and a sample of the others."""
    with_curve = [(i, s) for i, s in enumerate(samples) if isinstance(s.get("curve"), dict) and s["curve"].get("T")]
    if not with_curve:
        return None
    hit = sorted((x for x in with_curve if x[1].get("detected") is True), key=lambda x: _p_rank(x[1]))[:CURVES_DETECTED]
    other = [x for x in with_curve if x[1].get("detected") is not True][:CURVES_OTHER]
    curves = {str(i): (s["curve"]["T"], s["curve"]["z"]) for i, s in other + hit}
    return plots.z_curves(curves, flagged={str(i) for i, _ in hit}, z_level=z_of(alpha), alpha=alpha,
                          title="z-score over the scored tokens of each text; detected texts in red")


def detect_rows(samples: Sequence[dict]) -> list[dict]:
    out = []
    for s in samples:
        w = _best_window(s) or {}
        out.append({k: s.get(k) for k in ("id", "n_tokens", "n_scored", "n_repeated", "green_fraction", "z", "p_value",
                                          "detected", "too_short", "error")}
                   | {"p_raw": w.get("p_raw"), "p_corrected": w.get("p_corrected"),
                      "searched": (s.get("spans") or {}).get("searched"), "window": w.get("text_window")})
    return out


@sections.register("watermark-detect")
def watermark_detect(run: Run, page: Page) -> Section:
    r = run.results
    options = run.provenance.get("options") if isinstance(run.provenance.get("options"), dict) else {}
    alpha = _alpha(run, run.summary.get("alpha"))
    sentences, level, warnings = detect_verdict(run.summary, run.samples, r.get("watermark"), options)
    rows = detect_rows(run.samples)
    has = lambda key: any(x.get(key) is not None for x in rows)  # noqa: E731
    columns = [Column("id", "id"), Column("n_tokens", "tokens", "num"), Column("n_scored", "scored", "num"),
               *([Column("green_fraction", "green", "pct")] if has("green_fraction") else []),
               Column("z", "z", "num"), Column("p_value", "p", "num"), Column("detected", "detected", "bool"),
               Column("too_short", "too short", "bool"),
               *([Column("p_raw", "best window p", "num"), Column("p_corrected", "window p, corrected", "num"),
                  Column("searched", "windows searched", "num"), Column("window", "best window")]
                 if has("searched") else []),
               *([Column("error", "error")] if has("error") else [])]
    samples = page.samples(f"{run.name}-watermark-detect", rows, columns, sort="p_value", descending=False,
                           caption="Texts, smallest p first")
    return Section(
        title="Watermark detection", verdict=sentences, level=level, warnings=warnings, guide="guide-watermark",
        body=page.render("watermark-detect.html.j2", plot=z_plot(run.samples, alpha), alpha=alpha,
                         z_level=z_of(alpha), cases=window_cases(run.samples), options=options,
                         config_text=config_text(r.get("watermark")), samples=samples,
                         n_cases_of=sum(1 for s in run.samples if _best_window(s) is not None)),
    )


# ---------------------------------------------------------------- evaluate


def _tpr_cell(entry: Any) -> str:
    if not isinstance(entry, dict) or finite(entry.get("tpr")) is None:
        return MISSING
    text = with_ci(entry["tpr"], entry.get("tpr_ci"), pct)
    return text + (" (unreliable)" if entry.get("unreliable") else "")


def attack_rows(scheme: dict) -> list[dict]:
    """One row per attack: every figure of the attack as table text."""
    rows = []
    for name, a in (scheme.get("attacks") or {}).items():
        tpr = a.get("tpr_at_fpr") or {}
        short = a.get("n_too_short") or {}
        rows.append({"attack": name, "auc": with_ci(a.get("auc"), a.get("auc_ci")),
                     "tpr1": _tpr_cell(tpr.get("0.01")), "tpr01": _tpr_cell(tpr.get("0.001")),
                     "unreliable": any(isinstance(t, dict) and t.get("unreliable") for t in tpr.values()),
                     "detection": _rate_text(a.get("detection_rate")), "fpr": _rate_text(a.get("false_positive_rate")),
                     "short": f"{num(short.get('watermarked', 0))} / {num(short.get('unwatermarked', 0))}"})
    return rows


def _ranked_attacks(scheme: dict) -> list[tuple[str, dict]]:
    """Attacks other than "none" with an AUC, weakest detection (strongest attack) first."""
    attacks = [(k, v) for k, v in (scheme.get("attacks") or {}).items() if k != "none" and finite(v.get("auc")) is not None]
    return sorted(attacks, key=lambda kv: kv[1]["auc"])


def quality_text(q: Any) -> str | None:
    """The perplexity cost in words: medians, and the ratio of geometric means with its interval."""
    if not isinstance(q, dict) or finite(q.get("mean_log_ppl_ratio")) is None:
        return None
    m, ci = q["mean_log_ppl_ratio"], q.get("mean_log_ppl_ratio_ci")
    ratio = f"×{num(math.exp(m))}"
    if ci and all(finite(c) is not None for c in ci):
        ratio += f" (95% CI ×{num(math.exp(ci[0]))}-×{num(math.exp(ci[1]))})"
        change = "no detectable change" if ci[0] <= 0 <= ci[1] else ("higher" if ci[0] > 0 else "lower")
    else:
        change = "no interval"
    return (f"perplexity under the oracle: median {num(q.get('watermarked_ppl_median'))} watermarked against "
            f"{num(q.get('unwatermarked_ppl_median'))} unwatermarked; geometric-mean ratio {ratio}, {change} "
            f"(n = {num(q.get('n'))} prompts)")


def evaluate_verdict(ev: dict, alpha: float) -> tuple[list[str], str, list[str]]:
    """Per scheme: AUC and detection unattacked, the strongest and weakest attack, the
    quality cost; which scheme holds up best. A measurement (``info``); warnings for
    false-positive rates above α, error rows and TPRs resting on few negatives."""
    schemes = ev.get("schemes") or {}
    if not schemes:
        return ["No scheme was evaluated."], "warning", []
    sentences = [f"{num(ev.get('n_prompts'))} prompts; per scheme, its watermarked continuations against unwatermarked "
                 f"ones of the same prompts under the same decoding, after each of {num(len(ev.get('attacks') or {}))} "
                 f"attacks; detection at p < {num(alpha)}."]
    warnings, worst = [], {}
    for name, s in schemes.items():
        base = (s.get("attacks") or {}).get("none") or {}
        text = f"{name}"
        if base:
            text += (f": unattacked AUC {with_ci(base.get('auc'), base.get('auc_ci'))}, detected "
                     f"{_rate_text(base.get('detection_rate'))}")
        ranked = _ranked_attacks(s)
        if ranked:
            (lo_name, lo), (hi_name, hi) = ranked[0], ranked[-1]
            worst[name] = lo["auc"]
            text += (f"; the strongest attack, {lo_name}, brings AUC to {with_ci(lo['auc'], lo.get('auc_ci'))} "
                     f"(detected {pct((lo.get('detection_rate') or {}).get('rate'))})")
            if hi_name != lo_name:
                text += f"; the weakest, {hi_name}, leaves {num(hi['auc'])}"
        q = quality_text(s.get("quality"))
        sentences.append(text + (f"; {q}." if q else "."))
        for attack, a in (s.get("attacks") or {}).items():
            fpr = a.get("false_positive_rate") or {}
            if fpr.get("ci") and finite(fpr["ci"][0]) is not None and fpr["ci"][0] > alpha:
                warnings.append(f"{name}, {attack}: unwatermarked texts are detected at {_rate_text(fpr)}, above α = "
                                f"{num(alpha)}: the test's false-positive rate is not what α says on this data.")
    if len(worst) > 1:
        best_s, worst_s = max(worst, key=worst.get), min(worst, key=worst.get)
        sentences.append(f"Most robust: {best_s} (its strongest attack leaves AUC {num(worst[best_s])}); least: "
                         f"{worst_s} ({num(worst[worst_s])}).")
    if any(r["unreliable"] for s in schemes.values() for r in attack_rows(s)):
        warnings.append("TPR at 1% and 0.1% FPR marked unreliable rest on fewer than 10 unwatermarked texts above "
                        "the threshold: read them as rough; the detection and false-positive rates at α are exact.")
    if ev.get("n_errors"):
        warnings.append(f"{num(ev['n_errors'])} documents were shorter than the prompt and left out (error rows).")
    return sentences, "info", warnings


def length_rows(schemes: dict) -> tuple[list, list[dict]]:
    """The detection-rate-vs-T table: the lengths, and per length each scheme's cells."""
    lengths = sorted({int(t) for s in schemes.values() for t in (s.get("by_length") or {})})
    rows = []
    for t in lengths:
        cells = []
        for s in schemes.values():
            e = (s.get("by_length") or {}).get(str(t)) or {}
            short = e.get("too_short") or {}
            short = short if isinstance(short, dict) else {"watermarked": short}
            cells.append({"wm": _rate_text(e.get("watermarked")), "unwm": _rate_text(e.get("unwatermarked")),
                          "short": short.get("watermarked"), "short_unwm": short.get("unwatermarked")})
        rows.append({"T": t, "cells": cells})
    return lengths, rows


def length_plot(schemes: dict):
    series = {}
    for name, s in schemes.items():
        by = s.get("by_length") or {}
        ts = sorted(by, key=int)
        if ts:
            series[name] = ([int(t) for t in ts], [(by[t].get("watermarked") or {}).get("rate") for t in ts],
                            [(by[t].get("watermarked") or {}).get("ci") for t in ts])
    if not series:
        return None
    return plots.rate_curves(series, xlabel="generated tokens T (prefix of each continuation)",
                             ylabel="watermarked texts detected",
                             title="Detection rate against the number of generated tokens, with 95% intervals")


@sections.register("watermark-evaluate")
def watermark_evaluate(run: Run, page: Page) -> Section:
    ev = run.results.get("watermark_eval") or {}
    alpha = _alpha(run)
    sentences, level, warnings = evaluate_verdict(ev, alpha)
    schemes = ev.get("schemes") or {}
    tables = [{"name": name, "config": config_text(s.get("config")), "rows": attack_rows(s),
               "quality": s.get("quality") or {}, "ratio": quality_text(s.get("quality"))} for name, s in schemes.items()]
    lengths, by_length = length_rows(schemes)
    columns = [Column(k, label, kind) for k, label, kind in (
        ("id", "id", "text"), ("scheme", "scheme", "text"), ("attack", "attack", "text"), ("side", "side", "text"),
        ("n_tokens", "tokens", "num"), ("n_scored", "scored", "num"), ("z", "z", "num"), ("p_value", "p", "num"),
        ("detected", "detected", "bool"), ("too_short", "too short", "bool"))]
    if any(x.get("error") for x in run.samples):
        columns.append(Column("error", "error"))
    samples = page.samples(f"{run.name}-watermark-evaluate", run.samples, columns, sort=None,
                           caption="Every text scored: scheme × attack × side")
    return Section(
        title="Watermark evaluation: robustness and cost", verdict=sentences, level=level, warnings=warnings,
        guide="guide-watermark",
        body=page.render("watermark-evaluate.html.j2", tables=tables, names=list(schemes), by_length=by_length,
                         plot=length_plot(schemes), alpha=alpha, attacks=ev.get("attacks") or {},
                         config=run.provenance.get("config") or {}, samples=samples),
    )


# ---------------------------------------------------------------- radioactivity

P_MEANING = ("p is the probability, if the model never trained on text watermarked under this key, of a score at "
             "least this high")


def calibrated(test: dict) -> bool | None:
    """Whether the null-key calibration holds at every α it checked (None when it did not run)."""
    null = test.get("null_keys")
    rates = (null or {}).get("rates") if isinstance(null, dict) else None
    if not rates:
        return None
    return all(bool(r.get("within")) for r in rates.values())


def _setting_sentence(name: str, t: dict) -> str:
    what = {"open": "Open model (its next-token predictions on the texts)",
            "closed": "Closed model (its own generations from the texts' prompts)"}.get(name, name)
    examined = (f"{num(t['n_examined'])} whose coin the watermarked generator had already seen in the text, "
                if t.get("n_examined") is not None else "")
    seen = (f"{num(t.get('n_positions'))} positions over {num(t.get('n_texts'))} texts, {num(t.get('n_scored'))} "
            f"scored once each (left out: {examined}{num(t.get('n_repeated'))} repeated (seed, token) pairs)")
    if finite(t.get("green_fraction")) is not None:
        score = f"{pct(t['green_fraction'])} green against γ = {pct(t.get('gamma'))} expected"
    else:
        score = f"score {num(t.get('score'))}"
    return f"{what}: {seen}; {score}: z = {num(t.get('z'))}, p = {pval(t.get('p_value'))}."


def radioactivity_verdict(tests: dict, alpha: float) -> tuple[list[str], str, list[str]]:
    """Levels: ``strong`` when a setting has p < 10⁻³ and its null-key calibration holds at
    every α checked; ``evidence`` when a setting rejects at α without that; ``warning`` when a
    calibration is off (the p-values cannot be taken at face value); ``weak`` otherwise."""
    if not tests:
        return ["No radioactivity test ran."], "warning", []
    sentences = [_setting_sentence(name, t) for name, t in tests.items()]
    sentences.append(f"{P_MEANING}.")
    warnings, strong, rejects, reasons = [], [], [], []
    for name, t in tests.items():
        p, cal = finite(t.get("p_value")), calibrated(t)
        null = t.get("null_keys") or {}
        if cal is False:
            off = [f"p < {num(r.get('alpha'))} in {_rate_text(r)}" for r in (null.get("rates") or {}).values()
                   if not r.get("within")]
            warnings.append(f"{name}: under {num(null.get('n_keys'))} keys the texts were never watermarked with, "
                            f"{'; '.join(off)}: outside the interval of α, so this setting's p-value is not valid here.")
        elif cal is True:
            sentences.append(f"{name}: under {num(null.get('n_keys'))} keys never used, p < α occurs at the rate α "
                             "(" + "; ".join(f"α = {num(r.get('alpha'))}: {_rate_text(r)}"
                                             for r in (null.get("rates") or {}).values()) + "): the test is calibrated.")
        if p is not None and p < alpha:
            rejects.append(name)
            if p < STRONG_P and cal is True:
                strong.append(name)
            elif cal is None:
                reasons.append(f"{name}: no null-key calibration ran")
            elif p >= STRONG_P:
                reasons.append(f"{name}: p is not below {num(STRONG_P)}")
    if warnings:
        level = "warning"
    elif strong:
        level = "strong"
        sentences.insert(0, f"The model was trained on text watermarked under this key: the {' and '.join(strong)} "
                            f"test{'s' if len(strong) > 1 else ''} reject{'' if len(strong) > 1 else 's'} at "
                            f"p < {num(STRONG_P)} with a calibrated null.")
    elif rejects:
        level = "evidence"
        sentences.insert(0, f"The {' and '.join(rejects)} test{'s' if len(rejects) > 1 else ''} reject at p < "
                            f"{num(alpha)}.")
        if reasons:
            sentences.append("Not rated strong: " + "; ".join(reasons) + ".")
    else:
        level = "weak"
        sentences.insert(0, f"No test rejects at p < {num(alpha)}: no sign the model trained on text under this key. "
                            "That is not proof it did not: the signal needs enough watermarked text in training and "
                            "enough scored tokens here.")
    return sentences, level, warnings


def calibration_rows(tests: dict) -> list[dict]:
    rows = []
    for name, t in tests.items():
        null = t.get("null_keys") or {}
        for r in (null.get("rates") or {}).values():
            rows.append({"setting": name, "alpha": r.get("alpha"), "rate": _rate_text(r), "within": r.get("within")})
    return rows


@sections.register("watermark-radioactivity")
def watermark_radioactivity(run: Run, page: Page) -> Section:
    r = run.results
    tests = r.get("radioactivity") or {}
    alpha = _alpha(run)
    sentences, level, warnings = radioactivity_verdict(tests, alpha)
    has = lambda key: any(x.get(key) is not None for x in run.samples)  # noqa: E731
    columns = [Column("id", "id"), *([Column("n_tokens", "tokens", "num")] if has("n_tokens") else []),
               *([Column("generation", "the model's generation")] if has("generation") else []),
               *([Column("error", "error")] if has("error") else [])]
    samples = page.samples(f"{run.name}-watermark-radioactivity", run.samples, columns, sort=None,
                           caption="Texts read, and the suspect model's generations")
    return Section(
        title="Watermark radioactivity: did the model train on watermarked text?", verdict=sentences, level=level,
        warnings=warnings, guide="guide-watermark",
        body=page.render("watermark-radioactivity.html.j2", tests=tests, calibration=calibration_rows(tests),
                         config_text=config_text(r.get("watermark")), alpha=alpha, p_meaning=P_MEANING,
                         model=(run.provenance.get("model") or {}).get("name"), samples=samples),
    )
