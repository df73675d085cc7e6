"""Identity of a model and its tokenizer: the fingerprints that key the score cache and provenance.

A model fingerprint is one string, prefixed with how it was computed:

- ``file:<hex>`` for a model whose weights are exactly those of the safetensors files it was
  loaded from: the files' sha256 (free for a Hugging Face hub cache, whose blobs are named by
  it; computed once per file otherwise), the configuration and each tensor's name, dtype and
  shape as held in memory. Cheap, and equal for every load of the same files.
- ``tensor:<hex>`` for anything else (a model built or changed in memory): blake2b of the
  configuration and every tensor's bytes, memoised until a tensor changes.

The two never compare equal, even for the same weights: a reader can tell which it is, and a
mismatch only costs a cache miss, never a stale hit.

A tokenizer fingerprint covers whatever decides token ids, and never the truncation or
padding state that a tokenizer call leaves behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

# Config keys that change with how a model was saved, not with what it computes.
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"}
# Elements read from each tensor on every fingerprint() call (see ModelIdentity).
_SAMPLES_PER_TENSOR = 64
# Files smaller than this are hashed every time rather than remembered in the user's cache.
_SIDECAR_MIN_BYTES = 64 << 20
_HUB_BLOB = re.compile(r"[0-9a-f]{64}")
_CHUNK = 16 << 20


# ------------------------------------------------------------------------------ weight files
@dataclass(frozen=True)
class WeightFile:
    """A weight file as it was when the model was read from it."""

    path: str  # real path (symlinks resolved)
    name: str  # file name in the model folder, e.g. "model-00001-of-00002.safetensors"
    stat: tuple[int, ...]  # see _stat_key


def _stat_key(path: str) -> tuple[int, ...]:
    # ctime cannot be set from user space, so a rewrite that restores size and mtime still shows.
    s = os.stat(path)
    return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)


def weight_files(name_or_path: str, *, revision: str | None = None) -> list[WeightFile] | None:
    """The safetensors files ``from_pretrained`` reads for a local folder or a cached hub model.

    Returns None when they cannot be told (then the fingerprint falls back to the tensors).
    """
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        def find(filename: str) -> str | None:
            return str(local / filename) if (local / filename).is_file() else None
    else:
        from huggingface_hub import try_to_load_from_cache

        def find(filename: str) -> str | None:
            found = try_to_load_from_cache(str(name_or_path), filename, revision=revision)
            return found if isinstance(found, str) else None  # None or a "known missing" marker

    # transformers' own order: a single model.safetensors wins over a sharded index, so a folder
    # holding both (re-saved sharded over a single file, which save_pretrained leaves behind)
    # is identified by the file the weights were really read from.
    index = find("model.safetensors.index.json")
    if find("model.safetensors") is not None:
        names = ["model.safetensors"]
    elif index is not None:
        names = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
    else:
        return None
    files = []
    for name in names:
        path = find(name)
        if path is None:
            return None
        real = os.path.realpath(path)
        files.append(WeightFile(path=real, name=name, stat=_stat_key(real)))
    return files


def _cache_dir() -> Path:
    if os.environ.get("LMAUDIT_CACHE_DIR"):
        return Path(os.environ["LMAUDIT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmaudit"


def sha256_file(path: str) -> str:
    """sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(file: WeightFile) -> str:
    """sha256 of a weight file's bytes, without reading them where that is already known.

    A Hugging Face hub cache stores each large file as ``blobs/<sha256>`` (its Git LFS id),
    so the name is the hash. Other files of at least 64 MiB are hashed once and remembered
    under the user's cache folder (``$LMAUDIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lmaudit``
    or ``~/.cache/lmaudit``), keyed by path, inode, size, mtime and ctime.
    """
    p = Path(file.path)
    if p.parent.name == "blobs" and _HUB_BLOB.fullmatch(p.name):
        return p.name
    if file.stat[2] < _SIDECAR_MIN_BYTES:
        return sha256_file(file.path)
    key = hashlib.blake2b(json.dumps([file.path, *file.stat]).encode(), digest_size=16).hexdigest()
    entry = _cache_dir() / "file-sha256" / key
    try:
        known = entry.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{64}", known):
            return known
    except OSError:
        pass
    digest = sha256_file(file.path)
    try:  # a cache: when it cannot be written, the next load hashes again
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, entry)
    except OSError:
        pass
    return digest


# ----------------------------------------------------------------------------- tensors
def _tensors(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters then buffers; the same objects on every call (unlike ``state_dict()``)."""
    yield from module.named_parameters()
    yield from module.named_buffers()


def _config_dict(module: torch.nn.Module) -> dict[str, Any]:
    config = getattr(module, "config", None)
    if config is None:
        return {}
    return {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}


def _layout(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[list[str]]:
    return [[name, str(t.dtype), str(tuple(t.shape))] for name, t in tensors]


def _sample(t: torch.Tensor) -> bytes:
    """The bytes of up to 64 elements spread evenly over a tensor (first and last included)."""
    t = t.detach()
    n = t.numel()
    if n == 0:
        return b""
    if n <= _SAMPLES_PER_TENSOR:
        values = t.reshape(-1)
    else:
        flat = torch.linspace(0, n - 1, _SAMPLES_PER_TENSOR, dtype=torch.float64).round().long()
        values = t[torch.unravel_index(flat.to(t.device), t.shape)]
    return values.contiguous().view(torch.uint8).cpu().numpy().tobytes()


def hash_tensors(module: torch.nn.Module) -> str:
    """blake2b of the configuration and every parameter's and buffer's name, dtype, shape and bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(_config_dict(module), sort_keys=True, default=str).encode())
    for name, t in _tensors(module):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()


class _State:
    """What the weights look like now, cheaply: compared, never hashed.

    Per tensor: the object itself (by weak reference, so a replaced parameter shows even if
    its id is reused), its version counter (bumped by every in-place operation on it or on a
    view of it: optimizer steps, ``copy_``, ``load_state_dict``), its storage address
    (``p.data = ...``, ``.to(device)``), dtype, shape and device — and a sample of its
    values, because writes through ``p.data`` bypass the version counter.
    """

    def __init__(self, module: torch.nn.Module):
        tensors = list(_tensors(module))
        self._refs = [(name, weakref.ref(t)) for name, t in tensors]
        # Tensors made under torch.inference_mode() have no version counter: their sample,
        # address and layout still show a change.
        self._key = [(None if t.is_inference() else t._version, t.data_ptr(), t.dtype, tuple(t.shape), t.device)
                     for _, t in tensors]
        self._config = json.dumps(_config_dict(module), sort_keys=True, default=str)  # forward reads it too
        self._sample = b"".join(_sample(t) for _, t in tensors)  # compared, not hashed: a memo hit hashes nothing

    def same_as(self, other: "_State") -> bool:
        return (
            len(self._refs) == len(other._refs)
            # By identity: == on two live tensors would compare them elementwise.
            and all(n == m and a() is b() for (n, a), (m, b) in zip(self._refs, other._refs))
            and self._key == other._key
            and self._sample == other._sample
            and self._config == other._config
        )


class ModelIdentity:
    """The fingerprint of one ``torch.nn.Module``, memoised for as long as its weights stay put.

    Args:
        module: The model (a ``transformers`` model: its ``config`` is part of the identity).
        source: The weight files it was just loaded from, exactly (no weight missing or
            newly initialised); None for a model built or loaded otherwise.

    What is guaranteed: any change made through a tensor (in-place ops, optimizer steps,
    ``load_state_dict``, ``copy_``), a replaced parameter or ``.data``, a dtype or shape
    change, and a change of the weight files on disk before the first fingerprint all give
    a new fingerprint. A write through ``p.data`` is invisible to PyTorch's version counters;
    it is caught when it changes any of 64 elements sampled from that tensor (any dense
    update does), not when it edits a few elements in between. After such a write, call
    :meth:`forget` to be certain.
    """

    def __init__(self, module: torch.nn.Module, *, source: list[WeightFile] | None = None):
        self.module = module
        self._source = source
        self._loaded = _State(module) if source is not None else None
        self._file_fp: str | None = None
        self._memo: tuple[_State, str] | None = None

    def fingerprint(self) -> str:
        now = _State(self.module)
        if self._loaded is not None and self._loaded.same_as(now):
            if self._file_fp is None:
                self._file_fp = self._from_files()
            if self._file_fp is not None:
                return self._file_fp
        self._loaded = None  # changed since loading: the files no longer describe the weights
        if self._memo is None or not self._memo[0].same_as(now):
            self._memo = (now, "tensor:" + hash_tensors(self.module))
        return self._memo[1]

    def forget(self) -> None:
        """Drop the memo and the file identity: the next fingerprint hashes the tensors."""
        self._loaded, self._memo = None, None

    def _from_files(self) -> str | None:
        assert self._source is not None
        try:
            if any(_stat_key(f.path) != f.stat for f in self._source):
                return None  # rewritten since the model read it
            files = [[f.name, file_sha256(f)] for f in self._source]
        except OSError:  # removed since
            return None
        return _file_identity(self.module, files)


def _file_identity(module: torch.nn.Module, files: list[list[str]]) -> str:
    """``file:`` of a module's configuration and tensor layout, and its weight files' [name, sha256]."""
    payload = {
        "config": _config_dict(module),
        "tensors": _layout(_tensors(module)),  # also the dtype the weights are held in
        "files": files,
    }
    digest = hashlib.blake2b(json.dumps(payload, sort_keys=True, default=str).encode(), digest_size=16)
    return "file:" + digest.hexdigest()


def file_fingerprint(name_or_path: str, *, dtype: str = "float32", revision: str | None = None,
                     trust_remote_code: bool = False) -> str | None:
    """The ``file:`` fingerprint :meth:`lmaudit.models.hf.HFModel.from_pretrained` gives the
    same folder or hub model loaded with ``dtype``, computed without loading any weight.

    For backends that hold the weights outside this process (vLLM): the configuration and the
    tensor layout come from the model built on PyTorch's meta device (no memory, no values),
    so the score cache and provenance agree across backends for the same files. Like
    HFModel's, it assumes every weight comes from the files; None when they cannot be found.

    Args:
        dtype: "float32", "bfloat16", "float16" or "auto" (the checkpoint's own).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    files = weight_files(name_or_path, revision=revision)
    if files is None:
        return None
    config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    if dtype == "auto":  # what from_pretrained(dtype="auto") does: the config's dtype, else float32
        held = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
        torch_dtype = getattr(torch, held) if isinstance(held, str) else held
    else:
        torch_dtype = getattr(torch, dtype)
    with torch.device("meta"):
        module = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    try:
        return _file_identity(module, [[f.name, file_sha256(f)] for f in files])
    except OSError:  # removed since weight_files found it
        return None


# --------------------------------------------------------------------------- tokenizers
# Decides ids through case, accents and other normalisation, odd whitespace, digits,
# punctuation, unicode compatibility forms, CJK, emoji and text that looks like special tokens.
PROBE = (
    "Hello WORLD hello world. Ünïcödé café naïve Straße İstanbul ΣΑΣ e\u0301 ﬁ ½ Ⅻ\n"
    "\t tabs\t\tand  double  spaces\u00a0nbsp\u200bzero-width \r\n"
    "12345 3.14159 1,000,000 -42 0x1F 2024-01-31\n"
    "東京都 中文字符 日本語のテキスト 한국어 русский العربية हिन्दी 🙂👍🏽\n"
    "[CLS] [SEP] [UNK] <s> </s> <pad> <unk> <|endoftext|> <mask>  trailing  "
)

# Init options that never change the ids of ``encode`` (paths, lengths, decoding, chat, how
# the files were found) or that are hashed on their own (special and added tokens).
_INERT_INIT_KWARGS = {
    "name_or_path", "model_max_length", "padding_side", "truncation_side", "clean_up_tokenization_spaces",
    "model_input_names", "processor_class", "auto_map", "tokenizer_class", "chat_template", "verbose",
    "backend", "added_tokens_decoder", "tokenizer_object", "additional_special_tokens", "extra_special_tokens",
    "is_local", "local_files_only", "cache_dir", "revision", "token", "subfolder", "trust_remote_code",
    "force_download", "proxies", "user_agent", "_commit_hash", "_from_auto", "use_fast",
}


def _plain(value: Any) -> Any:
    """A JSON-able, address-free form of an init option (AddedToken objects become their fields)."""
    if hasattr(value, "__getstate__") and hasattr(value, "content"):  # tokenizers.AddedToken
        return value.__getstate__()
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    text = repr(value)
    return type(value).__qualname__ if " at 0x" in text else text


def _definition(tok) -> dict[str, Any]:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        # Truncation and padding are set by whichever call last asked for them; never part
        # of the tokenizer. Cleared on a copy, so the caller's tokenizer is left as it was.
        if backend.truncation is not None or backend.padding is not None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_truncation()
            backend.no_padding()
        # Hashed as serialised (a deterministic order): re-serialising a 128k vocabulary costs ~1 s.
        return {"backend_sha256": hashlib.sha256(backend.to_str().encode()).hexdigest()}
    # A Python ("slow") tokenizer: its vocabulary, merges or model, added tokens and options.
    definition: dict[str, Any] = {"vocab": sorted(tok.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))}
    if isinstance(getattr(tok, "bpe_ranks", None), dict):
        definition["merges"] = [list(pair) for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])]
    sp_model = getattr(tok, "sp_model", None)
    if sp_model is not None and hasattr(sp_model, "serialized_model_proto"):
        definition["sentencepiece"] = hashlib.sha256(sp_model.serialized_model_proto()).hexdigest()
    definition["added_tokens"] = {str(i): _plain(t) for i, t in sorted(tok.added_tokens_decoder.items())}
    definition["init"] = {
        k: json.loads(json.dumps(v, default=_plain))
        for k, v in sorted(tok.init_kwargs.items())
        if k not in _INERT_INIT_KWARGS and k not in getattr(tok, "SPECIAL_TOKENS_ATTRIBUTES", ())
        and not k.endswith(("_file", "_files"))
    }
    return definition


def _probe_ids(tok) -> list[int]:
    """The probe's ids, exactly as HFModel.encode calls the tokenizer, leaving the caller's fast
    backend with the truncation and padding it had (a call resets them)."""
    backend = getattr(tok, "_tokenizer", None)
    saved = (backend.truncation, backend.padding) if backend is not None else None
    try:
        return tok([PROBE], add_special_tokens=False, verbose=False)["input_ids"][0]
    finally:
        if saved is not None:
            truncation, padding = saved
            if truncation is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(**truncation)
            if padding is None:
                backend.no_padding()
            else:
                backend.enable_padding(**padding)


def tokenizer_fingerprint(tok) -> str:
    """blake2b of everything about a ``transformers`` tokenizer that decides token ids.

    For a fast tokenizer, its full ``tokenizers`` definition (normaliser, pre-tokeniser,
    model, added tokens); for a Python one, vocabulary, merges or SentencePiece model, added
    tokens and every init option except paths and those that cannot change ids. For both,
    the class, special tokens, whether special tokens are split, and the ids of a fixed probe
    text (:data:`PROBE`), which catches options set after construction and code differences.
    The truncation and padding a call leaves on a fast backend are left out, so the
    fingerprint is the same before and after any ``encode``.
    """
    payload = {
        "class": f"{type(tok).__module__}.{type(tok).__qualname__}",
        "definition": _definition(tok),
        "special_tokens": tok.special_tokens_map,
        "split_special_tokens": getattr(tok, "split_special_tokens", None),
        "probe_ids": _probe_ids(tok),
    }
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(payload, sort_keys=True, default=_plain).encode())
    return h.hexdigest()
