"""`Slots`: a counting semaphore whose uncontended path costs no coroutine.

Every agent call passes through its agent's concurrency limit. `asyncio.Semaphore` makes two
coroutines and scans its waiters on each acquire, even when a slot is free, which is nearly
always in a run (the limit is a ceiling for the server, rarely reached). `Slots.try_take` takes a
free slot synchronously; only a caller that finds none awaits `take`. Waiters are served first in
first out, and a released slot goes straight to the oldest waiter, so a newcomer never overtakes
one that waits.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Slots"]


class Slots:
    """At most `limit` holders at a time.

    Use ``if not slots.try_take(): await slots.take()`` then ``try: ... finally: slots.give()``.
    """

    __slots__ = ("_free", "_limit", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        """Slots taken now."""
        return self._limit - self._free

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot (cancelled ones not yet removed included)."""
        return len(self._waiters)

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for it; never blocks."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot (first in, first out)."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot, then cancelled before using it: pass it on
            raise

    def give(self) -> None:
        """Return a slot: to the oldest live waiter, or to the free count."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
