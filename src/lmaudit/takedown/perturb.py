"""Top-k perturbation: Gaussian noise on each step's k highest logits, then decode as usual.

The idea (Wei et al. 2024, "Evaluating Copyright Takedown Methods for Language Models",
https://arxiv.org/abs/2406.18664, CoTaEval): a memorised passage is reproduced because its
next token is, step after step, the model's top choice; jittering the logits of the few
tokens that compete for the top (and only those, so no implausible token is promoted from
the tail) breaks long verbatim runs while keeping every choice among likely tokens.
CoTaEval decodes greedily after the noise; lmaudit's protocol does the same.

Defaults are CoTaEval's: k = 50 (its processor reads ``model.generation_config.top_k``,
which is transformers' default of 50 in the version it pins; Llama-2-chat's generation
config sets no top_k) and sigma = 3 (its reported runs, ``--std 3``; the argparse default of
0.1 is not what the paper evaluates).

The noise is reproducible: each ``generate`` batch draws from a ``torch.Generator`` seeded
with ``seed`` and the batch's prompt ids, so the same prompts in the same batch get the same
noise however many batches ran before, and reusing the processor object changes nothing.
Like seeded sampling in :class:`lmaudit.models.base.GenerationConfig`, the draws depend on the
batch's composition (which rows share a batch, and their padding) and on the device (CPU and
CUDA generators give different streams).
"""

from __future__ import annotations

import hashlib

import torch

from lmaudit.takedown.steps import StepTracker


class TopKPerturbation:
    """Add N(0, sigma²) noise to each row's k highest scores; leave every other score unchanged.

    A Hugging Face logits processor (``__call__(input_ids (B, T), scores (B, V)) -> scores``):
    use it in ``model.generate(logits_processor=LogitsProcessorList([...]))`` or in any lmaudit
    backend's ``generate(..., logits_processor=[...])``, :class:`~lmaudit.models.fake.FakeLM`
    included. The k entries are chosen from the scores it receives (after any processor
    before it); ties at the k-th place are broken as ``torch.topk`` breaks them. A row with
    fewer than k finite scores gets noise on some -inf entries, which stay -inf.

    Args:
        k: How many of the highest scores get noise (capped at the vocabulary size).
        sigma: Standard deviation of the noise, in logits. 0 leaves the scores unchanged.
        seed: Seeds the noise (together with each batch's prompt ids).

    Example:
        >>> p = TopKPerturbation(k=2, sigma=1.0, seed=0)
        >>> scores = torch.tensor([[4.0, 3.0, 0.0, -1.0]])
        >>> out = p(torch.tensor([[1, 7]]), scores.clone())
        >>> bool((out[0, 2:] == scores[0, 2:]).all()), bool((out[0, :2] != scores[0, :2]).all())
        (True, True)
    """

    #: Safe on an engine's workers (:mod:`lmaudit.engines`): a batch's noise is seeded from the
    #: seed and that batch's prompt ids alone, and nothing is read back after ``generate``.
    portable = True

    def __init__(self, k: int = 50, sigma: float = 3.0, *, seed: int = 0):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not sigma >= 0:  # also refuses NaN
            raise ValueError(f"sigma must be non-negative, got {sigma}")
        self.k, self.sigma, self.seed = int(k), float(sigma), int(seed)
        self._steps = StepTracker()
        self._generator: torch.Generator | None = None

    def reset(self) -> None:
        """Start the next call as a new batch (the tracker does this by itself for ``generate``)."""
        self._steps.reset()

    def _reseed(self, input_ids: torch.Tensor, device: torch.device) -> None:
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{self.seed}|{tuple(input_ids.shape)}|".encode())
        digest.update(input_ids.detach().to("cpu", torch.int64).numpy().tobytes())
        self._generator = torch.Generator(device=device)
        self._generator.manual_seed(int.from_bytes(digest.digest(), "little") & (2**63 - 1))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._steps.is_new(input_ids) or self._generator is None or self._generator.device != scores.device:
            self._reseed(input_ids, scores.device)
        k = min(self.k, scores.shape[-1])
        top = scores.topk(k, dim=-1).indices  # (B, k)
        noise = torch.randn(top.shape, generator=self._generator, device=scores.device, dtype=torch.float32)
        return scores.scatter_add(-1, top, (noise * self.sigma).to(scores.dtype))  # (B, V), a new tensor
