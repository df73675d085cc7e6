"""The scoring kernel: per-token statistics from next-token logits, in float32.

Everything lmaudit reports about a text (loss, Min-K%, Min-K%++, entropy, zlib ratios...)
is derived from these four numbers per scored token, so this is the one place where the
arithmetic has to be right. It is a pure function of logits and targets; the model
backend decides which positions to score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Rows of the (N, V) logit matrix processed at a time: 256 rows of a 32k vocabulary is
# 32 MiB of float32 per temporary, small enough to stay in cache for the few passes below
# (measured fastest of 64/256/1024 rows on our CPUs) and to bound the float32 copy of a
# bf16 batch.
DEFAULT_CHUNK_ROWS = 256


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
            the caller's job, see :func:`shifted_stats`).
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
        z = logits[start : start + chunk_rows].float()  # (n, V), float32 whatever the model dtype
        # log p = z − lse(z) is a shift of z, so under p: E[log p] = E[z] − lse and
        # Var[log p] = Var[z]. Working with z' = z − max(z) ≤ 0 keeps E[z'²] − E[z']² free of
        # cancellation for peaked (memorized) rows, where p sits on z' = 0; this needs three
        # passes over the vocabulary instead of the seven of log_softmax, exp, centring.
        zs = z - z.amax(-1, keepdim=True)  # (n, V), ≤ 0
        target_zs = zs.gather(1, targets[start : start + chunk_rows, None].long()).squeeze(1)  # (n,)
        total, mean_z, var = _moments(zs)
        if not torch.isfinite(mean_z).all():
            # A -inf logit (a banned token) has p = 0 and contributes nothing, but 0·(-inf)
            # is NaN. Rare, so only then: floor z' at a finite value whose exp is exactly 0.
            # The target keeps its true value (gathered above): probability 0 shows as -inf.
            total, mean_z, var = _moments(zs.clamp_(min=-1e30))
        log_total = total.log()
        lp_target = target_zs - log_total
        parts.append((lp_target, mean_z - log_total, var.sqrt()))
    if not parts:
        empty = torch.empty(0, device=logits.device)
        return TokenStatsTensors(empty, empty, empty, empty)
    lp, mu, sd = (torch.cat(x) for x in zip(*parts))
    return TokenStatsTensors(logprob=lp, vocab_mean=mu, vocab_std=sd, entropy=-mu)


def _moments(zs: torch.Tensor):
    """Σ e^z', E_p[z'] and Var_p[z'] per row of z' = z − max z (three passes over the row)."""
    e = zs.exp()  # (n, V), unnormalised p
    total = e.sum(-1)
    ez = e.mul_(zs)  # e·z', in place
    mean_z = ez.sum(-1) / total
    var = (torch.einsum("nv,nv->n", ez, zs) / total - mean_z.square()).clamp_min(0)
    return total, mean_z, var


def shifted_stats(logits: torch.Tensor, input_ids: torch.Tensor, score_mask: torch.Tensor, *,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[TokenStatsTensors, torch.Tensor, torch.Tensor]:
    """Statistics of the scored tokens of a batch, with the causal shift done once, here.

    Args:
        logits: (B, T, V) model outputs; position t predicts token t + 1.
        input_ids: (B, T) the tokens fed to the model.
        score_mask: (B, T) bool, True at the *target* positions to score (never position 0,
            which nothing predicts).

    Returns:
        ``(stats, targets, b)``: statistics and token ids of the N scored tokens in
        row-major order (sequence by sequence, positions ascending), and each one's row b.
    """
    if score_mask[:, 0].any():
        raise ValueError("position 0 has no preceding logits and cannot be scored")
    B, T, V = logits.shape
    # Row (b, t) of the flat view predicts input_ids[b, t + 1]. Scoring the flat,
    # contiguous view costs one wasted row per sequence but never copies the (B·T, V) logits,
    # which a gather of the scored rows would.
    next_ids = torch.roll(input_ids, -1, dims=1)  # (B, T); the wrapped last column is never used
    from_mask = torch.roll(score_mask, -1, dims=1)  # (B, T): True where the *next* token is scored
    rows = from_mask.reshape(-1).nonzero().squeeze(1)  # (N,)
    flat = logits.reshape(B * T, V)
    if rows.numel() * 2 < B * T:  # mostly unscored (long overlapping windows): gather is cheaper
        stats = next_token_stats(flat[rows], next_ids.reshape(-1)[rows], chunk_rows=chunk_rows)
    else:
        full = next_token_stats(flat, next_ids.reshape(-1), chunk_rows=chunk_rows)
        stats = TokenStatsTensors(*(getattr(full, f)[rows] for f in ("logprob", "vocab_mean", "vocab_std", "entropy")))
    return stats, next_ids.reshape(-1)[rows], rows // T
