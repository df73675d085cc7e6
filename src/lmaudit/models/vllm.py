"""vLLM backend: fast scoring of token log-probabilities and fast generation, on a GPU.

:class:`VLLMModel` implements the core :class:`~lmaudit.models.base.LanguageModel` contract
over a ``vllm.LLM`` engine, for the audits that need nothing more: scoring, the logits-only
membership attacks except Min-K%++, dataset inference, the paired test, extraction,
knowledge, copying. What vLLM cannot give, it does not pretend to:

- **vocab_stats**: vLLM returns the log-probabilities of chosen tokens (and a few top-k),
  not the whole next-token distribution, so ``vocab_mean``, ``vocab_std`` and ``entropy`` are
  NaN and Min-K%++ is refused before any work (HFModel computes them).
- **logits_processors**: vLLM's processors are loaded once per engine and enabled per request
  through ``extra_args``; lmaudit's (watermarks, MemFree, R-CAD, top-k noise) are objects
  passed per ``generate`` call, so a non-empty ``logits_processor`` is refused.
- **gradients**, **prompt_search**, **predictions**: no weights or raw logits in this process.

``vllm`` is imported only when a model is built (``pip install 'lmaudit[vllm]'``), so this
module imports, and ``backends_with`` can name the backends, on machines without it.
Tokenising is the Hugging Face tokenizer's, exactly as :class:`~lmaudit.models.hf.HFModel`
does it, and the fingerprint is HFModel's ``file:`` identity of the same files, so the score
cache and provenance agree across the two backends.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmaudit.models.base import CapabilityError, GenerationConfig, TokenStats, backends_with
from lmaudit.models.hf import _first_id, check_dtype, check_sequences, context_length, locate_model
from lmaudit.models.identity import file_fingerprint, tokenizer_fingerprint, weight_files

INSTALL = "pip install 'lmaudit[vllm]'"


def import_vllm():
    """The ``vllm`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as err:
        raise ImportError(f"the vLLM backend needs the vllm package, which is not installed ({INSTALL}; "
                          f"official builds are CUDA-only): {err}") from None


def _checkpoint_dtype(config) -> str:
    """The dtype ``from_pretrained(dtype="auto")`` loads: the config's, else float32."""
    held = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    return str(held).removeprefix("torch.")


def _device(device: str) -> str:
    """vLLM runs on the platform it was built for and picks the GPU itself: only auto, cuda,
    cuda:0 and cpu are meaningful here."""
    if device in ("auto", "cuda", "cuda:0", "cpu"):
        return device
    if device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: vLLM uses the first GPU it can see; choose it with "
                         f"CUDA_VISIBLE_DEVICES={device.partition(':')[2]} and --device cuda")
    raise ValueError(f"device must be auto, cuda or cpu for the vLLM backend, got {device!r}")


class VLLMModel:
    """A ``vllm.LLM`` engine and its Hugging Face tokenizer behind the core contract.

    Build it with :meth:`from_pretrained`; the constructor wraps an engine you already have
    (``config`` is the model's ``transformers`` configuration, read for BOS, EOS and sizes).

    Args:
        llm: The engine (anything with vLLM's ``LLM.generate``).
        tokenizer: The model's ``transformers`` tokenizer.
        config: The model's ``transformers`` configuration.
        name: How results name the model.
        dtype: The dtype the engine holds the weights in (recorded in provenance).
        device: The device the engine runs on (recorded in provenance).
        fingerprint: The weights' identity (:func:`lmaudit.models.identity.file_fingerprint`).
        max_length: The engine's ``max_model_len`` (None: the configuration's context length).
        batch_size: Sequences per call the audits hand over (vLLM schedules them itself).

    Example:
        >>> lm = VLLMModel.from_pretrained("path/to/model", dtype="bfloat16")  # doctest: +SKIP
        >>> lm.token_stats([[lm.bos_token_id, *lm.encode(["Hello world"])[0]]], [1])  # doctest: +SKIP
    """

    def __init__(self, llm, tokenizer, config, *, name: str, dtype: str, device: str = "cuda",
                 fingerprint: str | None = None, max_length: int | None = None, batch_size: int = 16):
        self.llm = llm
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.vocab_size = int(text_config.vocab_size)
        # The same rules as HFModel: GPT-2 and Pythia have no BOS; their BOS is their EOS.
        self.eos_token_id = _first_id(tokenizer.eos_token_id, getattr(config, "eos_token_id", None))
        self.bos_token_id = _first_id(tokenizer.bos_token_id, self.eos_token_id)
        self.max_length = max_length or context_length(text_config, tokenizer, name=name)
        self._fingerprint = fingerprint

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        dtype: str = "float32",
        device: str = "auto",
        trust_remote_code: bool = False,
        revision: str | None = None,
        batch_size: int = 16,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
    ) -> "VLLMModel":
        """Start a vLLM engine on a local folder or hub model (safetensors weights only).

        Args:
            name_or_path: As for :meth:`lmaudit.models.hf.HFModel.from_pretrained`.
            dtype: "float32", "bfloat16", "float16" or "auto" (the checkpoint's own, resolved
                here and passed explicitly: vLLM's own "auto" would turn float32 into half).
            device: "auto", "cuda" or "cpu" (a CPU build of vLLM); vLLM picks the GPU itself.
            trust_remote_code: Run code shipped with the checkpoint. Off unless asked.
            revision: Hub revision (branch, tag or commit).
            batch_size: Recorded; vLLM batches by its own scheduler.
            max_model_len: The engine's context length (None: the model's); a shorter one
                saves KV-cache memory.
            gpu_memory_utilization: Share of GPU memory vLLM may take (weights and KV cache).

        Raises:
            ImportError: vllm is not installed.
            OSError: no such folder, or no safetensors weights in it.
            ValueError: an invalid dtype or device.
        """
        from transformers import AutoConfig, AutoTokenizer

        check_dtype(dtype)
        device = _device(device)
        where = locate_model(name_or_path, revision=revision)
        if Path(where).is_dir() and weight_files(where) is None:  # before the engine's minute of start-up
            raise OSError(f"{name_or_path}: no safetensors weights (model.safetensors or its index); "
                          "lmaudit never loads pickled weights")
        vllm = import_vllm()
        try:
            platforms = importlib.import_module("vllm.platforms")
        except ImportError:
            platforms = getattr(vllm, "platforms", None)
        kind = getattr(getattr(platforms, "current_platform", None), "device_type", None)  # what this build runs on
        if kind and device != "auto" and device.partition(":")[0] != kind:
            raise ValueError(f"device {device!r}: this vllm build runs on {kind}")
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        held = _checkpoint_dtype(config) if dtype == "auto" else dtype
        llm = vllm.LLM(
            model=str(name_or_path),
            tokenizer=str(name_or_path),
            revision=revision,
            dtype=held,  # explicit: vLLM's "auto" downcasts float32 checkpoints
            trust_remote_code=trust_remote_code,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            load_format="safetensors",  # never unpickle weights
            generation_config="vllm",  # neutral defaults, not the checkpoint's (as HFModel does)
            seed=0,
        )
        on = kind or ("cuda" if device == "auto" else device.partition(":")[0])
        fingerprint = file_fingerprint(str(name_or_path), dtype=held, revision=revision,
                                       trust_remote_code=trust_remote_code)
        if fingerprint is None:
            raise OSError(f"{name_or_path}: cannot find the safetensors files vLLM loaded, so the model has no "
                          "identity for the score cache and provenance")
        lm = cls(llm, tokenizer, config, name=str(name_or_path), dtype=held, device=on, fingerprint=fingerprint,
                 max_length=max_model_len, batch_size=batch_size)
        lm.load_spec = {"backend": "vllm", "name_or_path": where,  # how an engine worker loads the same
                        "dtype": dtype, "device": device, "trust_remote_code": trust_remote_code, "revision": revision,
                        "batch_size": batch_size, "max_model_len": max_model_len,
                        "gpu_memory_utilization": gpu_memory_utilization}
        return lm

    # ----------------------------------------------------------------- identity
    def fingerprint(self) -> str:
        """The ``file:`` identity :class:`~lmaudit.models.hf.HFModel` gives the same files and dtype."""
        if self._fingerprint is None:
            raise ValueError(f"{self.name}: no fingerprint given (build the model with from_pretrained)")
        return self._fingerprint

    def tokenizer_fingerprint(self) -> str:
        return tokenizer_fingerprint(self.tokenizer)

    # ---------------------------------------------------------------- tokenising
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # ------------------------------------------------------------------- scoring
    def token_stats(
        self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], *, padding_side: str = "right"
    ) -> list[TokenStats]:
        """Log-probabilities of ``seq[score_from:]`` of each sequence, from one engine call
        (nothing is padded, so ``padding_side`` changes nothing). ``vocab_mean``,
        ``vocab_std`` and ``entropy`` are NaN: vLLM does not give the whole distribution.

        vLLM refuses a prompt that leaves no room for one generated token, so a window of
        the full context length could not be sent whole. Each sequence goes without its last
        token: the prompt log-probabilities (``prompt_logprobs=0``: the actual token of each
        position) score the others, and the one generated step, asked for that token's
        log-probability (``logprob_token_ids``, from the raw logits), scores the last.
        """
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        check_sequences(sequences, score_from, max_length=self.max_length)
        todo = [i for i, (seq, start) in enumerate(zip(sequences, score_from)) if start < len(seq)]
        out = [_empty() for _ in sequences]
        if not todo:
            return out
        vllm = import_vllm()
        params = [vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, logprob_token_ids=[int(sequences[i][-1])],
                                      detokenize=False) for i in todo]
        prompts = [vllm.TokensPrompt(prompt_token_ids=[int(t) for t in sequences[i][:-1]]) for i in todo]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        if len(outputs) != len(todo):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(todo)} sequences")
        for i, o in zip(todo, outputs):
            out[i] = _stats(sequences[i], score_from[i], o)
        return out

    # ---------------------------------------------------------------- generation
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig = GenerationConfig(),
        *,
        logits_processor=None,
        batch_size: int | None = None,
    ) -> list[list[int]]:
        """Continue each prompt; returns only the new tokens, cut after the first EOS.

        Greedy decoding is vLLM's temperature 0; sampling gets each prompt its own seed
        (``config.seed`` + its index), so a prompt's sample does not depend on the others.
        ``batch_size`` is ignored (vLLM schedules all prompts at once).

        Raises:
            CapabilityError: a non-empty ``logits_processor`` (vLLM loads processors per
                engine, not per call), naming the backends that apply them.
        """
        if logits_processor:
            raise CapabilityError(
                f"{type(self).__name__} cannot apply lmaudit's logits processors (vLLM loads its processors once "
                f"per engine, not per generate call); backends that can: {', '.join(backends_with('logits_processors'))}")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (use the BOS token for an empty prompt)")
        if not prompts:
            return []
        if config.max_new_tokens <= 0:
            return [[] for _ in prompts]
        vllm = import_vllm()
        eos = self.eos_token_id if config.stop_at_eos else None
        params = [vllm.SamplingParams(**sampling_args(config, eos, seed=config.seed + i)) for i in range(len(prompts))]
        outputs = self.llm.generate([vllm.TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts], params,
                                    use_tqdm=False)
        out = []
        for o in outputs:
            new = [int(t) for t in o.outputs[0].token_ids]
            if eos is not None and eos in new:
                new = new[: new.index(eos) + 1]
            out.append(new)
        return out


def sampling_args(config: GenerationConfig, eos: int | None, *, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for one prompt under ``config``.

    EOS handling is lmaudit's, not the checkpoint's: vLLM's own EOS check is off
    (``ignore_eos``) and ``eos`` (None: run to max_new_tokens) is the only stop token.

    >>> sampling_args(GenerationConfig(max_new_tokens=4), 2, seed=0)["temperature"]
    0.0
    >>> a = sampling_args(GenerationConfig(do_sample=True, top_k=0, temperature=0.7), None, seed=5)
    >>> a["top_k"], a["seed"], a["stop_token_ids"]
    (-1, 5, [])
    """
    args: dict[str, Any] = {"max_tokens": config.max_new_tokens, "ignore_eos": True,
                            "stop_token_ids": [] if eos is None else [eos], "detokenize": False}
    if not config.do_sample:
        return {**args, "temperature": 0.0}
    return {**args, "temperature": config.temperature, "top_k": config.top_k if config.top_k > 0 else -1,
            "top_p": config.top_p, "seed": seed}


def _empty() -> TokenStats:
    return TokenStats(np.zeros(0, np.int32), *(np.zeros(0, np.float32) for _ in range(4)))


def _stats(seq: Sequence[int], start: int, output) -> TokenStats:
    """TokenStats of ``seq[start:]`` from the RequestOutput of the prompt ``seq[:-1]``.

    Its ``prompt_logprobs`` hold one dict per prompt position (token id -> Logprob; None at
    position 0, which nothing predicts): positions ``start`` … ``len(seq) − 2``. The first
    generated step's ``logprobs`` dict holds the asked-for last token, position ``len(seq) − 1``.
    """
    positions = output.prompt_logprobs
    if positions is None or len(positions) != len(seq) - 1:
        got = "no" if positions is None else len(positions)
        raise RuntimeError(f"vLLM returned {got} prompt log-probabilities for a prompt of {len(seq) - 1} tokens")
    steps = output.outputs[0].logprobs if output.outputs else None
    positions = [*positions, steps[0] if steps else None]
    targets = [int(t) for t in seq[start:]]
    logprob = np.empty(len(targets), dtype=np.float32)
    for i, (t, token) in enumerate(zip(range(start, len(seq)), targets)):
        entry = positions[t].get(token) if positions[t] is not None else None
        if entry is None:
            raise RuntimeError(f"vLLM gave no log-probability for token {token} at position {t}")
        logprob[i] = entry.logprob
    nan = np.full(len(targets), np.nan, dtype=np.float32)
    return TokenStats(np.asarray(targets, dtype=np.int32), logprob, nan, nan.copy(), nan.copy())
