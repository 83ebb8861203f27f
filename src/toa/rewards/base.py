"""The reward protocol: score a prompt and a batch of responses, one result per response.

A reward returns raw scores (normalisation belongs to the search). A response that cannot be
scored gets a `ScoreFailure` in its place: never a made-up value such as 0 (TOA_SPEC defect 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from toa.types import Prompt, Score

__all__ = ["RewardModel"]


@runtime_checkable
class RewardModel(Protocol):
    """Scores responses to a prompt. One instance serves every tree of a run."""

    @property
    def name(self) -> str:
        """A short name for manifests and summaries, e.g. 'simulated' or 'verify'."""
        ...

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        """One raw score (float) or `ScoreFailure` per response, in order.

        The prompt's `extra` carries row fields a reward may need (gold answer, reference).
        Implementations return failures in place rather than raising for one bad response.
        """
        ...

    async def aclose(self) -> None:
        """Release models, threads and connections (idempotent)."""
        ...
