"""Offline attacks on watermarked text (lmaudit.watermark.attacks) and the normalisation that
undoes the character-level ones (lmaudit.watermark.normalize)."""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np
import pytest

from lmaudit.models.base import GenerationConfig
from lmaudit.models.fake import FakeLM
from lmaudit.testbed.corpus import generate_corpus
from lmaudit.watermark.attacks import ATTACKS, Attacked, apply_attack, describe, parse_attacks
from lmaudit.watermark.attacks.copy_paste import CopyPaste
from lmaudit.watermark.attacks.delete import Delete
from lmaudit.watermark.attacks.homoglyph import Homoglyph
from lmaudit.watermark.attacks.none import NoAttack
from lmaudit.watermark.attacks.paraphrase import DEFAULT_TEMPLATE, LMParaphraser, Paraphrase
from lmaudit.watermark.attacks.substitute import Substitute
from lmaudit.watermark.attacks.truncate import Truncate
from lmaudit.watermark.attacks.unicode import Unicode
from lmaudit.watermark.attacks.whitespace import Whitespace
from lmaudit.watermark.normalize import FOLD, HOMOGLYPHS, ZERO_WIDTH, normalize

FRACTIONS = [0.05, 0.2, 0.5, 1.0]


@pytest.fixture(scope="module")
def texts():
    return [r["text"] for r in generate_corpus(12, seed=7)]


def _expected(fraction, n):
    """The brief's count, written out: round(fraction * n), at least one if fraction > 0, at most n."""
    if fraction == 0 or n == 0:
        return 0
    return min(n, max(1, int(round(fraction * n))))


def _random_ascii(rng, n_words):
    """Words of printable ASCII (letters, digits, punctuation) separated by ASCII whitespace."""
    alphabet = string.ascii_letters + string.digits + string.punctuation
    seps = [" ", " ", " ", "  ", "\n", "\t"]
    words = ["".join(rng.choice(list(alphabet), size=int(rng.integers(1, 9)))) for _ in range(n_words)]
    return "".join(w + seps[int(rng.integers(len(seps)))] for w in words).rstrip()


def _is_subsequence(small, big):
    it = iter(big)
    return all(any(w == b for b in it) for w in small)


# --- registry ---------------------------------------------------------------------------

def test_every_attack_is_registered_under_its_name():
    assert ATTACKS.names() == ["copy_paste", "delete", "homoglyph", "none", "paraphrase", "substitute", "truncate",
                               "unicode", "whitespace"]
    for name in ATTACKS.names():
        assert ATTACKS.get(name).name == name


# --- each attack's share ----------------------------------------------------------------

@pytest.mark.parametrize("fraction", FRACTIONS)
def test_delete_removes_the_planned_number_of_words_and_keeps_the_rest_in_order(texts, fraction):
    for text in texts:
        words = text.split()
        out = Delete(fraction=fraction).apply(text, seed=2).text
        kept = out.split()
        assert len(words) - len(kept) == _expected(fraction, len(words))
        assert _is_subsequence(kept, words)
        # No gap doubled: every gap of the output is one that separated words in the input.
        gaps_in = set(re.findall(r"\s+", text))
        assert set(re.findall(r"\s+", out.strip())) <= gaps_in


def test_delete_takes_the_gap_before_a_word_or_after_the_first():
    text = "Alpha beta\ngamma delta.\n\nEpsilon zeta"
    by_hand = {"Alpha": "beta\ngamma delta.\n\nEpsilon zeta", "beta": "Alpha\ngamma delta.\n\nEpsilon zeta",
               "gamma": "Alpha beta delta.\n\nEpsilon zeta", "delta.": "Alpha beta\ngamma\n\nEpsilon zeta",
               "Epsilon": "Alpha beta\ngamma delta. zeta", "zeta": "Alpha beta\ngamma delta.\n\nEpsilon"}
    seen = set()
    for seed in range(40):
        out = Delete(fraction=1 / 6).apply(text, seed=seed).text  # one word of six
        [gone] = [w for w in text.split() if w not in out.split()]
        assert out == by_hand[gone]
        seen.add(gone)
    assert seen == set(by_hand)
    assert {Delete(fraction=0.5).apply("  a b  ", seed=k).text for k in range(20)} == {"  b  ", "  a  "}
    assert Delete(fraction=1.0).apply("  a b\n", seed=0).text == "  \n"


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_substitute_replaces_the_planned_number_of_words_in_place(texts, fraction):
    for text in texts:
        words = re.findall(r"\w+", text)
        out = Substitute(fraction=fraction).apply(text, seed=1).text
        new = re.findall(r"\w+", out)
        assert len(new) == len(words)
        assert re.split(r"\w+", out) == re.split(r"\w+", text)  # punctuation and whitespace untouched
        assert sum(a != b for a, b in zip(words, new)) == _expected(fraction, len(words))
        # pool=None: replacements are the text's own words (up to the first letter's case).
        own = {w.lower() for w in words}
        assert all(b.lower() in own for a, b in zip(words, new) if a != b)


def test_substitute_draws_from_a_given_pool():
    text = "the quick brown fox jumps over the lazy dog"
    out = Substitute(fraction=0.5, pool=["red", "green", "blue"]).apply(text, seed=4).text.split()
    changed = [b for a, b in zip(text.split(), out) if a != b]
    assert len(changed) == 4 and set(changed) <= {"red", "green", "blue"}


def test_substitute_refuses_a_text_it_cannot_change_and_a_bad_pool():
    with pytest.raises(ValueError, match="no replacement for 'same'"):
        Substitute(fraction=0.5).apply("same same same", seed=0)
    with pytest.raises(ValueError, match="single words"):
        Substitute(pool=["two words"])


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_whitespace_changes_only_the_planned_number_of_gaps(texts, fraction):
    for text in texts:
        out = Whitespace(fraction=fraction).apply(text, seed=3).text
        assert out.split() == text.split()  # the same words
        assert re.sub(r"\s", "", out) == re.sub(r"\s", "", text)  # no non-whitespace character touched
        gaps_in = re.findall(r"\s+", text.strip())
        gaps_out = re.findall(r"\s+", out.strip())
        assert len(gaps_out) == len(gaps_in)
        assert sum(a != b for a, b in zip(gaps_in, gaps_out)) == _expected(fraction, len(gaps_in))


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("mode", ["zero_width", "fullwidth", "both"])
def test_unicode_edits_the_planned_number_of_words_and_normalize_undoes_it(fraction, mode):
    rng = np.random.default_rng(11)
    for i in range(20):
        text = _random_ascii(rng, int(rng.integers(1, 60)))
        out = Unicode(fraction=fraction, mode=mode).apply(text, seed=i).text
        words, new = text.split(), out.split()
        assert len(new) == len(words)
        changed = [(a, b) for a, b in zip(words, new) if a != b]
        assert len(changed) == _expected(fraction, len(words))
        for a, b in changed:
            if mode == "zero_width":
                [at] = [k for k, ch in enumerate(b) if ch in ZERO_WIDTH]
                assert b[:at] + b[at + 1:] == a
                assert 0 < at < len(a) or len(a) == 1 == at  # inside the word (after a one-letter word)
            elif mode == "fullwidth":
                assert b == "".join(chr(ord(c) + 0xFEE0) for c in a)
        assert normalize(out) == text


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_homoglyph_edits_the_planned_number_of_words_and_normalize_undoes_it(fraction):
    rng = np.random.default_rng(12)
    for i in range(20):
        text = _random_ascii(rng, int(rng.integers(1, 60)))
        out = Homoglyph(fraction=fraction).apply(text, seed=i).text
        words, new = text.split(), out.split()
        eligible = [w for w in words if any(ch in HOMOGLYPHS for ch in w)]
        changed = [(a, b) for a, b in zip(words, new) if a != b]
        assert len(changed) == min(len(eligible), _expected(fraction, len(words)))
        for a, b in changed:  # every letter with a lookalike replaced, nothing else
            assert len(a) == len(b)
            assert all((y in HOMOGLYPHS[x]) if x in HOMOGLYPHS else x == y for x, y in zip(a, b))
        assert normalize(out) == text
        assert normalize(out, steps=("homoglyphs",)) == text


def test_homoglyph_table_folds_back_and_survives_nfkc():
    import unicodedata

    for latin, glyphs in HOMOGLYPHS.items():
        assert latin.isascii() and latin.isalpha()
        for g in glyphs:
            assert not g.isascii() and FOLD[g] == latin and unicodedata.normalize("NFKC", g) == g
    assert len(FOLD) == sum(len(g) for g in HOMOGLYPHS.values())  # no lookalike stands for two letters


def test_normalize_steps():
    text = "\uff21b\u200bc \u0430"
    assert normalize(text) == "Abc a"
    assert normalize(text, steps=("nfkc",)) == "Ab\u200bc \u0430"
    assert normalize(text, steps=()) == text
    with pytest.raises(ValueError, match="unknown normalize step.*'nfc'.*allowed: nfkc, zero_width, homoglyphs"):
        normalize(text, steps=("nfc",))
    with pytest.raises(ValueError, match="twice"):
        normalize(text, steps=("nfkc", "nfkc"))


@pytest.mark.parametrize("words", [1, 3, 7, 1000])
def test_truncate_keeps_the_first_words(texts, words):
    for text in texts:
        out = Truncate(words=words).apply(text).text
        assert text.startswith(out)
        assert out.split() == text.split()[:words]
        assert out == text if words >= len(text.split()) else not out[-1].isspace()


def test_truncate_by_fraction_and_its_checks(texts):
    for text in texts:
        n = len(text.split())
        assert len(Truncate(fraction=0.3).apply(text).text.split()) == max(1, round(0.3 * n))
    for bad in ({}, {"words": 3, "fraction": 0.5}, {"words": 0}, {"fraction": 0.0}, {"fraction": 1.5}):
        with pytest.raises(ValueError, match="truncate"):
            Truncate(**bad)


# --- copy-paste ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_spans,span_words", [(1, 10), (3, 5), (4, 1)])
def test_copy_paste_pastes_runs_of_the_watermarked_text_into_the_human_text(texts, n_spans, span_words):
    for i, (wm, human) in enumerate(zip(texts, texts[1:] + texts[:1])):
        out = CopyPaste(n_spans=n_spans, span_words=span_words).apply(wm, human=human, seed=i)
        assert len(out.watermarked) == n_spans
        runs = [out.text[a:b] for a, b in out.watermarked]
        wm_words = wm.split()
        # Each run is span_words consecutive words of the watermarked text, taken verbatim; the
        # runs do not overlap and keep their order.
        starts = []
        for run in runs:
            assert run in wm and len(run.split()) == span_words
            found = [j for j in range(len(wm_words) - span_words + 1) if wm_words[j:j + span_words] == run.split()]
            assert found
            starts.append(found[0] if not starts else min(j for j in found if j >= starts[-1] + span_words))
        assert all(b >= a + span_words for a, b in zip(starts, starts[1:]))
        # Outside the spans: the human text's words, in order; spans are whole words.
        ends = [0] + [b for _, b in out.watermarked]
        rest = "".join(out.text[e:a] for e, (a, _) in zip(ends, out.watermarked)) + out.text[ends[-1]:]
        assert " ".join(rest.split()) == " ".join(human.split())
        for a, b in out.watermarked:
            assert (a == 0 or out.text[a - 1].isspace()) and (b == len(out.text) or out.text[b].isspace())
        assert len(out.text.split()) == len(human.split()) + n_spans * span_words


def test_copy_paste_places_runs_uniformly():
    # 5 words, two runs of 2: the placements are (0,2) (0,3) (1,3), each with probability 1/3.
    counts = Counter()
    for seed in range(600):
        out = CopyPaste(n_spans=2, span_words=2).apply("a b c d e", human="x y z", seed=seed)
        counts[tuple(out.text[a:b] for a, b in out.watermarked)] += 1
    assert set(counts) == {("a b", "c d"), ("a b", "d e"), ("b c", "d e")}
    assert all(150 < c < 250 for c in counts.values()), counts  # 200 expected, sd ~11.5


def test_copy_paste_shares_boundaries_only_when_the_human_text_is_too_short():
    for seed in range(20):
        out = CopyPaste(n_spans=3, span_words=1).apply("a b c d", human="h", seed=seed)
        runs = [out.text[x:y] for x, y in out.watermarked]
        assert len(out.text.split()) == 4 and out.text.split().count("h") == 1
        assert [w for w in out.text.split() if w != "h"] == runs and _is_subsequence(runs, "abcd")
        spread = CopyPaste(n_spans=2, span_words=1).apply("a b c d", human="h", seed=seed).text.split()
        assert spread[0] != "h" and spread[-1] != "h" and spread[1] == "h"  # 2 boundaries, 2 runs: h between


def test_copy_paste_with_an_empty_human_text_and_its_errors():
    out = CopyPaste(n_spans=2, span_words=1).apply("one two", human="", seed=0)
    assert out.text == "one two" and out.watermarked == ((0, 3), (4, 7))
    with pytest.raises(ValueError, match="human"):
        CopyPaste(n_spans=1, span_words=2).apply("one two")
    with pytest.raises(ValueError, match="has 3 words, fewer than the 4"):
        CopyPaste(n_spans=2, span_words=2).apply("one two three", human="h")
    with pytest.raises(ValueError, match="has 0 words"):
        CopyPaste(n_spans=1, span_words=1).apply("", human="h")
    with pytest.raises(ValueError, match="n_spans must be a positive integer"):
        CopyPaste(n_spans=0)


# --- determinism --------------------------------------------------------------------------

def _all_offline():
    return [Delete(0.3), Substitute(0.3), Whitespace(0.3), Unicode(0.3), Homoglyph(0.3), Truncate(fraction=0.5)]


def test_attacks_are_deterministic_per_text_whatever_the_batch(texts):
    for attack in _all_offline() + [CopyPaste(2, 5)]:
        human = texts[::-1] if attack.name == "copy_paste" else None
        whole = apply_attack(attack, texts, seed=5, human=human)
        order = [3, 0, 7]
        part = apply_attack(attack, [texts[i] for i in order], seed=5,
                            human=None if human is None else [human[i] for i in order])
        assert part == [whole[i] for i in order]
        assert all(isinstance(a, Attacked) for a in whole)


def test_different_seeds_give_different_attacks(texts):
    text = texts[0]
    for attack in [a for a in _all_offline() if a.name != "truncate"]:
        outs = {attack.apply(text, seed=s).text for s in range(4)}
        assert len(outs) == 4, attack.name
    outs = {CopyPaste(2, 5).apply(text, human=texts[1], seed=s).watermarked for s in range(4)}
    assert len(outs) == 4


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_a_text_without_words_is_left_unchanged(text):
    for attack in [NoAttack()] + _all_offline() + [Truncate(words=2)]:
        assert attack.apply(text, seed=0) == Attacked(text), attack.name

    class Spy:
        calls = 0

        def paraphrase(self, texts, *, seed):
            Spy.calls += 1
            return [t.upper() for t in texts]

    out = Paraphrase(Spy()).apply_batch([text, "a b"], seed=0)
    assert out == [Attacked(text), Attacked("A B")] and Spy.calls == 1
    assert Paraphrase(Spy()).apply(text) == Attacked(text) and Spy.calls == 1


def test_fraction_zero_is_the_identity(texts):
    for cls in (Delete, Substitute, Whitespace, Unicode, Homoglyph):
        assert cls(fraction=0.0).apply(texts[0], seed=1).text == texts[0]
        with pytest.raises(ValueError, match=f"{cls.name}: fraction must be in"):
            cls(fraction=1.2)


# --- paraphrase ---------------------------------------------------------------------------

def test_lm_paraphraser_generates_from_the_template_batched():
    pairs = {"The cat sat on the mat.": "A cat was sitting on a mat.",
             "Rain fell all night.": "It rained through the night."}
    # A fake model that has memorised prompt + paraphrase continues each prompt with its paraphrase.
    lm = FakeLM([DEFAULT_TEMPLATE.replace("{text}", t) + " " + p for t, p in pairs.items()])
    para = LMParaphraser(lm, max_new_tokens=60)
    texts = list(pairs)
    assert para.paraphrase(texts, seed=0) == list(pairs.values())
    assert para.paraphrase(texts[1:], seed=0) == [pairs[texts[1]]]
    attack = Paraphrase(para)
    assert apply_attack(attack, texts, seed=0) == [Attacked(p) for p in pairs.values()]
    assert attack.apply(texts[0]).text == pairs[texts[0]]
    assert describe(attack)["paraphraser"]["model"] == "fake"


def test_lm_paraphraser_checks():
    lm = FakeLM(max_length=64)
    with pytest.raises(ValueError, match=r"must contain \{text\}"):
        LMParaphraser(lm, template="Rewrite:")
    with pytest.raises(ValueError, match="text 1: .*exceeds the model's context of 64"):
        LMParaphraser(lm, template="{text}", max_new_tokens=40).paraphrase(["short", "x" * 30], seed=0)


    class Recording(FakeLM):
        def generate(self, prompts, config, **kw):
            self.calls = [*getattr(self, "calls", []), (prompts, config)]
            return super().generate(prompts, config, **kw)

    rec = Recording(max_length=64)
    sampled = LMParaphraser(rec, template="<{text}>", max_new_tokens=8,
                            config=GenerationConfig(do_sample=True, temperature=0.7, max_new_tokens=1))
    sampled.paraphrase(["ab", "c"], seed=3)
    [(prompts, config)] = rec.calls  # one batched call
    assert prompts == [[rec.bos_token_id, *b"<ab>"], [rec.bos_token_id, *b"<c>"]]
    assert (config.max_new_tokens, config.seed, config.do_sample, config.temperature) == (8, 3, True, 0.7)
    assert sampled.paraphrase([], seed=0) == [] and len(rec.calls) == 1
    with pytest.raises(ValueError, match="needs a paraphraser"):
        Paraphrase()


# --- specs --------------------------------------------------------------------------------

def test_parse_attacks_reads_names_parameters_and_types():
    got = parse_attacks("none, delete,substitute(fraction=0.3), copy_paste(n_spans=3, span_words=25),"
                        "truncate(words=10),unicode(mode=fullwidth,fraction=1)")
    assert [label for label, _ in got] == ["none", "delete", "substitute(fraction=0.3)",
                                           "copy_paste(n_spans=3,span_words=25)", "truncate(words=10)",
                                           "unicode(mode=fullwidth,fraction=1)"]
    attacks = [a for _, a in got]
    assert attacks == [NoAttack(), Delete(), Substitute(0.3), CopyPaste(3, 25), Truncate(words=10),
                       Unicode(fraction=1.0, mode="fullwidth")]
    assert type(attacks[3].n_spans) is int and type(attacks[2].fraction) is float
    assert parse_attacks(["delete(fraction=0.5)", "truncate(fraction=0.5,words=none)"])[1][1] == Truncate(fraction=0.5)


def test_parse_attacks_errors():
    with pytest.raises(ValueError, match=r"unknown watermark attack 'homoglyf'; did you mean 'homoglyph'\?"):
        parse_attacks("none,homoglyf")
    with pytest.raises(ValueError, match="attack 'delete' has no parameter 'frac'; allowed: fraction"):
        parse_attacks("delete(frac=0.1)")
    with pytest.raises(ValueError, match="parameter 'n_spans' must be an integer, got '2.5'"):
        parse_attacks("copy_paste(n_spans=2.5)")
    with pytest.raises(ValueError, match="parameter 'fraction' must be a number, got 'lots'"):
        parse_attacks("delete(fraction=lots)")
    with pytest.raises(ValueError, match=r"delete: fraction must be in \[0, 1\], got 3.0 \(in 'delete\(fraction=3\)'\)"):
        parse_attacks("delete(fraction=3)")
    with pytest.raises(ValueError, match="'pool' cannot be set in a spec"):
        parse_attacks("substitute(pool=a)")
    with pytest.raises(ValueError, match="write param=value"):
        parse_attacks("delete(0.3)")
    with pytest.raises(ValueError, match="given twice"):
        parse_attacks("delete(fraction=0.1,fraction=0.2)")
    with pytest.raises(ValueError, match="'delete' is the same attack as 'delete'"):
        parse_attacks("delete,none,delete")
    with pytest.raises(ValueError, match=r"'delete\(fraction=0.2\)' is the same attack as 'delete'"):
        parse_attacks("delete,delete(fraction=0.2)")
    for empty in ("", "  ", []):
        with pytest.raises(ValueError, match="no attack"):
            parse_attacks(empty)
    with pytest.raises(ValueError, match="empty attack"):
        parse_attacks("none,,delete")
    with pytest.raises(ValueError, match="unbalanced"):
        parse_attacks("delete(fraction=0.1")
    with pytest.raises(ValueError, match="paraphraser=LMParaphraser"):
        parse_attacks("none,paraphrase")


def test_parse_attacks_passes_the_paraphraser():
    lm = FakeLM()
    para = LMParaphraser(lm, max_new_tokens=4)
    [(label, attack)] = parse_attacks("paraphrase", paraphraser=para)
    assert label == "paraphrase" and attack == Paraphrase(para)


def test_describe_records_parameters():
    d = describe(Substitute(0.3, pool=["a", "b"]))
    assert d["name"] == "substitute" and d["fraction"] == 0.3 and d["pool"]["size"] == 2
    assert describe(CopyPaste()) == {"name": "copy_paste", "n_spans": 1, "span_words": 50}
