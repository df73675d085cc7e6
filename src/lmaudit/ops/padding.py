"""Padding token id sequences into a batch, masked by length (never by token id)."""

from __future__ import annotations

from typing import Sequence

import torch


def pad_batch(sequences: Sequence[Sequence[int]], *, pad_token_id: int, padding_side: str = "right"):
    """Pad token id sequences into a batch.

    Returns:
        ``(ids, mask, positions, offsets)``: (B, T) ids, attention mask and position ids
        (counting real tokens only, so left padding does not shift them), and where each
        sequence starts in its row.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    offsets = []
    for i, seq in enumerate(sequences):
        off = width - len(seq) if padding_side == "left" else 0
        ids[i, off : off + len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[i, off : off + len(seq)] = 1
        offsets.append(off)
    positions = (mask.cumsum(1) - 1).clamp_min(0)
    return ids, mask, positions, offsets
