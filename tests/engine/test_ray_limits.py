"""The Ray backend's split of each agent's limits over the workers (no Ray needed): the shares
add up to the run's limits exactly, so scaling out never floods an endpoint."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toa.config import parse_config
from toa.engine.ray_runner import check_limits, worker_settings
from toa.errors import ConfigError
from toa.settings import RunSettings


def settings(max_concurrency: int, workers: int, rpm: float | None = None) -> RunSettings:
    agent: dict[str, object] = {
        "name": "a",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "max_concurrency": max_concurrency,
    }
    if rpm is not None:
        agent["requests_per_minute"] = rpm
    return parse_config(
        {
            "agents": [agent],
            "reward": {"type": "simulated"},
            "runner": {"backend": "ray", "workers": workers},
        }
    )


@given(st.integers(1, 300), st.integers(1, 16), st.floats(1, 1e4))
def test_the_shares_add_up_to_the_limits(max_concurrency: int, workers: int, rpm: float) -> None:
    if max_concurrency < workers:
        with pytest.raises(ConfigError, match="cannot be split over"):
            check_limits(settings(max_concurrency, workers))
        return
    run = settings(max_concurrency, workers, rpm)
    check_limits(run)
    shares = [worker_settings(run, workers, i).agents[0] for i in range(workers)]
    slots = [s.max_concurrency for s in shares]
    assert sum(slots) == max_concurrency
    assert min(slots) >= 1
    assert max(slots) - min(slots) <= 1
    total_rpm = sum(s.requests_per_minute or 0.0 for s in shares)
    assert total_rpm == pytest.approx(rpm, rel=1e-12)


def test_too_few_slots_for_the_workers_is_a_config_error_naming_the_agent() -> None:
    with pytest.raises(ConfigError, match=r"agent 'a': max_concurrency 1 cannot be split over 2"):
        check_limits(settings(1, 2))
