"""TOA: multi-agent sampling with Tree Search-based Orchestrated Agents (arXiv 2412.17061).

The front door. A run from a configuration file::

    import asyncio
    import toa

    settings = toa.with_overrides(toa.load_config("config.yaml"), budget=32)
    report = asyncio.run(toa.run(settings, input_path="prompts.jsonl", run_dir="runs/x"))
    toa.export_run("runs/x", format="sft", out="sft.jsonl")

A strategy on its own: ``toa.make_strategy("toa").run(prompt, ctx, budget=16, seed=0)`` returns
a `SearchTree`; ``toa.build_reward`` makes a reward model from a reward configuration. Every
error TOA raises on purpose is a `TOAError` (the tree is in `toa.errors`).

The errors and the plain types load with the package; everything else loads on first use, so
``import toa`` (and ``toa --help``) stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from toa.errors import (
    AgentConnectionError,
    AgentError,
    AgentTimeoutError,
    AgentUnavailableError,
    AuthenticationError,
    ConfigError,
    ContextLengthError,
    ExportError,
    FatalAgentError,
    InputError,
    InvalidRequestError,
    LocalModelError,
    RateLimitError,
    ResponseFormatError,
    RetryableAgentError,
    RunLockedError,
    ServerError,
    StoreError,
    TOAError,
    is_retryable,
)
from toa.types import Completion, Message, Prompt, SamplingParams, Score, ScoreFailure, Usage

if TYPE_CHECKING:
    from toa.config import load_config, parse_config, with_overrides
    from toa.config.rewards import build_reward
    from toa.engine.runner import RunReport, run
    from toa.export import export_run
    from toa.search import make_strategy
    from toa.search.tree import SearchTree
    from toa.settings import RunSettings

__version__ = "0.1.0.dev0"

_LAZY = {
    "RunReport": "toa.engine.runner",
    "RunSettings": "toa.settings",
    "SearchTree": "toa.search.tree",
    "build_reward": "toa.config.rewards",
    "export_run": "toa.export",
    "load_config": "toa.config",
    "make_strategy": "toa.search",
    "parse_config": "toa.config",
    "run": "toa.engine.runner",
    "with_overrides": "toa.config",
}


def __getattr__(name: str) -> Any:
    """Load the front door's heavier names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AgentConnectionError",
    "AgentError",
    "AgentTimeoutError",
    "AgentUnavailableError",
    "AuthenticationError",
    "Completion",
    "ConfigError",
    "ContextLengthError",
    "ExportError",
    "FatalAgentError",
    "InputError",
    "InvalidRequestError",
    "LocalModelError",
    "Message",
    "Prompt",
    "RateLimitError",
    "ResponseFormatError",
    "RetryableAgentError",
    "RunLockedError",
    "RunReport",
    "RunSettings",
    "SamplingParams",
    "Score",
    "ScoreFailure",
    "SearchTree",
    "ServerError",
    "StoreError",
    "TOAError",
    "Usage",
    "__version__",
    "build_reward",
    "export_run",
    "is_retryable",
    "load_config",
    "make_strategy",
    "parse_config",
    "run",
    "with_overrides",
]
