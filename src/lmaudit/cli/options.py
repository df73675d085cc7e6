"""Option groups that several subcommands share: the model, the scoring policy, the data files.

Each group is a dataclass whose fields are ``Annotated[type, typer.Option(...)]`` with their
defaults, declared once here. A command asks for a group by taking a parameter annotated with
it and decorating itself with :func:`option_groups`::

    @option_groups()
    def score(data: ..., out: OutDir, model: ModelOptions, scoring: ScoringOptions, inputs: DataOptions):
        lm = model.load()                 # the group turned into plain arguments at the edge
        policy = scoring.policy()

The decorator replaces each group parameter, in the signature typer reads (``__signature__``),
by the group's fields, so ``--help`` shows each option (under a panel named for its group), and
hands the function one instance per group. A field added to a group is an option of every
command that takes the group. A command that cannot honour a field leaves it out with
``omit``; the instance then holds the field's default.

Every decorated command also takes :class:`RunOptions` (``--quiet``, ``--overwrite``,
``--report``) without declaring it: the decorator sets them in :data:`lmaudit.cli.common.state`,
where ``say``, ``print_summary``, ``start_run`` and ``end_run`` read them. A group's checks (``__post_init__``) run before
the command's body, so an invalid value fails before any file is read or model loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, get_type_hints

import typer

from lmaudit.cli.common import QUIET_HELP, fail, say, state
from lmaudit.cli.loading import backend_class, check_backend, load_model, read

MODEL, SCORING, DATA, RUN, ENGINE = "Model", "Scoring policy", "Data files", "Run", "Engine"


class OptionGroup:
    """Base of the option groups; :func:`option_groups` expands parameters of its subclasses."""


@dataclass(frozen=True, kw_only=True)
class ModelOptions(OptionGroup):
    """How the audited model is loaded, and how many sequences go into one forward pass."""

    model: Annotated[str, typer.Option(
        "--model", "-m", help="Hugging Face model name or local path (safetensors).", rich_help_panel=MODEL)]
    backend: Annotated[str, typer.Option(
        help="hf (transformers: every audit) or vllm (fast scoring and generation on a GPU; needs the vllm extra; "
             "no Min-K%++, gradients, watermarking or logits-processor takedown methods).",
        rich_help_panel=MODEL)] = "hf"
    dtype: Annotated[str, typer.Option(
        help="float32, bfloat16, float16 or auto. Statistics are float32 regardless.", rich_help_panel=MODEL)] = "float32"
    device: Annotated[str, typer.Option(
        help="cpu, cuda, cuda:N, mps or auto (cuda when available, else cpu).", rich_help_panel=MODEL)] = "auto"
    trust_remote_code: Annotated[bool, typer.Option(
        help="Run code shipped with the checkpoint.", rich_help_panel=MODEL)] = False
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per forward pass.", rich_help_panel=MODEL)] = 16

    def __post_init__(self) -> None:
        from lmaudit.models.hf import check_dtype, resolve_device

        backend_class(self.backend)  # an unknown backend fails here, before anything is read
        check_dtype(self.dtype)
        if self.backend == "vllm":
            from lmaudit.models.vllm import _device

            _device(self.device)  # vLLM brings its own (CUDA) torch: this process's need not see the GPU
        else:
            resolve_device(self.device)  # a device this machine lacks fails here, not after the data is read

    def load(self, name: str | None = None, *, what: str = "model", batch_size: int | None = None):
        """The model ``name`` (default: --model) loaded with these options; exits with a message if it cannot be."""
        return load_model(name or self.model, what=what, dtype=self.dtype, device=self.device,
                          trust_remote_code=self.trust_remote_code, batch_size=batch_size or self.batch_size,
                          backend=self.backend)

    def require(self, *capabilities: str, audit: str) -> None:
        """Exit with a message, before any file is read or model loaded, if --backend lacks a capability."""
        check_backend(self.backend, *capabilities, audit=audit)


@dataclass(frozen=True, kw_only=True)
class EngineOptions(OptionGroup):
    """Where the model passes over the documents run: here, or on a Ray cluster (:mod:`lmaudit.engines`)."""

    engine: Annotated[str, typer.Option(
        help="local (this process) or ray (an actor pool, one model copy per GPU or CPU worker; "
             'pip install "lmaudit[ray]").', rich_help_panel=ENGINE)] = "local"
    ray_address: Annotated[Optional[str], typer.Option(
        envvar="RAY_ADDRESS", help="Ray cluster to join (default: $RAY_ADDRESS, else a Ray instance on this machine).",
        rich_help_panel=ENGINE)] = None
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Ray workers, each with its own model copy (default: one per GPU, or per CPU).",
        rich_help_panel=ENGINE)] = None

    def __post_init__(self) -> None:
        from lmaudit.engines import ENGINES

        if self.engine not in ENGINES:
            raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "local" and self.workers is not None:
            raise ValueError("--workers is an option of --engine ray")

    def get(self):
        """The engine these options name, the same object on every call (every model of a command
        on one engine); exits with a message if it cannot be had (Ray not installed)."""
        from lmaudit.engines import get_engine

        if "_engine" not in self.__dict__:  # frozen: cached by hand
            if self.engine == "local":
                engine = get_engine("local")
            else:
                try:
                    engine = get_engine("ray", address=self.ray_address, workers=self.workers)
                    engine.connect()  # an unreachable cluster fails here, before any file is read
                except (ImportError, ConnectionError) as err:
                    fail(str(err))
                state.driver_on_cpu = True
            object.__setattr__(self, "_engine", engine)
        return self.__dict__["_engine"]

    def wrap(self, lm):
        """``lm`` with its scoring and generation on this engine (itself for the local engine);
        a list or tuple of models: each of them, in a list."""
        from lmaudit.engines import on_engine

        try:
            if isinstance(lm, (list, tuple)):
                return [on_engine(m, self.get()) for m in lm]
            return on_engine(lm, self.get())
        except ValueError as err:
            fail(str(err))


@dataclass(frozen=True, kw_only=True)
class ScoringOptions(OptionGroup):
    """How texts become scored token sequences (a :class:`~lmaudit.models.base.ScoringPolicy`), and the score cache."""

    bos: Annotated[str, typer.Option(
        help="prepend: score every text token after a BOS; none: the first token is context only.",
        rich_help_panel=SCORING)] = "prepend"
    max_length: Annotated[Optional[int], typer.Option(
        help="Longest sequence fed to the model (default: its context length).", rich_help_panel=SCORING)] = None
    overflow: Annotated[str, typer.Option(
        help="Texts longer than max-length: window (score all), truncate, or error.", rich_help_panel=SCORING)] = "window"
    stride: Annotated[Optional[int], typer.Option(
        help="Sliding-window step (default: max-length // 2).", rich_help_panel=SCORING)] = None
    padding_side: Annotated[str, typer.Option(
        help="right or left; padding is always masked.", rich_help_panel=SCORING)] = "right"
    cache: Annotated[Optional[Path], typer.Option(
        help="Score cache (SQLite). Default: OUT/cache.sqlite, so a re-run resumes.", rich_help_panel=SCORING)] = None
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Do not read or write a cache.", rich_help_panel=SCORING)] = False

    def policy(self):
        """The ScoringPolicy these options give; exits with a message if they are invalid (no model needed)."""
        from lmaudit.models.base import ScoringPolicy

        try:
            return ScoringPolicy(bos=self.bos, max_length=self.max_length, overflow=self.overflow,
                                 stride=self.stride, padding_side=self.padding_side)
        except ValueError as err:
            fail(str(err))

    def cache_path(self, out: Path) -> Path | None:
        return None if self.no_cache else (self.cache or Path(out) / "cache.sqlite")


def check_policy(policy, lm) -> None:
    """Exit with a message if ``lm`` cannot honour ``policy`` (e.g. max-length beyond its context)."""
    try:
        policy.resolved(lm.max_length)
    except ValueError as err:
        fail(str(err))


@dataclass(frozen=True, kw_only=True)
class DataOptions(OptionGroup):
    """How the command's data files are read (every file it reads, with the same options)."""

    text_field: Annotated[str, typer.Option(
        help="Field (JSONL) or column (Parquet, datasets) holding the text.", rich_help_panel=DATA)] = "text"
    id_field: Annotated[str, typer.Option(
        help="Field holding the row id; rows are numbered by line when it is absent.", rich_help_panel=DATA)] = "id"
    fmt: Annotated[str, typer.Option(
        "--format", help="auto, jsonl, text, textdir, parquet or hf.", rich_help_panel=DATA)] = "auto"
    split: Annotated[Optional[str], typer.Option(
        help="Split of a saved `datasets` DatasetDict (applies to every file read).", rich_help_panel=DATA)] = None

    def args(self, **override: Any) -> dict:
        """Keyword arguments of :func:`lmaudit.cli.loading.read`."""
        return {"text_field": self.text_field, "id_field": self.id_field, "fmt": self.fmt, "split": self.split,
                **override}

    def read(self, path: Path, *, role: str, **override: Any) -> tuple[list, dict]:
        """Records of ``path`` and its provenance entry; exits with a message naming file and line if unreadable."""
        return read(path, role=role, **self.args(**override))

    def stream(self, path: Path, *, role: str) -> tuple[Any, dict]:
        """``path`` as a :class:`~lmaudit.data.RecordFile` to be read as it is used, and its
        provenance entry, for a JSONL file; for any other format, :meth:`read`.

        The JSONL file is read through once here, one line at a time, so a bad row fails
        before any model is loaded and the entry counts the rows; nothing is kept.
        """
        from lmaudit.data import DataError, RecordFile, data_fingerprint

        source = RecordFile(path, text_field=self.text_field, id_field=self.id_field, fmt=self.fmt, split=self.split)
        if not source.streamed or self.split is not None:  # read_records reads (or refuses) the rest
            return self.read(path, role=role)
        try:
            n_rows = sum(1 for _ in source)
        except DataError as err:
            fail(str(err))
        source = dataclasses.replace(source, rows=n_rows)  # so no engine has to count them again
        entry = {**data_fingerprint(path), "role": role, "text_field": self.text_field, "id_field": self.id_field,
                 "format": self.fmt, "split": self.split, "n_rows": n_rows}
        say(f"read {n_rows} {'row' if n_rows == 1 else 'rows'} from {path} ({role}; checked here, read again as scored)")
        return source, entry


@dataclass(frozen=True, kw_only=True)
class RunOptions(OptionGroup):
    """What every audit command takes (added by :func:`option_groups`): terminal output, and the --out folder."""

    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP, rich_help_panel=RUN)] = False
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the run of another command in --out (its results.json and the files it lists).",
        rich_help_panel=RUN)] = False
    report: Annotated[bool, typer.Option(
        "--report", help="At the end, also write OUT/report.html: the run as one self-contained HTML page "
                         "(what `lmaudit report OUT` writes).", rich_help_panel=RUN)] = False


def option_groups(*, omit: tuple[str, ...] = ()) -> Callable:
    """Expand the command's :class:`OptionGroup` parameters into their options (see the module doc).

    Args:
        omit: Fields that are not options of this command (they keep their defaults).
    """
    def decorate(fn: Callable) -> Callable:
        hints = get_type_hints(fn, include_extras=True)
        params: list[inspect.Parameter] = []
        groups: dict[str, tuple[type, list[str]]] = {}
        run = inspect.Parameter("_run", inspect.Parameter.KEYWORD_ONLY, annotation=RunOptions)
        for p in [*inspect.signature(fn).parameters.values(), run]:
            hint = hints.get(p.name, p.annotation)
            if not (isinstance(hint, type) and issubclass(hint, OptionGroup)):
                params.append(p.replace(annotation=hint, kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            group_hints = get_type_hints(hint, include_extras=True)
            names = [f.name for f in fields(hint) if f.name not in omit]
            groups[p.name] = (hint, names)
            for f in fields(hint):
                if f.name in names:
                    params.append(inspect.Parameter(
                        f.name, inspect.Parameter.KEYWORD_ONLY, annotation=group_hints[f.name],
                        default=inspect.Parameter.empty if f.default is MISSING else f.default))
        taken = [p.name for p in params]
        clashes = {n for n in taken if taken.count(n) > 1}
        if clashes:
            raise TypeError(f"{fn.__name__}: options declared twice: {', '.join(sorted(clashes))}")

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            try:
                for name, (group, names) in groups.items():
                    kwargs[name] = group(**{n: kwargs.pop(n) for n in names})
            except ValueError as err:
                fail(str(err))
            run_options = kwargs.pop("_run")
            state.quiet = state.quiet or run_options.quiet  # `lmaudit -q cmd` or `lmaudit cmd -q`
            state.driver_on_cpu = False  # until --engine ray says otherwise (EngineOptions.get)
            state.overwrite = run_options.overwrite
            state.report = run_options.report
            return fn(**kwargs)

        command.__signature__ = inspect.Signature(params, return_annotation=None)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
