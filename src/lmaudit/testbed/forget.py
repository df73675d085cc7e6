"""Choosing a forget set among the testbed's members (issue 13): the documents an unlearning
method must remove, drawn so that every duplication level is represented as in the members.

Duplication decides how strongly a document is memorised (the default testbed's 32-times
repeated members are extracted verbatim, the once-seen ones almost never), so a forget set
drawn at random could miss a level, and a method would look good on easy documents alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from lmaudit.data import Record


def allocate(counts: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over the levels in proportion to ``counts`` (largest remainders; ties go to
    the level listed first), never more than a level holds.

    >>> allocate({"1": 450, "4": 150, "32": 400}, 100)
    {'1': 45, '4': 15, '32': 40}
    >>> allocate({"a": 1, "b": 1, "c": 1}, 2)
    {'a': 1, 'b': 1, 'c': 0}
    """
    total = sum(counts.values())
    if not 0 <= n <= total:
        raise ValueError(f"cannot choose {n} of {total} documents")
    quotas = {k: n * c / total for k, c in counts.items()}
    shares = {k: math.floor(q) for k, q in quotas.items()}
    order = sorted(counts, key=lambda k: (-(quotas[k] - shares[k]), list(counts).index(k)))
    for k in order[: n - sum(shares.values())]:
        shares[k] += 1
    return shares


def select_forget(members: Sequence[Record], n: int, *, seed: int = 0,
                  field: str = "duplication") -> tuple[list[Record], list[Record], dict]:
    """The forget set F (``n`` members, stratified over ``field``) and the retain set R (the
    other members, in their original order).

    Within each level the documents are drawn at random with ``seed``; F keeps the members'
    order too. Members without ``field`` form a level of their own ("none").

    Returns:
        (forget, retain, record): ``record`` says how F was drawn (``n``, ``seed``, ``field``,
        per level ``{"members": ..., "forget": ...}``), for testbed.json.
    """
    levels: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(members):
        levels[str(r.meta.get(field, "none"))].append(i)
    ordered = sorted(levels, key=lambda k: (0, float(k), "") if _number(k) else (1, 0.0, k))
    counts = {k: len(levels[k]) for k in ordered}
    shares = allocate(counts, n)
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for k in ordered:
        if shares[k]:
            chosen.update(int(i) for i in rng.choice(levels[k], size=shares[k], replace=False))
    forget = [r for i, r in enumerate(members) if i in chosen]
    retain = [r for i, r in enumerate(members) if i not in chosen]
    record = {"n": n, "seed": seed, "field": field,
              "levels": {k: {"members": counts[k], "forget": shares[k]} for k in ordered}}
    return forget, retain, record


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
