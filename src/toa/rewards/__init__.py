"""Rewards: one protocol (`RewardModel`), one module per kind."""

from __future__ import annotations

from toa.rewards.base import RewardModel
from toa.rewards.simulated import SimulatedReward

__all__ = ["RewardModel", "SimulatedReward"]
