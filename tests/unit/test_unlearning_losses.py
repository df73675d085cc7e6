"""Unlearning losses against independent computations: hand formulas in numpy, and the
identities the papers state (NPO at the reference is gradient ascent; KL at the reference is
zero with zero gradient)."""

import copy
import math

import numpy as np
import pytest
import torch

from lmaudit.unlearning import FORGET_LOSSES, RETAIN_LOSSES
from lmaudit.unlearning.batch import LossBatch, sequence_logprobs


def _tiny_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    return GPT2LMHeadModel(cfg).eval()  # no dropout: the identities hold for one function of θ


def _data(seed=0, B=3, T=9):
    """Token ids (B, T+1) and a mask with padding at the end of two rows."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (B, T + 1), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, -3:] = False
    mask[2, -5:] = False
    return ids, mask


def _batch(model, ids, mask, **extra):
    logits = model(ids[:, :-1]).logits  # (B, T, V): position t predicts ids[:, t + 1]
    return LossBatch(logits=logits, labels=ids[:, 1:], mask=mask, **extra)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def test_npo_at_the_reference_has_gradient_ascents_gradient():
    model = _tiny_model()
    ids, mask = _data()
    with torch.no_grad():
        ref = sequence_logprobs(model(ids[:, :-1]).logits, ids[:, 1:], mask)  # the cached reference
    npo = _grads(model, FORGET_LOSSES.get("npo")()(_batch(model, ids, mask, ref_logprob=ref)))
    ga = _grads(model, FORGET_LOSSES.get("ga")(reduction="sequence")(_batch(model, ids, mask)))
    assert len(npo) == len(ga) > 0
    for a, b in zip(npo, ga):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # and its value there is (2/β)·log 2
    value = FORGET_LOSSES.get("npo")(beta=0.1)(_batch(model, ids, mask, ref_logprob=ref))
    assert value.item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)


def test_npo_tends_to_gradient_ascent_as_beta_goes_to_zero():
    model = _tiny_model()
    ids, mask = _data(seed=1)
    with torch.no_grad():
        ref = sequence_logprobs(model(ids[:, :-1]).logits, ids[:, 1:], mask) + torch.tensor([3.0, -2.0, 5.0])
    ga = _grads(model, FORGET_LOSSES.get("ga")(reduction="sequence")(_batch(model, ids, mask)))
    gaps = []
    for beta in (1.0, 0.1, 1e-4):
        npo = _grads(model, FORGET_LOSSES.get("npo")(beta=beta)(_batch(model, ids, mask, ref_logprob=ref)))
        gaps.append(max((a - b).abs().max().item() for a, b in zip(npo, ga)))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3 * gaps[0]


def test_npo_matches_its_formula_by_hand():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([[1, 2, 3, 4], [6, 5, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    ref = torch.tensor([-9.0, -4.0])
    lp = np.log(np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(-1, keepdims=True))
    seq = [sum(lp[b, t, labels[b, t]] for t in range(4) if mask[b, t]) for b in range(2)]
    beta = 0.5
    expected = np.mean([-(2 / beta) * np.log(1 / (1 + np.exp(beta * (s - r)))) for s, r in zip(seq, ref.numpy())])
    got = FORGET_LOSSES.get("npo")(beta=beta)(LossBatch(logits, labels, mask, ref_logprob=ref))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="ref_logprob"):
        FORGET_LOSSES.get("npo")()(LossBatch(logits, labels, mask))


def test_simnpo_matches_its_formula_by_hand():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([[1, 2, 3, 4], [6, 5, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    lp = np.log(np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(-1, keepdims=True))
    mean_nll = [-np.mean([lp[b, t, labels[b, t]] for t in range(4) if mask[b, t]]) for b in range(2)]
    beta, delta = 3.0, 0.5
    expected = np.mean([-(2 / beta) * np.log(1 / (1 + np.exp(-beta * (m - delta)))) for m in mean_nll])
    got = FORGET_LOSSES.get("simnpo")(beta=beta, delta=delta)(LossBatch(logits, labels, mask))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kl_is_zero_with_zero_gradient_at_the_reference():
    model = _tiny_model()
    ids, mask = _data(seed=2)
    with torch.no_grad():
        ref_logits = model(ids[:, :-1]).logits
    batch = _batch(model, ids, mask, ref_logits=ref_logits)
    loss = RETAIN_LOSSES.get("kl")()(batch)
    assert abs(loss.item()) < 1e-6
    assert all(g.abs().max().item() < 1e-6 for g in _grads(model, loss))


def test_kl_is_of_distributions_and_leaves_padding_out():
    g = torch.Generator().manual_seed(5)
    logits, ref = torch.randn(2, 3, 6, generator=g), torch.randn(2, 3, 6, generator=g)
    labels = torch.zeros(2, 3, dtype=torch.long)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    p = np.exp(ref.numpy()) / np.exp(ref.numpy()).sum(-1, keepdims=True)
    q = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(-1, keepdims=True)
    expected = np.mean([(p[b, t] * np.log(p[b, t] / q[b, t])).sum() for b, t in [(0, 0), (0, 1), (1, 0)]])
    kl = RETAIN_LOSSES.get("kl")()
    assert kl(LossBatch(logits, labels, mask, ref_logits=ref)).item() == pytest.approx(expected, rel=1e-5)
    # A constant added to either side's logits changes nothing (raw logits in F.kl_div would).
    assert kl(LossBatch(logits + 7.0, labels, mask, ref_logits=ref - 3.0)).item() == pytest.approx(expected, rel=1e-4)
    # Whatever sits at padded positions is ignored.
    noisy = logits.clone()
    noisy[~mask] = 100.0
    assert kl(LossBatch(noisy, labels, mask, ref_logits=ref)).item() == pytest.approx(expected, rel=1e-5)


def test_token_losses_ignore_padding_and_match_the_models_own_loss():
    model = _tiny_model()
    ids, mask = _data(seed=6)
    labels = ids[:, 1:].clone()
    labels[~mask] = -100  # Hugging Face's ignore index: what a data collator writes at padding
    with torch.no_grad():
        hf = model(ids, labels=torch.cat([ids[:, :1], labels], dim=1)).loss  # it shifts the labels itself
        batch = _batch(model, ids, mask)
        batch.labels = labels
        nll = RETAIN_LOSSES.get("nll")()(batch)
        ga = FORGET_LOSSES.get("ga")()(batch)
    assert nll.item() == pytest.approx(hf.item(), rel=1e-5)
    assert ga.item() == pytest.approx(-hf.item(), rel=1e-5)


def test_one_gradient_ascent_step_raises_the_forget_loss():
    model = _tiny_model()
    ids, mask = _data(seed=7)
    before = RETAIN_LOSSES.get("nll")()(_batch(model, ids, mask)).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    optimizer.zero_grad()
    FORGET_LOSSES.get("ga")()(_batch(model, ids, mask)).backward()
    optimizer.step()
    after = RETAIN_LOSSES.get("nll")()(_batch(model, ids, mask)).item()
    assert after > before + 1e-3


def test_no_retain_loss_is_zero_and_options_are_checked():
    model = _tiny_model()
    ids, mask = _data()
    assert RETAIN_LOSSES.get("none")()(_batch(model, ids, mask)).item() == 0.0
    with pytest.raises(ValueError, match="beta"):
        FORGET_LOSSES.get("npo")(beta=0)
    with pytest.raises(ValueError, match="reduction"):
        FORGET_LOSSES.get("ga")(reduction="mean")
    with pytest.raises(KeyError, match="did you mean 'npo'"):
        FORGET_LOSSES.get("nop")
    with pytest.raises(ValueError, match="must agree"):
        LossBatch(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool))
    assert copy.deepcopy(FORGET_LOSSES.get("npo")(beta=0.2)).beta == 0.2
