"""Neighbour texts for the neighbourhood membership attack.

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
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Protocol, Sequence

import numpy as np

__all__ = ["MaskedLMPerturber", "PerturbError", "Perturber", "WordSwapPerturber"]

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


class MaskedLMPerturber:
    """Let a masked language model propose the replacements (Mattern et al., 2023, used BERT).

    Per neighbour: choose ``ceil(fraction * m)`` of a text's ``m`` maskable tokens
    uniformly, replace them all with the mask token, run the model once, and at each
    masked position sample one token from the ``top_k`` most likely, excluding the
    original token and special tokens (probabilities renormalised over those ``top_k``).
    Only the words holding a replaced token are rewritten in the text; every other
    character, including whitespace and case, stays as it was.

    Limits:
        * Replacement is per subword token, not per word: replacing ``##ing`` in
          ``walking`` can give ``walked``, or ``walk the`` if the model picks a
          word-initial token.
        * All masked positions are filled in one pass, independently of each other, so
          neighbours with many replacements can be less fluent than one-at-a-time filling.
        * The paper's own generator differs: it kept the original token visible but
          applied dropout (p=0.7) to its input embedding, made one replacement per
          neighbour and kept the ``n`` best-scoring ones; this class masks instead, which
          gives replacements that ignore the original word.
        * A rewritten word is decoded by the tokenizer, so an uncased model lowercases it
          (its first letter's case is restored; inner capitals, as in "McKay", are lost).
        * Texts longer than the model's context are cut into consecutive windows, each
          run separately; the model sees no context across a window edge.
        * Tokens of a word that contains an unknown token are never masked, so no special
          token string can be written into a neighbour.
        * Needs a fast tokenizer (character offsets) with a mask token.

    Example:
        >>> p = MaskedLMPerturber.from_pretrained("bert-base-cased")  # doctest: +SKIP
        >>> p.perturb(["Ada Lovelace was born in London in 1815."], n=3, seed=0)  # doctest: +SKIP
    """

    name = "masked_lm"

    def __init__(self, model, tokenizer, *, fraction: float = 0.1, top_k: int = 10, batch_size: int = 32):
        """Wrap a loaded masked LM.

        Args:
            model: A ``transformers`` masked LM (e.g. ``BertForMaskedLM``). It is put in
                eval mode: dropout would draw from torch's global RNG and break the seed.
            tokenizer: Its fast tokenizer; must have a mask token.
            fraction: Share of maskable tokens replaced per neighbour (at least one).
            top_k: Candidates per masked position that the replacement is sampled from.
            batch_size: Rows (text windows) per forward pass. The logits take
                ``batch_size * length * vocab`` floats (about 2 GB at 32 x 512 x 30k).
        """
        _check_fraction(fraction)
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be positive, got {top_k} and {batch_size}")
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token")
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("MaskedLMPerturber needs a fast tokenizer (it splices by character offsets)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.fraction = fraction
        self.top_k = top_k
        self.batch_size = batch_size
        self._special = frozenset(tokenizer.all_special_ids)
        limits = [getattr(tokenizer, "model_max_length", None), getattr(model.config, "max_position_embeddings", None)]
        limits = [v for v in limits if isinstance(v, int) and 0 < v < 1_000_000]  # tokenizers use 1e30 for "unknown"
        if not limits:
            raise ValueError("cannot tell the model's context length")
        self.max_length = min(limits)
        # Padding is masked out by the attention mask, so any id the embedding has will do.
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Decoding a word after a fixed "anchor" token and cutting the anchor off again
        # gives its surface form even when it starts with a continuation piece ("##ing").
        self._anchor = tokenizer("a", add_special_tokens=False)["input_ids"][:1]
        self._anchor_text = tokenizer.decode(self._anchor, clean_up_tokenization_spaces=False)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu", *, fraction: float = 0.1, top_k: int = 10,
                        batch_size: int = 32) -> "MaskedLMPerturber":
        """Load ``AutoModelForMaskedLM`` and ``AutoTokenizer`` by hub name or local path (safetensors only)."""
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForMaskedLM.from_pretrained(name_or_path, use_safetensors=True).to(device)  # never unpickle
        return cls(model, tokenizer, fraction=fraction, top_k=top_k, batch_size=batch_size)

    def describe(self) -> dict:
        model = getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__
        return {"name": self.name, "model": model, "tokenizer": getattr(self.tokenizer, "name_or_path", ""),
                "fraction": self.fraction, "top_k": self.top_k, "max_length": self.max_length,
                "batch_size": self.batch_size}

    def n_replaced(self, n_maskable: int) -> int:
        """How many of ``n_maskable`` tokens a neighbour replaces."""
        # round() first: 0.1 * 30 is 3.0000000000000004 in floating point, whose ceil is 4.
        return min(n_maskable, max(1, math.ceil(round(self.fraction * n_maskable, 9))))

    def perturb(self, texts: Sequence[str], *, n: int, seed: int) -> list[list[str]]:
        """Return ``n`` neighbours per text.

        Raises:
            PerturbError: If texts have no maskable token (naming their indices).
        """
        texts = list(texts)
        enc, rows, replaced = self._replace(texts, n=n, seed=seed)
        return [[self._splice(text, enc, rows[i], new) for new in replaced[i]] for i, text in enumerate(texts)]

    def perturb_ids(self, texts: Sequence[str], *, n: int, seed: int) -> list[list[list[int]]]:
        """The neighbours of :meth:`perturb` as token ids, before decoding.

        Returns:
            Per text, ``n`` id lists: the text's tokens without special tokens (as
            ``tokenizer(text, add_special_tokens=False)`` gives them), with the replaced
            ones swapped. Re-encoding a decoded neighbour need
            not give these ids back, so this is where replacements can be counted.
        """
        texts = list(texts)
        enc, rows, replaced = self._replace(texts, n=n, seed=seed)
        out = []
        for i in range(len(texts)):
            content = [(r, p) for r in rows[i] for p, s in enumerate(enc["special_tokens_mask"][r]) if not s]
            out.append([[new.get((r, p), enc["input_ids"][r][p]) for r, p in content] for new in replaced[i]])
        return out

    # ----------------------------------------------------------------- internals
    def _replace(self, texts: list[str], *, n: int, seed: int):
        """Sample replacements: ``(encoding, rows per text, per text n {(row, pos): new id})``."""
        import torch

        from lmaudit.ops.padding import pad_batch

        _check_n(n)
        # Overflowing rows are consecutive windows of the whole text's tokens, each with
        # the tokenizer's own special tokens; offsets and word ids stay those of the text.
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_overflowing_tokens=True,
                             return_offsets_mapping=True, return_special_tokens_mask=True, verbose=False)
        rows: list[list[int]] = [[] for _ in texts]
        for r, i in enumerate(enc["overflow_to_sample_mapping"]):
            rows[i].append(r)

        maskables = [self._maskable(enc, rows[i]) for i in range(len(texts))]
        unmaskable = {i: "has no maskable token" for i, m in enumerate(maskables) if not m}
        if unmaskable:
            raise PerturbError(unmaskable)
        jobs = []  # (text, neighbour, generator, sorted masked (row, pos))
        for i, (text, maskable) in enumerate(zip(texts, maskables)):
            for j in range(n):
                gen = torch.Generator().manual_seed(_stream_seed(self.name, seed, j, text) >> 65)  # 63 bits
                pick = torch.randperm(len(maskable), generator=gen)[: self.n_replaced(len(maskable))]
                jobs.append((i, j, gen, sorted(maskable[k] for k in pick.tolist())))

        # One model row per (neighbour, window that has a masked position).
        inputs = []  # (job index, row, masked positions)
        for q, (_, _, _, chosen) in enumerate(jobs):
            for r in dict.fromkeys(r for r, _ in chosen):
                inputs.append((q, r, [p for rr, p in chosen if rr == r]))
        device = next(self.model.parameters()).device
        candidates: dict[tuple[int, int, int], tuple] = {}  # (job, row, pos) -> (top-k ids, top-k logits)
        with torch.inference_mode():
            for b in range(0, len(inputs), self.batch_size):
                batch = inputs[b : b + self.batch_size]
                seqs = []
                for _, r, ps in batch:
                    ids = list(enc["input_ids"][r])
                    for p in ps:
                        ids[p] = self.tokenizer.mask_token_id
                    seqs.append(ids)
                ids, mask, _, _ = pad_batch(seqs, pad_token_id=self._pad_id)  # right padding keeps BERT's positions
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (B, T, V)
                bi = torch.tensor([k for k, (_, _, ps) in enumerate(batch) for _ in ps], device=device)
                pi = torch.tensor([p for _, _, ps in batch for p in ps], device=device)
                sel = logits[bi, pi].float()  # (N, V): only the masked positions
                vocab = sel.shape[-1]
                banned = [t for t in self._special if t < vocab]
                sel[:, banned] = float("-inf")
                orig = torch.tensor([enc["input_ids"][r][p] for _, r, ps in batch for p in ps], device=device)
                sel[torch.arange(len(orig), device=device), orig] = float("-inf")
                top = sel.topk(min(self.top_k, vocab - len(banned) - 1), dim=-1)  # never reaches a -inf entry
                values, indices = top.values.cpu(), top.indices.cpu()
                keys = [(q, r, p) for q, r, ps in batch for p in ps]
                for x, key in enumerate(keys):
                    candidates[key] = (indices[x], values[x])

        # Sample per neighbour, in a fixed order, after all forward passes: the draws do
        # not depend on how rows were batched.
        replaced: list[list[dict]] = [[] for _ in texts]
        for q, (i, _, gen, chosen) in enumerate(jobs):
            cand = [candidates[(q, r, p)] for r, p in chosen]
            probs = torch.softmax(torch.stack([v for _, v in cand]), dim=-1)  # (K, top_k)
            draw = torch.multinomial(probs, 1, generator=gen)[:, 0]
            replaced[i].append({pos: int(c[0][d]) for pos, c, d in zip(chosen, cand, draw.tolist())})
        return enc, rows, replaced

    def _maskable(self, enc, rows: list[int]) -> list[tuple[int, int]]:
        """(row, pos) of non-special tokens whose word has no unknown token, in text order."""
        word_ids = {r: enc.word_ids(r) for r in rows}  # word_ids() builds a new list on each call
        tokens = [(r, p) for r in rows for p, s in enumerate(enc["special_tokens_mask"][r]) if not s]
        tainted = {word_ids[r][p] for r, p in tokens if enc["input_ids"][r][p] in self._special}
        return [(r, p) for r, p in tokens
                if enc["input_ids"][r][p] not in self._special and word_ids[r][p] not in tainted]

    def _splice(self, text: str, enc, rows: list[int], new: dict[tuple[int, int], int]) -> str:
        """Rewrite only the words that hold a replaced token; keep every other character."""
        words: dict[object, list[tuple[int, int]]] = {}
        for r in rows:
            word_ids = enc.word_ids(r)
            for p, s in enumerate(enc["special_tokens_mask"][r]):
                if not s:
                    w = word_ids[p]
                    words.setdefault(("tok", r, p) if w is None else w, []).append((r, p))
        changed = []
        for tokens in words.values():
            if any(t in new for t in tokens):
                start = min(enc["offset_mapping"][r][p][0] for r, p in tokens)
                end = max(enc["offset_mapping"][r][p][1] for r, p in tokens)
                ids = [new.get((r, p), enc["input_ids"][r][p]) for r, p in tokens]
                changed.append((start, end, _match_case(self._surface(ids), text[start:end])))
        pieces, last = [], 0
        for start, end, surface in sorted(changed):
            pieces += [text[last:start], surface]
            last = end
        pieces.append(text[last:])
        return "".join(pieces)

    def _surface(self, ids: list[int]) -> str:
        decoded = self.tokenizer.decode(self._anchor + ids, clean_up_tokenization_spaces=False)
        if decoded.startswith(self._anchor_text):
            return decoded[len(self._anchor_text):].strip()
        return self.tokenizer.decode(ids, clean_up_tokenization_spaces=False).strip()
