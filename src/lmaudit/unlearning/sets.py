"""The data an unlearning evaluation reads: the forget set F, the retain set R, the holdout H
(documents the target never saw), and, optionally, questions about each with the answers
TOFU's truth ratio needs.

A knowledge record's ``text`` is its question; ``meta`` holds ``answer``,
``paraphrased_answer`` (the right answer in other words) and ``perturbed_answers`` (wrong
answers of the same kind), and ``doc_id`` (the document it asks about) where known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lmaudit.data import DataError, Record, data_fingerprint, read_records

#: The knowledge files of an evaluation, by the set they ask about.
KNOWLEDGE_SETS = ("forget", "retain", "holdout")


@dataclass
class UnlearnSets:
    """Documents and questions of one evaluation.

    Attributes:
        forget: F, the documents the unlearned model must no longer hold.
        retain: R, the documents it must keep (the target's other training documents).
        holdout: H, documents neither model saw, from the same distribution (the reference
            for F in the membership attack, and the utility set beside R).
        forget_knowledge, retain_knowledge, holdout_knowledge: Questions about F, R and H
            (empty: the knowledge criteria are not measured).
        shots: Worked examples for the knowledge prompts (used only if the config asks for shots).
        data: Provenance entries of the files the sets came from.
    """

    forget: list[Record]
    retain: list[Record]
    holdout: list[Record]
    forget_knowledge: list[Record] = field(default_factory=list)
    retain_knowledge: list[Record] = field(default_factory=list)
    holdout_knowledge: list[Record] = field(default_factory=list)
    shots: list[Record] = field(default_factory=list)
    data: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_disjoint(self.forget, self.retain)
        for name in ("forget", "retain", "holdout"):
            if not getattr(self, name):
                raise ValueError(f"the {name} set is empty")
        for name in KNOWLEDGE_SETS:
            for r in self.knowledge(name):
                check_knowledge_record(r)

    def knowledge(self, name: str) -> list[Record]:
        """Questions about the ``name`` set ("forget", "retain" or "holdout")."""
        return getattr(self, f"{name}_knowledge")

    @classmethod
    def from_files(cls, *, forget: str | Path, retain: str | Path, holdout: str | Path,
                   forget_knowledge: str | Path | None = None, retain_knowledge: str | Path | None = None,
                   holdout_knowledge: str | Path | None = None, shots: str | Path | None = None) -> "UnlearnSets":
        """Read the sets from JSONL (or any format :func:`~lmaudit.data.read_records` reads).

        Raises:
            DataError: A file is unreadable or a knowledge row lacks a field (names file, line, field).
            ValueError: F and R share ids (names them), or a set is empty.
        """
        kw: dict = {}
        entries = []
        for key, path, question in (("forget", forget, False), ("retain", retain, False), ("holdout", holdout, False),
                                    ("forget_knowledge", forget_knowledge, True),
                                    ("retain_knowledge", retain_knowledge, True),
                                    ("holdout_knowledge", holdout_knowledge, True), ("shots", shots, True)):
            if path is None:
                continue
            records = read_records(path, text_field="question") if question else read_records(path)
            kw[key] = records
            entries.append({**data_fingerprint(path), "role": key.replace("_", " "), "n_rows": len(records)})
        return cls(**kw, data=entries)


#: Where a testbed built with ``lmaudit testbed --forget N`` keeps each input, relative to it.
TESTBED_LAYOUT = {"target": "model", "retrain": "retrain", "forget": "data/forget.jsonl",
                  "retain": "data/retain.jsonl", "holdout": "data/nonmembers.jsonl",
                  "forget_knowledge": "data/knowledge/forget.jsonl", "retain_knowledge": "data/knowledge/retain.jsonl",
                  "holdout_knowledge": "data/knowledge/holdout.jsonl", "shots": "data/knowledge/shots.jsonl"}


def sets_of_testbed(testbed: str | Path) -> UnlearnSets:
    """The sets of a testbed built with a forget split, read through :meth:`UnlearnSets.from_files`
    (so each file's fingerprint is recorded).

    Raises:
        ValueError: The testbed has no forget split (says how to build one).
    """
    from lmaudit.testbed.load import forget_info

    forget_info(testbed)  # a clear error for a testbed without a split
    return UnlearnSets.from_files(**{k: Path(testbed) / rel for k, rel in TESTBED_LAYOUT.items()
                                     if k not in ("target", "retrain")})


def check_disjoint(forget: Sequence[Record], retain: Sequence[Record]) -> None:
    """Refuse a forget and a retain set that share document ids (the evaluation would ask the
    model to forget and keep the same document)."""
    shared = sorted({str(r.id) for r in forget} & {str(r.id) for r in retain})
    if shared:
        more = f" and {len(shared) - 10} more" if len(shared) > 10 else ""
        raise ValueError(f"the forget and retain sets share {len(shared)} document id"
                         f"{'s' if len(shared) > 1 else ''}: {', '.join(shared[:10])}{more}")


def check_knowledge_record(r: Record) -> None:
    """A question needs ``answer``, ``paraphrased_answer`` (non-empty strings) and
    ``perturbed_answers`` (a non-empty list of non-empty strings); a DataError names file, line
    and field."""
    for name in ("answer", "paraphrased_answer"):
        value = r.meta.get(name)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{r.source}:{r.line}: field {name!r} must be a non-empty string, "
                            f"got {'nothing' if value is None else repr(value)}")
    perturbed = r.meta.get("perturbed_answers")
    if (not isinstance(perturbed, list) or not perturbed
            or not all(isinstance(p, str) and p.strip() for p in perturbed)):
        raise DataError(f"{r.source}:{r.line}: field 'perturbed_answers' must be a non-empty list of non-empty "
                        f"strings, got {'nothing' if perturbed is None else repr(perturbed)}")
