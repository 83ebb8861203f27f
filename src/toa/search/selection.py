"""TOA's selection rules as small pure functions (TOA_SPEC, "One play").

* `ucb_score` / `select_by_ucb`: ``q_mean + alpha * sqrt(2 ln T / n)``, unvisited arms first.
* `top_k_by_reward`: the `topk_child` best responses of a fully expanded agent node.
* `width_reached`, `improvement_reached`, `is_fully_expanded`: when an agent node stops generating
  and the search goes down to its responses instead.

Failures. A failed generation or score is never a reward (TOA_SPEC defect 2): the failed
response has no reward, is never ranked and adds nothing to any node's statistics. Choosing arms
is another matter: a play that failed yielded nothing, so an arm's mean counts its failed plays as
plays worth nothing, ``value_sum / (visits + failures)``, and an arm that has only failed is no
longer "unvisited". Otherwise an agent that keeps failing would be chosen again and again and
swallow the budget before its circuit breaker opens.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from toa.search.tree import SearchTree

__all__ = [
    "ArmStats",
    "improvement_reached",
    "is_fully_expanded",
    "select_by_ucb",
    "top_k_by_reward",
    "ucb_score",
    "width_reached",
]


@dataclass(frozen=True, slots=True)
class ArmStats:
    """What UCB sees of one arm.

    Attributes:
        visits: scored plays through the arm (plus copied priors and virtual losses), >= 0.
        value_sum: sum of their normalised rewards (virtual losses add 0).
        failures: failed plays made by the arm, >= 0.
    """

    visits: int
    value_sum: float
    failures: int = 0

    @property
    def unvisited(self) -> bool:
        """True when the arm has never been played, successfully or not."""
        return self.visits + self.failures == 0


def ucb_score(arm: ArmStats, total_plays: int, *, alpha: float) -> float:
    """``q_mean + alpha * sqrt(2 ln T / n)`` for a played arm (TOA paper, eq. 2).

    Args:
        arm: the arm's statistics; it must have been played (`visits + failures` >= 1). n and
            the mean's denominator are ``visits + failures`` (module docstring).
        total_plays: T, the plays started so far on this prompt (>= 1; the reference's global
            count).
        alpha: exploration weight, >= 0.
    """
    tries = arm.visits + arm.failures
    if tries <= 0:
        raise ValueError("ucb_score needs a played arm; unvisited arms are chosen first")
    q_mean = arm.value_sum / tries
    return q_mean + alpha * math.sqrt(2.0 * math.log(max(total_plays, 1)) / tries)


def select_by_ucb(
    arms: Sequence[ArmStats],
    total_plays: int,
    *,
    alpha: float,
    rng: random.Random,
) -> int:
    """Index of the arm to play: an unvisited one if any, else the highest UCB score.

    Ties (several unvisited arms, or equal scores) are broken by `rng`, so the order in which
    agents are configured does not bias the search.
    """
    if not arms:
        raise ValueError("select_by_ucb needs at least one arm")
    unvisited = [i for i, arm in enumerate(arms) if arm.unvisited]
    if unvisited:
        return _pick(unvisited, rng)
    scores = [ucb_score(a, total_plays, alpha=alpha) for a in arms]
    top = max(scores)
    return _pick([i for i, s in enumerate(scores) if s == top], rng)


def top_k_by_reward(rewards: Sequence[float], k: int) -> list[int]:
    """Indices of the `k` highest rewards, best first (ties: lower index first); k >= 1."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = sorted(range(len(rewards)), key=lambda i: (-rewards[i], i))
    return order[:k]


def width_reached(responses_at_depth: int, *, width: int) -> bool:
    """Width rule: responses at this depth, over the whole tree, have reached `width`."""
    return responses_at_depth >= width


def improvement_reached(
    parent_reward: float | None, child_rewards: Sequence[float], *, attempts: int, cap: int
) -> bool:
    """Improvement rule, capped (TOA_SPEC defect 6).

    Args:
        parent_reward: reward of the response above the agent node; None under the root (the
            rule then holds at once).
        child_rewards: rewards of the agent node's scored responses.
        attempts: generations the agent node has made (failed ones included), >= 0.
        cap: after this many attempts without improvement the rule holds anyway, >= 1.
    """
    if parent_reward is None or attempts >= cap:
        return True
    return any(r > parent_reward for r in child_rewards)


def is_fully_expanded(
    tree: SearchTree, agent_node: int, *, width: int, improvement_cap: int
) -> bool:
    """Whether selection goes down from `agent_node` to its responses instead of expanding it.

    True when the width and improvement rules both hold and the node has at least one scored
    response to go down to (a node whose every generation failed keeps expanding).
    """
    node = tree.node(agent_node)
    rewards = [r for c in node.children if (r := tree.node(c).reward) is not None]
    if not rewards:
        return False
    if not width_reached(tree.live_responses_at_depth(node.depth), width=width):
        return False
    parent = tree.node(node.parent)
    parent_reward = parent.reward if parent.kind == "response" else None
    return improvement_reached(
        parent_reward, rewards, attempts=len(node.children), cap=improvement_cap
    )


def _pick(candidates: list[int], rng: random.Random) -> int:
    return candidates[0] if len(candidates) == 1 else rng.choice(candidates)
