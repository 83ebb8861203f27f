"""`toa.agents.slots.Slots`: the agent's concurrency limit (bounded, first in first out,
cancellation-safe)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toa.agents.slots import Slots


async def _hold(slots: Slots, log: list[int], i: int, seconds: float) -> None:
    if not slots.try_take():
        await slots.take()
    try:
        log.append(i)
        await asyncio.sleep(seconds)
    finally:
        slots.give()


def test_free_slots_are_taken_without_waiting_and_given_back() -> None:
    slots = Slots(2)
    assert slots.try_take()
    assert slots.try_take()
    assert not slots.try_take()
    assert slots.held == 2
    slots.give()
    assert slots.held == 1
    assert slots.try_take()
    with pytest.raises(ValueError, match=">= 1"):
        Slots(0)


async def test_waiters_are_served_in_order_and_never_overtaken() -> None:
    slots = Slots(1)
    assert slots.try_take()
    order: list[int] = []
    tasks = [asyncio.create_task(_hold(slots, order, i, 0)) for i in range(5)]
    await asyncio.sleep(0)
    assert slots.waiting == 5
    slots.give()  # the slot goes to the oldest waiter, not to a newcomer
    assert not slots.try_take()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert slots.held == 0
    assert slots.waiting == 0


async def test_a_waiter_cancelled_while_waiting_costs_no_slot() -> None:
    slots = Slots(1)
    assert slots.try_take()
    cancelled = asyncio.create_task(slots.take())
    order: list[int] = []
    after = asyncio.create_task(_hold(slots, order, 1, 0))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    slots.give()
    await after
    assert order == [1]
    assert slots.held == 0


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    order: list[int] = []
    second = asyncio.create_task(_hold(slots, order, 2, 0))
    await asyncio.sleep(0)
    slots.give()  # handed to `first`, which is cancelled before it runs again
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert order == [2]
    assert slots.held == 0


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.randoms(use_true_random=False))
def test_holders_never_exceed_the_limit(limit: int, n: int, rng: random.Random) -> None:
    async def main() -> tuple[int, int]:
        slots = Slots(limit)
        now = peak = 0

        async def one(i: int) -> None:
            nonlocal now, peak
            if not slots.try_take():
                await slots.take()
            try:
                now += 1
                peak = max(peak, now)
                for _ in range(rng.randrange(3)):
                    await asyncio.sleep(0)
            finally:
                now -= 1
                slots.give()

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        for task in tasks:
            if rng.random() < 0.2:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert slots.held == 0
        return peak, slots.held

    peak, held = asyncio.run(main())
    assert peak <= limit
    assert held == 0
