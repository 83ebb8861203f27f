"""TOA's paper rule ('ucb'): Monte Carlo tree search exactly as TOA_SPEC describes it.

One play = select (UCB at the root and at response nodes, `topk_child` + UCB below fully expanded
agent nodes) -> expand (the selected agent node generates: fresh, or a refinement of its parent
response) -> evaluate (raw reward against the original prompt, normalised) -> back up (the new
response node and every ancestor, visits starting at 0).

`TOAState` is synchronous and does no I/O; `toa.search.toa.TOASearch` drives it. While a play is
in flight every node on its path carries one virtual loss (a visit worth 0), so concurrent plays
spread out; with `parallel_plays=1` no play is ever in flight at selection time, and the search
is the sequential one, node for node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from toa.errors import ConfigError, TOAError
from toa.search.context import derive_rng
from toa.search.plays import Play, TOAConfig
from toa.search.selection import ArmStats, is_fully_expanded, select_by_ucb, top_k_by_reward
from toa.search.steps import record_score
from toa.search.templates import Templates, fresh_messages, refine_messages
from toa.search.tree import ROOT_ID, SearchTree
from toa.types import Message, Prompt, Score

__all__ = ["TOAState"]


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
