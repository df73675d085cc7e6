"""Golden values: each copying metric reproduces the peer definition it names, on hand-checked pairs.

Every expected number is derived by hand in the comments. Where Google's ``rouge_score``
(the library CopyBench and MUSE call) is installed, it serves as an independent reference
too; lmaudit itself never imports it.
"""

import pytest

from lmaudit.memorization.copying import (CopyingConfig, copying_metrics, cotaeval_chars, cotaeval_words,
                                          literal_rouge_l_f1, rouge_l, shingle_jaccard)
from lmaudit.memorization.copying_run import run_copying

# --- CopyBench literal copy: ROUGE-L F1, Porter-stemmed, first 50 ROUGE tokens, >= 0.8 -------

# Stemming decides. ROUGE tokens of both texts (12 each), stemmed:
#   the farmer walk slowli past the old mill and the quiet barn   (identical on both sides)
# so stemmed LCS = 12, F1 = 1.0: a literal copy. Unstemmed, farmers/farmer, walked/walks,
# mills/mill and barns/barn differ: LCS = 8 of 12 each side, F1 = 8/12 = 0.667: not a copy.
STEM_REF = "The farmers walked slowly past the old mills and the quiet barns."
STEM_OUT = "the farmer walks slowly past the old mill and the quiet barn"

# 50 ROUGE tokens, not 50 whitespace words, decide. Both texts open with the same 25
# hyphenated words ("north0-east0" ...), which are 50 ROUGE tokens, then 25 words that share
# nothing. CopyBench's first 50 ROUGE tokens are the shared opening: F1 = 1.0, a copy. The
# first 50 whitespace words hold 75 ROUGE tokens of which 50 are shared on each side:
# P = R = 50/75, F1 = 0.667, not a copy (lmaudit's definition before this change).
SHARED = " ".join(f"north{i}-east{i}" for i in range(25))
WORDS_REF = SHARED + " " + " ".join(f"alpha{i}" for i in range(25))
WORDS_OUT = SHARED + " " + " ".join(f"omega{i}" for i in range(25))


def _first_50_words_f1(out, ref):
    return rouge_l(" ".join(out.split()[:50]), " ".join(ref.split()[:50]))[2]


def test_copybench_literal_copy_is_stemmed():
    assert literal_rouge_l_f1(STEM_OUT, STEM_REF) == 1.0
    assert literal_rouge_l_f1(STEM_OUT, STEM_REF, stem=False) == pytest.approx(8 / 12)
    assert copying_metrics(STEM_OUT, STEM_REF)["literal_copy"] is True
    assert copying_metrics(STEM_OUT, STEM_REF, CopyingConfig(literal_stem=False))["literal_copy"] is False
    # The whole-text ROUGE stays unstemmed (MUSE, CoTaEval) in the same call.
    assert copying_metrics(STEM_OUT, STEM_REF)["rouge_l_f1"] == pytest.approx(8 / 12)


def test_copybench_literal_copy_takes_the_first_50_rouge_tokens():
    assert literal_rouge_l_f1(WORDS_OUT, WORDS_REF) == 1.0
    assert copying_metrics(WORDS_OUT, WORDS_REF)["literal_copy"] is True
    assert _first_50_words_f1(WORDS_OUT, WORDS_REF) == pytest.approx(50 / 75)  # the old definition: no copy


def test_copybench_against_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for out, ref in ((STEM_OUT, STEM_REF), (WORDS_OUT, WORDS_REF), ("It's a dog's life!", "its a dogs life")):
        # CopyBench (scripts/eval_literal_copying.py): tokenize both, keep 50 tokens, LCS F1.
        ref_t, out_t = scorer._tokenizer.tokenize(ref)[:50], scorer._tokenizer.tokenize(out)[:50]
        assert literal_rouge_l_f1(out, ref) == pytest.approx(rouge_scorer._score_lcs(ref_t, out_t).fmeasure)


# --- MUSE VerbMem: 100 × mean ROUGE-L F1, unstemmed (metrics/logger.py: use_stemmer=False) -----

# (output, ground truth) and each ROUGE-L F1 by hand:
#   "the cat lay on the mat" / "the cat sat on the mat": LCS 5 of 6 and 6 tokens, F1 = 5/6
#   "she walks home" / "she walked home": unstemmed LCS 2 of 3 each, F1 = 2/3 (stemmed: 1.0)
#   "Same words, same order." / "same words same order": punctuation and case vanish, F1 = 1
# VerbMem = 100 × (5/6 + 4/6 + 6/6) / 3 = 100 × 15/18 = 83.33.
VERBMEM_PAIRS = [("the cat lay on the mat", "the cat sat on the mat"), ("she walks home", "she walked home"),
                 ("Same words, same order.", "same words same order")]


def _records(pairs):
    from lmaudit.data import Record

    outs = [Record(id=i, text=o, source="outs.jsonl", line=i + 1) for i, (o, _) in enumerate(pairs)]
    refs = [Record(id=i, text=r, source="refs.jsonl", line=i + 1) for i, (_, r) in enumerate(pairs)]
    return outs, refs


def test_muse_verbmem():
    results, rows = run_copying(*_records(VERBMEM_PAIRS))
    assert [r["rouge_l_f1"] for r in rows] == pytest.approx([5 / 6, 2 / 3, 1.0])
    assert results["verbmem"] == pytest.approx(100 * 15 / 18)
    lo, hi = results["verbmem_ci"]
    # A percentile interval of the mean: within the smallest and largest per-pair value.
    assert 100 * 2 / 3 - 1e-9 <= lo <= results["verbmem"] <= hi <= 100.0
    assert results["means"]["rouge_l_f1_ci"] == pytest.approx([lo / 100, hi / 100])
    assert "MUSE" in results["definitions"]["rouge"] and "CopyBench" in results["definitions"]["literal_copy"]


def test_muse_against_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for out, gt in VERBMEM_PAIRS + [(STEM_OUT, STEM_REF)]:
        assert rouge_l(out, gt)[2] == pytest.approx(scorer.score(gt, out)["rougeL"].fmeasure)  # score(target, pred)


# --- CoTaEval LCS / ACS under its normalisation (process.py, lib/utils.py) ---------------------

MOBY_REF = "Call me Ishmael. Some years ago -- never mind how long precisely -- I thought I would sail about."
MOBY_OUT = "call me ishmael some years ago, never mind how long! I thought I'd sail"
COTAEVAL = CopyingConfig(substring_normalize="cotaeval")


def test_cotaeval_normalisation():
    # Lowercased, ASCII punctuation deleted (inside words too), "--" gone as a word.
    assert cotaeval_words(MOBY_OUT)[-4:] == ["i", "thought", "id", "sail"]
    assert cotaeval_words(MOBY_REF)[4:8] == ["years", "ago", "never", "mind"]
    assert cotaeval_chars("Ago -- never\tMind") == "agonevermind"


def test_cotaeval_lcs_and_acs():
    # Words: out = call me ishmael some years ago never mind how long | i thought | id | sail;
    # ref = call me ishmael some years ago never mind how long precisely i thought i would sail
    # about. Common runs: the first 10 words, "i thought" (2 < 3: dropped), "sail" (1: dropped).
    # LCS(word) = 10, ACS(word) = 10. Characters, whitespace and punctuation deleted: the
    # common opening "callmeishmaelsomeyearsagonevermindhowlong" is 4+2+7+4+5+3+5+4+3+4 = 41;
    # it ends where ref goes on "precisely" and out "ithought", and nothing longer is shared
    # ("ithoughti" is 9). LCS(character) = 41. CoTaEval's greedy keeps the same runs here.
    m = copying_metrics(MOBY_OUT, MOBY_REF, COTAEVAL)
    assert (m["lcs_chars"], m["lcs_words"], m["acs_words"]) == (41, 10, 10)
    # On the raw text the same pair shares far less: "Call"/"call", "long!"/"long" differ;
    # the longest word run is "never mind how" (3) and character run " never mind how long" (20).
    raw = copying_metrics(MOBY_OUT, MOBY_REF)
    assert (raw["lcs_chars"], raw["lcs_words"], raw["acs_words"]) == (20, 3, 3)
    # The spans to highlight are always on the raw output: " never mind how long" follows the
    # 31 characters of "call me ishmael some years ago,".
    assert m["verbatim_spans"] == raw["verbatim_spans"] == [[31, 51]]


def test_cotaeval_drops_runs_under_three_words_from_lcs_words():
    # Longest common word run "the harbor" (2 words): CoTaEval's min_tokens = 3 keeps none.
    assert copying_metrics("At the harbor, Ada.", "the harbor was cold", COTAEVAL)["lcs_words"] == 0
    assert copying_metrics("At the harbor Ada.", "the harbor was cold")["lcs_words"] == 2


def test_exact_where_cotaeval_greedy_undercounts():
    # "a b c d e f g" against "a b c x b c d e f g": common runs "a b c" (output words 0-2)
    # and "b c d e f g" (1-6). CoTaEval keeps runs by start, so it keeps "a b c" and drops
    # the overlapping longer one: it reports LCS(word) 3, ACS(word) 3. The true longest run
    # is 6 words, and the runs cover all 7 output words.
    m = copying_metrics("a b c d e f g", "a b c x b c d e f g", COTAEVAL)
    assert (m["lcs_words"], m["acs_words"]) == (6, 7)


# --- Levenshtein (CoTaEval reports the raw distance) and exact Jaccard --------------------------

def test_levenshtein_distance_and_exact_jaccard():
    # kitten → sitting: k→s, e→i, +g: distance 3; similarity 1 − 3/7.
    m = copying_metrics("kitten", "sitting")
    assert m["levenshtein_distance"] == 3 and m["levenshtein_sim"] == pytest.approx(4 / 7)
    # 3-shingles: kitten {kit, itt, tte, ten}, sitting {sit, itt, tti, tin, ing}: 1 shared of 8.
    assert m["shingle_jaccard"] == pytest.approx(1 / 8) == shingle_jaccard("kitten", "sitting")
    assert copying_metrics("", "")["shingle_jaccard"] == 1.0 and copying_metrics("", "")["levenshtein_sim"] == 1.0
