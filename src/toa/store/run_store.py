"""The run store: every generation, reward and result of a run, in one SQLite file.

A run writes each record as soon as it completes, so that a crash (even SIGKILL) or Ctrl-C loses
nothing that was confirmed, and a resume never pays twice for the same generation. Calls and
rewards are keyed by their place in the search tree, ``(prompt_id, node_id)``.

Durability: the file is in WAL mode with ``synchronous=NORMAL``. A write is confirmed (its
``await`` returns) only once its transaction is committed to the WAL, which survives the process
being killed. A power loss or OS crash may lose the last few committed groups (NORMAL does not
fsync each commit); a resume simply redoes those calls.

Concurrency: one writer thread (`toa.store.writer`) owns the write connection and commits
whatever is queued in one transaction ("group commit"), so thousands of concurrent writers cost
few fsync-free commits.
Reads go through a separate connection; WAL lets them run while the writer commits, and lets
another process (``toa status``) read with `StoreReader` while a run is going.

Writing the same key again replaces the row (INSERT OR REPLACE): a replayed call whose request
hash no longer matches is re-done, and its new record must supersede the stale one.
"""

from __future__ import annotations

import atexit
import json
import logging
import operator
import os
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from toa import compact_json
from toa.errors import StoreError
from toa.store.sqlite import configure, connect
from toa.store.writer import Barrier, GroupWriter, Write, WriteItem, repair_hint, store_error

if TYPE_CHECKING:
    import asyncio


def _running_loop() -> asyncio.AbstractEventLoop:
    """The caller's event loop. asyncio loads with the first write, not with a reader."""
    import asyncio

    return asyncio.get_running_loop()


__all__ = [
    "SCHEMA_VERSION",
    "CallRecord",
    "RecordSink",
    "ResultStatus",
    "RewardRecord",
    "RunStore",
    "StoreError",
    "StoreReader",
    "StoreSummary",
]


logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ResultStatus = Literal["done", "failed"]
_STATUSES = frozenset({"done", "failed"})

# The columns of a call record, shared by `calls` and `spare_calls` (one record type, two keys).
_CALL_TABLE_COLUMNS = """
    prompt_id TEXT NOT NULL, node_id INTEGER NOT NULL, agent TEXT NOT NULL,
    request_hash TEXT NOT NULL, ok INTEGER NOT NULL, text TEXT, error TEXT, error_type TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, finish_reason TEXT,
    latency_s REAL NOT NULL, attempts INTEGER NOT NULL, endpoint TEXT, created_s REAL NOT NULL,"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls ({_CALL_TABLE_COLUMNS}
    PRIMARY KEY (prompt_id, node_id));
CREATE TABLE IF NOT EXISTS rewards (
    prompt_id TEXT NOT NULL, node_id INTEGER NOT NULL, response_hash TEXT NOT NULL,
    ok INTEGER NOT NULL, score REAL, error TEXT, created_s REAL NOT NULL,
    PRIMARY KEY (prompt_id, node_id));
CREATE TABLE IF NOT EXISTS results (
    prompt_id TEXT PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    result_json TEXT NOT NULL, finished_s REAL NOT NULL, seq INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS priors (
    prompt_id TEXT PRIMARY KEY, prior_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    prompt_id TEXT PRIMARY KEY, evidence_json TEXT NOT NULL, seq INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS trees (
    prompt_id TEXT PRIMARY KEY, tree_zjson BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS prompt_hashes (
    prompt_id TEXT PRIMARY KEY, prompt_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spare_calls ({_CALL_TABLE_COLUMNS}
    PRIMARY KEY (prompt_id, request_hash));
"""
# `trees`: each finished prompt's whole search tree (`SearchTree.to_dict()`), JSON compressed
# with zlib (the texts are also in the result's `samples` view: compressed, the record costs
# about a third of that again). Stores written before it existed have no such table: their
# prompts have no stored tree, and readers fall back to the result line.
# `prompt_hashes`: the content hash of each prompt as it was when its search last started
# (`toa.engine.input_identity.prompt_hash`), so that a resume can tell an edited prompt. Stores
# written before it existed gain it empty; their prompts' content is read from the result line.
# `spare_calls`: successful calls whose tree position a resumed search gave to another request
# (its path differed, e.g. an agent that was out is back). Kept by request hash so the request,
# asked for again anywhere in the tree, still replays instead of being paid for twice.


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One generation (LLM call), successful (`ok`, `text`) or failed (`error`, `error_type`).

    `request_hash` identifies the exact request, so a replay can check it is the same call.
    Token counts are None when the server did not report them. `latency_s` is wall time of the
    last attempt in seconds; `created_s` is Unix time in seconds.
    """

    prompt_id: str
    node_id: int
    agent: str
    request_hash: str
    ok: bool
    text: str | None
    error: str | None
    error_type: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    latency_s: float
    attempts: int
    endpoint: str | None
    created_s: float


@dataclass(frozen=True, slots=True)
class RewardRecord:
    """One reward of the response at a node: a `score`, or an `error` when `ok` is False.

    `response_hash` identifies the scored text; `created_s` is Unix time in seconds.
    """

    prompt_id: str
    node_id: int
    response_hash: str
    ok: bool
    score: float | None
    error: str | None
    created_s: float


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """Counts over the whole store. `prompts_partial`: prompts with calls but no result yet."""

    prompts_done: int
    prompts_failed: int
    prompts_partial: int
    calls_ok: int
    calls_failed: int
    prompt_tokens: int
    completion_tokens: int
    rewards_ok: int
    rewards_failed: int


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})"


_CALL_COLUMNS = tuple(f.name for f in fields(CallRecord))
_REWARD_COLUMNS = tuple(f.name for f in fields(RewardRecord))
_call_params = operator.attrgetter(*_CALL_COLUMNS)  # a record's row, as a tuple
_reward_params = operator.attrgetter(*_REWARD_COLUMNS)
_CALL_SQL = _insert_sql("calls", _CALL_COLUMNS)
_SPARE_CALL_SQL = _insert_sql("spare_calls", _CALL_COLUMNS)
_REWARD_SQL = _insert_sql("rewards", _REWARD_COLUMNS)
_RESULT_SQL = (
    "INSERT OR REPLACE INTO results (prompt_id, status, result_json, finished_s, seq) "
    "VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM results))"
)
_META_SQL = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
_PRIOR_SQL = "INSERT OR IGNORE INTO priors (prompt_id, prior_json) VALUES (?, ?)"
_EVIDENCE_SQL = (
    "INSERT OR REPLACE INTO evidence (prompt_id, evidence_json, seq) "
    "VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM evidence))"
)
_TREE_SQL = "INSERT OR REPLACE INTO trees (prompt_id, tree_zjson) VALUES (?, ?)"
_PROMPT_HASH_SQL = "INSERT OR REPLACE INTO prompt_hashes (prompt_id, prompt_hash) VALUES (?, ?)"
# What a prompt's search left behind, all but its calls (see `RunStore.submit_discard`).
_DISCARD_TABLES = ("results", "trees", "evidence", "rewards", "priors", "prompt_hashes")
_TREE_LEVEL = 6  # zlib level: texts shrink about 3x; a 160-node tree takes a few ms
_SUMMARY_SQL = """
SELECT
 (SELECT COUNT(*) FROM results WHERE status = 'done'),
 (SELECT COUNT(*) FROM results WHERE status = 'failed'),
 (SELECT COUNT(*) FROM (SELECT DISTINCT prompt_id FROM calls) AS c
   WHERE NOT EXISTS (SELECT 1 FROM results AS r WHERE r.prompt_id = c.prompt_id)),
 (SELECT COUNT(*) FROM calls WHERE ok), (SELECT COUNT(*) FROM calls WHERE NOT ok),
 (SELECT COALESCE(SUM(prompt_tokens), 0) FROM calls),
 (SELECT COALESCE(SUM(completion_tokens), 0) FROM calls),
 (SELECT COUNT(*) FROM rewards WHERE ok), (SELECT COUNT(*) FROM rewards WHERE NOT ok)
"""


def _tree(blob: bytes, path: Path, prompt_id: str) -> dict[str, Any]:
    """A stored tree, decoded; StoreError (naming the prompt) when it cannot be."""
    try:
        data = json.loads(zlib.decompress(blob).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(
            f"run store {path}: the stored tree of prompt {prompt_id!r} is damaged ({exc}); "
            "its result line in results.jsonl still holds every sample"
        ) from exc
    if not isinstance(data, dict):
        raise StoreError(f"run store {path}: the stored tree of prompt {prompt_id!r} is not a tree")
    return data


def _with_bool(row: tuple[Any, ...], index: int) -> list[Any]:
    """The row with the column at `index` (an SQLite 0/1) turned into a bool."""
    values = list(row)
    values[index] = bool(values[index])
    return values


class RecordSink(Protocol):
    """What a prompt's search reads from and writes to its run's records: the run store
    (`RunStore`), or a Ray worker's buffer that the driver writes to the run store
    (`toa.scale.ray_backend`). Writes are queued in order; each future is set once the record
    is as durable as the sink makes it."""

    failure: StoreError | None

    def calls_for(self, prompt_id: str) -> dict[int, CallRecord]: ...

    def spare_calls_for(self, prompt_id: str) -> list[CallRecord]: ...

    def rewards_for(self, prompt_id: str) -> dict[int, RewardRecord]: ...

    def prior_for(self, prompt_id: str) -> str | None: ...

    def iter_evidence(self, page_size: int = 256) -> Iterator[tuple[str, str]]: ...

    def submit_call(self, rec: CallRecord) -> asyncio.Future[None]: ...

    def submit_spare_call(self, rec: CallRecord) -> asyncio.Future[None]: ...

    def submit_reward(self, rec: RewardRecord) -> asyncio.Future[None]: ...

    def submit_prior(self, prompt_id: str, prior_json: str) -> asyncio.Future[None]: ...

    def submit_prompt_hash(self, prompt_id: str, prompt_hash: str) -> asyncio.Future[None]: ...

    def submit_tree(self, prompt_id: str, tree: dict[str, Any]) -> asyncio.Future[None]: ...

    def submit_evidence(self, prompt_id: str, evidence_json: str) -> asyncio.Future[None]: ...

    async def write_result(
        self, prompt_id: str, status: ResultStatus, result_json: str
    ) -> None: ...


class StoreReader:
    """Read access to a run store, safe to use while another process or thread writes it.

    Opening never creates the file: a missing store raises `StoreError`. A read-only open may leave
    empty ``-wal``/``-shm`` files beside the store; SQLite needs them to read a WAL database.
    Reads may come from any thread (they are serialised on one connection).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            repair = repair_hint(self.path)
            fix = f"{repair}, or restore it from a backup" if repair else "check the path"
            raise StoreError(f"run store {self.path}: no such file; {fix}")
        if self.path.stat().st_size == 0:
            repair = repair_hint(self.path)
            raise StoreError(
                f"run store {self.path}: the file is empty (0 bytes) and holds no record; "
                + (
                    f"{repair}, or restore it from a backup"
                    if repair
                    else "restore it from a backup (the run's results.jsonl, if any, still holds "
                    "its finished results)"
                )
            )
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise store_error(self.path, "open it for reading", exc) from exc
        self._read_lock = threading.Lock()
        self._tables: dict[str, bool] = {}  # whether a newer table exists (asked once each)
        self._hashes: bool | None = None  # whether the `prompt_hashes` table exists
        try:
            version = self.get_meta("schema_version")
        except StoreError:
            self._close_reader()
            raise
        if version != str(SCHEMA_VERSION):
            self._close_reader()
            raise StoreError(
                f"run store {self.path}: schema version {version}, this TOA reads version "
                f"{SCHEMA_VERSION}; use the TOA release that wrote it, or a new store path"
            )

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            if self._conn is None:
                raise StoreError(f"run store {self.path}: the store is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise store_error(self.path, "read it", exc) from exc

    def get_meta(self, key: str) -> str | None:
        """The value stored under `key` in the meta table, or None."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def calls_for(self, prompt_id: str) -> dict[int, CallRecord]:
        """Every call record of one prompt, by node id."""
        sql = f"SELECT {', '.join(_CALL_COLUMNS)} FROM calls WHERE prompt_id = ?"
        rows = self._query(sql, (prompt_id,))
        return {row[1]: CallRecord(*_with_bool(row, 4)) for row in rows}

    def spare_calls_for(self, prompt_id: str) -> list[CallRecord]:
        """The prompt's successful calls that lost their tree position (see `spare_calls`)."""
        if not self._has_table("spare_calls"):
            return []
        sql = f"SELECT {', '.join(_CALL_COLUMNS)} FROM spare_calls WHERE prompt_id = ?"
        return [CallRecord(*_with_bool(row, 4)) for row in self._query(sql, (prompt_id,))]

    def rewards_for(self, prompt_id: str) -> dict[int, RewardRecord]:
        """Every reward record of one prompt, by node id."""
        sql = f"SELECT {', '.join(_REWARD_COLUMNS)} FROM rewards WHERE prompt_id = ?"
        rows = self._query(sql, (prompt_id,))
        return {row[1]: RewardRecord(*_with_bool(row, 3)) for row in rows}

    def result_status(self, prompt_id: str) -> str | None:
        """'done' or 'failed' when the prompt has a result, else None."""
        rows = self._query("SELECT status FROM results WHERE prompt_id = ?", (prompt_id,))
        return str(rows[0][0]) if rows else None

    def result_for(self, prompt_id: str) -> tuple[str, str] | None:
        """``(status, result_json)`` of a prompt with a result, else None."""
        sql = "SELECT status, result_json FROM results WHERE prompt_id = ?"
        rows = self._query(sql, (prompt_id,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def prompt_hash(self, prompt_id: str) -> str | None:
        """The content hash the prompt had when its search last started, or None (it never
        started, or an older TOA wrote the store: then its result line holds the prompt)."""
        if self._hashes is None:
            rows = self._query(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'prompt_hashes'"
            )
            self._hashes = bool(rows)
        if not self._hashes:
            return None
        sql = "SELECT prompt_hash FROM prompt_hashes WHERE prompt_id = ?"
        rows = self._query(sql, (prompt_id,))
        return str(rows[0][0]) if rows else None

    def prior_for(self, prompt_id: str) -> str | None:
        """The prior (JSON) a prompt's search started from, or None (none stored yet)."""
        rows = self._query("SELECT prior_json FROM priors WHERE prompt_id = ?", (prompt_id,))
        return str(rows[0][0]) if rows else None

    def iter_evidence(self, page_size: int = 256) -> Iterator[tuple[str, str]]:
        """``(prompt_id, evidence_json)`` of finished prompts, in the order they finished."""
        sql = (
            "SELECT seq, prompt_id, evidence_json FROM evidence WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        last = 0
        while page := self._query(sql, (last, page_size)):
            for seq, prompt_id, evidence_json in page:
                last = seq
                yield prompt_id, evidence_json

    def tree_for(self, prompt_id: str) -> dict[str, Any] | None:
        """A finished prompt's search tree (`SearchTree.to_dict()` form), or None (no tree
        stored: the search failed, the prompt is unfinished, or an older TOA wrote the store)."""
        if not self._has_trees():
            return None
        rows = self._query("SELECT tree_zjson FROM trees WHERE prompt_id = ?", (prompt_id,))
        return _tree(rows[0][0], self.path, prompt_id) if rows else None

    def iter_results_with_trees(
        self, page_size: int = 256
    ) -> Iterator[tuple[str, str, str, dict[str, Any] | None]]:
        """``(prompt_id, status, result_json, tree)`` like `iter_results`, with each prompt's
        stored tree: None when there is none (see `tree_for`) or when it is damaged (logged: the
        result line still holds every sample)."""
        if not self._has_trees():
            for prompt_id, status, result_json in self.iter_results(page_size):
                yield prompt_id, status, result_json, None
            return
        sql = (
            "SELECT r.seq, r.prompt_id, r.status, r.result_json, t.tree_zjson FROM results AS r "
            "LEFT JOIN trees AS t ON t.prompt_id = r.prompt_id "
            "WHERE r.seq > ? ORDER BY r.seq LIMIT ?"
        )
        last = 0
        while page := self._query(sql, (last, page_size)):
            for seq, prompt_id, status, result_json, blob in page:
                last = seq
                tree = None
                if blob is not None:
                    try:
                        tree = _tree(blob, self.path, prompt_id)
                    except StoreError as exc:  # the result line still holds every sample
                        logger.warning("%s; reading its result line instead", exc)
                yield prompt_id, status, result_json, tree

    def _has_trees(self) -> bool:
        """Whether the store has the `trees` table (stores of older TOA releases do not)."""
        return self._has_table("trees")

    def _has_table(self, name: str) -> bool:
        """Whether the store has table `name` (stores of older releases lack the newer ones);
        asked once per table."""
        found = self._tables.get(name)
        if found is None:
            rows = self._query(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            )
            found = self._tables[name] = bool(rows)
        return found

    def iter_results(self, page_size: int = 256) -> Iterator[tuple[str, str, str]]:
        """``(prompt_id, status, result_json)`` in the order results were last written.

        Streams pages of `page_size` rows, each read by its own short query (no statement stays
        open between pages), so memory does not grow with the store and an abandoned iterator
        holds nothing. Results committed during the iteration appear at the end; a result
        rewritten during it appears again, at its new place.
        """
        sql = (
            "SELECT seq, prompt_id, status, result_json FROM results "
            "WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        last = 0
        while page := self._query(sql, (last, page_size)):
            for seq, prompt_id, status, result_json in page:
                last = seq
                yield prompt_id, status, result_json

    def finished_times(self) -> dict[str, float]:
        """When each prompt's result was last written (Unix seconds), by prompt id."""
        return {
            pid: float(t) for pid, t in self._query("SELECT prompt_id, finished_s FROM results")
        }

    def summary(self) -> StoreSummary:
        """Counts and token sums over the whole store, aggregated in SQL from one snapshot."""
        return StoreSummary(*self._query(_SUMMARY_SQL)[0])

    def _close_reader(self) -> None:
        with self._read_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def close(self) -> None:
        """Close the read connection. Idempotent."""
        self._close_reader()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RunStore(StoreReader, GroupWriter):
    """A run store opened for writing: creates the file and schema, owns the writer thread.

    Writes return once their record is committed. Call `close` when done (also registered with
    `atexit`, so records queued at interpreter exit are still committed).

    Args:
        path: the SQLite file; created with its schema when missing.
        group_max: records per transaction at most.
        linger_s: how long the writer waits for more records to join a group, in seconds.
        busy_timeout_s: how long a write waits for a lock held by another connection, seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        group_max: int = 512,
        linger_s: float = 0.002,
        busy_timeout_s: float = 5.0,
    ) -> None:
        path = Path(path)
        self._wconn = self._open_writer(path, busy_timeout_s)
        try:
            super().__init__(path)
        except BaseException:
            self._wconn.close()
            raise
        self._group_max = group_max
        self._linger_s = linger_s
        self._queue: queue.SimpleQueue[WriteItem] = queue.SimpleQueue()
        self._put_lock = threading.Lock()
        # Async writes of the current event-loop iteration, handed to the writer together at its
        # end (one queue item, one wake-up of the writer thread, instead of one per record).
        self._tick: list[Write] = []
        self._closed = False  # close() was called
        self._stopped = False  # the writer thread has exited
        self.commit_count = 0  # write transactions committed so far (a group counts once)
        self.failure: StoreError | None = None  # the first failed write: no more are taken
        self._thread = threading.Thread(target=self._writer_main, name="toa-store", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> StoreReader:
        """Open an existing store for reading only (``toa status``); never creates the file."""
        return StoreReader(path)

    @staticmethod
    def _open_writer(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            conn = connect(path)
        except sqlite3.Error as exc:
            raise store_error(path, "open or create it", exc) from exc
        try:
            configure(
                conn,
                busy_timeout_ms=int(busy_timeout_s * 1000),
                schema=_SCHEMA,
                schema_version=SCHEMA_VERSION,
            )
        except sqlite3.Error as exc:
            conn.close()
            raise store_error(path, "set up its schema", exc) from exc
        return conn

    async def write_call(self, rec: CallRecord) -> None:
        """Store one call record; returns once it is committed. Replaces the same key."""
        await self.submit_call(rec)

    async def write_reward(self, rec: RewardRecord) -> None:
        """Store one reward record; returns once it is committed. Replaces the same key."""
        await self.submit_reward(rec)

    def submit_call(self, rec: CallRecord) -> asyncio.Future[None]:
        """Queue one call record now; the future resolves once it is committed.

        For callers that go on working while the writer commits (the engine's context): the
        record is queued at once, so a crash can lose it only until the next group commit.
        """
        params = _call_params(rec)
        return self._submit(_CALL_SQL, params, f"call ({rec.prompt_id!r}, node {rec.node_id})")

    def submit_spare_call(self, rec: CallRecord) -> asyncio.Future[None]:
        """Queue a successful call record whose node another request is taking (it stays
        replayable by its request hash); committed no later than that request's record."""
        params = _call_params(rec)
        return self._submit(
            _SPARE_CALL_SQL, params, f"spare call ({rec.prompt_id!r}, node {rec.node_id})"
        )

    def submit_reward(self, rec: RewardRecord) -> asyncio.Future[None]:
        """Queue one reward record now; the future resolves once it is committed."""
        params = _reward_params(rec)
        label = f"reward ({rec.prompt_id!r}, node {rec.node_id})"
        return self._submit(_REWARD_SQL, params, label)

    def submit_prior(self, prompt_id: str, prior_json: str) -> asyncio.Future[None]:
        """Queue the prior a prompt's search starts from (kept if one is stored already).

        Queued before the prompt's first call, so a store that holds a call of the prompt also
        holds its prior: a resume rebuilds the same tree.
        """
        return self._submit(_PRIOR_SQL, (prompt_id, prior_json), f"prior ({prompt_id!r})")

    def submit_evidence(self, prompt_id: str, evidence_json: str) -> asyncio.Future[None]:
        """Queue what a finished prompt teaches later ones (`toa.search.priors`)."""
        return self._submit(_EVIDENCE_SQL, (prompt_id, evidence_json), f"evidence ({prompt_id!r})")

    def submit_tree(self, prompt_id: str, tree: dict[str, Any]) -> asyncio.Future[None]:
        """Queue a finished prompt's search tree (`SearchTree.to_dict()`), the prompt's record.

        Queued before the prompt's result, so a prompt with a result has its tree stored.
        """
        blob = zlib.compress(compact_json.dumps(tree), _TREE_LEVEL)
        return self._submit(_TREE_SQL, (prompt_id, blob), f"tree ({prompt_id!r})")

    def submit_prompt_hash(self, prompt_id: str, prompt_hash: str) -> asyncio.Future[None]:
        """Queue the content hash of a prompt whose search starts (replaces an older one)."""
        return self._submit(_PROMPT_HASH_SQL, (prompt_id, prompt_hash), f"hash ({prompt_id!r})")

    def submit_discard(self, prompt_id: str) -> asyncio.Future[None]:
        """Queue the removal of what a prompt's search left behind, in one transaction: its
        result, tree, evidence, rewards, prior and content hash, so that it runs again from the
        start. Its calls are kept: a call is replayed only for the identical request (the same
        request hash), so the calls of an edited prompt are sent again and replaced, and an
        unchanged request is not paid for twice.
        """
        first, *rest = (f"DELETE FROM {table} WHERE prompt_id = ?" for table in _DISCARD_TABLES)
        loop = _running_loop()
        future: asyncio.Future[None] = loop.create_future()
        more = tuple((sql, (prompt_id,)) for sql in rest)
        label = f"discard ({prompt_id!r})"
        self._put(Write(first, (prompt_id,), label, loop=loop, future=future, more=more))
        return future

    async def write_result(self, prompt_id: str, status: ResultStatus, result_json: str) -> None:
        """Store a prompt's final result, stamped now; returns once committed."""
        await self.submit_result(prompt_id, status, result_json)

    def submit_result(
        self, prompt_id: str, status: ResultStatus, result_json: str
    ) -> asyncio.Future[None]:
        """Queue a prompt's final result now (after everything queued before it); the future
        resolves once it is committed."""
        if status not in _STATUSES:
            raise ValueError(f"result status must be 'done' or 'failed', got {status!r}")
        params = (prompt_id, status, result_json, time.time())
        return self._submit(_RESULT_SQL, params, f"result ({prompt_id!r})")

    async def _write(self, sql: str, params: tuple[Any, ...], label: str) -> None:
        """Queue a write and wait for its commit. Cancelling the wait does not withdraw it."""
        await self._submit(sql, params, label)

    def _submit(self, sql: str, params: tuple[Any, ...], label: str) -> asyncio.Future[None]:
        loop = _running_loop()
        future: asyncio.Future[None] = loop.create_future()
        # A failed write is reported by the writer (logged, and `failure` stops new writes) and
        # by whoever awaits it; one nobody awaits any more (its prompt was stopped) stays quiet
        # (`toa.store.writer` marks its error as seen when it sets it).
        self._put(Write(sql, params, label, loop=loop, future=future))
        return future

    def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key` in the meta table; blocks until committed."""
        item = Write(_META_SQL, (key, value), f"meta {key!r}", event=threading.Event())
        self._put(item)
        assert item.event is not None
        item.event.wait()
        if item.error is not None:
            raise item.error

    def flush(self) -> None:
        """Block until every write queued so far is committed (or has failed). No-op once closed."""
        barrier = Barrier()
        with self._put_lock:
            if self._closed or self._stopped:
                return
            self._hand_off_locked()
            self._queue.put(barrier)
        barrier.event.wait()

    def close(self) -> None:
        """Commit what is queued, stop the writer, close both connections. Idempotent.

        Safe from `atexit` and after Ctrl-C: futures of loops already closed are skipped.
        """
        with self._put_lock:
            if self._closed:
                return
            self._closed = True  # from here on, nothing more is queued
            self._hand_off_locked()
        atexit.unregister(self.close)
        super().close()  # first, so the writer closes last: it checkpoints and removes the WAL
        self._queue.put(None)
        self._thread.join()

    def _put(self, item: Write) -> None:
        with self._put_lock:
            if self.failure is not None:
                raise StoreError(f"{self.failure} (the store takes no more writes)")
            if self._closed or self._stopped:
                raise StoreError(f"run store {self.path}: the store is closed; cannot write")
            if item.loop is None:  # a blocking write (meta): everything before it goes first
                self._hand_off_locked()
                self._queue.put(item)
                return
            self._tick.append(item)
            if len(self._tick) > 1:
                return  # the hand-off is scheduled already
        item.loop.call_soon(self._hand_off)

    def _hand_off(self) -> None:
        """End of a loop iteration: queue its writes for the writer, as one item."""
        with self._put_lock:
            self._hand_off_locked()

    def _hand_off_locked(self) -> None:
        if not self._tick:
            return
        batch, self._tick = self._tick, []
        if self._stopped:  # the writer is gone (a bug): fail them rather than leave them waiting
            for write in batch:
                write.error = StoreError(f"run store {self.path}: the writer stopped; not written")
            self._notify(batch)
            return
        self._queue.put(batch)
