"""Neighbour generation for the neighbourhood attack: word swaps and a tiny random masked LM."""

from __future__ import annotations

import math
import re

import pytest
import torch

from lmaudit.membership.perturb import MaskedLMPerturber, WordSwapPerturber
from lmaudit.testbed.corpus import generate_corpus

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def texts():
    return [r["text"] for r in generate_corpus(60, seed=1)]


def _words(text):
    return re.findall(r"\w+", text)


def _skeleton(text):
    return re.split(r"\w+", text)


# --- WordSwapPerturber --------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.25, 1.0])
def test_word_swap_replaces_the_planned_number_of_words(texts, fraction):
    sample = [*texts[:4], "Hello, world!", "one"]
    p = WordSwapPerturber(fraction=fraction)
    out = p.perturb(sample, n=5, seed=0)
    assert [len(neighbours) for neighbours in out] == [5] * len(sample)
    for text, neighbours in zip(sample, out):
        words = _words(text)
        for nb in neighbours:
            new = _words(nb)
            assert len(new) == len(words) and _skeleton(nb) == _skeleton(text)
            changed = [(a, b) for a, b in zip(words, new) if a != b]
            # Every chosen position changes, so this also checks that no replacement equals its word.
            assert len(changed) == max(1, round(fraction * len(words)))
            for a, b in changed:  # first-letter case kept; digits and the like have none
                assert b[0] == (b[0].upper() if a[0].isupper() else b[0].lower() if a[0].islower() else b[0])


def test_word_swap_is_seeded_and_independent_of_the_batch(texts):
    p = WordSwapPerturber(fraction=0.2, pool=_words(" ".join(texts)))
    first = p.perturb(texts[:3], n=4, seed=7)
    assert first == p.perturb(texts[:3], n=4, seed=7)
    assert first != p.perturb(texts[:3], n=4, seed=8)
    assert len({*first[0]}) > 1  # neighbours of one text differ from each other
    # Keyed by the text, not its position: reordering or splitting the batch changes nothing.
    assert p.perturb([texts[2], texts[0]], n=4, seed=7) == [first[2], first[0]]
    assert p.perturb([texts[1]], n=4, seed=7) == [first[1]]


def test_word_swap_draws_from_the_pool(texts):
    p = WordSwapPerturber(fraction=0.3, pool=["alpha", "beta", "gamma"])
    for text, neighbours in zip(texts[:5], p.perturb(texts[:5], n=3, seed=1)):
        for nb in neighbours:
            new = {b for a, b in zip(_words(text), _words(nb)) if a != b}
            assert new and {w.lower() for w in new} <= {"alpha", "beta", "gamma"}


def test_word_swap_without_a_pool_uses_the_batch_words():
    sample = ["red green blue", "green blue red"]
    for nb in sum(WordSwapPerturber(fraction=1.0).perturb(sample, n=4, seed=0), []):
        assert set(_words(nb)) <= {"red", "green", "blue"}


def test_word_swap_errors():
    with pytest.raises(ValueError, match="text 1"):
        WordSwapPerturber().perturb(["fine words", " ,.! "], n=2, seed=0)
    with pytest.raises(ValueError, match="other than itself"):
        WordSwapPerturber(pool=["The"]).perturb(["the the"], n=1, seed=0)  # case is matched, so "the"
    with pytest.raises(ValueError, match="single words"):
        WordSwapPerturber(pool=["two words"])
    with pytest.raises(ValueError, match="fraction"):
        WordSwapPerturber(fraction=0.0)
    with pytest.raises(ValueError, match="n must be"):
        WordSwapPerturber().perturb(["text"], n=0, seed=0)


def test_word_swap_describe():
    assert WordSwapPerturber().describe() == {"name": "word_swap", "fraction": 0.1, "pool": None}
    assert WordSwapPerturber(pool=["a", "b"]).describe()["pool"]["size"] == 2


# --- MaskedLMPerturber --------------------------------------------------------


@pytest.fixture(scope="module")
def mlm_tokenizer(texts):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    specials = [(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")]
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def _bert(tokenizer, max_positions=512):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id)
    return BertForMaskedLM(cfg)


@pytest.fixture(scope="module")
def mlm(mlm_tokenizer):
    return MaskedLMPerturber(_bert(mlm_tokenizer), mlm_tokenizer, fraction=0.1, top_k=10)


def _check_ids(perturber, tokenizer, sample, n, seed):
    """Each neighbour's ids differ from the text's in exactly the planned number of places."""
    special = set(tokenizer.all_special_ids)
    for text, neighbours in zip(sample, perturber.perturb_ids(sample, n=n, seed=seed)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(neighbours) == n and not special & set(ids)  # no [UNK]: every token is maskable
        for nb in neighbours:
            diff = [b for a, b in zip(ids, nb) if a != b]
            assert len(nb) == len(ids) and len(diff) == math.ceil(round(0.1 * len(ids), 9))
            assert not special & set(diff)


def test_masked_lm_replaces_the_planned_tokens(mlm, mlm_tokenizer, texts):
    _check_ids(mlm, mlm_tokenizer, texts[:3], n=2, seed=0)


def test_masked_lm_windows_long_texts(mlm_tokenizer, texts):
    p = MaskedLMPerturber(_bert(mlm_tokenizer, max_positions=40), mlm_tokenizer)
    assert len(mlm_tokenizer(texts[0])["input_ids"]) > 3 * 40  # several windows per text
    _check_ids(p, mlm_tokenizer, texts[:1], n=2, seed=0)
    assert all(nb != texts[0] for nb in p.perturb(texts[:1], n=2, seed=0)[0])


def test_masked_lm_neighbours_are_seeded_text(mlm, mlm_tokenizer, texts):
    sample = texts[:2]
    out = mlm.perturb(sample, n=3, seed=0)
    assert [len(nbs) for nbs in out] == [3, 3]
    assert out == mlm.perturb(sample, n=3, seed=0)
    assert out != mlm.perturb(sample, n=3, seed=1)
    enc = mlm_tokenizer(sample, add_special_tokens=False, return_offsets_mapping=True)
    for k, (text, nbs, ids_nbs) in enumerate(zip(sample, out, mlm.perturb_ids(sample, n=3, seed=0))):
        ids, offsets = enc["input_ids"][k], enc["offset_mapping"][k]
        for nb, nb_ids in zip(nbs, ids_nbs):
            assert nb != text and not any(s in nb for s in SPECIALS)
            # Only words holding a replaced token are rewritten: the text before the first
            # such word and after the last one is kept character for character.
            changed = [p for p, (a, b) in enumerate(zip(ids, nb_ids)) if a != b]
            words = enc.word_ids(k)
            spans = [offsets[p] for p, w in enumerate(words) if w in {words[c] for c in changed}]
            start, end = min(s for s, _ in spans), max(e for _, e in spans)
            assert nb.startswith(text[:start]) and nb.endswith(text[end:])


def test_masked_lm_is_independent_of_the_batch(mlm_tokenizer, texts):
    model = _bert(mlm_tokenizer)
    big = MaskedLMPerturber(model, mlm_tokenizer, batch_size=32).perturb(texts[:3], n=2, seed=5)
    small = MaskedLMPerturber(model, mlm_tokenizer, batch_size=1).perturb([texts[2], texts[0]], n=2, seed=5)
    assert small == [big[2], big[0]]


def test_masked_lm_errors_and_describe(mlm, mlm_tokenizer):
    with pytest.raises(ValueError, match="text 1"):
        mlm.perturb(["A text.", ""], n=1, seed=0)
    assert mlm.describe() == {"name": "masked_lm", "model": "BertForMaskedLM", "tokenizer": "", "fraction": 0.1,
                              "top_k": 10, "max_length": 512, "batch_size": 32}


def test_masked_lm_from_pretrained_matches_the_loaded_model(mlm, mlm_tokenizer, tmp_path, texts):
    mlm.model.save_pretrained(tmp_path)
    mlm_tokenizer.save_pretrained(tmp_path)
    loaded = MaskedLMPerturber.from_pretrained(str(tmp_path))
    assert loaded.perturb(texts[:2], n=2, seed=3) == mlm.perturb(texts[:2], n=2, seed=3)


def test_membership_command_takes_a_masked_lm_perturber(mlm, mlm_tokenizer, texts, make_tiny, tokenizer, tmp_path):
    import json

    from typer.testing import CliRunner

    from lmaudit.cli import app

    mlm.model.save_pretrained(tmp_path / "mlm")
    mlm_tokenizer.save_pretrained(tmp_path / "mlm")
    make_tiny("llama", len(tokenizer)).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    for name, part in (("m", texts[:6]), ("n", texts[6:12])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in part))
    res = CliRunner().invoke(app, ["--quiet", "membership", "--model", str(tmp_path / "lm"), "--members",
                                   str(tmp_path / "m.jsonl"), "--nonmembers", str(tmp_path / "n.jsonl"), "--attacks",
                                   "neighbourhood", "--mlm-perturber", str(tmp_path / "mlm"), "--out", str(tmp_path / "out"),
                                   "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["attacks"]["neighbourhood"]["info"]["perturber"]["name"] == "masked_lm"
    assert r["attacks"]["neighbourhood"]["n_members"] == 6
