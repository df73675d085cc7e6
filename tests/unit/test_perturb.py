"""Neighbour generation for the neighbourhood attack (word swaps and a tiny random masked LM), and
the offline edits behind the perturbation attacks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from lmaudit.membership.perturb import MaskedLMPerturber, WordSwapPerturber
from lmaudit.membership.perturb.edits import (
    EDITS,
    KEYBOARD_NEIGHBOURS,
    NothingToEdit,
    apply_edit,
    delete_words,
    edit_rates,
    flip_case,
    keyboard_typos,
    perturb_whitespace,
    swap_words,
    underscore_spaces,
)
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


# --- Offline edits (dataset inference's perturbation features) ---------------

# One word, multi-byte letters, combining marks, emoji, outer whitespace, tabs, no ASCII letter (last).
ODD = ["one", "a b", "Ünïcödé straße ÉCOLE", "x\u0301y Z 🙂 İstanbul ß", "  lead and trail  ",
       "tab\tand\nnew line", "日本語 テキスト"]


def _planned(rate, n):
    return min(n, max(1, round(rate * n)))


def _changed(a, b):
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


@pytest.mark.parametrize("rate", [0.05, 0.3, 1.0])
def test_typos_replace_the_planned_letters_with_keyboard_neighbours(texts, rate):
    for text in [*texts[:5], *ODD[:-1]]:  # the last has no ASCII letter
        out = keyboard_typos(text, seed=0, rate=rate)
        letters = [ch for ch in text if ch.isascii() and ch.isalpha()]
        changed = _changed(text, out)
        assert len(changed) == _planned(rate, len(letters))
        for i in changed:  # a neighbour, never the letter itself, in the letter's case
            assert out[i].lower() in KEYBOARD_NEIGHBOURS[text[i].lower()] and out[i].isupper() == text[i].isupper()


@pytest.mark.parametrize("rate", [0.1, 0.5, 1.0])
def test_case_flips_swap_the_planned_cased_characters_in_any_script(texts, rate):
    for text in [*texts[:5], *ODD[:4]]:
        out = flip_case(text, seed=1, rate=rate)
        cased = [ch for ch in text if len(ch.swapcase()) == 1 and ch.swapcase() != ch]
        changed = _changed(text, out)
        assert len(changed) == _planned(rate, len(cased)) and all(out[i] == text[i].swapcase() for i in changed)
    # ß swaps to two letters and İ lowercases to two code points: neither is flipped.
    assert flip_case("ßİa", seed=0, rate=1.0) == "ßİA"


@pytest.mark.parametrize("rate", [0.05, 0.5, 1.0])
def test_underscores_replace_the_planned_spaces(texts, rate):
    for text in [*texts[:5], *ODD[1:]]:
        out = underscore_spaces(text, seed=2, rate=rate)
        changed = _changed(text, out)
        assert len(changed) == _planned(rate, text.count(" "))
        assert all(text[i] == " " and out[i] == "_" for i in changed)


@pytest.mark.parametrize("rate", [0.25, 0.6, 1.0])
def test_deletion_removes_the_planned_words_never_all_and_keeps_the_layout(texts, rate):
    for text in [*texts[:5], *ODD[1:]]:
        out = delete_words(text, seed=3, rate=rate)
        words, kept = text.split(), out.split()
        assert len(words) - len(kept) == min(len(words) - 1, _planned(rate, len(words)))
        it = iter(words)
        assert all(w in it for w in kept)  # the kept words, in order
        assert out[: len(text) - len(text.lstrip())] == text[: len(text) - len(text.lstrip())]  # leading layout kept
    assert {delete_words("first second\n third", seed=s, rate=0.3) for s in range(20)} == {
        "second\n third", "first\n third", "first second"}


def test_whitespace_removes_and_adds_the_planned_spaces(texts):
    for text in texts[:5]:
        out = perturb_whitespace(text, seed=4)
        n_space = sum(ch.isspace() for ch in text)
        removed, added = round(0.1 * n_space), round(0.05 * (len(text) - n_space))
        assert [ch for ch in out if not ch.isspace()] == [ch for ch in text if not ch.isspace()]
        assert len(out) - len(text) == added - removed and removed and added
    # At least one edit on a short text: a space where there was none, or a removal when there is no room.
    assert perturb_whitespace("ab", seed=0) in {"a b", "ab "}
    assert perturb_whitespace("   ", seed=0) == "  "
    assert perturb_whitespace("a b", seed=0, remove_rate=1.0, add_rate=0.0) == "ab"


def test_word_swap_edit_draws_from_the_texts_own_words(texts):
    for text in texts[:5]:
        out = swap_words(text, seed=5)
        old, new = _words(text), _words(out)
        assert _skeleton(out) == _skeleton(text) and len(new) == len(old)
        changed = [(a, b) for a, b in zip(old, new) if a != b]
        assert len(changed) == _planned(0.1, len(old))
        lower = {w.lower() for w in old}
        assert all(b.lower() in lower or b[:1].swapcase() + b[1:] in old for _, b in changed)


def test_every_edit_is_seeded_by_the_text_alone_and_always_changes_it(texts):
    import random

    for kind in EDITS:
        for text in [*texts[:8], *ODD]:
            try:
                out = apply_edit(kind, text, seed=7)
            except NothingToEdit:
                continue
            assert out != text, (kind, text)
            random.seed(1)
            np.random.seed(1)  # global random state plays no part
            assert apply_edit(kind, text, seed=7) == out
            out.encode("utf-8")  # never a lone surrogate or half a character
        assert len({apply_edit(kind, texts[0], seed=s) for s in range(4)}) > 1, kind  # the seed matters


@pytest.mark.parametrize(("kind", "text", "reason"), [
    ("typos", "", "no ASCII letter"), ("typos", "123 456 ?!", "no ASCII letter"),
    ("typos", "日本語 ÉÈ", "no ASCII letter"),
    ("case", "", "no cased letter"), ("case", "123 日本語", "no cased letter"),
    ("deletion", "", "fewer than two words"), ("deletion", "  single  ", "fewer than two words"),
    ("underscores", "", "no space"), ("underscores", "one\nline", "no space"),
    ("whitespace", "", "is empty"),
    ("word_swap", "", "has no word"), ("word_swap", "?!", "has no word"),
    ("word_swap", "one", "no two different words"), ("word_swap", "Yes yes yes", "no two different words"),
])
def test_a_text_an_edit_cannot_change_says_why(kind, text, reason):
    with pytest.raises(NothingToEdit, match=reason):
        apply_edit(kind, text)


def test_edit_rates_and_their_checks():
    assert list(EDITS) == ["word_swap", "typos", "deletion", "case", "whitespace", "underscores"]
    assert {k: edit_rates(k) for k in EDITS} == {
        "word_swap": {"rate": 0.1}, "typos": {"rate": 0.05}, "deletion": {"rate": 0.25}, "case": {"rate": 0.1},
        "whitespace": {"remove_rate": 0.1, "add_rate": 0.05}, "underscores": {"rate": 0.05}}
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="rate must be in"):
            keyboard_typos("text", rate=bad)
    with pytest.raises(ValueError, match="add_rate must be in"):
        perturb_whitespace("text", add_rate=-0.1)
    # Keyboard neighbours are symmetric and never the key itself.
    for key, near in KEYBOARD_NEIGHBOURS.items():
        assert key not in near and all(key in KEYBOARD_NEIGHBOURS[n] for n in near)
