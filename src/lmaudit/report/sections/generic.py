"""The fallback section: any run, of any kind, as its summary table.

Used for a kind with no renderer of its own (a newer lmaudit's audit, a run that never wrote
results.json), so a report never fails on what it does not know: it shows the figures the
run recorded, without claiming to interpret them.
"""

from __future__ import annotations

from typing import Any

from lmaudit.report.load import Run
from lmaudit.report.sections import Section


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys; lists of numbers kept whole (an interval), others summarised.

    >>> flatten({"a": 1, "b": {"c": [0.1, 0.2], "d": None}})
    [('a', 1), ('b.c', [0.1, 0.2]), ('b.d', None)]
    """
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for k, v in value.items():
            items.extend(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return items
    if isinstance(value, list) and not all(isinstance(v, (int, float)) or v is None for v in value):
        return [(prefix, f"{len(value)} items")]
    return [(prefix, value)]


def generic(run: Run, page) -> Section:
    """The run's summary as a table of every figure it records."""
    kind = run.kind if run.kind != "unknown" else "unfinished run"
    if not run.results.get("summary"):
        return Section(title=f"{kind}", level="warning", guide="guide-provenance",
                       verdict=[f"No results to show: {run.results.get('command', 'the run')} wrote no summary."],
                       body=page.render("generic.html.j2", rows=[]))
    return Section(title=f"{kind} (shown generically)", level="info", guide="guide-provenance",
                   verdict=[f"This report has no reader for {kind!r} runs: its summary is shown as recorded, "
                            "without interpretation."],
                   body=page.render("generic.html.j2", rows=flatten(run.summary)))
