"""Offline neighbours: a share of a text's words swapped for words drawn from a pool (no model)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from lmaudit.membership.perturb import _WORD, PerturbError, _check_fraction, _check_n, _match_case, _stream_seed


@dataclass(frozen=True)
class WordSwapPerturber:
    """Replace a share of a text's words with words drawn from a pool.

    A model-free stand-in for the paper's BERT-based neighbours (Mattern et al., 2023): it
    keeps the text's length and layout (punctuation and whitespace are kept exactly), but
    replacements are not chosen for fluency, so neighbours are further from the text than
    the paper's. Use :class:`MaskedLMPerturber` when a masked LM is at hand.

    Example:
        >>> p = WordSwapPerturber(fraction=0.25, pool=["red", "blue", "green"])
        >>> [out] = p.perturb(["The cat sat, quietly."], n=2, seed=0)
        >>> len(out)
        2
        >>> out == p.perturb(["The cat sat, quietly."], n=2, seed=0)[0]
        True

    Attributes:
        fraction: Share of word positions replaced in each neighbour: ``max(1,
            round(fraction * n_words))`` positions, chosen uniformly without replacement.
        pool: Replacement words, each a single run of word characters; repeats weight a
            word. ``None`` uses the words of all texts passed to :meth:`perturb`, weighted
            by frequency (so the pool, unlike the random stream, depends on the batch).
            A replacement never equals the word it replaces and takes that word's
            first-letter case.
    """

    fraction: float = 0.1
    pool: Sequence[str] | None = None

    name: ClassVar[str] = "word_swap"

    def __post_init__(self) -> None:
        _check_fraction(self.fraction)
        if self.pool is not None:
            pool = tuple(self.pool)
            if not pool:
                raise ValueError("pool is empty")
            bad = [w for w in pool if not isinstance(w, str) or not _WORD.fullmatch(w)]
            if bad:
                # A non-word would change the word count and the text's skeleton.
                raise ValueError(f"pool entries must be single words (\\w+), got {bad[:3]!r}")
            object.__setattr__(self, "pool", pool)  # a tuple keeps the frozen instance hashable

    def n_replaced(self, n_words: int) -> int:
        """How many of ``n_words`` word positions a neighbour replaces."""
        return min(n_words, max(1, round(self.fraction * n_words)))

    def describe(self) -> dict:
        pool = None
        if self.pool is not None:
            digest = hashlib.sha256("\n".join(self.pool).encode("utf-8", "surrogatepass")).hexdigest()
            pool = {"size": len(self.pool), "sha256": digest}  # the words themselves can be large
        return {"name": self.name, "fraction": self.fraction, "pool": pool}

    def perturb(self, texts: Sequence[str], *, n: int, seed: int) -> list[list[str]]:
        """Return ``n`` neighbours per text.

        Raises:
            PerturbError: If texts have no word, or a word has no replacement in the pool
                other than itself (naming their indices).
        """
        _check_n(n)
        texts = list(texts)
        spans = [[m.span() for m in _WORD.finditer(t)] for t in texts]
        wordless = {i: "has no word to replace" for i, s in enumerate(spans) if not s}
        if wordless:
            raise PerturbError(wordless)
        counts = Counter(self.pool) if self.pool is not None else Counter(w for t in texts for w in _WORD.findall(t))
        vocab = sorted(counts)  # sorted: the draw does not depend on the order words were seen
        cdf = np.cumsum([counts[w] for w in vocab], dtype=np.float64)
        fallback: dict[str, tuple[list[str], np.ndarray]] = {}

        def sample(words: list[str], cum: np.ndarray, rng: np.random.Generator) -> str:
            return words[int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))]

        def draw(word: str, rng: np.random.Generator, i: int) -> str:
            pick = _match_case(sample(vocab, cdf, rng), word)
            if pick != word:
                return pick
            # Rare: redraw from the pool without the words that would leave this one as it
            # is, which is exactly the pool's distribution conditioned on a change.
            if word not in fallback:
                keep = [w for w in vocab if _match_case(w, word) != word]
                fallback[word] = (keep, np.cumsum([counts[w] for w in keep], dtype=np.float64))
            words, sub_cdf = fallback[word]
            if not words:
                raise PerturbError({i: f"the pool has no replacement for {word!r} other than itself"})
            return _match_case(sample(words, sub_cdf, rng), word)

        out = []
        for i, (text, sp) in enumerate(zip(texts, spans)):
            k = self.n_replaced(len(sp))
            neighbours = []
            for j in range(n):
                rng = np.random.default_rng(_stream_seed(self.name, seed, j, text))
                pieces, last = [], 0
                for p in np.sort(rng.choice(len(sp), size=k, replace=False)):
                    start, end = sp[p]
                    pieces += [text[last:start], draw(text[start:end], rng, i)]
                    last = end
                pieces.append(text[last:])
                neighbours.append("".join(pieces))
            out.append(neighbours)
        return out
