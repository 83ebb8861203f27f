"""TOA's settings and the shape of a play: what both of TOA's rules (`ucb`, `bayes`) share.

`TOAConfig` holds the hyperparameters of both rules; a `Play` is one generation in flight; a
`PlayState` is the synchronous core of one search (`toa.search.ucb.TOAState` for the paper's
rule, `toa.search.bayes.BayesState` for the Bayesian one), driven by `toa.search.toa.TOASearch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from toa.errors import ConfigError
from toa.search.normalise import Normalisation
from toa.search.tree import SearchTree
from toa.types import Message, Prompt, Score

__all__ = [
    "BAYES_SETTINGS",
    "RULES",
    "UCB_SETTINGS",
    "Play",
    "PlayState",
    "Rule",
    "TOAConfig",
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
