"""The one model interface every audit talks to.

Audits never load models and never tokenize on their own: they hand token id sequences to
a :class:`LanguageModel` and get per-token statistics or generations back. Where BOS goes,
how padding is masked and how long texts are cut are decided once, by a
:class:`ScoringPolicy` that is recorded with every result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ScoringPolicy:
    """How a text becomes the token sequences that are scored. Recorded in every result.

    Attributes:
        bos: "prepend" puts the model's BOS token (its EOS token when it has no BOS, as in
            GPT-2 and Pythia) before the text, so every token of the text is scored and
            N = number of text tokens, identically for every model. "none" feeds the
            text alone: its first token is context only and N = text tokens − 1 (what most
            public MIA code does for tokenizers that add no BOS).
        max_length: Longest sequence fed to the model, BOS included. None: the model's
            context length.
        overflow: What to do with a text longer than max_length. "window" scores every
            token with sliding windows (no token lost); "truncate" keeps the first
            max_length tokens and records how many were cut; "error" gives an error row.
        stride: Window step, in text tokens, for overflow="window". Every window starts
            with BOS (under bos="prepend") followed by up to max_length − 1 text tokens;
            each window after the first scores only the tokens the previous one did not
            reach (its last ``stride``), so every token is scored exactly once with at least
            max_length − 1 − stride text tokens of context. None: max_length // 2 (mimir's
            choice).
        padding_side: "right" or "left". Either way padding is masked by attention mask and
            length, never by token id, so a real EOS inside a text is always scored.
    """

    bos: Literal["prepend", "none"] = "prepend"
    max_length: int | None = None
    overflow: Literal["window", "truncate", "error"] = "window"
    stride: int | None = None
    padding_side: Literal["right", "left"] = "right"

    def __post_init__(self) -> None:
        if self.bos not in ("prepend", "none"):
            raise ValueError(f"bos must be 'prepend' or 'none', got {self.bos!r}")
        if self.overflow not in ("window", "truncate", "error"):
            raise ValueError(f"overflow must be 'window', 'truncate' or 'error', got {self.overflow!r}")
        if self.padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be positive, got {self.stride}")

    def resolved(self, model_max_length: int) -> "ScoringPolicy":
        """The policy with max_length and stride filled in for a given model."""
        if self.max_length is not None and self.max_length > model_max_length:
            raise ValueError(f"max_length={self.max_length} exceeds the model's context length {model_max_length}")
        max_length = self.max_length or model_max_length
        stride = self.stride or max(1, max_length // 2)
        # Windows hold max_length - 1 text tokens after BOS (max_length without); the next
        # window must start inside the current one, after at least one token of context.
        width = max_length - (1 if self.bos == "prepend" else 0)
        if stride >= width:
            raise ValueError(f"stride ({stride}) must be smaller than the {width} text tokens a window holds")
        return ScoringPolicy(self.bos, max_length, self.overflow, stride, self.padding_side)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TokenStats:
    """Per-token statistics of one scored sequence, numpy float32/int32 arrays of shape (N,).

    Position i describes the prediction of ``token_ids[i]`` from everything before it.
    See :class:`lmaudit.ops.kernel.TokenStatsTensors` for the definitions.
    """

    token_ids: np.ndarray
    logprob: np.ndarray
    vocab_mean: np.ndarray
    vocab_std: np.ndarray
    entropy: np.ndarray

    FIELDS = ("token_ids", "logprob", "vocab_mean", "vocab_std", "entropy")

    def __len__(self) -> int:
        return len(self.token_ids)

    @classmethod
    def concat(cls, parts: Sequence["TokenStats"]) -> "TokenStats":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS))


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding options for :meth:`LanguageModel.generate`.

    Attributes:
        max_new_tokens: Tokens to generate per prompt (fewer if EOS comes first and
            stop_at_eos is set).
        do_sample: False for greedy decoding.
        temperature: Sampling temperature (do_sample only).
        top_k: Keep the k most likely tokens (do_sample only); 0 disables.
        top_p: Nucleus threshold (do_sample only); 1.0 disables.
        stop_at_eos: Stop a sequence at its first EOS (kept in the output).
        seed: Seeds the sampler; with the same batch composition the output is repeatable.
    """

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_at_eos: bool = True
    seed: int = 0


class LanguageModel(Protocol):
    """The core contract: everything that the scoring, membership, dataset-inference,
    paired-test, extraction and knowledge audits call, and nothing more.

    Sequences are plain lists of token ids; BOS is added by the caller according to the
    policy (:meth:`encode` never adds special tokens). Abilities that only some audits need
    are capability Protocols below (:class:`Gradients`, :class:`PromptSearch`,
    :class:`Predictions`, :class:`VocabStats`, :class:`LogitsProcessors`); an audit declares
    them and :func:`require` checks them before any work. ``dtype`` and ``device``
    attributes, when a backend has them, are recorded in provenance.

    Attributes:
        name: How results name the model (path or hub name).
        bos_token_id: Prepended under ``bos="prepend"`` (GPT-2-style models: their EOS).
        eos_token_id: Ends generation; separates ReCaLL's prefix documents.
        max_length: Context length in tokens, BOS included.
        vocab_size: Every token id is below it (DC-PDD's frequency table).
    """

    name: str
    bos_token_id: int | None
    eos_token_id: int | None
    max_length: int
    vocab_size: int

    def fingerprint(self) -> str:
        """Content hash of the weights and configuration (a cache key: it must change whenever
        the model's outputs can)."""
        ...

    def tokenizer_fingerprint(self) -> str:
        """Content hash of everything that decides token ids (vocabulary, merges, normalisation,
        special tokens)."""
        ...

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without any special tokens."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a token id sequence (special tokens kept)."""
        ...

    def token_stats(
        self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], *, padding_side: str = "right"
    ) -> list[TokenStats]:
        """Statistics for tokens ``seq[score_from:]`` of each sequence, in one forward pass.

        ``score_from`` must be at least 1 (the first token has nothing before it); every
        sequence is at most ``max_length`` long. Results must not depend on padding side or
        batch composition beyond float error.
        """
        ...

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig,
        *,
        logits_processor=None,
        batch_size: int | None = None,
    ) -> list[list[int]]:
        """New token ids for each prompt (the prompt itself is not returned), cut after the
        first EOS when ``config.stop_at_eos``. ``logits_processor``: callables
        ``(input_ids (B, T), scores (B, V)) -> scores`` applied at every step (a watermark, a
        takedown filter), honoured only by backends with the :class:`LogitsProcessors`
        capability (the others raise :class:`CapabilityError` for a non-empty one);
        ``batch_size``: prompts per call (None: the backend's own)."""
        ...


class Gradients(Protocol):
    """Capability: gradients of a document's loss with respect to the weights (GradNorm)."""

    def gradient_norms(self, windows: Sequence[tuple[Sequence[int], int]]) -> np.ndarray:
        """(P,) ‖∇_θ L‖₂ per parameter tensor, L the mean loss over the scored tokens of the
        windows ``(tokens, score_from)`` of one document; the weights' ``.grad`` are left as
        they were found."""
        ...


class PromptSearch(Protocol):
    """Capability: what a gradient search over prompts (GCG, for ACR) needs.

    The search optimises one-hot prompt vectors, so it needs the input embedding matrix, a
    differentiable forward pass from embeddings, and the set of tokens a prompt may use.
    """

    def input_embeddings(self) -> "torch.Tensor":
        """(R, d) the input embedding matrix (R rows, possibly more than the tokenizer has)."""
        ...

    def logits_from_embeddings(self, embeddings: "torch.Tensor", *, last: int) -> "torch.Tensor":
        """(B, last, R) float32 logits at the last ``last`` positions for (B, T, d) input
        embeddings, differentiable with respect to them."""
        ...

    def prompt_tokens(self) -> "torch.Tensor":
        """(R,) bool: tokens a prompt may use: no special token, no embedding row past the
        tokenizer, only tokens that survive ``encode(decode([t])) == [t]`` (so a prompt is a
        string a user could type)."""
        ...


class Predictions(Protocol):
    """Capability: the model's most likely next token at every position (the open-model
    radioactivity test reads a model's predictions, not its probabilities)."""

    def top_predictions(self, sequences: Sequence[Sequence[int]], score_from: Sequence[int]) -> list[np.ndarray]:
        """For each sequence, (len(seq) − score_from,) int64: the argmax of the next-token
        distribution predicting ``seq[i]`` from ``seq[:i]``, for i = score_from … len(seq) − 1
        (aligned with :meth:`LanguageModel.token_stats`; ties go to the lowest id)."""
        ...


class VocabStats(Protocol):
    """Capability: :meth:`LanguageModel.token_stats` fills the statistics that need the whole
    next-token distribution (Min-K%++ reads ``vocab_mean`` and ``vocab_std``). A backend
    without it (vLLM, which returns log-probabilities of chosen tokens only) gives NaN there,
    and only ``logprob`` and ``token_ids`` are to be read."""

    def vocab_stat_fields(self) -> tuple[str, ...]:
        """The :class:`TokenStats` fields computed over the whole vocabulary."""
        ...


class LogitsProcessors(Protocol):
    """Capability: :meth:`LanguageModel.generate` applies the caller's ``logits_processor``,
    per call, to the full next-token scores of every step (watermarks, MemFree, R-CAD, top-k
    noise). vLLM cannot: its processors are loaded once per engine, not passed per call."""

    def applies_logits_processors(self) -> bool:
        """True (what counts is that the method exists: the marker of the capability)."""
        ...


#: Capabilities by the name audits and error messages use.
CAPABILITIES: dict[str, type] = {"gradients": Gradients, "prompt_search": PromptSearch, "predictions": Predictions,
                                 "vocab_stats": VocabStats, "logits_processors": LogitsProcessors}

#: Backends lmaudit ships, as "module:attr" (imported only to answer "who has it?"; each module
#: imports without its optional dependencies, e.g. lmaudit.models.vllm without vllm).
BACKENDS = ("lmaudit.models.hf:HFModel", "lmaudit.models.fake:FakeLM", "lmaudit.models.whp:WHPModel",
            "lmaudit.models.vllm:VLLMModel")

#: The value every backend with :class:`VocabStats` returns from ``vocab_stat_fields``.
VOCAB_STAT_FIELDS = ("vocab_mean", "vocab_std", "entropy")


class CapabilityError(ValueError):
    """An audit needs an ability the model's backend does not have."""


def _methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


def has_capability(model, capability: str) -> bool:
    """Whether ``model`` has every method of the named capability.

    >>> class OnlyNorms:
    ...     def gradient_norms(self, windows): ...
    >>> has_capability(OnlyNorms(), "gradients"), has_capability(OnlyNorms(), "prompt_search")
    (True, False)
    """
    return all(callable(getattr(model, m, None)) for m in _methods(CAPABILITIES[capability]))


def backends_with(capability: str) -> list[str]:
    """Names of the shipped backends that have a capability."""
    import importlib

    names = []
    for target in BACKENDS:
        module, attr = target.split(":")
        cls = getattr(importlib.import_module(module), attr)
        if all(callable(getattr(cls, m, None)) for m in _methods(CAPABILITIES[capability])):
            names.append(attr)
    return names


def require(model, *capabilities: str, audit: str) -> None:
    """Refuse, before any work, a model that lacks a capability the audit needs.

    ``model`` may also be a backend class, so a command can refuse before it loads anything.

    Raises:
        CapabilityError: naming the audit, the capability, the missing methods and the
            backends that have it.
    """
    for capability in capabilities:
        missing = [m for m in _methods(CAPABILITIES[capability]) if not callable(getattr(model, m, None))]
        if missing:
            # A class (checked before loading), or a model; on an engine, the model it wraps.
            name = model.__name__ if isinstance(model, type) else type(getattr(model, "local", model)).__name__
            raise CapabilityError(
                f"{audit} needs the {capability!r} capability ({', '.join(missing)}), which "
                f"{name} does not have; backends that have it: {', '.join(backends_with(capability))}")
