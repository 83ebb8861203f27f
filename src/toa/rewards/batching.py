"""Batching across concurrent callers, and one worker thread for synchronous models.

`BatchingReward` gathers the `score` requests of every concurrent tree into batches for an inner
scorer. A batch leaves when it holds `max_batch` responses, or `max_wait_ms` after its oldest
response was queued, whichever comes first; at most `max_concurrent` batches are in the inner
scorer at once (while they run, the queue keeps filling, so batches grow under load). Results go
back to each caller in its own order. An inner call that raises, or returns the wrong number of
scores, gives every response of that batch a `ScoreFailure`: never a made-up value.

A batch mixes prompts, so the inner scorer should implement `BatchScorer.score_batch` over
``(prompt, response)`` pairs; a plain `RewardModel` also works (its responses are grouped by
prompt and scored one call per prompt, concurrently), without the cross-prompt gain.

`ThreadedReward` runs a synchronous batch function (a transformers or COMET model) in ONE worker
thread owned by the adapter: one model instance serves every tree, and the event loop never
blocks. Wrap it in `BatchingReward` to feed it large batches.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from toa.rewards.base import RewardModel
from toa.types import Prompt, Score, ScoreFailure

__all__ = [
    "BatchScorer",
    "BatchingReward",
    "ScoreItem",
    "SyncBatchFn",
    "ThreadedReward",
    "WorkerReward",
    "checked_scores",
    "failures",
]

_log = logging.getLogger(__name__)

ScoreItem = tuple[Prompt, str]
"""One response to score, with the prompt (and its row fields) it answers."""

SyncBatchFn = Callable[[Sequence[ScoreItem]], Sequence[Score]]
"""A synchronous scorer: one float or `ScoreFailure` per ``(prompt, response)`` pair, in order."""


@runtime_checkable
class BatchScorer(Protocol):
    """A scorer that takes responses to many prompts in one call (what `BatchingReward` feeds)."""

    @property
    def name(self) -> str:
        """A short name for manifests and failure messages."""
        ...

    async def score_batch(self, items: Sequence[ScoreItem]) -> list[Score]:
        """One raw score or `ScoreFailure` per item, in order."""
        ...

    async def aclose(self) -> None:
        """Release models, threads and connections (idempotent)."""
        ...


def failures(count: int, message: str, error_type: str = "") -> list[Score]:
    """`count` copies of one `ScoreFailure` (count >= 0)."""
    failure = ScoreFailure(message, error_type=error_type)
    return [failure] * count


def checked_scores(raw: object, expected: int, source: str) -> list[Score]:
    """Validate what a scorer returned: `expected` entries, each a finite number or a failure.

    A wrong count (or not a sequence) fails every entry; a bool, NaN, infinity or non-number fails
    only its own entry. Ints become floats.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        return failures(expected, f"{source} returned {type(raw).__name__}, not a list of scores")
    if len(raw) != expected:
        message = f"{source} returned {len(raw)} scores for {expected} responses"
        return failures(expected, message, "ScoreCountMismatch")
    return [_checked_one(value, source) for value in raw]


def _checked_one(value: object, source: str) -> Score:
    if isinstance(value, ScoreFailure):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return ScoreFailure(f"{source} returned {value!r}, not a finite score", "InvalidScore")


def _closed_failures(count: int, name: str) -> list[Score]:
    return failures(count, f"reward {name!r} was closed before scoring", "RewardClosed")


class WorkerReward:
    """A reward whose model runs on its `ThreadedReward` worker (`hf`, `comet`).

    Subclasses set ``self._worker`` in their constructor; scoring and closing go through it.
    """

    _worker: ThreadedReward

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        """One raw reward or `ScoreFailure` per response, in order."""
        return await self._worker.score(prompt, responses)

    async def score_batch(self, items: Sequence[ScoreItem]) -> list[Score]:
        """One raw reward or `ScoreFailure` per ``(prompt, response)``; prompts may differ."""
        return await self._worker.score_batch(items)

    async def aclose(self) -> None:
        """Lets the running batch finish, fails queued calls, releases the model (idempotent)."""
        await self._worker.aclose()


class ThreadedReward:
    """Runs a synchronous batch scorer in one worker thread owned by this adapter.

    Calls queue in that thread in arrival order. An exception in `fn` fails every response of
    that call. `aclose` lets the running call finish (up to `close_timeout_s` seconds), fails
    calls still queued, then runs `on_close` in the worker thread (to free the model there).
    A call still running after the timeout keeps its thread until it returns: Python cannot stop
    a thread, so aclose returns rather than hang.
    """

    def __init__(
        self,
        name: str,
        fn: SyncBatchFn,
        *,
        on_close: Callable[[], None] | None = None,
        close_timeout_s: float = 10.0,
    ) -> None:
        self._name = name
        self._fn = fn
        self._on_close = on_close
        self._close_timeout_s = close_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"toa-reward-{name}")
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        return await self.score_batch([(prompt, text) for text in responses])

    async def score_batch(self, items: Sequence[ScoreItem]) -> list[Score]:
        batch = list(items)
        if not batch:
            return []
        if self._closed:
            return _closed_failures(len(batch), self._name)
        try:
            raw = await asyncio.wrap_future(self._executor.submit(self._run, batch))
        except Exception as error:  # the scorer's own failure: recorded, never scored
            message = f"reward {self._name!r} raised {type(error).__name__}: {error}"
            return failures(len(batch), message, type(error).__name__)
        if raw is None:
            return _closed_failures(len(batch), self._name)
        return checked_scores(raw, len(batch), f"reward {self._name!r}")

    def _run(self, batch: list[ScoreItem]) -> Sequence[Score] | None:
        """In the worker thread: None when the adapter closed while this call was queued."""
        return None if self._closed else self._fn(batch)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        last: Future[None] = self._executor.submit(self._close_in_thread)
        self._executor.shutdown(wait=False)
        done, _ = await asyncio.wait({asyncio.wrap_future(last)}, timeout=self._close_timeout_s)
        if not done:
            _log.warning(
                "reward %r: the running call did not finish within %.1f s of aclose",
                self._name,
                self._close_timeout_s,
            )

    def _close_in_thread(self) -> None:
        if self._on_close is None:
            return
        try:
            self._on_close()
        except Exception:
            _log.exception("reward %r: on_close failed", self._name)


@dataclass(eq=False)
class _Request:
    """One caller's `score` call: its future resolves when every response has a score."""

    prompt: Prompt
    future: asyncio.Future[list[Score]]
    results: dict[int, Score] = field(default_factory=dict)
    size: int = 0


@dataclass(frozen=True, eq=False)
class _Item:
    request: _Request
    index: int
    text: str
    deadline: float  # loop time by which the batch holding this item must leave


class BatchingReward:
    """Gathers score requests from concurrent callers into batches for one inner scorer.

    Args:
        inner: a `BatchScorer` (cross-prompt batches) or a `RewardModel`. Owned: closed by aclose.
        max_batch: responses per inner call, >= 1.
        max_wait_ms: how long the oldest queued response waits for a full batch, >= 0 ms.
        max_concurrent: inner calls in flight at once, >= 1.
        close_timeout_s: how long aclose waits for queued and running batches, seconds.
    """

    def __init__(
        self,
        inner: BatchScorer | RewardModel,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_concurrent: int = 1,
        close_timeout_s: float = 10.0,
    ) -> None:
        if max_batch < 1 or max_concurrent < 1 or max_wait_ms < 0:
            raise ValueError("need max_batch >= 1, max_concurrent >= 1 and max_wait_ms >= 0")
        self._inner = inner
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000.0
        self._free_slots = max_concurrent
        self._close_timeout_s = close_timeout_s
        self._queue: deque[_Item] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def name(self) -> str:
        return self._inner.name

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        if not responses:
            return []
        if self._closing:
            return _closed_failures(len(responses), self.name)
        loop = asyncio.get_running_loop()
        request = _Request(prompt, loop.create_future(), size=len(responses))
        deadline = loop.time() + self._max_wait_s
        self._queue.extend(_Item(request, i, text, deadline) for i, text in enumerate(responses))
        self._dispatch()
        return await request.future

    def _dispatch(self) -> None:
        """Start every batch that is due (full, past its deadline, or closing) and has a slot."""
        loop = asyncio.get_running_loop()
        while self._queue and self._free_slots > 0:
            due = self._closing or self._queue[0].deadline <= loop.time()
            if not due and len(self._queue) < self._max_batch:
                break
            batch = self._take_batch()
            if batch:
                self._free_slots -= 1
                task = loop.create_task(self._run(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._rearm_timer(loop)

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            if not item.request.future.done():  # skip responses whose caller went away
                batch.append(item)
        return batch

    def _rearm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue and self._free_slots > 0 and not self._closing:
            self._timer = loop.call_at(self._queue[0].deadline, self._dispatch)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            scores = await self._score_items([(it.request.prompt, it.text) for it in batch])
        except asyncio.CancelledError:
            self._deliver(batch, _closed_failures(len(batch), self.name))
            raise
        except Exception as error:
            message = f"reward {self.name!r} failed on a batch of {len(batch)}: {error!r}"
            scores = failures(len(batch), message, type(error).__name__)
        finally:
            self._free_slots += 1
        self._deliver(batch, scores)
        self._dispatch()

    async def _score_items(self, items: list[ScoreItem]) -> list[Score]:
        if isinstance(self._inner, BatchScorer):
            raw = await self._inner.score_batch(items)
            return checked_scores(raw, len(items), f"reward {self.name!r}")
        return await _score_by_prompt(self._inner, items)

    @staticmethod
    def _deliver(batch: list[_Item], scores: list[Score]) -> None:
        for item, score in zip(batch, scores, strict=True):
            request = item.request
            if request.future.done():
                continue
            request.results[item.index] = score
            if len(request.results) == request.size:
                request.future.set_result([request.results[i] for i in range(request.size)])

    async def aclose(self) -> None:
        """Score what is queued or running (up to `close_timeout_s`), fail the rest, close inner."""
        if self._closing:
            return
        self._closing = True
        self._dispatch()
        loop = asyncio.get_running_loop()
        end = loop.time() + self._close_timeout_s
        while self._tasks and loop.time() < end:
            await asyncio.wait(set(self._tasks), timeout=end - loop.time())
        leftover = list(self._queue)
        self._queue.clear()
        self._deliver(leftover, _closed_failures(len(leftover), self.name))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._inner.aclose()


async def _score_by_prompt(inner: RewardModel, items: list[ScoreItem]) -> list[Score]:
    """Score a mixed batch with a per-prompt `RewardModel`: one concurrent call per prompt."""
    groups: dict[int, list[int]] = {}
    for position, (prompt, _) in enumerate(items):
        groups.setdefault(id(prompt), []).append(position)
    calls = [
        inner.score(items[positions[0]][0], [items[p][1] for p in positions])
        for positions in groups.values()
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    scores: list[Score | None] = [None] * len(items)
    for positions, outcome in zip(groups.values(), outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            message = f"reward {inner.name!r} raised {outcome!r}"
            group = failures(len(positions), message, type(outcome).__name__)
        else:
            group = checked_scores(outcome, len(positions), f"reward {inner.name!r}")
        for position, score in zip(positions, group, strict=True):
            scores[position] = score
    return [score for score in scores if score is not None]
