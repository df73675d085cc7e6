"""Neighbour texts for the neighbourhood membership attack: the Perturber contract and the
helpers its implementations share; one implementation per module.

Mattern et al., "Membership Inference Attacks against Language Models via Neighbourhood
Comparison", Findings of ACL 2023 (https://arxiv.org/abs/2305.18462), calibrate a text's
loss by the mean loss of "neighbours": copies of the text with a few words replaced. A
text the model was trained on should have a clearly lower loss than its neighbours; a
text it never saw should not. Neighbours only have to be close to the text and about as
fluent, so the perturber is pluggable:

* :class:`WordSwapPerturber` (the offline default) swaps words for words drawn from a
  pool. It needs no model, so the attack runs without any download.
* :class:`MaskedLMPerturber` lets a masked language model (the paper used BERT) propose
  the replacements, which keeps neighbours fluent.

Both derive their random stream from the seed, the text itself and the neighbour's
index, so a text gets the same neighbours whatever it is batched with (for
:class:`WordSwapPerturber` with ``pool=None``, the pool itself is the exception: it is
built from the texts passed together; a text that cannot be perturbed is named by its index in a
:class:`PerturbError`, so the caller can set it aside without changing the others' pool).

:mod:`lmaudit.membership.perturb.edits` holds single edits of one text each (typos, deletions,
case, whitespace, underscores, word swaps): the perturbations behind the ``perturb_diff`` and
``perturb_ratio`` attacks, dataset inference's features after Maini et al. (2024).
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol, Sequence

__all__ = ["MaskedLMPerturber", "PerturbError", "Perturber", "WordSwapPerturber", "word_counts"]

# A word is a maximal run of \w characters; everything between words is kept verbatim.
_WORD = re.compile(r"\w+")


class PerturbError(ValueError):
    """Some texts of a batch cannot be perturbed; ``reasons`` maps each one's index in the
    batch to why.

    The index lets a caller set exactly those texts aside and perturb the others together,
    so their neighbours are what one call without the bad texts makes: probing texts one at
    a time would change a batch-dependent pool (``WordSwapPerturber(pool=None)``).
    """

    def __init__(self, reasons: dict[int, str]):
        self.reasons = dict(sorted(reasons.items()))
        super().__init__("; ".join(f"text {i}: {r}" for i, r in self.reasons.items()))


class Perturber(Protocol):
    """Makes neighbour texts (Mattern et al., 2023).

    Attributes:
        name: Short identifier recorded with results, e.g. ``"word_swap"``.
    """

    name: str

    def perturb(self, texts: Sequence[str], *, n: int, seed: int) -> list[list[str]]:
        """Return, for each text, exactly ``n`` neighbour texts.

        Must be deterministic for a given ``seed`` and raise :class:`PerturbError` with the
        index of every text that cannot be perturbed (the attack turns each into an error
        row and perturbs the rest together); any other ``ValueError`` stops the run.
        """
        ...

    def describe(self) -> dict:
        """The name and every parameter that shapes the neighbours, for ``results.json``."""
        ...


def _stream_seed(*parts: object) -> int:
    """A 128-bit seed from ``parts``; keyed by the text, not its position in a batch."""
    key = "\0".join(map(str, parts)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(key).digest()[:16], "big")


def word_counts(texts: Sequence[str]) -> list[str]:
    """Every word of ``texts``, repeats kept: as a :class:`WordSwapPerturber` pool it draws
    exactly as ``pool=None`` does when these texts are perturbed together."""
    return [w for t in texts for w in _WORD.findall(t)]


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")


def _match_case(word: str, like: str) -> str:
    """``word`` with the first letter's case of ``like`` (the rest of ``word`` unchanged)."""
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    if like[:1].islower():
        return word[:1].lower() + word[1:]
    return word  # digits, underscores, caseless scripts: nothing to preserve


# The implementations import the helpers above, so they are imported last.
from lmaudit.membership.perturb.masked_lm import MaskedLMPerturber  # noqa: E402
from lmaudit.membership.perturb.word_swap import WordSwapPerturber  # noqa: E402
