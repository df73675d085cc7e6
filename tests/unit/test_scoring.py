"""Scoring against Hugging Face's own loss, invariances, windows, error rows and the cache."""

import numpy as np
import pytest
import torch

from lmaudit.data import Record
from lmaudit.models.base import ScoringPolicy
from lmaudit.models.hf import HFModel
from lmaudit.scoring.cache import ScoreCache
from lmaudit.scoring.score import plan_windows, score_records


def _records(texts):
    return [Record(id=f"d{i}", text=t, source="mem", line=i + 1) for i, t in enumerate(texts)]


def test_logprob_sum_equals_hf_loss_times_tokens(tiny_lm, corpus_texts):
    scores = score_records(tiny_lm, _records(corpus_texts[:6]), batch_size=4)
    for s, text in zip(scores, corpus_texts):
        ids = torch.tensor([[tiny_lm.bos_token_id, *tiny_lm.encode([text])[0]]])
        with torch.no_grad():
            loss = tiny_lm.model(input_ids=ids, labels=ids).loss.item()  # mean over the T-1 shifted targets
        assert s.n_tokens == ids.shape[1] - 1 == s.n_text_tokens
        assert s.logprob_sum == pytest.approx(-loss * s.n_tokens, rel=1e-5)
        assert s.logprob_mean == pytest.approx(-loss, rel=1e-5)


def test_bos_none_scores_one_token_fewer(tiny_lm, corpus_texts):
    rec = _records(corpus_texts[:1])
    with_bos = score_records(tiny_lm, rec)[0]
    without = score_records(tiny_lm, rec, policy=ScoringPolicy(bos="none"))[0]
    assert without.n_tokens == with_bos.n_tokens - 1
    assert list(without.stats.token_ids) == list(with_bos.stats.token_ids[1:])


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batch_size_and_padding_side_do_not_change_scores(tiny_lm, corpus_texts, padding_side):
    recs = _records(corpus_texts[:16])
    ref = score_records(tiny_lm, recs, batch_size=1)
    got = score_records(tiny_lm, recs, batch_size=16, policy=ScoringPolicy(padding_side=padding_side))
    for a, b in zip(ref, got):
        assert a.id == b.id and a.n_tokens == b.n_tokens
        np.testing.assert_array_equal(a.stats.token_ids, b.stats.token_ids)
        for field in ("logprob", "vocab_mean", "vocab_std", "entropy"):
            # Stated tolerance for float32 batched vs unbatched matmuls.
            np.testing.assert_allclose(getattr(a.stats, field), getattr(b.stats, field), atol=1e-4, rtol=1e-4)


def test_vocab_stats_match_numpy_over_the_full_softmax(tiny_lm, corpus_texts):
    text = corpus_texts[0]
    s = score_records(tiny_lm, _records([text]))[0].stats
    ids = torch.tensor([[tiny_lm.bos_token_id, *tiny_lm.encode([text])[0]]])
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=ids).logits[0, :-1].double().numpy()  # (T-1, V)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    p = np.exp(logp)
    mu = (p * logp).sum(1)
    np.testing.assert_allclose(s.logprob, logp[np.arange(len(logp)), ids[0, 1:].numpy()], atol=1e-5)
    np.testing.assert_allclose(s.vocab_mean, mu, atol=1e-5)
    np.testing.assert_allclose(s.vocab_std, np.sqrt((p * (logp - mu[:, None]) ** 2).sum(1)), atol=1e-5)
    np.testing.assert_allclose(s.entropy, -mu, atol=1e-5)


def test_real_eos_inside_a_text_is_scored(tokenizer, make_tiny):
    # The pad id equals EOS here on purpose: masking by id would drop the text's own EOS.
    tok = tokenizer
    lm = HFModel(make_tiny("gpt2", len(tok)), tok)
    lm.pad_token_id = lm.eos_token_id
    text = f"hello{tok.eos_token} world"
    s = score_records(lm, _records([text, "a much longer text that forces padding of the first one"]))[0]
    assert lm.eos_token_id in s.stats.token_ids.tolist()
    assert s.n_tokens == len(lm.encode([text])[0])


def test_zero_loss_tokens_are_kept(tokenizer, make_tiny):
    model = make_tiny("llama", len(tokenizer))
    with torch.no_grad():
        model.lm_head.weight.mul_(1e4)  # enormous margins: the argmax token gets log p == 0.0 exactly
    lm = HFModel(model, tokenizer)
    prompt = [lm.bos_token_id]
    greedy = lm.generate([prompt], __import__("lmaudit.models.base", fromlist=["x"]).GenerationConfig(max_new_tokens=12, stop_at_eos=False))[0]
    s = lm.token_stats([prompt + greedy], [1])[0]
    assert len(s) == 12
    assert (s.logprob == 0.0).sum() >= 6, s.logprob  # many tokens with exactly zero loss ...
    assert score_records(lm, _records([lm.decode(greedy)]))[0].n_tokens == len(lm.encode([lm.decode(greedy)])[0])  # ... all counted


def test_error_rows_keep_ids_and_order(tiny_lm, corpus_texts):
    recs = _records([corpus_texts[0], "", corpus_texts[1]])
    scores = score_records(tiny_lm, recs)
    assert [s.id for s in scores] == ["d0", "d1", "d2"]
    assert scores[1].error.startswith("empty text") and scores[1].logprob_sum is None and scores[1].n_tokens == 0
    assert scores[0].error is None and scores[2].error is None


@pytest.mark.parametrize("bos", ["prepend", "none"])
@pytest.mark.parametrize("n", range(1, 40))
@pytest.mark.parametrize("L,S", [(8, 4), (8, 3), (8, 6), (5, 1), (16, 8)])
def test_windows_score_every_token_exactly_once(n, L, S, bos):
    ids = list(range(100, 100 + n))
    policy = ScoringPolicy(max_length=L, stride=S, bos=bos).resolved(1000)
    windows, n_trunc, err = plan_windows(ids, policy, bos_token_id=1)
    if bos == "none" and n == 1:
        assert err and not windows
        return
    assert err is None and n_trunc == 0
    lead = 1 if bos == "prepend" else 0
    scored = []
    for k, (tokens, start) in enumerate(windows):
        assert len(tokens) <= L and 1 <= start < len(tokens)  # every window scores something
        if bos == "prepend":
            assert tokens[0] == 1 and 1 not in tokens[1:]  # BOS starts every window, and only there
        if k > 0:  # documented context: at least max_length - lead - stride text tokens
            assert start - lead >= L - lead - S
        scored += tokens[start:]
    assert scored == (ids if bos == "prepend" else ids[1:])  # brute force: each token once, in order


def test_stride_must_leave_context():
    with pytest.raises(ValueError, match="stride"):
        ScoringPolicy(max_length=8, stride=7).resolved(100)
    ScoringPolicy(max_length=8, stride=7, bos="none").resolved(100)
    with pytest.raises(ValueError, match="context length"):
        ScoringPolicy(max_length=200).resolved(100)


def test_truncate_and_error_policies(tiny_lm, corpus_texts):
    rec = _records([corpus_texts[0]])
    n = len(tiny_lm.encode([corpus_texts[0]])[0])
    t = score_records(tiny_lm, rec, policy=ScoringPolicy(max_length=20, overflow="truncate"))[0]
    assert t.n_tokens == 19 and t.n_truncated == n - 19
    e = score_records(tiny_lm, rec, policy=ScoringPolicy(max_length=20, overflow="error"))[0]
    assert e.error and "max_length=20" in e.error
    w = score_records(tiny_lm, rec, policy=ScoringPolicy(max_length=20, stride=10))[0]
    assert w.n_tokens == n and w.n_windows > 1


def test_windows_equal_full_scoring_when_context_is_the_whole_text(tiny_lm, corpus_texts):
    # With stride 1 every window after the first sees max_length - 1 tokens of context; when the
    # text fits in max_length the single window must equal the unwindowed score exactly.
    rec = _records([corpus_texts[2]])
    full = score_records(tiny_lm, rec)[0]
    n = full.n_tokens + 1
    same = score_records(tiny_lm, rec, policy=ScoringPolicy(max_length=n))[0]
    np.testing.assert_allclose(same.stats.logprob, full.stats.logprob, atol=1e-6)
    assert same.n_windows == 1


class _CountingModel:
    """Wraps a model and counts forward passes; optionally dies after `fail_after` batches."""

    def __init__(self, lm, fail_after=None):
        self.lm, self.calls, self.fail_after = lm, 0, fail_after

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def token_stats(self, *args, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        return self.lm.token_stats(*args, **kwargs)


def test_killed_run_resumes_without_rescoring(tiny_lm, corpus_texts, tmp_path):
    recs = _records(corpus_texts[:12])
    expected = score_records(tiny_lm, recs, batch_size=4)
    cache = ScoreCache(tmp_path / "cache.sqlite")
    dying = _CountingModel(tiny_lm, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        score_records(dying, recs, batch_size=4, cache=cache)
    assert len(cache) == 8  # the two finished batches were committed
    resumed = _CountingModel(tiny_lm)
    got = score_records(resumed, recs, batch_size=4, cache=cache)
    assert resumed.calls == 1  # only the last 4 documents were scored again
    for a, b in zip(expected, got):
        assert a.id == b.id and a.logprob_sum == pytest.approx(b.logprob_sum, abs=1e-4)
    again = _CountingModel(tiny_lm)
    score_records(again, recs, batch_size=4, cache=cache)
    assert again.calls == 0


def test_cache_is_keyed_by_policy_and_model(tiny_lm, corpus_texts, tmp_path, tokenizer, make_tiny):
    recs = _records(corpus_texts[:3])
    cache = ScoreCache(tmp_path / "cache.sqlite")
    score_records(tiny_lm, recs, cache=cache)
    other_policy = _CountingModel(tiny_lm)
    score_records(other_policy, recs, cache=cache, policy=ScoringPolicy(bos="none"))
    assert other_policy.calls == 1
    other = HFModel(make_tiny("gpt2", len(tokenizer)), tokenizer)
    with torch.no_grad():
        next(other.model.parameters()).add_(1e-3)  # a different model must not hit the cache
    other_model = _CountingModel(other)
    score_records(other_model, recs, cache=cache)
    assert other_model.calls == 1


def test_in_place_weight_update_changes_the_fingerprint(tokenizer, make_tiny, corpus_texts, tmp_path):
    lm = HFModel(make_tiny("gpt2", len(tokenizer)), tokenizer)
    before = lm.fingerprint()
    assert lm.fingerprint() == before  # memoised and deterministic
    with torch.no_grad():
        lm.model.transformer.wte.weight.add_(1.0)  # e.g. an unlearning step on the same object
    assert lm.fingerprint() != before
    cache = ScoreCache(tmp_path / "c.sqlite")
    counting = _CountingModel(lm)
    score_records(counting, _records(corpus_texts[:2]), cache=cache)
    with torch.no_grad():
        lm.model.transformer.wte.weight.add_(1.0)
    score_records(counting, _records(corpus_texts[:2]), cache=cache)
    assert counting.calls == 2  # the changed model was scored again, not served from cache


def test_non_finite_logits_become_error_rows(tokenizer, make_tiny, corpus_texts):
    model = make_tiny("llama", len(tokenizer))
    with torch.no_grad():
        model.lm_head.weight[5] = float("inf")  # every logit of token 5 becomes +/-inf or NaN
    scores = score_records(HFModel(model, tokenizer), _records(corpus_texts[:2]))
    for s in scores:
        assert s.error and "non-finite" in s.error and s.logprob_sum is None


class _KwargsOnly(torch.nn.Module):
    """Hides forward's signature, as torch.compile and PEFT wrappers do."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()


def test_wrapped_models_still_get_position_ids(tokenizer, make_tiny, corpus_texts):
    lm = HFModel(_KwargsOnly(make_tiny("gpt2", len(tokenizer))), tokenizer)
    recs = _records(corpus_texts[:4])
    right = score_records(lm, recs, batch_size=4)
    left = score_records(lm, recs, batch_size=4, policy=ScoringPolicy(padding_side="left"))
    for a, b in zip(right, left):
        np.testing.assert_allclose(a.stats.logprob, b.stats.logprob, atol=1e-4)


def test_bfloat16_model_is_scored_in_float32(tokenizer, make_tiny, corpus_texts):
    model = make_tiny("llama", len(tokenizer))
    ref = score_records(HFModel(model, tokenizer), _records(corpus_texts[:3]))
    half = score_records(HFModel(model.to(torch.bfloat16), tokenizer), _records(corpus_texts[:3]))
    for a, b in zip(ref, half):
        assert b.stats.logprob.dtype == np.float32 and b.stats.vocab_std.dtype == np.float32
        # bf16 weights change the logits by ~1%; the statistics of them must stay close.
        np.testing.assert_allclose(b.stats.logprob, a.stats.logprob, atol=0.1)
        assert b.logprob_mean == pytest.approx(a.logprob_mean, abs=0.02)


def test_from_pretrained_loads_safetensors_and_refuses_pickles(tokenizer, make_tiny, tmp_path, corpus_texts):
    model = make_tiny("gpt2", len(tokenizer))
    model.save_pretrained(tmp_path / "st")
    tokenizer.save_pretrained(tmp_path / "st")
    lm = HFModel.from_pretrained(str(tmp_path / "st"), device="cpu")
    # Identified by its files; the same weights built in memory are hashed instead (never equal).
    assert lm.fingerprint().startswith("file:") and HFModel(model, tokenizer).fingerprint().startswith("tensor:")
    assert HFModel.from_pretrained(str(tmp_path / "st"), device="cpu").fingerprint() == lm.fingerprint()
    assert lm.dtype == "float32" and lm.max_length == 512
    (tmp_path / "pickled").mkdir()
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    model.config.save_pretrained(tmp_path / "pickled")
    tokenizer.save_pretrained(tmp_path / "pickled")
    with pytest.raises(OSError):
        HFModel.from_pretrained(str(tmp_path / "pickled"), device="cpu")
