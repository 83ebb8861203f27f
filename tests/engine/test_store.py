"""The run store: round trips, commit-before-return, group commit, crash durability, errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from toa.store.run_store import (
    SCHEMA_VERSION,
    CallRecord,
    RewardRecord,
    RunStore,
    StoreError,
    StoreReader,
    StoreSummary,
)


def call(prompt_id: str, node_id: int, *, ok: bool = True, text: str = "answer") -> CallRecord:
    return CallRecord(
        prompt_id=prompt_id,
        node_id=node_id,
        agent="qwen",
        request_hash=f"h{node_id}",
        ok=ok,
        text=text if ok else None,
        error=None if ok else "HTTP 500",
        error_type=None if ok else "ServerError",
        prompt_tokens=10 if ok else None,
        completion_tokens=5 if ok else None,
        finish_reason="stop" if ok else None,
        latency_s=0.25,
        attempts=1 if ok else 3,
        endpoint="http://127.0.0.1:8000/v1",
        created_s=1_700_000_000.5,
    )


def reward(prompt_id: str, node_id: int, score: float | None = 0.75) -> RewardRecord:
    ok = score is not None
    return RewardRecord(
        prompt_id, node_id, f"r{node_id}", ok, score, None if ok else "timeout", 1_700_000_001.0
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore(tmp_path / "run.db")
    yield s
    s.close()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Query through a new, independent connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_round_trip_of_each_record(store: RunStore) -> None:
    ok, failed = call("p1", 0), call("p1", 7, ok=False)
    await store.write_call(ok)
    await store.write_call(failed)
    await store.write_call(call("p2", 0))
    await store.write_reward(reward("p1", 0))
    await store.write_reward(reward("p1", 7, None))
    await store.write_result("p1", "done", json.dumps({"best": 0}))

    assert store.calls_for("p1") == {0: ok, 7: failed}
    assert store.calls_for("p1")[0].ok is True
    assert store.rewards_for("p1") == {0: reward("p1", 0), 7: reward("p1", 7, None)}
    assert store.rewards_for("p1")[7].ok is False
    assert store.result_status("p1") == "done"
    assert store.result_status("p2") is None
    assert list(store.iter_results()) == [("p1", "done", '{"best": 0}')]
    assert store.calls_for("nope") == {}
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    store.set_meta("config_hash", "abc")
    assert store.get_meta("config_hash") == "abc"
    assert store.get_meta("missing") is None
    assert rows(store.path, "PRAGMA journal_mode") == [("wal",)]


async def test_same_key_replaces(store: RunStore) -> None:
    await store.write_call(call("p", 1, ok=False))
    await store.write_call(call("p", 1, text="redone"))
    await store.write_reward(reward("p", 1, 0.1))
    await store.write_reward(reward("p", 1, 0.9))
    await store.write_result("p", "failed", "{}")
    await store.write_result("p", "done", "[1]")
    assert store.calls_for("p")[1].text == "redone"
    assert store.rewards_for("p")[1].score == 0.9
    assert list(store.iter_results()) == [("p", "done", "[1]")]
    assert rows(store.path, "SELECT COUNT(*) FROM calls") == [(1,)]


async def test_write_is_committed_when_await_returns(store: RunStore) -> None:
    await store.write_call(call("p", 3))
    assert rows(store.path, "SELECT prompt_id, node_id FROM calls") == [("p", 3)]
    await store.write_result("p", "done", "{}")
    assert rows(store.path, "SELECT status FROM results") == [("done",)]


async def test_concurrent_writes_are_grouped(store: RunStore) -> None:
    n = 2000
    await asyncio.gather(*(store.write_call(call(f"p{i % 10}", i)) for i in range(n)))
    assert rows(store.path, "SELECT COUNT(*) FROM calls") == [(n,)]
    assert sum(len(store.calls_for(f"p{k}")) for k in range(10)) == n
    assert store.commit_count < n // 4  # grouped: far fewer transactions than records


async def test_cancelled_wait_still_writes(store: RunStore) -> None:
    task = asyncio.create_task(store.write_call(call("p", 1)))
    await asyncio.sleep(0)  # the write is queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.flush()
    assert 1 in store.calls_for("p")


def test_waiter_loop_closed_before_commit(store: RunStore) -> None:
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer waits on this lock
    loop = asyncio.new_event_loop()
    task = loop.create_task(store.write_call(call("p", 1)))
    loop.run_until_complete(asyncio.sleep(0.01))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.close()
    blocker.execute("COMMIT")
    blocker.close()
    store.flush()  # the writer commits and skips the closed loop without dying
    assert 1 in store.calls_for("p")
    store.set_meta("alive", "yes")


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from toa.store.run_store import CallRecord, RunStore

    async def main() -> None:
        store = RunStore(sys.argv[1])
        for k in range(int(sys.argv[2])):
            rec = CallRecord("crash", k, "a", "h", True, "t" * 200, None, None, 1, 2, "stop",
                             0.1, 1, None, 0.0)
            await store.write_call(rec)
            print("written", k, flush=True)

    asyncio.run(main())
    """
)


def test_records_reported_written_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "1000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    reported = -1
    try:
        while reported < 200:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.stderr.read() if child.stderr else ''}"
            reported = int(line.split()[1])
    finally:
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    reported = max([reported, *(int(x.split()[1]) for x in out.splitlines() if x)])
    assert reported < 999_999  # killed part-way

    with RunStore.open_readonly(path) as reader:
        assert set(range(reported + 1)) <= set(reader.calls_for("crash"))
    resumed = RunStore(path)
    try:
        assert set(range(reported + 1)) <= set(resumed.calls_for("crash"))
    finally:
        resumed.close()


async def test_iter_results_order_and_streaming(store: RunStore) -> None:
    for pid in ["c", "a", "b", "e", "d"]:
        await store.write_result(pid, "done", f'"{pid}"')
    await store.write_result("a", "failed", "null")  # rewritten: moves to the end
    assert [r[0] for r in store.iter_results()] == ["c", "b", "e", "d", "a"]

    it = store.iter_results(page_size=2)
    assert next(it)[0] == "c"
    await store.write_result("z", "done", "{}")  # committed mid-iteration: read lazily
    assert [r[0] for r in it] == ["b", "e", "d", "a", "z"]

    abandoned = store.iter_results(page_size=2)
    next(abandoned)  # left open: holds no statement, so close() and writes are unaffected
    await store.write_result("y", "done", "{}")


async def test_summary_counts(store: RunStore) -> None:
    assert store.summary() == StoreSummary(0, 0, 0, 0, 0, 0, 0, 0, 0)
    for node in range(3):
        await store.write_call(call("done", node))
    await store.write_call(call("done", 3, ok=False))
    await store.write_call(call("failed", 0, ok=False))
    await store.write_call(call("partial1", 0))
    await store.write_call(call("partial2", 0))
    await store.write_reward(reward("done", 0))
    await store.write_reward(reward("done", 1, None))
    await store.write_result("done", "done", "{}")
    await store.write_result("failed", "failed", "{}")
    await store.write_result("no-calls", "failed", "{}")
    assert store.summary() == StoreSummary(
        prompts_done=1,
        prompts_failed=2,
        prompts_partial=2,
        calls_ok=5,
        calls_failed=2,
        prompt_tokens=50,
        completion_tokens=25,
        rewards_ok=1,
        rewards_failed=1,
    )


async def test_readonly_open(tmp_path: Path, store: RunStore) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="no such file"):
        RunStore.open_readonly(missing)
    assert not missing.exists()

    await store.write_call(call("p", 1))
    reader = RunStore.open_readonly(store.path)
    assert isinstance(reader, StoreReader)
    assert not hasattr(reader, "write_call")
    assert set(reader.calls_for("p")) == {1}
    await store.write_call(call("p", 2))  # a live run keeps writing; the reader sees it
    assert set(reader.calls_for("p")) == {1, 2}
    reader.close()
    store.close()
    with StoreReader(store.path) as after:  # after the run has ended
        assert after.summary().calls_ok == 2


def test_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all, " * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        RunStore(junk)
    with pytest.raises(StoreError, match=r"junk\.db"):
        StoreReader(junk)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a 0-byte file: no record at all
    with pytest.raises(StoreError, match=r"the file is empty \(0 bytes\)"):
        StoreReader(empty)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)  # a SQLite file with tables, but no meta table
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="no such table"):
        StoreReader(other)


async def test_writer_error_surfaces_and_writer_goes_on(store: RunStore) -> None:
    conn = sqlite3.connect(store.path)
    conn.execute("DROP TABLE rewards")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="no such table: rewards") as info:
        await store.write_reward(reward("p", 1))
    assert str(store.path) in str(info.value)
    assert "reward ('p', node 1)" in str(info.value)
    # a failure inside a group fails only its own write
    results = await asyncio.gather(
        store.write_call(call("p", 1)),
        store.write_reward(reward("p", 2)),
        store.write_call(call("p", 3)),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], StoreError)
    assert set(store.calls_for("p")) == {1, 3}


async def test_locked_store_fails_the_group_with_a_hint(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run.db", busy_timeout_s=0.05)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        results = await asyncio.gather(
            *(store.write_call(call("p", i)) for i in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, StoreError) for r in results)
        assert "database is locked" in str(results[0])
        assert "one `toa run` per store" in str(results[0])
        blocker.execute("ROLLBACK")
        # A failed write stops new spending: the store takes no more writes, saying why ...
        with pytest.raises(StoreError, match=r"database is locked.*takes no more writes"):
            await store.write_call(call("p", 99))
        assert store.failure is not None
    finally:
        blocker.close()
        store.close()
    # ... and the next run (a resume) opens the store again and writes.
    again = RunStore(tmp_path / "run.db")
    try:
        await again.write_call(call("p", 99))
        assert set(again.calls_for("p")) == {99}
    finally:
        again.close()


async def test_bad_status_is_rejected(store: RunStore) -> None:
    with pytest.raises(ValueError, match="'done' or 'failed'"):
        await store.write_result("p", "maybe", "{}")  # type: ignore[arg-type]


async def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run.db")
    await store.write_call(call("p", 1))
    store.flush()
    store.close()
    store.close()
    store.flush()  # no-op once closed
    with pytest.raises(StoreError, match="closed"):
        await store.write_call(call("p", 2))
    with pytest.raises(StoreError, match="closed"):
        store.calls_for("p")
    assert not (tmp_path / "run.db-wal").exists()  # the writer checkpointed on close
    reopened = RunStore(tmp_path / "run.db")
    assert set(reopened.calls_for("p")) == {1}
    reopened.close()
