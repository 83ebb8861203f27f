"""BatchingReward and ThreadedReward: own scores per caller, real batches, failures, shutdown."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Sequence

import pytest

from toa.rewards.base import RewardModel
from toa.rewards.batching import (
    BatchingReward,
    BatchScorer,
    ScoreItem,
    SyncBatchFn,
    ThreadedReward,
    checked_scores,
)
from toa.types import Prompt, Score, ScoreFailure


def expected(prompt: Prompt, text: str) -> float:
    """The score every fake here gives: unique per (prompt, response)."""
    return float(int(prompt.id) * 1000 + int(text))


class RecordingScorer:
    """A BatchScorer that records each batch; optionally slow, failing or miscounting."""

    name = "recording"

    def __init__(self, *, delay_s: float = 0.0, fail: bool = False, drop_one: bool = False):
        self.batches: list[list[ScoreItem]] = []
        self.delay_s, self.fail, self.drop_one = delay_s, fail, drop_one
        self.closed = False
        self.release = asyncio.Event()
        self.release.set()

    async def score_batch(self, items: Sequence[ScoreItem]) -> list[Score]:
        self.batches.append(list(items))
        await self.release.wait()
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("model exploded")
        scores: list[Score] = [expected(prompt, text) for prompt, text in items]
        return scores[:-1] if self.drop_one else scores

    async def aclose(self) -> None:
        self.closed = True


class PerPromptReward:
    """A plain RewardModel (no score_batch); prompt id 13 raises."""

    name = "per-prompt"

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        self.calls += 1
        if prompt.id == "13":
            raise ValueError("unlucky prompt")
        return [expected(prompt, text) for text in responses]

    async def aclose(self) -> None:
        self.closed = True


def prompt(number: int) -> Prompt:
    return Prompt.from_text(str(number), f"question {number}")


def test_fakes_satisfy_the_protocols() -> None:
    assert isinstance(RecordingScorer(), BatchScorer)
    assert isinstance(PerPromptReward(), RewardModel)
    assert not isinstance(PerPromptReward(), BatchScorer)
    assert isinstance(BatchingReward(RecordingScorer()), RewardModel)
    assert isinstance(ThreadedReward("t", lambda items: []), BatchScorer)


async def test_many_concurrent_callers_get_exactly_their_own_scores() -> None:
    inner = RecordingScorer(delay_s=0.002)
    reward = BatchingReward(inner, max_batch=16, max_wait_ms=5)
    sizes = [1 + caller % 4 for caller in range(64)]
    calls = [
        reward.score(prompt(caller), [str(i) for i in range(size)])
        for caller, size in enumerate(sizes)
    ]
    results = await asyncio.gather(*calls)
    for caller, (size, scores) in enumerate(zip(sizes, results, strict=True)):
        assert scores == [expected(prompt(caller), str(i)) for i in range(size)]
    batch_sizes = [len(batch) for batch in inner.batches]
    assert sum(batch_sizes) == sum(sizes)
    assert max(batch_sizes) <= 16
    assert len(batch_sizes) <= math.ceil(sum(sizes) / 16) + 1  # batches were really formed
    await reward.aclose()
    assert inner.closed


async def test_a_full_batch_leaves_without_waiting() -> None:
    inner = RecordingScorer()
    reward = BatchingReward(inner, max_batch=4, max_wait_ms=10_000)
    started = time.monotonic()
    await asyncio.gather(*(reward.score(prompt(i), ["1"]) for i in range(8)))
    assert time.monotonic() - started < 5.0
    assert [len(batch) for batch in inner.batches] == [4, 4]
    await reward.aclose()


async def test_a_partial_batch_leaves_after_max_wait() -> None:
    inner = RecordingScorer()
    reward = BatchingReward(inner, max_batch=100, max_wait_ms=30)
    started = time.monotonic()
    results = await asyncio.gather(*(reward.score(prompt(i), ["2"]) for i in range(3)))
    elapsed = time.monotonic() - started
    assert results == [[expected(prompt(i), "2")] for i in range(3)]
    assert [len(batch) for batch in inner.batches] == [3]
    assert 0.025 <= elapsed < 2.0


async def test_a_large_request_is_split_and_reassembled_in_order() -> None:
    inner = RecordingScorer()
    reward = BatchingReward(inner, max_batch=3, max_wait_ms=1)
    scores = await reward.score(prompt(5), [str(i) for i in range(10)])
    assert scores == [expected(prompt(5), str(i)) for i in range(10)]
    assert [len(batch) for batch in inner.batches] == [3, 3, 3, 1]
    await reward.aclose()


async def test_batches_grow_while_the_inner_scorer_is_busy() -> None:
    inner = RecordingScorer()
    inner.release.clear()
    reward = BatchingReward(inner, max_batch=32, max_wait_ms=0, max_concurrent=1)
    first = asyncio.ensure_future(reward.score(prompt(1), ["1"]))
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(reward.score(prompt(i), ["1"])) for i in range(2, 12)]
    await asyncio.sleep(0.01)
    inner.release.set()
    await asyncio.gather(first, *rest)
    assert [len(batch) for batch in inner.batches] == [1, 10]
    await reward.aclose()


async def test_an_inner_exception_fails_every_response_of_its_batch_only() -> None:
    inner = RecordingScorer(fail=True)
    reward = BatchingReward(inner, max_batch=8, max_wait_ms=1)
    results = await asyncio.gather(*(reward.score(prompt(i), ["1", "2"]) for i in range(3)))
    for scores in results:
        for score in scores:
            assert isinstance(score, ScoreFailure)
            assert score.error_type == "RuntimeError"
            assert "model exploded" in score.message
    inner.fail = False
    assert await reward.score(prompt(4), ["3"]) == [expected(prompt(4), "3")]
    await reward.aclose()


async def test_a_wrong_score_count_fails_the_batch() -> None:
    reward = BatchingReward(RecordingScorer(drop_one=True), max_batch=8, max_wait_ms=1)
    scores = await reward.score(prompt(1), ["1", "2", "3"])
    assert all(isinstance(s, ScoreFailure) and s.error_type == "ScoreCountMismatch" for s in scores)
    await reward.aclose()


def test_checked_scores_rejects_non_finite_and_non_numbers_one_by_one() -> None:
    failure = ScoreFailure("upstream")
    raw = [1, 2.5, math.nan, math.inf, True, "3", None, failure]
    checked = checked_scores(raw, len(raw), "fake")
    assert checked[:2] == [1.0, 2.5]
    assert isinstance(checked[0], float)
    assert all(isinstance(score, ScoreFailure) for score in checked[2:7])
    assert checked[7] is failure
    assert all(isinstance(s, ScoreFailure) for s in checked_scores("12", 2, "fake"))


async def test_a_plain_reward_model_is_grouped_by_prompt() -> None:
    inner = PerPromptReward()
    reward = BatchingReward(inner, max_batch=64, max_wait_ms=5)
    good, bad, other = await asyncio.gather(
        reward.score(prompt(1), ["1", "2"]),
        reward.score(prompt(13), ["1"]),
        reward.score(prompt(2), ["7"]),
    )
    assert good == [expected(prompt(1), "1"), expected(prompt(1), "2")]
    assert other == [expected(prompt(2), "7")]
    assert isinstance(bad[0], ScoreFailure)
    assert "unlucky prompt" in bad[0].message
    assert inner.calls == 3
    await reward.aclose()
    assert inner.closed


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    inner = RecordingScorer()
    reward = BatchingReward(inner, max_batch=100, max_wait_ms=20)
    doomed = asyncio.ensure_future(reward.score(prompt(1), ["1"]))
    kept = asyncio.ensure_future(reward.score(prompt(2), ["2"]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == [expected(prompt(2), "2")]
    assert [len(batch) for batch in inner.batches] == [1]
    await reward.aclose()


async def test_aclose_when_idle_is_prompt_and_idempotent() -> None:
    inner = RecordingScorer()
    reward = BatchingReward(inner)
    await reward.aclose()
    await reward.aclose()
    assert inner.closed
    scores = await reward.score(prompt(1), ["1"])
    assert isinstance(scores[0], ScoreFailure)
    assert scores[0].error_type == "RewardClosed"
    assert await reward.score(prompt(1), []) == []


async def test_aclose_scores_queued_work_before_closing() -> None:
    inner = RecordingScorer()
    reward = BatchingReward(inner, max_batch=100, max_wait_ms=60_000)
    callers = [asyncio.ensure_future(reward.score(prompt(i), ["4"])) for i in range(5)]
    await asyncio.sleep(0)
    await reward.aclose()
    assert [await caller for caller in callers] == [[expected(prompt(i), "4")] for i in range(5)]
    assert inner.closed


async def test_aclose_fails_work_that_outlives_the_close_timeout() -> None:
    inner = RecordingScorer()
    inner.release.clear()  # the inner call never finishes by itself
    reward = BatchingReward(inner, max_batch=1, max_wait_ms=0, close_timeout_s=0.05)
    callers = [asyncio.ensure_future(reward.score(prompt(i), ["1"])) for i in range(3)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await reward.aclose()
    assert time.monotonic() - started < 2.0
    for caller in callers:
        scores = await caller
        assert isinstance(scores[0], ScoreFailure)
        assert scores[0].error_type == "RewardClosed"


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchingReward(RecordingScorer(), max_batch=0)


def sync_scorer(log: list[int]) -> SyncBatchFn:
    def score(items: Sequence[ScoreItem]) -> list[Score]:
        log.append(threading.get_ident())
        return [expected(prompt, text) for prompt, text in items]

    return score


async def test_threaded_reward_runs_in_one_worker_thread() -> None:
    threads: list[int] = []
    reward = ThreadedReward("sync", sync_scorer(threads))
    results = await asyncio.gather(*(reward.score(prompt(i), ["1", "2"]) for i in range(20)))
    assert results == [[expected(prompt(i), "1"), expected(prompt(i), "2")] for i in range(20)]
    assert len(set(threads)) == 1
    assert threads[0] != threading.get_ident()
    await reward.aclose()


async def test_threaded_reward_records_exceptions_and_bad_counts() -> None:
    def explode(items: Sequence[ScoreItem]) -> list[Score]:
        raise KeyError("weights missing")

    reward = ThreadedReward("boom", explode)
    scores = await reward.score(prompt(1), ["1", "2"])
    assert all(isinstance(s, ScoreFailure) and s.error_type == "KeyError" for s in scores)
    await reward.aclose()
    short = ThreadedReward("short", lambda items: [1.0])
    scores = await short.score(prompt(1), ["1", "2"])
    assert all(isinstance(s, ScoreFailure) for s in scores)
    await short.aclose()


async def test_threaded_reward_close_runs_on_close_in_the_worker_thread() -> None:
    threads: list[int] = []
    closed_in: list[int] = []
    reward = ThreadedReward(
        "sync", sync_scorer(threads), on_close=lambda: closed_in.append(threading.get_ident())
    )
    await reward.score(prompt(1), ["1"])
    await reward.aclose()
    await reward.aclose()
    assert closed_in == threads
    scores = await reward.score(prompt(1), ["1"])
    assert isinstance(scores[0], ScoreFailure)
    assert scores[0].error_type == "RewardClosed"


async def test_threaded_reward_close_with_queued_and_stuck_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()

    def blocked(items: Sequence[ScoreItem]) -> list[Score]:
        gate.wait(timeout=10)
        return [1.0] * len(items)

    reward = ThreadedReward("stuck", blocked, close_timeout_s=0.05)
    running = asyncio.ensure_future(reward.score(prompt(1), ["1"]))
    queued = asyncio.ensure_future(reward.score(prompt(2), ["1"]))
    await asyncio.sleep(0.02)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="toa.rewards.batching"):
        await reward.aclose()
    assert time.monotonic() - started < 2.0
    assert "did not finish" in caplog.text
    gate.set()  # the running call completes; the queued one was refused
    assert await running == [1.0]
    queued_scores = await queued
    assert isinstance(queued_scores[0], ScoreFailure)
    assert queued_scores[0].error_type == "RewardClosed"


async def test_batching_over_a_threaded_model_forms_batches() -> None:
    threads: list[int] = []
    batches: list[int] = []
    record = sync_scorer(threads)

    def model(items: Sequence[ScoreItem]) -> Sequence[Score]:
        batches.append(len(items))
        time.sleep(0.005)
        return record(items)

    reward = BatchingReward(ThreadedReward("model", model), max_batch=32, max_wait_ms=5)
    results = await asyncio.gather(*(reward.score(prompt(i), [str(i % 7)]) for i in range(64)))
    assert results == [[expected(prompt(i), str(i % 7))] for i in range(64)]
    assert sum(batches) == 64
    assert len(batches) <= 4
    assert len(set(threads)) == 1
    await reward.aclose()
