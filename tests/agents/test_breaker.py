"""Circuit breaker and rate limiter, driven by a fake clock."""

from __future__ import annotations

import asyncio
import time

from toa.agents import BreakerPolicy, BreakerState, CircuitBreaker, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_then_probes_and_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown_s=10), clock=clock)
    for _ in range(2):
        assert b.try_acquire()
        b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.try_acquire()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.is_ready()
    assert b.retry_in_s() == 10
    clock.now += 9.9
    assert not b.try_acquire()
    clock.now += 0.2
    assert b.try_acquire()  # the single probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.try_acquire()  # no second request while the probe is out
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert b.try_acquire()


def test_failed_probe_doubles_cooldown_up_to_cap() -> None:
    clock = Clock()
    b = CircuitBreaker(
        BreakerPolicy(failure_threshold=1, cooldown_s=10, max_cooldown_s=25), clock=clock
    )
    b.record_failure()
    for expected in (20, 25, 25):
        clock.now += 100
        assert b.try_acquire()
        b.record_failure()
        assert b.state is BreakerState.OPEN
        assert b.retry_in_s() == expected


def test_success_resets_consecutive_count() -> None:
    b = CircuitBreaker(BreakerPolicy(failure_threshold=2), clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state is BreakerState.CLOSED


def test_release_frees_an_unfinished_probe() -> None:
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown_s=5), clock=clock)
    b.record_failure()
    clock.now += 5
    assert b.try_acquire()
    b.release()
    assert b.state is BreakerState.OPEN
    assert b.try_acquire()


async def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(600)  # one slot every 0.1 s
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(4)))
    elapsed = time.monotonic() - started
    assert 0.28 <= elapsed < 1.5  # slots at 0, 0.1, 0.2, 0.3 s
