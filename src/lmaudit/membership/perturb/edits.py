"""Small offline text edits for dataset inference's perturbation features (Maini et al. 2024).

Maini et al., "LLM Dataset Inference: Did you train on my dataset?" (NeurIPS 2024,
https://arxiv.org/abs/2406.06443) perturb every document with six NL-Augmenter
transformations (synonym substitution, butter fingers, random deletion, change char case,
whitespace perturbation, underscore trick) and use the model's loss on each perturbed copy
relative to the original's as features. Each function here is one of those edits, pure and
offline: ``edit(text, *, seed, <rate>)`` returns the edited text.

Two choices differ from NL-Augmenter, on purpose:

* **Exact counts.** NL-Augmenter edits each eligible position independently with
  probability p, so a short text may come back unchanged (its loss ratio is then exactly 1,
  a feature that says nothing). Here ``max(1, round(p · n))`` of the n eligible positions
  are edited (Python's ``round``, half to even), chosen uniformly without replacement: the
  same expected share, and every text that has an eligible position is changed.
* **Per-text seeds.** The random stream is keyed by the edit, the seed and the text itself
  (:func:`~lmaudit.membership.perturb._stream_seed`), never by a position in a batch or a
  global ``random.seed``, so a text gets the same edit whatever it is scored with.

A text with no eligible position (no letter for typos, a single word for deletion, no space
for underscores, ...) raises :class:`NothingToEdit` with the reason: an "edited" copy equal
to the text would give a meaningless feature, so the caller reports it (the perturbation
attacks turn it into an error row naming the reason).

Rates are NL-Augmenter's defaults (the rates its transformation classes pass). Maini et
al.'s ``transform.py`` asks for others (typos 0.1, case 0.25, underscores 0.25, synonyms
0.2, deletion 0.25; whitespace "0.25" without saying which of its two rates), partly
through ``generate(..., prob=...)`` arguments that NL-Augmenter's published classes do not
take, so what their runs used cannot be read from public code. Every function takes its
rate as an argument.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from lmaudit.membership.perturb import _WORD, PerturbError, _stream_seed
from lmaudit.membership.perturb.word_swap import WordSwapPerturber

__all__ = ["EDITS", "NothingToEdit", "apply_edit", "delete_words", "edit_rates", "flip_case", "keyboard_typos",
           "perturb_whitespace", "swap_words", "underscore_spaces"]

_TOKEN = re.compile(r"\S+")  # what deletion removes: a whitespace-separated word, its punctuation with it


class NothingToEdit(ValueError):
    """The edit has no position it could change in this text (the message says why)."""


def _rng(kind: str, seed: int, text: str) -> np.random.Generator:
    return np.random.default_rng(_stream_seed("edit", kind, seed, text))


def _count(rate: float, n: int) -> int:
    """How many of ``n`` eligible positions an edit changes: round(rate · n), at least one."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate!r}")
    return min(n, max(1, round(rate * n)))


def _pick(rng: np.random.Generator, eligible: list[int], k: int) -> list[int]:
    """``k`` of the eligible positions, uniformly without replacement, in text order."""
    return sorted(eligible[j] for j in rng.choice(len(eligible), size=k, replace=False))


def _edit_characters(text: str, *, kind: str, seed: int, rate: float, eligible: Callable[[str], bool], why: str,
                     new: Callable[[str, np.random.Generator], str]) -> str:
    """``new(character, rng)`` in place of ``_count(rate, n)`` of the n eligible characters."""
    positions = [i for i, ch in enumerate(text) if eligible(ch)]
    if not positions:
        raise NothingToEdit(why)
    rng = _rng(kind, seed, text)
    chars = list(text)
    for i in _pick(rng, positions, _count(rate, len(positions))):
        chars[i] = new(chars[i], rng)
    return "".join(chars)


def _neighbours() -> dict[str, str]:
    # QWERTY rows; a key touches its row neighbours, the two keys above it (same column and
    # one to the right: rows are shifted right going down) and the two below it.
    rows = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
    out = {}
    for r, row in enumerate(rows):
        for c, key in enumerate(row):
            near = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
            out[key] = "".join(rows[i][j] for i, j in near if 0 <= i < 3 and 0 <= j < len(rows[i]))
    return out


#: Each ASCII letter's neighbours on a QWERTY keyboard (never the letter itself).
KEYBOARD_NEIGHBOURS = _neighbours()


def keyboard_typos(text: str, *, seed: int = 0, rate: float = 0.05) -> str:
    """Replace a share of the ASCII letters with a keyboard neighbour (NL-Augmenter's
    "butter fingers"), keeping each letter's case.

    Args:
        rate: Share of the ASCII letters replaced; 0.05 is NL-Augmenter's. Its neighbour
            lists include the letter itself, so some of its "typos" change nothing; here the
            replacement is drawn uniformly from the adjacent keys (:data:`KEYBOARD_NEIGHBOURS`).

    >>> keyboard_typos("Hello", seed=0) != "Hello"
    True
    """
    def mistype(ch: str, rng: np.random.Generator) -> str:
        near = KEYBOARD_NEIGHBOURS[ch.lower()]
        typo = near[rng.integers(len(near))]
        return typo.upper() if ch.isupper() else typo

    return _edit_characters(text, kind="typos", seed=seed, rate=rate, why="has no ASCII letter to mistype",
                            eligible=lambda ch: ch.isascii() and ch.lower() in KEYBOARD_NEIGHBOURS, new=mistype)


def delete_words(text: str, *, seed: int = 0, rate: float = 0.25) -> str:
    """Delete a share of the whitespace-separated words, never all of them (NL-Augmenter's
    "random deletion"), each with the whitespace on one side, so the rest of the layout is
    kept (NL-Augmenter rejoins the kept words with single spaces).

    Args:
        rate: Share of the words deleted, at most all but one; 0.25 is NL-Augmenter's.
    """
    spans = [m.span() for m in _TOKEN.finditer(text)]
    if len(spans) < 2:
        raise NothingToEdit("has fewer than two words: deleting one would leave nothing")
    k = min(len(spans) - 1, _count(rate, len(spans)))
    gone = set(_pick(_rng("deletion", seed, text), list(range(len(spans))), k))
    # A deleted word goes with the whitespace before it, back to the previous word; one with
    # no kept word before it goes with the whitespace after it, so the text never starts
    # with the gap a deleted first word left.
    pieces, last, kept_before = [], 0, False
    for j, (start, end) in enumerate(spans):
        if j not in gone:
            kept_before = True
            continue
        start, end = (spans[j - 1][1], end) if kept_before else (start, spans[j + 1][0])
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _flippable(ch: str) -> bool:
    """A character whose case swaps to exactly one other character ("ß" becomes "SS": not flipped)."""
    other = ch.swapcase()
    return len(other) == 1 and other != ch


def flip_case(text: str, *, seed: int = 0, rate: float = 0.1) -> str:
    """Swap the case of a share of the cased characters, any script (NL-Augmenter's
    "change char case").

    Args:
        rate: Share of the characters whose case can be swapped that are swapped; 0.1 is
            NL-Augmenter's.
    """
    return _edit_characters(text, kind="case", seed=seed, rate=rate, why="has no cased letter", eligible=_flippable,
                            new=lambda ch, rng: ch.swapcase())


def perturb_whitespace(text: str, *, seed: int = 0, remove_rate: float = 0.1, add_rate: float = 0.05) -> str:
    """Remove a share of the whitespace characters and insert spaces inside runs of
    non-whitespace (NL-Augmenter's "whitespace perturbation").

    round(remove_rate · whitespace characters) are removed and round(add_rate · other
    characters) spaces inserted, each after a non-whitespace character not already followed
    by whitespace (so a removal and an insertion never cancel out); at least one edit in all,
    an insertion where there is room for one.

    Args:
        remove_rate: Share of the whitespace characters removed; 0.1 is NL-Augmenter's.
        add_rate: Spaces inserted per non-whitespace character; 0.05 is NL-Augmenter's.
    """
    for name, r in (("remove_rate", remove_rate), ("add_rate", add_rate)):
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {r!r}")
    if not text:
        raise NothingToEdit("is empty")
    spaces = [i for i, ch in enumerate(text) if ch.isspace()]
    n_other = len(text) - len(spaces)
    gaps = [i for i, ch in enumerate(text) if not ch.isspace() and (i + 1 == len(text) or not text[i + 1].isspace())]
    rng = _rng("whitespace", seed, text)
    n_remove, n_add = round(remove_rate * len(spaces)), min(len(gaps), round(add_rate * n_other))
    if n_remove + n_add == 0:
        n_add, n_remove = (1, 0) if gaps else (0, 1)
    removed = set(_pick(rng, spaces, n_remove))
    after = set(_pick(rng, gaps, n_add))
    return "".join("" if i in removed else ch + " " if i in after else ch for i, ch in enumerate(text))


def underscore_spaces(text: str, *, seed: int = 0, rate: float = 0.05) -> str:
    """Replace a share of the spaces (U+0020) with underscores (NL-Augmenter's "underscore trick").

    Args:
        rate: Share of the spaces replaced; 0.05 is NL-Augmenter's.
    """
    return _edit_characters(text, kind="underscores", seed=seed, rate=rate, why="has no space",
                            eligible=lambda ch: ch == " ", new=lambda ch, rng: "_")


def swap_words(text: str, *, seed: int = 0, rate: float = 0.1) -> str:
    """Replace a share of the words (``\\w+``) with other words of the same text: the offline
    stand-in for NL-Augmenter's synonym substitution, which needs WordNet and a POS tagger.

    It is :class:`~lmaudit.membership.perturb.WordSwapPerturber` with the text's own words
    as its pool, so the edit depends on the text alone. A replacement is not a synonym, so
    it moves the text further than a synonym would: the rate is the neighbourhood attack's
    0.1 of all words, not NL-Augmenter's 0.5 of the words that have a WordNet synonym.

    Args:
        rate: Share of the words replaced.
    """
    words = _WORD.findall(text)
    if not words:
        raise NothingToEdit("has no word")
    try:
        [[edited]] = WordSwapPerturber(fraction=rate, pool=words).perturb([text], n=1, seed=seed)
    except PerturbError as err:  # every word the same (up to a first capital): nothing else to put in
        raise NothingToEdit(f"has no two different words: {err.reasons[0]}") from None
    return edited


#: Every edit by kind, in Maini et al.'s order of their NL-Augmenter transformations.
EDITS: dict[str, Callable[..., str]] = {
    "word_swap": swap_words,
    "typos": keyboard_typos,
    "deletion": delete_words,
    "case": flip_case,
    "whitespace": perturb_whitespace,
    "underscores": underscore_spaces,
}


def apply_edit(kind: str, text: str, *, seed: int = 0) -> str:
    """``text`` under the edit ``kind`` at its default rates.

    Raises:
        NothingToEdit: The text has nothing this edit could change.
    """
    return EDITS[kind](text, seed=seed)


def edit_rates(kind: str) -> dict[str, float]:
    """The default rates of the edit ``kind``, for results.json."""
    return {k: v for k, v in (EDITS[kind].__kwdefaults__ or {}).items() if k != "seed"}
