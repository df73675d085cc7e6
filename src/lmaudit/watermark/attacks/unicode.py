"""Invisible character edits: zero-width characters and fullwidth compatibility forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmaudit.watermark.attacks import (ATTACKS, Attacked, check_fraction, n_changed, pick, rewrite, rng_for,
                                       word_spans)
from lmaudit.watermark.normalize import ZERO_WIDTH

_MODES = ("zero_width", "fullwidth", "both")


def fullwidth(word: str) -> str:
    """``word`` with its printable ASCII characters in their fullwidth forms (U+FF01–FF5E),
    which NFKC maps back.

    >>> fullwidth("Hi!")
    'Ｈｉ！'
    """
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in word)


@ATTACKS.register("unicode")
@dataclass(frozen=True)
class Unicode:
    """Hide edits in a share of the words: a zero-width character inside the word, or the
    word written in fullwidth letters.

    The text looks (almost) the same but tokenizes very differently, which is why
    Kirchenbauer et al.'s detector ("On the Reliability of Watermarks for Large Language
    Models", 2023; jwkirchenbauer/lm-watermarking) normalises text first:
    :func:`lmaudit.watermark.normalize.normalize` undoes this attack exactly on ASCII text.

    Each chosen word gets one edit: a character of :data:`~lmaudit.watermark.normalize.ZERO_WIDTH`
    at a random position inside it (after it, for a one-character word), or every printable
    ASCII character of it in fullwidth form. A word without ASCII characters always gets a
    zero-width character, so every chosen word changes.

    Example:
        >>> from lmaudit.watermark.normalize import normalize
        >>> out = Unicode(fraction=1.0).apply("Plain words here.", seed=3).text
        >>> out != "Plain words here." and normalize(out) == "Plain words here."
        True

    Attributes:
        fraction: Share of the words edited, in [0, 1]: ``max(1, round(fraction · n))`` of
            the n words (none at 0).
        mode: "zero_width", "fullwidth" or "both" (each chosen word gets one of the two,
            at random).
    """

    fraction: float = 0.1
    mode: str = "both"

    name: ClassVar[str] = "unicode"

    def __post_init__(self) -> None:
        check_fraction(self.name, self.fraction)
        if self.mode not in _MODES:
            raise ValueError(f"{self.name}: mode must be one of {', '.join(_MODES)}, got {self.mode!r}")

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        spans = word_spans(text)
        k = n_changed(self.fraction, len(spans))
        if k == 0:
            return Attacked(text)
        rng = rng_for(seed, self.name, text)

        def disguise(word: str) -> str:
            wide = fullwidth(word)
            if wide != word and (self.mode == "fullwidth" or (self.mode == "both" and rng.random() < 0.5)):
                return wide
            at = 1 + int(rng.integers(len(word) - 1)) if len(word) > 1 else 1
            return word[:at] + ZERO_WIDTH[int(rng.integers(len(ZERO_WIDTH)))] + word[at:]

        return Attacked(rewrite(text, spans, pick(rng, len(spans), k), disguise))
