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
