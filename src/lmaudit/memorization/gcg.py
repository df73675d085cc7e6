"""GCG prompt search (Zou et al. 2023) with a length search, for the Adversarial Compression Ratio.

The search itself: what it optimises, how candidates are drawn and verified, and how prompt
lengths are walked, is described in :mod:`lmaudit.memorization.acr`, which runs it per target
and reports the results. It needs the model's :class:`~lmaudit.models.base.PromptSearch`
capability (embeddings, a forward pass from embeddings, the allowed prompt tokens) and the core
contract's ``encode``/``decode``/``generate`` to verify a prompt as a user would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from lmaudit.models.base import GenerationConfig, PromptSearch

if TYPE_CHECKING:
    from lmaudit.memorization.acr import ACRConfig


class Objective:
    """Cross-entropy of one target after a prompt: batched values and the one-hot gradient."""

    def __init__(self, model: PromptSearch, target: Sequence[int], prefix: Sequence[int]):
        self.model = model
        self.W = model.input_embeddings()  # (R, d)
        device = self.W.device
        self.target = torch.as_tensor(list(target), device=device)
        with torch.no_grad():
            self.prefix_emb = self.W[torch.as_tensor(list(prefix), dtype=torch.long, device=device)]  # (b, d)
            self.target_emb = self.W[self.target[:-1]]  # the last target token is never an input
        self.m = len(target)
        self.forward_passes = 0  # sequences evaluated (candidates and gradients)

    def _logits(self, prompt_emb: torch.Tensor) -> torch.Tensor:
        """(B, m, V) float32 logits at the positions that predict the target."""
        B = prompt_emb.shape[0]
        emb = torch.cat([self.prefix_emb.expand(B, -1, -1), prompt_emb, self.target_emb.expand(B, -1, -1)], dim=1)
        self.forward_passes += B
        return self.model.logits_from_embeddings(emb, last=self.m)  # (B, m, R)

    def losses(self, prompts: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For prompts (B, n): (B,) mean cross-entropy of the target, and (B,) whether teacher-forced
        greedy decoding reproduces every target token."""
        out_loss, out_exact = [], []
        with torch.inference_mode():
            for s in range(0, len(prompts), batch):
                logits = self._logits(self.W[prompts[s : s + batch]])
                tgt = self.target.expand(logits.shape[0], -1)
                ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt, reduction="none").mean(1)
                out_loss.append(ce)
                out_exact.append((logits.argmax(-1) == tgt).all(-1))
        return torch.cat(out_loss), torch.cat(out_exact)

    def gradient(self, prompt: torch.Tensor) -> torch.Tensor:
        """(n, V) gradient of the loss with respect to the one-hot encoding of ``prompt``."""
        one_hot = torch.zeros(len(prompt), self.W.shape[0], device=self.W.device, dtype=self.W.dtype)
        one_hot[torch.arange(len(prompt)), prompt] = 1.0
        one_hot.requires_grad_(True)
        logits = self._logits((one_hot @ self.W)[None])
        loss = torch.nn.functional.cross_entropy(logits[0], self.target)
        # Only the one-hot's gradient: the model's .grad fields are never touched.
        (grad,) = torch.autograd.grad(loss, [one_hot])
        return grad


@dataclass
class Attempt:
    n: int
    steps: int
    success: bool
    best_loss: float
    prompt: torch.Tensor  # best ids found (on success, those before decoding and re-encoding)
    verified_text: str | None = None
    verified_ids: list[int] | None = None


class LengthSearch:
    """GCG with a length search for one target."""

    def __init__(self, model, target: list[int], cfg: "ACRConfig", allowed: torch.Tensor, seed: int,
                 deadline: float | None):
        self.model, self.target, self.cfg = model, target, cfg
        self.prefix = [model.bos_token_id] if cfg.bos == "prepend" and model.bos_token_id is not None else []
        self.obj = Objective(model, target, self.prefix)
        self.allowed = allowed.to(self.obj.W.device)
        self.allowed_ids = torch.nonzero(self.allowed)[:, 0]
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        self.deadline = deadline
        self.steps = 0
        self.verifications = 0
        self.stopped_by_budget = False

    def out_of_time(self) -> bool:
        """True once the deadline has passed; remembered, since it is what stopped the search."""
        if self.deadline is not None and time.time() > self.deadline:
            self.stopped_by_budget = True
        return self.stopped_by_budget

    def random_tokens(self, n: int) -> torch.Tensor:
        pick = torch.randint(0, len(self.allowed_ids), (n,), generator=self.gen)
        return self.allowed_ids[pick.to(self.allowed_ids.device)]

    def verify(self, ids: torch.Tensor) -> tuple[bool, str, list[int]]:
        """Decode, re-encode, generate greedily: does the text prompt reproduce the target?"""
        self.verifications += 1
        text = self.model.decode(ids.tolist())
        again = self.model.encode([text])[0]
        if not again:
            return False, text, again
        out = self.model.generate([[*self.prefix, *again]], GenerationConfig(max_new_tokens=len(self.target),
                                                                              stop_at_eos=False), batch_size=1)[0]
        return out == self.target, text, again

    def _take(self, cands: torch.Tensor, loss: torch.Tensor, exact: torch.Tensor):
        """Among candidates, a verified success if one exists (lowest loss first), else None."""
        for i in torch.nonzero(exact)[:, 0][torch.argsort(loss[exact])].tolist()[:3]:
            ok, text, again = self.verify(cands[i])
            if ok:
                return i, text, again
        return None

    def optimise(self, prompt: torch.Tensor, steps: int) -> Attempt:
        """Up to ``steps`` GCG steps from ``prompt``; stops at the first verified success."""
        cfg, n = self.cfg, len(prompt)
        loss, exact = self.obj.losses(prompt[None], cfg.n_candidates)
        best, best_loss = prompt, float(loss[0])
        if bool(exact[0]) and (hit := self._take(prompt[None], loss, exact)):
            return Attempt(n, 0, True, best_loss, prompt, hit[1], hit[2])
        current, best_step = prompt, 0
        k = min(cfg.top_k, len(self.allowed_ids))
        for step in range(1, steps + 1):
            if self.out_of_time():
                return Attempt(n, step - 1, False, best_loss, best)
            self.steps += 1
            grad = self.obj.gradient(current)
            grad[:, ~self.allowed] = float("inf")
            top = (-grad).topk(k, dim=1).indices  # (n, k)
            pos = torch.randint(0, n, (cfg.n_candidates,), generator=self.gen).to(top.device)
            pick = torch.randint(0, k, (cfg.n_candidates,), generator=self.gen).to(top.device)
            cands = current.repeat(cfg.n_candidates, 1)
            cands[torch.arange(cfg.n_candidates, device=top.device), pos] = top[pos, pick]
            loss, exact = self.obj.losses(cands, cfg.n_candidates)
            if exact.any() and (hit := self._take(cands, loss, exact)):
                i, text, again = hit
                return Attempt(n, step, True, float(loss[i]), cands[i], text, again)
            i = int(loss.argmin())
            current = cands[i]  # GCG moves to the best candidate even if it is worse than the current
            if float(loss[i]) < best_loss:
                best, best_loss, best_step = current, float(loss[i]), step
            elif cfg.patience is not None and step - best_step >= cfg.patience:
                return Attempt(n, step, False, best_loss, best)
        return Attempt(n, steps, False, best_loss, best)

    def drop_one(self, prompt: torch.Tensor) -> torch.Tensor:
        """``prompt`` without the token whose removal raises the loss least."""
        n = len(prompt)
        cands = torch.stack([torch.cat([prompt[:i], prompt[i + 1 :]]) for i in range(n)])
        loss, exact = self.obj.losses(cands, self.cfg.n_candidates)
        loss = torch.where(exact, loss - 1e9, loss)  # a removal that keeps the match wins outright
        return cands[int(loss.argmin())]

    def run(self) -> tuple[Attempt | None, list[Attempt]]:
        cfg, m = self.cfg, len(self.target)
        n_max = cfg.max_prompt_tokens if cfg.max_prompt_tokens is not None else max(1, m - 1)
        n = min(cfg.start_tokens if cfg.start_tokens is not None else n_max, n_max)
        steps = cfg.steps
        history: list[Attempt] = []
        attempt = self.optimise(self.random_tokens(n), steps)
        history.append(attempt)
        while not attempt.success and n < n_max and not self.out_of_time():
            grow = min(cfg.grow_tokens, n_max - n)
            n += grow
            steps = int(round(steps * cfg.steps_growth))
            attempt = self.optimise(torch.cat([self.random_tokens(grow), attempt.prompt]), steps)
            history.append(attempt)
        if not attempt.success:
            return None, history
        found = attempt
        # Shrink from what the prompt's text encodes to: the length that counts.
        while len(found.verified_ids) > 1 and not self.out_of_time():
            start = torch.as_tensor(found.verified_ids, device=found.prompt.device)
            attempt = self.optimise(self.drop_one(start), cfg.steps)
            history.append(attempt)
            if not attempt.success or len(attempt.verified_ids) >= len(found.verified_ids):
                break  # failed, or re-encoding gave a prompt no shorter than before: no progress
            found = attempt
        return found, history
