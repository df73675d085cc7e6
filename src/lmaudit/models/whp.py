"""Who's Harry Potter as an lmaudit model: two networks combined at every next-token step.

:class:`WHPModel` implements the :class:`~lmaudit.models.base.LanguageModel` contract over a
base model and a reinforced one (fine-tuned further on the forget set), with next-token logits
z = z_b − α·ReLU(z_r − z_b) (Eldan & Russinovich 2023, https://arxiv.org/abs/2310.02238). Every
audit runs on it unchanged: statistics go through the same kernel as :class:`HFModel`'s, and
generation applies the same decoding options to the combined logits.

On disk (what ``lmaudit unlearn --method whp`` writes) it is the reinforced model's folder
with :data:`WHP_FILE` next to its weights, naming the base and α; :func:`is_whp_dir` and
:meth:`WHPModel.from_pretrained` let every command load it as the combination.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch

from lmaudit.models.base import VOCAB_STAT_FIELDS, GenerationConfig, TokenStats
from lmaudit.models.hf import HFModel, padded_token_stats
from lmaudit.ops.padding import pad_batch

#: The file that marks a model folder as the reinforced half of a WHP model.
WHP_FILE = "lmaudit_whp.json"


def whp_fingerprint(base: str, reinforced: str, alpha: float) -> str:
    """The combination's identity: both models' fingerprints and α."""
    key = json.dumps({"base": base, "reinforced": reinforced, "alpha": float(alpha)}, sort_keys=True)
    return "whp:" + hashlib.sha256(key.encode()).hexdigest()


def combine_logits(base: torch.Tensor, reinforced: torch.Tensor, alpha: float) -> torch.Tensor:
    """z_b − α·ReLU(z_r − z_b), in float32; any shape, both alike."""
    zb, zr = base.float(), reinforced.float()
    return zb - alpha * torch.relu(zr - zb)


def _cache_argument(model) -> str:
    """The KV cache's keyword: ``cache`` in transformers 5, ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def is_whp_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a WHP model (:data:`WHP_FILE`)."""
    return (Path(path).expanduser() / WHP_FILE).is_file()


class WHPModel:
    """The base model's logits pushed away from a reinforced model's, as one model.

    Tokenisation, special tokens and the tokenizer fingerprint are the base's (both models
    must share the vocabulary); the context length is the shorter of the two.

    Args:
        base: The original model (an :class:`HFModel`).
        reinforced: The base fine-tuned further on the forget set (an :class:`HFModel`).
        alpha: α ≥ 0; α = 0 is the base model exactly.

    Example:
        >>> lm = WHPModel.from_pretrained("runs/whp/model")  # doctest: +SKIP
    """

    def __init__(self, base: HFModel, reinforced: HFModel, alpha: float = 1.0):
        if base.vocab_size != reinforced.vocab_size:
            raise ValueError(f"the base ({base.vocab_size}) and reinforced ({reinforced.vocab_size}) models "
                             "must have the same vocabulary")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.base, self.reinforced, self.alpha = base, reinforced, float(alpha)
        self.name = f"whp({base.name}, {reinforced.name}, alpha={self.alpha:g})"
        self.bos_token_id, self.eos_token_id = base.bos_token_id, base.eos_token_id
        self.pad_token_id = base.pad_token_id
        self.max_length = min(base.max_length, reinforced.max_length)
        self.vocab_size = base.vocab_size
        self.batch_size = base.batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "WHPModel":
        """Load a WHP folder: the reinforced model in it and the base that :data:`WHP_FILE`
        names (a relative base path is taken relative to the folder), both with ``kwargs``
        (those of :meth:`HFModel.from_pretrained`).

        Raises:
            ValueError: the base's weights are not those the reinforced model was made from
                (its recorded ``file:`` fingerprint differs).
        """
        path = Path(path).expanduser()
        spec = json.loads((path / WHP_FILE).read_text())
        if not isinstance(spec, dict) or "base" not in spec or "alpha" not in spec:
            raise ValueError(f"{path}/{WHP_FILE} must be an object with 'base' and 'alpha'")
        base_path = Path(spec["base"]).expanduser()
        if not base_path.is_absolute() and (path / base_path).is_dir():
            base_path = path / base_path
        base = HFModel.from_pretrained(str(base_path), **kwargs)
        recorded = spec.get("base_fingerprint")
        if recorded and recorded.startswith("file:") and base.fingerprint() != recorded:
            raise ValueError(f"{path}/{WHP_FILE} was made from base weights {recorded}, but {base_path} now "
                             f"holds {base.fingerprint()}")
        reinforced = HFModel.from_pretrained(str(path), **kwargs)
        lm = cls(base, reinforced, alpha=spec["alpha"])
        lm.load_spec = {**reinforced.load_spec, "backend": "whp"}  # how an engine worker loads the same
        return lm

    # ----------------------------------------------------------------- identity
    def fingerprint(self) -> str:
        return whp_fingerprint(self.base.fingerprint(), self.reinforced.fingerprint(), self.alpha)

    def tokenizer_fingerprint(self) -> str:
        return self.base.tokenizer_fingerprint()

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def dtype(self) -> str:
        return self.base.dtype

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.base.encode(texts)

    def decode(self, ids: Sequence[int]) -> str:
        return self.base.decode(ids)

    # ------------------------------------------------------------------- logits
    def _forward(self, lm: HFModel, ids, mask, positions, past=None):
        kwargs = {"input_ids": ids.to(lm.device), "attention_mask": mask.to(lm.device), "use_cache": past is not None}
        if lm._accepts_position_ids:
            kwargs["position_ids"] = positions.to(lm.device)
        if past is not None and past is not True:
            kwargs[_cache_argument(lm.model)] = past
        return lm.model(**kwargs)

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(B, T, V) float32 combined logits of a padded batch."""
        zb = self._forward(self.base, ids, mask, positions).logits
        zr = self._forward(self.reinforced, ids, mask, positions).logits.to(zb.device)
        return combine_logits(zb, zr, self.alpha)

    # ------------------------------------------------------------------- scoring
    @torch.inference_mode()
    def token_stats(
        self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], *, padding_side: str = "right"
    ) -> list[TokenStats]:
        """As :meth:`HFModel.token_stats`, through the combined logits."""
        if padding_side == "left" and not (self.base._accepts_position_ids and self.reinforced._accepts_position_ids):
            raise ValueError("a model of the combination takes no position_ids; left padding would shift positions")
        return padded_token_stats(sequences, score_from, self.logits, pad_token_id=self.pad_token_id,
                                  max_length=self.max_length, padding_side=padding_side)

    def vocab_stat_fields(self) -> tuple[str, ...]:
        return VOCAB_STAT_FIELDS

    # ---------------------------------------------------------------- generation
    def applies_logits_processors(self) -> bool:
        return True

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig = GenerationConfig(),
        *,
        logits_processor=None,
        batch_size: int | None = None,
    ) -> list[list[int]]:
        """Continue each prompt token by token from the combined logits (both models keep a
        KV cache); ``logits_processor`` runs first, then temperature, top-k and top-p when
        sampling (the order of ``transformers``' own ``generate``)."""
        from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                            TopKLogitsWarper, TopPLogitsWarper)

        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (use the BOS token for an empty prompt)")
        processors = LogitsProcessorList(logits_processor or [])
        if config.do_sample:
            if config.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(config.temperature))
            if config.top_k:
                processors.append(TopKLogitsWarper(config.top_k))
            if config.top_p < 1.0:
                processors.append(TopPLogitsWarper(config.top_p))
        eos = self.eos_token_id if config.stop_at_eos else None
        bs = batch_size or self.batch_size
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[int]] = [[] for _ in prompts]
        for batch_no, start in enumerate(range(0, len(order), bs)):
            idx = order[start : start + bs]
            torch.manual_seed(config.seed + batch_no)
            new = self._generate_batch([prompts[i] for i in idx], config, processors, eos)
            for i, toks in zip(idx, new):
                out[i] = toks
        return out

    def _generate_batch(self, prompts, config: GenerationConfig, processors, eos: int | None) -> list[list[int]]:
        ids, mask, positions, _ = pad_batch(prompts, pad_token_id=self.pad_token_id, padding_side="left")
        device = self.base.device
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        seen = ids  # (B, T + steps) every token so far, for the processors
        step_ids, step_pos = ids, positions
        past_b = past_r = True  # True: start a cache
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        new: list[torch.Tensor] = []
        for _ in range(config.max_new_tokens):
            ob = self._forward(self.base, step_ids, mask, step_pos, past_b)
            orr = self._forward(self.reinforced, step_ids, mask, step_pos, past_r)
            past_b, past_r = _cache_of(ob), _cache_of(orr)
            scores = combine_logits(ob.logits[:, -1], orr.logits[:, -1].to(device), self.alpha)  # (B, V)
            scores = processors(seen, scores)
            if config.do_sample:
                token = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)  # (B,)
            else:
                token = scores.argmax(-1)
            if eos is not None:
                token = torch.where(done, torch.full_like(token, eos), token)
                done |= token == eos
            new.append(token)
            seen = torch.cat([seen, token[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_ids, step_pos = token[:, None], step_pos[:, -1:] + 1
            if eos is not None and bool(done.all()):
                break
        rows = torch.stack(new, dim=1).tolist() if new else [[] for _ in prompts]
        if eos is not None:
            rows = [r[: r.index(eos) + 1] if eos in r else r for r in rows]
        return rows
