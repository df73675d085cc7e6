"""Hugging Face backend: any ``AutoModelForCausalLM`` behind the :class:`LanguageModel` interface."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lmaudit.models.base import VOCAB_STAT_FIELDS, GenerationConfig, TokenStats
from lmaudit.models.identity import ModelIdentity, tokenizer_fingerprint, weight_files
from lmaudit.ops.kernel import shifted_stats
from lmaudit.ops.padding import pad_batch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _first_id(*candidates) -> int | None:
    """The first id given; configs may hold a list of EOS ids (Llama 3), of which we use the first."""
    for c in candidates:
        if isinstance(c, (list, tuple)):
            c = c[0] if c else None
        if c is not None:
            return int(c)
    return None


_DEVICE = re.compile(r"cpu|mps|auto|cuda(:\d+)?")


def check_dtype(dtype: str) -> None:
    """Raise ValueError unless ``dtype`` is one :meth:`HFModel.from_pretrained` takes."""
    if dtype != "auto" and dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)} or auto, got {dtype!r}")


def resolve_device(device: str) -> str:
    """The torch device for ``device`` ("auto": cuda when available, else cpu).

    Raises:
        ValueError: ``device`` is not cpu, cuda, cuda:N, mps or auto, or names hardware
            this PyTorch cannot use (a CPU-only build, a GPU index beyond those visible).
    """
    if not _DEVICE.fullmatch(device):
        hint = " (for a GPU: cuda, or cuda:N)" if device.lower() in ("gpu", "nvidia") else ""
        raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, got {device!r}{hint}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "is a CPU-only build" if torch.version.cuda is None else "sees no GPU"
            raise ValueError(f"device {device!r}: this PyTorch ({torch.__version__}) {why}; use cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: PyTorch sees {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps': this PyTorch cannot use Apple's MPS here; use cpu")
    return device


def check_fetchable(name: str, *, revision: str | None = None) -> None:
    """Fail at once, with what to do, if hub model ``name`` cannot be had: not in the local
    Hugging Face cache while offline (HF_HUB_OFFLINE) or while the hub cannot be reached.
    Without this, loading retries the hub for about a minute before failing.

    Raises:
        OSError: The model cannot be loaded from the cache and the hub does not answer
            (or has no such model).
    """
    import huggingface_hub
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
            return  # in the local cache: transformers loads it from there
    except ValueError:  # not a valid repo id
        raise OSError("neither a local folder nor a Hugging Face model name") from None
    get = f"download it first (`hf download {name}`, online) or pass a local folder"
    if constants.HF_HUB_OFFLINE:
        raise OSError(f"not a local folder, and not in the Hugging Face cache while HF_HUB_OFFLINE is set: {get}")
    try:
        huggingface_hub.model_info(name, revision=revision, timeout=10)
    except GatedRepoError:
        return  # transformers says how to get access
    except RepositoryNotFoundError:
        raise OSError("neither a local folder nor a model on the Hugging Face hub "
                      "(a private or gated one needs `hf auth login`)") from None
    except HfHubHTTPError:
        return  # the hub answered; transformers reports anything still wrong
    except Exception as err:  # noqa: BLE001 - the HTTP client's network errors have no common base we can name
        raise OSError(f"not a local folder, not in the Hugging Face cache, and the hub cannot be reached "
                      f"({type(err).__name__}): {get}") from None


def context_length(config, tokenizer, *, name: str) -> int:
    """A model's context length from its configuration, else its tokenizer's ``model_max_length``."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 1_000_000:  # tokenizers use 1e30 for "unknown"
        return value
    raise ValueError(f"cannot tell the context length of {name}; set ScoringPolicy.max_length")


def check_sequences(sequences: Sequence[Sequence[int]], score_from: Sequence[int], *, max_length: int) -> None:
    """Raise ValueError unless every ``score_from`` lies in [1, len(seq)] and every sequence fits."""
    for seq, start in zip(sequences, score_from, strict=True):
        if not 1 <= start <= len(seq):
            raise ValueError(f"score_from must lie in [1, {len(seq)}], got {start}")
        if len(seq) > max_length:
            raise ValueError(f"sequence of {len(seq)} tokens exceeds the context length {max_length}")


def locate_model(name_or_path: str, *, revision: str | None = None) -> str:
    """Check that a model can be had, before any loading; return how an engine worker names it:
    a local folder by its absolute path (a worker need not share this process's working
    directory), a hub name as it is.

    Raises:
        OSError: a path that is no folder (transformers would call it a malformed hub name),
            or a hub model that cannot be had (see :func:`check_fetchable`).
    """
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return str(folder.resolve())
    if str(name_or_path).startswith((".", "/", "~")):
        raise OSError(f"{name_or_path}: no such model directory")
    check_fetchable(str(name_or_path), revision=revision)
    return str(name_or_path)


def padded_token_stats(sequences: Sequence[Sequence[int]], score_from: Sequence[int], logits_of, *, pad_token_id: int,
                       max_length: int, padding_side: str = "right") -> list[TokenStats]:
    """What every backend's ``token_stats`` does around its forward pass: check the sequences,
    pad them into one batch, run ``logits_of(ids, mask, positions) -> (B, T, V)`` once, and
    split the kernel's statistics back into one :class:`TokenStats` per sequence."""
    if not sequences:
        return []
    check_sequences(sequences, score_from, max_length=max_length)
    ids, mask, positions, offsets = pad_batch(sequences, pad_token_id=pad_token_id, padding_side=padding_side)
    score_mask = torch.zeros_like(mask, dtype=torch.bool)
    for i, (seq, start) in enumerate(zip(sequences, score_from)):
        score_mask[i, offsets[i] + start : offsets[i] + len(seq)] = True
    logits = logits_of(ids, mask, positions)  # (B, T, V)
    stats, targets, b = shifted_stats(logits, ids.to(logits.device), score_mask.to(logits.device))  # each (N_total,)
    # Rows come out sequence by sequence (row-major), so splitting by counts is exact.
    counts = torch.bincount(b, minlength=len(sequences)).tolist()
    cols = {
        "token_ids": targets.to(torch.int32).cpu().numpy(),
        **{f: getattr(stats, f).cpu().numpy() for f in ("logprob", "vocab_mean", "vocab_std", "entropy")},
    }
    split = {f: np.split(v, np.cumsum(counts)[:-1]) for f, v in cols.items()}
    return [TokenStats(**{f: split[f][i] for f in TokenStats.FIELDS}) for i in range(len(sequences))]


class HFModel:
    """A causal LM from ``transformers`` with its tokenizer: the core :class:`LanguageModel`
    contract plus the :class:`Gradients` and :class:`PromptSearch` capabilities.

    Build it from a name or local path with :meth:`from_pretrained`, or wrap a model and
    tokenizer you already loaded (audits never load models themselves).

    Example:
        >>> lm = HFModel.from_pretrained("path/to/model", dtype="bfloat16")  # doctest: +SKIP
        >>> lm.token_stats([[lm.bos_token_id, *lm.encode(["Hello"])[0]]], [1])  # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, *, name: str | None = None, batch_size: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size
        vocab = model.get_input_embeddings().num_embeddings
        self.vocab_size = vocab
        # GPT-2 and Pythia have no separate BOS; their BOS is the end-of-text token.
        self.eos_token_id = _first_id(tokenizer.eos_token_id, model.config.eos_token_id)
        self.bos_token_id = _first_id(tokenizer.bos_token_id, self.eos_token_id)
        # Padding is masked by length, so the pad id only has to be an id the embedding has
        # (a pad token added to the tokenizer without resizing the model would not be).
        self.pad_token_id = next(i for i in (_first_id(tokenizer.pad_token_id), self.eos_token_id, 0) if i is not None and i < vocab)
        self.max_length = self._context_length()
        params = inspect.signature(model.forward).parameters
        # Wrappers (torch.compile, PEFT) expose forward(*args, **kwargs) and pass position ids on.
        self._accepts_position_ids = "position_ids" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        self._identity = ModelIdentity(model)  # from_pretrained replaces it with one that knows the files
        self._prompt_tokens: torch.Tensor | None = None
        self.load_spec: dict | None = None  # set by from_pretrained (see lmaudit.engines.load_spec)

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
    ) -> "HFModel":
        """Load a model and its tokenizer by hub name or local path (safetensors weights only).

        Args:
            name_or_path: A local directory written by ``save_pretrained`` or a hub name
                (resolved from the local cache when offline).
            dtype: "float32", "bfloat16", "float16" or "auto" (the checkpoint's own).
                Statistics are computed in float32 either way.
            device: "cpu", "cuda", "cuda:N", "mps" or "auto" (see :func:`resolve_device`).
            trust_remote_code: Run code shipped with the checkpoint. Off unless asked.
            revision: Hub revision (branch, tag or commit).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_dtype(dtype)
        requested, device = device, resolve_device(device)
        where = locate_model(name_or_path, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        model, loading = AutoModelForCausalLM.from_pretrained(
            name_or_path,
            revision=revision,
            dtype=_DTYPES.get(dtype, "auto"),
            use_safetensors=True,  # never unpickle weights
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
        )
        model = model.to(device)
        lm = cls(model, tokenizer, name=str(name_or_path), batch_size=batch_size)
        # How an engine worker loads the same model (lmaudit.engines): a local folder by its
        # absolute path, since a worker need not share this process's working directory.
        lm.load_spec = {"backend": "hf", "name_or_path": where, "dtype": dtype, "device": requested, "trust_remote_code": trust_remote_code,
                        "revision": revision, "batch_size": batch_size}
        # The files are the weights' identity only if every weight came from them.
        exact = not (loading["missing_keys"] or loading["mismatched_keys"])
        lm._identity = ModelIdentity(model, source=weight_files(name_or_path, revision=revision) if exact else None)
        return lm

    # ----------------------------------------------------------------- identity
    def _context_length(self) -> int:
        return context_length(self.model.config, self.tokenizer, name=self.name)

    def fingerprint(self) -> str:
        """Identity of the weights and configuration: ``file:…`` or ``tensor:…``.

        ``file:`` for a model loaded by :meth:`from_pretrained` and unchanged since (from
        the safetensors files' sha256, computed once); ``tensor:`` for any other, or once
        its weights change in memory (a hash of the tensors, memoised until they change).
        See :mod:`lmaudit.models.identity`.
        """
        return self._identity.fingerprint()

    def forget_fingerprint(self) -> None:
        """Hash the weights afresh at the next :meth:`fingerprint`. Needed only after a write
        through ``p.data`` to a few elements, which PyTorch's version counters do not see (see
        :class:`lmaudit.models.identity.ModelIdentity`)."""
        self._identity.forget()

    def tokenizer_fingerprint(self) -> str:
        """Hash of everything about the tokenizer that decides token ids (not its truncation or padding state)."""
        return tokenizer_fingerprint(self.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    # ---------------------------------------------------------------- tokenising
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # ------------------------------------------------------------------- scoring
    @torch.inference_mode()
    def token_stats(
        self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], *, padding_side: str = "right"
    ) -> list[TokenStats]:
        """Statistics for ``seq[score_from:]`` of each sequence, in one forward pass.

        Args:
            sequences: Token id sequences, each at most ``max_length`` long.
            score_from: Per sequence, the first position to score (at least 1).
            padding_side: "right" or "left"; results agree up to float error.
        """
        if padding_side == "left" and not self._accepts_position_ids:
            raise ValueError(f"{type(self.model).__name__}.forward takes no position_ids; left padding would shift positions")

        def logits_of(ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            kwargs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
            if self._accepts_position_ids:
                kwargs["position_ids"] = positions.to(self.device)
            return self.model(**kwargs, use_cache=False).logits  # (B, T, V)

        return padded_token_stats(sequences, score_from, logits_of, pad_token_id=self.pad_token_id,
                                  max_length=self.max_length, padding_side=padding_side)

    @torch.inference_mode()
    def top_predictions(self, sequences: Sequence[Sequence[int]], score_from: Sequence[int]) -> list[np.ndarray]:
        """The argmax next token predicting ``seq[score_from:]`` of each sequence, one forward pass
        (right padding; :class:`~lmaudit.models.base.Predictions`)."""
        for seq, start in zip(sequences, score_from, strict=True):
            if not 1 <= start <= len(seq):
                raise ValueError(f"score_from must lie in [1, {len(seq)}], got {start}")
            if len(seq) > self.max_length:
                raise ValueError(f"sequence of {len(seq)} tokens exceeds the context length {self.max_length}")
        if not sequences:
            return []
        ids, mask, _, _ = pad_batch(sequences, pad_token_id=self.pad_token_id)
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False).logits
        top = logits.float().argmax(dim=-1).cpu()  # (B, T): position t predicts token t + 1
        return [top[i, start - 1 : len(seq) - 1].numpy().astype(np.int64)
                for i, (seq, start) in enumerate(zip(sequences, score_from))]

    def gradient_norms(self, windows: Sequence[tuple[Sequence[int], int]]) -> np.ndarray:
        """‖∇_θ L‖₂ for every parameter tensor, L the mean loss over one document's scored tokens.

        Args:
            windows: The document's forward windows ``(tokens, score_from)`` as
                :func:`lmaudit.scoring.score.plan_windows` makes them; L averages over all
                of their scored tokens, so a windowed document gets the gradient of its
                whole loss (accumulated window by window).

        Returns:
            (P,) float64 norms in ``named_parameters`` order (tied weights counted once).
            The model's ``.grad`` fields are left as they were found (None).
        """
        params = [p for _, p in self.model.named_parameters()]
        n_scored = sum(len(toks) - start for toks, start in windows)
        saved = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(True)
                p.grad = None
            for toks, start in windows:
                ids = torch.as_tensor([list(toks)], device=self.device)
                logits = self.model(input_ids=ids, use_cache=False).logits[0, :-1].float()  # (T-1, V)
                logp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]  # (T-1,)
                (-logp[start - 1 :].sum() / n_scored).backward()
            return np.array([p.grad.norm().item() if p.grad is not None else 0.0 for p in params])
        finally:
            for p, flag in zip(params, saved):
                p.grad = None
                p.requires_grad_(flag)

    # ------------------------------------------------------- prompt search (GCG)
    def input_embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight  # (R, d)

    def logits_from_embeddings(self, embeddings: torch.Tensor, *, last: int) -> torch.Tensor:
        try:  # compute the vocabulary projection only where it is needed
            logits = self.model(inputs_embeds=embeddings, use_cache=False, logits_to_keep=last).logits
        except TypeError:  # models without logits_to_keep
            logits = self.model(inputs_embeds=embeddings, use_cache=False).logits
        return logits[:, -last:].float()  # (B, last, R)

    def prompt_tokens(self) -> torch.Tensor:
        """(R,) bool over embedding rows: tokens a typed prompt can contain (see :class:`PromptSearch`)."""
        if self._prompt_tokens is None:
            tok = self.tokenizer
            n_rows = self.model.get_input_embeddings().num_embeddings
            ids = list(range(min(len(tok), n_rows)))
            texts = tok.batch_decode([[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            again = tok(texts, add_special_tokens=False)["input_ids"]
            ok = torch.zeros(n_rows, dtype=torch.bool)
            special = set(tok.all_special_ids)
            for i, text, ids_again in zip(ids, texts, again):
                ok[i] = i not in special and list(ids_again) == [i] and text != ""
            self._prompt_tokens = ok
        return self._prompt_tokens.clone()

    # ------------------------------------------------------------- capabilities
    def vocab_stat_fields(self) -> tuple[str, ...]:
        """The statistics computed over the whole vocabulary (:class:`~lmaudit.models.base.VocabStats`)."""
        return VOCAB_STAT_FIELDS

    def applies_logits_processors(self) -> bool:
        """``generate`` runs the caller's processors (:class:`~lmaudit.models.base.LogitsProcessors`)."""
        return True

    # ---------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig = GenerationConfig(),
        *,
        logits_processor=None,
        batch_size: int | None = None,
    ) -> list[list[int]]:
        """Continue each prompt; returns only the new tokens, cut after the first EOS.

        Args:
            prompts: Token id sequences (add BOS yourself, as the scoring policy does).
            config: Decoding options.
            logits_processor: A ``transformers.LogitsProcessorList`` (or list of
                processors) applied at every step, e.g. a watermark or a takedown filter.
            batch_size: Prompts per call to ``generate``; prompts are bucketed by length.
        """
        from transformers import GenerationConfig as HFGenerationConfig
        from transformers import LogitsProcessorList

        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (use the BOS token for an empty prompt)")
        bs = batch_size or self.batch_size
        eos = self.eos_token_id if config.stop_at_eos else None
        hf_config = HFGenerationConfig(
            max_new_tokens=config.max_new_tokens,
            min_new_tokens=0,
            do_sample=config.do_sample,
            temperature=config.temperature if config.do_sample else None,
            top_k=config.top_k if config.do_sample else None,
            top_p=config.top_p if config.do_sample else None,
            # An empty list, not None: None would fall back to the model's own EOS and stop.
            eos_token_id=eos if eos is not None else [],
            pad_token_id=self.pad_token_id,
        )
        processors = LogitsProcessorList(logits_processor or [])
        # generate() fills every option we leave unset from the checkpoint's own
        # generation_config (repetition penalty, banned words, min length...), which would
        # make "greedy" mean something different per model. Give it a neutral one.
        saved, self.model.generation_config = self.model.generation_config, HFGenerationConfig()
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[int]] = [[] for _ in prompts]
        try:
            for batch_no, start in enumerate(range(0, len(order), bs)):
                idx = order[start : start + bs]
                # Generation needs left padding: every row's next token comes at the same column.
                ids, mask, _, _ = pad_batch([prompts[i] for i in idx], pad_token_id=self.pad_token_id, padding_side="left")
                torch.manual_seed(config.seed + batch_no)
                gen = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=hf_config,
                    logits_processor=processors,
                )[:, ids.shape[1] :].tolist()
                for i, new in zip(idx, gen):
                    if eos is not None and eos in new:
                        new = new[: new.index(eos) + 1]
                    out[i] = new
        finally:
            self.model.generation_config = saved
        return out
