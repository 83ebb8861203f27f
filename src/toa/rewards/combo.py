"""The `combo` reward: a weighted sum or a cascade of other rewards.

Every child scores every response (concurrently), so a combined score depends only on the
response, never on which other responses shared its call: scores from different calls compare.

``sum``: score = sum of w_i * s_i over the children, on their raw scales (pick the weights for
that). A child's failure fails the combined score, its message naming the child. With
``skip_failed`` the children that scored are summed and rescaled by W_all / W_ok (the weights
renormalised over the children that scored); only when all fail is the result a failure.

``cascade``: the first child decides, later children break its ties, in order::

    score = s_1 + eps * t_2
    t_k = (u_k + eps * t_{k+1}) / (1 + eps)   for 2 <= k < n,   t_n = u_n
    u_k = 1/2 + atan(s_k) / pi                 (a fixed squash of any real into (0, 1))

so t_2 lies in (0, 1): responses whose s_1 differ by at least eps keep the first child's order;
responses with equal s_1 are ordered by the second child (exactly, for two children); a k-th child
(k < n) decides among responses tied on all earlier children when its u_k differ by more than eps.
The order is exactly lexicographic when the first child's distinct values are at least eps apart
(verify's 0/1 with the default eps = 1e-3). A failure of the first child fails the score; a
failure of a later child fails it too, unless ``skip_failed``: then that child's u_k counts as 0,
so the response ranks below tied peers whose tie-breaker scored, never above them.

`ComboReward` takes the built children; the YAML side, ``reward: {type: combo, rewards: [...]}``,
is `toa.config.rewards.ComboRewardConfig`, whose children are any reward configurations.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Literal

from toa.rewards.base import RewardModel
from toa.rewards.batching import checked_scores, failures
from toa.types import Prompt, Score, ScoreFailure

__all__ = ["ComboMode", "ComboReward", "cascade_score", "check_shape"]

ComboMode = Literal["sum", "cascade"]


def _squash(value: float) -> float:
    """A fixed, strictly increasing map of the reals into (0, 1)."""
    return 0.5 + math.atan(value) / math.pi


def cascade_score(values: Sequence[float | None], epsilon: float) -> float:
    """The cascade of raw child scores (first decides); None marks a skipped tie-breaker (u = 0).

    `values` holds at least one entry and the first is not None; epsilon is in (0, 1).
    """
    first, rest = values[0], values[1:]
    if first is None:
        raise ValueError("the first reward of a cascade decides: it cannot be skipped")
    tail = 0.0
    for position, value in enumerate(reversed(rest)):
        squashed = 0.0 if value is None else _squash(value)
        tail = squashed if position == 0 else (squashed + epsilon * tail) / (1 + epsilon)
    return first + epsilon * tail if rest else first


class ComboReward:
    """Combines child rewards by weighted sum or cascade (see the module docstring).

    Args:
        children: built rewards, at least one (two for cascade). Owned: closed by aclose.
        mode: "sum" or "cascade".
        weights: sum only, one > 0 per child; default all 1.0.
        epsilon: cascade only, in (0, 1).
        skip_failed: see the module docstring; default False (any failure fails the score).
    """

    def __init__(
        self,
        children: Sequence[RewardModel],
        *,
        mode: ComboMode = "sum",
        weights: Sequence[float] | None = None,
        epsilon: float = 1e-3,
        skip_failed: bool = False,
    ) -> None:
        check_shape(len(children), mode, weights, epsilon)
        self._children = list(children)
        self._mode = mode
        self._weights = [float(w) for w in weights] if weights else [1.0] * len(children)
        self._epsilon = epsilon
        self._skip_failed = skip_failed
        joiner = "+" if mode == "sum" else ">"
        self.name: str = f"{mode}({joiner.join(child.name for child in children)})"

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        if not responses:
            return []
        outcomes = await asyncio.gather(
            *(child.score(prompt, responses) for child in self._children), return_exceptions=True
        )
        columns = [
            self._column(child, outcome, len(responses))
            for child, outcome in zip(self._children, outcomes, strict=True)
        ]
        combine = self._sum if self._mode == "sum" else self._cascade
        return [combine([column[row] for column in columns]) for row in range(len(responses))]

    def _column(self, child: RewardModel, outcome: object, count: int) -> list[Score]:
        """A child's scores, validated; an exception becomes a failure for every response."""
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            message = f"reward {child.name!r} raised {outcome!r}"
            return failures(count, message, type(outcome).__name__)
        return checked_scores(outcome, count, f"reward {child.name!r}")

    def _sum(self, scores: list[Score]) -> Score:
        total = weight_ok = 0.0
        for weight, score in zip(self._weights, scores, strict=True):
            if isinstance(score, ScoreFailure):
                if not self._skip_failed:
                    return self._failed(scores)
                continue
            total += weight * score
            weight_ok += weight
        if weight_ok == 0.0:
            return self._failed(scores)
        all_weights = sum(self._weights)
        return total if weight_ok == all_weights else total * all_weights / weight_ok

    def _cascade(self, scores: list[Score]) -> Score:
        failed = [isinstance(score, ScoreFailure) for score in scores]
        if failed[0] or (any(failed) and not self._skip_failed):
            return self._failed(scores)
        values = [None if isinstance(s, ScoreFailure) else s for s in scores]
        return cascade_score(values, self._epsilon)

    def _failed(self, scores: list[Score]) -> ScoreFailure:
        reasons = [
            f"{child.name}: {score.message}"
            for child, score in zip(self._children, scores, strict=True)
            if isinstance(score, ScoreFailure)
        ]
        return ScoreFailure(f"{self.name} failed: " + "; ".join(reasons), "ChildRewardFailed")

    async def aclose(self) -> None:
        """Close every child, even when one fails to; then raise the first error."""
        outcomes = await asyncio.gather(
            *(child.aclose() for child in self._children), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


def check_shape(
    count: int, mode: ComboMode, weights: Sequence[float] | None, epsilon: float
) -> None:
    """ValueError unless `count` children, `weights` and `epsilon` make a `mode` combo."""
    if count < (2 if mode == "cascade" else 1):
        raise ValueError(f"a {mode} combo needs at least {2 if mode == 'cascade' else 1} rewards")
    if weights is not None:
        if mode != "sum":
            raise ValueError("weights apply to mode 'sum' only; a cascade orders its rewards")
        if len(weights) != count:
            raise ValueError(f"got {len(weights)} weights for {count} rewards")
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"weights must be finite and > 0, got {list(weights)}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
