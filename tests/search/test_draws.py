"""`toa.search.draws.gamma_sampler` is `random.Random.gammavariate`, draw for draw: seeded
trees of the Bayesian rule depend on it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toa.search.draws import gamma_sampler

shapes = st.one_of(
    st.just(1.0),
    st.floats(1e-3, 0.999),
    st.floats(1.0, 1e4, exclude_min=True),
    st.integers(2, 40).map(float),
)


@given(
    st.integers(0, 2**32),
    st.lists(st.tuples(shapes, st.floats(1e-3, 1e3)), min_size=1, max_size=30),
)
def test_the_same_draws_and_the_same_generator_state(
    seed: int, params: list[tuple[float, float]]
) -> None:
    reference, ours = random.Random(seed), random.Random(seed)
    gamma = gamma_sampler(ours)
    for alpha, beta in params:
        assert gamma(alpha, beta) == reference.gammavariate(alpha, beta)
    assert ours.getstate() == reference.getstate()


def test_bad_parameters_are_refused_as_the_standard_library_does() -> None:
    gamma = gamma_sampler(random.Random(0))
    for alpha, beta in ((0.0, 1.0), (1.0, 0.0), (-2.0, 1.0)):
        with pytest.raises(ValueError, match=r"must be > 0\.0"):
            gamma(alpha, beta)
        with pytest.raises(ValueError, match=r"must be > 0\.0"):
            random.Random(0).gammavariate(alpha, beta)
