"""Truncation: keep only the start of the watermarked text (fewer tokens, weaker evidence)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmaudit.watermark.attacks import ATTACKS, Attacked, check_fraction, word_spans


@ATTACKS.register("truncate")
@dataclass(frozen=True)
class Truncate:
    """Keep the first words of the text and drop the rest.

    Detection strength grows with the number of scored tokens (z ∝ √T for a fixed green
    share; Kirchenbauer et al. 2023, "A Watermark for Large Language Models", Sec. 5), so
    truncation measures how much text a detector needs. The kept part is the text up to the
    end of its last kept word, layout unchanged; a text with no more words than asked is
    returned whole.

    Example:
        >>> Truncate(words=2).apply("Hello  there, dear world.").text
        'Hello  there,'

    Attributes:
        words: Keep this many words (at least 1).
        fraction: Or keep ``max(1, round(fraction · n))`` of the n words, fraction in (0, 1].
            Exactly one of ``words`` and ``fraction`` is given.
    """

    words: int | None = None
    fraction: float | None = None

    name: ClassVar[str] = "truncate"

    def __post_init__(self) -> None:
        if (self.words is None) == (self.fraction is None):
            raise ValueError(f"{self.name}: give exactly one of words and fraction, got words={self.words!r}, "
                             f"fraction={self.fraction!r}")
        if self.words is not None and (isinstance(self.words, bool) or not isinstance(self.words, int) or self.words < 1):
            raise ValueError(f"{self.name}: words must be a positive integer, got {self.words!r}")
        if self.fraction is not None:
            check_fraction(self.name, self.fraction, allow_zero=False)

    def kept(self, n_words: int) -> int:
        """How many of ``n_words`` words are kept."""
        if self.words is not None:
            return min(n_words, self.words)
        return min(n_words, max(1, round(self.fraction * n_words)))

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        spans = word_spans(text)
        k = self.kept(len(spans))
        if k == len(spans):
            return Attacked(text)
        return Attacked(text[: spans[k - 1][1]])
