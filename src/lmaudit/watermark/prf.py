"""The watermark's pseudo-random function, in integer arithmetic only.

Every green list and every Gumbel draw comes from MurmurHash3's 32-bit finaliser
(``fmix32``) applied to the key, the context tokens and the candidate token. Integers make
the result a pure function of its inputs: the same on CPU and CUDA, under any logits dtype,
in any torch or numpy version, in any process. lm-watermarking instead seeds
``torch.Generator`` and draws a permutation of the vocabulary, which gives different green
lists on CPU and CUDA (REFERENCE §10) and costs O(V log V) per step.

Each (seed, token) pair gets its own 32-bit value, so a green list costs one hash per
vocabulary entry and a detector checks one token with one hash (never O(V) or O(V²) per
token). The price: the green list's size is Binomial(V, γ) rather than exactly ⌊γV⌋; what the
detector's test needs, P(token is green) = γ for a key drawn at random, holds exactly for the
threshold's γ (:func:`threshold`).

Two implementations compute identical values (a test checks them against each other and
against a plain-Python loop):

- numpy, on ``uint32`` arrays, where multiplication wraps modulo 2³² by definition: the
  detector.
- torch, on ``int64`` tensors holding values in [0, 2³²), with each 32×32-bit product split
  into 16-bit halves so that no intermediate exceeds 2⁴⁹ (torch's integer overflow is not
  specified, and CUDA has no unsigned 32-bit multiply): the logits processors, on any device.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

MASK32 = 0xFFFFFFFF
_M1, _M2 = 0x85EBCA6B, 0xC2B2AE35  # MurmurHash3's fmix32 multipliers
_TOKEN_SALT = 0x9E3779B9  # keeps token 0 from mapping to hash 0 (fmix32(0) == 0)


def key32(key: int) -> int:
    """The 32-bit key word every hash starts from: sha256 of the key's decimal digits (any
    non-negative integer key; distinct keys collide with probability 2⁻³²)."""
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
        raise ValueError(f"a watermark key is a non-negative integer, got {key!r}")
    return int.from_bytes(hashlib.sha256(f"lmaudit-watermark|{int(key)}".encode()).digest()[:4], "little")


def threshold(gamma: float) -> int:
    """Hash values below this are green: round(γ · 2³²), so P(green) = threshold / 2³² ≈ γ."""
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be strictly between 0 and 1, got {gamma}")
    return int(round(gamma * 2**32))


# ---- numpy (uint32) -------------------------------------------------------------------------

def fmix32_np(x) -> np.ndarray:
    shape = np.shape(x)
    x = np.array(x, dtype=np.uint32, ndmin=1)  # arrays wrap silently; numpy scalars would warn
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(_M1)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(_M2)
    return (x ^ (x >> np.uint32(16))).reshape(shape)


def token_code_np(tokens) -> np.ndarray:
    """Each token id's own hash, the second argument of every :func:`combine_np`."""
    return fmix32_np(np.asarray(tokens, dtype=np.uint32) ^ np.uint32(_TOKEN_SALT))


def combine_np(a, tokens) -> np.ndarray:
    """fmix32(a XOR code(token)), broadcasting: a state followed by a token."""
    return fmix32_np(np.asarray(a, dtype=np.uint32) ^ token_code_np(tokens))


# ---- torch (int64 holding uint32) -------------------------------------------------------------

def _mul32_(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32, in place in ``x`` (values < 2^32): x * c_lo < 2^48, and x * c_hi only
    matters mod 2^16 once shifted left by 16."""
    lo, hi = c & 0xFFFF, c >> 16
    high = (x * hi).bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    return x.mul_(lo).add_(high).bitwise_and_(MASK32)


def fmix32_t(x: torch.Tensor) -> torch.Tensor:
    """fmix32 of an int64 tensor of values in [0, 2^32) (a new tensor; ``x`` is not changed).
    In-place steps after the first: at (32, 50,257) this halves the time of the plain
    expression, whose dozen temporaries of 13 MB each cost more than the arithmetic."""
    y = x ^ (x >> 16)
    _mul32_(y, _M1)
    y ^= y >> 13
    _mul32_(y, _M2)
    y ^= y >> 16
    return y


def token_code_t(tokens: torch.Tensor) -> torch.Tensor:
    return fmix32_t(tokens.to(torch.int64) ^ _TOKEN_SALT)


def combine_t(a: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return fmix32_t(a ^ token_code_t(tokens))
