"""The store room: what a run directory holds, and how each write is made durable.

`run_store` (the SQLite run store: calls, rewards, results, priors, evidence), `writer` (its one
writer thread and group commits), `sqlite` (connection set-up), `cache` (the generation cache
shared across runs), `manifest` (what a run was made with; resume checks), `records` (request
identity: hashes, seeds, the records a call leaves), `repair` (``toa repair``: a new store from
what a missing, empty or damaged one still holds, and results.jsonl).
"""

from __future__ import annotations

from toa.store.cache import CachedGeneration, GenerationCache
from toa.store.repair import RepairReport, TableRepair, repair_run
from toa.store.run_store import (
    CallRecord,
    ResultStatus,
    RewardRecord,
    RunStore,
    StoreReader,
    StoreSummary,
)

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
