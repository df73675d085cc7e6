"""How well one attack's scores separate members from non-members."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lmaudit.stats import auc_ci, average_precision, fpr_at_tpr, roc_auc, roc_points, tpr_at_fpr

DEFAULT_FPRS = (0.1, 0.01, 0.001)
#: The operating points the peers report besides these: TPR at 5% FPR and FPR at 95% TPR
#: (mink-plus-plus's ``tpr05`` and ``fpr95``; detect-pretrain-code labels the first "TPR@0.1%FPR").
PEER_FPR, PEER_TPR = 0.05, 0.95


def evaluate_scores(member_scores, nonmember_scores, *, fprs: Sequence[float] = DEFAULT_FPRS,
                    n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """ROC-AUC with a 95% bootstrap interval, TPR at each FPR, the peers' operating points,
    average precision, and the ROC curve.

    NaN scores (documents the attack could not score) are left out and counted, never
    silently: ``n_members`` and ``n_nonmembers`` are the documents behind the figures.

    Returns:
        ``auc``, ``auc_ci`` [low, high], ``tpr_at_fpr`` keyed by the FPR as a string (each
        with ``n_nonmembers``, ``max_false_positives`` and ``unreliable``),
        ``tpr_at_5pct_fpr`` (the same at 5%), ``fpr_at_95pct_tpr``
        (:func:`lmaudit.stats.fpr_at_tpr`), ``average_precision`` (``value``: the area under
        the precision-recall curve, scikit-learn's definition, beside ``chance``, the share
        of members, which a random ranking scores, and the n behind it), ``roc``,
        ``n_members``, ``n_nonmembers``, ``n_unscored``.
    """
    pos, neg = np.asarray(member_scores, dtype=np.float64), np.asarray(nonmember_scores, dtype=np.float64)
    ok_pos, ok_neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    out = {"n_members": len(ok_pos), "n_nonmembers": len(ok_neg),
           "n_unscored": {"members": len(pos) - len(ok_pos), "nonmembers": len(neg) - len(ok_neg)}}
    if not len(ok_pos) or not len(ok_neg):
        return {**out, "auc": None, "auc_ci": None, "tpr_at_fpr": {}, "tpr_at_5pct_fpr": None,
                "fpr_at_95pct_tpr": None, "average_precision": None, "roc": None,
                "note": "no scored members or no scored non-members"}
    return {
        **out,
        "auc": roc_auc(ok_pos, ok_neg),
        "auc_ci": list(auc_ci(ok_pos, ok_neg, n_bootstrap=n_bootstrap, seed=seed)),
        "tpr_at_fpr": {f"{f:g}": tpr_at_fpr(ok_pos, ok_neg, f) for f in fprs},
        "tpr_at_5pct_fpr": tpr_at_fpr(ok_pos, ok_neg, PEER_FPR),
        "fpr_at_95pct_tpr": fpr_at_tpr(ok_pos, ok_neg, PEER_TPR),
        "average_precision": {"value": average_precision(ok_pos, ok_neg),
                              "chance": len(ok_pos) / (len(ok_pos) + len(ok_neg)),
                              "n_members": len(ok_pos), "n_nonmembers": len(ok_neg)},
        "roc": roc_points(ok_pos, ok_neg),
    }
