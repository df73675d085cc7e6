"""Homoglyphs: Latin letters replaced by Cyrillic and Greek letters that look the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmaudit.watermark.attacks import (ATTACKS, Attacked, check_fraction, n_changed, pick, rewrite, rng_for,
                                       word_spans)
from lmaudit.watermark.normalize import HOMOGLYPHS


@ATTACKS.register("homoglyph")
@dataclass(frozen=True)
class Homoglyph:
    """Replace every Latin letter that has a lookalike (:data:`~lmaudit.watermark.normalize.HOMOGLYPHS`)
    in a share of the words.

    A reader sees the same word; a tokenizer sees rare Cyrillic or Greek tokens, so the
    green-list evidence of those words and of the tokens after them is lost. Kirchenbauer et
    al. ("On the Reliability of Watermarks for Large Language Models", 2023) list homoglyph
    and zero-width attacks among those a detector must normalise away;
    :func:`lmaudit.watermark.normalize.normalize` folds them back exactly.

    Only words with at least one letter in the table can be chosen; when there are fewer of
    them than ``max(1, round(fraction · n))`` (n counting all words), all of them change. A
    letter with several lookalikes gets one of them at random.

    Example:
        >>> out = Homoglyph(fraction=1.0).apply("cope", seed=0).text
        >>> out != "cope", len(out)
        (True, 4)

    Attributes:
        fraction: Share of the words edited, in [0, 1] (none at 0).
    """

    fraction: float = 0.1

    name: ClassVar[str] = "homoglyph"

    def __post_init__(self) -> None:
        check_fraction(self.name, self.fraction)

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        spans = [s for s in word_spans(text) if any(ch in HOMOGLYPHS for ch in text[s[0]:s[1]])]
        k = min(len(spans), n_changed(self.fraction, len(word_spans(text))))
        if k == 0:
            return Attacked(text)
        rng = rng_for(seed, self.name, text)

        def swap(word: str) -> str:
            return "".join(ch if ch not in HOMOGLYPHS else HOMOGLYPHS[ch][int(rng.integers(len(HOMOGLYPHS[ch])))]
                           for ch in word)

        return Attacked(rewrite(text, spans, pick(rng, len(spans), k), swap))
