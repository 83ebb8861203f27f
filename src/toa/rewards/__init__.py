"""Rewards: one protocol (`RewardModel`), one module per kind."""

from __future__ import annotations

from toa.rewards.base import RewardModel
from toa.rewards.batching import BatchingReward, BatchScorer, ScoreItem, ThreadedReward
from toa.rewards.combo import ComboReward, ComboRewardConfig
from toa.rewards.comet import CometReward, CometRewardConfig
from toa.rewards.factory import RewardConfig, SimulatedRewardConfig, build_reward
from toa.rewards.hf import HFRewardConfig, HFRewardModel
from toa.rewards.http import HttpRewardConfig, HttpRewardModel
from toa.rewards.judge import JudgeReward, JudgeRewardConfig
from toa.rewards.metric import BleuReward, BleuRewardConfig, ChrfReward, ChrfRewardConfig
from toa.rewards.simulated import SimulatedReward
from toa.rewards.verify import VerifyReward, VerifyRewardConfig

__all__ = [
    "BatchScorer",
    "BatchingReward",
    "BleuReward",
    "BleuRewardConfig",
    "ChrfReward",
    "ChrfRewardConfig",
    "ComboReward",
    "ComboRewardConfig",
    "CometReward",
    "CometRewardConfig",
    "HFRewardConfig",
    "HFRewardModel",
    "HttpRewardConfig",
    "HttpRewardModel",
    "JudgeReward",
    "JudgeRewardConfig",
    "RewardConfig",
    "RewardModel",
    "ScoreItem",
    "SimulatedReward",
    "SimulatedRewardConfig",
    "ThreadedReward",
    "VerifyReward",
    "VerifyRewardConfig",
    "build_reward",
]
