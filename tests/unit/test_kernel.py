"""The scoring kernel against a direct float64 numpy computation over the full softmax."""

import numpy as np
import pytest
import torch

from lmaudit.ops.kernel import next_token_stats, shifted_stats


def _numpy_reference(logits: np.ndarray, targets: np.ndarray):
    x = logits.astype(np.float64)
    logp = x - x.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    p = np.exp(logp)
    mu = (p * logp).sum(1)
    sd = np.sqrt((p * logp**2).sum(1) - mu**2)
    return logp[np.arange(len(targets)), targets], mu, sd, -(p * logp).sum(1)


@pytest.mark.parametrize("chunk_rows", [1, 7, 1024])
def test_matches_full_softmax_in_numpy(chunk_rows):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(50, 300)).astype(np.float32)
    targets = rng.integers(0, 300, size=50)
    s = next_token_stats(torch.from_numpy(logits), torch.from_numpy(targets), chunk_rows=chunk_rows)
    lp, mu, sd, ent = _numpy_reference(logits, targets)
    np.testing.assert_allclose(s.logprob.numpy(), lp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.vocab_mean.numpy(), mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.vocab_std.numpy(), sd, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.entropy.numpy(), ent, rtol=1e-5, atol=1e-5)


def test_bfloat16_logits_are_scored_in_float32():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(scale=4.0, size=(20, 500)).astype(np.float32)).bfloat16()
    targets = torch.from_numpy(rng.integers(0, 500, size=20))
    s = next_token_stats(logits, targets)
    assert s.logprob.dtype == torch.float32
    # The reference sees exactly the bf16 values, upcast: only the softmax precision differs.
    lp, mu, sd, _ = _numpy_reference(logits.float().numpy(), targets.numpy())
    np.testing.assert_allclose(s.logprob.numpy(), lp, atol=1e-5)
    np.testing.assert_allclose(s.vocab_std.numpy(), sd, atol=1e-4)


def test_uniform_distribution_by_hand():
    V = 8
    s = next_token_stats(torch.zeros(1, V), torch.tensor([3]))
    assert s.logprob.item() == pytest.approx(-np.log(V))
    assert s.entropy.item() == pytest.approx(np.log(V))
    assert s.vocab_std.item() == pytest.approx(0.0, abs=1e-6)  # every log p is equal


def test_minus_infinity_logits_give_no_nan():
    logits = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]])
    s = next_token_stats(logits, torch.tensor([0]))
    assert s.logprob.item() == pytest.approx(-np.log(2))
    assert s.entropy.item() == pytest.approx(np.log(2))
    assert torch.isfinite(s.vocab_std).all()


def test_memorized_token_has_exactly_zero_loss_and_is_kept():
    # A logit margin of 200 makes log p round to exactly 0.0 in float32.
    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    s = next_token_stats(logits, torch.tensor([0, 1]))
    assert s.logprob[0].item() == 0.0
    assert len(s.logprob) == 2


@pytest.mark.parametrize("dense", [True, False])
def test_shifted_stats_use_the_previous_position(dense):
    B, T, V = 2, 6, 7
    torch.manual_seed(0)
    logits = torch.randn(B, T, V)
    ids = torch.randint(0, V, (B, T))
    mask = torch.zeros(B, T, dtype=torch.bool)
    expected = [(0, 2), (0, 3), (0, 4), (0, 5), (1, 1), (1, 2), (1, 3), (1, 4)] if dense else [(0, 5), (1, 2)]
    for b, t in expected:
        mask[b, t] = True
    stats, targets, rows_b = shifted_stats(logits, ids, mask)
    assert rows_b.tolist() == [b for b, _ in expected]
    assert targets.tolist() == [int(ids[b, t]) for b, t in expected]
    # brute force: row (b, t - 1) of the logits predicts token (b, t)
    ref = next_token_stats(torch.stack([logits[b, t - 1] for b, t in expected]), targets)
    for field in ("logprob", "vocab_mean", "vocab_std", "entropy"):
        torch.testing.assert_close(getattr(stats, field), getattr(ref, field))
    mask[0, 0] = True
    with pytest.raises(ValueError, match="position 0"):
        shifted_stats(logits, ids, mask)


def test_target_of_probability_zero_is_minus_infinity_not_nan():
    s = next_token_stats(torch.tensor([[0.0, float("-inf")]]), torch.tensor([1]))
    assert s.logprob.item() == float("-inf")
    assert s.entropy.item() == pytest.approx(0.0, abs=1e-7)
