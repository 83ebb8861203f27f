"""Invariants every search tree must satisfy, shared by the search tests."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from toa.errors import ServerError
from toa.search import SearchTree
from toa.testing.sim_context import SimulatedContext
from toa.types import Completion, Message

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion (for hypothesis tests, which are synchronous)."""
    return asyncio.run(coro)


def check_tree(tree: SearchTree, *, budget: int | None = None) -> None:
    """Structure, statistics, failures and the JSON round trip of a finished tree."""
    assert tree.root.id == 0
    assert tree.root.parent == -1
    for i, node in enumerate(tree.nodes):
        assert node.id == i
        for child in node.children:
            assert tree.node(child).parent == i
        if node.kind == "agent":
            assert node.visits == sum(tree.node(c).visits for c in node.children)
            assert all(tree.node(c).kind == "response" for c in node.children)
        elif node.kind == "response":
            _check_response(tree, i)
    scored = tree.scored()
    assert tree.root.visits == len(scored)
    assert tree.root.visits == sum(tree.node(c).visits for c in tree.root.children)
    assert math.isclose(tree.root.value_sum, sum(n.q or 0.0 for n in scored), abs_tol=1e-9)
    assert not any(n.pending for n in tree.nodes), "a finished tree has no pending response"
    if budget is not None:
        assert tree.generations == budget
    best = tree.best()
    if best is not None:
        assert not best.failed
        assert best.reward == max(n.reward or 0.0 for n in scored)
    check_round_trip(tree)


def _check_response(tree: SearchTree, i: int) -> None:
    node = tree.node(i)
    own = 1 if node.scored else 0
    assert node.visits == own + sum(tree.node(c).visits for c in node.children)
    for parent in node.parents:
        assert tree.node(parent).kind == "response"
        assert parent < i
    if node.failed:
        assert node.reward is None
        assert node.q is None
    if node.error is not None:  # no text: nothing can build on it
        assert node.text is None
        assert node.visits == 0
        assert not node.children
    if node.scored:
        assert node.q is not None
        assert 0.0 <= node.q <= 1.0
        assert node.text is not None


def check_round_trip(tree: SearchTree) -> None:
    """to_dict -> JSON text -> from_dict gives an equal tree and the same dict."""
    data = json.loads(json.dumps(tree.to_dict()))
    again = SearchTree.from_dict(data)
    assert again == tree
    assert again.to_dict() == tree.to_dict()
    assert [n.children for n in again.nodes] == [n.children for n in tree.nodes]


class DeadAgentContext(SimulatedContext):
    """agent_a reports itself available but every call to it fails."""

    async def generate(
        self, agent: str, messages: Sequence[Message], *, node_id: int
    ) -> Completion:
        if agent == "agent_a":
            raise ServerError("dead", agent=agent, status=503)
        return await super().generate(agent, messages, node_id=node_id)
