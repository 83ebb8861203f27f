"""`Spread` (the running reward spread the Bayesian rule and the priors use) is exactly
`statistics.pstdev`, whatever the rewards: seeded trees must not move by a last bit."""

from __future__ import annotations

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from toa.search.priors import Spread, reward_spread


def pstdev_or_none(rewards: list[float]) -> float | None:
    if len(rewards) < 2:
        return None
    value = statistics.pstdev(rewards)
    return value if value > 0 and math.isfinite(value) else None


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(finite, max_size=40))
def test_reward_spread_is_pstdev(rewards: list[float]) -> None:
    assert reward_spread(rewards) == pstdev_or_none(rewards)


@given(
    st.lists(
        st.floats(0, 1) | st.sampled_from([0.0, 1.0, 0.5]) | finite | st.floats(-1e-310, 1e-310),
        max_size=30,
    )
)
def test_running_spread_matches_every_prefix(rewards: list[float]) -> None:
    """Rewards coarse and fine in any order (the sums move to a finer unit as one comes)."""
    spread = Spread()
    for i, reward in enumerate(rewards):
        assert spread.value() == pstdev_or_none(rewards[:i])
        spread.add(reward)
    assert spread.value() == pstdev_or_none(rewards)


def test_no_spread_cases() -> None:
    assert reward_spread([]) is None
    assert reward_spread([0.3]) is None
    assert reward_spread([0.3, 0.3, 0.3]) is None
    assert reward_spread([1.0, math.inf]) is None
    assert reward_spread([1.0, math.nan]) is None
    assert reward_spread([0.0, 1.0]) == 0.5
    assert reward_spread([0.0, 5e-324]) is None  # pstdev 0.0: the root rounds to no spread
