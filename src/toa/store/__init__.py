"""The store room: what a run directory holds, and how each write is made durable.

`run_store` (the SQLite run store: calls, rewards, results, priors, evidence), `writer` (its one
writer thread and group commits), `sqlite` (connection set-up), `cache` (the generation cache
shared across runs), `manifest` (what a run was made with; resume checks), `records` (request
identity: hashes, seeds, the records a call leaves), `repair` (``toa repair``: a new store from
what a missing, empty or damaged one still holds, and results.jsonl).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from toa.store.run_store import (
    CallRecord,
    ResultStatus,
    RewardRecord,
    RunStore,
    StoreReader,
    StoreSummary,
)

if TYPE_CHECKING:
    from toa.store.cache import CachedGeneration, GenerationCache
    from toa.store.repair import RepairReport, TableRepair, repair_run

# Loaded on first use (PEP 562): `toa status` reads a store without the cache or `toa repair`.
_LAZY = {
    "CachedGeneration": "toa.store.cache",
    "GenerationCache": "toa.store.cache",
    "RepairReport": "toa.store.repair",
    "TableRepair": "toa.store.repair",
    "repair_run": "toa.store.repair",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toa.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CachedGeneration",
    "CallRecord",
    "GenerationCache",
    "RepairReport",
    "ResultStatus",
    "RewardRecord",
    "RunStore",
    "StoreReader",
    "StoreSummary",
    "TableRepair",
    "repair_run",
]
