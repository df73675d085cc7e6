"""R-CAD: reversed context-aware decoding, steering generation away from a protected passage.

Context-aware decoding (Shi et al. 2023, https://arxiv.org/abs/2305.14739) sharpens what a
context adds: (1+α)·logits(y | c, x) − α·logits(y | x). CoTaEval (Wei et al. 2024,
https://arxiv.org/abs/2406.18664) reverses the roles to take a passage down: with c the
protected passage,

    scores = (1+α)·logits(y | x) − α·logits(y | c, x),    α = 1 by default,

so whatever the passage makes likely beyond what the prompt alone does (above all, its own
next words) is pushed down. CoTaEval's runs use α = 1 (its result files ``cad_1.0``; the
argparse default of 0 switches the method off).

Where lmaudit differs from CoTaEval's code, on purpose:

- The passage is retrieved for each prompt from the protected corpus (BM25, see
  :class:`~lmaudit.takedown.retrieval.BM25Retriever`), or given by any function of the
  prompt texts. CoTaEval passes the ground truth itself (an oracle), as ``prompt + " " +
  continuation``, and runs the model on that without the prompt after it.
- The context sequence is ``[BOS] + passage + prompt`` (the passage cut from the left to fit
  the context), so logits(y | c, x) is conditioned on the same prompt as logits(y | x).
- It is a plain logits processor, not a patched ``generate``: the context sequence keeps its
  own KV cache (one forward over the whole batch at the first step, then one token per row
  per step), so R-CAD costs one extra single-token forward per step after the first.

How it plugs in: :class:`RCADProcessor` is a Hugging Face logits processor. The ``scores`` it
receives are the plain prompt's logits as ``generate`` computed them, after any processor
before it; R-CAD assumes they are still raw logits, so put it first in the list (HFModel's
greedy decoding adds no processor of its own; sampling warpers come after user processors).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from lmaudit.models.base import GenerationConfig
from lmaudit.ops.padding import pad_batch
from lmaudit.takedown.retrieval import BM25Retriever, Hits
from lmaudit.takedown.steps import StepTracker

__all__ = ["BM25Retriever", "Hits", "RCADProcessor", "prompt_body"]


def _cache_name() -> str:
    """What this transformers calls the KV cache, as a forward argument and an output field:
    ``cache`` from 5.2x on (``past_key_values`` is deprecated there), ``past_key_values`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def prompt_body(row: Sequence[int], *, pad_token_id: int, bos_token_id: int | None) -> list[int]:
    """A left-padded row's prompt without its padding and BOS: what R-CAD puts after the passage.

    The rule: drop the leading run of pad tokens, then one BOS if the next token is BOS.
    When the pad token is the BOS token (GPT-2 and Pythia pad with <|endoftext|>, which is
    also their BOS and EOS), the leading run already swallows the BOS. A prompt whose text
    itself begins with the pad token loses that token too (text prompts never do: lmaudit
    pads with a special token, or with EOS).

    >>> prompt_body([0, 0, 1, 7, 8], pad_token_id=0, bos_token_id=1)
    [7, 8]
    >>> prompt_body([50256, 50256, 7, 8], pad_token_id=50256, bos_token_id=50256)
    [7, 8]
    """
    i = 0
    while i < len(row) and row[i] == pad_token_id:
        i += 1
    if bos_token_id is not None and bos_token_id != pad_token_id and i < len(row) and row[i] == bos_token_id:
        i += 1
    return list(row[i:])


class RCADProcessor:
    """R-CAD as a logits processor for an lmaudit :class:`~lmaudit.models.hf.HFModel`.

    At the first step of each ``generate`` batch it finds every row's prompt in the
    left-padded ``input_ids`` (:func:`prompt_body`), decodes it, retrieves its protected
    passage, and runs one forward pass over ``[BOS] + passage + prompt`` for the whole batch
    (left-padded, with an attention mask and position ids counting real tokens only),
    keeping the KV cache. At each later step it feeds only the newest token. A new batch
    is recognised by its ``input_ids`` not extending the previous call's by one column
    (:class:`~lmaudit.takedown.steps.StepTracker`); :meth:`reset` forces one.

    Rows whose prompt retrieves no passage (no word in common with the corpus, or no room
    left for any passage token) keep their scores unchanged.

    Args:
        lm: An HFModel (R-CAD needs the model's own logits on a second sequence; other
            backends are refused).
        retriever: A :class:`BM25Retriever` over the protected corpus, or any function that
            maps the batch's prompt texts to one passage text per prompt (None or "" for
            none), e.g. an oracle that looks the ground truth up.
        alpha: Weight α of the reversal; 0 leaves the scores unchanged.
        max_context_tokens: Longest context sequence (BOS, passage, prompt and generated
            tokens); None: the model's context length.
        max_new_tokens: Tokens the generation will add: the passage is cut from the left so
            that 1 + passage + prompt + max_new_tokens <= max_context_tokens. A generation
            that runs longer raises ValueError when it reaches max_context_tokens.
        query_skip: Tokens after BOS that are not the prompt's own (a system prompt put before
            it): they stay in the context sequence but not in the retrieval query, whose words
            ("copyright", "books") would otherwise pull the wrong passage.

    Attributes:
        passages: For the latest batch, one dict per row: ``passage`` (the retrieved text or
            None), ``passage_tokens`` (tokens of it used) and ``passage_tokens_cut`` (cut
            from its start to fit).

    Example:
        >>> r = RCADProcessor(lm, BM25Retriever(protected_texts), max_new_tokens=64)  # doctest: +SKIP
        >>> lm.generate(prompts, GenerationConfig(max_new_tokens=64), logits_processor=[r])  # doctest: +SKIP
    """

    #: Engines (:mod:`lmaudit.engines`) send each worker a copy of the processors; this one
    #: would carry a whole model and its retriever there, and its ``passages`` are read back
    #: after ``generate``, which a worker's copy never returns.
    portable = False
    portable_reason = ("R-CAD runs a second forward pass of the model inside the processor (it holds the model and "
                       "the protected corpus's retriever), and its retrieved passages are read back after generation")

    def __init__(self, lm, retriever: BM25Retriever | Callable[[list[str]], Sequence[str | None]], *, alpha: float = 1.0,
                 max_context_tokens: int | None = None, max_new_tokens: int = GenerationConfig().max_new_tokens,
                 query_skip: int = 0):
        from lmaudit.engines import EngineModel
        from lmaudit.models.hf import HFModel

        if isinstance(lm, EngineModel):  # the processor runs its passes here, on the model loaded here
            lm = lm.local
        if not isinstance(lm, HFModel):
            raise TypeError(f"R-CAD needs a model's raw logits on a second, passage-prefixed sequence, which only an "
                            f"lmaudit HFModel (a transformers model) gives; got {type(lm).__name__}")
        if not lm._accepts_position_ids:
            raise ValueError(f"{type(lm.model).__name__}.forward takes no position_ids; R-CAD's left-padded context "
                             "batch would shift positions")
        if lm.bos_token_id is None:
            raise ValueError(f"{lm.name} has no BOS (nor EOS) token to start the context sequence with")
        if isinstance(retriever, BM25Retriever):
            self._passages_for = retriever.top_passages
        elif callable(retriever):
            self._passages_for = retriever
        else:
            raise TypeError(f"retriever must be a BM25Retriever or a function of the prompt texts, got {type(retriever).__name__}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}")
        limit = lm.max_length if max_context_tokens is None else int(max_context_tokens)
        if not 2 <= limit <= lm.max_length:
            raise ValueError(f"max_context_tokens must lie in [2, {lm.max_length}] (the model's context length), got {limit}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be non-negative, got {max_new_tokens}")
        self.lm, self.alpha = lm, float(alpha)
        if query_skip < 0:
            raise ValueError(f"query_skip must be non-negative, got {query_skip}")
        self.max_context_tokens, self.max_new_tokens, self.query_skip = limit, int(max_new_tokens), int(query_skip)
        self.passages: list[dict] = []
        self._steps = StepTracker()
        self._cache_name = _cache_name()
        self._encoded: dict[str, list[int]] = {}  # passage text -> token ids, across batches
        self._past = None  # the context sequences' KV cache
        self._mask: torch.Tensor | None = None  # (B, L) attention mask of the cached columns
        self._next_pos: torch.Tensor | None = None  # (B,) position id of each row's next token
        self._longest = 0  # real tokens in the longest row so far
        self._active: torch.Tensor | None = None  # (B,) bool: rows with a passage

    def reset(self) -> None:
        """Drop the cache; the next call starts a new batch."""
        self._steps.reset()
        self._past = self._mask = self._next_pos = self._active = None

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "use_cache": True,
                  self._cache_name: self._past}
        try:  # the vocabulary projection of the last position only
            out = self.lm.model(**kwargs, logits_to_keep=1)
        except TypeError:  # models without logits_to_keep
            out = self.lm.model(**kwargs)
        self._past = getattr(out, self._cache_name)
        return out.logits[:, -1].float()  # (B, V)

    def _start(self, input_ids: torch.Tensor) -> torch.Tensor:
        lm, device = self.lm, self.lm.device
        bodies = [prompt_body(row, pad_token_id=lm.pad_token_id, bos_token_id=lm.bos_token_id) for row in input_ids.tolist()]
        # The query is the prompt's own text: an instruction put before it (query_skip tokens) is not.
        texts = [lm.decode(b[self.query_skip:]) for b in bodies]
        found = list(self._passages_for(texts))
        if len(found) != len(texts):
            raise ValueError(f"the retriever returned {len(found)} passages for {len(texts)} prompts")
        new = sorted({p for p in found if p and p not in self._encoded})
        self._encoded.update(zip(new, lm.encode(new)))
        seqs, self.passages = [], []
        for i, (body, passage) in enumerate(zip(bodies, found)):
            ids = self._encoded[passage] if passage else []
            room = self.max_context_tokens - 1 - len(body) - self.max_new_tokens
            if room < 0:
                raise ValueError(f"R-CAD: prompt {i} of the batch has {len(body)} tokens after BOS; with BOS and "
                                 f"max_new_tokens={self.max_new_tokens} that exceeds max_context_tokens={self.max_context_tokens}")
            kept = ids[len(ids) - room:] if room < len(ids) else ids
            seqs.append([lm.bos_token_id, *kept, *body])
            self.passages.append({"passage": passage or None, "passage_tokens": len(kept),
                                  "passage_tokens_cut": len(ids) - len(kept)})
        ids, mask, positions, _ = pad_batch(seqs, pad_token_id=lm.pad_token_id, padding_side="left")
        self._past = None
        self._mask = mask.to(device)
        self._next_pos = (positions[:, -1] + 1).to(device)
        self._longest = max(len(s) for s in seqs)
        self._active = torch.tensor([p["passage_tokens"] > 0 for p in self.passages], device=device)
        return self._forward(ids.to(device), self._mask, positions.to(device))

    def _step(self, newest: torch.Tensor) -> torch.Tensor:
        if self._longest >= self.max_context_tokens:
            raise ValueError(f"R-CAD: the context sequence reached max_context_tokens={self.max_context_tokens}; the "
                             f"generation is longer than max_new_tokens={self.max_new_tokens} (set it to the generation's)")
        device = self._mask.device
        self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)  # (B, L+1)
        logits = self._forward(newest.to(device)[:, None], self._mask, self._next_pos[:, None])
        self._next_pos = self._next_pos + 1
        self._longest += 1
        return logits

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._steps.is_new(input_ids) or self._past is None:
            context = self._start(input_ids)
        else:
            context = self._step(input_ids[:, -1])
        context = context.to(device=scores.device, dtype=scores.dtype)  # (B, V)
        reversed_ = (1 + self.alpha) * scores - self.alpha * context
        return torch.where(self._active.to(scores.device)[:, None], reversed_, scores)
