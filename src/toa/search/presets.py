"""The paper's settings (TOA_SPEC, "Settings the paper used") as named presets.

| preset | agents | budget N | temperature | tau | alpha | width | topk_child | reward |
|---|---|---|---|---|---|---|---|---|
| alpaca | 5 large | 160 | 0.7 | 0.1 | 0.01 | 53 | 1 | ArmoRM |
| wmt | 5 large | 160 | 0.7 | 1 | 0.05 | 53 | 1 | COMET-KIWI |
| ultrafeedback | 4 small | 160 | 0.8 | 0.1 | 0.01 | 53 | 1 | ArmoRM |
| math | 2-4 small | 16-128 | 0.7 | 1 | 0.1 | K*n/2 | 1 | Qwen2.5-Math-RM |

All use the paper's UCB rule (``rule="ucb"``), top_p 1, max_tokens 2048 and the paper's
normalisation, ``sigmoid(r / tau)``. Width is derived from the run's budget (``width_fraction``
1/3, or 1/2 for math), which gives 53 at N = 160 and follows the budget when a run uses another
one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from toa.errors import ConfigError
from toa.search.normalise import Normalisation
from toa.search.templates import TaskName
from toa.search.toa import TOAConfig

__all__ = ["PRESETS", "Preset", "paper_preset", "toa_preset"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Preset:
    """One of the paper's settings.

    Attributes:
        name: 'alpaca', 'wmt', 'ultrafeedback' or 'math'.
        task: which built-in template set fits ('instruction', 'translation' or 'math').
        agents: the paper's agents, in words.
        budget: generations per prompt (None for math, where the paper used 16 to 128).
        temperature: sampling temperature, >= 0.
        top_p: nucleus sampling mass, in (0, 1].
        max_tokens: completion tokens at most.
        reward: the paper's reward model, in words.
        config: the TOA hyperparameters.
    """

    name: str
    task: TaskName
    agents: str
    budget: int | None
    temperature: float
    top_p: float = 1.0
    max_tokens: int = 2048
    reward: str
    config: TOAConfig


def _paper(tau: float, alpha: float, width_fraction: float = 1 / 3) -> TOAConfig:
    return TOAConfig(
        rule="ucb",
        alpha=alpha,
        width_fraction=width_fraction,
        topk_child=1,
        normalisation=Normalisation(kind="sigmoid", tau=tau),
    )


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "alpaca": Preset(
            name="alpaca",
            task="instruction",
            agents="5 large",
            budget=160,
            temperature=0.7,
            reward="ArmoRM",
            config=_paper(tau=0.1, alpha=0.01),
        ),
        "wmt": Preset(
            name="wmt",
            task="translation",
            agents="5 large",
            budget=160,
            temperature=0.7,
            reward="COMET-KIWI",
            config=_paper(tau=1.0, alpha=0.05),
        ),
        "ultrafeedback": Preset(
            name="ultrafeedback",
            task="instruction",
            agents="4 small",
            budget=160,
            temperature=0.8,
            reward="ArmoRM",
            config=_paper(tau=0.1, alpha=0.01),
        ),
        "math": Preset(
            name="math",
            task="math",
            agents="2-4 small",
            budget=None,
            temperature=0.7,
            reward="Qwen2.5-Math-RM",
            config=_paper(tau=1.0, alpha=0.1, width_fraction=0.5),
        ),
    }
)
"""The paper presets by name (read-only)."""


def paper_preset(name: str) -> Preset:
    """The preset called `name` ('alpaca', 'wmt', 'ultrafeedback' or 'math').

    Raises:
        ConfigError: unknown preset.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def toa_preset(name: str, **overrides: Any) -> TOAConfig:
    """The TOA configuration of preset `name`, with keyword `overrides` of `TOAConfig` fields.

    Raises:
        ConfigError: unknown preset or field.
    """
    preset = paper_preset(name)
    try:
        return replace(preset.config, **overrides)
    except TypeError as err:
        raise ConfigError(f"preset {name!r}: {err}") from err
