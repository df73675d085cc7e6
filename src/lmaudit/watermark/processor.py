"""Watermarked generation: a Hugging Face logits processor, and lmaudit's batched generation
with it.

:class:`WatermarkProcessor` is a plain ``(input_ids (B, T), scores (B, V)) -> scores``
callable: put it in ``model.generate(logits_processor=LogitsProcessorList([...]))`` or in any
lmaudit backend's ``generate(..., logits_processor=[...])``. Hugging Face applies custom
processors before its temperature and top-k/top-p warpers, so KGW's δ is added to the raw
logits, as in lm-watermarking.

Each step hashes the last ``config.context`` ids of every row (prompt and generated tokens
alike; with left padding a row whose prompt is shorter than the context sees padding ids in
its first steps, positions the detector never scores because they have no context in the
text). A batch whose ids are still shorter than the context is left unwatermarked.
"""

from __future__ import annotations

from typing import Sequence

import torch

from lmaudit.models.base import GenerationConfig, require
from lmaudit.watermark.config import WatermarkConfig
from lmaudit.watermark.schemes import build
from lmaudit.watermark.seeding import VocabHasher

#: lm-watermarking's sampling defaults: multinomial sampling at temperature 0.7.
DEFAULT_GENERATION = GenerationConfig(max_new_tokens=64, do_sample=True, temperature=0.7, stop_at_eos=False)


class WatermarkProcessor:
    """Bias (KGW) or choose (Gumbel) each next token under ``config`` and the secret ``key``.

    Args:
        config: The watermark configuration (its ``key_id`` must be the key's).
        key: The secret key.
        temperature: The sampling temperature (Gumbel samples inside the processor; KGW
            ignores it, the backend applies it after the bias).

    Example:
        >>> from lmaudit.models.fake import FakeLM
        >>> lm = FakeLM()
        >>> config = WatermarkConfig.create(lm, key=42, preset="lefthash")
        >>> p = WatermarkProcessor(config, key=42)
        >>> out = p(torch.tensor([[256, 104]]), torch.zeros(1, lm.vocab_size))
        >>> sorted(set(out[0].tolist())) == [0.0, config.delta]
        True
    """

    #: Safe on an engine's workers (:mod:`lmaudit.engines`): each step depends only on the
    #: config, the key and the ids in front of it, and nothing is read back after ``generate``
    #: (the hasher it keeps is a cache, rebuilt wherever it runs). Each worker is sent the
    #: scheme, so the key's derived stream key travels to the cluster.
    portable = True

    def __init__(self, config: WatermarkConfig, key: int, *, temperature: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.config = config
        self.scheme = build(config, key)
        self.temperature = float(temperature)
        self._hasher: VocabHasher | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        c = self.config.context
        if input_ids.shape[1] < c:
            return scores
        h = self._hasher
        if h is None or h.width != scores.shape[-1] or h.device != scores.device:
            h = self._hasher = VocabHasher(self.config.seeding, self.config.h, self.scheme.stream_key,
                                           scores.shape[-1], scores.device)
        values = h(input_ids[:, input_ids.shape[1] - c :])  # (B, V)
        return self.scheme.apply(scores, values, temperature=self.temperature)


def generate(lm, prompts: Sequence[Sequence[int]], config: WatermarkConfig | None, key: int | None = None, *,
             generation: GenerationConfig = DEFAULT_GENERATION, batch_size: int | None = None) -> list[list[int]]:
    """New token ids for each prompt, watermarked under ``config`` and ``key`` (``config``
    None: the same decoding without a watermark, the baseline of every comparison).

    The configuration is checked against the model's tokenizer and the key first, so a
    generation can never be written under a config that would not detect it.

    Raises:
        CapabilityError: ``lm`` cannot apply logits processors (vLLM), before any work.
    """
    if config is None:
        return lm.generate(prompts, generation, batch_size=batch_size)
    require(lm, "logits_processors", audit="watermarked generation")
    config.check(key=key, lm=lm)
    processor = WatermarkProcessor(config, key, temperature=generation.temperature)
    decoding = processor.scheme.decoding(generation)
    return lm.generate(prompts, decoding, logits_processor=[processor], batch_size=batch_size)
