"""Offline attacks on watermarked text: text in, edited text out, no tokenizer.

Watermark evaluations (Kirchenbauer et al., "A Watermark for Large Language Models", ICML
2023, https://arxiv.org/abs/2301.10226; "On the Reliability of Watermarks for Large Language
Models", 2023, https://arxiv.org/abs/2306.04634) edit watermarked text the way someone
hiding its origin would, then ask whether detection survives. Each attack here is a frozen
dataclass whose fields are its parameters, registered by name in :data:`ATTACKS`, one per
module; :func:`parse_attacks` turns a spec such as
``"none,delete,substitute(fraction=0.3),copy_paste(n_spans=3,span_words=25)"`` into them.

Conventions every attack follows:

* **Words.** Unless an attack says otherwise a word is a maximal run of non-whitespace
  characters (``\\S+``, punctuation included); fractions count those words and an attack
  changes exactly ``max(1, round(fraction · n))`` of the n words (none when fraction is 0).
* **Randomness.** A text's random stream comes from :func:`seed_from` ``(seed, name, text)``,
  so a text gets the same attack whatever it is batched with, and the same text under
  another seed gets another.
* **Empty text.** A text without a word is returned unchanged by every attack but
  ``copy_paste``, which needs a given number of watermarked words and refuses it.
* **Where the watermark is.** :class:`Attacked` carries the output and, for attacks that mix
  in human text, the character spans of the output that hold watermarked material.

Example:
    >>> [(label, attack.apply("one two three four five", seed=1).text) for label, attack in parse_attacks("none,truncate(words=2)")]
    [('none', 'one two three four five'), ('truncate(words=2)', 'one two')]
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Sequence, Union

import numpy as np

from lmaudit.membership.perturb import _stream_seed
from lmaudit.registry import Registry

__all__ = ["ATTACKS", "Attack", "Attacked", "apply_attack", "describe", "parse_attacks", "seed_from"]

#: Every attack, by name. Modules in this package register their classes.
ATTACKS = Registry("watermark attack", package="lmaudit.watermark.attacks")

# What most attacks call a word (substitute, through WordSwapPerturber, uses \w+ runs).
WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Attacked:
    """An attack's output.

    Attributes:
        text: The attacked text.
        watermarked: Half-open character spans ``(start, end)`` of ``text`` that hold
            watermarked material, in order, for attacks that mix in unwatermarked text
            (``copy_paste``); None when all of ``text`` derives from the watermarked text.
    """

    text: str
    watermarked: tuple[tuple[int, int], ...] | None = None


class Attack(Protocol):
    """A text-to-text attack on watermarked text.

    Attributes:
        name: The name it is registered under.
    """

    name: ClassVar[str]

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        """``text`` attacked, deterministically for ``(seed, text)``.

        ``human`` is an unwatermarked text to mix the watermarked one into; only attacks
        that mix need it (they raise ValueError without it), the others ignore it.
        """
        ...


def seed_from(seed: int, name: str, text: str, *more: object) -> int:
    """The seed of one text's random stream under one attack (keyed by content, not position).

    >>> seed_from(0, "delete", "a b") == seed_from(0, "delete", "a b") != seed_from(1, "delete", "a b")
    True
    """
    return _stream_seed("watermark-attack", name, seed, text, *more)


def rng_for(seed: int, name: str, text: str, *more: object) -> np.random.Generator:
    """``numpy.random.default_rng(seed_from(...))``."""
    return np.random.default_rng(seed_from(seed, name, text, *more))


def check_fraction(name: str, fraction: float, *, allow_zero: bool = True) -> None:
    low = "[0, 1]" if allow_zero else "(0, 1]"
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            (0.0 <= fraction if allow_zero else 0.0 < fraction) and fraction <= 1.0):
        raise ValueError(f"{name}: fraction must be in {low}, got {fraction!r}")


def n_changed(fraction: float, n: int) -> int:
    """How many of ``n`` positions an attack changes: round(fraction · n), at least one when
    the fraction is positive, at most n (Python's round: half to even)."""
    return 0 if fraction == 0 or n == 0 else min(n, max(1, round(fraction * n)))


def pick(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """``k`` of ``range(n)``, uniformly without replacement, sorted."""
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False)) if k else []


def word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in WORD.finditer(text)]


def rewrite(text: str, spans: Sequence[tuple[int, int]], chosen: Sequence[int], edit) -> str:
    """``text`` with the words at ``spans[j]``, j in ``chosen`` (sorted), replaced by
    ``edit(word)``; everything between them kept verbatim."""
    pieces, last = [], 0
    for j in chosen:
        start, end = spans[j]
        pieces += [text[last:start], edit(text[start:end])]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def apply_attack(attack: Attack, texts: Sequence[str], *, seed: int = 0,
                 human: Sequence[str] | None = None) -> list[Attacked]:
    """``attack`` on each text (with ``human[i]`` for text i when given), batched where the
    attack can batch (a paraphraser generates for all texts at once)."""
    texts = list(texts)
    if human is not None and len(human) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(human)} human texts")
    batch = getattr(attack, "apply_batch", None)
    if batch is not None and human is None:
        return batch(texts, seed=seed)
    return [attack.apply(t, seed=seed, human=None if human is None else human[i]) for i, t in enumerate(texts)]


def describe(attack: Attack) -> dict:
    """The attack's name and parameters, for results files (a pool as its size and hash,
    a paraphraser as its own ``describe()`` or its type)."""
    out: dict[str, Any] = {"name": attack.name}
    for f in dataclasses.fields(attack):
        value = getattr(attack, f.name)
        if f.name == "pool" and value is not None:
            digest = hashlib.sha256("\n".join(value).encode("utf-8", "surrogatepass")).hexdigest()
            value = {"size": len(value), "sha256": digest}
        elif f.name == "paraphraser" and value is not None:
            value = value.describe() if callable(getattr(value, "describe", None)) else type(value).__name__
        out[f.name] = value
    return out


# --- specs -------------------------------------------------------------------------------

def _split_top(spec: str) -> list[str]:
    """``spec`` split at commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(spec):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' at character {i} of {spec!r}")
        elif ch == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '(' in {spec!r}")
    parts.append(spec[start:])
    return [p.strip() for p in parts]


def _parse_value(kind: Any, raw: str) -> Any:
    """``raw`` as a value of the annotated type ``kind`` (int, float, str, bool or optional
    one of those); TypeError when the type cannot be written in a spec."""
    if typing.get_origin(kind) in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) != 1:
            raise TypeError
        if raw.lower() == "none":
            return None
        kind = args[0]
    if kind is bool:
        if raw.lower() not in ("true", "false"):
            raise ValueError("true or false")
        return raw.lower() == "true"
    if kind is int:
        if not re.fullmatch(r"[+-]?\d+", raw):
            raise ValueError("an integer")
        return int(raw)
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError("a number") from None
    if kind is str:
        return raw
    raise TypeError


def _build(item: str, paraphraser) -> tuple[str, Attack]:
    m = re.fullmatch(r"(\w+)\s*(?:\((.*)\))?", item, flags=re.S)
    if not m:
        raise ValueError(f"cannot read attack {item!r}: write name or name(param=value,...)")
    name, body = m.group(1), m.group(2)
    try:
        cls = ATTACKS.get(name)
    except KeyError as err:
        raise ValueError(f"{err.args[0]} (in {item!r})") from None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    settable = [n for n in fields if n != "paraphraser"]
    kwargs: dict[str, Any] = {}
    given: list[str] = []
    for pair in ([] if body is None or not body.strip() else body.split(",")):
        key, eq, raw = (s.strip() for s in pair.partition("="))
        if not eq or not key:
            raise ValueError(f"attack {name!r}: write param=value, got {pair.strip()!r} (in {item!r})")
        if key not in settable:
            allowed = ", ".join(settable) or "none"
            raise ValueError(f"attack {name!r} has no parameter {key!r}; allowed: {allowed} (in {item!r})")
        if key in kwargs:
            raise ValueError(f"attack {name!r}: parameter {key!r} given twice (in {item!r})")
        try:
            kwargs[key] = _parse_value(hints[key], raw)
        except TypeError:
            raise ValueError(f"attack {name!r}: parameter {key!r} cannot be set in a spec; "
                             "construct the attack in Python to set it") from None
        except ValueError as why:
            raise ValueError(f"attack {name!r}: parameter {key!r} must be {why}, got {raw!r} (in {item!r})") from None
        given.append(f"{key}={raw}")
    if "paraphraser" in fields:
        if paraphraser is None:
            raise ValueError(f"attack {name!r} needs a paraphraser, which a spec cannot name: pass one, "
                             "parse_attacks(spec, paraphraser=LMParaphraser(lm))")
        kwargs["paraphraser"] = paraphraser
    try:
        attack = cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"{err} (in {item!r})") from None
    label = f"{name}({','.join(given)})" if given else name
    return label, attack


def parse_attacks(spec: str | Sequence[str], *, paraphraser=None) -> list[tuple[str, Attack]]:
    """(label, attack) for each attack of a comma-separated spec, in the given order.

    An attack is written ``name`` (its defaults) or ``name(param=value,...)``; values are
    read as the parameter's type (``none`` for an optional one left unset). The label is the
    attack as written, without spaces. Parameters that are not numbers or strings
    (``substitute``'s pool) and ``paraphrase``'s paraphraser cannot be written in a spec: the
    paraphraser is passed as ``paraphraser=`` and used by every ``paraphrase`` of the spec.

    >>> [label for label, _ in parse_attacks("none, delete, substitute(fraction=0.3), copy_paste(n_spans=3, span_words=25)")]
    ['none', 'delete', 'substitute(fraction=0.3)', 'copy_paste(n_spans=3,span_words=25)']
    >>> parse_attacks("delet")
    Traceback (most recent call last):
    ...
    ValueError: unknown watermark attack 'delet'; did you mean 'delete'? (known: copy_paste, delete, homoglyph, none, paraphrase, substitute, truncate, unicode, whitespace) (in 'delet')

    Raises:
        ValueError: An empty spec or item, an unknown attack (with a suggestion), an unknown
            parameter (naming the allowed ones), a value of the wrong type or out of range,
            or two items that are the same attack.
    """
    items = _split_top(spec) if isinstance(spec, str) else [s.strip() for s in spec]
    if not any(items):
        raise ValueError(f"no attack in {spec!r}")
    out: list[tuple[str, Attack]] = []
    for item in items:
        if not item:
            raise ValueError(f"empty attack in {spec!r}")
        label, attack = _build(item, paraphraser)
        for other_label, other in out:
            if label == other_label or attack == other:
                raise ValueError(f"{item!r} is the same attack as {other_label!r}")
        out.append((label, attack))
    return out
