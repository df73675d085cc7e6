"""Which folders a testbed build may write into: never delete what lmaudit did not create.

A build replaces ``model/``, ``data/``, ``retrain/`` and ``goldfish/`` of its folder. It does so only in a missing or empty
folder, or in one that already holds a testbed: a ``testbed.json`` written by lmaudit. The
marker is written (``"complete": false``) before anything is deleted and replaced by the full
``testbed.json`` (``"complete": true``) when the build ends, so an interrupted build can be
rebuilt too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MARKER = "testbed.json"

# Every file a build writes under model/, retrain/, goldfish/ and data/ (``.partial``: a write under way). A rebuild
# deletes those two folders only when they hold nothing else: a user's own file dropped beside
# the generated ones is never deleted.
BUILT_FILES = re.compile(
    r"((model|retrain|goldfish)/(config|generation_config|tokenizer|tokenizer_config|special_tokens_map"
    r"|model\.safetensors\.index)\.json"
    r"|(model|retrain|goldfish)/model(-\d+-of-\d+)?\.safetensors"
    r"|data/(members|nonmembers|reference|forget|retain)\.jsonl"
    r"|data/variants/(members|nonmembers)\.v\d+\.jsonl"
    r"|data/knowledge/(members|nonmembers|shots|forget|retain|holdout)\.jsonl)(\.partial)?")
# The folders a build replaces (retrain/: the forget split's retrain model; goldfish/: the
# model trained with the goldfish loss).
BUILT_DIRS = ("model", "data", "retrain", "goldfish")


class NotATestbedError(Exception):
    """The folder holds files that lmaudit did not write; a build there would delete them."""


def is_testbed(out: str | Path) -> bool:
    """Whether ``out`` holds a testbed.json written by lmaudit (complete or not)."""
    try:
        info = json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(info, dict) and {"schema_version", "complete"} <= info.keys()


def describe(folder: Path, *, limit: int = 5) -> str:
    """``a, b/, c and 3 more``: what a folder holds, for error messages (folders end in /)."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_buildable(out: str | Path) -> None:
    """Raise NotATestbedError unless a build may replace model/ and data/ in ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotATestbedError(f"{out} is a file, not a folder; choose another folder for the testbed")
    if not out.exists() or not any(out.iterdir()):
        return
    if is_testbed(out):
        strays = [p.relative_to(out).as_posix() for sub in BUILT_DIRS if (out / sub).exists()
                  for p in sorted((out / sub).rglob("*"))
                  if p.is_symlink() or (not p.is_dir() and not BUILT_FILES.fullmatch(p.relative_to(out).as_posix()))]
        strays += [sub for sub in BUILT_DIRS if (out / sub).is_symlink() or (out / sub).is_file()]
        if strays:
            more = f" and {len(strays) - 5} more" if len(strays) > 5 else ""
            raise NotATestbedError(
                f"{out} is a testbed, but its model/, retrain/, goldfish/ or data/ hold files a build does not write "
                f"({', '.join(strays[:5])}{more}); a rebuild replaces those folders: move those files first")
        return
    raise NotATestbedError(
        f"{out} is not empty and is not an lmaudit testbed (it has no testbed.json written by lmaudit); "
        f"it holds {describe(out)}. A build replaces the model/ and data/ of its folder, so it builds only "
        "in a new or empty folder or an earlier testbed: choose another folder.")


def mark_unfinished(out: str | Path, *, schema_version: int) -> None:
    """Create ``out`` and mark it as an unfinished testbed build of lmaudit's."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    marker = {"schema_version": schema_version, "complete": False,
              "note": "an unfinished lmaudit testbed build; `lmaudit testbed` may rebuild it here"}
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
