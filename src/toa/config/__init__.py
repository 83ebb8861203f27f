"""Configuration: YAML and pydantic at the edge, built into plain `toa.settings.RunSettings`.

`schema` holds the pydantic models of every section, `build` turns a validated file into the
settings the engine runs on, `locate` names the file and line of each problem.
"""

from __future__ import annotations

from toa.config.build import load_config, parse_config, with_overrides
from toa.config.schema import (
    AgentConfig,
    PriorConfig,
    PriorSource,
    RewardConfig,
    RunConfig,
    StrategyConfig,
)
from toa.settings import RunSettings

__all__ = [
    "AgentConfig",
    "PriorConfig",
    "PriorSource",
    "RewardConfig",
    "RunConfig",
    "RunSettings",
    "StrategyConfig",
    "load_config",
    "parse_config",
    "with_overrides",
]
