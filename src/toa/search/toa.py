"""TOA: Monte Carlo tree search over agents, exactly as TOA_SPEC describes it.

One play = select (UCB at the root and at response nodes, `topk_child` + UCB below fully expanded
agent nodes) -> expand (the selected agent node generates: fresh, or a refinement of its parent
response) -> evaluate (raw reward against the original prompt, normalised) -> back up (the new
response node and every ancestor, visits starting at 0).

The search core, `TOAState`, is synchronous and does no I/O; `TOASearch.run` drives it against a
`SearchContext` with up to `parallel_plays` plays in flight. While a play is in flight every node
on its path carries one virtual loss (a visit worth 0), so concurrent plays spread out; with
`parallel_plays=1` no play is ever in flight at selection time, and the search is the sequential
one, node for node.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from toa.errors import ConfigError, TOAError
from toa.search._steps import generate_into, record_score
from toa.search.bayes import BayesState
from toa.search.context import SearchContext, check_budget, derive_rng
from toa.search.normalise import Normalisation
from toa.search.priors import Prior
from toa.search.selection import ArmStats, is_fully_expanded, select_by_ucb, top_k_by_reward
from toa.search.templates import Templates, fresh_messages, refine_messages
from toa.search.tree import ROOT_ID, SearchTree
from toa.types import Message, Prompt, Score

__all__ = [
    "BAYES_SETTINGS",
    "RULES",
    "UCB_SETTINGS",
    "Play",
    "PlayState",
    "Rule",
    "TOAConfig",
    "TOASearch",
    "TOAState",
    "new_state",
    "run_play",
]

Rule = Literal["bayes", "ucb"]
RULES: tuple[Rule, ...] = ("bayes", "ucb")
"""TOA's play rules; 'bayes' is the default, 'ucb' the paper's (its presets use it)."""
UCB_SETTINGS = ("alpha", "width", "width_fraction", "topk_child", "improvement_cap", "fresh_arms")
"""`TOAConfig` fields that only rule 'ucb' uses."""
BAYES_SETTINGS = ("prior_strength", "aggregate")
"""`TOAConfig` fields that only rule 'bayes' uses."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TOAConfig:
    """TOA hyperparameters (keyword-only; `toa.search.PRESETS` holds the paper's).

    Attributes:
        rule: how each play chooses its action. 'bayes' (default): Thompson sampling on the
            chance of a new best, fresh vs refine of the best, from cross-prompt priors
            (`toa.search.bayes`). 'ucb': the paper's UCB tree policy with the width and
            improvement rules (`alpha` ... `fresh_arms` apply to it only); the paper presets
            use it.
        prior_strength: 'bayes' only: at most this many pseudo-plays of cross-prompt evidence
            per action, > 0 (a prompt's own plays soon outweigh them).
        aggregate: 'bayes' only: whether "an agent merges the best responses so far" is one of
            the actions (its belief learns, per prompt and across prompts, whether merging helps).
        alpha: UCB exploration weight, >= 0. The paper used 0.01-0.1 on sigmoid-normalised
            rewards; 0.1 suits the scale-free normalisations, whose q spread over [0, 1].
        width: responses per depth before the search goes deeper, >= number of agents; None
            derives it from the budget as ``max(K, floor(width_fraction * budget))``.
        width_fraction: in (0, 1]; the paper's ``K * n / 3`` is 1/3 (alignment, data synthesis),
            ``K * n / 2`` is 1/2 (math), where n = budget / K samples per agent.
        topk_child: best responses (by raw reward) that UCB chooses among below a fully expanded
            agent node, >= 1 (1 = greedy).
        improvement_cap: generations after which an agent node that never beat its parent
            response counts as fully expanded anyway, >= 1 (TOA_SPEC defect 6).
        fresh_arms: whether every response node also gets K fresh arms, whose statistics start
            as copies of the root's agent nodes (True), or only the K refine arms.
        normalisation: raw reward -> q in [0, 1]; the default is the scale-free running rank.
        parallel_plays: plays of one tree in flight at once, >= 1 (virtual loss spreads them).
    """

    rule: Rule = "bayes"
    prior_strength: float = 16.0
    aggregate: bool = True
    alpha: float = 0.1
    width: int | None = None
    width_fraction: float = 1 / 3
    topk_child: int = 1
    improvement_cap: int = 3
    fresh_arms: bool = True
    normalisation: Normalisation = field(default_factory=Normalisation)
    parallel_plays: int = 1

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"toa: rule must be one of {list(RULES)}, got {self.rule!r}")
        if not (math.isfinite(self.prior_strength) and self.prior_strength > 0):
            raise ConfigError(
                f"toa: prior_strength must be a finite number > 0, got {self.prior_strength!r}"
            )
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"toa: alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.width is not None and (isinstance(self.width, bool) or self.width < 1):
            raise ConfigError(f"toa: width must be an integer >= 1 or unset, got {self.width!r}")
        if not 0 < self.width_fraction <= 1:
            raise ConfigError(f"toa: width_fraction must be in (0, 1], got {self.width_fraction!r}")
        for name in ("topk_child", "improvement_cap", "parallel_plays"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"toa: {name} must be an integer >= 1, got {value!r}")

    def resolve_width(self, *, budget: int, n_agents: int) -> int:
        """The width for one run: `width`, or derived from the budget (see the attributes).

        Raises:
            ConfigError: an explicit `width` is smaller than the number of agents.
        """
        if self.width is None:
            return max(n_agents, int(self.width_fraction * budget))
        if self.width < n_agents:
            raise ConfigError(
                f"toa: width={self.width} is smaller than the number of agents ({n_agents}); "
                f"every agent needs a response at depth 1, so set width >= {n_agents} "
                "(or leave it unset to derive it from the budget)"
            )
        return self.width

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded in the tree's config (only the fields the rule uses;
        the 'ucb' form is the one earlier releases recorded)."""
        if self.rule == "bayes":
            return {
                "rule": "bayes",
                "prior_strength": self.prior_strength,
                "aggregate": self.aggregate,
                "normalisation": self.normalisation.to_dict(),
                "parallel_plays": self.parallel_plays,
            }
        return {
            "alpha": self.alpha,
            "width": self.width,
            "width_fraction": self.width_fraction,
            "topk_child": self.topk_child,
            "improvement_cap": self.improvement_cap,
            "fresh_arms": self.fresh_arms,
            "normalisation": self.normalisation.to_dict(),
            "parallel_plays": self.parallel_plays,
        }


class PlayState(Protocol):
    """The synchronous core of one search (`TOAState` for 'ucb', `BayesState` for 'bayes')."""

    prompt: Prompt
    tree: SearchTree

    @property
    def done(self) -> bool: ...

    def start_play(self, is_available: Callable[[str], bool]) -> Play: ...

    def finish_play(self, play: Play, score: Score | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Play:
    """One play in flight: the pending response node and the request that will fill it."""

    node_id: int
    agent: str
    messages: tuple[Message, ...]


class TOAState:
    """The synchronous core of one TOA search on one prompt: selection and bookkeeping, no I/O.

    Drive it with `start_play` -> (generate, score) -> `finish_play`, `budget` times;
    `TOASearch.run` does, and so can a test.

    Attributes:
        tree: the search tree being built.
        width: the resolved width (responses per depth before going deeper).
        rng: the run's generator (`derive_rng(seed, prompt.id)`): every random choice.
        history: raw rewards scored so far, in scoring order (for the normalisation).
        started: plays started so far (T in the UCB formula).
    """

    def __init__(
        self,
        prompt: Prompt,
        agents: tuple[str, ...],
        *,
        config: TOAConfig,
        budget: int,
        seed: int,
        templates: Templates,
    ) -> None:
        if not agents:
            raise ConfigError("toa: the context has no agents")
        self.prompt = prompt
        self.config = config
        self.templates = templates
        self.budget = budget
        self.width = config.resolve_width(budget=budget, n_agents=len(agents))
        record = {**config.to_dict(), "resolved_width": self.width, "templates": templates.hashes()}
        self.tree = SearchTree.new(
            prompt_id=prompt.id,
            strategy="toa",
            agents=agents,
            budget=budget,
            seed=seed,
            config=record,
        )
        self.rng = derive_rng(seed, prompt.id)
        self.history: list[float] = []
        self.started = 0
        self._normaliser = config.normalisation.function()
        self._virtual: Counter[int] = Counter()
        for agent in agents:
            self.tree.add_agent(ROOT_ID, agent, "fresh")

    @property
    def done(self) -> bool:
        """True once `budget` plays have started."""
        return self.started >= self.budget

    def start_play(self, is_available: Callable[[str], bool]) -> Play:
        """Select an agent node, add its pending response and put virtual loss on the path."""
        if self.done:
            raise TOAError(f"toa: all {self.budget} plays have already started")
        self.started += 1
        # Asked once per agent per play (a breaker's state is the same for the whole descent).
        available = {agent: is_available(agent) for agent in self.tree.agents}
        agent_node = self._select(available.__getitem__)
        node = self.tree.node(agent_node)
        parents = (node.parent,) if node.action == "refine" else ()
        node_id = self.tree.add_response(agent_node, parents=parents)
        for ancestor in self.tree.ancestors(agent_node):
            self._virtual[ancestor] += 1
        return Play(node_id=node_id, agent=node.agent, messages=self._messages(agent_node))

    def finish_play(self, play: Play, score: Score | None) -> None:
        """Record the play's score (None: the generation failed, already on the tree)."""
        agent_node = self.tree.node(play.node_id).parent
        for ancestor in self.tree.ancestors(agent_node):
            self._virtual[ancestor] -= 1
        if score is None:
            return
        record_score(
            self.tree, play.node_id, score, normaliser=self._normaliser, history=self.history
        )

    def _select(self, is_available: Callable[[str], bool]) -> int:
        node_id = ROOT_ID
        while True:
            node_id = self._choose_arm(node_id, is_available)
            if not is_fully_expanded(
                self.tree, node_id, width=self.width, improvement_cap=self.config.improvement_cap
            ):
                return node_id
            node_id = self._choose_response(node_id)

    def _choose_arm(self, node_id: int, is_available: Callable[[str], bool]) -> int:
        """At the root or a response node: an agent child by UCB, unavailable agents skipped.

        When every agent is unavailable the choice ignores availability: the call then fails
        and is recorded, so a run always ends.
        """
        if not self.tree.node(node_id).children:
            self._add_arms(node_id)
        children = self.tree.node(node_id).children
        usable = [c for c in children if is_available(self.tree.node(c).agent)] or children
        return usable[self._ucb(usable)]

    def _choose_response(self, agent_node: int) -> int:
        """Below a fully expanded agent node: UCB among its `topk_child` best responses."""
        scored = [c for c in self.tree.node(agent_node).children if self.tree.node(c).scored]
        rewards = [self.tree.node(c).reward or 0.0 for c in scored]
        top = [scored[i] for i in top_k_by_reward(rewards, self.config.topk_child)]
        return top[self._ucb(top)]

    def _ucb(self, candidates: list[int]) -> int:
        arms = [self._arm(c) for c in candidates]
        return select_by_ucb(arms, self.started, alpha=self.config.alpha, rng=self.rng)

    def _arm(self, node_id: int) -> ArmStats:
        node = self.tree.node(node_id)
        return ArmStats(
            visits=node.visits + node.prior_visits + self._virtual[node_id],
            value_sum=node.value_sum + node.prior_value_sum,
            failures=node.failures,
        )

    def _messages(self, agent_node: int) -> tuple[Message, ...]:
        node = self.tree.node(agent_node)
        if node.action == "refine":
            answer = self.tree.node(node.parent).text or ""
            return refine_messages(self.prompt, answer, self.templates)
        return fresh_messages(self.prompt, self.templates)

    def _add_arms(self, response: int) -> None:
        """K refine arms, then (if enabled) K fresh arms, under a response selected for the first
        time. Created lazily, so fresh arms copy the root's statistics as they are when the
        search first goes below this response, not when it was generated."""
        root_arms = [self.tree.node(c) for c in self.tree.root.children]
        for arm in root_arms:
            self.tree.add_agent(response, arm.agent, "refine")
        if not self.config.fresh_arms:
            return
        for arm in root_arms:
            self.tree.add_agent(
                response,
                arm.agent,
                "fresh",
                prior_visits=arm.visits,
                prior_value_sum=arm.value_sum,
            )


def new_state(
    prompt: Prompt,
    agents: tuple[str, ...],
    *,
    config: TOAConfig,
    budget: int,
    seed: int,
    templates: Templates,
    prior: Prior | None = None,
) -> PlayState:
    """The search core for `config.rule`: `BayesState` ('bayes', from `prior`) or `TOAState`."""
    if config.rule == "bayes":
        return BayesState(
            prompt,
            agents,
            config=config,
            budget=budget,
            seed=seed,
            templates=templates,
            prior=prior,
        )
    return TOAState(prompt, agents, config=config, budget=budget, seed=seed, templates=templates)


async def run_play(state: PlayState, ctx: SearchContext, play: Play) -> None:
    """Generate and score one play, then hand the result to `state.finish_play`."""
    if not await generate_into(state.tree, ctx, play.node_id, play.messages):
        state.finish_play(play, None)
        return
    text = state.tree.node(play.node_id).text or ""
    scores = await ctx.score(state.prompt, [text], node_ids=[play.node_id])
    if len(scores) != 1:
        raise TOAError(f"the context returned {len(scores)} scores for 1 response")
    state.finish_play(play, scores[0])


class TOASearch:
    """The TOA strategy (name 'toa'): `budget` plays of tree search over the context's agents.

    Exactly `budget` generations are made; failed ones cost their unit and are recorded. With
    rule 'bayes', `run`'s `prior` (what earlier prompts taught) seeds the beliefs; rule 'ucb'
    ignores it.
    """

    name = "toa"

    def __init__(self, config: TOAConfig | None = None, *, templates: Templates | None = None):
        self.config = config or TOAConfig()
        self.templates = templates or Templates.for_task("instruction")

    def __repr__(self) -> str:
        return f"TOASearch({self.config!r}, task={self.templates.task!r})"

    async def run(
        self,
        prompt: Prompt,
        ctx: SearchContext,
        *,
        budget: int,
        seed: int,
        prior: Prior | None = None,
    ) -> SearchTree:
        """Search `prompt` with `budget` plays; returns the whole tree."""
        check_budget(budget, self.name)
        state = new_state(
            prompt,
            tuple(ctx.agents),
            config=self.config,
            budget=budget,
            seed=seed,
            templates=self.templates,
            prior=prior,
        )
        workers = min(self.config.parallel_plays, budget)
        if workers == 1:
            await _play_until_done(state, ctx)
            return state.tree
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(_play_until_done(state, ctx))
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from errors
        return state.tree


async def _play_until_done(state: PlayState, ctx: SearchContext) -> None:
    while not state.done:
        await run_play(state, ctx, state.start_play(ctx.is_available))
