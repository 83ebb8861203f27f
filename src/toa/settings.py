"""The settings a run is made of: plain frozen data that the engine runs on.

`toa.config` builds them from a configuration file (pydantic stays there, at the edge); the
engine, the store's manifest and the CLI read them. Nothing here validates user input: it has
been validated by the time a `RunSettings` exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from toa.agents.spec import AgentSpec
    from toa.rewards.base import RewardModel
    from toa.search.context import Strategy
    from toa.search.priors import Prior
    from toa.search.templates import Templates

__all__ = ["Price", "PriorSource", "RewardFactory", "RunSettings", "RunnerSettings"]

PriorSource = Literal["online", "file", "none"]
"""Where each prompt's prior comes from: learned by the run, a file, or nothing (cold)."""

RewardFactory = Callable[["Mapping[str, AgentSpec] | None"], "RewardModel"]
"""Builds the run's reward model; the mapping resolves a judge named by agent name."""


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million prompt / completion tokens."""

    prompt_usd_per_mtok: float = 0.0
    completion_usd_per_mtok: float = 0.0


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """How the engine runs: prompts at once (each with its own tree), the generation cache.

    Neither changes what is generated, so both may change when a run is resumed.
    """

    prompts_in_flight: int = 16
    cache: str | None = None
    backend: str = "local"
    workers: int = 2
    address: str | None = None
    reward_placement: str = "worker"
    reward_num_gpus: float = 0.0


@dataclass(frozen=True)
class RunSettings:
    """What a run is made of.

    Attributes:
        agents: runtime agent settings, in configuration order.
        prices: each priced agent's price (for the cost in progress and summaries).
        strategy: the strategy object.
        strategy_name: its configuration name (toa, random, prs, ensemble, seq-refine, moa).
        budget: generations per prompt.
        templates: the template set (hashes go into the manifest).
        reward_factory: builds the run's reward model (`build_reward`).
        runner: prompts in flight and the generation cache.
        seed: the run's seed.
        config_data: the validated configuration as JSON data (the manifest records it, a
            resume parses it again); it holds env-var names, never keys.
        source: where the configuration came from (a path or '<string>').
        prior_source: where each prompt's prior comes from: 'online' (learned by the run),
            'file' (`prior`) or 'none'.
        prior: the prior read from `strategy.prior.path`: every prompt's (source 'file') or
            the starting point of what the run learns (source 'online').
    """

    agents: tuple[AgentSpec, ...]
    strategy: Strategy
    strategy_name: str
    budget: int
    templates: Templates
    reward_factory: RewardFactory
    config_data: Mapping[str, Any]
    source: str
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    prices: Mapping[str, Price] = field(default_factory=dict)
    seed: int = 0
    prior_source: PriorSource = "none"
    prior: Prior | None = None

    def build_reward(self) -> RewardModel:
        """The reward model the configuration names (one instance for the whole run)."""
        return self.reward_factory({a.name: a for a in self.agents})

    def config_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON data (a copy; it holds env-var names, never keys)."""
        copied: dict[str, Any] = json.loads(json.dumps(self.config_data))
        return copied

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the configuration."""
        canonical = json.dumps(self.config_data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
