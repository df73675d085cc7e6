"""Random word substitution (Kirchenbauer et al. 2023, "On the Reliability of Watermarks")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from lmaudit.membership.perturb import PerturbError, WordSwapPerturber, word_counts
from lmaudit.watermark.attacks import ATTACKS, Attacked, check_fraction


@ATTACKS.register("substitute")
@dataclass(frozen=True)
class Substitute:
    """Replace a share of the words with other words, offline.

    Kirchenbauer et al. ("On the Reliability of Watermarks for Large Language Models", 2023)
    attack with word substitution; their substitutes come from a masked LM or a synonym list.
    This is the model-free variant: lmaudit's
    :class:`~lmaudit.membership.perturb.WordSwapPerturber`, whose replacements keep the
    text's layout and each word's first-letter case but are not chosen for fluency, so the
    edited text is further from the original than a synonym swap would leave it.

    Words here are the perturber's: maximal runs of ``\\w`` characters (punctuation and
    whitespace are kept as they are), so "don't" is two words.

    Example:
        >>> Substitute(fraction=0.5, pool=["red", "blue"]).apply("The cat sat.", seed=0).text.endswith(".")
        True

    Attributes:
        fraction: Share of the words replaced, in [0, 1]: ``max(1, round(fraction · n))``
            of the n words (none at 0).
        pool: Replacement words (single ``\\w+`` words; repeats weight a word). None: the
            text's own words, weighted by frequency, so a text's edit depends on that text
            alone, never on the others of its batch.
    """

    fraction: float = 0.2
    pool: Sequence[str] | None = None

    name: ClassVar[str] = "substitute"

    def __post_init__(self) -> None:
        check_fraction(self.name, self.fraction)
        if self.pool is not None:
            object.__setattr__(self, "pool", tuple(self.pool))  # a tuple keeps the instance hashable
            if self.fraction > 0:
                WordSwapPerturber(fraction=self.fraction, pool=self.pool)  # its checks of the pool, now

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        """The text with words replaced.

        Raises:
            ValueError: The pool has no word other than the one to replace (with the text's
                own words: every word is the same).
        """
        words = word_counts([text])
        if self.fraction == 0 or not words:
            return Attacked(text)
        perturber = WordSwapPerturber(fraction=self.fraction, pool=self.pool if self.pool is not None else words)
        try:
            [[edited]] = perturber.perturb([text], n=1, seed=seed)
        except PerturbError as err:
            raise ValueError(f"{self.name}: {err.reasons[0]}") from None
        return Attacked(edited)
