"""The SQLite set-up shared by the run store and the generation cache.

Both are WAL databases with ``synchronous=NORMAL`` (a committed row survives a killed process; a
power loss may lose the last group), a busy timeout, and a ``meta`` table holding the schema
version. The callers wrap `sqlite3.Error` in their own messages.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["configure", "connect"]


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection usable from any thread (each caller guards its own use)."""
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def configure(
    conn: sqlite3.Connection,
    *,
    busy_timeout_ms: int,
    schema: str | None = None,
    schema_version: int | None = None,
) -> None:
    """Set the busy timeout; with `schema`, also WAL mode, the tables and the schema version.

    `schema` must create a ``meta(key, value)`` table when `schema_version` is given.
    """
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if schema is None:
        return
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(schema)
    if schema_version is not None:
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(schema_version),),
        )
