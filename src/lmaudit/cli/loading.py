"""What the audit subcommands share: loading a model, reading data files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lmaudit.cli.common import fail, say, state

# The output folder of every audit command. Model, scoring and data options are groups: see cli/options.py.
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output directory: results.json, samples.jsonl.")]

if TYPE_CHECKING:
    from lmaudit.cli.options import DataOptions, ModelOptions


#: --backend values and their model classes ("module:attr"; importing one needs no optional package).
BACKEND_CLASSES = {"hf": "lmaudit.models.hf:HFModel", "vllm": "lmaudit.models.vllm:VLLMModel"}


def backend_class(backend: str) -> type:
    """The model class of a ``--backend`` value.

    Raises:
        ValueError: an unknown backend.
    """
    import importlib

    if backend not in BACKEND_CLASSES:
        raise ValueError(f"--backend must be {' or '.join(BACKEND_CLASSES)}, got {backend!r}")
    module, attr = BACKEND_CLASSES[backend].split(":")
    return getattr(importlib.import_module(module), attr)


def check_backend(backend: str, *capabilities: str, audit: str) -> None:
    """Exit with a message, before any file is read or model loaded, if ``backend`` lacks a
    capability the command needs (naming the backends that have it)."""
    from lmaudit.models.base import require

    try:
        require(backend_class(backend), *capabilities, audit=audit)
    except ValueError as err:  # CapabilityError included
        fail(f"--backend {backend}: {err}")


def load_model(name: str, *, dtype: str, device: str, trust_remote_code: bool, batch_size: int, what: str = "model",
               backend: str = "hf"):
    """The model ``name``: an :class:`HFModel` (or a :class:`~lmaudit.models.vllm.VLLMModel` with
    ``backend="vllm"``), or a :class:`~lmaudit.models.whp.WHPModel` for a folder that
    ``lmaudit unlearn --method whp`` wrote (its base loaded with the same options)."""
    from lmaudit.models.hf import HFModel
    from lmaudit.models.whp import WHPModel, is_whp_dir

    cls = backend_class(backend) if backend in BACKEND_CLASSES else None
    if cls is None:
        fail(f"--backend must be {' or '.join(BACKEND_CLASSES)}, got {backend!r}")
    if state.driver_on_cpu and cls is not HFModel:
        fail(f"--backend {backend} cannot run with --engine ray: each vLLM engine schedules a whole GPU, and this "
             "process would hold one too; use --backend hf with --engine ray, or --backend vllm with --engine local "
             "on each GPU machine")
    # With --engine ray this process's copy goes on the CPU; the workers load theirs on `device`.
    here = "cpu" if state.driver_on_cpu else device
    try:
        if is_whp_dir(name):
            if cls is not HFModel:
                fail(f"cannot load {what} {name!r} with --backend {backend}: it is a Who's Harry Potter combination "
                     "(lmaudit unlearn --method whp) whose two models are combined at every step, which only "
                     "--backend hf computes")
            lm = WHPModel.from_pretrained(name, dtype=dtype, device=here, trust_remote_code=trust_remote_code,
                                          batch_size=batch_size)
        else:
            lm = cls.from_pretrained(name, dtype=dtype, device=here, trust_remote_code=trust_remote_code,
                                     batch_size=batch_size)
    except (ImportError, OSError, ValueError) as err:
        fail(f"cannot load {what} {name!r}: {' '.join(str(err).split())}")  # one line, whatever the library wrote
    if lm.load_spec:
        lm.load_spec = {**lm.load_spec, "device": device}
    return lm


def load_perturber(name: str, *, device: str):
    """A masked-LM neighbour generator for the neighbourhood attack."""
    from lmaudit.membership.perturb import MaskedLMPerturber

    try:
        return MaskedLMPerturber.from_pretrained(name, device="cpu" if device == "auto" else device)
    except (OSError, ValueError) as err:
        fail(f"cannot load masked LM {name!r}: {err}")


def read(path: Path, *, text_field: str, id_field: str, fmt: str, role: str, split: str | None = None,
         carry_errors: bool = False) -> tuple[list, dict]:
    """Records of a data file and its provenance entry (path, sha256, fields, split, rows, role);
    ``carry_errors``: see :func:`lmaudit.data.read_records`."""
    from lmaudit.data import DataError, data_fingerprint, read_records

    try:
        records = read_records(path, text_field=text_field, id_field=id_field, fmt=fmt, split=split,
                               carry_errors=carry_errors)
        entry = {**data_fingerprint(path), "role": role, "text_field": text_field, "id_field": id_field,
                 "format": fmt, "split": split, "n_rows": len(records)}
    except DataError as err:
        fail(str(err))
    upstream = sum(1 for r in records if r.error is not None)
    if upstream:
        entry["n_upstream_errors"] = upstream
    carried = f"; {upstream} upstream error {'row' if upstream == 1 else 'rows'}" if upstream else ""
    say(f"read {len(records)} {'row' if len(records) == 1 else 'rows'} from {path} ({role}{carried})")
    return records, entry


def check_attacks(attacks: str | None, *, reference_model: list[str] | None, reference_corpus: Path | None,
                  backend: str = "hf") -> None:
    """Exit with a message if --attacks names an unknown attack, one whose input is not given, or
    one that needs a capability the --backend lacks: before any file is read or model loaded."""
    from lmaudit.membership.run import check_references, select_attacks

    available = [name for name, given in (("reference_model", reference_model), ("reference_corpus", reference_corpus))
                 if given]
    try:
        chosen = select_attacks(attacks, available=available, model=backend_class(backend))
        check_references(chosen, len(reference_model or []))
    except (KeyError, ValueError) as err:
        fail(f"--attacks: {str(err).strip(chr(34))}")


def attack_resources(*, reference_model: list[str] | None, reference_corpus: Path | None, recall_prefix: Path | None,
                     mlm_perturber: str | None, inputs: DataOptions, model: ModelOptions) -> tuple[dict, list[dict]]:
    """The optional inputs of membership and dataset inference, loaded; and their data entries.

    Returns:
        (keyword arguments for ``run_membership`` / ``run_dataset_inference``, provenance entries).
    """
    resources, entries = {}, []
    for key, path, role in (("reference_corpus", reference_corpus, "reference corpus"),
                            ("recall_prefix", recall_prefix, "ReCaLL prefix")):
        if path:
            resources[key], entry = inputs.read(path, role=role)
            entries.append(entry)
    if reference_model:  # one model, or several (one reference attack per model)
        refs = [model.load(name, what="reference model") for name in reference_model]
        resources["reference_model"] = refs[0] if len(refs) == 1 else refs
    if mlm_perturber:
        resources["perturber"] = load_perturber(mlm_perturber, device=model.device)
    return resources, entries
