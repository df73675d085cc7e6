"""The watermark core against independent expectations: a plain-Python MurmurHash3 finaliser
and seedings written from the docstrings' definitions, brute-force counting with
deduplication, scipy's exact tails, null calibration over many keys and texts, window search
against brute force, config refusals, and a generate → detect round trip on the fake model."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from lmaudit.models.base import GenerationConfig
from lmaudit.models.fake import FakeLM
from lmaudit.watermark import prf, seeding
from lmaudit.watermark.config import FORMAT, PRESETS, ConfigMismatch, WatermarkConfig, key_id
from lmaudit.watermark.detect import detect_texts, detect_tokens, score_tokens
from lmaudit.watermark.processor import WatermarkProcessor, generate
from lmaudit.watermark.schemes import build
from lmaudit.watermark.spans import best_windows, window_grid

M32 = 0xFFFFFFFF
KEY = 123456789


# ---- plain-Python reference (from the docstrings, not from the code under test) -----------------

def ref_fmix32(x: int) -> int:
    """MurmurHash3's 32-bit finaliser, as published."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    x ^= x >> 16
    return x


def ref_code(token: int) -> int:
    return ref_fmix32(token ^ 0x9E3779B9)


def ref_combine(a: int, token: int) -> int:
    return ref_fmix32(a ^ ref_code(token))


def ref_seed(seeding_name: str, h: int, key: int, prev: list[int], v: int) -> int:
    """A position's seed from seeding.py's docstring: ``prev`` are the preceding tokens
    (oldest first; as many as the seeding's context), ``v`` the position's token."""
    if seeding_name == "unigram":
        return key
    if seeding_name == "hash":
        s = key
        for x in prev[-h:]:
            s = ref_combine(s, x)
        return s
    if seeding_name == "minhash":
        return min(ref_combine(key, x) for x in prev[-h:])
    if seeding_name == "skipgram":
        return ref_combine(key, prev[-h])  # the token h places back only
    assert seeding_name == "selfhash"
    anchor = ref_combine(key, v)
    window = [*prev[len(prev) - (h - 1):], v] if h > 1 else [v]
    return min(ref_combine(anchor, x) for x in window)


def ref_value(seeding_name, h, key, prev, v) -> tuple[int, int]:
    s = ref_seed(seeding_name, h, key, prev, v)
    return s, ref_combine(s, v)


def ref_context(seeding_name: str, h: int) -> int:
    return {"unigram": 0, "selfhash": h - 1}.get(seeding_name, h)


SEEDINGS = [("hash", 1), ("hash", 3), ("minhash", 3), ("skipgram", 3), ("selfhash", 4), ("selfhash", 1),
            ("unigram", 0)]


def _config(lm=None, *, preset="lefthash", key=KEY, **options) -> WatermarkConfig:
    return WatermarkConfig.create(lm or FakeLM(), key, preset=preset, **options)


# ---- 1. PRF ---------------------------------------------------------------------------------------

def test_fmix32_numpy_torch_and_plain_python_agree():
    rng = np.random.default_rng(1)
    xs = np.concatenate([[0, 1, 2**31, 2**32 - 1, 0x9E3779B9], rng.integers(0, 2**32, 2000, dtype=np.uint64)])
    expected = [ref_fmix32(int(x)) for x in xs]
    assert prf.fmix32_np(xs.astype(np.uint32)).tolist() == expected
    assert prf.fmix32_t(torch.as_tensor(xs.astype(np.int64))).tolist() == expected
    # scalars keep their shape, and combine/token codes match the reference too
    assert prf.fmix32_np(np.uint32(5)).shape == ()
    toks = rng.integers(0, 300, 50)
    a = rng.integers(0, 2**32, 50, dtype=np.uint64)
    want = [ref_combine(int(x), int(t)) for x, t in zip(a, toks)]
    assert prf.combine_np(a.astype(np.uint32), toks).tolist() == want
    assert prf.combine_t(torch.as_tensor(a.astype(np.int64)), torch.as_tensor(toks)).tolist() == want


def test_key32_validates_and_threshold():
    for bad in (-1, True, False, 1.0, 2.5, "7", None, np.float64(3)):
        with pytest.raises(ValueError, match="non-negative integer"):
            prf.key32(bad)
    assert 0 <= prf.key32(0) <= M32 and prf.key32(np.int64(7)) == prf.key32(7)
    assert prf.key32(2**100) != prf.key32(2**100 + 1)
    assert prf.threshold(0.25) == 2**30
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="gamma"):
            prf.threshold(bad)


# ---- 2. Seeding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,h", SEEDINGS)
def test_values_np_equal_brute_force_per_position(name, h):
    rng = np.random.default_rng(h + len(name))
    key = prf.key32(KEY)
    ids = rng.integers(0, 300, 80).astype(np.uint32)
    ids[40:50] = ids[10:20]  # some repeated contexts
    c = seeding.context(name, h)
    assert c == ref_context(name, h)
    prev = seeding.windows(ids, c)
    assert prev.shape == (len(ids) - c, c)
    assert all(prev[i].tolist() == ids[i : i + c].tolist() for i in range(len(prev)))
    seeds, values = seeding.values_np(name, h, key, prev, ids[c:])
    want = [ref_value(name, h, key, ids[:i].tolist(), int(ids[i])) for i in range(c, len(ids))]
    assert list(zip(seeds.tolist(), values.tolist())) == want


def _check_vocab_hasher(name, h, device, use_numpy=None):
    rng = np.random.default_rng(7)
    key, width = prf.key32(KEY), 300
    c = ref_context(name, h)
    prev = rng.integers(0, width, (3, c))
    hasher = seeding.VocabHasher(name, h, key, width, device, use_numpy=use_numpy)
    out = hasher(torch.as_tensor(prev, device=device))
    assert out.shape == (3, width) and out.dtype == torch.int64
    want = [[ref_value(name, h, key, row.tolist(), v)[1] for v in range(width)] for row in prev]
    assert out.cpu().tolist() == want


@pytest.mark.parametrize("use_numpy", [None, False])  # the CPU default (numpy), and torch's int64 path
@pytest.mark.parametrize("name,h", SEEDINGS)
def test_vocab_hasher_equals_brute_force_for_every_candidate(name, h, use_numpy):
    _check_vocab_hasher(name, h, "cpu", use_numpy)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name,h", SEEDINGS)
def test_vocab_hasher_on_cuda_equals_brute_force(name, h):
    _check_vocab_hasher(name, h, "cuda")


def test_seeding_check_refuses_bad_h():
    for name, h in [("hash", 0), ("unigram", 1), ("selfhash", 65), ("hash", True), ("hash", 2.0), ("bogus", 1)]:
        with pytest.raises(ValueError):
            seeding.check(name, h)


# ---- 3. Identical across processes ----------------------------------------------------------------

_MASK_HASH = """
import hashlib, torch
from lmaudit.watermark.prf import key32
from lmaudit.watermark.seeding import VocabHasher
h = VocabHasher("selfhash", 4, key32(987654321), 1000, "cpu")
out = h(torch.tensor([[3, 17, 255], [0, 999, 5]]))
print(hashlib.sha256(out.numpy().astype("<i8").tobytes()).hexdigest())
"""


def test_green_mask_identical_in_another_process():
    here = seeding.VocabHasher("selfhash", 4, prf.key32(987654321), 1000, "cpu")(
        torch.tensor([[3, 17, 255], [0, 999, 5]]))
    digest = hashlib.sha256(here.numpy().astype("<i8").tobytes()).hexdigest()
    import os

    env = dict(os.environ, PYTHONHASHSEED="12345", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _MASK_HASH], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == digest


# ---- 4. Processors --------------------------------------------------------------------------------

def _green_ref(config, key, prev_rows, width):
    key_word = build(config, key).stream_key
    assert key_word == prf.key32(key)  # KGW hashes from the key word itself
    thr = round(config.gamma * 2**32)
    return torch.tensor([[ref_value(config.seeding, config.h, key_word, row, v)[1] < thr for v in range(width)]
                         for row in prev_rows])


@pytest.mark.parametrize("preset", ["lefthash", "selfhash", "unigram"])
def test_kgw_processor_adds_delta_to_green_only(preset):
    lm = FakeLM()
    config = _config(lm, preset=preset, delta=3.0)
    proc = WatermarkProcessor(config, KEY)
    rng = np.random.default_rng(0)
    ids = torch.as_tensor(rng.integers(0, 256, (4, 9)))
    scores = torch.randn(4, lm.vocab_size, generator=torch.Generator().manual_seed(0))
    out = proc(ids, scores.clone())
    c = config.context
    green = _green_ref(config, KEY, [row[len(row) - c:].tolist() if c else [] for row in ids], lm.vocab_size)
    assert 0.15 < green.float().mean() < 0.35  # about gamma, and the test is not vacuous
    assert torch.equal((out - scores) > 1.5, green)
    assert torch.allclose(out - scores, green.float() * 3.0, atol=1e-5)


def test_kgw_processor_half_precision_and_wide_logits():
    lm = FakeLM()
    config = _config(lm, preset="selfhash")
    proc = WatermarkProcessor(config, KEY)
    ids = torch.tensor([[256, 10, 20, 30, 40], [256, 1, 2, 3, 4]])
    scores = torch.randn(2, lm.vocab_size, generator=torch.Generator().manual_seed(1))
    green32 = (proc(ids, scores.clone()) - scores) != 0
    for dtype in (torch.bfloat16, torch.float16):
        s = scores.to(dtype)
        out = proc(ids, s.clone())
        assert out.dtype == dtype
        assert torch.equal((out.float() - s.float()) != 0, green32)
        assert torch.allclose((out.float() - s.float())[green32], torch.tensor(config.delta), atol=0.02)
    # logits wider than the vocabulary (padded embeddings): no error, the same lists on the real ids
    wide = torch.cat([scores, torch.randn(2, 42)], dim=1)
    out = proc(ids, wide.clone())
    assert out.shape == (2, 300)
    assert torch.equal(((out - wide) != 0)[:, : lm.vocab_size], green32)
    # the batch with fewer ids than the context is left alone
    assert torch.equal(proc(ids[:, :2], scores.clone()), scores)


def _gumbel_ref_choice(config, key, prev_rows, scores, temperature):
    key_word = build(config, key).stream_key
    out = []
    for row, z in zip(prev_rows, scores.double()):
        p = torch.softmax(z / temperature, dim=-1).tolist()
        best, arg = -float("inf"), None
        for v, pv in enumerate(p):
            r = (ref_value(config.seeding, config.h, key_word, row, v)[1] + 0.5) / 2**32
            k = np.log(r) / pv if pv > 0 else -float("inf")
            if k > best:
                best, arg = k, v
        out.append(arg)
    return out


def test_gumbel_processor_picks_the_brute_force_argmax():
    lm = FakeLM()
    config = _config(lm, preset="gumbel")
    proc = WatermarkProcessor(config, KEY, temperature=0.7)
    rng = np.random.default_rng(3)
    ids = torch.as_tensor(rng.integers(0, 256, (6, 7)))
    scores = torch.randn(6, lm.vocab_size, generator=torch.Generator().manual_seed(2)) * 2
    out = proc(ids, scores.clone())
    finite = torch.isfinite(out)
    assert finite.sum(dim=1).tolist() == [1] * 6
    want = _gumbel_ref_choice(config, KEY, [row[-config.context:].tolist() for row in ids], scores, 0.7)
    assert out.argmax(dim=1).tolist() == want
    assert torch.all(out[finite] == 0)


def test_gumbel_is_distortion_free():
    """Over 4000 contexts, the chosen token's frequency is softmax(z / temperature)."""
    lm = FakeLM()
    config = _config(lm, preset="gumbel")
    proc = WatermarkProcessor(config, KEY, temperature=0.7)
    z = torch.tensor([1.0, 0.5, 0.0, -0.3, -1.0, 0.8, -2.0, 0.2])
    p = torch.softmax(z.double() / 0.7, dim=0).numpy()
    n = 4000
    ids = torch.as_tensor(np.random.default_rng(4).integers(0, 256, (n, config.context)))
    out = proc(ids, z.expand(n, -1).clone())
    counts = np.bincount(out.argmax(dim=1).numpy(), minlength=8)
    assert stats.chisquare(counts, n * p).pvalue > 1e-3
    # and the choice is not the plain argmax (the draws matter)
    assert counts[0] < 0.6 * n


# ---- 5. Detection ---------------------------------------------------------------------------------

def ref_detect(ids, config, key_word, thr_or_none, *, dedup=True):
    """Brute-force counts: n_context, n_repeated, n_scored and the statistic's sum."""
    c = ref_context(config.seeding, config.h)
    seen, n_rep, total, t = set(), 0, 0.0, 0
    for i in range(c, len(ids)):
        s, v = ref_value(config.seeding, config.h, key_word, list(ids[:i]), ids[i])
        if dedup and (s, ids[i]) in seen:
            n_rep += 1
            continue
        seen.add((s, ids[i]))
        t += 1
        if thr_or_none is None:
            total += -np.log(1 - (v + 0.5) / 2**32)
        else:
            total += float(v < thr_or_none)
    return min(len(ids), c), n_rep, t, total


HAND = [
    [5, 6, 7, 5, 6, 7, 5, 6, 7, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 5, 6],
    list(range(40)) + list(range(40)),
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
    [3],
    [],
    list(np.random.default_rng(9).integers(0, 258, 120)),
]


@pytest.mark.parametrize("preset", ["lefthash", "selfhash", "minhash", "skipgram", "unigram", "gumbel"])
@pytest.mark.parametrize("dedup", [True, False])
def test_detection_counts_and_exact_pvalues(preset, dedup):
    config = _config(preset=preset)
    scheme = build(config, KEY)
    kgw = config.scheme == "kgw"
    thr = round(config.gamma * 2**32) if kgw else None
    g = thr / 2**32 if kgw else None
    if preset == "unigram":  # one list of exactly floor(gamma V) tokens: those with the smallest values
        size = int(config.gamma * config.vocab_size)
        thr = sorted(ref_combine(scheme.stream_key, v) for v in range(config.vocab_size))[size]
        g = size / config.vocab_size
    rows = detect_tokens(HAND, config, KEY, dedup=dedup, min_tokens=10)
    for ids, row in zip(HAND, rows):
        n_context, n_rep, t, total = ref_detect([int(x) for x in ids], config, scheme.stream_key, thr, dedup=dedup)
        assert (row["n_tokens"], row["n_context"], row["n_repeated"], row["n_scored"]) == (len(ids), n_context,
                                                                                           n_rep, t)
        assert row["score"] == pytest.approx(total, abs=1e-5)
        if t < 10:
            assert row["too_short"] and row["p_value"] is None and row["z"] is None and row["detected"] is None
            continue
        assert not row["too_short"]
        if kgw:
            assert row["score"] == int(total)
            assert row["p_value"] == pytest.approx(stats.binom.sf(total - 1, t, g), rel=1e-9)
            gm = g  # the exact null probability (unigram: floor(gamma V) / V)
            assert row["z"] == pytest.approx((total - gm * t) / np.sqrt(t * gm * (1 - gm)), abs=2e-4)
            assert row["green_fraction"] == pytest.approx(total / t, abs=1e-6)
        else:
            assert row["p_value"] == pytest.approx(stats.gamma.sf(total, t), rel=1e-6)
            assert row["z"] == pytest.approx((total - t) / np.sqrt(t), abs=2e-4)
        assert row["detected"] == (row["p_value"] < 1e-3)
    if not dedup:
        assert all(r["n_repeated"] == 0 for r in rows)
    elif preset == "lefthash":
        assert rows[0]["n_repeated"] == 9 and rows[2]["n_repeated"] == 18


def test_detection_of_an_empty_batch_and_empty_texts():
    config = _config()
    assert detect_tokens([], config, KEY) == []
    rows = detect_tokens([[], [7]], config, KEY, with_curve=True, with_spans=True)
    assert [(r["n_tokens"], r["n_context"], r["n_scored"], r["too_short"]) for r in rows] == [(0, 0, 0, True),
                                                                                              (1, 1, 0, True)]
    assert rows[0]["curve"] == {"T": [], "z": [], "p": []} and rows[1]["spans"] == {"searched": 0, "windows": []}


def test_score_tokens_rejects_bad_ids_and_options():
    config = _config()
    with pytest.raises(ValueError, match="token ids"):
        score_tokens([[1, -2, 3]], config, KEY)
    with pytest.raises(ValueError, match="min_tokens"):
        detect_tokens([[1, 2]], config, KEY, min_tokens=0)
    with pytest.raises(ValueError, match="alpha"):
        detect_tokens([[1, 2]], config, KEY, alpha=1.0)
    with pytest.raises(ConfigMismatch, match="key"):
        detect_tokens([[1, 2]], config, KEY + 1)


def _null_pvalues(preset, texts_per_key, n_keys, length, *, dedup=True, phrase=None, seed=0):
    """p-values of random uniform byte texts (or a random phrase repeated) under many keys."""
    config = _config(preset=preset)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_keys):
        scheme = build(config, 10_000 + k, check_key=False)
        if phrase:
            texts = [np.tile(rng.integers(0, 256, phrase), length // phrase) for _ in range(texts_per_key)]
        else:
            texts = list(rng.integers(0, 256, (texts_per_key, length)))
        rows = detect_tokens(texts, config, KEY, dedup=dedup, scheme=scheme, min_tokens=16)
        out += [r["p_value"] for r in rows]
    assert None not in out
    return np.array(out)


def _fpr_ok(p, alpha):
    n = len(p)
    return np.mean(p < alpha) <= alpha + 4 * np.sqrt(alpha * (1 - alpha) / n)


@pytest.mark.parametrize("preset", ["lefthash", "selfhash", "minhash", "skipgram", "unigram", "gumbel"])
def test_null_calibration_random_text(preset):
    """The level holds over keys: 2000 texts under 200 keys (unigram: 2000 keys, since one key
    fixes one green list for the whole text, and a few keys' lists would decide the rate)."""
    p = _null_pvalues(preset, 1, 2000, 200) if preset == "unigram" else _null_pvalues(preset, 10, 200, 200)
    for alpha in (0.01, 0.05, 0.1):
        assert _fpr_ok(p, alpha), (alpha, np.mean(p < alpha))
    if preset != "unigram":
        assert np.mean(p < 0.05) >= 0.05 / 3  # exact, not needlessly conservative
    # Unigram's deduplicated positions are the text's distinct tokens: a draw without
    # replacement from one list of exactly floor(gamma V) green tokens, whose green count is
    # hypergeometric, less spread than the binomial: valid, and conservative by construction.


@pytest.mark.parametrize("preset", ["lefthash", "selfhash", "gumbel", "unigram"])
def test_null_level_holds_under_each_fixed_key(preset):
    """A user holds one key: the level must hold conditionally on it, not only on average
    over keys (with context seeding, each context draws its own list, so it does; unigram's
    one list holds exactly floor(gamma V) tokens, so it does on text drawn uniformly: before
    that fix, uniform text under some keys was flagged at 0.57 at alpha 0.05)."""
    config = _config(preset=preset)
    rng = np.random.default_rng(11)
    for k in range(12):
        scheme = build(config, 777 + k, check_key=False)
        rows = detect_tokens(list(rng.integers(0, 256, (300, 200))), config, KEY, scheme=scheme)
        assert _fpr_ok(np.array([r["p_value"] for r in rows]), 0.05), (k, np.mean([r["p_value"] < 0.05 for r in rows]))


@pytest.mark.parametrize("preset", ["lefthash", "gumbel"])
def test_repetitive_text_needs_dedup(preset):
    """A 30-token phrase repeated 10 times: deduplicated, the test keeps its level; counted
    raw, the ten copies of each coin inflate the false-positive rate far past alpha."""
    p = _null_pvalues(preset, 50, 20, 300, phrase=30, seed=1)
    raw = _null_pvalues(preset, 50, 20, 300, phrase=30, seed=1, dedup=False)
    for alpha in (0.01, 0.05, 0.1):
        assert _fpr_ok(p, alpha), (alpha, np.mean(p < alpha))
    assert np.mean(raw < 0.05) > 0.2
    assert not _fpr_ok(raw, 0.01)


# ---- 6. Spans -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,min_tokens", [(16, 16), (17, 16), (100, 16), (600, 16), (1000, 25), (40, 7)])
def test_window_grid(n, min_tokens):
    grid = window_grid(n, min_tokens)
    assert len(set(grid)) == len(grid)
    lengths = sorted({b - a for a, b in grid})
    assert lengths[0] == min_tokens and lengths[-1] == n
    # lengths grow by about sqrt(2) from min_tokens, all below n but the last
    expected, x = [], float(min_tokens)
    while x < n - 1e-9:
        expected.append(int(x + 1e-9))
        x *= 2**0.5
    assert sorted(set(expected + [n])) == lengths
    for w in lengths:
        starts = sorted(a for a, b in grid if b - a == w)
        step = max(1, w // 4)
        assert starts[0] == 0 and starts[-1] + w == n  # flush with both ends
        assert all(b - a <= step for a, b in zip(starts, starts[1:]))
        covered = np.zeros(n, bool)
        for a in starts:
            covered[a : a + w] = True
        assert covered.all()
    assert window_grid(min_tokens - 1, min_tokens) == []


def _ref_windows(score, scored, grid, min_tokens):
    out = []
    for a, b in grid:
        t = sum(1 for i in range(a, b) if scored[i])
        if t >= min_tokens:
            out.append((a, b, t, sum(score[i] for i in range(a, b) if scored[i])))
    return out


def test_best_windows_match_brute_force():
    config = _config()
    scheme = build(config, KEY)
    rng = np.random.default_rng(5)
    for trial in range(20):
        n = int(rng.integers(10, 400))
        score = (rng.random(n) < (0.25 if trial % 2 else 0.6)).astype(float)
        scored = rng.random(n) < 0.9
        res = best_windows(score, scored, scheme.log_pvalue, scheme.z, min_tokens=16, alpha=0.5)
        ref = _ref_windows(score, scored, window_grid(n, 16), 16)
        assert res["searched"] == len(ref)
        if not ref:
            assert res["windows"] == []
            continue
        p_all = [stats.binom.sf(s - 1, t, scheme.gamma) for a, b, t, s in ref]
        best = res["windows"][0]
        assert best["p_raw"] == pytest.approx(min(p_all), rel=1e-9)
        by_window = {(a, b): (t, s) for a, b, t, s in ref}
        for w in res["windows"]:
            t, s = by_window[(w["start"], w["end"])]
            assert (w["n_scored"], w["score"]) == (t, pytest.approx(s))
            assert w["p_raw"] == pytest.approx(stats.binom.sf(s - 1, t, scheme.gamma), rel=1e-9)
            assert w["p_corrected"] == pytest.approx(min(1.0, len(ref) * w["p_raw"]), rel=1e-12)
        spans = [(w["start"], w["end"]) for w in res["windows"]]
        assert all(b1 <= a2 or b2 <= a1 for i, (a1, b1) in enumerate(spans) for a2, b2 in spans[i + 1:])


def test_corrected_window_pvalue_keeps_its_level():
    """The best of ~100 windows' corrected p-value is a valid p-value: FPR <= 0.05 over 1000
    unwatermarked texts (and the uncorrected minimum is far above it)."""
    config = _config()
    rng = np.random.default_rng(6)
    corrected, raw = [], []
    for k in range(10):
        scheme = build(config, 500 + k, check_key=False)
        rows = detect_tokens(list(rng.integers(0, 256, (100, 300))), config, KEY, scheme=scheme, with_spans=True,
                             min_tokens=16)
        for r in rows:
            corrected.append(r["spans"]["windows"][0]["p_corrected"])
            raw.append(r["spans"]["windows"][0]["p_raw"])
    corrected, raw = np.array(corrected), np.array(raw)
    assert np.mean(corrected < 0.05) <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / len(corrected))
    assert np.mean(raw < 0.05) > 0.3  # the search alone would be badly anti-conservative


def _plant_green(config, key, ids, lo, hi):
    """Rewrite ids[lo:hi] so that every position there is green: a random green byte each
    (the first green byte would make the text cycle, and deduplication rightly drops cycles)."""
    key_word = build(config, key).stream_key
    thr = round(config.gamma * 2**32)
    rng = np.random.default_rng(lo)
    ids = list(ids)
    for i in range(lo, hi):
        ids[i] = next(int(v) for v in rng.permutation(256)
                      if ref_value(config.seeding, config.h, key_word, ids[:i], int(v))[1] < thr)
    return ids


def test_planted_green_span_is_found():
    config = _config()
    ids = _plant_green(config, KEY, np.random.default_rng(8).integers(0, 256, 600).tolist(), 100, 200)
    row = detect_tokens([ids], config, KEY, with_spans=True)[0]
    best = row["spans"]["windows"][0]
    overlap = min(best["end"], 200) - max(best["start"], 100)
    assert overlap >= 0.6 * 100 and overlap >= 0.6 * (best["end"] - best["start"])
    assert best["p_corrected"] < 1e-6
    assert row["p_value"] > best["p_corrected"]  # the diluted whole-text test is weaker


# ---- 7. Config ------------------------------------------------------------------------------------

def test_config_round_trip_and_save_load(tmp_path):
    lm = FakeLM()
    config = _config(lm, preset="minhash", gamma=0.3, delta=1.5)
    d = config.to_dict()
    assert d["format"] == FORMAT and d["key_id"] == key_id(KEY) and str(KEY) not in json.dumps(d)
    assert WatermarkConfig.from_dict(json.loads(json.dumps(d))) == config
    path = tmp_path / "wm.json"
    config.save(path)
    assert WatermarkConfig.load(path) == config
    (tmp_path / "results.json").write_text(json.dumps({"watermark": d, "other": 1}))
    assert WatermarkConfig.load(tmp_path / "results.json") == config
    with pytest.raises(FileNotFoundError, match="no such"):
        WatermarkConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        WatermarkConfig.load(tmp_path / "bad.json")


def test_config_refusals(tmp_path):
    config = _config()
    d = config.to_dict()
    with pytest.raises(ConfigMismatch, match=r"format 99.*format 1"):
        WatermarkConfig.from_dict(d | {"format": 99}, source="x.json")
    with pytest.raises(ValueError, match="unknown field.*colour") as err:
        WatermarkConfig.from_dict(d | {"colour": "green"})
    assert not isinstance(err.value, ConfigMismatch)
    missing = {k: v for k, v in d.items() if k not in ("h", "tokenizer")}
    with pytest.raises(ValueError, match="missing field.*h, tokenizer"):
        WatermarkConfig.from_dict(missing)
    with pytest.raises(ValueError, match=r"x.json: .*gamma"):
        WatermarkConfig.from_dict(d | {"gamma": 1.5}, source="x.json")
    with pytest.raises(ConfigMismatch, match=f"key's id is {key_id(KEY + 1)}"):
        config.check(key=KEY + 1)
    config.check(key=KEY, lm=FakeLM(), expected=config)

    class OtherTokenizer(FakeLM):
        def tokenizer_fingerprint(self):
            return "another-tokenizer"

    with pytest.raises(ConfigMismatch, match="tokenizer"):
        config.check(lm=OtherTokenizer())
    with pytest.raises(ConfigMismatch, match="gamma 0.5 vs 0.25"):
        config.check(expected=config.with_options(gamma=0.5))
    with pytest.raises(ConfigMismatch):
        generate(OtherTokenizer(), [[256, 1]], config, KEY)


def test_config_presets_and_invalid_options():
    lm = FakeLM()
    for name, preset in PRESETS.items():
        c = WatermarkConfig.create(lm, KEY, preset=name)
        assert (c.scheme, c.seeding, c.h) == (preset["scheme"], preset["seeding"], preset["h"])
        assert (c.vocab_size, c.tokenizer, c.gamma, c.delta) == (258, lm.tokenizer_fingerprint(), 0.25, 2.0)
    assert WatermarkConfig.create(lm, KEY).seeding == "selfhash"  # lm-watermarking's recommended default
    assert WatermarkConfig.create(lm, KEY, preset="lefthash", h=3).h == 3
    with pytest.raises(ValueError, match="preset"):
        WatermarkConfig.create(lm, KEY, preset="nope")
    for bad in ({"gamma": 0.0}, {"gamma": 1.0}, {"delta": -1.0}, {"delta": float("nan")}, {"delta": float("inf")},
                {"h": 0}, {"seeding": "unigram", "h": 2}, {"vocab_size": 1}):
        with pytest.raises(ValueError):
            WatermarkConfig(**({"scheme": "kgw", "seeding": "hash", "h": 1, "key_id": "k", "tokenizer": "t",
                                "vocab_size": 258} | bad))
    with pytest.raises(ValueError, match="kgx.*did you mean 'kgw'"):
        WatermarkConfig.create(lm, KEY, preset="lefthash", scheme="kgx")
    with pytest.raises(ValueError, match="f.json: unknown watermark scheme 'kgx'"):
        WatermarkConfig.from_dict(_config(lm).to_dict() | {"scheme": "kgx"}, source="f.json")


# ---- 8. Round trip on the fake model --------------------------------------------------------------

@pytest.mark.parametrize("preset,options", [("lefthash", {"delta": 4.0}), ("gumbel", {})])
def test_generate_then_detect(preset, options):
    lm = FakeLM()
    config = _config(lm, preset=preset, **options)
    prompts = [[lm.bos_token_id, *ids] for ids in lm.encode(["The cat", "Once upon", "In 1990 the", "hello"])]
    gen = GenerationConfig(max_new_tokens=60, do_sample=True, temperature=0.7, stop_at_eos=False, seed=3)
    out = generate(lm, prompts, config, KEY, generation=gen)
    assert [len(x) for x in out] == [60] * 4
    rows = detect_tokens(out, config, KEY)
    assert sum(r["detected"] for r in rows) >= 3
    assert np.median([r["p_value"] for r in rows]) < 1e-6
    other = 987654321
    rows_other = detect_tokens(out, config.with_options(key_id=key_id(other)), other)
    assert not any(r["detected"] for r in rows_other)
    # without the watermark, the same decoding is not detected either
    plain = generate(lm, prompts, None, generation=gen)
    assert not any(r["detected"] for r in detect_tokens(plain, config, KEY))


def test_detect_texts_retokenises_and_checks_the_tokenizer():
    lm = FakeLM()
    config = _config(lm)
    texts = ["The Quick brown fox jumps over the lazy dog, again and again.", "Short"]
    assert detect_texts(lm, texts, config, KEY, min_tokens=4) == detect_tokens(lm.encode(texts), config, KEY,
                                                                                min_tokens=4)
    lowered = detect_texts(lm, texts, config, KEY, normalize=str.lower, min_tokens=4)
    assert lowered == detect_tokens(lm.encode([t.lower() for t in texts]), config, KEY, min_tokens=4)

    class OtherTokenizer(FakeLM):
        def tokenizer_fingerprint(self):
            return "another-tokenizer"

    with pytest.raises(ConfigMismatch, match="tokenizer"):
        detect_texts(OtherTokenizer(), texts, config, KEY)


def test_gumbel_refuses_greedy_decoding():
    lm = FakeLM()
    with pytest.raises(ValueError, match="do_sample"):
        generate(lm, [[256, 1]], _config(lm, preset="gumbel"), KEY, generation=GenerationConfig(max_new_tokens=2))
    with pytest.raises(ValueError, match="temperature"):
        WatermarkProcessor(_config(lm), KEY, temperature=0.0)


def test_log_tails_stay_finite_and_exact_where_p_underflows():
    """A strong text's p is below the smallest double; its logarithm is still exact (checked
    against mpmath at 50 digits) and ranks texts that p = 0 would tie."""
    import mpmath

    from lmaudit.watermark.tails import binom_log_sf, gamma_log_sf

    mpmath.mp.dps = 50
    for g, n in [(1299, 2000), (1999, 2000), (700, 1000), (60, 100), (10, 100)]:
        want = mpmath.log(mpmath.fsum(mpmath.binomial(n, k) * mpmath.mpf("0.25") ** k * mpmath.mpf("0.75") ** (n - k)
                                      for k in range(g, n + 1)))
        assert float(binom_log_sf(g, n, 0.25)) == pytest.approx(float(want), rel=1e-10)
    for x, a in [(3000, 1000), (1500, 1000), (200, 20), (12, 10), (5, 10)]:
        want = mpmath.log(mpmath.gammainc(a, x, mpmath.inf, regularized=True))
        assert float(gamma_log_sf(x, a)) == pytest.approx(float(want), rel=1e-10)
    config = _config(preset="lefthash")
    strong = [[7] + [int(v) for v in np.random.default_rng(s).integers(0, 256, 3000)] for s in range(2)]
    scheme = build(config, KEY)
    rows = detect_tokens(strong, config, KEY, scheme=scheme, dedup=False)
    assert all(r["log10_p_value"] is not None and np.isfinite(r["log10_p_value"]) for r in rows)
