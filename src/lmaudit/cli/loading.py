"""What the audit subcommands share: loading a model, reading data files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lmaudit.cli.common import fail, say

# The output folder of every audit command. Model, scoring and data options are groups: see cli/options.py.
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output directory: results.json, samples.jsonl.")]

if TYPE_CHECKING:
    from lmaudit.cli.options import DataOptions, ModelOptions


def load_model(name: str, *, dtype: str, device: str, trust_remote_code: bool, batch_size: int, what: str = "model"):
    """The model ``name``: an :class:`HFModel`, or a :class:`~lmaudit.models.whp.WHPModel` for a
    folder that ``lmaudit unlearn --method whp`` wrote (its base loaded with the same options)."""
    from lmaudit.models.hf import HFModel
    from lmaudit.models.whp import WHPModel, is_whp_dir

    try:
        if is_whp_dir(name):
            return WHPModel.from_pretrained(name, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                                            batch_size=batch_size)
        return HFModel.from_pretrained(name, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                                       batch_size=batch_size)
    except (OSError, ValueError) as err:
        fail(f"cannot load {what} {name!r}: {' '.join(str(err).split())}")  # one line, whatever the library wrote


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


def check_attacks(attacks: str | None, *, reference_model: list[str] | None, reference_corpus: Path | None) -> None:
    """Exit with a message if --attacks names an unknown attack, or one whose input is not given:
    before any file is read or model loaded (the model's capabilities are checked once it is)."""
    from lmaudit.membership.run import check_references, select_attacks

    available = [name for name, given in (("reference_model", reference_model), ("reference_corpus", reference_corpus))
                 if given]
    try:
        check_references(select_attacks(attacks, available=available), len(reference_model or []))
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
