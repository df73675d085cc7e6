"""Radioactivity's pooled tests against a brute-force count, and their behaviour on models that
did and did not learn watermarked text (FakeLM "trained" on it)."""

import json

import numpy as np
import pytest
import scipy.stats as st

from lmaudit.data import Record
from lmaudit.models.base import GenerationConfig
from lmaudit.models.fake import FakeLM
from lmaudit.watermark.config import ConfigMismatch, WatermarkConfig
from lmaudit.watermark.processor import generate
from lmaudit.watermark.prf import key32, threshold
from lmaudit.watermark.radioactive import closed_test, null_calibration, reading_positions, reading_test
from lmaudit.watermark.run import radioactivity_to_dir

KEY = 7
WORDS = "the cat sat on a mat while one dog ran past two birds and three red foxes in green fields".split()


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 12)) for _ in range(n)]


def _pair(n=24, new=40):
    base = FakeLM(_texts(200, seed=1), boost=2.0)
    config = WatermarkConfig.create(base, KEY, preset="lefthash", delta=4.0)
    prompts = [[base.bos_token_id, *base.encode([t])[0][:8]] for t in _texts(n, seed=2)]
    gen = GenerationConfig(max_new_tokens=new, do_sample=True, temperature=1.0, stop_at_eos=False)
    wm = [base.decode(p[1:] + g) for p, g in zip(prompts, generate(base, prompts, config, KEY, generation=gen))]
    plain = [base.decode(p[1:] + g) for p, g in zip(prompts, generate(base, prompts, None, generation=gen))]
    return base, config, prompts, wm, plain


def _brute_lefthash(texts_ids, preds, gamma=0.25):
    """Pooled green count of the predictions with lefthash seeding, written out by hand."""
    def fmix(x):
        x ^= x >> 16; x = (x * 0x85EBCA6B) & 0xFFFFFFFF; x ^= x >> 13; x = (x * 0xC2B2AE35) & 0xFFFFFFFF
        return x ^ (x >> 16)

    def combine(a, t):
        return fmix(a ^ fmix(t ^ 0x9E3779B9))

    seen, green = set(), 0
    for ids, pred in zip(texts_ids, preds):
        for i in range(1, len(ids)):
            seed = combine(key32(KEY), ids[i - 1])
            pair = (seed, int(pred[i]))
            if pair in seen:
                continue
            seen.add(pair)
            green += combine(seed, int(pred[i])) < threshold(gamma)
    return green, len(seen)


def test_reading_test_counts_the_predictions_once_each():
    base, config, _, wm, _ = _pair()
    ids = base.encode(wm)
    r = reading_test(base, ids, config, KEY)
    # FakeLM's predictions: the argmax of its logits after BOS + the text's prefix.
    preds = [np.array([int(np.argmax(base.logits([base.bos_token_id, *x[:i]]))) for i in range(len(x))]) for x in ids]
    green, n = _brute_lefthash(ids, preds)
    assert (r["n_scored"], round(r["score"])) == (n, green)
    assert r["p_value"] == pytest.approx(st.binom.sf(green - 1, n, threshold(0.25) / 2**32), rel=1e-9)
    assert r["n_positions"] == sum(len(x) - 1 for x in ids) and r["n_repeated"] == r["n_positions"] - n


def test_a_model_that_learnt_watermarked_text_is_radioactive_and_its_control_is_not():
    base, config, prompts, wm, plain = _pair(n=40, new=60)
    learnt, control = FakeLM(wm, boost=8.0), FakeLM(plain, boost=8.0)
    ids = base.encode(wm)
    hot = reading_test(learnt, ids, config, KEY, null_keys=200)
    cold = reading_test(control, ids, config, KEY, null_keys=200)
    assert hot["p_value"] < 1e-6 and hot["detected"]
    assert cold["p_value"] > 1e-3 and not cold["detected"]
    for r in (hot, cold):  # other keys see no watermark in either model's predictions
        rate = r["null_keys"]["rates"]["0.05"]
        assert rate["n"] == 200 and rate["k"] <= 25, rate
    gen = GenerationConfig(max_new_tokens=40, stop_at_eos=False)
    (c_hot, _), (c_cold, _) = (closed_test(m, prompts, config, KEY, generation=gen) for m in (learnt, control))
    assert c_hot["p_value"] < 1e-3 < c_cold["p_value"]


def test_null_calibration_on_text_no_key_touched_keeps_its_level():
    # Random predictions in random contexts: every key is a null key; p < alpha at rate alpha.
    rng = np.random.default_rng(0)
    texts = [rng.integers(0, 258, 200).tolist() for _ in range(20)]
    preds = [rng.integers(0, 258, 200) for _ in texts]
    config = WatermarkConfig.create(FakeLM(), KEY, preset="lefthash")
    cal = null_calibration(reading_positions(texts, preds, config.context), config, n_keys=600, seed=3)
    for a, v in cal["rates"].items():
        lo, hi = st.binomtest(v["k"], v["n"]).proportion_ci(0.999)
        assert lo <= float(a) <= hi, (a, v)


def test_radioactivity_run_refuses_another_tokenizer_and_writes_results(tmp_path):
    base, config, _, wm, _ = _pair(n=8, new=30)
    records = [Record(i, t, "x", i + 1) for i, t in enumerate(wm)]
    other = WatermarkConfig.from_dict({**config.to_dict(), "tokenizer": "another"})
    with pytest.raises(ConfigMismatch, match="tokenizer"):
        radioactivity_to_dir(base, records, other, KEY, tmp_path / "a")
    assert not (tmp_path / "a" / "results.json").exists()
    with pytest.raises(ConfigMismatch, match="key"):
        radioactivity_to_dir(base, records, config, KEY + 1, tmp_path / "b")
    r = radioactivity_to_dir(base, records, config, KEY, tmp_path / "c", null_keys=20,
                             generation=GenerationConfig(max_new_tokens=20, stop_at_eos=False))
    saved = json.loads((tmp_path / "c" / "results.json").read_text())
    assert saved["kind"] == "watermark-radioactivity" and set(saved["radioactivity"]) == {"open", "closed"}
    assert saved["watermark"]["key_id"] == config.key_id and "key" not in saved["watermark"]
    assert r["radioactivity"]["open"]["null_keys"]["n_keys"] == 20


def test_top_predictions_are_the_argmax_of_the_logits_whatever_the_padding(tiny_lm):
    import torch

    seqs = [[1, 5, 9, 4, 7, 3], [2, 8], [6, 6, 6, 1]]
    got = tiny_lm.top_predictions(seqs, [1, 1, 2])
    for seq, start, g in zip(seqs, [1, 1, 2], got):
        with torch.no_grad():
            logits = tiny_lm.model(input_ids=torch.tensor([seq])).logits[0]
        assert g.tolist() == logits[start - 1 : len(seq) - 1].argmax(-1).tolist()
