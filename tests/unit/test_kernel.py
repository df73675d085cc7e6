"""The scoring kernel against a direct float64 numpy computation over the full softmax."""

import numpy as np
import pytest
import torch

from lmaudit.scoring.kernel import gather_shifted, next_token_stats


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


def test_gather_shifted_uses_the_previous_position():
    B, T, V = 2, 5, 7
    logits = torch.arange(B * T * V, dtype=torch.float32).reshape(B, T, V)
    ids = torch.randint(0, V, (B, T))
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 2:] = True
    mask[1, 1:3] = True
    rows, targets, (b, t) = gather_shifted(logits, ids, mask)
    expected = [(0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]
    assert list(zip(b.tolist(), t.tolist())) == expected
    for r, (bb, tt) in enumerate(expected):
        assert torch.equal(rows[r], logits[bb, tt - 1])
        assert targets[r] == ids[bb, tt]
    mask[0, 0] = True
    with pytest.raises(ValueError, match="position 0"):
        gather_shifted(logits, ids, mask)
