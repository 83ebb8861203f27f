"""The search tree: plain data, no I/O.

Every strategy returns one `SearchTree`. Nodes live in a list indexed by their integer id (root = 0,
its parent = -1), in creation order, so a node id also says when the call that made it started.

```
root (kind "root")
├── agent node (kind "agent", agent "a", action "fresh")
│   ├── response node (kind "response", reward r, normalised reward q)
│   │   ├── agent node (agent "a", action "refine")   K refine arms ...
│   │   │   └── response node (parents = (its parent response,))
│   │   └── agent node (agent "b", action "fresh")    ... and K fresh arms (TOA)
│   └── response node (generation failed: `error` set, never scored)
└── agent node (agent "b", action "fresh") ...
```

MoA aggregate responses name every response they aggregated in `parents`; their tree parent is an
agent node under the first of them, so a response's depth is its layer + 1.

Statistics follow TOA_SPEC (defect 4 fixed): visits start at 0 and a scored play adds its
normalised reward to the new response node and every ancestor. Hence, for every tree:
root visits = scored plays; an agent node's visits = the sum over its response children; a
response node's visits = (1 if it was scored, else 0) + the sum over its agent children.
`prior_visits` / `prior_value_sum` hold statistics copied from elsewhere (TOA's fresh arms) and
are kept apart so these sums hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from toa.types import Completion, Usage

__all__ = ["Action", "Node", "NodeKind", "SearchTree", "back_up"]

NodeKind = Literal["root", "agent", "response"]
Action = Literal["fresh", "refine", "aggregate"]

ROOT_ID = 0
NO_PARENT = -1

# Node fields written by `to_dict`, in order (`children` is derived and rebuilt on load).
_NODE_FIELDS = (
    "id",
    "parent",
    "kind",
    "depth",
    "agent",
    "action",
    "parents",
    "text",
    "reward",
    "q",
    "visits",
    "value_sum",
    "prior_visits",
    "prior_value_sum",
    "failures",
    "error",
    "reward_error",
    "usage",
)


@dataclass(slots=True, kw_only=True)
class Node:
    """One node of a search tree.

    Attributes:
        id: index in `SearchTree.nodes` (root = 0).
        parent: the tree parent's id (-1 for the root).
        kind: 'root', 'agent' (an agent applied in a context) or 'response' (one generation).
        depth: 0 for the root; an agent node and its responses share a depth, 1 under the root.
        agent: the agent's configured name ('' for the root).
        action: 'fresh', 'refine' or 'aggregate' (None for the root).
        parents: response ids whose text the request carried (1 for refine, several for MoA).
        text: the generated response (None while pending or after a failed generation).
        reward: raw reward from the reward model (None: not scored, or the score failed).
        q: the normalised reward that was backed up, in [0, 1] (None when not scored).
        visits: scored plays through this node (>= 0).
        value_sum: sum of the normalised rewards of those plays.
        prior_visits: visits copied from elsewhere at creation (TOA fresh arms), >= 0.
        prior_value_sum: value copied with `prior_visits`.
        failures: failed plays made by this agent node (failed generation or score).
        error: why the generation failed (None when it succeeded or is pending).
        reward_error: why the score failed (None when scored or not yet scored).
        usage: token counts of the generation, as the context reported them.
        children: ids of the tree children, in creation order (derived; not serialised).
    """

    id: int
    parent: int
    kind: NodeKind
    depth: int
    agent: str = ""
    action: Action | None = None
    parents: tuple[int, ...] = ()
    text: str | None = None
    reward: float | None = None
    q: float | None = None
    visits: int = 0
    value_sum: float = 0.0
    prior_visits: int = 0
    prior_value_sum: float = 0.0
    failures: int = 0
    error: str | None = None
    reward_error: str | None = None
    usage: Usage | None = None
    children: list[int] = field(default_factory=list)

    @property
    def scored(self) -> bool:
        """True for a response with a raw reward."""
        return self.reward is not None

    @property
    def failed(self) -> bool:
        """True when the generation or its score failed (never ranked)."""
        return self.error is not None or self.reward_error is not None

    @property
    def pending(self) -> bool:
        """True for a response whose generation or score is still in flight."""
        return self.kind == "response" and not self.failed and not self.scored

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the node (without the derived `children`), keys in
        `_NODE_FIELDS` order (written out: once per node of every stored tree)."""
        usage = self.usage
        return {
            "id": self.id,
            "parent": self.parent,
            "kind": self.kind,
            "depth": self.depth,
            "agent": self.agent,
            "action": self.action,
            "parents": list(self.parents),
            "text": self.text,
            "reward": self.reward,
            "q": self.q,
            "visits": self.visits,
            "value_sum": self.value_sum,
            "prior_visits": self.prior_visits,
            "prior_value_sum": self.prior_value_sum,
            "failures": self.failures,
            "error": self.error,
            "reward_error": self.reward_error,
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Node:
        """The node `to_dict` wrote."""
        fields = {name: data[name] for name in _NODE_FIELDS}
        fields["parents"] = tuple(fields["parents"])
        usage = fields["usage"]
        if usage is not None:
            fields["usage"] = Usage(usage["prompt_tokens"], usage["completion_tokens"])
        return cls(**fields)


@dataclass(slots=True, kw_only=True)
class SearchTree:
    """The whole record of one strategy run on one prompt.

    Attributes:
        prompt_id: the prompt's id.
        strategy: the strategy's name ('toa', 'random', ...).
        agents: the context's agent names, in order.
        budget: generations the strategy was given.
        seed: the run's seed.
        config: the strategy's hyperparameters and template hashes (JSON-ready).
        nodes: every node, indexed by id.
    """

    prompt_id: str
    strategy: str
    agents: tuple[str, ...]
    budget: int
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    _live: Counter[int] = field(default_factory=Counter, repr=False, compare=False)

    @classmethod
    def new(
        cls,
        *,
        prompt_id: str,
        strategy: str,
        agents: tuple[str, ...],
        budget: int,
        seed: int,
        config: dict[str, Any] | None = None,
    ) -> SearchTree:
        """A tree holding only its root."""
        tree = cls(
            prompt_id=prompt_id,
            strategy=strategy,
            agents=tuple(agents),
            budget=budget,
            seed=seed,
            config=dict(config or {}),
        )
        tree.nodes.append(Node(id=ROOT_ID, parent=NO_PARENT, kind="root", depth=0))
        return tree

    @property
    def root(self) -> Node:
        """Node 0."""
        return self.nodes[ROOT_ID]

    def node(self, node_id: int) -> Node:
        """The node with id `node_id`."""
        return self.nodes[node_id]

    def add_agent(
        self,
        parent: int,
        agent: str,
        action: Action,
        *,
        prior_visits: int = 0,
        prior_value_sum: float = 0.0,
    ) -> int:
        """Add an agent node under the root or a response node; returns its id."""
        above = self.nodes[parent]
        if above.kind == "agent":
            raise ValueError(f"an agent node cannot hang under agent node {parent}")
        return self._append(
            Node(
                id=len(self.nodes),
                parent=parent,
                kind="agent",
                depth=above.depth + 1,
                agent=agent,
                action=action,
                prior_visits=prior_visits,
                prior_value_sum=prior_value_sum,
            )
        )

    def agent_child(self, parent: int, agent: str, action: Action) -> int:
        """The id of `parent`'s agent child for (agent, action), added when missing."""
        for child in self.nodes[parent].children:
            node = self.nodes[child]
            if node.agent == agent and node.action == action:
                return child
        return self.add_agent(parent, agent, action)

    def add_response(self, agent_node: int, *, parents: tuple[int, ...] = ()) -> int:
        """Add a pending response under an agent node; returns its id."""
        above = self.nodes[agent_node]
        if above.kind != "agent":
            raise ValueError(f"a response must hang under an agent node, not node {agent_node}")
        node_id = self._append(
            Node(
                id=len(self.nodes),
                parent=agent_node,
                kind="response",
                depth=above.depth,
                agent=above.agent,
                action=above.action,
                parents=tuple(parents),
            )
        )
        self._live[above.depth] += 1
        return node_id

    def record_completion(self, node_id: int, completion: Completion) -> None:
        """Store a successful generation on a pending response."""
        node = self.nodes[node_id]
        node.text = completion.text
        node.usage = completion.usage

    def record_generation_failure(self, node_id: int, message: str) -> None:
        """Mark a pending response as a failed generation (it costs its budget unit)."""
        self._fail(node_id)
        self.nodes[node_id].error = message

    def record_reward(self, node_id: int, reward: float, q: float) -> None:
        """Store the raw and normalised reward of a generated response (no back-up)."""
        node = self.nodes[node_id]
        node.reward = reward
        node.q = q

    def record_reward_failure(self, node_id: int, message: str) -> None:
        """Mark a generated response whose score failed: kept, never ranked."""
        self._fail(node_id)
        self.nodes[node_id].reward_error = message

    def live_responses_at_depth(self, depth: int) -> int:
        """Responses at `depth` that are scored or still pending (failed ones excluded)."""
        return self._live[depth]

    def responses(self) -> list[Node]:
        """Every response node (failed and pending included), by id."""
        return [n for n in self.nodes if n.kind == "response"]

    def scored(self) -> list[Node]:
        """Every response with a raw reward, by id."""
        return [n for n in self.nodes if n.reward is not None]

    def ranked(self) -> list[Node]:
        """Scored responses, best raw reward first (ties: lower id first)."""
        return sorted(self.scored(), key=lambda n: (-_reward(n), n.id))

    def best(self) -> Node | None:
        """The response with the highest raw reward (TOA's final answer), or None."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    @property
    def generations(self) -> int:
        """Generation calls made: one per response node, failed ones included."""
        return sum(1 for n in self.nodes if n.kind == "response")

    def ancestors(self, node_id: int) -> Iterator[int]:
        """`node_id` and every tree ancestor up to the root, nearest first."""
        while node_id != NO_PARENT:
            yield node_id
            node_id = self.nodes[node_id].parent

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `SearchTree.from_dict` gives back an equal tree."""
        return {
            "prompt_id": self.prompt_id,
            "strategy": self.strategy,
            "agents": list(self.agents),
            "budget": self.budget,
            "seed": self.seed,
            "config": self.config,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchTree:
        """The tree `to_dict` wrote (children and depth counts are rebuilt)."""
        tree = cls(
            prompt_id=data["prompt_id"],
            strategy=data["strategy"],
            agents=tuple(data["agents"]),
            budget=data["budget"],
            seed=data["seed"],
            config=dict(data["config"]),
        )
        for raw in data["nodes"]:
            node = Node.from_dict(raw)
            if node.id != len(tree.nodes):
                raise ValueError(f"node ids must be 0, 1, 2, ... in order; got {node.id}")
            tree._append(node)
            if node.kind == "response" and not node.failed:
                tree._live[node.depth] += 1
        return tree

    def _append(self, node: Node) -> int:
        self.nodes.append(node)
        if node.parent != NO_PARENT:
            self.nodes[node.parent].children.append(node.id)
        return node.id

    def _fail(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.failed:
            self._live[node.depth] -= 1
        self.nodes[node.parent].failures += 1


def back_up(tree: SearchTree, node_id: int, value: float) -> None:
    """Add one visit and `value` to `node_id` and every ancestor up to the root."""
    nodes = tree.nodes
    while node_id != NO_PARENT:  # `tree.ancestors`, without a generator (once per play)
        node = nodes[node_id]
        node.visits += 1
        node.value_sum += value
        node_id = node.parent


def _reward(node: Node) -> float:
    return node.reward if node.reward is not None else float("-inf")
