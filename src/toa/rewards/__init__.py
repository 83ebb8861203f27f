"""Rewards: one protocol (`RewardModel`), one module per kind, no configuration parsing.

The kinds: `simulated` (`SimulatedReward`), `verify` (`VerifyReward`), `chrf` / `bleu`
(`ChrfReward`, `BleuReward`), `judge` (`JudgeReward`), `http` (`HttpRewardModel` with
`HttpRewardSettings`), `hf` (`HFRewardModel` with `HFSettings`), `comet` (`CometReward` with
`CometSettings`) and `combo` (`ComboReward`); `BatchingReward` gathers the score requests of
concurrent trees into batches for the kinds with a model or a server behind them. Each takes
plain arguments or a plain frozen dataclass. The YAML schema of every kind, and the one place that
builds a run's reward from it (`build_reward`), is `toa.config.rewards`.
"""

from __future__ import annotations

from toa.rewards.base import RewardModel
from toa.rewards.batching import BatchingReward, BatchScorer, ScoreItem, ThreadedReward
from toa.rewards.combo import ComboReward
from toa.rewards.comet import CometReward, CometSettings
from toa.rewards.hf import HFRewardModel, HFSettings
from toa.rewards.http import HttpRewardModel, HttpRewardSettings
from toa.rewards.judge import JudgeReward
from toa.rewards.metric import BleuReward, ChrfReward
from toa.rewards.simulated import SimulatedReward
from toa.rewards.verify import VerifyReward

__all__ = [
    "BatchScorer",
    "BatchingReward",
    "BleuReward",
    "ChrfReward",
    "ComboReward",
    "CometReward",
    "CometSettings",
    "HFRewardModel",
    "HFSettings",
    "HttpRewardModel",
    "HttpRewardSettings",
    "JudgeReward",
    "RewardModel",
    "ScoreItem",
    "SimulatedReward",
    "ThreadedReward",
    "VerifyReward",
]
