"""What the memorization sections (extract, copying, knowledge, acr) share: rates in words,
rows per level, the copied spans of a pair as segments for a template, and error rows.

No renderer is registered here. Everything is a pure function of results.json's figures or
of sample rows, so the verdicts and the highlighting can be tested against hand-made values.
"""

from __future__ import annotations

from typing import Any, Sequence

from lmaudit.report.fmt import MISSING, num, pct
from lmaudit.report.page import Column

CASES = 20  # worst cases shown side by side; every row stays in the sample browser


def count_of(share: Any, n: Any) -> int | None:
    """The count behind a rate (results.json stores the share and ``n``).

    >>> count_of(0.995, 400), count_of(None, 5)
    (398, None)
    """
    if not isinstance(share, (int, float)) or not isinstance(n, int) or share != share:
        return None
    return round(share * n)


def figures(k: Any, n: Any, interval: Any) -> str:
    """A rate's share and 95% interval: "99.5%, 95% CI 98.2%-99.9%" (no value shown as 0.0%
    unless it is 0).

    >>> figures(1, 100000, [2.5e-07, 5.6e-05])
    '0.001%, 95% CI 2.5e-05%-0.0056%'
    """
    share = pct(k / n) if isinstance(k, (int, float)) and isinstance(n, int) and n > 0 else MISSING
    if not interval or len(interval) != 2:
        return share
    return f"{share}, 95% CI {pct(interval[0])}-{pct(interval[1])}"


def cell(k: Any, n: Any, interval: Any) -> str:
    """A rate for a table: "0 of 450 (0.0%, 95% CI 0.0%-0.8%)".

    >>> cell(None, 0, None)
    'n/a of 0 (n/a)'
    """
    return f"{num(k)} of {num(n)} ({figures(k, n, interval)})"


def counted(k: Any, n: Any, interval: Any) -> tuple[str, str]:
    """A rate in words, as (count, figures): the count reads "398 of 400" or "none of 450",
    the figures "(99.5%, 95% CI 98.2%-99.9%)" or, for none, "(95% CI upper bound 0.8%)".

    >>> counted(398, 400, [0.982, 0.9994])
    ('398 of 400', '(99.5%, 95% CI 98.2%-99.9%)')
    >>> counted(0, 450, [0.0, 0.0082])
    ('none of 450', '(95% CI upper bound 0.8%)')
    """
    if k is None or not isinstance(n, int) or n <= 0:
        return f"{num(k)} of {num(n)}", f"({MISSING})"
    if k == 0:
        tail = f"95% CI upper bound {pct(interval[1])}" if interval else "no interval recorded"
        return f"none of {num(n)}", f"({tail})"
    return f"{num(k)} of {num(n)}", f"({figures(k, n, interval)})"


def phrase(k: Any, n: Any, interval: Any, noun: str = "") -> str:
    """:func:`counted` as one phrase: "398 of 400 documents (99.5%, 95% CI 98.2%-99.9%)".

    >>> phrase(0, 1000, [0.0, 0.00368], "documents")
    'none of 1,000 documents (95% CI upper bound 0.4%)'
    """
    count, figures = counted(k, n, interval)
    return f"{count} {noun} {figures}" if noun else f"{count} {figures}"


def level_label(level: str, field: str = "duplication") -> str:
    """How a breakdown level reads: duplication levels as "32×", others as recorded.

    >>> level_label("32"), level_label("True", "verbatim"), level_label("poem", "kind")
    ('32×', 'verbatim', 'poem')
    """
    if field == "duplication":
        return f"{level}×" if level.replace(".", "", 1).isdigit() else level
    if field == "verbatim":
        return {"True": "verbatim", "False": "reworded"}.get(level, level)
    if field == "group":
        return {"member": "members", "nonmember": "non-members"}.get(level, level)
    return level


def level_rows(by: Any, rate_key: str, field: str = "duplication") -> list[dict]:
    """One row per level of a breakdown (``by_<field>`` of results.json): its label, ``n``,
    the count ``k`` behind ``rate_key``, the rate, its interval, the table ``cell`` and the
    level's own figures (``entry``)."""
    if not isinstance(by, dict):
        return []
    rows = []
    for level, entry in by.items():
        entry = entry if isinstance(entry, dict) else {}
        n = entry.get("n")
        k = count_of(entry.get(rate_key), n)
        rows.append({"level": level, "label": level_label(str(level), field), "n": n, "k": k,
                     "rate": entry.get(rate_key), "ci": entry.get(f"{rate_key}_ci"),
                     "cell": cell(k, n, entry.get(f"{rate_key}_ci")), "entry": entry})
    return rows


def levels_sentence(rows: Sequence[dict], noun: str, lead: str = "By duplication level") -> str | None:
    """The levels of a breakdown in one sentence, highest duplication first; None when empty.

    >>> rows = [{"label": "1×", "k": 0, "n": 450, "ci": [0, 0.0082]}, {"label": "32×", "k": 398, "n": 400,
    ...         "ci": [0.982, 0.9994]}]
    >>> print(levels_sentence(rows, "documents").replace("; ", ";\\n"))
    By duplication level: 32×, 398 of 400 documents (99.5%, 95% CI 98.2%-99.9%);
    1×, none of 450 (95% CI upper bound 0.8%).
    """
    if not rows:
        return None
    ordered = list(reversed(rows)) if lead == "By duplication level" else list(rows)
    parts = [f"{r['label']}, {phrase(r['k'], r['n'], r['ci'], noun if i == 0 else '')}" for i, r in enumerate(ordered)]
    return f"{lead}: {'; '.join(parts)}."


def error_browser(page, run, errors: list[dict], *, what: str):
    """The browser of a run's error rows (id and reason), or None when there are none."""
    if not errors:
        return None
    return page.samples(f"{run.name}-{run.kind}-errors", errors, [Column("id", "id"), Column("error", "error")],
                        caption=f"{what} with an error")


def segments(text: str, spans: Any) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, highlighted) at the [start, end) character ``spans``.

    The template writes each piece as text, inside ``<mark>`` when highlighted: no markup is
    ever put into a string. Spans are read from files, so they are clamped to the text,
    sorted and merged rather than trusted.

    >>> segments("say hello world", [[4, 15]])
    [('say ', False), ('hello world', True)]
    >>> segments("abc", [[2, 9], [0, 1], [1, 2]])
    [('abc', True)]
    """
    text = text or ""
    clean: list[list[int]] = []
    for span in sorted((max(0, int(s)), min(len(text), int(e))) for s, e in (spans or [])):
        if span[0] >= span[1]:
            continue
        if clean and span[0] <= clean[-1][1]:
            clean[-1][1] = max(clean[-1][1], span[1])
        else:
            clean.append(list(span))
    out: list[tuple[str, bool]] = []
    at = 0
    for start, end in clean:
        if start > at:
            out.append((text[at:start], False))
        out.append((text[start:end], True))
        at = end
    if at < len(text):
        out.append((text[at:], False))
    return out


def error_rows(samples: Sequence[dict]) -> list[dict]:
    """The rows that carry an ``error`` (upstream or the run's own): never dropped silently."""
    return [r for r in samples if r.get("error") is not None]


def errors_warning(n_errors: int, total: int, noun: str) -> str | None:
    """The warning for error rows, or None when there are none.

    >>> errors_warning(2, 10, "documents")
    '2 of 10 documents are error rows, in no rate or mean: they are listed under "Rows with errors".'
    """
    if not n_errors:
        return None
    verb = "is an error row" if n_errors == 1 else "are error rows"
    return (f"{num(n_errors)} of {num(total)} {noun} {verb}, in no rate or mean: they are listed under "
            '"Rows with errors".')


def rank(value: Any) -> float:
    """A sample's figure as a sort key: a missing or NaN figure ranks below every number.

    >>> sorted([None, 3, float("nan"), True], key=rank)
    [None, nan, True, 3]
    """
    return float(value) if isinstance(value, (int, float)) and value == value else float("-inf")


def grouped(rows: Sequence[dict], key: str, *, field: str = "duplication", noun: str = "documents") -> dict:
    """``key``'s values per level of ``field`` (labelled, numbers in numeric order), for a plot;
    rows without the field go under ``noun``, or "no <field>" beside levels.

    >>> grouped([{"d": 4, "x": 1}, {"d": 1, "x": 2}, {"x": 3}], "x", field="d")
    {'1': [2], '4': [1], 'no d': [3]}
    """
    levels = sorted({r[field] for r in rows if field in r},
                    key=lambda v: (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)))
    groups = {level_label(str(lv), field): [r.get(key) for r in rows if field in r and r[field] == lv] for lv in levels}
    rest = [r.get(key) for r in rows if field not in r]
    if rest:
        groups[f"no {field}" if groups else noun] = rest
    return groups


def integer_bins(values: Sequence[Any], *, most: int = 40) -> int:
    """Histogram bins one unit wide for integer counts (at most ``most``)."""
    finite = [v for v in values if isinstance(v, (int, float)) and v == v]
    if not finite:
        return 1
    return int(min(max(max(finite) - min(finite), 1), most))
