"""Model and tokenizer fingerprints (issue 10, defects 2 and 3): what they cover, when they change, what they cost."""

import hashlib
import json
import os

import pytest
import torch

from lmaudit.models.hf import HFModel
from lmaudit.testbed.tokenizer import train_tokenizer

# --- tokenizers --------------------------------------------------------------------

_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "Hello", "world", "WORLD", "cafe", "café",
          "naive", "naïve", "東", "京", "都", "1", "2", "3", "##4", "##5", ".", ",", "-", "h", "##ello", "##s"]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(_VOCAB) + "\n")
    return str(path)


def _slow_bert(vocab_file, **options):
    from transformers import BertTokenizerLegacy  # the Python ("slow") BertTokenizer

    return BertTokenizerLegacy(vocab_file, **options)


def _fingerprint(tok):
    return HFModel.tokenizer_fingerprint(type("M", (), {"tokenizer": tok})())


def test_slow_tokenizers_that_normalise_differently_differ(vocab_file):
    lower, cased = _slow_bert(vocab_file, do_lower_case=True), _slow_bert(vocab_file, do_lower_case=False)
    assert lower.get_vocab() == cased.get_vocab()  # what the old fingerprint hashed
    assert lower.encode("Hello WORLD", add_special_tokens=False) != cased.encode("Hello WORLD", add_special_tokens=False)
    assert _fingerprint(lower) != _fingerprint(cased)
    base = _fingerprint(lower)
    for option in ({"strip_accents": False}, {"tokenize_chinese_chars": False}, {"never_split": ["hello"]}):
        assert _fingerprint(_slow_bert(vocab_file, do_lower_case=True, **option)) != base, option


def test_a_slow_tokenizer_option_changed_after_construction_shows_in_the_probe(vocab_file):
    tok = _slow_bert(vocab_file, do_lower_case=True)
    before = _fingerprint(tok)
    tok.basic_tokenizer.do_lower_case = False  # init_kwargs still say True
    assert _fingerprint(tok) != before


@pytest.mark.parametrize("kind", ["bpe", "bert"])
def test_fast_fingerprint_ignores_the_truncation_and_padding_a_call_leaves(kind, vocab_file, corpus_texts):
    if kind == "bpe":
        tok = train_tokenizer(corpus_texts[:20], vocab_size=300)
    else:
        from transformers import BertTokenizer  # backed by `tokenizers` in transformers 5

        tok = BertTokenizer(vocab_file)
    before = _fingerprint(tok)
    tok(corpus_texts[:3], truncation=True, max_length=4, padding="max_length")
    assert json.loads(tok.backend_tokenizer.to_str())["truncation"] is not None  # the state is there
    assert _fingerprint(tok) == before


def test_the_truncation_and_padding_state_is_ignored_and_left_as_it_was(corpus_texts):
    tok = train_tokenizer(corpus_texts[:20], vocab_size=300)
    clean = _fingerprint(tok)
    tok.backend_tokenizer.enable_truncation(3)
    tok.backend_tokenizer.enable_padding(length=8)
    assert _fingerprint(tok) == clean
    # The public function (its probe calls the tokenizer) leaves the caller's state as it was.
    assert tok.backend_tokenizer.truncation["max_length"] == 3 and tok.backend_tokenizer.padding["length"] == 8


def test_equal_tokenizers_built_twice_are_equal(vocab_file, corpus_texts, tmp_path):
    assert _fingerprint(_slow_bert(vocab_file, do_lower_case=False)) == _fingerprint(_slow_bert(vocab_file, do_lower_case=False))
    fast = train_tokenizer(corpus_texts[:20], vocab_size=300)
    assert _fingerprint(fast) == _fingerprint(train_tokenizer(corpus_texts[:20], vocab_size=300))
    assert _fingerprint(fast) != _fingerprint(train_tokenizer(corpus_texts[:20], vocab_size=320))
    # Saved and reloaded (from another folder) is the same tokenizer.
    from transformers import AutoTokenizer

    slow = _slow_bert(vocab_file, do_lower_case=False)
    slow.save_pretrained(tmp_path / "slow")
    reloaded = type(slow).from_pretrained(tmp_path / "slow")
    assert _fingerprint(reloaded) == _fingerprint(slow)
    fast.save_pretrained(tmp_path / "fast")
    assert _fingerprint(AutoTokenizer.from_pretrained(tmp_path / "fast")) == _fingerprint(AutoTokenizer.from_pretrained(tmp_path / "fast"))


# --- models ------------------------------------------------------------------------


def _save(path, model, tokenizer, **kwargs):
    model.save_pretrained(path, **kwargs)
    tokenizer.save_pretrained(path)
    return str(path)


class _CountingHashes:
    """Counts every blake2b and sha256 object created (the only ways weights get hashed)."""

    def __init__(self, monkeypatch):
        self.n = 0
        for name in ("blake2b", "sha256"):
            real = getattr(hashlib, name)

            def counting(*args, _real=real, **kwargs):
                self.n += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(hashlib, name, counting)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_second_fingerprint_hashes_nothing(arch, tokenizer, make_tiny, tmp_path, monkeypatch):
    built = HFModel(make_tiny(arch, len(tokenizer)), tokenizer)
    loaded = HFModel.from_pretrained(_save(tmp_path / "m", make_tiny(arch, len(tokenizer)), tokenizer), device="cpu")
    counter = _CountingHashes(monkeypatch)
    for lm in (built, loaded):
        first = lm.fingerprint()
        counter.n = 0
        assert lm.fingerprint() == first
        assert counter.n == 0, "a memoised fingerprint hashed again"


def test_loaded_models_are_identified_by_their_files(tokenizer, make_tiny, tmp_path):
    a = _save(tmp_path / "a", make_tiny("llama", len(tokenizer)), tokenizer)
    fp = HFModel.from_pretrained(a, device="cpu").fingerprint()
    assert fp.startswith("file:")
    assert HFModel.from_pretrained(a, device="cpu").fingerprint() == fp  # reloaded: same
    other = make_tiny("llama", len(tokenizer))
    with torch.no_grad():
        other.lm_head.weight[3, 5] += 1e-3
    b = _save(tmp_path / "b", other, tokenizer)
    assert HFModel.from_pretrained(b, device="cpu").fingerprint() != fp  # one weight differs
    # The dtype the weights are held in is part of the identity.
    assert HFModel.from_pretrained(a, device="cpu", dtype="bfloat16").fingerprint() not in (fp, None)
    # A moved copy of the folder is the same model.
    import shutil

    shutil.copytree(a, tmp_path / "moved")
    assert HFModel.from_pretrained(str(tmp_path / "moved"), device="cpu").fingerprint() == fp


def test_sharded_checkpoints_are_identified_by_their_files(tokenizer, make_tiny, tmp_path):
    from lmaudit.models import identity

    path = _save(tmp_path / "sharded", make_tiny("gpt2", len(tokenizer)), tokenizer, max_shard_size="20KB")
    files = identity.weight_files(path)
    assert len(files) > 1 and all(f.name.endswith(".safetensors") for f in files)
    fp = HFModel.from_pretrained(path, device="cpu").fingerprint()
    assert fp.startswith("file:") and HFModel.from_pretrained(path, device="cpu").fingerprint() == fp


def test_a_single_file_beside_a_sharded_index_is_what_identifies_the_model(tokenizer, make_tiny, tmp_path):
    """save_pretrained sharded over a folder holding a single model.safetensors leaves that file,
    and transformers loads it, not the shards: the fingerprint must name what was loaded."""
    a, b = make_tiny("gpt2", len(tokenizer)), make_tiny("gpt2", len(tokenizer))
    with torch.no_grad():
        b.lm_head.weight[3, 5] += 1.0
    mixed = _save(tmp_path / "mixed", a, tokenizer)
    _save(tmp_path / "mixed", b, tokenizer, max_shard_size="20KB")
    lm = HFModel.from_pretrained(mixed, device="cpu")
    assert torch.equal(lm.model.lm_head.weight, a.lm_head.weight)  # transformers read the single file
    only_a = HFModel.from_pretrained(_save(tmp_path / "a", a, tokenizer), device="cpu").fingerprint()
    only_b = HFModel.from_pretrained(_save(tmp_path / "b", b, tokenizer, max_shard_size="20KB"), device="cpu")
    assert lm.fingerprint() == only_a != only_b.fingerprint()


def test_a_model_loaded_under_inference_mode_has_a_fingerprint(tokenizer, make_tiny, tmp_path):
    path = _save(tmp_path / "m", make_tiny("llama", len(tokenizer)), tokenizer)
    reference = HFModel.from_pretrained(path, device="cpu").fingerprint()
    with torch.inference_mode():
        lm = HFModel.from_pretrained(path, device="cpu")
        assert lm.fingerprint() == reference  # inference tensors have no version counter
        lm.model.lm_head.weight[0] += 1.0  # in place: only the sample can see it
        assert lm.fingerprint() != reference


def test_a_config_change_changes_the_fingerprint(tokenizer, make_tiny, tmp_path):
    lm = HFModel.from_pretrained(_save(tmp_path / "m", make_tiny("llama", len(tokenizer)), tokenizer), device="cpu")
    before = lm.fingerprint()
    lm.model.config.rms_norm_eps = 0.5  # the forward pass reads it
    assert lm.fingerprint() != before


def _changes(lm):
    """Ways an audit or a user changes a loaded model in memory."""
    params = dict(lm.model.named_parameters())
    name = next(n for n in params if "mlp" in n and n.endswith("weight"))
    p = params[name]

    def one_element():
        with torch.no_grad():
            p[0, 0] += 1.0

    def through_data():
        p.data.add_(1e-3)  # bypasses the version counter

    def optimizer_step():
        opt = torch.optim.AdamW(lm.model.parameters(), lr=1e-2)
        lm.model(input_ids=torch.tensor([[1, 5, 7, 9]]), labels=torch.tensor([[1, 5, 7, 9]])).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def load_other_state():
        state = {k: v + 1e-3 if v.is_floating_point() else v for k, v in lm.model.state_dict().items()}
        lm.model.load_state_dict(state)

    def replace_data():
        p.data = p.data.clone() * 2

    def replace_parameter():
        owner = lm.model.get_submodule(name.rsplit(".", 1)[0])
        owner.weight = torch.nn.Parameter(p.detach().clone() + 1)

    return [one_element, through_data, optimizer_step, load_other_state, replace_data, replace_parameter]


@pytest.mark.parametrize("change", range(6), ids=["one_element", "through_data", "optimizer_step", "load_state_dict",
                                                  "replace_data", "replace_parameter"])
def test_a_change_in_memory_changes_the_fingerprint(change, tokenizer, make_tiny, tmp_path):
    path = _save(tmp_path / "m", make_tiny("llama", len(tokenizer)), tokenizer)
    for lm in (HFModel.from_pretrained(path, device="cpu"), HFModel(make_tiny("llama", len(tokenizer)), tokenizer)):
        before = lm.fingerprint()
        changes = _changes(lm)  # holds on to the parameter it changes, as a caller might
        changes[change]()
        after = lm.fingerprint()
        assert after != before and after.startswith("tensor:")
        assert lm.fingerprint() == after  # and memoised again


def test_changed_then_hashed_tensors_agree_with_a_fresh_hash(tokenizer, make_tiny, tmp_path):
    path = _save(tmp_path / "m", make_tiny("gpt2", len(tokenizer)), tokenizer)
    lm = HFModel.from_pretrained(path, device="cpu")
    with torch.no_grad():
        lm.model.transformer.wte.weight.mul_(2)
    same = HFModel(lm.model, tokenizer)  # the same weights, wrapped afresh
    assert lm.fingerprint() == same.fingerprint()


def test_weights_rewritten_on_disk_after_loading_are_not_trusted(tokenizer, make_tiny, tmp_path):
    path = _save(tmp_path / "m", make_tiny("gpt2", len(tokenizer)), tokenizer)
    original = HFModel.from_pretrained(path, device="cpu").fingerprint()
    lm = HFModel.from_pretrained(path, device="cpu")
    other = make_tiny("gpt2", len(tokenizer))
    with torch.no_grad():
        other.lm_head.weight.add_(1)
    other.save_pretrained(path)  # before lm's first fingerprint
    assert lm.fingerprint().startswith("tensor:")
    assert HFModel.from_pretrained(path, device="cpu").fingerprint() not in (original, lm.fingerprint())


def test_weights_removed_from_disk_after_loading_fall_back_to_the_tensors(tokenizer, make_tiny, tmp_path):
    import shutil

    path = _save(tmp_path / "m", make_tiny("gpt2", len(tokenizer)), tokenizer)
    lm = HFModel.from_pretrained(path, device="cpu")
    expected = HFModel(lm.model, tokenizer).fingerprint()
    shutil.rmtree(path)
    assert lm.fingerprint() == expected


def test_weights_missing_from_the_files_fall_back_to_the_tensors(tokenizer, make_tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _save(tmp_path / "m", make_tiny("llama", len(tokenizer)), tokenizer)
    state = load_file(f"{path}/model.safetensors")
    del state["model.layers.0.mlp.up_proj.weight"]  # initialised at random on load
    save_file(state, f"{path}/model.safetensors", metadata={"format": "pt"})
    assert HFModel.from_pretrained(path, device="cpu").fingerprint().startswith("tensor:")


def test_hub_blobs_are_named_by_their_sha256(tmp_path, monkeypatch):
    from lmaudit.models import identity

    data = b"weights"
    blob = tmp_path / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(data)
    monkeypatch.setattr(identity, "sha256_file", lambda path: pytest.fail("a hub blob was read"))
    file = identity.WeightFile(path=str(blob), name="model.safetensors", stat=identity._stat_key(str(blob)))
    assert identity.file_sha256(file) == hashlib.sha256(data).hexdigest()


def test_weight_files_of_a_cached_hub_model(tmp_path, monkeypatch):
    from lmaudit.models import identity

    import huggingface_hub

    blob = tmp_path / "blobs" / ("a" * 64)
    blob.parent.mkdir()
    blob.write_bytes(b"x")
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "model.safetensors").symlink_to(blob)
    cached = {"model.safetensors": str(tmp_path / "snap" / "model.safetensors")}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, filename, revision=None: cached.get(filename))
    [file] = identity.weight_files("org/model", revision="main")
    assert file.path == str(blob) and identity.file_sha256(file) == "a" * 64


def test_large_local_files_are_hashed_once(tmp_path, monkeypatch):
    from lmaudit.models import identity

    monkeypatch.setenv("LMAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(identity, "_SIDECAR_MIN_BYTES", 0)
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"one")
    calls = []
    real = identity.sha256_file
    monkeypatch.setattr(identity, "sha256_file", lambda p: calls.append(p) or real(p))

    def digest():
        return identity.file_sha256(identity.WeightFile(str(path), path.name, identity._stat_key(str(path))))

    assert digest() == hashlib.sha256(b"one").hexdigest() and len(calls) == 1
    assert digest() == hashlib.sha256(b"one").hexdigest() and len(calls) == 1  # remembered
    path.write_bytes(b"two")
    os.utime(path, ns=(0, 0))
    assert digest() == hashlib.sha256(b"two").hexdigest() and len(calls) == 2  # rewritten: hashed again


def test_a_sparse_write_through_data_needs_forget(tokenizer, make_tiny, tmp_path):
    """The documented limit: .data bypasses the version counter, and one element between the
    sampled ones is not seen until the identity is told to forget."""
    path = _save(tmp_path / "m", make_tiny("gpt2", len(tokenizer)), tokenizer)
    lm = HFModel.from_pretrained(path, device="cpu")
    before = lm.fingerprint()
    lm.model.transformer.wte.weight.data[0, 1] += 1.0  # element 1: between samples 0 and n/63
    assert lm.fingerprint() == before
    lm.forget_fingerprint()
    assert lm.fingerprint() != before and lm.fingerprint().startswith("tensor:")
