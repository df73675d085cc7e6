"""Plots for reports: matplotlib figures written as inline SVG.

Why matplotlib to SVG: vector output stays crisp at any zoom and prints well; the figure is
finished when the report is written, so the page needs no plotting runtime, no script and no
network to show it (a report opened in a mail client with scripts off still has its plots);
text stays text (``svg.fonttype = none``: small, searchable, the reader's sans-serif font);
and matplotlib is the most widely used and maintained plotting library in Python.
Each plot carries a ``<title>`` (the browser's tooltip and a screen reader's text) and its
numbers also appear in a table beside it: the plot shows the shape, the table the figures.

The output is deterministic (fixed hash salt, no date), and every id inside an SVG is
prefixed with the plot's own id, so several plots on one page never share a clip path.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from contextlib import contextmanager
from typing import Sequence

import numpy as np
from markupsafe import Markup, escape

_counter = itertools.count()
PALETTE = ("#1f5fa8", "#d1495b", "#2e933c", "#edae49", "#7b4fa0", "#00798c", "#8c564b", "#e377c2", "#7f7f7f",
           "#17becf")
MEMBER, NONMEMBER = "#d1495b", "#1f5fa8"


@contextmanager
def _figure(width: float = 6.4, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    # Text from the data goes through label(), which escapes "$": never TeX (the log axes' own
    # tick labels are mathtext, so parsing stays on).
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "lmaudit", "font.size": 10, "text.usetex": False,
                                "font.family": "sans-serif", "axes.spines.top": False,
                                "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}):
        fig, ax = plt.subplots(figsize=(width, height))
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def label(text: object) -> str:
    """Text from the data (an attack name, a duplication level) as matplotlib shows it as
    given: "$" escaped, so a pair of them is not read as TeX (which can raise); and a zero-width
    space before a leading underscore, which would hide a legend entry.

    >>> label("_draft") == "\u200b_draft", label(32), label("$x$") == r"\$x\$"
    (True, '32', True)
    """
    text = str(text).replace("$", "\\$")
    return "\u200b" + text if text.startswith("_") else text


def _svg(fig, title: str) -> Markup:
    """The figure as an inline ``<svg>`` element with a title, ids made unique on the page."""
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # no XML declaration or doctype inside HTML
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)  # matplotlib's comments (mathtext sources): not needed
    prefix = f"p{next(_counter)}-"
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r'(url\(#|href="#)([^)"]+)', lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)
    # Scale with the page (the width/height attributes in pt would fix its size).
    svg = re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r'<svg\1 class="plot" role="img"', svg, count=1)
    head_end = svg.index(">") + 1
    return Markup(svg[:head_end] + f"<title>{escape(title)}</title>" + svg[head_end:])


def log_grid_curve(fpr: np.ndarray, tpr: np.ndarray, *, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """The ROC step function evaluated exactly at ``points`` log-spaced FPRs (and at every
    corner when there are fewer), for a log-log plot of a large set: the best TPR at FPR ≤ x.

    >>> log_grid_curve(np.array([0, .5, 1]), np.array([0, .8, 1]), points=3)
    (array([0.5, 1. ]), array([0.8, 1. ]))
    """
    positive = fpr > 0
    if positive.sum() <= points:
        return fpr[positive], tpr[positive]
    grid = np.geomspace(fpr[positive].min(), 1.0, points)
    # roc_curve's FPR never decreases: the last corner at or below each grid value.
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return fpr[idx], tpr[idx]


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, n_members: int, n_nonmembers: int,
        title: str = "ROC curves, log-log") -> Markup:
    """ROC curves on log-log axes (Carlini et al. 2022) with the chance diagonal.

    FPR = 0 cannot be drawn on a log axis; the axes start at one document (1/n).
    """
    with _figure(6.4, 4.6) as (fig, ax):
        low = min(1 / max(n_nonmembers, 1), 0.01)  # one document, or 1% for a handful
        ax.plot([low, 1], [low, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
        for (name, (fpr, tpr)), color in zip(curves.items(), itertools.cycle(PALETTE)):
            x, y = log_grid_curve(np.asarray(fpr), np.asarray(tpr))
            y = np.maximum(y, min(1 / max(n_members, 1), 0.01) / 2)  # TPR 0 drawn at the bottom edge, not dropped
            ax.step(x, y, where="post", color=color, linewidth=1.4, label=label(name))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, 1)
        ax.set_ylim(min(1 / max(n_members, 1), 0.01) / 2, 1.05)
        ax.set_xlabel(f"false-positive rate (non-members, n = {n_nonmembers:,})")
        ax.set_ylabel(f"true-positive rate (members, n = {n_members:,})")
        ax.legend(fontsize=8, loc="lower right", ncol=2 if len(curves) > 6 else 1)
        return _svg(fig, title)


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Histogram edges: one bin per value for whole numbers in a short range (so the largest,
    a full reproduction, never shares its bar with the next), else ``bins`` equal bins.

    >>> bin_edges(np.array([0, 15, 16]), 40)[-3:]
    array([14.5, 15.5, 16.5])
    >>> len(bin_edges(np.array([0.1, 0.7]), 40))
    41
    """
    lo, hi = float(values.min()), float(values.max())
    if np.all(values == np.round(values)) and hi - lo <= 4 * bins:
        return np.arange(lo - 0.5, hi + 1.5)
    return np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)


def histograms(groups: dict[str, Sequence[float]], *, xlabel: str, title: str, bins: int = 40,
               colors: Sequence[str] | None = None, vline: tuple[float, str] | None = None,
               ylabel: str = "documents") -> Markup:
    """Overlaid histograms of each group (as step outlines, so every group stays visible);
    counts on whole-number ticks. Whole-number data (a run length in tokens) gets one bin per
    value, so the largest value (a full reproduction) never shares its bar."""
    from matplotlib.ticker import MaxNLocator

    with _figure(6.4, 3.6) as (fig, ax):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        values = {k: np.asarray([v for v in vs if v is not None and math.isfinite(v)], dtype=float)
                  for k, vs in groups.items()}
        every = np.concatenate([v for v in values.values() if len(v)]) if any(len(v) for v in values.values()) \
            else np.array([0.0])
        edges = bin_edges(every, bins)
        for (name, v), color in zip(values.items(), colors or itertools.cycle(PALETTE)):
            ax.hist(v, bins=edges, histtype="step", linewidth=1.6, color=color, label=label(f"{name} (n = {len(v):,})"))
        if vline is not None:
            ax.axvline(vline[0], color="#333333", linestyle=":", linewidth=1.2, label=vline[1])
        ax.set_xlabel(label(xlabel))
        ax.set_ylabel(label(ylabel))
        ax.legend(fontsize=8)
        return _svg(fig, title)


def bars(labels: Sequence[str], values: Sequence[float | None], intervals: Sequence[Sequence[float] | None], *,
         ylabel: str, title: str, counts: Sequence[int | None] | None = None) -> Markup:
    """Shares as percentage bars with 95% interval whiskers; each tick names its n when
    ``counts`` are given; a missing value is an empty slot, labelled n/a."""
    with _figure(6.4, 3.4) as (fig, ax):
        x = np.arange(len(labels))
        heights = [100 * v if v is not None else 0.0 for v in values]
        lo = [max(100 * (v - iv[0]), 0) if v is not None and iv else 0 for v, iv in zip(values, intervals)]
        hi = [max(100 * (iv[1] - v), 0) if v is not None and iv else 0 for v, iv in zip(values, intervals)]
        ax.bar(x, heights, color=PALETTE[0], yerr=[lo, hi], capsize=4)
        for i, v in enumerate(values):
            if v is None:
                ax.text(i, 0, "n/a", ha="center", va="bottom")
        ticks = [label(lb) if not counts or counts[i] is None else f"{label(lb)}\nn = {counts[i]:,}" for i, lb in enumerate(labels)]
        ax.set_xticks(x, ticks)
        ax.set_ylabel(label(ylabel) + " (%)")
        ax.set_ylim(0, 105)
        return _svg(fig, title)


def horizontal_bars(labels: Sequence[str], values: Sequence[float], *, xlabel: str, title: str) -> Markup:
    """One horizontal bar per label (e.g. classifier feature weights)."""
    with _figure(6.4, max(2.0, 0.22 * len(labels) + 0.8)) as (fig, ax):
        y = np.arange(len(labels))
        ax.barh(y, values, color=[PALETTE[0] if v >= 0 else PALETTE[1] for v in values])
        ax.set_yticks(y, [label(lb) for lb in labels], fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="#333333", linewidth=0.8)
        ax.set_xlabel(label(xlabel))
        return _svg(fig, title)


def p_value_histogram(p_values: Sequence[float], *, alpha: float, title: str, bins: int = 20) -> Markup:
    """P-values of repeated tests under the null on [0, 1], with α marked and the flat count a
    valid test gives (its p-values are uniform under the null; a pile-up left of α means it
    rejects too often)."""
    with _figure(6.4, 3.4) as (fig, ax):
        p = np.asarray([v for v in p_values if v is not None and math.isfinite(v)], dtype=float)
        edges = np.linspace(0.0, 1.0, bins + 1)
        ax.hist(np.clip(p, 0.0, 1.0), bins=edges, color=PALETTE[0], alpha=0.8, label=f"trials (n = {len(p):,})")
        ax.axhline(len(p) / bins, color="#333333", linestyle=":", linewidth=1.2, label="expected if valid (uniform)")
        ax.axvline(alpha, color=MEMBER, linestyle="--", linewidth=1.2, label=f"α = {alpha:g}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("p-value of a validation-vs-validation trial")
        ax.set_ylabel("trials")
        ax.legend(fontsize=8)
        return _svg(fig, title)


def p_value_curve(sizes: Sequence[int], p_values: Sequence[float], *, alpha: float | None, title: str) -> Markup:
    """Median p-value against the documents per set, both axes logarithmic, with α dashed;
    the x ticks are the sizes themselves (2, 5, 10, ... rather than powers of ten)."""
    from matplotlib.ticker import NullLocator

    with _figure(6.4, 3.6) as (fig, ax):
        ax.plot(sizes, p_values, marker="o", color=PALETTE[0], label="median p-value")
        if alpha is not None:
            ax.axhline(alpha, color=MEMBER, linestyle="--", linewidth=1.2, label=f"α = {alpha:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(sizes), [f"{n:,}" for n in sizes])
        ax.xaxis.set_minor_locator(NullLocator())  # no unlabelled minor ticks between the sizes
        ax.set_xlabel("documents per set (drawn from half B)")
        ax.set_ylabel("median p-value")
        ax.legend(fontsize=8)
        return _svg(fig, title)



def frontier(curves: dict[str, list[tuple[float, float, str]]], *, reference: dict[str, tuple[float, float]],
             xlabel: str, ylabel: str, title: str, ytarget: float | None = None) -> Markup:
    """Unlearning curves: per method, lines of (x, y) points in the order given (one line per
    setting, e.g. per learning rate through its epochs, named by the point's third field),
    with reference models (target, retrain) as labelled markers and an optional horizontal
    target line."""
    with _figure(7.2, 4.6) as (fig, ax):
        for (method, points), colour in zip(curves.items(), itertools.cycle(PALETTE)):
            groups: dict[str, list[tuple[float, float]]] = {}
            for x, y, key in points:
                groups.setdefault(key, []).append((x, y))
            for i, pts in enumerate(groups.values()):
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, color=colour, alpha=0.85,
                        label=label(method) if i == 0 else None)
        for (name, (x, y)), marker in zip(reference.items(), itertools.cycle("*Ds^")):
            ax.plot([x], [y], marker=marker, markersize=11, color="#333333", linestyle="none", label=label(name))
        if ytarget is not None:
            ax.axhline(ytarget, color="#333333", linewidth=0.8, linestyle="--")
        ax.set_xlabel(label(xlabel))
        ax.set_ylabel(label(ylabel))
        ax.legend(fontsize=8, loc="best")
        return _svg(fig, title)


def lines(series: dict[str, tuple[Sequence[float], Sequence[float | None]]], *, xlabel: str, ylabel: str,
          title: str) -> Markup:
    """One line per named series of (x, y) values (e.g. training losses per step); a missing
    or non-finite y leaves a gap rather than a point at 0."""
    with _figure(6.4, 3.6) as (fig, ax):
        for (name, (xs, ys)), colour in zip(series.items(), itertools.cycle(PALETTE)):
            y = [v if v is not None and math.isfinite(v) else np.nan for v in ys]
            ax.plot(list(xs), y, marker="o" if len(xs) <= 30 else None, markersize=3, linewidth=1.4, color=colour,
                    label=label(name))
        ax.set_xlabel(label(xlabel))
        ax.set_ylabel(label(ylabel))
        ax.legend(fontsize=8)
        return _svg(fig, title)


def z_curves(curves: dict[str, tuple[Sequence[float], Sequence[float | None]]], *, flagged: set[str],
             z_level: float | None, alpha: float | None, title: str) -> Markup:
    """Each text's z over the scored tokens read so far: the texts in ``flagged`` (detected)
    in colour and drawn last, the others thin and grey, with the z of α dashed. A watermark
    shows as a line that keeps climbing (z grows like √T); an unwatermarked text wanders
    around 0."""
    with _figure(6.4, 3.8) as (fig, ax):
        plain_label, mark_label = "not detected", "detected"
        for name, (ts, zs) in curves.items():
            if name in flagged:
                continue
            z = [v if v is not None and math.isfinite(v) else np.nan for v in zs]
            ax.plot(list(ts), z, color="#9a9a9a", linewidth=0.8, alpha=0.6, label=plain_label)
            plain_label = None
        for name, (ts, zs) in ((k, v) for k, v in curves.items() if k in flagged):
            z = [v if v is not None and math.isfinite(v) else np.nan for v in zs]
            ax.plot(list(ts), z, color=MEMBER, linewidth=1.5, alpha=0.9, label=mark_label)
            mark_label = None
        if z_level is not None:
            ax.axhline(z_level, color="#333333", linestyle="--", linewidth=1.1,
                       label=f"z of α = {alpha:g} (normal approximation)" if alpha is not None else "z threshold")
        ax.axhline(0, color="#333333", linewidth=0.6)
        ax.set_xlabel("scored tokens read (T)")
        ax.set_ylabel("z-score so far")
        ax.legend(fontsize=8, loc="upper left")
        return _svg(fig, title)


def rate_curves(series: dict[str, tuple[Sequence[float], Sequence[float | None], Sequence[Sequence[float] | None]]], *,
                xlabel: str, ylabel: str, title: str, log2_x: bool = True) -> Markup:
    """One line per named series of rates (0-1, drawn as %) with 95% interval whiskers, e.g.
    the detection rate of each scheme against the number of tokens; a missing rate is a gap."""
    with _figure(6.4, 3.6) as (fig, ax):
        for (name, (xs, ys, cis)), colour in zip(series.items(), itertools.cycle(PALETTE)):
            y = np.array([100 * v if v is not None and math.isfinite(v) else np.nan for v in ys])
            lo = [max(100 * v - 100 * c[0], 0) if v is not None and c else 0 for v, c in zip(ys, cis)]
            hi = [max(100 * c[1] - 100 * v, 0) if v is not None and c else 0 for v, c in zip(ys, cis)]
            ax.errorbar(list(xs), y, yerr=[lo, hi], marker="o", markersize=3, linewidth=1.4, capsize=3, color=colour,
                        label=label(name))
        if log2_x:
            ax.set_xscale("log", base=2)
            xs_all = sorted({x for xs, _, _ in series.values() for x in xs})
            if xs_all:
                from matplotlib.ticker import NullLocator

                ax.set_xticks(xs_all, [f"{x:,g}" for x in xs_all])
                ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(0, 105)
        ax.set_xlabel(label(xlabel))
        ax.set_ylabel(label(ylabel) + " (%)")
        ax.legend(fontsize=8)
        return _svg(fig, title)
