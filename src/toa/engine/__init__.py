"""The engine: the runner that drives a run, the strategy context, accounting, results."""

from __future__ import annotations

from toa.engine.context import AgentCompute, Compute, PromptContext
from toa.engine.runner import ProgressSink, RunReport, rebuild_results, run

__all__ = [
    "AgentCompute",
    "Compute",
    "ProgressSink",
    "PromptContext",
    "RunReport",
    "rebuild_results",
    "run",
]
