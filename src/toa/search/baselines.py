"""The single-round and chain baselines of TOA_SPEC: random, prs, ensemble and seq-refine.

Each spends exactly `budget` generations and scores every generated response exactly once. Their
workflows are fixed by definition, so they do not consult `is_available`: a call to an agent that
is out fails (`AgentUnavailableError`), costs its unit and is recorded like any failed call.
Rewards are normalised with the default running rank only to fill the tree's `q` and visit
statistics, so trees of every strategy read alike; no baseline decides anything from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toa.errors import ConfigError
from toa.search.context import SearchContext, check_budget, derive_rng
from toa.search.normalise import normalise_by_rank
from toa.search.priors import Prior
from toa.search.steps import generate_all, generate_into, score_into
from toa.search.templates import Templates, fresh_messages, refine_messages
from toa.search.tree import ROOT_ID, SearchTree
from toa.types import Prompt

__all__ = [
    "Baseline",
    "PRSSearch",
    "ParallelEnsemble",
    "RandomSampling",
    "SequentialRefine",
    "SingleAgentBaseline",
    "SingleAgentConfig",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SingleAgentConfig:
    """Settings of the single-agent baselines (random, prs).

    Attributes:
        agent: the agent that answers; None = the context's first agent.
    """

    agent: str | None = None

    def resolve(self, agents: tuple[str, ...], strategy: str) -> str:
        """The agent to use; `ConfigError` when it is not one of `agents`."""
        if not agents:
            raise ConfigError(f"{strategy}: the context has no agents")
        if self.agent is None:
            return agents[0]
        if self.agent not in agents:
            raise ConfigError(f"{strategy}: agent {self.agent!r} is not one of {list(agents)}")
        return self.agent


def new_tree(
    strategy: str, prompt: Prompt, agents: tuple[str, ...], budget: int, seed: int, **config: Any
) -> SearchTree:
    """An empty tree for a baseline run, its settings recorded in `config`."""
    return SearchTree.new(
        prompt_id=prompt.id,
        strategy=strategy,
        agents=agents,
        budget=budget,
        seed=seed,
        config=config,
    )


class Baseline:
    """What every baseline shares: the task's templates and the `run` preamble.

    `run` checks the budget and the agents, starts the tree with the baseline's settings and
    hands it to `_search`, the one part each baseline writes itself.
    """

    name = ""

    def __init__(self, *, templates: Templates | None = None) -> None:
        self.templates = templates or Templates.for_task("instruction")

    def __repr__(self) -> str:
        config = getattr(self, "config", None)
        inner = f"{config!r}, " if config is not None else ""
        return f"{type(self).__name__}({inner}task={self.templates.task!r})"

    async def run(
        self,
        prompt: Prompt,
        ctx: SearchContext,
        *,
        budget: int,
        seed: int,
        prior: Prior | None = None,
    ) -> SearchTree:
        """Spend `budget` generations on `prompt` by the baseline's fixed workflow."""
        del prior  # a fixed workflow: nothing to learn across prompts
        check_budget(budget, self.name)
        agents = tuple(ctx.agents)
        settings = self._settings(agents)
        settings["templates"] = self.templates.hashes()
        tree = new_tree(self.name, prompt, agents, budget, seed, **settings)
        await self._search(tree, ctx, prompt, budget=budget, seed=seed)
        return tree

    def _settings(self, agents: tuple[str, ...]) -> dict[str, Any]:
        """The settings recorded in the tree (before the template hashes); checks the agents."""
        if not agents:
            raise ConfigError(f"{self.name}: the context has no agents")
        return {}

    async def _search(
        self, tree: SearchTree, ctx: SearchContext, prompt: Prompt, *, budget: int, seed: int
    ) -> None:
        raise NotImplementedError

    async def _fresh(
        self,
        tree: SearchTree,
        ctx: SearchContext,
        prompt: Prompt,
        counts: dict[str, int],
        history: list[float],
    ) -> list[int]:
        """`counts[agent]` fresh samples per agent, generated concurrently, scored in one call."""
        messages = fresh_messages(prompt, self.templates)
        ids: list[int] = []
        for agent, count in counts.items():
            node = tree.agent_child(ROOT_ID, agent, "fresh")
            ids.extend(tree.add_response(node) for _ in range(count))
        await generate_all(tree, ctx, [(i, messages) for i in ids])
        await score_into(tree, ctx, prompt, ids, normaliser=normalise_by_rank, history=history)
        return ids


class SingleAgentBaseline(Baseline):
    """A baseline on one agent (`SingleAgentConfig`), recorded as the tree's `agent` setting."""

    def __init__(
        self, config: SingleAgentConfig | None = None, *, templates: Templates | None = None
    ) -> None:
        super().__init__(templates=templates)
        self.config = config or SingleAgentConfig()

    def _settings(self, agents: tuple[str, ...]) -> dict[str, Any]:
        return {"agent": self.config.resolve(agents, self.name)}


class RandomSampling(SingleAgentBaseline):
    """Best-of-N (name 'random'): one agent, `budget` fresh samples, one score call."""

    name = "random"

    async def _search(
        self, tree: SearchTree, ctx: SearchContext, prompt: Prompt, *, budget: int, seed: int
    ) -> None:
        await self._fresh(tree, ctx, prompt, {tree.config["agent"]: budget}, [])


class PRSSearch(SingleAgentBaseline):
    """PRS, single agent (name 'prs'): ceil(N/2) fresh samples, then floor(N/2) refinements of
    the single best of them (by raw reward; ties: the earliest).

    Two score calls, one per phase. When no fresh sample could be scored there is nothing to
    refine, and the second half is spent on fresh samples as well.
    """

    name = "prs"

    async def _search(
        self, tree: SearchTree, ctx: SearchContext, prompt: Prompt, *, budget: int, seed: int
    ) -> None:
        agent = tree.config["agent"]
        n_refine = budget // 2
        history: list[float] = []
        fresh = await self._fresh(tree, ctx, prompt, {agent: budget - n_refine}, history)
        best = max(
            (tree.node(i) for i in fresh if tree.node(i).scored),
            key=lambda n: (n.reward or 0.0, -n.id),
            default=None,
        )
        if n_refine == 0:
            return
        if best is None:
            await self._fresh(tree, ctx, prompt, {agent: n_refine}, history)
            return
        node = tree.add_agent(best.id, agent, "refine")
        ids = [tree.add_response(node, parents=(best.id,)) for _ in range(n_refine)]
        messages = refine_messages(prompt, best.text or "", self.templates)
        await generate_all(tree, ctx, [(i, messages) for i in ids])
        await score_into(tree, ctx, prompt, ids, normaliser=normalise_by_rank, history=history)


class ParallelEnsemble(Baseline):
    """Parallel ensemble (name 'ensemble'): N/K fresh samples from each agent, one score call.

    When K does not divide N, the first N mod K agents (configuration order) get one more.
    """

    name = "ensemble"

    async def _search(
        self, tree: SearchTree, ctx: SearchContext, prompt: Prompt, *, budget: int, seed: int
    ) -> None:
        agents = tree.agents
        share, extra = divmod(budget, len(agents))
        counts = {a: share + (1 if i < extra else 0) for i, a in enumerate(agents)}
        await self._fresh(tree, ctx, prompt, {a: c for a, c in counts.items() if c}, [])


class SequentialRefine(Baseline):
    """Sequential refinement (name 'seq-refine'): ceil(N/K) rounds, each a chain over the agents.

    Each round visits the agents in a freshly shuffled order (seeded): the first writes fresh,
    each next one refines the previous response of the round. A round's responses are scored
    together after it (one score call per round); rewards only pick the final best. When K does
    not divide N the last round is cut short after N mod K agents. When a generation fails, the
    next agent refines the last response that did come back in the round (or writes fresh).
    """

    name = "seq-refine"

    async def _search(
        self, tree: SearchTree, ctx: SearchContext, prompt: Prompt, *, budget: int, seed: int
    ) -> None:
        agents = tree.agents
        rng = derive_rng(seed, prompt.id)
        history: list[float] = []
        remaining = budget
        while remaining > 0:
            order = rng.sample(agents, len(agents))[:remaining]
            ids = await self._round(tree, ctx, prompt, order)
            await score_into(tree, ctx, prompt, ids, normaliser=normalise_by_rank, history=history)
            remaining -= len(order)

    async def _round(
        self, tree: SearchTree, ctx: SearchContext, prompt: Prompt, order: list[str]
    ) -> list[int]:
        ids: list[int] = []
        previous: int | None = None
        for agent in order:
            if previous is None:
                node_id = tree.add_response(tree.agent_child(ROOT_ID, agent, "fresh"))
                messages = fresh_messages(prompt, self.templates)
            else:
                arm = tree.agent_child(previous, agent, "refine")
                node_id = tree.add_response(arm, parents=(previous,))
                messages = refine_messages(prompt, tree.node(previous).text or "", self.templates)
            if await generate_into(tree, ctx, node_id, messages):
                previous = node_id
            ids.append(node_id)
        return ids
