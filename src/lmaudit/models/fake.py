"""A deterministic fake language model for tests: the core contract and nothing more.

:class:`FakeLM` tokenizes UTF-8 bytes (ids 0-255, then BOS and EOS) and predicts the next
byte from a fixed random bigram table plus what followed the longest context it has seen in
the texts it was "trained" on (a back-off n-gram model), so its members get a lower loss than other texts, and a prefix of
a member is continued with the member's own bytes. It needs no weights, no tokenizer files
and no download, builds instantly, and gives the same numbers on every machine. It has none
of the capabilities (:class:`~lmaudit.models.base.Gradients`,
:class:`~lmaudit.models.base.PromptSearch`) but :class:`~lmaudit.models.base.Predictions`,
:class:`~lmaudit.models.base.VocabStats` and :class:`~lmaudit.models.base.LogitsProcessors`:
audits that need the others must refuse it.

Example:
    >>> lm = FakeLM(["the cat sat on the mat"])
    >>> ids = lm.encode(["the cat"])[0]
    >>> lm.decode(lm.generate([[lm.bos_token_id, *ids]], GenerationConfig(max_new_tokens=8))[0])
    ' sat on '
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from lmaudit.models.base import VOCAB_STAT_FIELDS, GenerationConfig, TokenStats
from lmaudit.ops.kernel import next_token_stats


class FakeLM:
    """Byte-level n-gram "model" over ``texts`` (see the module docstring).

    Args:
        texts: What the model has memorised (its members).
        order: Longest context, in bytes, whose continuations are counted.
        boost: Logit added to each byte in proportion to how often it followed the longest
            context seen (large enough to beat the bigram table's noise).
        max_length: Context length reported to the audits.
        seed: Seeds the random bigram table.
    """

    def __init__(self, texts: Sequence[str] = (), *, order: int = 24, boost: float = 10.0, max_length: int = 512,
                 seed: int = 0, name: str = "fake"):
        self.name = name
        self.bos_token_id, self.eos_token_id = 256, 257
        self.vocab_size = 258
        self.max_length = max_length
        self.order, self.boost, self.seed = order, boost, seed
        self._bigram = np.random.default_rng(seed).normal(0.0, 1.0, (self.vocab_size, self.vocab_size))  # (V, V)
        self._counts: dict[tuple[int, ...], dict[int, int]] = defaultdict(dict)  # context -> {next: count}
        digest = hashlib.blake2b(f"{order}|{boost}|{max_length}|{seed}".encode(), digest_size=16)
        for text in texts:
            digest.update(b"\0" + text.encode("utf-8"))
            ids = [self.bos_token_id, *self.encode([text])[0], self.eos_token_id]
            for t in range(1, len(ids)):
                for k in range(1, order + 1):
                    if t - k >= 0:
                        seen = self._counts[tuple(ids[t - k : t])]
                        seen[ids[t]] = seen.get(ids[t], 0) + 1
        self._fingerprint = digest.hexdigest()

    def fingerprint(self) -> str:
        return self._fingerprint

    def tokenizer_fingerprint(self) -> str:
        return "fake-utf8-bytes-v1"

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        names = {self.bos_token_id: "<bos>", self.eos_token_id: "<eos>"}
        out, run = [], bytearray()
        for i in ids:
            if i in names:
                out.append(run.decode("utf-8", errors="replace") + names[i])
                run = bytearray()
            else:
                run.append(i)
        return "".join(out) + run.decode("utf-8", errors="replace")

    def logits(self, context: Sequence[int]) -> np.ndarray:
        """(V,) next-token logits after ``context`` (at least one token)."""
        z = self._bigram[context[-1]].copy()
        for k in range(min(self.order, len(context)), 0, -1):  # the longest context seen wins
            seen = self._counts.get(tuple(context[-k:]))
            if seen is not None:
                total = sum(seen.values())
                for token, count in seen.items():
                    z[token] += self.boost * count / total
                break
        return z

    def token_stats(self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], *,
                    padding_side: str = "right") -> list[TokenStats]:
        out = []
        for seq, start in zip(sequences, score_from, strict=True):
            if not 1 <= start <= len(seq) or len(seq) > self.max_length:
                raise ValueError(f"bad sequence: {len(seq)} tokens, score_from {start}")
            logits = torch.as_tensor(np.stack([self.logits(seq[:t]) for t in range(start, len(seq))])
                                     if len(seq) > start else np.zeros((0, self.vocab_size)), dtype=torch.float32)
            targets = torch.as_tensor(list(seq[start:]), dtype=torch.long)
            s = next_token_stats(logits, targets)
            out.append(TokenStats(targets.to(torch.int32).numpy(), s.logprob.numpy(), s.vocab_mean.numpy(),
                                  s.vocab_std.numpy(), s.entropy.numpy()))
        return out

    def top_predictions(self, sequences: Sequence[Sequence[int]], score_from: Sequence[int]) -> list[np.ndarray]:
        out = []
        for seq, start in zip(sequences, score_from, strict=True):
            if not 1 <= start <= len(seq) or len(seq) > self.max_length:
                raise ValueError(f"bad sequence: {len(seq)} tokens, score_from {start}")
            out.append(np.array([int(np.argmax(self.logits(seq[:t]))) for t in range(start, len(seq))], dtype=np.int64))
        return out

    def vocab_stat_fields(self) -> tuple[str, ...]:
        return VOCAB_STAT_FIELDS

    def applies_logits_processors(self) -> bool:
        return True

    def generate(self, prompts: Sequence[Sequence[int]], config: GenerationConfig = GenerationConfig(), *,
                 logits_processor=None, batch_size: int | None = None) -> list[list[int]]:
        rng = np.random.default_rng(config.seed)
        out = []
        for prompt in prompts:
            if not prompt:
                raise ValueError("every prompt needs at least one token")
            seq, new = list(prompt), []
            for _ in range(config.max_new_tokens):
                scores = torch.as_tensor(self.logits(seq), dtype=torch.float32)[None]  # (1, V)
                for proc in logits_processor or []:
                    scores = proc(torch.as_tensor([seq]), scores)
                token = _pick(scores[0].double().numpy(), config, rng)
                seq.append(token)
                new.append(token)
                if config.stop_at_eos and token == self.eos_token_id:
                    break
            out.append(new)
        return out


def _pick(z: np.ndarray, config: GenerationConfig, rng: np.random.Generator) -> int:
    if not config.do_sample:
        return int(np.argmax(z))
    z = z / config.temperature
    if config.top_k:
        z = np.where(z >= np.sort(z)[-config.top_k], z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if config.top_p < 1.0:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), config.top_p)) + 1]
        p = np.where(np.isin(np.arange(len(p)), keep), p, 0.0)
        p /= p.sum()
    return int(rng.choice(len(p), p=p))
