"""The tree as plain data: building, back-up from 0 visits, failures, ranking, JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tree_checks import check_round_trip

from toa.search import SearchTree, back_up
from toa.search.tree import Node
from toa.types import Completion, Usage


def _completion(text: str) -> Completion:
    return Completion("a", text, Usage(3, None), "stop", "sim://", "a", 0.0)


def _tree() -> SearchTree:
    return SearchTree.new(prompt_id="p1", strategy="toa", agents=("a", "b"), budget=4, seed=3)


def test_a_new_tree_holds_its_root_only() -> None:
    tree = _tree()
    assert [n.kind for n in tree.nodes] == ["root"]
    assert tree.root.parent == -1
    assert tree.root.visits == 0
    assert tree.generations == 0
    assert tree.best() is None


def test_back_up_counts_the_new_node_and_every_ancestor_from_zero() -> None:
    tree = _tree()
    arm = tree.add_agent(0, "a", "fresh")
    first = tree.add_response(arm)
    tree.record_completion(first, _completion("x"))
    tree.record_reward(first, 2.5, 0.5)
    back_up(tree, first, 0.5)
    assert [tree.node(i).visits for i in (0, arm, first)] == [1, 1, 1]
    refine = tree.add_agent(first, "b", "refine")
    second = tree.add_response(refine, parents=(first,))
    assert tree.node(second).depth == 2
    assert tree.node(second).pending
    tree.record_completion(second, _completion("y"))
    tree.record_reward(second, 3.0, 1.0)
    back_up(tree, second, 1.0)
    assert [tree.node(i).visits for i in (0, arm, first, refine, second)] == [2, 2, 2, 1, 1]
    assert tree.node(first).value_sum == 1.5
    assert list(tree.ancestors(second)) == [second, refine, first, arm, 0]


def test_failures_are_kept_never_ranked_and_leave_the_width_count() -> None:
    tree = _tree()
    arm = tree.add_agent(0, "a", "fresh")
    ok, gen_fail, score_fail = (tree.add_response(arm) for _ in range(3))
    assert tree.live_responses_at_depth(1) == 3
    tree.record_completion(ok, _completion("ok"))
    tree.record_reward(ok, -5.0, 0.5)
    tree.record_generation_failure(gen_fail, "ServerError: down")
    tree.record_completion(score_fail, _completion("unscored"))
    tree.record_reward_failure(score_fail, "reward model timed out")
    assert tree.live_responses_at_depth(1) == 1
    assert tree.node(arm).failures == 2
    assert [n.id for n in tree.ranked()] == [ok]
    best = tree.best()
    assert best is not None
    assert best.reward == -5.0  # a negative reward still beats a failure, never a made-up 0
    assert tree.generations == 3


def test_ranked_is_best_first_ties_by_id() -> None:
    tree = _tree()
    arm = tree.add_agent(0, "a", "fresh")
    for reward in (0.2, 0.9, 0.9, 0.1):
        node_id = tree.add_response(arm)
        tree.record_completion(node_id, _completion(str(reward)))
        tree.record_reward(node_id, reward, reward)
    assert [n.reward for n in tree.ranked()] == [0.9, 0.9, 0.2, 0.1]
    assert [n.id for n in tree.ranked()][:2] == [3, 4]


def test_agent_child_is_found_or_added_once() -> None:
    tree = _tree()
    first = tree.agent_child(0, "a", "fresh")
    assert tree.agent_child(0, "a", "fresh") == first
    assert tree.agent_child(0, "a", "refine") != first


def test_shape_errors() -> None:
    tree = _tree()
    arm = tree.add_agent(0, "a", "fresh")
    with pytest.raises(ValueError, match="under agent node"):
        tree.add_agent(arm, "b", "refine")
    with pytest.raises(ValueError, match="under an agent node"):
        tree.add_response(0)


def test_json_round_trip_is_exact() -> None:
    tree = _tree()
    tree.config = {"alpha": 0.1, "templates": {"refine": "ab" * 32}}
    arm = tree.add_agent(0, "a", "fresh")
    response = tree.add_response(arm)
    tree.record_completion(response, _completion("é ☃ text"))
    tree.record_reward(response, 0.1 + 0.2, 0.30000000000000004)
    back_up(tree, response, 0.30000000000000004)
    tree.add_agent(response, "b", "fresh", prior_visits=2, prior_value_sum=1.25)
    failed = tree.add_response(arm)
    tree.record_generation_failure(failed, "AgentUnavailableError: out")
    check_round_trip(tree)
    data = tree.to_dict()
    assert "children" not in data["nodes"][0]
    fields = [f.name for f in dataclasses.fields(Node) if f.name != "children"]
    assert all(list(node) == fields for node in data["nodes"])  # every field, in order
    assert data["nodes"][2]["usage"] == {"prompt_tokens": 3, "completion_tokens": None}
    assert SearchTree.from_dict(json.loads(json.dumps(data))).live_responses_at_depth(1) == 1


def test_from_dict_rejects_ids_out_of_order() -> None:
    data = _tree().to_dict()
    data["nodes"][0]["id"] = 5
    with pytest.raises(ValueError, match="in order"):
        SearchTree.from_dict(data)
