"""How well one attack's scores separate members from non-members."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lmaudit.stats import auc_ci, roc_auc, roc_points, tpr_at_fpr

DEFAULT_FPRS = (0.1, 0.01, 0.001)


def evaluate_scores(member_scores, nonmember_scores, *, fprs: Sequence[float] = DEFAULT_FPRS,
                    n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """ROC-AUC with a 95% bootstrap interval, TPR at each FPR, and the ROC curve.

    NaN scores (documents the attack could not score) are left out and counted, never
    silently: ``n_members`` and ``n_nonmembers`` are the documents behind the figures.

    Returns:
        ``auc``, ``auc_ci`` [low, high], ``tpr_at_fpr`` keyed by the FPR as a string (each
        with ``n_nonmembers``, ``max_false_positives`` and ``unreliable``), ``roc``,
        ``n_members``, ``n_nonmembers``, ``n_unscored``.
    """
    pos, neg = np.asarray(member_scores, dtype=np.float64), np.asarray(nonmember_scores, dtype=np.float64)
    ok_pos, ok_neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    out = {"n_members": len(ok_pos), "n_nonmembers": len(ok_neg),
           "n_unscored": {"members": len(pos) - len(ok_pos), "nonmembers": len(neg) - len(ok_neg)}}
    if not len(ok_pos) or not len(ok_neg):
        return {**out, "auc": None, "auc_ci": None, "tpr_at_fpr": {}, "roc": None,
                "note": "no scored members or no scored non-members"}
    return {
        **out,
        "auc": roc_auc(ok_pos, ok_neg),
        "auc_ci": list(auc_ci(ok_pos, ok_neg, n_bootstrap=n_bootstrap, seed=seed)),
        "tpr_at_fpr": {f"{f:g}": tpr_at_fpr(ok_pos, ok_neg, f) for f in fprs},
        "roc": roc_points(ok_pos, ok_neg),
    }
