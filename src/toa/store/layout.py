"""The files of a run directory, by name (the one place that names them)."""

from __future__ import annotations

__all__ = ["LOCK_NAME", "MANIFEST_NAME", "RESULTS_NAME", "RUN_FILES", "STORE_NAME"]

MANIFEST_NAME = "manifest.json"
"""What the run was made with (`toa.store.manifest`)."""
STORE_NAME = "store.sqlite"
"""The run store: every call, reward, tree and result (`toa.store.run_store`)."""
RESULTS_NAME = "results.jsonl"
"""One line per finished prompt, rebuilt from the store."""
LOCK_NAME = ".lock"
"""Held by the process running the directory."""

RUN_FILES = frozenset(
    {
        MANIFEST_NAME,
        STORE_NAME,
        f"{STORE_NAME}-wal",
        f"{STORE_NAME}-shm",
        RESULTS_NAME,
        f"{RESULTS_NAME}.tmp",
        LOCK_NAME,
    }
)
"""Every file a run directory may hold (an export must never write over one of them)."""
