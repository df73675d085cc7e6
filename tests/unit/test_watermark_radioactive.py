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
from lmaudit.watermark.radioactive import Setup, closed_test, null_calibration, reading_setup, reading_test
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
    """Pooled green count of the predictions with lefthash seeding, written out by hand: a
    position whose previous token already preceded an earlier position of its text is left
    out (the generator examined that seed's whole list there), then (seed, prediction) pairs
    are counted once over all texts."""
    def fmix(x):
        x ^= x >> 16; x = (x * 0x85EBCA6B) & 0xFFFFFFFF; x ^= x >> 13; x = (x * 0xC2B2AE35) & 0xFFFFFFFF
        return x ^ (x >> 16)

    def combine(a, t):
        return fmix(a ^ fmix(t ^ 0x9E3779B9))

    seen, green = set(), 0
    for ids, pred in zip(texts_ids, preds):
        for i in range(1, len(ids)):
            if ids[i - 1] in ids[: i - 1]:
                continue  # its seed was that of an earlier position: a coin the generator examined
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
    assert r["n_positions"] == sum(len(x) - 1 for x in ids)
    assert r["n_positions"] - r["n_examined"] - r["n_repeated"] == n


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
    cal = null_calibration(reading_setup(texts, preds, config.context), config, n_keys=600, seed=3)
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


def _watermarked_texts(config, key, n_texts, length, seed):
    """Texts a watermarked bigram "model" samples (V = 258, one random logit table), batched."""
    import torch

    from lmaudit.watermark.processor import WatermarkProcessor

    rng = np.random.default_rng(seed)
    table = torch.as_tensor(np.random.default_rng(99).normal(0, 2.0, (258, 258)), dtype=torch.float32)
    ids = torch.as_tensor(rng.integers(0, 256, (n_texts, 4)))
    proc = WatermarkProcessor(config, key)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(length):
        scores = proc(ids, table[ids[:, -1]].clone())
        nxt = torch.multinomial(torch.softmax(scores, -1), 1, generator=gen)
        ids = torch.cat([ids, nxt], 1)
    return ids.tolist()


def _copying_predictions(texts):
    """An induction head: after token t, predict what followed t's last earlier occurrence;
    otherwise a fixed function of t. It never saw any watermarked text."""
    out = []
    for ids in texts:
        last, pred = {}, []
        for i in range(len(ids)):  # the prediction of ids[i] from ids[:i]
            cur = ids[i - 1] if i else 0
            pred.append(ids[last[cur] + 1] if i and cur in last else (cur * 7 + 3) % 256)
            if i:
                last[ids[i - 1]] = i - 1
        out.append(np.array(pred))
    return out


def _repeating_predictions(texts):
    """Predict the previous token again: the coin selfhash's generator looked at when it chose
    that token (its self-coin), which a strict comparison once let through."""
    return [np.array([ids[i - 1] if i else 0 for i in range(len(ids))]) for ids in texts]


@pytest.mark.parametrize("preset, suspect", [("lefthash", _copying_predictions), ("selfhash", _copying_predictions),
                                             ("selfhash", _repeating_predictions), ("minhash", _copying_predictions)])
def test_a_model_that_copies_from_its_context_is_not_called_radioactive(preset, suspect):
    """The null that matters: the true key, watermarked texts as input, a suspect that never
    trained on them but copies what followed earlier occurrences (the review found the reading
    test flagged it at p < 0.05 under 95% of keys). Leaving out coins the generator examined
    restores the level; without that step the same data is flagged far above it."""
    from lmaudit.watermark.schemes import build

    base = FakeLM()
    p_fixed, p_naive = [], []
    for k in range(60):
        key = 1000 + k
        config = WatermarkConfig.create(base, key, preset=preset, delta=3.0)
        texts = _watermarked_texts(config, key, 12, 60, seed=k)
        preds = suspect(texts)
        setup = reading_setup(texts, preds, config.context)
        scheme = build(config, key)
        p_fixed.append(setup.run(config, scheme, dedup=True, alpha=1e-3)["p_value"])
        naive = Setup(setup.at, setup.cand, setup.tested, setup.hi, setup.hi)  # an empty examined range
        p_naive.append(naive.run(config, scheme, dedup=True, alpha=1e-3)["p_value"])
    p_fixed, p_naive = np.array(p_fixed), np.array(p_naive)
    assert np.mean(p_fixed < 0.05) <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / len(p_fixed)), np.mean(p_fixed < 0.05)
    if suspect is _copying_predictions and preset == "lefthash":
        assert np.mean(p_naive < 0.05) > 0.3, np.mean(p_naive < 0.05)


@pytest.mark.parametrize("preset, h", [("lefthash", 1), ("lefthash", 3), ("minhash", 3), ("skipgram", 3),
                                       ("selfhash", 1), ("selfhash", 2), ("selfhash", 4), ("unigram", 0)])
def test_examined_coins_against_an_all_pairs_search(preset, h):
    """Which positions examined_earlier leaves out, against a search over every pair of
    positions: the coin (seed the generator gave candidate v at step j, v) equals the tested
    position's, for some step j of the text's watermarked stretch before it. Exact for seedings
    whose seed is the context's; a superset for selfhash (never fewer)."""
    from lmaudit.watermark import seeding
    from lmaudit.watermark.radioactive import closed_setup, examined_earlier

    from lmaudit.watermark.schemes import build

    config = WatermarkConfig.create(FakeLM(), KEY, preset=preset, h=h)
    seeding_name, key = config.seeding, build(config, KEY).stream_key
    c = config.context
    rng = np.random.default_rng(h)
    for trial in range(40):
        texts = [rng.integers(0, 5, int(rng.integers(0, 14))).tolist() for _ in range(3)]
        if trial % 2:  # the closed setup: prompts (BOS first) whose coins the generator may have seen
            prompts = [[256, *rng.integers(0, 5, int(rng.integers(1, 6))).tolist()] for _ in texts]
            setup = closed_setup(prompts, texts, c)
            seqs = [p[1:] + t for p, t in zip(prompts, texts)]
        else:
            setup = reading_setup(texts, [rng.integers(0, 5, len(t)) for t in texts], c)
            seqs = texts
        at, cand = setup.at, setup.cand
        seeds, _ = seeding.values_np(seeding_name, h, key, at.prev, cand)
        got = examined_earlier(at, cand, seeds, setup.lo, setup.hi, config, key)
        for k in range(len(cand)):
            seq, p, v = seqs[at.doc[k]], int(at.pos[k]), int(cand[k])
            steps = range(max(int(setup.lo[k]), c), min(int(setup.hi[k]), p))
            want = any(seeding.seeds_np(seeding_name, h, key, np.array([seq[j - c:j]], dtype=np.uint32),
                                        np.array([v], dtype=np.uint32))[0] == seeds[k] for j in steps)
            if seeding_name == "selfhash":
                assert got[k] or not want, (trial, k)  # every examined coin is left out
            else:
                assert got[k] == want, (trial, k)
