"""Reading a built testbed's files: the splits, their private variants, knowledge questions and
the reference sample (see :func:`lmaudit.testbed.build.load_complete` for whether a folder holds
a finished, unchanged build)."""

from __future__ import annotations

import json
from pathlib import Path

from lmaudit.data import Record, read_records


def load_splits(out: str | Path):
    """Member and non-member records of a testbed directory."""
    return read_records(Path(out) / "data" / "members.jsonl"), read_records(Path(out) / "data" / "nonmembers.jsonl")


def load_variants(out: str | Path) -> dict[str, list[list[Record]]]:
    """Private versions of every document: ``load_variants(out)["members"][j - 1]`` is variant j.

    Each list holds the same ids in the same order as :func:`load_splits`; variant 0 is
    the published text there, and ``meta["variant"]`` is j.
    """
    k = json.loads((Path(out) / "testbed.json").read_text())["config"]["n_variants"]
    return {split: [read_records(Path(out) / "data" / "variants" / f"{split}.v{j}.jsonl") for j in range(1, k + 1)]
            for split in ("members", "nonmembers")}


def load_knowledge(out: str | Path) -> dict[str, list[Record]]:
    """Cloze questions of a testbed: ``{"members": ..., "nonmembers": ..., "shots": ...}``;
    a record's ``text`` is the question and ``meta["answer"]`` its answer."""
    return {name: read_records(Path(out) / "data" / "knowledge" / f"{name}.jsonl", text_field="question")
            for name in ("members", "nonmembers", "shots")}


def load_reference(out: str | Path) -> list[Record]:
    """The reference sample: documents of neither split, from the same generator."""
    return read_records(Path(out) / "data" / "reference.jsonl")


def forget_info(out: str | Path) -> dict:
    """testbed.json's ``forget`` record of a complete testbed with a forget split.

    Raises:
        ValueError: testbed.json is unreadable, or the testbed has no forget split.
    """
    return _record(out, "forget", option="--forget N",
                   missing="has no forget split (not built with a forget set): rebuild it with "
                           "`lmaudit testbed --out {out} --forget N` (N members to forget)")


def load_forget(out: str | Path) -> dict:
    """The forget split of a testbed built with ``forget=N`` (``lmaudit testbed --forget N``).

    Returns:
        ``{"forget", "retain", "holdout"}``: document records of F, R and H (the non-members);
        ``"knowledge"``: ``{"forget", "retain", "holdout", "shots"}`` question records like
        :func:`load_knowledge`'s, those of F, R and H with ``meta["paraphrased_answer"]`` and
        ``meta["perturbed_answers"]`` (3) for TOFU's truth ratio (the shots have neither);
        ``"target_path"`` and ``"retrain_path"``: the two model folders.

    Raises:
        ValueError: The testbed has no forget split (or no finished testbed.json).
    """
    out = Path(out)
    forget_info(out)
    data, knowledge = out / "data", out / "data" / "knowledge"
    return {
        "forget": read_records(data / "forget.jsonl"),
        "retain": read_records(data / "retain.jsonl"),
        "holdout": read_records(data / "nonmembers.jsonl"),
        "knowledge": {name: read_records(knowledge / f"{name}.jsonl", text_field="question")
                      for name in ("forget", "retain", "holdout", "shots")},
        "target_path": out / "model",
        "retrain_path": out / "retrain",
    }


def goldfish_info(out: str | Path) -> dict:
    """testbed.json's ``goldfish`` record of a complete testbed with a goldfish model
    (``lmaudit testbed --goldfish K[,H]``): ``config``, ``model`` (training figures, fingerprint,
    ``path``: ``goldfish``, relative to ``out``) and ``measured`` (both models side by side, see
    :func:`lmaudit.testbed.goldfish.measure_goldfish`).

    Raises:
        ValueError: testbed.json is unreadable, or the testbed has no goldfish model.
    """
    return _record(out, "goldfish", option="--goldfish 4,13",
                   missing="has no goldfish model: add one with `lmaudit testbed --out {out} --goldfish 4,13` "
                           "(trains only the goldfish model on a complete testbed)")


def _record(out: str | Path, key: str, *, option: str, missing: str) -> dict:
    """testbed.json's ``key`` record of a complete testbed, or a ValueError saying how to build
    one (``missing``, formatted with ``out``)."""
    out = Path(out)
    marker = out / "testbed.json"
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{marker} cannot be read ({err}): build the testbed with `lmaudit testbed --out {out} "
                         f"{option}`") from None
    if not isinstance(info, dict) or not info.get("complete") or not info.get(key):
        raise ValueError(f"{marker} {missing.format(out=out)}")
    return info[key]
