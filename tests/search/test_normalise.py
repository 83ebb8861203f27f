"""The normalisation family: pure functions raw reward -> q in [0, 1]."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toa.errors import ConfigError
from toa.search import (
    Normalisation,
    normalise_by_min_max,
    normalise_by_rank,
    normalise_by_sigmoid,
)

rewards = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_sigmoid_matches_the_paper() -> None:
    assert normalise_by_sigmoid(0.0, [], tau=0.1) == 0.5
    assert math.isclose(normalise_by_sigmoid(0.1, [], tau=0.1), 1 / (1 + math.exp(-1)))
    assert math.isclose(normalise_by_sigmoid(-2.0, [9.0], tau=1.0), 1 / (1 + math.exp(2)))


def test_sigmoid_does_not_overflow() -> None:
    assert normalise_by_sigmoid(1e6, [], tau=0.1) == 1.0
    assert normalise_by_sigmoid(-1e6, [], tau=0.1) == 0.0


def test_min_max_is_running_over_history_and_reward() -> None:
    assert normalise_by_min_max(3.0, []) == 0.5
    assert normalise_by_min_max(3.0, [3.0, 3.0]) == 0.5
    assert normalise_by_min_max(2.0, [1.0, 3.0]) == 0.5
    assert normalise_by_min_max(5.0, [1.0, 3.0]) == 1.0
    assert normalise_by_min_max(-1.0, [1.0, 3.0]) == 0.0


def test_rank_is_the_fraction_beaten_ties_half() -> None:
    assert normalise_by_rank(1.0, []) == 0.5
    assert normalise_by_rank(2.0, [1.0, 3.0]) == 0.5
    assert normalise_by_rank(3.0, [1.0, 3.0]) == 0.75
    assert normalise_by_rank(9.0, [1.0, 3.0]) == 1.0
    assert normalise_by_rank(0.0, [1.0, 3.0]) == 0.0


@given(reward=rewards, history=st.lists(rewards, max_size=20))
def test_every_normaliser_maps_into_the_unit_interval(reward: float, history: list[float]) -> None:
    for normalise in (
        Normalisation().function(),
        Normalisation(kind="minmax").function(),
        Normalisation(kind="sigmoid", tau=0.5).function(),
    ):
        assert 0.0 <= normalise(reward, history) <= 1.0


@given(a=rewards, b=rewards, history=st.lists(rewards, max_size=10))
def test_scale_free_normalisers_keep_order(a: float, b: float, history: list[float]) -> None:
    if a <= b:
        assert normalise_by_rank(a, history) <= normalise_by_rank(b, history)
        assert normalise_by_min_max(a, [*history, b]) <= normalise_by_min_max(b, [*history, a])


whole = st.integers(min_value=-1000, max_value=1000).map(float)


@given(reward=whole, history=st.lists(whole, max_size=10))
def test_scale_free_normalisers_ignore_units(reward: float, history: list[float]) -> None:
    scaled = [h * 1000 + 7 for h in history]
    for normalise in (normalise_by_rank, normalise_by_min_max):
        assert normalise(reward, history) == normalise(reward * 1000 + 7, scaled)


def test_default_is_scale_free_rank() -> None:
    assert Normalisation().kind == "rank"
    assert Normalisation().function() is normalise_by_rank
    assert Normalisation(kind="minmax").function() is normalise_by_min_max


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "sigmoid"}, "tau > 0"),
        ({"kind": "sigmoid", "tau": 0.0}, "tau > 0"),
        ({"kind": "rank", "tau": 0.1}, "only applies"),
        ({"kind": "zscore"}, "must be one of"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Normalisation(**kwargs)  # type: ignore[arg-type]
