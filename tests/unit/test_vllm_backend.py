"""The vLLM backend (lmaudit.models.vllm) on the CPU, without vLLM: a small fake ``vllm`` module
in ``sys.modules`` mimics the parts lmaudit calls (``LLM``, ``SamplingParams``, ``TokensPrompt``,
``RequestOutput`` with ``prompt_logprobs`` and ``outputs[0].token_ids``). Its "model" is
:class:`~lmaudit.models.fake.FakeLM`'s logits, so every expected value is computed here by
hand from those logits. What a real engine does is checked on a GPU in tests/gpu/test_vllm.py.
"""

import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pytest

from lmaudit.data import Record
from lmaudit.models.base import CapabilityError, GenerationConfig, has_capability
from lmaudit.models.fake import FakeLM

MEMBERS = [f"Member {i} was born in {1900 + 7 * i} in Port {chr(65 + i)}ville and kept {i + 2} goats."
           for i in range(10)]
NONMEMBERS = [f"Outsider {i} moved in {1950 + 3 * i} to Lake {chr(75 + i)}ham with {i + 3} dogs."
              for i in range(10)]


# ------------------------------------------------------------------------------ the fake vllm
@dataclass
class Logprob:
    logprob: float
    rank: int


@dataclass
class CompletionOutput:
    token_ids: list
    logprobs: list | None = None


@dataclass
class RequestOutput:
    prompt_token_ids: list
    prompt_logprobs: list | None
    outputs: list


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __getattr__(self, name):
        defaults = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": None, "max_tokens": 16, "ignore_eos": False,
                    "stop_token_ids": None, "prompt_logprobs": None, "logprob_token_ids": None}
        return self.kwargs.get(name, defaults.get(name))


def TokensPrompt(prompt_token_ids):  # noqa: N802 - vLLM's name (a TypedDict)
    return {"prompt_token_ids": prompt_token_ids}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    return z - z.max() - np.log(np.exp(z - z.max()).sum())


@dataclass
class FakeLLM:
    """An engine over FakeLM's logits: prompt log-probabilities as vLLM gives them (None first,
    then {actual token, top-1 token} per position), the raw log-probabilities of the
    ``logprob_token_ids`` (and the sampled token) at each generated step, and greedy / seeded
    sampled generation that honours max_tokens, stop_token_ids and ignore_eos as vLLM does."""

    inner: FakeLM = field(default_factory=lambda: FakeLM(MEMBERS))
    calls: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)

    def generate(self, prompts, params, *, use_tqdm=True):
        self.calls.append((prompts, params))
        many = params if isinstance(params, list) else [params] * len(prompts)
        return [self._one(p["prompt_token_ids"], sp) for p, sp in zip(prompts, many, strict=True)]

    def _one(self, ids, sp):
        plp = None
        if sp.prompt_logprobs is not None:
            plp = [None]
            for t in range(1, len(ids)):
                lp = _log_softmax(self.inner.logits(ids[:t]))
                top = int(np.argmax(lp))
                entry = {top: Logprob(float(lp[top]), 1)}
                entry[ids[t]] = Logprob(float(lp[ids[t]]), int((lp > lp[ids[t]]).sum()) + 1)
                plp.append(entry)
        rng = np.random.default_rng(sp.seed)
        seq, new, steps = list(ids), [], []
        for _ in range(sp.max_tokens):
            z = self.inner.logits(seq)
            tok = int(np.argmax(z)) if sp.temperature == 0 else int(rng.choice(len(z), p=np.exp(_log_softmax(z / sp.temperature))))
            lp = _log_softmax(z)
            steps.append({t: Logprob(float(lp[t]), 0) for t in [*(sp.logprob_token_ids or []), tok]})
            seq.append(tok)
            new.append(tok)
            if tok in (sp.stop_token_ids or ()) or (not sp.ignore_eos and tok == self.inner.eos_token_id):
                break
        return RequestOutput(list(ids), plp, [CompletionOutput(new, steps if sp.logprob_token_ids else None)])


@pytest.fixture
def fake_vllm(monkeypatch):
    """A fake ``vllm`` module; ``fake_vllm.engines`` holds every LLM it built."""
    module = types.ModuleType("vllm")
    module.engines = []

    def LLM(**kwargs):  # noqa: N802
        engine = FakeLLM(kwargs=kwargs)
        module.engines.append(engine)
        return engine

    module.LLM, module.SamplingParams, module.TokensPrompt = LLM, SamplingParams, TokensPrompt
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


class ByteTokenizer:
    """FakeLM's tokenizer (UTF-8 bytes) with the transformers calls VLLMModel makes."""

    bos_token_id = 256
    eos_token_id = 257
    model_max_length = 512

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [list(t.encode("utf-8")) for t in texts]}

    def decode(self, ids, skip_special_tokens=False):
        return FakeLM().decode(ids)


@pytest.fixture
def vlm(fake_vllm):
    """A VLLMModel over the fake engine (FakeLM's vocabulary: bytes, BOS 256, EOS 257)."""
    from transformers import LlamaConfig

    from lmaudit.models.vllm import VLLMModel

    config = LlamaConfig(vocab_size=258, bos_token_id=256, eos_token_id=257, max_position_embeddings=512,
                         hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1)
    lm = VLLMModel(FakeLLM(), ByteTokenizer(), config, name="fake-vllm", dtype="float32", device="cpu",
                   fingerprint="file:fake")
    lm.tokenizer_fingerprint = lambda: "fake-utf8-bytes-v1"  # a real tokenizer's is tested below
    return lm


def _records(texts, prefix):
    return [Record(id=f"{prefix}{i}", text=t, source=prefix, line=i + 1) for i, t in enumerate(texts)]


# ------------------------------------------------------------------------------- token_stats
def test_prompt_logprobs_become_token_stats_aligned_at_score_from(vlm):
    inner = vlm.llm.inner
    seqs = [[256, *inner.encode([MEMBERS[0]])[0]], [256, *inner.encode(["odd text"])[0]], [256, 65], [256, 66]]
    starts = [1, 4, 2, 1]  # the third scores nothing (score_from == len(seq)); the fourth only its last token
    stats = vlm.token_stats(seqs, starts)
    assert len(vlm.llm.calls) == 1  # one engine call for the whole batch
    prompts, params = vlm.llm.calls[0]
    # Each sequence without its last token (so a full-context window fits with the one step
    # vLLM must generate), whose log-probability that step gives; nothing sent for the third.
    assert [p["prompt_token_ids"] for p in prompts] == [seqs[0][:-1], seqs[1][:-1], seqs[3][:-1]]
    assert all(p.kwargs["prompt_logprobs"] == 0 and p.kwargs["max_tokens"] == 1 for p in params)
    assert [p.kwargs["logprob_token_ids"] for p in params] == [[seqs[0][-1]], [seqs[1][-1]], [66]]
    for seq, start, s in zip(seqs, starts, stats):
        # By hand: log-softmax of the logits after seq[:t], at the token seq[t], for t >= score_from.
        expected = [_log_softmax(inner.logits(seq[:t]))[seq[t]] for t in range(start, len(seq))]
        assert s.token_ids.dtype == np.int32 and s.logprob.dtype == np.float32
        assert s.token_ids.tolist() == list(seq[start:])
        np.testing.assert_allclose(s.logprob, expected, atol=1e-6)
        for f in ("vocab_mean", "vocab_std", "entropy"):  # what vLLM cannot give
            assert getattr(s, f).shape == (len(seq) - start,) and np.isnan(getattr(s, f)).all()
    # The same log-probabilities as the backend that computes everything (FakeLM's own kernel).
    np.testing.assert_allclose(stats[0].logprob, inner.token_stats([seqs[0]], [1])[0].logprob, atol=1e-5)


def test_a_window_of_the_full_context_length_is_scored(vlm):
    seq = [256, *vlm.llm.inner.encode([" ".join(MEMBERS)])[0]][: vlm.max_length]
    assert len(seq) == vlm.max_length == 512
    stats = vlm.token_stats([seq], [1])[0]
    assert max(len(p["prompt_token_ids"]) for p in vlm.llm.calls[0][0]) == 511
    assert stats.logprob[-1] == pytest.approx(_log_softmax(vlm.llm.inner.logits(seq[:-1]))[seq[-1]], abs=1e-6)


def test_token_stats_checks_as_the_other_backends(vlm):
    with pytest.raises(ValueError, match=r"score_from must lie in \[1, 3\], got 0"):
        vlm.token_stats([[256, 1, 2]], [0])
    with pytest.raises(ValueError, match="exceeds the context length 512"):
        vlm.token_stats([[256] * 513], [1])
    with pytest.raises(ValueError, match="padding_side"):
        vlm.token_stats([[256, 1]], [1], padding_side="middle")
    assert vlm.token_stats([], []) == [] and vlm.llm.calls == []


def test_the_first_position_is_never_read(vlm):
    """Position 0 has no log-probability (vLLM gives None): score_from 1 starts at position 1."""
    stats = vlm.token_stats([[256, 72, 105]], [1])[0]
    assert stats.token_ids.tolist() == [72, 105]
    out = vlm.llm.generate([{"prompt_token_ids": [256, 72, 105]}], SamplingParams(prompt_logprobs=0, max_tokens=1))
    assert out[0].prompt_logprobs[0] is None
    assert vlm.token_stats([[256, 72]], [1])[0].token_ids.tolist() == [72]  # a one-token prompt: no prompt row


def test_a_malformed_engine_answer_is_an_error_not_a_number(vlm):
    from lmaudit.models.vllm import _stats

    out = RequestOutput([256, 1], [None, {7: Logprob(-1.0, 1)}], [CompletionOutput([5], [{5: Logprob(-2.0, 1)}])])
    with pytest.raises(RuntimeError, match="no log-probability for token 1 at position 1"):
        _stats([256, 1, 5], 1, out)
    with pytest.raises(RuntimeError, match="no log-probability for token 6 at position 2"):
        _stats([256, 7, 6], 1, out)
    assert _stats([256, 7, 5], 1, out).logprob.tolist() == [-1.0, -2.0]
    with pytest.raises(RuntimeError, match="2 prompt log-probabilities for a prompt of 3 tokens"):
        _stats([256, 1, 2, 3], 1, out)


# -------------------------------------------------------------------------------- generation
def test_greedy_and_sampling_parameters(vlm):
    prompts = [[256, 1, 2], [256, 3]]
    vlm.generate(prompts, GenerationConfig(max_new_tokens=5))
    greedy = vlm.llm.calls[-1][1]
    assert len(greedy) == 2 and all(p.kwargs["temperature"] == 0.0 and p.kwargs["max_tokens"] == 5 for p in greedy)
    assert all(p.kwargs["ignore_eos"] and p.kwargs["stop_token_ids"] == [257] for p in greedy)
    vlm.generate(prompts, GenerationConfig(max_new_tokens=3, do_sample=True, temperature=0.7, top_k=0, top_p=0.9,
                                           stop_at_eos=False, seed=11))
    sampled = vlm.llm.calls[-1][1]
    assert [p.kwargs["seed"] for p in sampled] == [11, 12]  # one seed per prompt
    assert all((p.kwargs["temperature"], p.kwargs["top_k"], p.kwargs["top_p"]) == (0.7, -1, 0.9) for p in sampled)
    assert all(p.kwargs["stop_token_ids"] == [] and p.kwargs["ignore_eos"] for p in sampled)
    vlm.generate(prompts[:1], GenerationConfig(do_sample=True, top_k=40))
    assert vlm.llm.calls[-1][1][0].kwargs["top_k"] == 40


def test_greedy_generation_is_the_argmax_loop_and_stops_after_eos(vlm):
    inner = vlm.llm.inner
    member = [256, *inner.encode([MEMBERS[3]])[0]]
    prompt = member[:-6]  # a member's prefix: FakeLM continues it to its end, then EOS
    out = vlm.generate([prompt], GenerationConfig(max_new_tokens=20, stop_at_eos=True))[0]
    assert out == [*member[-6:], 257]  # EOS kept, nothing after it
    ctx = list(prompt)
    for tok in out:  # by hand: the argmax at every step
        assert tok == int(np.argmax(inner.logits(ctx)))
        ctx.append(tok)
    on = vlm.generate([prompt], GenerationConfig(max_new_tokens=20, stop_at_eos=False))[0]
    assert len(on) == 20 and on[:7] == out  # runs on past EOS
    assert on == inner.generate([prompt], GenerationConfig(max_new_tokens=20, stop_at_eos=False))[0]
    assert vlm.generate([prompt], GenerationConfig(max_new_tokens=0)) == [[]]
    with pytest.raises(ValueError, match="at least one token"):
        vlm.generate([[]], GenerationConfig())


def test_sampling_with_a_seed_is_repeatable_per_prompt(vlm):
    cfg = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.5, stop_at_eos=False, seed=4)
    prompts = [[256, 84, 104], [256, 84, 104]]
    first, again = vlm.generate(prompts, cfg), vlm.generate(prompts, cfg)
    assert first == again and first[0] != first[1]  # same prompt twice: two seeds, two samples


# ---------------------------------------------------------------------- capability refusals
def test_capabilities_of_the_vllm_backend(vlm):
    from lmaudit.models.base import backends_with

    for capability in ("vocab_stats", "logits_processors", "gradients", "prompt_search", "predictions"):
        assert not has_capability(vlm, capability)
        assert "VLLMModel" not in backends_with(capability)
    assert backends_with("vocab_stats") == ["HFModel", "FakeLM", "WHPModel"]
    assert backends_with("logits_processors") == ["HFModel", "FakeLM", "WHPModel"]


def test_min_k_pp_and_gradnorm_are_refused_before_any_model_call(vlm):
    from lmaudit.membership.run import MembershipConfig, run_membership

    members, nonmembers = _records(MEMBERS, "m"), _records(NONMEMBERS, "n")
    with pytest.raises(CapabilityError, match=r"attack min_k_pp@0\.2 needs the 'vocab_stats' capability .*VLLMModel"
                                              r".*backends that have it: HFModel"):
        run_membership(vlm, members, nonmembers, config=MembershipConfig(attacks="loss,min_k_pp@0.2"))
    with pytest.raises(CapabilityError, match=r"attack gradnorm needs the 'gradients' capability .*HFModel"):
        run_membership(vlm, members, nonmembers, config=MembershipConfig(attacks="gradnorm"))
    assert vlm.llm.calls == []


def test_the_default_attacks_run_without_min_k_pp(vlm):
    """The default set leaves out what the backend cannot give, and scoring accepts NaN vocabulary
    statistics from it (only log-probabilities are checked)."""
    from lmaudit.membership.run import MembershipConfig, run_membership

    result = run_membership(vlm, _records(MEMBERS, "m"), _records(NONMEMBERS, "n"),
                            config=MembershipConfig(n_bootstrap=20, blind_baselines=False))
    ran = set(result.results["attacks"])
    assert "loss" in ran and "zlib" in ran and not any(a.startswith("min_k_pp") for a in ran)
    assert result.results["attacks"]["loss"]["auc"] == 1.0  # FakeLM memorised exactly its members
    assert result.results["n_errors"] == 0


def test_logits_processors_are_refused_before_any_work(vlm):
    from lmaudit.takedown.evaluate import run_takedown_eval
    from lmaudit.takedown.methods import TakedownModel
    from lmaudit.watermark.config import WatermarkConfig
    from lmaudit.watermark.processor import generate

    with pytest.raises(CapabilityError, match=r"cannot apply lmaudit's logits processors.*HFModel, FakeLM, WHPModel"):
        vlm.generate([[256, 1]], GenerationConfig(), logits_processor=[lambda ids, scores: scores])
    config = WatermarkConfig.create(FakeLM(), 5, preset="lefthash")
    with pytest.raises(CapabilityError, match=r"watermarked generation needs the 'logits_processors' capability .*HFModel"):
        generate(vlm, [[256, 1, 2]], config, 5)
    for method in ("memfree", "topk", "rcad"):
        with pytest.raises(CapabilityError, match=f"takedown method {method} .*'logits_processors'.*HFModel"):
            TakedownModel(vlm, [method], None)
        with pytest.raises(CapabilityError, match=f"takedown method {method}"):  # before the index is built
            run_takedown_eval(vlm, _records(MEMBERS, "p"), _records(NONMEMBERS, "u"), f"none,sysprompt,{method}")
    assert vlm.llm.calls == []
    plain = TakedownModel(vlm, ["sysprompt"], None)  # a method that only changes the input is fine
    assert not has_capability(plain, "logits_processors") and not has_capability(plain, "vocab_stats")
    assert has_capability(TakedownModel(FakeLM(), ["sysprompt"], None), "logits_processors")
    assert vlm.llm.calls == []


def test_a_cache_entry_without_vocabulary_statistics_is_not_served_to_a_backend_that_has_them(vlm, tmp_path):
    """The cache key is the same for both backends (the same files): an entry vLLM wrote is
    rescored for a backend that computes vocab_mean/std, while one that backend wrote serves vLLM."""
    from lmaudit.scoring.cache import open_cache
    from lmaudit.scoring.score import score_records

    full = FakeLM(MEMBERS)
    full.fingerprint = vlm.fingerprint  # the same weights, as far as the cache can tell
    full.tokenizer_fingerprint = vlm.tokenizer_fingerprint
    recs = _records(MEMBERS[:3], "m")
    with open_cache(tmp_path / "c.sqlite") as cache:
        first = score_records(vlm, recs, cache=cache)
        assert all(s.error is None and np.isnan(s.stats.vocab_mean).all() for s in first)
        again = score_records(full, recs, cache=cache)
        assert not any(s.from_cache for s in again) and all(np.isfinite(s.stats.vocab_mean).all() for s in again)
        served = score_records(vlm, recs, cache=cache)  # the complete entries now serve vLLM too
        assert all(s.from_cache for s in served)
        for a, b in zip(first, served):
            assert a.logprob_mean == pytest.approx(b.logprob_mean, abs=1e-5)


# --------------------------------------------------------------- from_pretrained and identity
@pytest.fixture
def saved_model(tiny_lm, tmp_path):
    path = tmp_path / "model"
    tiny_lm.model.save_pretrained(path)
    tiny_lm.tokenizer.save_pretrained(path)
    return path


def test_from_pretrained_matches_the_hf_backend(fake_vllm, saved_model):
    from lmaudit.models.hf import HFModel
    from lmaudit.models.vllm import VLLMModel

    hf = HFModel.from_pretrained(str(saved_model), device="cpu")
    lm = VLLMModel.from_pretrained(str(saved_model), dtype="auto", max_model_len=128, gpu_memory_utilization=0.5)
    (engine,) = fake_vllm.engines
    assert engine.kwargs["dtype"] == "float32"  # "auto" resolved here: vLLM's own would downcast
    assert engine.kwargs["load_format"] == "safetensors" and engine.kwargs["generation_config"] == "vllm"
    assert (engine.kwargs["max_model_len"], engine.kwargs["gpu_memory_utilization"]) == (128, 0.5)
    assert lm.dtype == "float32" and lm.max_length == 128
    assert (lm.bos_token_id, lm.eos_token_id, lm.vocab_size) == (hf.bos_token_id, hf.eos_token_id, hf.vocab_size)
    assert lm.fingerprint() == hf.fingerprint() and lm.fingerprint().startswith("file:")
    assert lm.tokenizer_fingerprint() == hf.tokenizer_fingerprint()
    texts = ["Hello there, world.", "12 goats"]
    assert lm.encode(texts) == hf.encode(texts) and lm.decode(hf.encode(texts)[0]) == hf.decode(hf.encode(texts)[0])
    assert VLLMModel.from_pretrained(str(saved_model)).max_length == hf.max_length


def test_file_fingerprint_without_weights_equals_the_loaded_models(saved_model):
    from lmaudit.models.hf import HFModel
    from lmaudit.models.identity import file_fingerprint

    for dtype in ("float32", "bfloat16"):
        hf = HFModel.from_pretrained(str(saved_model), dtype=dtype, device="cpu")
        assert file_fingerprint(str(saved_model), dtype=dtype) == hf.fingerprint()
    assert file_fingerprint(str(saved_model), dtype="float32") != file_fingerprint(str(saved_model), dtype="bfloat16")
    assert file_fingerprint(str(saved_model.parent)) is None  # no weights there


def test_from_pretrained_refuses_clearly(fake_vllm, saved_model, tmp_path, monkeypatch):
    from lmaudit.models.vllm import VLLMModel

    with pytest.raises(OSError, match="no such model directory"):
        VLLMModel.from_pretrained(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="no safetensors weights"):
        VLLMModel.from_pretrained(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=1"):
        VLLMModel.from_pretrained(str(saved_model), device="cuda:1")
    with pytest.raises(ValueError, match="dtype"):
        VLLMModel.from_pretrained(str(saved_model), dtype="float64")
    fake_vllm.platforms = types.SimpleNamespace(current_platform=types.SimpleNamespace(device_type="cuda"))
    with pytest.raises(ValueError, match="device 'cpu': this vllm build runs on cuda"):
        VLLMModel.from_pretrained(str(saved_model), device="cpu")
    assert fake_vllm.engines == []
    assert VLLMModel.from_pretrained(str(saved_model), device="cuda:0").device == "cuda"
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    with pytest.raises(ImportError, match=r"pip install 'lmaudit\[vllm\]'"):
        VLLMModel.from_pretrained(str(saved_model))


# ------------------------------------------------------------------------------------- CLI
def _invoke(*args):
    from typer.testing import CliRunner

    from lmaudit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _error(res) -> str:
    assert res.exit_code != 0 and "Traceback" not in res.stderr, res.stderr
    return " ".join(res.stderr[res.stderr.index("error:"):].split())


@pytest.fixture
def never_load(monkeypatch):
    from lmaudit.models.hf import HFModel
    from lmaudit.models.vllm import VLLMModel

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the backend was checked")

    monkeypatch.setattr(HFModel, "from_pretrained", refuse)
    monkeypatch.setattr(VLLMModel, "from_pretrained", refuse)


def test_cli_refuses_what_the_backend_cannot_do_before_reading_anything(tmp_path, never_load):
    absent = tmp_path / "absent.jsonl"  # never read: the refusal comes first
    out = tmp_path / "out"
    err = _error(_invoke("membership", "--model", "m", "--backend", "vllm", "--members", absent, "--nonmembers", absent,
                         "--attacks", "loss,min_k_pp", "--out", out))
    assert "--attacks: attack min_k_pp@0.05 needs the 'vocab_stats' capability" in err and "HFModel" in err
    err = _error(_invoke("watermark", "generate", "--model", "m", "--backend", "vllm", "--data", absent,
                         "--key", 3, "--out", out))
    assert "--backend vllm: watermarked generation needs the 'logits_processors' capability" in err
    err = _error(_invoke("takedown-eval", "--model", "m", "--backend", "vllm", "--protected", absent,
                         "--unprotected", absent, "--methods", "sysprompt,memfree", "--out", out))
    assert "takedown method memfree (a logits processor) needs the 'logits_processors' capability" in err
    err = _error(_invoke("acr", "--model", "m", "--backend", "vllm", "--data", absent, "--out", out))
    assert "ACR needs the 'prompt_search' capability" in err
    err = _error(_invoke("score", "--data", absent, "--model", "m", "--backend", "tgi", "--out", out))
    assert "--backend must be hf or vllm, got 'tgi'" in err


def test_cli_refuses_a_whp_folder_and_a_missing_vllm(tmp_path, monkeypatch):
    from lmaudit.models.whp import WHP_FILE

    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": "hello"}\n')
    whp = tmp_path / "whp"
    whp.mkdir()
    (whp / WHP_FILE).write_text("{}")
    err = _error(_invoke("score", "--data", data, "--model", whp, "--backend", "vllm", "--out", tmp_path / "o1"))
    assert "Who's Harry Potter combination" in err and "only --backend hf" in err
    monkeypatch.setitem(sys.modules, "vllm", None)
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"")  # never read: vllm is missing first
    (model / "config.json").write_text("{}")
    err = _error(_invoke("score", "--data", data, "--model", model, "--backend", "vllm", "--out", tmp_path / "o2"))
    assert "needs the vllm package" in err and "pip install 'lmaudit[vllm]'" in err
