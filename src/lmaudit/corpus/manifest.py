"""The manifest of an index lmaudit keeps on disk (the suffix index's ``index.json``, BM25's
``bm25.json``): written last and atomically, so that an index whose manifest can be read is a
finished one; read back with its format checked before anything trusts it."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest`` to ``path`` through ``path.partial``, fsynced, then renamed: a kill
    leaves either the previous manifest or the new one, never half of one."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(path: Path, *, fmt: str, error: type[Exception]) -> dict:
    """The manifest at ``path`` (which must exist), refused with ``error`` naming the file (and
    line) when it is not JSON or not of format ``fmt``."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise error(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise error(f"{path}: format {found!r}, not {fmt!r}")
    return manifest


def version_message(path: Path, manifest: dict, reads: str) -> str:
    """Why a manifest of another format version is refused: both versions, and who wrote it."""
    import lmaudit

    return (f"{path}: format version {manifest.get('format_version')!r} (written by lmaudit "
            f"{manifest.get('lmaudit_version', '?')}), but lmaudit {lmaudit.__version__} reads {reads}; "
            "rebuild it with this lmaudit")
