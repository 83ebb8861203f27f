"""The `simulated` reward: reads back the hidden quality the fake server put in a response."""

from __future__ import annotations

from collections.abc import Sequence

from toa.testing.world import decode_quality
from toa.types import Prompt, Score, ScoreFailure

__all__ = ["SimulatedReward"]


class SimulatedReward:
    """Scores a response by its ``[[toa-q=...]]`` marker (see `toa.testing.world`).

    A response without a marker (it did not come from a simulated agent) is a `ScoreFailure`.
    For tests, benchmarks and demos against `toa fake-server`.
    """

    name = "simulated"

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        return [_score_one(text) for text in responses]

    async def aclose(self) -> None:
        return None


def _score_one(text: str) -> Score:
    quality = decode_quality(text)
    if quality is None:
        return ScoreFailure(
            "the response carries no [[toa-q=...]] quality marker: the simulated reward only "
            "works with agents served by `toa fake-server`",
            error_type="MissingQualityMarker",
        )
    return quality
