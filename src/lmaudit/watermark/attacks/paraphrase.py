"""Paraphrase: the watermarked text rewritten by another model (Kirchenbauer et al. 2023b)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Protocol, Sequence

from lmaudit.models.base import GenerationConfig, LanguageModel
from lmaudit.watermark.attacks import ATTACKS, Attacked, WORD

DEFAULT_TEMPLATE = "Paraphrase the following text:\n{text}\nParaphrase:"


class Paraphraser(Protocol):
    """Rewrites texts in other words (any model or service behind it)."""

    def paraphrase(self, texts: Sequence[str], *, seed: int) -> list[str]:
        """One paraphrase per text, in order, deterministic for ``seed`` (and, for a sampling
        paraphraser, for the batch it is given)."""
        ...


class LMParaphraser:
    """Paraphrase with a :class:`~lmaudit.models.base.LanguageModel` prompted by a template.

    Each prompt is BOS (when the model has one) followed by the template's tokens with the
    text in place of ``{text}``; the paraphrase is the decoded continuation, without a final
    EOS and stripped of surrounding whitespace. All texts go to :meth:`LanguageModel.generate`
    in one call. With the default greedy decoding a text's paraphrase does not depend on its
    batch; under sampling it depends on the batch as the backend's sampler does.

    Kirchenbauer et al. ("On the Reliability of Watermarks for Large Language Models", 2023)
    paraphrase with GPT-3.5 and with DIPPER; any instruction-following model fits here.

    Example:
        >>> from lmaudit.models.fake import FakeLM
        >>> p = LMParaphraser(FakeLM(), template="{text}", max_new_tokens=4)
        >>> len(p.paraphrase(["abc"], seed=0))
        1

    Args:
        lm: The paraphrasing model.
        template: The prompt, with ``{text}`` where the text goes (other braces are kept as
            they are).
        max_new_tokens: Most tokens generated per paraphrase (replaces ``config``'s).
        config: Decoding options; its seed is replaced by the seed passed to :meth:`paraphrase`.
        batch_size: Prompts per generate call (None: the backend's own).
    """

    def __init__(self, lm: LanguageModel, *, template: str = DEFAULT_TEMPLATE, max_new_tokens: int = 256,
                 config: GenerationConfig = GenerationConfig(), batch_size: int | None = None):
        if "{text}" not in template:
            raise ValueError(f"the paraphrase template must contain {{text}}, got {template!r}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        self.lm, self.template, self.max_new_tokens = lm, template, max_new_tokens
        self.config, self.batch_size = config, batch_size

    def describe(self) -> dict:
        return {"model": self.lm.name, "template": self.template, "max_new_tokens": self.max_new_tokens,
                "do_sample": self.config.do_sample, "temperature": self.config.temperature,
                "top_k": self.config.top_k, "top_p": self.config.top_p}

    def prompts(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text's prompt, BOS included.

        Raises:
            ValueError: A prompt leaves fewer than ``max_new_tokens`` tokens of the model's
                context (naming the text's index and the lengths).
        """
        bos = [] if self.lm.bos_token_id is None else [self.lm.bos_token_id]
        prompts = [bos + ids for ids in self.lm.encode([self.template.replace("{text}", t) for t in texts])]
        for i, p in enumerate(prompts):
            if len(p) + self.max_new_tokens > self.lm.max_length:
                raise ValueError(f"text {i}: its paraphrase prompt has {len(p)} tokens, and with max_new_tokens="
                                 f"{self.max_new_tokens} exceeds the model's context of {self.lm.max_length}")
        return prompts

    def paraphrase(self, texts: Sequence[str], *, seed: int) -> list[str]:
        texts = list(texts)
        if not texts:
            return []
        config = replace(self.config, max_new_tokens=self.max_new_tokens, seed=seed)
        out = self.lm.generate(self.prompts(texts), config, batch_size=self.batch_size)
        eos = self.lm.eos_token_id
        return [self.lm.decode(ids[:-1] if ids and ids[-1] == eos else ids).strip() for ids in out]


@ATTACKS.register("paraphrase")
@dataclass(frozen=True)
class Paraphrase:
    """Replace the text by a paraphraser's rewrite of it.

    The strongest offline attack in Kirchenbauer et al.'s evaluation ("On the Reliability of
    Watermarks for Large Language Models", 2023): a rewrite keeps the meaning and few of the
    token contexts. A text without a word is returned unchanged (the paraphraser is not
    asked). A spec cannot name a paraphraser: pass it to
    :func:`~lmaudit.watermark.attacks.parse_attacks` as ``paraphraser=``.

    Attributes:
        paraphraser: What rewrites the text (e.g. :class:`LMParaphraser`); required.
    """

    paraphraser: Paraphraser | None = None

    name: ClassVar[str] = "paraphrase"

    def __post_init__(self) -> None:
        if self.paraphraser is None or not callable(getattr(self.paraphraser, "paraphrase", None)):
            raise ValueError(f"{self.name} needs a paraphraser (an object with paraphrase(texts, *, seed)), "
                             f"got {self.paraphraser!r}")

    def apply(self, text: str, *, seed: int = 0, human: str | None = None) -> Attacked:
        return self.apply_batch([text], seed=seed)[0]

    def apply_batch(self, texts: Sequence[str], *, seed: int = 0) -> list[Attacked]:
        """Every text paraphrased in one call to the paraphraser (texts without a word kept)."""
        texts = list(texts)
        todo = [i for i, t in enumerate(texts) if WORD.search(t)]
        new = self.paraphraser.paraphrase([texts[i] for i in todo], seed=seed) if todo else []
        if len(new) != len(todo):
            raise ValueError(f"the paraphraser returned {len(new)} texts for {len(todo)}")
        out = [Attacked(t) for t in texts]
        for i, t in zip(todo, new):
            out[i] = Attacked(t)
        return out
