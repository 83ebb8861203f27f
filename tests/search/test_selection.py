"""Selection rules as pure functions, and the width / improvement rules on hand-built trees."""

from __future__ import annotations

import math
import random

import pytest

from toa.search import (
    ArmStats,
    SearchTree,
    back_up,
    improvement_reached,
    is_fully_expanded,
    select_by_ucb,
    top_k_by_reward,
    ucb_score,
    width_reached,
)
from toa.types import Completion, Usage


def test_ucb_score_is_the_paper_formula() -> None:
    arm = ArmStats(visits=4, value_sum=2.0)
    expected = 0.5 + 0.1 * math.sqrt(2 * math.log(10) / 4)
    assert math.isclose(ucb_score(arm, 10, alpha=0.1), expected)


def test_failed_plays_count_as_plays_that_yielded_nothing() -> None:
    arm = ArmStats(visits=2, value_sum=1.5, failures=1)
    expected = 0.5 + 0.1 * math.sqrt(2 * math.log(5) / 3)
    assert math.isclose(ucb_score(arm, 5, alpha=0.1), expected)
    only_failed = ArmStats(visits=0, value_sum=0.0, failures=2)
    assert math.isclose(ucb_score(only_failed, 5, alpha=0.1), 0.1 * math.sqrt(math.log(5)))


def test_ucb_score_rejects_an_unvisited_arm() -> None:
    with pytest.raises(ValueError, match="unvisited"):
        ucb_score(ArmStats(0, 0.0), 3, alpha=0.1)


def test_unvisited_arms_come_first() -> None:
    arms = [ArmStats(5, 5.0), ArmStats(0, 0.0), ArmStats(1, 1.0)]
    assert select_by_ucb(arms, 7, alpha=1.0, rng=random.Random(0)) == 1


def test_a_failed_arm_is_not_unvisited() -> None:
    arms = [ArmStats(2, 1.8), ArmStats(0, 0.0, failures=1)]
    assert select_by_ucb(arms, 3, alpha=0.0, rng=random.Random(0)) == 0


def test_ties_among_unvisited_are_broken_by_the_rng() -> None:
    arms = [ArmStats(0, 0.0)] * 3
    picks = {select_by_ucb(arms, 1, alpha=0.1, rng=random.Random(s)) for s in range(30)}
    assert picks == {0, 1, 2}


def test_highest_ucb_wins() -> None:
    arms = [ArmStats(10, 5.0), ArmStats(10, 7.0), ArmStats(1, 0.2)]
    assert select_by_ucb(arms, 21, alpha=0.0, rng=random.Random(0)) == 1
    assert select_by_ucb(arms, 21, alpha=10.0, rng=random.Random(0)) == 2


def test_select_needs_arms() -> None:
    with pytest.raises(ValueError, match="at least one"):
        select_by_ucb([], 1, alpha=0.1, rng=random.Random(0))


def test_top_k_by_reward_best_first_ties_by_index() -> None:
    assert top_k_by_reward([0.1, 0.9, 0.5, 0.9], 1) == [1]
    assert top_k_by_reward([0.1, 0.9, 0.5, 0.9], 3) == [1, 3, 2]
    assert top_k_by_reward([0.2], 5) == [0]
    with pytest.raises(ValueError, match="k must be"):
        top_k_by_reward([0.2], 0)


def test_width_rule() -> None:
    assert not width_reached(2, width=3)
    assert width_reached(3, width=3)


def test_improvement_rule_with_cap() -> None:
    assert improvement_reached(None, [], attempts=0, cap=3)
    assert improvement_reached(0.5, [0.4, 0.6], attempts=2, cap=3)
    assert not improvement_reached(0.5, [0.4, 0.5], attempts=2, cap=3)
    assert improvement_reached(0.5, [0.4, 0.5, 0.1], attempts=3, cap=3)


def _scored(tree: SearchTree, agent_node: int, reward: float, parents: tuple[int, ...] = ()) -> int:
    node_id = tree.add_response(agent_node, parents=parents)
    tree.record_completion(node_id, Completion("a", f"r{reward}", Usage(1, 1), "stop", "", "a", 0))
    tree.record_reward(node_id, reward, reward)
    back_up(tree, node_id, reward)
    return node_id


def _hand_built() -> tuple[SearchTree, dict[str, int]]:
    """root -> a (0.6, 0.3), b (0.5); refine arms under a's best; one arm under b's response."""
    tree = SearchTree.new(prompt_id="p", strategy="toa", agents=("a", "b"), budget=9, seed=0)
    ids = {"a": tree.add_agent(0, "a", "fresh"), "b": tree.add_agent(0, "b", "fresh")}
    ids["a1"] = _scored(tree, ids["a"], 0.6)
    ids["a2"] = _scored(tree, ids["a"], 0.3)
    ids["b1"] = _scored(tree, ids["b"], 0.5)
    ids["ra"] = tree.add_agent(ids["a1"], "a", "refine")
    ids["rb"] = tree.add_agent(ids["a1"], "b", "refine")
    ids["rb2"] = tree.add_agent(ids["b1"], "b", "refine")
    return tree, ids


def test_root_arms_need_width_responses_at_depth_one() -> None:
    tree, ids = _hand_built()
    assert is_fully_expanded(tree, ids["a"], width=3, improvement_cap=3)
    assert not is_fully_expanded(tree, ids["a"], width=4, improvement_cap=3)
    # b has one response only, but the width is counted over the whole depth
    assert is_fully_expanded(tree, ids["b"], width=3, improvement_cap=3)


def test_an_agent_node_without_scored_responses_is_never_fully_expanded() -> None:
    tree, ids = _hand_built()
    assert not is_fully_expanded(tree, ids["ra"], width=1, improvement_cap=1)


def test_width_at_depth_two_counts_responses_under_every_response_node() -> None:
    tree, ids = _hand_built()
    _scored(tree, ids["ra"], 0.7, (ids["a1"],))
    _scored(tree, ids["rb2"], 0.4, (ids["b1"],))
    assert is_fully_expanded(tree, ids["ra"], width=2, improvement_cap=3)
    assert not is_fully_expanded(tree, ids["ra"], width=3, improvement_cap=3)


def test_improvement_rule_on_a_tree_and_its_cap() -> None:
    tree, ids = _hand_built()
    _scored(tree, ids["rb"], 0.55, (ids["a1"],))  # worse than its parent (0.6)
    assert not is_fully_expanded(tree, ids["rb"], width=1, improvement_cap=3)
    _scored(tree, ids["rb"], 0.6, (ids["a1"],))  # equal is not better
    assert not is_fully_expanded(tree, ids["rb"], width=1, improvement_cap=3)
    _scored(tree, ids["rb"], 0.58, (ids["a1"],))  # third try: the cap is reached
    assert is_fully_expanded(tree, ids["rb"], width=1, improvement_cap=3)
    _scored(tree, ids["ra"], 0.61, (ids["a1"],))  # better than the parent at once
    assert is_fully_expanded(tree, ids["ra"], width=1, improvement_cap=3)


def test_failed_responses_do_not_count_towards_the_width() -> None:
    tree, ids = _hand_built()
    failed = tree.add_response(ids["ra"], parents=(ids["a1"],))
    tree.record_generation_failure(failed, "ServerError: boom")
    _scored(tree, ids["ra"], 0.9, (ids["a1"],))
    assert tree.live_responses_at_depth(2) == 1
    assert not is_fully_expanded(tree, ids["ra"], width=2, improvement_cap=3)
