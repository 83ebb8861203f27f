"""Mixture-of-Agents (name 'moa') as TOA_SPEC defines the baseline: a strategy over agents.

A block has `layers` layers. Layer 0: every agent answers the prompt. Each later layer: every agent
answers the prompt given the previous layer's responses through the aggregator template (in the
user message by default). Blocks repeat until the budget is spent; every layer's responses are
candidates, and each layer is scored in one call. Rewards never steer MoA; they only rank.

Budget: exactly `budget` generations. A block costs ``layers * K``; when that does not divide the
budget, the last block stops as soon as the budget is spent, possibly inside a layer, in which
case only the first agents of that layer (configuration order) answer.

Tree: layer-0 responses hang under the root's agent nodes; an aggregate response hangs under an
'aggregate' agent node below the first response it aggregated and lists all of them in `parents`,
so its depth is its layer + 1. Aggregators receive the previous layer's generated responses
(failed generations are left out); when none came back, the layer answers fresh instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from toa.errors import ConfigError
from toa.search.baselines import new_tree
from toa.search.context import SearchContext, check_budget, derive_rng
from toa.search.normalise import normalise_by_rank
from toa.search.priors import Prior
from toa.search.steps import Request, generate_all, score_into
from toa.search.templates import Templates, aggregate_messages, fresh_messages
from toa.search.tree import ROOT_ID, SearchTree
from toa.types import Prompt

__all__ = ["MixtureOfAgents", "MoAConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MoAConfig:
    """MoA settings.

    Attributes:
        layers: layers per block, >= 1 (paper: 4 for alignment, 3 for translation and math).
        n_aggregate: responses of the previous layer each aggregator sees, >= 1; None = all of
            them. A smaller number draws a seeded random subset per aggregator call.
        aggregator_role: 'user' (default: the aggregate template replaces the user message) or
            'system' (the aggregate_system template becomes the system message).
    """

    layers: int = 4
    n_aggregate: int | None = None
    aggregator_role: Literal["user", "system"] = "user"

    def __post_init__(self) -> None:
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 1:
            raise ConfigError(f"moa: layers must be an integer >= 1, got {self.layers!r}")
        if self.n_aggregate is not None and self.n_aggregate < 1:
            raise ConfigError(f"moa: n_aggregate must be >= 1 or unset, got {self.n_aggregate!r}")
        if self.aggregator_role not in ("user", "system"):
            raise ConfigError(
                f"moa: aggregator_role must be 'user' or 'system', got {self.aggregator_role!r}"
            )


class MixtureOfAgents:
    """The MoA baseline; see the module docstring for the budget and tree layout."""

    name = "moa"

    def __init__(self, config: MoAConfig | None = None, *, templates: Templates | None = None):
        self.config = config or MoAConfig()
        self.templates = templates or Templates.for_task("instruction")

    def __repr__(self) -> str:
        return f"MixtureOfAgents({self.config!r}, task={self.templates.task!r})"

    async def run(
        self,
        prompt: Prompt,
        ctx: SearchContext,
        *,
        budget: int,
        seed: int,
        prior: Prior | None = None,
    ) -> SearchTree:
        """Blocks of layers until `budget` generations are spent."""
        del prior  # a fixed workflow: nothing to learn across prompts
        check_budget(budget, self.name)
        agents = tuple(ctx.agents)
        if not agents:
            raise ConfigError("moa: the context has no agents")
        cfg = self.config
        tree = new_tree(
            self.name,
            prompt,
            agents,
            budget,
            seed,
            layers=cfg.layers,
            n_aggregate=cfg.n_aggregate,
            aggregator_role=cfg.aggregator_role,
            templates=self.templates.hashes(),
        )
        rng = derive_rng(seed, prompt.id)
        history: list[float] = []
        remaining = budget
        while remaining > 0:
            previous: list[int] = []
            for _layer in range(cfg.layers):
                requests = self._layer(tree, prompt, agents[:remaining], previous, rng)
                await generate_all(tree, ctx, requests)
                ids = [i for i, _ in requests]
                await score_into(
                    tree, ctx, prompt, ids, normaliser=normalise_by_rank, history=history
                )
                previous = [i for i in ids if tree.node(i).text is not None]
                remaining -= len(ids)
                if remaining == 0:
                    break
        return tree

    def _layer(
        self,
        tree: SearchTree,
        prompt: Prompt,
        agents: tuple[str, ...],
        previous: list[int],
        rng: random.Random,
    ) -> list[Request]:
        """Allocate one layer's response nodes (configuration order) and build their requests."""
        requests: list[Request] = []
        for agent in agents:
            if not previous:
                node_id = tree.add_response(tree.agent_child(ROOT_ID, agent, "fresh"))
                requests.append((node_id, fresh_messages(prompt, self.templates)))
                continue
            chosen = self._choose(previous, rng)
            arm = tree.agent_child(chosen[0], agent, "aggregate")
            node_id = tree.add_response(arm, parents=tuple(chosen))
            texts = [tree.node(i).text or "" for i in chosen]
            messages = aggregate_messages(
                prompt, texts, self.templates, role=self.config.aggregator_role
            )
            requests.append((node_id, messages))
        return requests

    def _choose(self, previous: list[int], rng: random.Random) -> list[int]:
        """The responses one aggregator sees: all, or a seeded subset in id order."""
        n = self.config.n_aggregate
        if n is None or n >= len(previous):
            return list(previous)
        return sorted(rng.sample(previous, n))
