"""Neighbours proposed by a masked language model (Mattern et al. 2023 used BERT)."""

from __future__ import annotations

import math
from typing import Sequence


from lmaudit.membership.perturb import PerturbError, _check_fraction, _check_n, _match_case, _stream_seed


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
