"""On-disk cache of token statistics, so a killed run resumes without rescoring.

Entries are keyed by a content hash of (model fingerprint, tokenizer fingerprint, scoring
policy, text), never by file names, so a changed model, tokenizer, policy or text can
never be served a stale entry. SQLite gives atomic commits: an entry is either complete
or absent, even if the process is killed mid-write.
"""

from __future__ import annotations

import contextlib

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import numpy as np

from lmaudit.models.base import TokenStats


# Bump when the statistics or their layout change, so entries from older code are never served.
SCORING_VERSION = 1


def cache_key(*, model_fp: str, tokenizer_fp: str, policy: dict, text: str) -> str:
    payload = json.dumps({"model": model_fp, "tokenizer": tokenizer_fp, "policy": policy, "scoring": SCORING_VERSION},
                         sort_keys=True)
    h = hashlib.sha256(payload.encode())
    h.update(b"\0")
    h.update(text.encode("utf-8"))
    return h.hexdigest()


class ScoreCache:
    """A SQLite file mapping cache keys to :class:`TokenStats` plus a small JSON header."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, meta TEXT NOT NULL, arrays BLOB NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> tuple[dict, TokenStats] | None:
        row = self._db.execute("SELECT meta, arrays FROM stats WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        with np.load(io.BytesIO(row[1])) as z:
            stats = TokenStats(**{f: z[f] for f in TokenStats.FIELDS})
        return json.loads(row[0]), stats

    def put_many(self, items: list[tuple[str, dict, TokenStats]]) -> None:
        """Store entries in one transaction (all or none)."""
        rows = []
        for key, meta, stats in items:
            buf = io.BytesIO()
            np.savez(buf, **{f: getattr(stats, f) for f in TokenStats.FIELDS})
            rows.append((key, json.dumps(meta), buf.getvalue()))
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?)", rows)

    def keys(self) -> set[str]:
        """Every key stored (32 bytes of hash each, as 64 hex characters)."""
        return {row[0] for row in self._db.execute("SELECT key FROM stats")}

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM stats").fetchone()[0]

    def close(self) -> None:
        self._db.close()


@contextlib.contextmanager
def open_cache(path: str | Path | None):
    """A :class:`ScoreCache` at ``path`` (None: no cache), closed on exit."""
    if path is None:
        yield None
        return
    cache = ScoreCache(path)
    try:
        yield cache
    finally:
        cache.close()
