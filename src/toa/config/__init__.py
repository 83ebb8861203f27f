"""Configuration: YAML and pydantic at the edge, built into plain `toa.settings.RunSettings`.

`schema` holds the pydantic models of every section, `rewards` those of the reward section (and
`build_reward`, the one place a reward is built from them), `common` the models both share
(retries, circuit breaker); `build` turns a validated file into the settings the engine runs on,
`locate` names the file and line of each problem.
"""

from __future__ import annotations

from toa.config.build import load_config, parse_config, with_overrides
from toa.config.rewards import (
    BatchingConfig,
    BleuRewardConfig,
    ChrfRewardConfig,
    ComboRewardConfig,
    CometRewardConfig,
    HFRewardConfig,
    HttpRewardConfig,
    JudgeAgentConfig,
    JudgeRewardConfig,
    SimulatedRewardConfig,
    VerifyRewardConfig,
    build_reward,
)
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
    "BatchingConfig",
    "BleuRewardConfig",
    "ChrfRewardConfig",
    "ComboRewardConfig",
    "CometRewardConfig",
    "HFRewardConfig",
    "HttpRewardConfig",
    "JudgeAgentConfig",
    "JudgeRewardConfig",
    "PriorConfig",
    "PriorSource",
    "RewardConfig",
    "RunConfig",
    "RunSettings",
    "SimulatedRewardConfig",
    "StrategyConfig",
    "VerifyRewardConfig",
    "build_reward",
    "load_config",
    "parse_config",
    "with_overrides",
]
