"""The `simulated` reward: reads back the hidden quality the fake server put in a response.

The quality marker is the contract between the simulated worlds of `toa.testing` (which write it
into every response) and this reward (which reads it), so its codec lives here, in the library,
and the test kit imports it: the library never imports `toa.testing`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from toa.types import Prompt, Score, ScoreFailure

__all__ = [
    "QUALITY_MARKER_RE",
    "SimulatedReward",
    "decode_quality",
    "encode_quality",
    "qualities_in",
]

QUALITY_MARKER_RE = re.compile(r"\[\[toa-q=([01]\.\d{6})\]\]")


def encode_quality(q: float) -> str:
    """The marker that carries hidden quality q (clipped to [0, 1], six decimals)."""
    return f"[[toa-q={min(1.0, max(0.0, q)):.6f}]]"


def qualities_in(text: str) -> list[float]:
    """Every quality marker found in `text`, in order."""
    return [float(m) for m in QUALITY_MARKER_RE.findall(text)]


def decode_quality(text: str) -> float | None:
    """The hidden quality of a response (its last marker), or None when it carries none."""
    found = qualities_in(text)
    return found[-1] if found else None


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
