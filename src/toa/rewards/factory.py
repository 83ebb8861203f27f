"""Reward configuration: the union of every reward kind, and the one place that builds them.

A run builds one reward for all its prompts. Kinds that gain from batching (a model or a server
behind them: `hf`, `comet`, `http`) are wrapped in `BatchingReward`, so score requests from all
concurrent trees are gathered into batches; the rule-based ones score inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toa.agents.spec import AgentSpec
from toa.rewards.base import RewardModel
from toa.rewards.batching import BatchingReward
from toa.rewards.combo import ComboRewardConfig
from toa.rewards.comet import CometRewardConfig
from toa.rewards.hf import HFRewardConfig
from toa.rewards.http import HttpRewardConfig
from toa.rewards.judge import JudgeRewardConfig
from toa.rewards.metric import BleuRewardConfig, ChrfRewardConfig
from toa.rewards.simulated import SimulatedReward
from toa.rewards.verify import VerifyRewardConfig

__all__ = [
    "BatchingConfig",
    "RewardConfig",
    "SimulatedRewardConfig",
    "build_reward",
]


class SimulatedRewardConfig(BaseModel):
    """The hidden quality of `toa fake-server` responses (tests, demos, benchmarks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["simulated"]

    def build(self) -> SimulatedReward:
        return SimulatedReward()


class BatchingConfig(BaseModel):
    """How score requests of concurrent trees are gathered (hf, comet and http rewards)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch: int = Field(32, ge=1, description="responses per batch at most")
    max_wait_ms: float = Field(5.0, ge=0, description="wait after the first request, in ms")


class HFConfig(HFRewardConfig):
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class CometConfig(CometRewardConfig):
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class HttpConfig(HttpRewardConfig):
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class ComboConfig(ComboRewardConfig):
    rewards: list[RewardConfig] = Field(min_length=1)


RewardConfig = Annotated[
    SimulatedRewardConfig
    | VerifyRewardConfig
    | ChrfRewardConfig
    | BleuRewardConfig
    | JudgeRewardConfig
    | HttpConfig
    | HFConfig
    | CometConfig
    | ComboConfig,
    Field(discriminator="type"),
]
"""Any reward configuration, chosen by its `type`."""

ComboConfig.model_rebuild()


def build_reward(config: Any, agents: Mapping[str, AgentSpec] | None = None) -> RewardModel:
    """The reward a configuration describes; `agents` resolves a judge named by agent name."""
    if isinstance(config, ComboConfig):
        return config.build(lambda child: build_reward(child, agents))
    if isinstance(config, JudgeRewardConfig):
        return config.build(agents)
    if isinstance(config, HFConfig | CometConfig | HttpConfig):
        batching = config.batching
        return BatchingReward(
            config.build(), max_batch=batching.max_batch, max_wait_ms=batching.max_wait_ms
        )
    built: RewardModel = config.build()
    return built
