"""The goldfish loss: leave a pseudo-random 1/k of the target tokens out of the training loss,
so that no passage can be learnt, and later reproduced, verbatim.

Hans et al. 2024, "Be like a Goldfish, Don't Memorize! Mitigating Memorization in Generative
LLMs" (https://arxiv.org/abs/2406.10209; code: ahans30/goldfish-loss). A model trained this
way never sees the gradient of some tokens of every document; greedy decoding of a memorised
prefix then has to guess at those positions, and a wrong guess ends an exact extraction.

Which tokens are dropped must depend on the text only, not on where it sits in a batch or a
document: a passage repeated in many documents would otherwise have every one of its tokens
learnt from some copy. The hashed scheme therefore decides token i from a hash of the ``h``
tokens before it. Unlike the public code, whose hash is a product of the token ids (blind to
their order, overflowing int64, and 0 whenever an id is 0, so every context holding token 0
lands in one bucket), the hash here is xxHash's XXH3-64 of the context's ids packed as
fixed-width little-endian bytes, seeded by the key: order-sensitive, and token 0 is an id like
any other.

Conventions (Hugging Face's): ``labels[i]`` is the target predicted from the tokens before
``i`` (the model shifts internally); position 0 is never a target, so it is never dropped.
Masks are computed on token ids, never on labels, so what is dropped does not depend on which
labels a caller had already ignored (a prompt in SFT, padding).

Cost: one XXH3 call per token, about 0.2 µs on a 2-core laptop-class CPU (measured:
1,000,000 tokens in 0.19 s), far below a training step; nothing is cached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import xxhash

IGNORE_INDEX = -100  # the label Hugging Face's (and torch's) cross-entropy ignores
SCHEMES = ("hash", "static")
_MAX_ID = 2**32  # token ids are packed as uint32: far beyond any vocabulary in use


@dataclass(frozen=True)
class GoldfishConfig:
    """Which target tokens the goldfish loss drops.

    Attributes:
        k: One target token in ``k`` is dropped on average (k >= 2). The paper's default is 4.
        h: Context width of the hash scheme: token i is decided by the ``h`` tokens before it
            (h >= 1; the paper's hashed configurations use 13). Unused by the static scheme.
        key: Secret of the hash (an int in [0, 2**64) seeds XXH3 directly; a string seeds it
            with the XXH3-64 of its UTF-8 bytes). Another key drops other tokens.
        scheme: "hash": drop token i iff XXH3-64(key, ids[max(0, i-h):i]) mod k == 0; the
            targets 1 to h−1 are decided by the shorter context before them (BOS included), so
            they are hashed too (target h on has its full context), and the same h-token context always gives the same decision,
            wherever it occurs. "static": drop positions k, 2k, 3k, ... of the sequence (the
            k-th, 2k-th, ... target; position 0 is the first token and never a target), which
            depends on the position, not the text.
    """

    k: int = 4
    h: int = 13
    key: int | str = 0
    scheme: Literal["hash", "static"] = "hash"

    def __post_init__(self) -> None:
        for name in ("k", "h"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"GoldfishConfig.{name} must be an integer, got {value!r}")
        if self.k < 2:
            raise ValueError(f"GoldfishConfig.k must be at least 2 (1 would drop every target token), got {self.k}")
        if self.k > 2**32:
            raise ValueError(f"GoldfishConfig.k must be at most 2**32 (a 64-bit hash mod a larger k would drop "
                             f"next to nothing), got {self.k}")
        if self.h < 1:
            raise ValueError(f"GoldfishConfig.h must be at least 1 (tokens of context hashed), got {self.h}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"GoldfishConfig.scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if isinstance(self.key, bool) or not isinstance(self.key, (int, str)):
            raise ValueError(f"GoldfishConfig.key must be an int or a string, got {self.key!r}")
        if isinstance(self.key, int) and not 0 <= self.key < 2**64:
            raise ValueError(f"GoldfishConfig.key must be in [0, 2**64) when an int, got {self.key}")

    @property
    def seed(self) -> int:
        """The XXH3 seed the key stands for."""
        return self.key if isinstance(self.key, int) else xxhash.xxh3_64_intdigest(self.key.encode("utf-8"))

    def to_dict(self) -> dict:
        """The configuration as JSON-ready values (``GoldfishConfig(**d)`` restores it)."""
        return asdict(self)


def _as_ids(token_ids) -> np.ndarray:
    """A 1-D uint32 array of the ids (a list, tuple, numpy array or torch tensor)."""
    if hasattr(token_ids, "detach"):  # a torch tensor
        token_ids = token_ids.detach().cpu().numpy()
    ids = np.asarray(token_ids)
    if ids.ndim != 1:
        raise ValueError(f"goldfish_mask takes one sequence of token ids (1-D), got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= _MAX_ID):
        raise ValueError(f"token ids must lie in [0, 2**32), got {ids.min()}..{ids.max()} "
                         f"(labels with {IGNORE_INDEX} are not token ids: pass input_ids)")
    return ids.astype("<u4", copy=False)


def goldfish_mask(token_ids, config: GoldfishConfig) -> np.ndarray:
    """Which positions of one sequence the goldfish loss drops (True = left out of the loss).

    Args:
        token_ids: The sequence as the model reads it (BOS included if it has one), 1-D:
            a list, numpy array or torch tensor of ids in [0, 2**32).
        config: k, h, key and scheme (:class:`GoldfishConfig`).

    Returns:
        A bool array as long as the sequence; position 0 is always False.

    >>> goldfish_mask([1, 5, 9, 2, 7, 7, 3, 4], GoldfishConfig(k=4, scheme="static")).nonzero()[0].tolist()
    [4]
    """
    ids = _as_ids(token_ids)
    n = len(ids)
    drop = np.zeros(n, dtype=bool)
    if config.scheme == "static":
        drop[config.k :: config.k] = True
        return drop
    data, h, k, seed = ids.tobytes(), config.h, config.k, config.seed
    digest = xxhash.xxh3_64_intdigest
    for i in range(1, n):  # 4 bytes per id: the context of i is data[4·max(0, i-h) : 4·i]
        drop[i] = digest(data[4 * max(0, i - h) : 4 * i], seed) % k == 0
    return drop


def _segments(real: np.ndarray, position_ids: np.ndarray | None) -> list[np.ndarray]:
    """Column indices of each sequence in one row: its real tokens (``real``), cut where the
    position ids restart at 0 (several documents packed into one row)."""
    cols = np.flatnonzero(real)
    if position_ids is None or not len(cols):
        return [cols]
    starts = np.flatnonzero(position_ids[cols] == 0)
    return [s for s in np.split(cols, starts) if len(s)]


def goldfish_labels(input_ids, labels, config: GoldfishConfig, *, attention_mask=None, position_ids=None):
    """``labels`` with the goldfish-dropped targets set to -100 (a new tensor; -100s stay).

    Args:
        input_ids: (B, T) token ids.
        labels: (B, T) targets aligned as Hugging Face aligns them: ``labels[b, i]`` is the
            token predicted at position i from positions < i (usually ``input_ids[b, i]``).
        attention_mask: (B, T), 1 on real tokens. The mask of each row is computed on its real
            tokens only, in order, so left or right padding changes nothing. Without it every
            position is a real token.
        position_ids: (B, T), for rows packing several sequences (padding-free collators):
            each real token where they restart at 0 begins a sequence with its own mask
            (position ids that count real tokens from 0, as with padding, change nothing).

    Returns:
        The masked labels, same type (torch tensor or numpy array), dtype and shape.
    """
    is_torch = hasattr(labels, "detach")
    ids = input_ids.detach().cpu().numpy() if hasattr(input_ids, "detach") else np.asarray(input_ids)
    lab = labels.detach().cpu().numpy() if is_torch else np.asarray(labels)
    if ids.ndim != 2 or ids.shape != lab.shape:
        raise ValueError(f"input_ids and labels must both be (batch, length), got {ids.shape} and {lab.shape}")
    real = np.ones(ids.shape, dtype=bool) if attention_mask is None else _numpy(attention_mask).astype(bool)
    pos = None if position_ids is None else _numpy(position_ids)
    drop = np.zeros(ids.shape, dtype=bool)
    for b in range(ids.shape[0]):
        for cols in _segments(real[b], None if pos is None else pos[b]):
            drop[b, cols] = goldfish_mask(ids[b, cols], config)
    if is_torch:
        import torch

        return labels.masked_fill(torch.as_tensor(drop, device=labels.device), IGNORE_INDEX)
    return np.where(drop, IGNORE_INDEX, lab).astype(lab.dtype)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


class GoldfishCollator:
    """A data collator that trains with the goldfish loss: use it wherever a collator goes.

    Hugging Face ``Trainer(data_collator=...)``, TRL's ``SFTTrainer(data_collator=...)`` (give
    TRL's own collator as ``base``, so that its prompt/completion masking is kept: the default
    padding here knows nothing of it; not tested here, TRL is not installed), or a
    ``torch.utils.data.DataLoader(collate_fn=...)`` in any loop that passes ``labels`` to the
    model: the model's own loss (mean cross-entropy over labels that are not -100) then
    averages over the kept tokens, as the paper's loss does.

    It calls ``base`` (any collator returning ``input_ids`` and, ideally, ``attention_mask``
    and ``labels``), or by default pads a list of ``{"input_ids"[, "attention_mask",
    "labels"]}`` features itself, then sets the dropped targets to -100
    (:func:`goldfish_labels`; masks are computed on each row's unpadded tokens, and on each
    packed sequence separately when the batch carries ``position_ids`` that restart at 0).
    A batch without ``labels`` gets ``input_ids`` with padding set to -100 first. The label of
    each sequence's first token is set to -100 as well: nothing of its own precedes it, and with
    left padding the shifted loss would otherwise learn it from a pad (with right padding the
    model's shift drops it anyway).

    Attributes:
        n_batches, n_targets, n_dropped: Running totals over the batches collated so far:
            target tokens (labels that were not -100, position 0 of each sequence excluded)
            and how many of them were dropped, for logs (``n_dropped / n_targets`` ≈ 1/k).
            A DataLoader with worker processes collates in the workers, whose counts stay there.

    Example:
        >>> from lmaudit.takedown.goldfish import GoldfishCollator, GoldfishConfig
        >>> collate = GoldfishCollator(GoldfishConfig(k=4, h=13), pad_token_id=0)
        >>> batch = collate([{"input_ids": [1, 5, 6, 7, 8, 9]}, {"input_ids": [1, 5, 6]}])
        >>> batch["labels"].shape, batch["attention_mask"][1].tolist()
        (torch.Size([2, 6]), [1, 1, 1, 0, 0, 0])
    """

    def __init__(self, config: GoldfishConfig, pad_token_id: int | None = None,
                 base: Callable[[list], Any] | None = None, *, padding_side: str = "right"):
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.config, self.pad_token_id, self.base, self.padding_side = config, pad_token_id, base, padding_side
        self.n_batches = self.n_targets = self.n_dropped = 0

    def __call__(self, features: Sequence[dict]):
        import torch

        batch = self.base(features) if self.base is not None else self._pad(features)
        ids = torch.as_tensor(batch["input_ids"])
        mask, positions = batch.get("attention_mask"), batch.get("position_ids")
        labels = batch.get("labels")
        if labels is None:
            labels = ids.clone() if mask is None else ids.masked_fill(torch.as_tensor(mask) == 0, IGNORE_INDEX)
        labels = torch.as_tensor(labels)
        # The first token of each sequence is never a target: with left padding or packing, the
        # shifted loss would otherwise predict it from a pad or from the previous document.
        first = self._first_positions(ids.shape, mask, positions)
        before = (labels != IGNORE_INDEX) & ~first
        masked = goldfish_labels(ids, labels, self.config, attention_mask=mask, position_ids=positions)
        masked = masked.masked_fill(first.to(masked.device), IGNORE_INDEX)
        self.n_batches += 1
        self.n_targets += int(before.sum())
        self.n_dropped += int((before & (masked == IGNORE_INDEX)).sum())
        batch["labels"] = masked
        return batch

    @staticmethod
    def _first_positions(shape, mask, positions):
        import torch

        first = torch.zeros(shape, dtype=torch.bool)
        real = np.ones(shape, dtype=bool) if mask is None else _numpy(mask).astype(bool)
        pos = None if positions is None else _numpy(positions)
        for b in range(shape[0]):
            for cols in _segments(real[b], None if pos is None else pos[b]):
                if len(cols):
                    first[b, int(cols[0])] = True
        return first

    def _pad(self, features: Sequence[dict]) -> dict:
        """Pad ``input_ids`` (with ``pad_token_id``), ``attention_mask`` (0) and ``labels``
        (-100; default: the ids) on ``padding_side``."""
        import torch

        if not features:
            raise ValueError("GoldfishCollator got an empty batch")
        seqs = [_numpy(f["input_ids"]).tolist() for f in features]
        width = max(len(s) for s in seqs)
        if self.pad_token_id is None and any(len(s) != width for s in seqs):
            raise ValueError("GoldfishCollator needs pad_token_id (or a base collator) to pad sequences of "
                             f"different lengths ({min(len(s) for s in seqs)} to {width} tokens)")
        pad = self.pad_token_id if self.pad_token_id is not None else 0
        out = {"input_ids": torch.full((len(seqs), width), pad, dtype=torch.long),
               "attention_mask": torch.zeros((len(seqs), width), dtype=torch.long),
               "labels": torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)}
        for b, (f, seq) in enumerate(zip(features, seqs)):
            n = len(seq)
            cols = slice(width - n, width) if self.padding_side == "left" else slice(0, n)
            out["input_ids"][b, cols] = torch.as_tensor(seq, dtype=torch.long)
            attend = torch.as_tensor(_numpy(f.get("attention_mask", [1] * n)).tolist(), dtype=torch.long)
            out["attention_mask"][b, cols] = attend
            if "labels" in f:
                out["labels"][b, cols] = torch.as_tensor(_numpy(f["labels"]).tolist(), dtype=torch.long)
            else:  # the ids, less any padding the feature already carried
                out["labels"][b, cols] = torch.as_tensor(seq, dtype=torch.long).masked_fill(attend == 0, IGNORE_INDEX)
        return out


__all__ = ["GoldfishConfig", "GoldfishCollator", "goldfish_mask", "goldfish_labels", "IGNORE_INDEX", "SCHEMES"]
