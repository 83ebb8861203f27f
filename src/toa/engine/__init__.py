"""The engine: inputs, the run store, the generation cache, the strategy context, the runner."""

from __future__ import annotations

from toa.engine.cache import CachedGeneration, GenerationCache
from toa.engine.context import AgentCompute, Compute, PromptContext
from toa.engine.inputs import read_prompts
from toa.engine.runner import ProgressSink, RunReport, rebuild_results, run
from toa.engine.store import (
    CallRecord,
    RewardRecord,
    RunStore,
    StoreReader,
    StoreSummary,
)

__all__ = [
    "AgentCompute",
    "CachedGeneration",
    "CallRecord",
    "Compute",
    "GenerationCache",
    "ProgressSink",
    "PromptContext",
    "RewardRecord",
    "RunReport",
    "RunStore",
    "StoreReader",
    "StoreSummary",
    "read_prompts",
    "rebuild_results",
    "run",
]
