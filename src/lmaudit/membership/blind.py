"""Blind baselines: classifiers that never query the model.

If members and non-members can be told apart from their text alone (different periods,
sources or topics), every membership attack looks good for reasons that have nothing to
do with the model (Duan et al. 2024; Das et al. 2024, "Blind Baselines Beat Membership
Inference Attacks for Foundation Models"). Each baseline here is cross-validated on the
same members and non-members the attacks are evaluated on; when one separates them
clearly, the run is flagged as confounded by distribution shift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from lmaudit.stats import auc_ci, roc_auc

_YEAR = re.compile(r"(?<!\d)(1[0-9]{3}|20[0-9]{2})(?!\d)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_WORD = re.compile(r"\w+")


def length_features(texts: Sequence[str]) -> np.ndarray:
    """(n, 3): characters, words, mean word length."""
    rows = []
    for t in texts:
        words = _WORD.findall(t)
        rows.append([len(t), len(words), np.mean([len(w) for w in words]) if words else 0.0])
    return np.array(rows, dtype=np.float64)


def date_number_features(texts: Sequence[str]) -> np.ndarray:
    """(n, 6): years mentioned (count, min, mean, max; NaN when none), numbers, digits."""
    rows = []
    for t in texts:
        years = [int(y) for y in _YEAR.findall(t)]
        stats = [min(years), float(np.mean(years)), max(years)] if years else [np.nan] * 3
        rows.append([len(years), *stats, len(_NUMBER.findall(t)), sum(c.isdigit() for c in t)])
    return np.array(rows, dtype=np.float64)


def _tree_model(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Trees find non-monotonic shifts (a band of years) and take NaN for "no year" as is.
    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, random_state=seed)


def _bag_of_words(seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(C=1.0, max_iter=2000))


@dataclass(frozen=True)
class BlindBaseline:
    """A model-free classifier: features from the text, then a cross-validated model."""

    name: str
    description: str
    features: Callable[[Sequence[str]], object] | None  # None: the estimator takes raw texts
    estimator: Callable[[int], object]


BASELINES = (
    BlindBaseline("bag_of_words", "TF-IDF of word unigrams and bigrams, L2 logistic regression", None, _bag_of_words),
    BlindBaseline("length", "characters, words and mean word length, gradient-boosted trees", length_features, _tree_model),
    BlindBaseline("dates_numbers", "years mentioned (count, min, mean, max), numbers and digits, gradient-boosted trees",
                  date_number_features, _tree_model),
)


def cross_validated_scores(baseline: BlindBaseline, texts: Sequence[str], labels: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold member probabilities: every document is scored by a model that never saw it."""
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        # One thread: sklearn's OpenMP pool and torch's, both spinning in one process on a
        # busy machine, made a 2-second fit take over 4 minutes. These fits are small.
        return _cross_validate(baseline, texts, labels, folds, seed, StratifiedKFold)


def _cross_validate(baseline, texts, labels, folds, seed, StratifiedKFold) -> np.ndarray:
    x = list(texts) if baseline.features is None else baseline.features(texts)
    out = np.empty(len(labels))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels):
        model = baseline.estimator(seed)
        pick = (lambda idx: [x[i] for i in idx]) if baseline.features is None else (lambda idx: x[idx])
        model.fit(pick(train), labels[train])
        out[test] = model.predict_proba(pick(test))[:, 1]
    return out


def run_blind_baselines(members: Sequence[str], nonmembers: Sequence[str], *, folds: int = 5, seed: int = 0,
                        n_bootstrap: int = 1000, threshold: float = 0.6) -> dict:
    """AUC (with a bootstrap interval) of every blind baseline, and whether the run is confounded.

    Args:
        members, nonmembers: The texts the attacks are evaluated on.
        folds: Cross-validation folds (fewer when a class has fewer documents).
        threshold: A baseline flags distribution shift when its AUC reaches ``threshold``
            and the lower end of its 95% interval is above 0.5. 0.6 is well outside the
            noise of a same-distribution split of a few hundred documents or more (on
            the default testbed all three stay within 0.44-0.56).

    Returns:
        ``{"baselines": {name: {auc, auc_ci, description}}, "distribution_shift_flag",
        "flagged_by", "threshold", "folds"}``.
    """
    texts = [*members, *nonmembers]
    labels = np.array([1] * len(members) + [0] * len(nonmembers))
    folds = min(folds, len(members), len(nonmembers))
    if folds < 2:
        raise ValueError("blind baselines need at least 2 members and 2 non-members")
    results, flagged = {}, []
    for baseline in BASELINES:
        scores = cross_validated_scores(baseline, texts, labels, folds=folds, seed=seed)
        pos, neg = scores[labels == 1], scores[labels == 0]
        auc = roc_auc(pos, neg)
        ci = auc_ci(pos, neg, n_bootstrap=n_bootstrap, seed=seed)
        results[baseline.name] = {"auc": auc, "auc_ci": list(ci), "description": baseline.description}
        if auc >= threshold and ci[0] > 0.5:
            flagged.append(baseline.name)
    return {"baselines": results, "distribution_shift_flag": bool(flagged), "flagged_by": flagged,
            "threshold": threshold, "rule": f"AUC >= {threshold} and 95% CI lower bound > 0.5", "folds": folds}
