"""Extraction: match metrics by hand, greedy continuation against a hand-written argmax loop."""

import numpy as np
import pytest
import torch

from lmaudit.data import Record
from lmaudit.memorization.extraction import ExtractionConfig, match_metrics, run_extraction


def test_match_metrics_by_hand():
    assert match_metrics([1, 2, 3], [1, 2, 3]) == {"exact_match": True, "token_match": 1.0, "longest_match_tokens": 3}
    # Shifted by one: no position matches, but a run of 2 target tokens appears verbatim.
    assert match_metrics([9, 1, 2], [1, 2, 3]) == {"exact_match": False, "token_match": 0.0, "longest_match_tokens": 2}


def _argmax_continuation(lm, prompt, n):
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(lm.model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(prompt) :]


def test_greedy_extraction_matches_an_argmax_loop(tiny_lm, corpus_texts):
    recs = [Record(id=i, text=t, source="t", line=i + 1, meta={"duplication": 1 + i % 2}) for i, t in enumerate(corpus_texts[:4])]
    recs.append(Record(id=99, text="too short", source="t", line=5))
    cfg = ExtractionConfig(prefix_tokens=8, suffix_tokens=6, n_bootstrap=50)
    results, rows = run_extraction(tiny_lm, recs, config=cfg, batch_size=3)
    for rec, row in zip(recs[:4], rows):
        ids = tiny_lm.encode([rec.text])[0]
        gen = _argmax_continuation(tiny_lm, [tiny_lm.bos_token_id, *ids[:8]], 6)
        assert row["generated"] == tiny_lm.decode(gen)
        assert row["token_match"] == pytest.approx(np.mean([g == t for g, t in zip(gen, ids[8:14])]))
    assert "fewer than prefix + suffix" in rows[4]["error"] and results["n_errors"] == 1 and results["n"] == 4
    assert list(results["by_duplication"]) == ["1", "2"] and results["by_duplication"]["1"]["n"] == 2


def test_sampling_at_a_tiny_temperature_is_greedy(tiny_lm, corpus_texts):
    recs = [Record(id=i, text=t, source="t", line=i + 1) for i, t in enumerate(corpus_texts[:3])]
    greedy = run_extraction(tiny_lm, recs, config=ExtractionConfig(prefix_tokens=8, suffix_tokens=5, n_bootstrap=20))[1]
    sampled = run_extraction(tiny_lm, recs, config=ExtractionConfig(prefix_tokens=8, suffix_tokens=5, samples=3,
                                                                    temperature=1e-4, n_bootstrap=20))[1]
    assert [r["generated"] for r in sampled] == [r["generated"] for r in greedy]
    assert all(r["generated_loss"] >= 0 for r in sampled)


def test_extraction_refuses_a_request_longer_than_the_context(tiny_lm, corpus_texts):
    with pytest.raises(ValueError, match="exceed the model's context"):
        run_extraction(tiny_lm, [Record(id=1, text=corpus_texts[0], source="t", line=1)],
                       config=ExtractionConfig(prefix_tokens=400, suffix_tokens=200))


def test_an_extraction_rate_of_zero_has_a_positive_upper_bound(tiny_lm, corpus_texts):
    """0 of n exact matches is not certainty of 0: the interval is Clopper-Pearson's, whose upper
    end at 0/n is 1 − 0.025^(1/n) (a percentile bootstrap gives the point (0, 0))."""
    recs = [Record(id=i, text=t, source="t", line=i + 1) for i, t in enumerate(corpus_texts[:5])]
    results, rows = run_extraction(tiny_lm, recs, config=ExtractionConfig(prefix_tokens=8, suffix_tokens=6, n_bootstrap=50))
    assert results["n"] == 5 and not any(r["exact_match"] for r in rows)  # a random model copies nothing
    assert results["exact_match_rate_ci"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 5)], abs=1e-9)


def test_bos_takes_the_scoring_policy_values(tiny_lm, corpus_texts):
    """bos="none" (ScoringPolicy's spelling) puts nothing before the prefix; a bool is refused."""
    recs = [Record(id=0, text=corpus_texts[0], source="t", line=1)]
    rows = run_extraction(tiny_lm, recs, config=ExtractionConfig(prefix_tokens=8, suffix_tokens=5, bos="none"))[1]
    ids = tiny_lm.encode([corpus_texts[0]])[0]
    assert rows[0]["generated"] == tiny_lm.decode(_argmax_continuation(tiny_lm, ids[:8], 5))
    with pytest.raises(ValueError, match="bos must be 'prepend' or 'none'"):
        ExtractionConfig(bos=True)
