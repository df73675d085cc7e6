"""Random word deletion (Kirchenbauer et al. 2023, "On the Reliability of Watermarks")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmaudit.watermark.attacks import ATTACKS, Attacked, check_fraction, n_changed, pick, rng_for, word_spans


@ATTACKS.register("delete")
@dataclass(frozen=True)
class Delete:
    """Delete a share of the words, uniformly at random.

    One of the word-level edits Kirchenbauer et al. ("On the Reliability of Watermarks for
    Large Language Models", 2023) use alongside substitution: each deletion breaks the
    h-token context of the next few tokens, so their green lists change.

    A deleted word goes with the whitespace before it (after it, for a word with no kept
    word before), so the rest of the layout is kept and no gap is doubled. ``fraction=1``
    deletes every word, leaving the text's leading and trailing whitespace.

    Example:
        >>> Delete(fraction=0.5).apply("one two three four", seed=0).text.count(" ")
        1

    Attributes:
        fraction: Share of the words deleted, in [0, 1]: ``max(1, round(fraction · n))``
            of the n words (none at 0).
    """

    fraction: float = 0.2

    name: ClassVar[str] = "delete"

    def __post_init__(self) -> None:
        check_fraction(self.name, self.fraction)

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        spans = word_spans(text)
        k = n_changed(self.fraction, len(spans))
        if k == 0:
            return Attacked(text)
        gone = set(pick(rng_for(seed, self.name, text), len(spans), k))
        pieces, last, kept_before = [], 0, False
        for j, (start, end) in enumerate(spans):
            if j not in gone:
                kept_before = True
                continue
            if kept_before:
                start = spans[j - 1][1]  # the gap before the word goes with it
            elif j + 1 < len(spans):
                end = spans[j + 1][0]  # nothing kept before: take the gap after instead
            pieces.append(text[last:start])
            last = end
        pieces.append(text[last:])
        return Attacked("".join(pieces))
