"""How a report writes numbers: every rate with its n and interval, p-values that stay exact.

Pure functions from numbers to short strings, shared by every section's verdict and tables
(and registered as Jinja filters), so one figure reads the same everywhere in a report.
None is "n/a" and NaN is "NaN": a missing or undefined figure is never shown as 0.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "n/a"


def _bad(x: Any) -> str | None:
    if x is None:
        return MISSING
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    return None


def num(x: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant figures; integers whole, with thousands separators.

    >>> num(0.929376), num(1000), num(2.0e-14), num(None), num(float("nan")), num(12.5), num(0.0012), num(1234.5)
    ('0.929', '1,000', '2e-14', 'n/a', 'NaN', '12.5', '0.0012', '1,234')
    >>> num(0.9996), num(1.0), pval(0.99996), num(999.6), num(-999.6)
    ('0.9996', '1', '0.99996', '1,000', '-1,000')
    """
    bad = _bad(x)
    if bad:
        return bad
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if not isinstance(x, float):
        return str(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        mantissa, exponent = f"{x:.{max(digits - 1, 0)}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    text = f"{x:.{digits}g}"
    if "e" in text:  # 999.6 rounds up to a power of ten: "1,000", not "1e+03"
        return f"{x:,.0f}"
    while float(text) in (1.0, -1.0) and abs(x) != 1 and digits < 12:
        digits += 1  # 0.9996 is not 1: an AUC of 0.9996 must not read as perfect
        text = f"{x:.{digits}g}"
    return text


def pval(p: Any) -> str:
    """A p-value: two significant figures, in scientific notation below 0.001 (never rounded to 0).

    >>> pval(4.9776e-15), pval(0.0123), pval(0.86833), pval(0.0)
    ('5.0e-15', '0.012', '0.87', '0 (below float precision)')
    """
    bad = _bad(p)
    if bad:
        return bad
    if p == 0:
        return "0 (below float precision)"
    if p < 1e-3:
        return f"{p:.1e}"
    return num(p, 2)


def pct(x: Any, digits: int = 1) -> str:
    """A proportion as a percentage; one that is not 0 or 1 never reads as 0.0% or 100.0%
    (the upper bound of 0 of 10,000 is 0.037%, not 0).

    >>> pct(0.035), pct(1.0), pct(0.0), pct(None), pct(0.000368), pct(0.99996)
    ('3.5%', '100.0%', '0.0%', 'n/a', '0.037%', '99.996%')
    """
    bad = _bad(x)
    if bad:
        return bad
    text = f"{100 * x:.{digits}f}"
    if x != 0 and float(text) == 0:
        text = f"{100 * x:.2g}"  # two significant figures of a tiny share
    while x != 1 and float(text) == 100 and digits < 12:
        digits += 1
        text = f"{100 * x:.{digits}f}"
    return f"{text}%"


def ci(interval: Any, fmt=num) -> str:
    """A 95% interval, "lo-hi" with ``fmt`` (``num`` or ``pct``); "lo to hi" when a bound is
    negative, so that the dash cannot read as a minus sign.

    >>> ci([0.9166, 0.9416]), ci([0.0141, 0.0708], pct), ci(None), ci([-14.47, 3.81])
    ('0.917-0.942', '1.4%-7.1%', 'n/a', '-14.5 to 3.81')
    """
    if not interval or len(interval) != 2:
        return MISSING
    negative = any(isinstance(b, (int, float)) and b < 0 for b in interval)
    return f"{fmt(interval[0])}{' to ' if negative else '-'}{fmt(interval[1])}"


def rate(k: Any, n: Any, interval: Any = None) -> str:
    """A rate as counts, percentage and 95% CI: "14 of 200 (7.0%, 95% CI 3.9%-11.5%)".

    A rate of 0 of n keeps its interval (its upper bound is what the figure says).

    >>> rate(0, 1000, [0.0, 0.00368])
    '0 of 1,000 (0.0%, 95% CI 0.0%-0.4%)'
    >>> rate(3, 0)
    '3 of 0 (n/a)'
    """
    share = pct(k / n) if isinstance(n, int) and n > 0 and isinstance(k, (int, float)) else MISSING
    tail = f", 95% CI {ci(interval, pct)}" if interval else ""
    return f"{num(k)} of {num(n)} ({share}{tail})"


def with_ci(x: Any, interval: Any, fmt=num) -> str:
    """A value and its 95% interval: "0.929 (95% CI 0.917-0.942)".

    >>> with_ci(0.5, None)
    '0.5'
    """
    return f"{fmt(x)} (95% CI {ci(interval, fmt)})" if interval else fmt(x)


FILTERS = {"num": num, "pval": pval, "pct": pct, "ci": ci, "ci_pct": lambda interval: ci(interval, pct), "rate": rate,
           "with_ci": with_ci}


def finite(x: Any) -> float | None:
    """``x`` as a float when it is a finite number, else None (results.json writes an undefined
    figure as NaN or null; a renderer's rules treat both as missing).

    >>> finite(0.5), finite(float("nan")), finite(None), finite("0.5"), finite(True)
    (0.5, None, None, None, None)
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def rate_of(k: Any, n: Any) -> str:
    """:func:`rate` with its Clopper-Pearson 95% interval computed here, for counts a run
    recorded without one; no interval when n is 0 or the counts are not whole numbers.

    >>> rate_of(0, 10)
    '0 of 10 (0.0%, 95% CI 0.0%-30.8%)'
    >>> rate_of(0, 0)
    '0 of 0 (n/a)'
    """
    from lmaudit.stats import proportion_ci

    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (k, n))
    interval = proportion_ci(k, n) if whole and 0 <= k <= n and n > 0 else None
    return rate(k, n, interval)


FILTERS["rate_of"] = rate_of
