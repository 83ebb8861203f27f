"""The generation cache: successful generations shared across runs, keyed by request hash.

Opt-in (``runner.cache`` in the configuration, ``toa run --cache PATH``). The key is the full
request hash `toa.store.records.request_hash`, seed included; the seed is derived from the run
seed, the prompt id, the request and its sample index (see `toa.engine.context`), so one key means
"the same agent, model, mode, template, messages, sampling settings and sample index", whatever
strategy or budget asks for it. Two strategies run over the same prompts with the same seed thus
pay once for every request they share (ensemble's samples are random's, TOA's fresh calls are
ensemble's), and a rerun of a finished grid sends nothing.

Only successful generations are stored: a failure may be transient, and is tried again.

Storage: one SQLite file in WAL mode. Lookups are point reads on the primary key (tens of
microseconds) through their own connection; writes are fire-and-forget: `put` queues the record
and returns, and one writer thread commits whatever is queued in one transaction. A cache is an
accelerator, never the source of truth (the run store is): a failed read is a miss and a failed
write is logged and dropped, neither fails the run. Several processes may share one file.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from toa.errors import StoreError
from toa.store.sqlite import configure, connect
from toa.types import Completion

__all__ = ["CachedGeneration", "GenerationCache"]

logger = logging.getLogger(__name__)

CACHE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    request_hash TEXT PRIMARY KEY, agent TEXT NOT NULL, model TEXT NOT NULL, text TEXT NOT NULL,
    prompt_tokens INTEGER, completion_tokens INTEGER, finish_reason TEXT,
    latency_s REAL NOT NULL, endpoint TEXT, created_s REAL NOT NULL
) WITHOUT ROWID;
"""

_COLUMNS = (
    "request_hash",
    "agent",
    "model",
    "text",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "latency_s",
    "endpoint",
    "created_s",
)
_INSERT = (
    f"INSERT OR IGNORE INTO generations ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM generations WHERE request_hash = ?"


@dataclass(frozen=True, slots=True)
class CachedGeneration:
    """One stored generation.

    Attributes:
        request_hash: the full request hash (seed included).
        agent / model: who generated it.
        text: the generated text.
        prompt_tokens / completion_tokens: as the server reported them (None: not reported).
        finish_reason: 'stop', 'length', ... ('' when absent).
        latency_s: wall time of the original call, in seconds.
        endpoint: the replica that answered it.
        created_s: when it was stored, in seconds since the epoch.
    """

    request_hash: str
    agent: str
    model: str
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    latency_s: float
    endpoint: str | None
    created_s: float

    @classmethod
    def of(cls, request_hash: str, completion: Completion) -> CachedGeneration:
        """The cache record of a fresh `completion`, stamped now."""
        return cls(
            request_hash=request_hash,
            agent=completion.agent,
            model=completion.model,
            text=completion.text,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            finish_reason=completion.finish_reason,
            latency_s=completion.latency_s,
            endpoint=completion.endpoint,
            created_s=time.time(),
        )


WriteItem = CachedGeneration | threading.Event | None  # an event is a flush barrier; None stops


class GenerationCache:
    """A generation cache file, open for reading and writing (see the module docstring).

    Args:
        path: the SQLite file; created with its schema (and its folder) when missing.
        group_max: records per write transaction at most.
        busy_timeout_s: how long a statement waits for another process's lock, in seconds.

    Attributes:
        hits: lookups this instance answered from the file.
        writes: records this instance committed (ones already present count too).

    Raises:
        StoreError: the file cannot be opened or created.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, group_max: int = 256, busy_timeout_s: float = 5.0
    ) -> None:
        self.path = Path(path)
        self._busy_ms = int(busy_timeout_s * 1000)
        self._group_max = group_max
        self._wconn = self._open(create=True)
        self._rconn = self._open(create=False)
        self._read_lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._queue: queue.SimpleQueue[WriteItem] = queue.SimpleQueue()
        self._closed = False
        self.hits = 0
        self.writes = 0
        self._thread = threading.Thread(target=self._writer, name="toa-cache", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _open(self, *, create: bool) -> sqlite3.Connection:
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"generation cache {self.path}: cannot open it: {exc}") from exc
        try:
            configure(
                conn,
                busy_timeout_ms=self._busy_ms,
                schema=_SCHEMA if create else None,
                schema_version=CACHE_SCHEMA_VERSION,
            )
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"generation cache {self.path}: cannot set it up: {exc}") from exc
        return conn

    def get(self, request_hash: str) -> CachedGeneration | None:
        """The stored generation of this request, or None (also when the read fails)."""
        with self._read_lock:
            if self._closed:
                return None
            try:
                row = self._rconn.execute(_SELECT, (request_hash,)).fetchone()
            except sqlite3.Error as exc:
                logger.warning("generation cache %s: read failed (a miss): %s", self.path, exc)
                return None
        if row is None:
            return None
        self.hits += 1
        return CachedGeneration(*row)

    def put(self, request_hash: str, completion: Completion) -> None:
        """Queue a successful generation for storing; returns at once (never raises)."""
        with self._put_lock:
            if not self._closed:
                self._queue.put(CachedGeneration.of(request_hash, completion))

    def __len__(self) -> int:
        """Generations in the file (committed ones)."""
        with self._read_lock:
            row = self._rconn.execute("SELECT COUNT(*) FROM generations").fetchone()
        return int(row[0])

    def flush(self) -> None:
        """Block until everything queued so far is committed (or dropped). No-op once closed."""
        barrier = threading.Event()
        with self._put_lock:
            if self._closed:
                return
            self._queue.put(barrier)
        barrier.wait()

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the file. Idempotent."""
        with self._put_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        atexit.unregister(self.close)
        self._thread.join()
        with self._read_lock:
            self._rconn.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------------------------

    def _writer(self) -> None:
        try:
            while True:
                batch = self._take_group()
                self._commit([i for i in batch if isinstance(i, CachedGeneration)])
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
                if batch[-1] is None:
                    return
        finally:
            self._wconn.close()

    def _take_group(self) -> list[WriteItem]:
        """Block for one item, then take what is already queued, up to `group_max` records."""
        batch = [self._queue.get()]
        while isinstance(batch[-1], CachedGeneration) and len(batch) < self._group_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit(self, records: list[CachedGeneration]) -> None:
        if not records:
            return
        rows = [tuple(getattr(r, name) for name in _COLUMNS) for r in records]
        conn = self._wconn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except Exception as exc:  # a cache write never fails the run: log it, drop the records
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            logger.error(
                "generation cache %s: %d generations not stored: %s", self.path, len(rows), exc
            )
            return
        self.writes += len(rows)
