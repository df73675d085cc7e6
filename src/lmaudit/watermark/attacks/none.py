"""The identity: the watermarked text as it is (every evaluation's baseline row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmaudit.watermark.attacks import ATTACKS, Attacked


@ATTACKS.register("none")
@dataclass(frozen=True)
class NoAttack:
    """No attack: detection on the untouched text, the row every other attack is compared to.

    >>> NoAttack().apply("Some text.").text
    'Some text.'
    """

    name: ClassVar[str] = "none"

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        return Attacked(text)
