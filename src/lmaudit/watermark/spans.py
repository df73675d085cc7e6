"""Where in a text is the watermark? The best windows, with a p-value that pays for the search.

A watermarked passage pasted into human text dilutes the whole-text score; scanning windows
finds it, but the smallest of many window p-values is not a p-value (lm-watermarking's WinMax
reports the best window's z as if it were: REFERENCE §10). Here the windows searched are
fixed in advance by the text's length alone: lengths from ``min_tokens`` positions growing by
√2 up to the whole text, each sliding by a quarter of its length (ending flush with the text).
With m windows searched, the corrected p-value of the best one is min(1, m · p_min)
(Bonferroni): P(min p ≤ α/m) ≤ Σ P(p_w ≤ α/m) ≤ α under the null, whatever the windows'
overlap, because each window's p-value is itself exact. Overlapping windows make it
conservative, never invalid; the test in ``tests/unit/test_watermark.py`` measures its
false-positive rate on unwatermarked text.

Windows are counted in token positions; a window's T is the number of scored (context
present, not repeated) positions in it, and a window with fewer than ``min_tokens`` scored
positions is not searched (nor counted in m).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def window_grid(n: int, min_tokens: int) -> list[tuple[int, int]]:
    """(start, end) of every window searched in a text of n positions."""
    out: list[tuple[int, int]] = []
    if n < min_tokens:
        return out
    lengths, length = [], float(min_tokens)
    while int(length) < n:
        lengths.append(int(length))
        length *= 2**0.5
    lengths.append(n)
    for w in dict.fromkeys(lengths):  # distinct, in order
        step = max(1, w // 4)
        starts = list(range(0, n - w + 1, step))
        if starts[-1] != n - w:
            starts.append(n - w)
        out.extend((s, s + w) for s in starts)
    return out


def best_windows(score: np.ndarray, scored: np.ndarray, log_pvalue: Callable, z: Callable, *, min_tokens: int,
                 alpha: float = 1e-3, max_windows: int = 3) -> dict:
    """The best windows of one text, each with its raw and corrected p-value.

    Args:
        score: (n,) per-position statistic (0 where not scored).
        scored: (n,) bool, positions that count.
        log_pvalue, z: The scheme's exact tail (its logarithm, finite where p underflows) and
            standardised score of (sum, count).
        min_tokens: Fewest scored positions a window needs.
        alpha: Windows after the first are reported only while their corrected p-value is
            below it.
        max_windows: Most windows reported; later ones never overlap earlier ones.

    Returns:
        ``searched`` (m), and ``windows``: dicts with start, end (token positions,
        half-open), n_scored, score, z, p_raw, p_corrected and their log10; best first. Empty
        when the text has no window of ``min_tokens`` scored positions.
    """
    n = len(score)
    grid = window_grid(n, min_tokens)
    if not grid:
        return {"searched": 0, "windows": []}
    cs = np.concatenate([[0.0], np.cumsum(np.where(scored, score, 0.0))])
    cn = np.concatenate([[0], np.cumsum(scored.astype(np.int64))])
    se = np.asarray(grid, dtype=np.int64)  # (W, 2)
    t = cn[se[:, 1]] - cn[se[:, 0]]
    keep = t >= min_tokens
    se, t = se[keep], t[keep]
    m = len(se)
    if m == 0:
        return {"searched": 0, "windows": []}
    s = cs[se[:, 1]] - cs[se[:, 0]]
    logp = np.asarray(log_pvalue(s, t), dtype=np.float64)
    zz = np.asarray(z(s, t), dtype=np.float64)
    order = np.lexsort((-zz, logp))  # best first: smallest p, then the larger z
    out, taken = [], []
    for i in order:
        a, b = int(se[i, 0]), int(se[i, 1])
        if any(a < tb and ta < b for ta, tb in taken):
            continue
        log_corrected = min(0.0, float(logp[i]) + np.log(m))
        if out and log_corrected >= np.log(alpha):
            break
        out.append({"start": a, "end": b, "n_scored": int(t[i]), "score": round(float(s[i]), 6),
                    "z": round(float(zz[i]), 4), "p_raw": float(np.exp(logp[i])),
                    "p_corrected": float(np.exp(log_corrected)), "log10_p_raw": round(float(logp[i]) / np.log(10), 4),
                    "log10_p_corrected": round(log_corrected / np.log(10), 4)})
        taken.append((a, b))
        if len(out) >= max_windows:
            break
    return {"searched": m, "windows": out}
