"""The detector's defence against character-level attacks: fold a text back to plain Latin.

Kirchenbauer et al. ("On the Reliability of Watermarks for Large Language Models", 2023,
https://arxiv.org/abs/2306.04634) note that cheap character edits (zero-width characters,
Unicode compatibility forms, Cyrillic or Greek letters that look Latin) change a text's
tokens without changing what a reader sees, and so wash a watermark out; their detector
(jwkirchenbauer/lm-watermarking) normalises a text before tokenising it. :func:`normalize`
is that defence, and it is exact for the attacks lmaudit ships: on ASCII input it inverts
:class:`~lmaudit.watermark.attacks.unicode.Unicode` and
:class:`~lmaudit.watermark.attacks.homoglyph.Homoglyph` character for character.

The tables here are the ones those attacks draw from, so attack and defence cannot drift
apart: :data:`HOMOGLYPHS` (Latin letter → lookalikes), :data:`FOLD` (its inverse) and
:data:`ZERO_WIDTH`.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

__all__ = ["FOLD", "HOMOGLYPHS", "STEPS", "ZERO_WIDTH", "normalize"]

#: Latin letter → Cyrillic (first) and Greek lookalikes: letters a reader cannot tell apart
#: from the Latin one in common fonts. Every lookalike stands for one Latin letter only, so
#: :data:`FOLD` is a function and folding inverts any choice among them.
HOMOGLYPHS: dict[str, tuple[str, ...]] = {
    "a": ("\u0430",),            # а CYRILLIC SMALL A
    "c": ("\u0441",),            # с CYRILLIC SMALL ES
    "d": ("\u0501",),            # ԁ CYRILLIC SMALL KOMI DE
    "e": ("\u0435",),            # е CYRILLIC SMALL IE
    "h": ("\u04bb",),            # һ CYRILLIC SMALL SHHA
    "i": ("\u0456",),            # і CYRILLIC SMALL BYELORUSSIAN-UKRAINIAN I
    "j": ("\u0458",),            # ј CYRILLIC SMALL JE
    "o": ("\u043e", "\u03bf"),   # о CYRILLIC SMALL O, ο GREEK SMALL OMICRON
    "p": ("\u0440",),            # р CYRILLIC SMALL ER
    "s": ("\u0455",),            # ѕ CYRILLIC SMALL DZE
    "x": ("\u0445",),            # х CYRILLIC SMALL HA
    "y": ("\u0443",),            # у CYRILLIC SMALL U
    "A": ("\u0410", "\u0391"),   # А CYRILLIC A, Α GREEK ALPHA
    "B": ("\u0412", "\u0392"),   # В CYRILLIC VE, Β GREEK BETA
    "C": ("\u0421",),            # С CYRILLIC ES
    "E": ("\u0415", "\u0395"),   # Е CYRILLIC IE, Ε GREEK EPSILON
    "H": ("\u041d", "\u0397"),   # Н CYRILLIC EN, Η GREEK ETA
    "I": ("\u0406", "\u0399"),   # І CYRILLIC BYELORUSSIAN-UKRAINIAN I, Ι GREEK IOTA
    "J": ("\u0408",),            # Ј CYRILLIC JE
    "K": ("\u041a", "\u039a"),   # К CYRILLIC KA, Κ GREEK KAPPA
    "M": ("\u041c", "\u039c"),   # М CYRILLIC EM, Μ GREEK MU
    "N": ("\u039d",),            # Ν GREEK NU
    "O": ("\u041e", "\u039f"),   # О CYRILLIC O, Ο GREEK OMICRON
    "P": ("\u0420", "\u03a1"),   # Р CYRILLIC ER, Ρ GREEK RHO
    "S": ("\u0405",),            # Ѕ CYRILLIC DZE
    "T": ("\u0422", "\u03a4"),   # Т CYRILLIC TE, Τ GREEK TAU
    "X": ("\u0425", "\u03a7"),   # Х CYRILLIC HA, Χ GREEK CHI
    "Y": ("\u04ae", "\u03a5"),   # Ү CYRILLIC STRAIGHT U, Υ GREEK UPSILON
    "Z": ("\u0396",),            # Ζ GREEK ZETA
}

#: Lookalike → the Latin letter it imitates (the inverse of :data:`HOMOGLYPHS`).
FOLD: dict[str, str] = {g: latin for latin, glyphs in HOMOGLYPHS.items() for g in glyphs}

#: Invisible characters the unicode attack inserts inside words (all of Unicode category Cf,
#: which the ``zero_width`` step removes entirely).
ZERO_WIDTH: tuple[str, ...] = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")

#: The steps :func:`normalize` knows, in the order it recommends.
STEPS = ("nfkc", "zero_width", "homoglyphs")

_FOLD_TABLE = str.maketrans(FOLD)


def _strip_format(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


_APPLY = {
    "nfkc": lambda text: unicodedata.normalize("NFKC", text),
    "zero_width": _strip_format,
    "homoglyphs": lambda text: text.translate(_FOLD_TABLE),
}


def normalize(text: str, *, steps: Sequence[str] = STEPS) -> str:
    """``text`` with the named steps applied, in the order given.

    * ``nfkc``: Unicode NFKC, which maps compatibility forms (fullwidth letters, ligatures,
      superscripts) to their plain characters;
    * ``zero_width``: remove every format character (Unicode category Cf: zero-width space
      and joiners, word joiner, BOM, soft hyphen, bidirectional marks). This also removes
      the joiners of emoji sequences, which a detector does not need;
    * ``homoglyphs``: map every lookalike in :data:`FOLD` to its Latin letter. This folds
      genuine Cyrillic and Greek words too (a Russian "сор" becomes Latin "cop"): leave the
      step out for text in those scripts, whose watermark it would destroy.

    Example:
        >>> normalize("\\uff37\\u0430ter\\u200bmark")   # fullwidth W, Cyrillic а, zero-width space
        'Watermark'

    Raises:
        ValueError: An unknown or repeated step (naming the allowed ones).
    """
    steps = (steps,) if isinstance(steps, str) else tuple(steps)
    unknown = [s for s in steps if s not in _APPLY]
    if unknown:
        raise ValueError(f"unknown normalize step(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(STEPS)}")
    if len(set(steps)) < len(steps):
        raise ValueError(f"a normalize step is named twice in {list(steps)}")
    for step in steps:
        text = _APPLY[step](text)
    return text
