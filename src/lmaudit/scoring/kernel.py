"""The scoring kernel: per-token statistics from next-token logits, in float32.

Everything lmaudit reports about a text (loss, Min-K%, Min-K%++, entropy, zlib ratios...)
is derived from these four numbers per scored token, so this is the one place where the
arithmetic has to be right. It is a pure function of logits and targets; the model
backend decides which positions to score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Rows of the (N, V) logit matrix converted to float32 at a time. Bounds the extra memory
# of the float32 copy (rows × V × 4 bytes × ~3 temporaries) whatever the batch.
DEFAULT_CHUNK_ROWS = 1024


@dataclass
class TokenStatsTensors:
    """Statistics for N scored positions, all float32 of shape (N,).

    Attributes:
        logprob: log p(x_t | x_<t) of the actual next token.
        vocab_mean: μ_t = Σ_v p_t(v) log p_t(v), the mean of log p under the model's own
            next-token distribution (Min-K%++'s centre). Note entropy = −μ_t.
        vocab_std: σ_t = sqrt(Σ_v p_t(v) (log p_t(v) − μ_t)²) (Min-K%++'s scale).
        entropy: H_t = −Σ_v p_t(v) log p_t(v) in nats.
    """

    logprob: torch.Tensor
    vocab_mean: torch.Tensor
    vocab_std: torch.Tensor
    entropy: torch.Tensor


@torch.no_grad()
def next_token_stats(
    logits: torch.Tensor, targets: torch.Tensor, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> TokenStatsTensors:
    """Token statistics for rows of next-token logits.

    Args:
        logits: (N, V) logits that predict ``targets``, any float dtype, any device.
            Row i must already be the position *before* target i (the causal shift is
            the caller's job, see :func:`gather_shifted`).
        targets: (N,) token ids.
        chunk_rows: rows converted to float32 at once.

    Returns:
        Float32 statistics of shape (N,), on the logits' device.

    Example:
        >>> s = next_token_stats(torch.zeros(1, 4), torch.tensor([2]))
        >>> round(s.logprob.item(), 4), round(s.entropy.item(), 4)
        (-1.3863, 1.3863)
    """
    if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"expected logits (N, V) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    parts = []
    for start in range(0, logits.shape[0], chunk_rows):
        chunk = logits[start : start + chunk_rows].float()  # (n, V), float32 whatever the model dtype
        logp = torch.log_softmax(chunk, dim=-1)  # (n, V)
        lp_target = logp.gather(1, targets[start : start + chunk_rows, None].long()).squeeze(1)  # (n,)
        p = logp.exp()
        # Where p == 0 (a -inf logit) log p is -inf and p·log p would be NaN; its true
        # contribution is 0, so zero log p there before multiplying.
        logp = torch.where(p > 0, logp, torch.zeros((), dtype=logp.dtype, device=logp.device))
        mu = (p * logp).sum(-1)  # (n,)
        # Centred second moment: E[(log p − μ)²] avoids the cancellation of E[(log p)²] − μ²
        # when the distribution is nearly deterministic (memorized tokens).
        var = (p * (logp - mu[:, None]).square()).sum(-1)
        parts.append((lp_target, mu, var.clamp_min(0).sqrt()))
    lp, mu, sd = (torch.cat(x) for x in zip(*parts)) if parts else (torch.empty(0),) * 3
    return TokenStatsTensors(logprob=lp, vocab_mean=mu, vocab_std=sd, entropy=-mu)


def gather_shifted(
    logits: torch.Tensor, input_ids: torch.Tensor, score_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Select the logits that predict each scored token (the causal shift, done once).

    Args:
        logits: (B, T, V) model outputs; position t predicts token t + 1.
        input_ids: (B, T) the tokens fed to the model.
        score_mask: (B, T) bool, True at the *target* positions to score (never position 0,
            which nothing predicts).

    Returns:
        ``(rows, targets, (b, t))``: rows (N, V) = logits[b, t − 1], targets (N,) =
        input_ids[b, t], and the batch and position index of each target, in row-major order.
    """
    if score_mask[:, 0].any():
        raise ValueError("position 0 has no preceding logits and cannot be scored")
    b, t = score_mask.nonzero(as_tuple=True)  # row-major: per sequence, positions ascending
    return logits[b, t - 1], input_ids[b, t], (b, t)
