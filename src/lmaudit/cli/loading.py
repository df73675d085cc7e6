"""What the audit subcommands share: loading a model, reading data files, a scoring policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import fail, say

# Options every audit command takes, declared once (use as ``batch_size: BatchSize = 16``).
ModelName = Annotated[str, typer.Option("--model", "-m", help="Hugging Face model name or local path (safetensors).")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output directory: results.json, samples.jsonl.")]
TextField = Annotated[str, typer.Option(help="Field (JSONL) or column (Parquet, datasets) holding the text.")]
IdField = Annotated[str, typer.Option(help="Field holding the row id; rows are numbered by line when it is absent.")]
Format = Annotated[str, typer.Option("--format", help="auto, jsonl, text, textdir, parquet or hf.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Sequences per forward pass.")]
DType = Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto. Statistics are float32 regardless.")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")]
Bos = Annotated[str, typer.Option(help="prepend: score every text token after a BOS; none: the first token is context only.")]
MaxLength = Annotated[Optional[int], typer.Option(help="Longest sequence fed to the model (default: its context length).")]
Overflow = Annotated[str, typer.Option(help="Texts longer than max-length: window (score all), truncate, or error.")]
Stride = Annotated[Optional[int], typer.Option(help="Sliding-window step (default: max-length // 2).")]
CachePath = Annotated[Optional[Path], typer.Option(help="Score cache (SQLite). Default: OUT/cache.sqlite, so a re-run resumes.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not read or write a cache.")]
TrustRemoteCode = Annotated[bool, typer.Option(help="Run code shipped with the checkpoint.")]


def load_model(name: str, *, dtype: str, device: str, trust_remote_code: bool, batch_size: int, what: str = "model"):
    from lmaudit.models.hf import HFModel

    try:
        return HFModel.from_pretrained(name, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                                       batch_size=batch_size)
    except (OSError, ValueError) as err:
        fail(f"cannot load {what} {name!r}: {err}")


def load_perturber(name: str, *, device: str):
    """A masked-LM neighbour generator for the neighbourhood attack."""
    from lmaudit.membership.perturb import MaskedLMPerturber

    try:
        return MaskedLMPerturber.from_pretrained(name, device="cpu" if device == "auto" else device)
    except (OSError, ValueError) as err:
        fail(f"cannot load masked LM {name!r}: {err}")


def read(path: Path, *, text_field: str, id_field: str, fmt: str, role: str) -> tuple[list, dict]:
    """Records of a data file and its provenance entry (path, sha256, fields, rows, role)."""
    from lmaudit.data import DataError, data_fingerprint, read_records

    try:
        records = read_records(path, text_field=text_field, id_field=id_field, fmt=fmt)
        entry = {**data_fingerprint(path), "role": role, "text_field": text_field, "id_field": id_field,
                 "format": fmt, "n_rows": len(records)}
    except DataError as err:
        fail(str(err))
    say(f"read {len(records)} {role} documents from {path}")
    return records, entry


def policy_or_fail(lm, *, bos: str, max_length: int | None, overflow: str, stride: int | None):
    from lmaudit.models.base import ScoringPolicy

    try:
        policy = ScoringPolicy(bos=bos, max_length=max_length, overflow=overflow, stride=stride)
        policy.resolved(lm.max_length)  # fail before any work
    except ValueError as err:
        fail(str(err))
    return policy


def attack_resources(*, reference_model: str | None, reference_corpus: Path | None, recall_prefix: Path | None,
                     mlm_perturber: str | None, data_args: dict, load_args: dict) -> tuple[dict, list[dict]]:
    """The optional inputs of membership and dataset inference, loaded; and their data entries.

    Returns:
        (keyword arguments for ``run_membership`` / ``run_dataset_inference``, provenance entries).
    """
    resources, entries = {}, []
    for key, path, role in (("reference_corpus", reference_corpus, "reference corpus"),
                            ("recall_prefix", recall_prefix, "ReCaLL prefix")):
        if path:
            resources[key], entry = read(path, role=role, **data_args)
            entries.append(entry)
    if reference_model:
        resources["reference_model"] = load_model(reference_model, what="reference model", **load_args)
    if mlm_perturber:
        resources["perturber"] = load_perturber(mlm_perturber, device=load_args["device"])
    return resources, entries
