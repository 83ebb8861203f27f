"""The engine: inputs, the run store, the strategy context, and the runner behind `toa run`."""

from __future__ import annotations

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
    "CallRecord",
    "Compute",
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
