"""Reward normalisations: raw reward r -> normalised reward q in [0, 1], a family of pure functions.

Each has the signature ``(reward, history) -> q`` where `history` holds the raw rewards already
scored on the same prompt, in scoring order (the reward being normalised is not in it). Swapping
one for another is a one-line change (`Normalisation(kind=...)`).

* `normalise_by_sigmoid`: ``sigmoid(r / tau)``, the paper's choice; tau must suit the reward's scale
  (0.1 for ArmoRM, 1 for COMET-KIWI and the math reward model). Ignores `history`.
* `normalise_by_min_max`: per-prompt running min-max, ``(r - lo) / (hi - lo)`` over the history and
  r itself; 0.5 while all rewards are equal. Scale-free (TOA_SPEC defect 7).
* `normalise_by_rank`: per-prompt running rank, the fraction of earlier rewards that r beats (ties
  count half); 0.5 for the first reward. Scale-free and robust to outliers: the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from toa.errors import ConfigError

__all__ = [
    "Normalisation",
    "NormalisationKind",
    "Normaliser",
    "normalise_by_min_max",
    "normalise_by_rank",
    "normalise_by_sigmoid",
]

NormalisationKind = Literal["sigmoid", "minmax", "rank"]
Normaliser = Callable[[float, Sequence[float]], float]
"""``(raw reward, earlier raw rewards on this prompt) -> normalised reward in [0, 1]``."""

_KINDS: tuple[NormalisationKind, ...] = ("sigmoid", "minmax", "rank")


def normalise_by_sigmoid(reward: float, history: Sequence[float], *, tau: float) -> float:
    """``sigmoid(reward / tau)`` (TOA paper); `tau` > 0 in the reward's units."""
    del history  # the paper's normalisation looks at one reward only
    z = reward / tau
    if z >= 0:  # two branches keep exp() from overflowing for large |z|
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def normalise_by_min_max(reward: float, history: Sequence[float]) -> float:
    """Running min-max over `history` and `reward`: 0 at the lowest so far, 1 at the highest."""
    lo = min(reward, *history) if history else reward
    hi = max(reward, *history) if history else reward
    if hi == lo:
        return 0.5
    return (reward - lo) / (hi - lo)


def normalise_by_rank(reward: float, history: Sequence[float]) -> float:
    """Fraction of earlier rewards below `reward` (ties count half); 0.5 with no history."""
    if not history:
        return 0.5
    below = sum(1 for h in history if h < reward)
    equal = sum(1 for h in history if h == reward)
    return (below + 0.5 * equal) / len(history)


@dataclass(frozen=True, slots=True, kw_only=True)
class Normalisation:
    """Which normalisation a search uses.

    Attributes:
        kind: 'rank' (default, scale-free), 'minmax' (scale-free) or 'sigmoid' (paper presets).
        tau: the sigmoid temperature, > 0, in reward units; required for 'sigmoid' and only there.
    """

    kind: NormalisationKind = "rank"
    tau: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(
                f"normalisation kind must be one of {list(_KINDS)}, got {self.kind!r}"
            )
        if self.kind == "sigmoid":
            if self.tau is None or not self.tau > 0:
                raise ConfigError(f"sigmoid normalisation needs tau > 0, got tau={self.tau!r}")
        elif self.tau is not None:
            raise ConfigError(
                f"tau={self.tau!r} only applies to kind 'sigmoid', not {self.kind!r}; remove it"
            )

    def function(self) -> Normaliser:
        """The normaliser this configuration names."""
        if self.kind == "sigmoid" and self.tau is not None:  # tau is set: see __post_init__
            return partial(normalise_by_sigmoid, tau=self.tau)
        if self.kind == "minmax":
            return normalise_by_min_max
        return normalise_by_rank

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded in a tree's config."""
        return {"kind": self.kind, "tau": self.tau}
