"""ACR: the objective against the scoring path, every success re-verified independently, and the
length search's bookkeeping."""

import numpy as np
import pytest
import torch

from lmaudit.data import Record
from lmaudit.memorization.acr import ACRConfig, continuation_targets, run_acr
from lmaudit.memorization.gcg import Objective
from lmaudit.models.base import GenerationConfig


def test_prompt_tokens_by_brute_force(tiny_lm):
    tok = tiny_lm.tokenizer
    ok = tiny_lm.prompt_tokens()
    assert len(ok) == tiny_lm.model.get_input_embeddings().num_embeddings
    for i in range(len(ok)):
        if i >= len(tok) or i in tok.all_special_ids:
            assert not ok[i]
        else:
            text = tok.decode([i])
            assert bool(ok[i]) == (tok(text, add_special_tokens=False)["input_ids"] == [i] and text != "")
    assert ok.sum() > len(tok) // 2


def test_prompt_tokens_skip_embedding_rows_past_the_tokenizer(make_tiny, tokenizer):
    from lmaudit.models.hf import HFModel

    lm = HFModel(make_tiny("llama", len(tokenizer) + 24), tokenizer)  # padded embedding matrix
    ok = lm.prompt_tokens()
    assert len(ok) == len(tokenizer) + 24 and not ok[len(tokenizer):].any()


def test_objective_matches_the_scoring_path(tiny_lm):
    rng = np.random.default_rng(0)
    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0].numpy()
    prompts = torch.as_tensor(rng.choice(allowed, (4, 5)))
    # The target is what the model emits after the first prompt: a teacher-forced match there.
    target = tiny_lm.generate([[tiny_lm.bos_token_id, *prompts[0].tolist()]],
                              GenerationConfig(max_new_tokens=6, stop_at_eos=False))[0]
    obj = Objective(tiny_lm, target, [tiny_lm.bos_token_id])
    loss, exact = obj.losses(prompts, batch=3)
    assert bool(exact[0])
    for p, l_, e in zip(prompts.tolist(), loss, exact):
        seq = [tiny_lm.bos_token_id, *p, *target]
        stats = tiny_lm.token_stats([seq], [1 + len(p)])[0]  # log-probs of the target tokens only
        assert float(l_) == pytest.approx(-float(np.mean(stats.logprob)), rel=1e-4)
        greedy = tiny_lm.generate([[tiny_lm.bos_token_id, *p]], GenerationConfig(max_new_tokens=6, stop_at_eos=False))[0]
        assert bool(e) == (greedy == target)


def test_one_hot_gradient_is_the_embedding_gradient_projected(tiny_lm):
    """d loss / d one_hot[i, v] = <d loss / d emb_i, W_v>: checked through a separate autograd path."""
    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0]
    target, prompt = allowed[:5].tolist(), allowed[10:14]
    obj = Objective(tiny_lm, target, [tiny_lm.bos_token_id])
    grad = obj.gradient(prompt)
    assert all(p.grad is None for p in tiny_lm.model.parameters())  # only the one-hot's gradient was taken
    W = tiny_lm.model.get_input_embeddings().weight
    ids = torch.tensor([[tiny_lm.bos_token_id, *prompt.tolist(), *target]])
    emb = W[ids].detach().requires_grad_(True)
    logits = tiny_lm.model(inputs_embeds=emb).logits[0, len(prompt) : len(prompt) + len(target)]
    (emb_grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, torch.tensor(target)), [emb])
    expected = emb_grad[0, 1 : 1 + len(prompt)] @ W.T
    assert torch.allclose(grad, expected, atol=1e-5)


def _verify_independently(lm, prompt_text, target_text):
    prompt = lm.encode([prompt_text])[0]
    target = lm.encode([target_text])[0]
    out = lm.generate([[lm.bos_token_id, *prompt]], GenerationConfig(max_new_tokens=len(target), stop_at_eos=False))[0]
    return out == target, len(prompt), len(target)


def test_every_reported_success_reproduces_the_target(tiny_lm):
    """Targets the model emits after a known 1-token prompt, so a 1-token answer exists; with
    top-k over the whole vocabulary and 10 x 128 candidates the search all but surely finds one.
    Whatever it reports is checked here by decoding, re-encoding and generating again, and the
    ACR recomputed."""
    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0].numpy()
    rng = np.random.default_rng(1)
    records = []
    for i in range(3):
        prompt = rng.choice(allowed, 1).tolist()
        gen = tiny_lm.generate([[tiny_lm.bos_token_id, *prompt]], GenerationConfig(max_new_tokens=4, stop_at_eos=False))[0]
        records.append(Record(id=i, text=tiny_lm.decode(gen), source="t", line=i + 1,
                              meta={"group": "g", "duplication": [32, 4, 1][i]}))
    cfg = ACRConfig(steps=10, n_candidates=128, top_k=len(allowed), max_prompt_tokens=1, seed=0)
    results, rows = run_acr(tiny_lm, records, config=cfg)
    assert len(rows) == 3 and results["n"] == 3 and results["compute"]["steps"] == sum(r["steps"] for r in rows)
    for rec, row in zip(records, rows):
        assert row["steps"] == sum(a["steps"] for a in row["lengths"]) and row["lengths"][0]["n"] == 1
        if row["success"]:
            ok, n_prompt, n_target = _verify_independently(tiny_lm, row["prompt"], rec.text)
            assert ok and n_prompt == row["prompt_tokens"] == 1
            assert row["acr"] == pytest.approx(n_target / n_prompt) and row["memorized"] == (row["acr"] > 1)
        else:
            assert row["acr"] is None and not row["memorized"] and row["prompt"] is None
    assert any(r["success"] for r in rows), "GCG found no prompt for any of the easy targets"
    assert results["n_success"] == sum(r["success"] for r in rows)
    assert results["by_group"]["g"]["n"] == 3
    assert list(results["by_duplication"]) == ["1", "4", "32"]  # numeric order, not "1", "32", "4"


def test_a_target_the_model_cannot_be_led_to_is_reported_without_an_acr(tiny_lm):
    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0].numpy()
    # 12 random tokens after a 1-token prompt: a random tiny model will not emit them.
    text = tiny_lm.decode(np.random.default_rng(2).choice(allowed, 12).tolist())
    results, rows = run_acr(tiny_lm, [Record(id="x", text=text, source="t", line=1)],
                            config=ACRConfig(steps=5, n_candidates=8, top_k=8, max_prompt_tokens=1))
    assert rows[0]["success"] is False and rows[0]["acr"] is None and rows[0]["lengths"] == [
        {"n": 1, "steps": 5, "success": False, "best_loss": rows[0]["lengths"][0]["best_loss"]}]
    assert results["memorized_rate"] == 0.0 and results["acr_median"] is None and results["n_success"] == 0


def test_start_short_grows_and_patience_ends_stalled_lengths(tiny_lm):
    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0].numpy()
    text = tiny_lm.decode(np.random.default_rng(3).choice(allowed, 8).tolist())
    cfg = ACRConfig(start_tokens=2, grow_tokens=2, steps=40, steps_growth=1.5, n_candidates=4, top_k=4,
                    max_prompt_tokens=6, patience=2)
    row = run_acr(tiny_lm, [Record(id="x", text=text, source="t", line=1)], config=cfg)[1][0]
    assert not row["success"]  # 8 random tokens: out of reach of a random tiny model
    # Lengths 2, 4, 6 with 40, 60, 90 steps at most; with patience 2 on 4 candidates a length stalls early.
    assert [a["n"] for a in row["lengths"]] == [2, 4, 6]
    assert all(a["steps"] <= cap for a, cap in zip(row["lengths"], [40, 60, 90]))
    assert any(a["steps"] < cap for a, cap in zip(row["lengths"], [40, 60, 90]))


def test_the_default_search_grows_from_five_and_shrink_only_starts_at_the_longest(tiny_lm):
    """The paper's order is the default (chosen in benchmarks/bench_acr.py: it finds shorter
    prompts); start_tokens=None starts at target − 1 and gives an unreachable target up there."""
    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0].numpy()
    text = tiny_lm.decode(np.random.default_rng(5).choice(allowed, 12).tolist())
    rec = [Record(id="x", text=text, source="t", line=1)]
    n_target = len(tiny_lm.encode([text])[0])
    budget = dict(steps=3, n_candidates=4, top_k=4)
    grown = run_acr(tiny_lm, rec, config=ACRConfig(**budget))[1][0]
    assert not grown["success"]
    lengths = [5]
    while lengths[-1] < n_target - 1:
        lengths.append(min(lengths[-1] + 5, n_target - 1))
    assert [a["n"] for a in grown["lengths"]] == lengths
    assert [a["steps"] for a in grown["lengths"]] == [3, 4, 5, 6, 7][: len(lengths)]  # 1.2× per length, rounded
    shrunk = run_acr(tiny_lm, rec, config=ACRConfig(**budget, start_tokens=None))[1][0]
    assert [a["n"] for a in shrunk["lengths"]] == [n_target - 1]


def test_shrinking_walks_down_from_the_longest_prompt(tiny_lm):
    """A target the model emits after one known token: starting at 3 tokens, the search must walk
    down (3, then 2, then 1 or a failure) and whatever it reports must reproduce the target."""
    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0].numpy()
    rng = np.random.default_rng(4)
    records = []
    for i in range(3):
        gen = tiny_lm.generate([[tiny_lm.bos_token_id, int(rng.choice(allowed))]],
                               GenerationConfig(max_new_tokens=5, stop_at_eos=False))[0]
        records.append(Record(id=i, text=tiny_lm.decode(gen), source="t", line=i + 1))
    cfg = ACRConfig(steps=10, n_candidates=128, top_k=len(allowed), max_prompt_tokens=3, seed=0, start_tokens=None)
    rows = run_acr(tiny_lm, records, config=cfg)[1]
    assert any(r["success"] and r["prompt_tokens"] < 3 for r in rows), "no target was found and then shortened"
    for rec, row in zip(records, rows):
        ns = [a["n"] for a in row["lengths"]]
        assert ns[0] == 3 and all(b < a for a, b in zip(ns, ns[1:]))  # every later length is shorter
        assert all(a["success"] for a in row["lengths"][:-1])  # only the last length may fail
        if row["success"]:
            ok, n_prompt, _ = _verify_independently(tiny_lm, row["prompt"], rec.text)
            assert ok and n_prompt == row["prompt_tokens"] <= 3


def test_errors_and_budget(tiny_lm):
    long_text = " ".join(["word"] * 400)
    results, rows = run_acr(tiny_lm, [Record(id="long", text=long_text, source="t", line=1)],
                            config=ACRConfig(steps=1))
    assert "exceed the context length" in rows[0]["error"] and results["n"] == 0 and results["n_errors"] == 1
    with pytest.raises(ValueError, match="at least 1"):
        ACRConfig(top_k=0)
    rows = run_acr(tiny_lm, [Record(id="t", text="a b c d e f g h", source="t", line=1)],
                   config=ACRConfig(steps=10_000, n_candidates=4, top_k=4, max_seconds=0.5))[1]
    # Stopped by the safety net with no verdict: inconclusive, never "not memorized".
    assert rows[0]["budget_exhausted"] and rows[0]["seconds"] < 30
    assert rows[0]["status"] == "inconclusive" and rows[0]["memorized"] is None
    rows = run_acr(tiny_lm, [Record(id="t", text="a b c d e f g h", source="t", line=1)],
                   config=ACRConfig(steps=2, n_candidates=4, top_k=4, max_prompt_tokens=2, max_seconds=600))[1]
    assert not rows[0]["budget_exhausted"]  # finished on its own well before the deadline
    for bad in (dict(patience=0), dict(max_prompt_tokens=0), dict(start_tokens=0), dict(max_seconds=0)):
        with pytest.raises(ValueError):
            ACRConfig(**bad)


def test_continuation_targets_cut_documents(tiny_lm, corpus_texts):
    recs = [Record(id=i, text=t, source="d", line=i + 1, meta={"duplication": 4}) for i, t in enumerate(corpus_texts[:6])]
    recs.append(Record(id="short", text="too short", source="d", line=7))
    targets = continuation_targets(tiny_lm, recs, prefix_tokens=10, lengths=(5, 7), n=4, group="member", seed=0)
    assert len(targets) == 4 and "short" not in [t.id for t in targets]
    for t in targets:
        ids = tiny_lm.encode([corpus_texts[t.id]])[0]
        L = len(tiny_lm.encode([t.text])[0])
        assert 5 <= L <= 7 + 1  # decoded then re-encoded; a split word may cost a token
        assert t.text == tiny_lm.decode(ids[10 : 10 + _cut_length(tiny_lm, ids, t.text)])
        assert t.meta == {"doc_id": t.id, "group": "member", "duplication": 4}


def _cut_length(lm, ids, text):
    return next(L for L in range(5, 8) if lm.decode(ids[10 : 10 + L]) == text)


def test_memorized_rate_of_all_targets_has_a_lower_bound_below_one():
    """3 of 3 memorized is not certainty: Clopper-Pearson's lower end at n/n is 0.025^(1/n)."""
    from lmaudit.memorization.acr import _summary

    rows = [{"id": i, "status": "memorized", "memorized": True, "acr": 2.0, "seconds": 1.0} for i in range(3)]
    inconclusive = {"id": 3, "status": "inconclusive", "memorized": None, "acr": None, "seconds": 600.0}
    out = _summary([*rows, inconclusive])  # an inconclusive target is left out of the rate, and counted
    assert out["n_inconclusive"] == 1
    # A prompt found before the cap stopped the search is a witness even without a verdict.
    witness = {**inconclusive, "acr": 0.9}
    assert _summary([witness]) == {"n": 0, "n_inconclusive": 1, "memorized_rate": None, "memorized_rate_ci": None,
                                   "n_success": 1, "acr_median": 0.9, "seconds_mean": 600.0}
    assert _summary([witness, {"id": 5, "status": "error", "error": "empty target"}])["n_success"] == 1
    assert out["n"] == 3 and out["memorized_rate"] == 1.0
    assert out["memorized_rate_ci"] == pytest.approx([0.025 ** (1 / 3), 1.0], abs=1e-9)


def test_a_killed_run_resumes_from_the_cache_with_the_rows_of_an_uninterrupted_run(tiny_lm, tmp_path, monkeypatch):
    """Killed after 2 searched targets, a re-run searches only the other 2 (the error row is never
    searched) and writes the rows an uninterrupted run writes, timing aside."""
    import json

    from lmaudit.memorization import acr

    allowed = torch.nonzero(tiny_lm.prompt_tokens())[:, 0].numpy()
    rng = np.random.default_rng(5)
    texts = [tiny_lm.decode(rng.choice(allowed, 4).tolist()) for _ in range(4)]
    texts.insert(2, " ".join(["word"] * 600))  # longer than the context: an error row
    records = [Record(id=i, text=t, source="t", line=i + 1) for i, t in enumerate(texts)]
    cfg = ACRConfig(steps=3, n_candidates=8, top_k=16, max_prompt_tokens=2)
    full = acr.acr_to_dir(tiny_lm, records, tmp_path / "full", config=cfg)

    searched, kill_after = [], [2]
    original = acr.LengthSearch.run

    def run(self):
        if kill_after and len(searched) == kill_after[0]:
            raise RuntimeError("killed")
        searched.append(1)
        return original(self)

    monkeypatch.setattr(acr.LengthSearch, "run", run)
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"complete": True}))  # an earlier run's
    with pytest.raises(RuntimeError, match="killed"):
        acr.acr_to_dir(tiny_lm, records, out, config=cfg, cache_path=out / "cache.sqlite")
    assert not (out / "results.json").exists()  # nothing complete-looking is left
    with acr.ACRCache(out / "cache.sqlite") as cache:
        assert len(cache) == 2  # each target was saved as it finished

    kill_after.clear()
    searched.clear()
    written = acr.acr_to_dir(tiny_lm, records, out, config=cfg, cache_path=out / "cache.sqlite")
    assert len(searched) == 2 and written["n_cached"] == 2 and written["summary"]["n_cached"] == 2
    assert full["n_cached"] == 0 and written["n_errors"] == full["n_errors"] == 1

    def rows(folder):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (folder / "samples.jsonl").read_text().splitlines()]

    assert rows(out) == rows(tmp_path / "full")
    assert {k: v for k, v in written["compute"].items() if k != "seconds"} == {
        k: v for k, v in full["compute"].items() if k != "seconds"}

    searched.clear()  # the same command again: everything from the cache
    assert acr.acr_to_dir(tiny_lm, records, out, config=cfg, cache_path=out / "cache.sqlite")["n_cached"] == 4
    assert not searched
    # A changed option is a new key: nothing reused.
    changed = acr.acr_to_dir(tiny_lm, records, out, config=ACRConfig(steps=4, n_candidates=8, top_k=16,
                                                                     max_prompt_tokens=2),
                             cache_path=out / "cache.sqlite")
    assert changed["n_cached"] == 0 and len(searched) == 4


def test_the_cache_key_covers_everything_that_decides_a_result():
    from lmaudit.memorization.acr import target_key

    base = dict(model_fp="m", tokenizer_fp="t", target=[5, 6, 7], prefix=[1], config=ACRConfig(), seed=0)
    changes = [dict(model_fp="m2"), dict(tokenizer_fp="t2"), dict(target=[5, 6, 8]), dict(prefix=[]),
               dict(config=ACRConfig(top_k=249)), dict(config=ACRConfig(seed=1)), dict(seed=1)]
    keys = {target_key(**base), *(target_key(**{**base, **c}) for c in changes)}
    assert len(keys) == 1 + len(changes)
    assert target_key(**base) == target_key(**dict(base))


def test_a_target_stopped_by_the_safety_net_is_not_saved(tiny_lm, tmp_path):
    from lmaudit.memorization.acr import ACRCache

    with ACRCache(tmp_path / "c.sqlite") as cache:
        results, rows = run_acr(tiny_lm, [Record(id="t", text="a b c d e f g h", source="t", line=1)], cache=cache,
                                config=ACRConfig(steps=10_000, n_candidates=4, top_k=4, max_seconds=0.3))
        assert rows[0]["budget_exhausted"] and len(cache) == 0 and results["n_cached"] == 0


def test_cli_counts_error_rows_exits_1_and_resumes_from_its_cache(tokenizer, make_tiny, tmp_path):
    """An error row is counted on the terminal (also with --quiet) and gives exit status 1 with
    results.json written; without one the status is 0; a re-run is served from OUT/cache.sqlite,
    and --no-cache neither reads nor writes it."""
    import json

    from typer.testing import CliRunner

    from lmaudit.cli import app

    make_tiny("gpt2", len(tokenizer)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    rows = [{"id": "a", "text": "born in"}, {"id": "long", "text": " ".join(["word"] * 600)}, {"id": "empty", "text": ""}]
    data = tmp_path / "targets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["acr", "--model", str(tmp_path / "model"), "--device", "cpu", "--steps", "2", "--candidates", "4",
            "--top-k", "4", "--max-prompt-tokens", "1"]

    def run(*extra, out="run", data=data):
        return CliRunner().invoke(app, ["--quiet", *args, "--data", str(data), "--out", str(tmp_path / out), *extra])

    res = run()
    assert res.exit_code == 1, res.output
    assert "2 of 3 targets not searched" in " ".join(res.output.split())
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["complete"] and results["n_errors"] == 2 and results["n_cached"] == 0
    assert (tmp_path / "run/cache.sqlite").exists()
    res = run()
    assert res.exit_code == 1 and json.loads((tmp_path / "run/results.json").read_text())["n_cached"] == 1

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(rows[0]) + "\n")
    res = run("--no-cache", out="clean", data=good)
    assert res.exit_code == 0, res.output
    assert "not searched" not in res.output and json.loads(res.output)["n_errors"] == 0
    assert not (tmp_path / "clean/cache.sqlite").exists()
    res = run("--cache", str(tmp_path / "elsewhere.sqlite"), out="clean", data=good)
    assert res.exit_code == 0 and (tmp_path / "elsewhere.sqlite").exists()
    # --search picks the order (provenance records it); an unknown one fails before any model loads.
    res = run("--no-cache", "--search", "shrink", out="shrink", data=good)
    assert res.exit_code == 0 and json.loads((tmp_path / "shrink/results.json").read_text())[
        "provenance"]["config"]["start_tokens"] is None
    assert json.loads((tmp_path / "clean/results.json").read_text())["provenance"]["config"]["start_tokens"] == 5
    res = CliRunner().invoke(app, ["--quiet", "acr", "--model", str(tmp_path / "no-such-model"), "--data", str(good),
                                   "--out", str(tmp_path / "bad"), "--search", "longest-first"])
    assert res.exit_code == 2 and "--search must be grow or shrink" in res.output
    assert not (tmp_path / "bad/results.json").exists()
