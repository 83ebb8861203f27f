"""A circuit breaker per endpoint, and a requests-per-minute limiter per agent."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable

from toa.agents.spec import BreakerPolicy

__all__ = ["BreakerState", "CircuitBreaker", "RateLimiter"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class BreakerState(enum.Enum):
    """CLOSED: requests flow. OPEN: endpoint out until the cool-down ends. HALF_OPEN: one probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Takes an endpoint out after `failure_threshold` consecutive failures, probes it later.

    Life cycle: CLOSED --(threshold failures)--> OPEN --(cool-down over; `try_acquire` claims the
    single probe)--> HALF_OPEN --(probe succeeds)--> CLOSED, or --(probe fails)--> OPEN with the
    cool-down doubled (up to `max_cooldown_s`). Not thread-safe; one event loop owns it.
    """

    __slots__ = ("_clock", "_cooldown_s", "_failures", "_opened_at", "_policy", "_state", "label")

    def __init__(self, policy: BreakerPolicy, *, label: str = "", clock: Clock = time.monotonic):
        self._policy = policy
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._cooldown_s = policy.cooldown_s
        self.label = label

    @property
    def state(self) -> BreakerState:
        return self._state

    def is_ready(self) -> bool:
        """Whether a request may go now (without claiming the probe)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN:
            return False  # the probe is in flight
        return self._clock() >= self._opened_at + self._cooldown_s

    def retry_in_s(self) -> float:
        """Seconds until a request may go (0 when ready now)."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self._cooldown_s - self._clock())
        return 0.0 if self._state is BreakerState.CLOSED else self._cooldown_s

    def try_acquire(self) -> bool:
        """Claim the right to send one request; when OPEN and cooled down, this is the probe."""
        if not self.is_ready():
            return False
        if self._state is BreakerState.OPEN:
            self._state = BreakerState.HALF_OPEN
            logger.info("%s: cool-down over, sending one probe request", self.label)
        return True

    def record_success(self) -> None:
        """The endpoint answered (any HTTP answer that shows it is alive)."""
        if self._state is not BreakerState.CLOSED:
            logger.info("%s: probe succeeded, back in service", self.label)
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown_s = self._policy.cooldown_s

    def record_failure(self) -> None:
        """A failure that says the endpoint may be down (connection, timeout, 5xx)."""
        if self._state is BreakerState.HALF_OPEN:
            self._cooldown_s = min(self._cooldown_s * 2.0, self._policy.max_cooldown_s)
            self._open("probe failed")
            return
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures >= self._policy.failure_threshold:
            self._open(f"{self._failures} consecutive failures")

    def release(self) -> None:
        """Give back an acquired request that ended with no verdict (e.g. cancelled)."""
        if self._state is BreakerState.HALF_OPEN:
            self._state = BreakerState.OPEN  # the cool-down is already over: probe again soon

    def _open(self, why: str) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        logger.warning("%s taken out for %.1f s (%s)", self.label, self._cooldown_s, why)


class RateLimiter:
    """Spaces requests evenly at `requests_per_minute` (no bursts).

    Each `acquire` reserves the next free slot and sleeps until it; cancelling while waiting
    leaves the slot unused, which only makes the rate lower.
    """

    __slots__ = ("_clock", "_interval_s", "_next_s")

    def __init__(self, requests_per_minute: float, *, clock: Clock = time.monotonic) -> None:
        self._interval_s = 60.0 / requests_per_minute
        self._clock = clock
        self._next_s = 0.0

    async def acquire(self) -> None:
        now = self._clock()
        slot = max(now, self._next_s)
        self._next_s = slot + self._interval_s
        if slot > now:
            await asyncio.sleep(slot - now)
