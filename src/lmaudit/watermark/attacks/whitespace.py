"""Whitespace edits: the same words, other gaps between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmaudit.watermark.attacks import ATTACKS, Attacked, check_fraction, n_changed, pick, rng_for, word_spans

#: What a changed gap becomes (one of these other than the gap itself).
GAPS = ("  ", "\n", "\t", " \n", "\n\n", " \t")


@ATTACKS.register("whitespace")
@dataclass(frozen=True)
class Whitespace:
    """Replace the whitespace between a share of adjacent words with other whitespace
    (doubled spaces, newlines, tabs).

    A reader barely notices, but BPE tokenizers fold a space into the next word's token, so
    a changed gap changes that token and the green lists seeded by it (one of the "cheap"
    edits discussed by Kirchenbauer et al., "On the Reliability of Watermarks for Large
    Language Models", 2023). The words themselves are untouched: splitting the output on
    whitespace gives the same words.

    Example:
        >>> Whitespace(fraction=1.0).apply("a b c", seed=0).text.split()
        ['a', 'b', 'c']

    Attributes:
        fraction: Share of the n − 1 gaps between words changed, in [0, 1]:
            ``max(1, round(fraction · (n − 1)))`` (none at 0, or with fewer than two words).
    """

    fraction: float = 0.2

    name: ClassVar[str] = "whitespace"

    def __post_init__(self) -> None:
        check_fraction(self.name, self.fraction)

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        spans = word_spans(text)
        gaps = [(a[1], b[0]) for a, b in zip(spans, spans[1:])]
        k = n_changed(self.fraction, len(gaps))
        if k == 0:
            return Attacked(text)
        rng = rng_for(seed, self.name, text)
        pieces, last = [], 0
        for j in pick(rng, len(gaps), k):
            start, end = gaps[j]
            options = [g for g in GAPS if g != text[start:end]]
            pieces += [text[last:start], options[int(rng.integers(len(options)))]]
            last = end
        pieces.append(text[last:])
        return Attacked("".join(pieces))
