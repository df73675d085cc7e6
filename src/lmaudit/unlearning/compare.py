"""Every criterion of MUSE and TOFU for several models side by side, from their per-item
measures (:func:`compare`): no model runs here.

Every aggregate is ``{"value", "ci", "n"}`` (95% interval): a mean's interval is the percentile
bootstrap over documents (figures of questions redraw whole documents with their questions,
which are not independent draws, and add ``n_documents``), a rate's is Wilson's. Comparisons
with the retrain model are paired: PrivLeak's bootstrap draws the forget and holdout documents
once per replicate for both models (so the retrain model against itself gives 0 in every
replicate), and forget quality's KS statistic is bootstrapped over documents drawn once for
both.

PrivLeak's orientation. lmaudit's AUC puts F as members (higher score = member), so a model
that still holds F gets an AUC near 1 and a **positive** PrivLeak; 0 is the retrain model.
MUSE's ``forget_holdout_Min-40%`` key labels the holdout as members instead: its AUC is 1 − this
one and its target's PrivLeak comes out near −100. ``privleak_muse`` gives MUSE's number,
(AUC'_U − AUC'_R) / AUC'_R × 100 with AUC' = 1 − AUC, for comparison with published tables.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import stats as st

from lmaudit.stats import auc_bootstrap, bootstrap_mean_ci, paired_auc_bootstrap, proportion_ci, roc_auc
from lmaudit.unlearning.measure import ModelMeasures
from lmaudit.unlearning.metrics import forget_quality, model_utility, privleak, truth_ratio_score

LEVEL = 0.95


def _mean(values: np.ndarray, *, n_bootstrap: int, seed: int, groups: np.ndarray | None = None) -> dict:
    """Mean, bootstrap interval and n of the finite values; with ``groups`` (the document each
    question is about) the interval resamples documents, and ``n_documents`` says how many."""
    ok = np.isfinite(values)
    x = values[ok]
    if not len(x):
        return {"value": None, "ci": None, "n": 0}
    g = None if groups is None else groups[ok]
    lo, hi = bootstrap_mean_ci(x, n_bootstrap=n_bootstrap, seed=seed, groups=g)
    out = {"value": float(x.mean()), "ci": [lo, hi], "n": len(x)}
    if g is not None:
        out["n_documents"] = len(set(g.tolist()))
    return out


def _docs(m: ModelMeasures, set_name: str) -> np.ndarray:
    """(n,) the document each question of a knowledge set is about (its id when none is named)."""
    return np.array([str(r.get("doc_id", r["id"])) for r in m.knowledge.get(set_name, [])], dtype=object)


def _cluster_draws(groups: np.ndarray, *, n_bootstrap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, G) times each group is drawn per replicate, and (n,) each item's group index."""
    _, member = np.unique(groups.astype(str), return_inverse=True)
    n_groups = int(member.max()) + 1
    idx = np.random.default_rng(seed).integers(0, n_groups, size=(n_bootstrap, n_groups))
    w = np.stack([np.bincount(row, minlength=n_groups) for row in idx])
    return w, member


def _rate(flags: np.ndarray) -> dict:
    x = flags[np.isfinite(flags)]
    if not len(x):
        return {"value": None, "ci": None, "n": 0}
    k = int(x.sum())
    return {"value": k / len(x), "ci": list(proportion_ci(k, len(x), method="wilson")), "n": len(x)}


def tr_values(ratios: np.ndarray, *, forget: bool) -> np.ndarray:
    """Per-question terms whose mean is TOFU's truth-ratio score (NaN kept)."""
    return np.minimum(ratios, 1 / ratios) if forget else np.maximum(0.0, 1 - ratios)


def _paired_ok(*arrays: np.ndarray) -> np.ndarray:
    return np.logical_and.reduce([np.isfinite(a) for a in arrays])


def _privleak(u: ModelMeasures, r: ModelMeasures, *, n_bootstrap: int, seed: int) -> dict:
    fu, hu = u.values("documents", "forget", "attack"), u.values("documents", "holdout", "attack")
    fr, hr = r.values("documents", "forget", "attack"), r.values("documents", "holdout", "attack")
    okf, okh = _paired_ok(fu, fr), _paired_ok(hu, hr)
    if not okf.any() or not okh.any():
        return {"value": None, "ci": None, "n_forget": int(okf.sum()), "n_holdout": int(okh.sum())}
    auc_u, auc_r = roc_auc(fu[okf], hu[okh]), roc_auc(fr[okf], hr[okh])
    a, b = paired_auc_bootstrap(fu[okf], hu[okh], fr[okf], hr[okh], n_bootstrap=n_bootstrap, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = (a - b) / b * 100
    reps = reps[np.isfinite(reps)]
    alpha = (1 - LEVEL) / 2
    value = privleak(auc_u, auc_r) if auc_r > 0 else None
    return {"value": value, "ci": [float(q) for q in np.quantile(reps, [alpha, 1 - alpha])] if len(reps) else None,
            "n_forget": int(okf.sum()), "n_holdout": int(okh.sum()), "auc": auc_u, "auc_retrain": auc_r,
            "privleak_muse": privleak(1 - auc_u, 1 - auc_r) if auc_r < 1 else None}


def _auc(m: ModelMeasures, *, n_bootstrap: int, seed: int) -> dict:
    f, h = m.values("documents", "forget", "attack"), m.values("documents", "holdout", "attack")
    f, h = f[np.isfinite(f)], h[np.isfinite(h)]
    if not len(f) or not len(h):
        return {"value": None, "ci": None, "n_forget": len(f), "n_holdout": len(h)}
    return {"value": roc_auc(f, h), "ci": list(auc_bootstrap(f, h, n_bootstrap=n_bootstrap, seed=seed)),
            "n_forget": len(f), "n_holdout": len(h)}


def _forget_quality(u: ModelMeasures, r: ModelMeasures, *, n_bootstrap: int, seed: int) -> dict | None:
    tu, tr = u.values("knowledge", "forget", "truth_ratio"), r.values("knowledge", "forget", "truth_ratio")
    if not len(tu) or len(tu) != len(tr):
        return None
    ok = _paired_ok(tu, tr)
    if not ok.any():
        return {"p_value": None, "statistic": None, "statistic_ci": None, "n_unlearned": 0, "n_retrain": 0}
    out = forget_quality(tu[ok], tr[ok])
    docs = _docs(u, "forget")[ok]
    reps = ks_statistic_cluster_replicates(tu[ok], tr[ok], docs, n_bootstrap=n_bootstrap, seed=seed)
    alpha = (1 - LEVEL) / 2
    out["statistic_ci"] = [float(q) for q in np.quantile(reps, [alpha, 1 - alpha])]
    # TOFU's p-value treats the questions as independent draws; they come in groups, one per
    # document, so the number of documents is stated beside it (the interval redraws them).
    out["n_documents"] = len(set(docs.tolist()))
    return out


def ks_statistic_cluster_replicates(a: np.ndarray, b: np.ndarray, groups: np.ndarray, *, n_bootstrap: int,
                                    seed: int) -> np.ndarray:
    """(B,) two-sample KS statistics of paired samples (``a[i]`` and ``b[i]`` describe item i),
    each replicate redrawing whole groups (documents) once for both."""
    w, member = _cluster_draws(groups, n_bootstrap=n_bootstrap, seed=seed)
    items = [np.flatnonzero(member == g) for g in range(w.shape[1])]
    out = np.empty(n_bootstrap)
    for i, counts in enumerate(w):
        idx = np.concatenate([np.repeat(items[g], c) for g, c in enumerate(counts) if c])
        x, y = np.sort(a[idx]), np.sort(b[idx])
        grid = np.concatenate([x, y])
        out[i] = np.abs(np.searchsorted(x, grid, side="right") - np.searchsorted(y, grid, side="right")).max() / len(idx)
    return out


def _tofu(m: ModelMeasures, set_name: str, *, n_bootstrap: int, seed: int) -> dict:
    ratios = m.values("knowledge", set_name, "truth_ratio")
    terms = tr_values(ratios, forget=set_name == "forget")
    kw = {"n_bootstrap": n_bootstrap, "seed": seed, "groups": _docs(m, set_name)}
    tr = _mean(terms, **kw)
    if tr["n"]:  # the metrics module's aggregate, so the two definitions cannot drift apart
        tr["value"] = truth_ratio_score(ratios[np.isfinite(ratios)], forget=set_name == "forget")
    return {"probability": _mean(m.values("knowledge", set_name, "probability"), **kw),
            "rouge_l_recall": _mean(m.values("knowledge", set_name, "rouge_l_recall"), **kw),
            "truth_ratio_score": tr}


def _model_utility(m: ModelMeasures, *, n_bootstrap: int, seed: int) -> dict | None:
    """TOFU's harmonic mean of probability, ROUGE-L recall and truth-ratio score on R and H;
    its interval redraws the documents of each set with their questions (one draw serves a
    set's three numbers)."""
    if not all(m.knowledge.get(s) for s in ("retain", "holdout")):
        return None
    rng = np.random.default_rng(seed)
    points, reps = [], []
    n = {}
    for s in ("retain", "holdout"):
        cols = np.stack([m.values("knowledge", s, "probability"), m.values("knowledge", s, "rouge_l_recall"),
                         tr_values(m.values("knowledge", s, "truth_ratio"), forget=False)], axis=1)  # (q, 3)
        ok = np.isfinite(cols).all(axis=1)
        cols, docs = cols[ok], _docs(m, s)[ok]
        n[s] = len(cols)
        if not len(cols):
            return {"value": None, "ci": None, "n": n}
        points += list(cols.mean(axis=0))
        # Documents are redrawn, not questions: a document's questions are not independent.
        w, member = _cluster_draws(docs, n_bootstrap=n_bootstrap, seed=int(rng.integers(2**31)))
        sums = np.stack([np.bincount(member, weights=cols[:, j]) for j in range(3)], axis=1)  # (G, 3)
        reps.append((w @ sums) / (w @ np.bincount(member))[:, None])  # (B, 3)
    reps_all = np.concatenate(reps, axis=1)  # (B, 6)
    hm = np.where((reps_all > 0).all(axis=1), st.hmean(np.clip(reps_all, 1e-300, None), axis=1), 0.0)
    alpha = (1 - LEVEL) / 2
    return {"value": model_utility(points), "ci": [float(q) for q in np.quantile(hm, [alpha, 1 - alpha])],
            "n": n, "components": dict(zip([f"{s}_{k}" for s in ("retain", "holdout")
                                            for k in ("probability", "rouge_l_recall", "truth_ratio_score")],
                                           [float(p) for p in points]))}


def compare(measures: Mapping[str, ModelMeasures], *, target: str, retrain: str, n_bootstrap: int = 1000,
            seed: int = 0) -> dict:
    """Every criterion per model, side by side (see the module docstring).

    Args:
        measures: Each model's :class:`~lmaudit.unlearning.measure.ModelMeasures`, by label;
            all measured on the same sets.
        target: Label of the model before unlearning.
        retrain: Label of the model trained without F: the reference of PrivLeak and forget
            quality. There is no default: a missing reference is an error.

    Returns:
        ``{"target", "retrain", "models": {label: {"role", criteria...}}}``.
    """
    for role, label in (("retrain", retrain), ("target", target)):
        if not label or label not in measures:
            raise ValueError(f"the {role} model {label!r} is not among the measured models "
                             f"({', '.join(measures) or 'none'}): an unlearning evaluation needs it")
    r = measures[retrain]
    sizes = {label: {s: len(rows) for s, rows in m.documents.items()} for label, m in measures.items()}
    if any(v != sizes[retrain] for v in sizes.values()):
        raise ValueError(f"the models were measured on different sets: {sizes}")
    kw = {"n_bootstrap": n_bootstrap, "seed": seed}
    models = {}
    for label, m in measures.items():
        role = "retrain" if label == retrain else "target" if label == target else "candidate"
        row: dict = {"role": role, "name": m.name,
                     "verbmem_forget": _mean(m.values("documents", "forget", "verbmem"), **kw),
                     "extraction_forget": _rate(m.values("documents", "forget", "exact_match")),
                     "auc_forget_holdout": _auc(m, **kw),
                     "privleak": _privleak(m, r, **kw),
                     "loss": {s: _mean(m.values("documents", s, "loss"), **kw) for s in ("forget", "retain", "holdout")}}
        for s in ("forget", "retain"):
            row[f"knowmem_{s}"] = (_mean(m.values("knowledge", s, "knowmem"), groups=_docs(m, s), **kw)
                                   if m.knowledge.get(s) else None)
        row["tofu"] = {s: _tofu(m, s, **kw) for s in m.knowledge}
        row["forget_quality"] = _forget_quality(m, r, **kw)
        row["model_utility"] = _model_utility(m, **kw)
        models[label] = row
    for label, row in models.items():  # the figures the targets are stated in, paired item by item
        row["verbmem_forget_minus_retrain"] = _paired(measures[label], r, "documents", "forget", "verbmem",
                                                      ratio=False, **kw)
        row["knowmem_retain_vs_target"] = (_paired(measures[label], measures[target], "knowledge", "retain", "knowmem",
                                                   ratio=True, **kw) if measures[label].knowledge.get("retain") else None)
    return {"target": target, "retrain": retrain, "models": models}


def _paired(a: ModelMeasures, b: ModelMeasures, part: str, set_name: str, key: str, *, ratio: bool,
            n_bootstrap: int, seed: int) -> dict:
    """mean(a) − mean(b), or mean(a) / mean(b), over the items both have a value for; the
    interval redraws the items (questions: their documents) once for both models."""
    x, y = a.values(part, set_name, key), b.values(part, set_name, key)
    if len(x) != len(y):
        return {"value": None, "ci": None, "n": 0}
    ok = _paired_ok(x, y)
    x, y = x[ok], y[ok]
    if not len(x) or (ratio and not y.mean()):
        return {"value": None, "ci": None, "n": int(len(x))}
    if part == "knowledge":  # questions: redraw whole documents (their questions are not independent)
        w, member = _cluster_draws(_docs(a, set_name)[ok], n_bootstrap=n_bootstrap, seed=seed)
        size = w @ np.bincount(member)
        mx, my = (w @ np.bincount(member, weights=x)) / size, (w @ np.bincount(member, weights=y)) / size
    else:
        idx = np.random.default_rng(seed).integers(0, len(x), size=(n_bootstrap, len(x)))  # (B, n)
        mx, my = x[idx].mean(axis=1), y[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = mx / my if ratio else mx - my
    reps = reps[np.isfinite(reps)]
    alpha = (1 - LEVEL) / 2
    value = x.mean() / y.mean() if ratio else x.mean() - y.mean()
    return {"value": float(value), "ci": [float(q) for q in np.quantile(reps, [alpha, 1 - alpha])], "n": int(len(x))}


def headline(row: dict) -> dict:
    """The one-line figures of a model (the printed summary)."""
    pick = lambda x: None if x is None else x.get("value")  # noqa: E731
    fq = row.get("forget_quality")
    return {"verbmem_forget": pick(row["verbmem_forget"]), "extraction_forget": pick(row["extraction_forget"]),
            "knowmem_forget": pick(row.get("knowmem_forget")), "knowmem_retain": pick(row.get("knowmem_retain")),
            "privleak": pick(row["privleak"]), "loss_retain": pick(row["loss"]["retain"]),
            "forget_quality": None if fq is None else fq["p_value"], "model_utility": pick(row.get("model_utility"))}
