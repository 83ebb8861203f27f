"""What a report shows, gathered in one pass over a run's stored results.

`Gather` takes each stored result (and its tree, when one is stored) and gives back the prompt's
compact record for the page's data block, while it sums the run's compute and counts who wrote
the best answers. A record is a JSON array (no key names repeated 10,000 x 160 times):

``[id, prompt, status, best_node, best_reward, failed_nodes, error, nodes]``

and each node ``[id, parent, depth, agent, action, reward, text, error, reward_error,
prompt_tokens, completion_tokens, parents]`` with trailing nulls cut off. Only response nodes
are kept: an agent node's agent and action are on its responses, and a response's `parent` is the
response its request carried (-1 under the root), as in the result line's ``samples``. `agent` is
an index into `Gather.agents`, `action` into `ACTIONS`; `parents` (MoA) only when more than one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIONS", "COMPUTE_FIELDS", "Gather", "Histogram", "histogram"]

ACTIONS = ("fresh", "refine", "aggregate")
"""The actions, by the index a node record holds."""

COMPUTE_FIELDS = (
    "calls",
    "failed_calls",
    "cached_calls",
    "replayed_calls",
    "prompt_tokens",
    "completion_tokens",
    "flops",
    "reward_calls",
    "failed_rewards",
    "cost_usd",
    "wall_s",
)
"""The result lines' ``compute`` fields the report sums."""

_AGENT_FIELDS = ("calls", "failed_calls", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts of values in equal bins from `low` to `high` (one bin when they are equal)."""

    low: float
    high: float
    counts: tuple[int, ...]


def histogram(values: Sequence[float], bins: int = 20) -> Histogram | None:
    """The histogram of the finite `values`, or None when there is none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    if high == low:
        return Histogram(low, high, (len(finite),))
    counts = [0] * bins
    width = (high - low) / bins
    for v in finite:
        counts[min(int((v - low) / width), bins - 1)] += 1
    return Histogram(low, high, tuple(counts))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _round(value: float | None) -> float | int | None:
    if value is None:
        return None
    rounded = round(value, 6)
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


@dataclass(slots=True)
class _Node:
    id: int
    parent: int
    depth: int
    agent: str
    action: str | None
    reward: float | None
    text: str | None
    error: str | None
    reward_error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    parents: tuple[int, ...]

    @property
    def failed(self) -> bool:
        return self.error is not None or self.reward_error is not None


def _usage(raw: object) -> tuple[int | None, int | None]:
    if not isinstance(raw, Mapping):
        return None, None
    return _int(raw.get("prompt_tokens")), _int(raw.get("completion_tokens"))


def _parents(raw: object) -> tuple[int, ...]:
    if not isinstance(raw, list | tuple):
        return ()
    return tuple(p for p in raw if isinstance(p, int) and not isinstance(p, bool))


def _from_tree(tree: Mapping[str, Any]) -> list[_Node]:
    """The response nodes of a stored tree (`SearchTree.to_dict()`), parents as responses."""
    raw_nodes = [n for n in tree.get("nodes", ()) if isinstance(n, Mapping)]
    kinds = {_int(n.get("id")): n.get("kind") for n in raw_nodes}
    tree_parent = {_int(n.get("id")): _int(n.get("parent")) for n in raw_nodes}
    nodes = []
    for raw in raw_nodes:
        if raw.get("kind") != "response":
            continue
        grand = tree_parent.get(tree_parent.get(_int(raw.get("id")), -1), -1)
        parent = grand if kinds.get(grand) == "response" else -1
        nodes.append(_node(raw, node_id=_int(raw.get("id")), parent=parent, text_key="text"))
    return nodes


def _node(raw: Mapping[str, Any], *, node_id: int, parent: int, text_key: str) -> _Node:
    """A response node from a tree node or a ``samples`` entry (they name the text apart)."""
    prompt_tokens, completion_tokens = _usage(raw.get("usage"))
    return _Node(
        id=node_id,
        parent=parent,
        depth=_int(raw.get("depth")),
        agent=_text(raw.get("agent")) or "",
        action=_text(raw.get("action")),
        reward=_number(raw.get("reward")),
        text=_text(raw.get(text_key)),
        error=_text(raw.get("error")),
        reward_error=_text(raw.get("reward_error")),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        parents=_parents(raw.get("parents")),
    )


def _from_samples(samples: object) -> list[_Node]:
    """The nodes of a result line's ``samples`` (stores of older releases hold no trees)."""
    nodes = []
    for index, raw in enumerate(samples if isinstance(samples, list) else ()):
        if not isinstance(raw, Mapping):
            continue
        parent, node_id = raw.get("parent"), raw.get("node")
        nodes.append(
            _node(
                raw,
                node_id=node_id if isinstance(node_id, int) else index,
                parent=parent if isinstance(parent, int) else -1,
                text_key="response",
            )
        )
    return nodes


def _best(nodes: Sequence[_Node]) -> _Node | None:
    """The highest raw reward, ties to the lower id (`SearchTree.best`)."""
    scored = [n for n in nodes if n.reward is not None and not n.failed]
    return min(scored, key=lambda n: (-(n.reward or 0.0), n.id)) if scored else None


def _trim(row: list[Any]) -> list[Any]:
    while row and row[-1] is None:
        row.pop()
    return row


@dataclass(slots=True)
class Gather:
    """Sums and counts over the results seen so far, and each prompt's compact record.

    Attributes:
        agents: agent names, in the order first seen (node records hold their index).
        done / failed: prompts by result status.
        compute: the sums of `COMPUTE_FIELDS` over every result line.
        by_agent: per-agent sums of calls, failed calls and tokens (``compute.by_agent``).
        best_by_agent / best_by_depth / best_by_action: who wrote each prompt's best answer.
        best_rewards / all_rewards: the best reward of each prompt, every scored reward.
        nodes / failed_nodes: response nodes kept, and those whose generation or score failed.
        text_chars: characters of prompt and response text (the data's irreducible size).
    """

    agents: list[str] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    compute: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPUTE_FIELDS, 0.0))
    by_agent: dict[str, dict[str, int]] = field(default_factory=dict)
    best_by_agent: Counter[str] = field(default_factory=Counter)
    best_by_depth: Counter[int] = field(default_factory=Counter)
    best_by_action: Counter[str] = field(default_factory=Counter)
    best_rewards: list[float] = field(default_factory=list)
    all_rewards: list[float] = field(default_factory=list)
    nodes: int = 0
    failed_nodes: int = 0
    text_chars: int = 0
    _agent_index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def agent_index(self, name: str) -> int:
        index = self._agent_index.get(name)
        if index is None:
            index = self._agent_index[name] = len(self.agents)
            self.agents.append(name)
        return index

    def add(
        self, prompt_id: str, status: str, result: Mapping[str, Any], tree: Mapping[str, Any] | None
    ) -> list[Any]:
        """Count one stored result; its record for the page."""
        if status == "done":
            self.done += 1
        else:
            self.failed += 1
        self._add_compute(result.get("compute"))
        nodes = _from_tree(tree) if tree is not None else _from_samples(result.get("samples"))
        best = _best(nodes)
        if best is not None and best.reward is not None:
            self.best_by_agent[best.agent] += 1
            self.best_by_depth[best.depth] += 1
            self.best_by_action[best.action or "?"] += 1
            self.best_rewards.append(best.reward)
        prompt = _text(result.get("prompt")) or ""
        self.text_chars += len(prompt_id) + len(prompt)
        rows = []
        failed = 0
        for node in nodes:
            failed += node.failed
            if node.reward is not None and not node.failed:
                self.all_rewards.append(node.reward)
            self.text_chars += len(node.text or "")
            rows.append(self._node_row(node))
        self.nodes += len(nodes)
        self.failed_nodes += failed
        error = _text(result.get("error")) if status != "done" else None
        return _trim(
            [
                prompt_id,
                prompt,
                status,
                best.id if best is not None else -1,
                _round(best.reward) if best is not None else None,
                failed,
                error,
                rows,
            ]
        )

    def _node_row(self, node: _Node) -> list[Any]:
        action = ACTIONS.index(node.action) if node.action in ACTIONS else None
        return _trim(
            [
                node.id,
                node.parent,
                node.depth,
                self.agent_index(node.agent),
                action,
                _round(node.reward),
                node.text,
                node.error,
                node.reward_error,
                node.prompt_tokens,
                node.completion_tokens,
                list(node.parents) if len(node.parents) > 1 else None,
            ]
        )

    def _add_compute(self, compute: object) -> None:
        if not isinstance(compute, Mapping):
            return
        for name in COMPUTE_FIELDS:
            self.compute[name] += _number(compute.get(name)) or 0.0
        by_agent = compute.get("by_agent")
        if not isinstance(by_agent, Mapping):
            return
        for name, counts in by_agent.items():
            if not isinstance(counts, Mapping):
                continue
            sums = self.by_agent.setdefault(str(name), dict.fromkeys(_AGENT_FIELDS, 0))
            for key in _AGENT_FIELDS:
                sums[key] += _int(counts.get(key))
