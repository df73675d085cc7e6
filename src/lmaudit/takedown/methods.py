"""Decoding-time takedown methods, by name, and their composition into one model.

A method spec names one method or a combination joined by ``+`` (``memfree+sysprompt``); a
list of specs is comma-separated (``none,memfree,topk,rcad,sysprompt,memfree+sysprompt``).
``none`` is plain decoding. Whatever order a combination is written in, its parts apply in
:data:`ORDER`:

1. ``sysprompt`` changes the input: an instruction inserted after BOS, before the prompt;
2. ``rcad`` replaces the logits by R-CAD's contrast, which assumes it receives the model's own
   logits for the (possibly system-prompted) input, so it comes before any other processor;
3. ``topk`` perturbs the top-k logits;
4. the caller's own logits processors (a watermark, say);
5. ``memfree`` last, so that whatever the others did, no token completing a protected n-gram
   can be chosen: its guarantee holds for every combination, under greedy decoding and under
   sampling (with a Bloom index, every token a sampler may pick is tested).

:class:`TakedownModel` wraps any :class:`~lmaudit.models.base.LanguageModel` with a
combination, so every audit that generates (extraction, knowledge QA, copying) runs on the
filtered model unchanged; scoring (``token_stats``) is the base model's, since a decoding-time
method changes what is generated, not the model's probabilities.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lmaudit.data import DataError, Record
from lmaudit.registry import Registry

#: Every method, in the order its part applies within a combination.
ORDER = ("sysprompt", "rcad", "topk", "memfree")
#: The methods that are logits processors: they need a backend that applies them per call.
PROCESSOR_METHODS = ("rcad", "topk", "memfree")


def require_processors(lm, parts) -> None:
    """Refuse, before any work, methods among ``parts`` that are logits processors when ``lm``
    cannot apply them (the vLLM backend), naming the backends that can.

    Raises:
        CapabilityError: naming the first such method.
    """
    from lmaudit.models.base import require

    for part in ORDER:
        if part in parts and part in PROCESSOR_METHODS:
            require(lm, "logits_processors", audit=f"takedown method {part} (a logits processor)")


@dataclass(frozen=True)
class MethodInfo:
    """What a method does, for listings and help (its code is its processor's module)."""

    name: str
    stage: str
    summary: str
    module: str | None


METHODS = Registry("takedown method")
for _info in (
    MethodInfo("none", "-", "plain decoding", None),
    MethodInfo("sysprompt", "input", "an instruction not to reproduce protected text, inserted after BOS",
               "lmaudit.takedown.sysprompt"),
    MethodInfo("rcad", "logits", "R-CAD: (1+a)*logits(prompt) - a*logits(retrieved protected passage + prompt)",
               "lmaudit.takedown.rcad"),
    MethodInfo("topk", "logits", "Gaussian noise on the top-k logits", "lmaudit.takedown.perturb"),
    MethodInfo("memfree", "logits", "MemFree: never complete an n-gram of the protected corpus",
               "lmaudit.takedown.memfree"),
):
    METHODS.register(_info.name)(_info)


@dataclass(frozen=True)
class TakedownConfig:
    """Options of every decoding-time method (each reads its own).

    Attributes:
        memfree_n: MemFree's n-gram length in tokens (CoTaEval: 6).
        memfree_kind: "exact" (the distinct n-grams in a sorted array: every answer exact),
            "bloom" (rbloom filters, with ``memfree_fp_rate``: a false positive bans a token it
            need not, never the reverse), or "auto" (exact up to ``memfree_max_exact``).
        memfree_fp_rate: The Bloom filter's false-positive rate.
        memfree_max_exact: Most n-gram occurrences kept exactly under "auto".
        topk_k: How many of the largest logits get noise.
        topk_sigma: Standard deviation of that Gaussian noise (CoTaEval: 3).
        rcad_alpha: R-CAD's α in (1+α)·logits(prompt) − α·logits(passage + prompt).
        rcad_context_tokens: Longest passage-prefixed sequence R-CAD feeds the model (BOS,
            passage, prompt and the tokens to generate; the passage is cut from the left to fit).
            None: the model's context length.
        system_prompt: A key of :data:`lmaudit.takedown.sysprompt.SYSTEM_PROMPTS` or the text
            itself (default ``bing``: the one CoTaEval's win-rate comparison uses).
        seed: Seeds top-k's noise.
    """

    memfree_n: int = 6
    memfree_kind: str = "auto"
    memfree_fp_rate: float = 1e-3
    memfree_max_exact: int = 20_000_000
    topk_k: int = 50
    topk_sigma: float = 3.0
    rcad_alpha: float = 1.0
    rcad_context_tokens: int | None = None
    system_prompt: str = "bing"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.memfree_n < 2:
            raise ValueError(f"memfree_n must be at least 2, got {self.memfree_n}")
        if self.memfree_kind not in ("auto", "exact", "bloom"):
            raise ValueError(f"memfree_kind must be auto, exact or bloom, got {self.memfree_kind!r}")
        if not 0 < self.memfree_fp_rate < 1:
            raise ValueError(f"memfree_fp_rate must be in (0, 1), got {self.memfree_fp_rate}")
        if self.topk_k < 1 or self.topk_sigma < 0:
            raise ValueError("topk_k must be at least 1 and topk_sigma at least 0")
        if self.rcad_alpha < 0:
            raise ValueError(f"rcad_alpha must be at least 0, got {self.rcad_alpha}")
        system_text(self.system_prompt)


def system_text(value: str) -> str:
    """The instruction a ``system_prompt`` option names: a key of
    :data:`~lmaudit.takedown.sysprompt.SYSTEM_PROMPTS`, or a text of at least four words (so a
    mistyped name is an error with a suggestion, never an instruction of one word)."""
    from lmaudit.takedown.sysprompt import SYSTEM_PROMPTS, system_prompt

    if value in SYSTEM_PROMPTS or len(value.split()) >= 4:
        return SYSTEM_PROMPTS.get(value, value)
    try:
        return system_prompt(value)
    except KeyError as err:
        raise ValueError(f"{err.args[0]}; or give the instruction itself (four words or more)") from None


def parse_methods(spec: str | Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(label, parts in :data:`ORDER`) for each comma-separated method spec, in the given order.

    >>> parse_methods("none,memfree,sysprompt+memfree")
    [('none', ()), ('memfree', ('memfree',)), ('sysprompt+memfree', ('sysprompt', 'memfree'))]
    >>> parse_methods("memfre")
    Traceback (most recent call last):
    ...
    ValueError: unknown takedown method 'memfre'; did you mean 'memfree'? (known: memfree, none, rcad, sysprompt, topk) (in 'memfre')
    """
    specs = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    out, seen = [], {}
    for s in specs:
        if not s:
            raise ValueError(f"empty method in {spec!r}")
        names = [n.strip() for n in s.split("+")]
        for n in names:
            try:
                METHODS.get(n)
            except KeyError as err:
                raise ValueError(f"{err.args[0]} (in {s!r})") from None
        if "none" in names and len(names) > 1:
            raise ValueError(f"'none' is plain decoding and cannot be combined: {s!r}")
        if len(set(names)) < len(names):
            raise ValueError(f"a method is named twice in {s!r}")
        parts = tuple(n for n in ORDER if n in names)
        label = "+".join(parts) or "none"
        if label in seen:
            raise ValueError(f"{s!r} is the same combination as {seen[label]!r}")
        seen[label] = s
        out.append((label, parts))
    return out


@dataclass
class Protected:
    """The protected corpus, prepared once for every method that needs it.

    Attributes:
        records: The protected documents.
        token_ids: Their token ids (no special tokens), in order.
        index: MemFree's n-gram index (built or loaded when a method needs it).
        retriever: R-CAD's BM25 retriever over the documents' texts.
        index_info: Where the index came from (built here, or loaded from a folder).
    """

    records: list[Record]
    token_ids: list[list[int]]
    index: object | None = None
    retriever: object | None = None
    index_info: dict = field(default_factory=dict)


def prepare_protected(lm, records: Sequence[Record], parts: set[str], config: TakedownConfig, *,
                      index_dir: str | Path | None = None, save_index: str | Path | None = None) -> Protected:
    """Check the protected corpus and build what ``parts`` need, before any generation.

    Raises:
        DataError: no protected document, or (with memfree) a document shorter than
            ``memfree_n`` tokens, naming its file and line: the filter could never protect it.
        ValueError: ``index_dir`` holds an index of another tokenizer or another n.
    """
    records = list(records)
    if not records:
        raise DataError("the protected corpus is empty: a takedown needs at least one protected document")
    ids = lm.encode([r.text for r in records])
    protected = Protected(records=records, token_ids=ids)
    corpus = corpus_fingerprint(ids)
    if "memfree" in parts:
        from lmaudit.takedown.memfree import NgramIndex

        n = config.memfree_n
        short = [(r, len(x)) for r, x in zip(records, ids) if len(x) < n]
        if short:
            listed = "; ".join(f"{r.source}:{r.line} (id {r.id!r}, {k} tokens)" for r, k in short[:5])
            more = f" and {len(short) - 5} more" if len(short) > 5 else ""
            raise DataError(f"{len(short)} protected text(s) shorter than MemFree's n = {n} tokens, which no "
                            f"{n}-gram filter can protect: {listed}{more}")
        if index_dir is not None:
            index = NgramIndex.load(index_dir, tokenizer_fingerprint=lm.tokenizer_fingerprint())
            if index.n != n:
                raise ValueError(f"the MemFree index in {index_dir} holds {index.n}-grams, not {n}-grams "
                                 f"(--memfree-n {n})")
            # An index of another corpus would let the protected text through while the results
            # say MemFree was on: the index must be of exactly these documents.
            if index.meta.get("corpus_sha256") != corpus:
                raise ValueError(f"the MemFree index in {index_dir} was built from another protected corpus "
                                 f"(its token ids hash to {index.meta.get('corpus_sha256')}, these to {corpus}): "
                                 "build it again from these documents (omit the index option)")
            protected.index_info = {"loaded_from": str(index_dir), **index.meta}
        else:
            index = NgramIndex.build(ids, n=n, tokenizer_fingerprint=lm.tokenizer_fingerprint(),
                                     kind=config.memfree_kind, fp_rate=config.memfree_fp_rate,
                                     max_exact=config.memfree_max_exact,
                                     source=", ".join(sorted({str(r.source) for r in records})))
            index.meta["corpus_sha256"] = corpus
            if save_index is not None:
                index.save(save_index)
            protected.index_info = {"built": True, **index.meta}
        protected.index = index
    if "rcad" in parts:
        from lmaudit.takedown.retrieval import BM25Retriever

        protected.retriever = BM25Retriever([r.text for r in records], [str(r.id) for r in records])
    return protected


def corpus_fingerprint(token_ids: Sequence[Sequence[int]]) -> str:
    """sha256 of a corpus's token id sequences, in order (what a MemFree index was built from).

    >>> corpus_fingerprint([[1, 2]]) == corpus_fingerprint([[1], [2]])
    False
    """
    h = hashlib.sha256()
    for seq in token_ids:
        h.update(len(seq).to_bytes(8, "little") + b"".join(int(t).to_bytes(4, "little", signed=True) for t in seq))
    return h.hexdigest()


class TakedownModel:
    """A language model whose generation goes through a combination of takedown methods.

    Implements the :class:`~lmaudit.models.base.LanguageModel` contract by delegation: the
    tokenizer and ``token_stats`` are the base model's; ``generate`` inserts the system prompt
    when asked and runs the parts' logits processors, in :data:`ORDER`, around the caller's.

    Args:
        base: The model to filter.
        parts: The methods, a subset of :data:`ORDER` (empty: plain decoding).
        protected: The protected corpus as :func:`prepare_protected` prepared it.
        config: The methods' options.
    """

    def __init__(self, base, parts: Sequence[str], protected: Protected | None, config: TakedownConfig = TakedownConfig()):
        unknown = [p for p in parts if p not in ORDER]
        if unknown:
            raise ValueError(f"unknown takedown method(s) {unknown}: use {', '.join(ORDER)}")
        require_processors(base, parts)
        self.base = base
        self.parts = tuple(p for p in ORDER if p in parts)
        self.protected = protected
        self.config = config
        self.label = "+".join(self.parts) or "none"
        if ("memfree" in self.parts and (protected is None or protected.index is None)) or (
                "rcad" in self.parts and (protected is None or protected.retriever is None)):
            raise ValueError(f"{self.label} needs the protected corpus prepared for it (prepare_protected)")
        if "rcad" in self.parts:
            from lmaudit.takedown.rcad import RCADProcessor

            RCADProcessor(base, protected.retriever)  # refuses, before any work, a backend without raw logits
        self.name = base.name if not self.parts else f"{base.name} [{self.label}]"
        self.bos_token_id, self.eos_token_id = base.bos_token_id, base.eos_token_id
        # The instruction takes part of the context: audits that check a prompt's length
        # against max_length (knowledge QA, extraction) then see the room really left.
        self.max_length, self.vocab_size = base.max_length - self.system_tokens(), base.vocab_size
        # The base's attributes and capabilities that pass through unchanged (a method of a
        # capability the base lacks stays absent, so audits refuse this model as they would it).
        for attr in ("pad_token_id", "device", "dtype", "batch_size", "vocab_stat_fields", "applies_logits_processors"):
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))
        self.last_stats: dict = {}

    def settings(self) -> dict:
        """What this combination is, for provenance: the parts and the options they read."""
        c = self.config
        options = {"sysprompt": {"system_prompt": c.system_prompt, "text": self.system_text()},
                   "rcad": {"alpha": c.rcad_alpha, "context_tokens": c.rcad_context_tokens,
                            "retriever": "BM25 (bm25s), the top protected document for the prompt's text"},
                   "topk": {"k": c.topk_k, "sigma": c.topk_sigma, "seed": c.seed},
                   "memfree": {"n": c.memfree_n, "index": (self.protected.index_info if self.protected else None)}}
        return {"method": self.label, "order": list(self.parts), **{p: options[p] for p in self.parts}}

    def system_text(self) -> str | None:
        return system_text(self.config.system_prompt) if "sysprompt" in self.parts else None

    def system_tokens(self) -> int:
        """Tokens the system prompt adds to every prompt (0 without sysprompt)."""
        if "sysprompt" not in self.parts:
            return 0
        from lmaudit.takedown.sysprompt import with_system_prompt

        return with_system_prompt(self.base, [[]], self.system_text())[1]

    def fingerprint(self) -> str:
        settings = self.settings()
        if self.protected is not None:
            settings["protected"] = hashlib.sha256(json.dumps(
                [[str(r.id), r.text] for r in self.protected.records]).encode()).hexdigest()
        h = hashlib.sha256((self.base.fingerprint() + json.dumps(settings, sort_keys=True, default=str)).encode())
        return h.hexdigest()

    def tokenizer_fingerprint(self) -> str:
        return self.base.tokenizer_fingerprint()

    def encode(self, texts):
        return self.base.encode(texts)

    def decode(self, ids):
        return self.base.decode(ids)

    def token_stats(self, sequences, score_from, *, padding_side: str = "right"):
        return self.base.token_stats(sequences, score_from, padding_side=padding_side)

    def processors(self, extra=None, *, max_new_tokens: int = 0, do_sample: bool = False, top_k: int = 0) -> list:
        """Fresh logits processors for one generate call, in :data:`ORDER` (the caller's before MemFree)."""
        c, out = self.config, []
        if "rcad" in self.parts:
            from lmaudit.takedown.rcad import RCADProcessor

            out.append(RCADProcessor(self.base, self.protected.retriever, alpha=c.rcad_alpha,
                                     max_context_tokens=c.rcad_context_tokens, max_new_tokens=max_new_tokens,
                                     query_skip=self.system_tokens()))
        if "topk" in self.parts:
            from lmaudit.takedown.perturb import TopKPerturbation

            out.append(TopKPerturbation(k=c.topk_k, sigma=c.topk_sigma, seed=c.seed))
        out += list(extra or [])
        if "memfree" in self.parts:
            from lmaudit.takedown.memfree import MemFreeProcessor

            # A Bloom index tests candidates in score order until one passes: enough for greedy
            # decoding; a sampler may pick any token it keeps, so every one of those is tested.
            clean = (top_k or self.vocab_size) if do_sample and self.protected.index.kind == "bloom" else 1
            out.append(MemFreeProcessor(self.protected.index, top_clean=clean))
        return out

    def prompts(self, prompts: Sequence[Sequence[int]], *, reserve: int = 0) -> list[list[int]]:
        """The prompts as the model sees them (the system prompt inserted when asked); a prompt
        that then leaves fewer than ``reserve`` tokens of context is a ValueError."""
        if "sysprompt" not in self.parts:
            return [list(p) for p in prompts]
        from lmaudit.takedown.sysprompt import with_system_prompt

        return with_system_prompt(self.base, prompts, self.system_text(), reserve=reserve)[0]

    def generate(self, prompts, config, *, logits_processor=None, batch_size: int | None = None) -> list[list[int]]:
        processors = self.processors(logits_processor, max_new_tokens=config.max_new_tokens, do_sample=config.do_sample,
                                     top_k=config.top_k)
        out = self.base.generate(self.prompts(prompts, reserve=config.max_new_tokens), config,
                                 logits_processor=processors or None,
                                 batch_size=batch_size)
        self.last_stats = {type(p).__name__: p.stats() for p in processors if callable(getattr(p, "stats", None))}
        return out


def unportable_parts(parts) -> dict[str, str]:
    """The ``parts`` whose logits processor cannot run on an engine's workers
    (:mod:`lmaudit.engines`), each with the processor's reason: known before any index is built
    or model loaded, from the processor classes themselves."""
    from lmaudit.takedown.memfree import MemFreeProcessor
    from lmaudit.takedown.perturb import TopKPerturbation
    from lmaudit.takedown.rcad import RCADProcessor

    classes = {"memfree": MemFreeProcessor, "topk": TopKPerturbation, "rcad": RCADProcessor}
    return {p: classes[p].portable_reason for p in ORDER if p in parts and p in classes and not classes[p].portable}


__all__ = ["METHODS", "ORDER", "TakedownConfig", "parse_methods", "Protected", "prepare_protected", "TakedownModel",
           "unportable_parts"]
