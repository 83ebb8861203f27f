"""The run store's writer thread: queued writes committed in groups, waiters woken after.

`RunStore` (in `toa.store.run_store`) owns the queue and the write connection; `GroupWriter` is the
thread's side of it: take a group of queued items, commit it in one transaction (retrying write by
write when one statement fails), then settle every waiter on its own event loop.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toa.errors import StoreError
from toa.store.layout import MANIFEST_NAME, RESULTS_NAME, STORE_NAME

logger = logging.getLogger("toa.store.run_store")  # the store's own logger, as before the split


def _error_name(error: sqlite3.Error) -> str:
    """SQLite's error code name ('SQLITE_FULL', ...); 'SQLITE_ERROR' for the module's own errors."""
    return getattr(error, "sqlite_errorname", None) or "SQLITE_ERROR"


def free_space(path: Path) -> str:
    """The free space of the filesystem holding `path`, for messages ('unknown' if not known)."""
    try:
        free = shutil.disk_usage(path.parent if not path.is_dir() else path).free
    except OSError:
        return "unknown"
    return f"{free / 1e6:.1f} MB" if free < 1e9 else f"{free / 1e9:.1f} GB"


def repair_hint(path: Path) -> str | None:
    """For a run's own store (``RUN/store.sqlite`` beside a manifest): what `toa repair` offers,
    with the number of results ``results.jsonl`` still holds. None for any other file."""
    run_dir = path.parent
    if path.name != STORE_NAME or not (run_dir / MANIFEST_NAME).is_file():
        return None
    try:
        with (run_dir / RESULTS_NAME).open("rb") as handle:
            held = sum(1 for line in handle if line.strip())
    except OSError:
        held = 0
    return f"`toa repair {run_dir}` recovers what can be read ({RESULTS_NAME} holds {held} results)"


def _hint(error: sqlite3.Error, path: Path | None = None) -> str:
    """What to do about a SQLite error, by its error code name."""
    name = _error_name(error)
    if name.startswith("SQLITE_FULL") or "disk is full" in str(error):
        free = f" ({free_space(path)} free there now)" if path is not None else ""
        return f"the disk is full{free}: free space, then resume the run"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "another process is writing this store: run one `toa run` per store at a time"
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN")):
        return "the file or its folder is not writable: fix permissions or use another path"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "Could not decode" in str(error):
        repair = repair_hint(path) if path is not None else None
        if repair is not None:
            return f"the file is damaged: {repair}"
        return "the file is damaged or not a TOA store: move it aside and use a fresh path"
    free = f", {free_space(path)} free there now" if path is not None else ""
    if name.startswith("SQLITE_IOERR"):
        return (
            f"writing to the disk failed (an I/O error{free}): check the disk and its free "
            "space, then resume the run (committed records are kept)"
        )
    return f"check the file and its disk{free}, then resume the run (committed records are kept)"


def store_error(path: Path, doing: str, error: sqlite3.Error) -> StoreError:
    return StoreError(f"run store {path}: could not {doing}: {error}; {_hint(error, path)}")


@dataclass(slots=True)
class Write:
    """One queued statement and whoever waits for its commit (an asyncio future or an event).

    `more`: statements run after `sql` in the same transaction (a write that must be whole).
    """

    sql: str
    params: tuple[Any, ...]
    label: str
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None
    event: threading.Event | None = None
    error: StoreError | None = None
    more: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass(slots=True)
class Barrier:
    """Set once everything queued before it is committed (or has failed)."""

    event: threading.Event = field(default_factory=threading.Event)


_STATEMENT_ERRORS = ("SQLITE_ERROR", "SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_TOOBIG")
"""Errors of one statement, not of the database: a group hitting one is retried write by write."""

WriteItem = Write | list[Write] | Barrier | None
"""A queue item: one write, the writes of one event-loop iteration, a barrier, or None (stop)."""


if TYPE_CHECKING:  # asyncio itself loads with the first write, not with a reader (`toa status`)
    import asyncio

    _Waiter = tuple[asyncio.Future[None], StoreError | None]


def _settle_futures(pairs: list[_Waiter]) -> None:
    """Resolve futures on their own loop (called there via call_soon_threadsafe)."""
    for future, error in pairs:
        if future.done():  # the awaiting task was cancelled; the record is committed anyway
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
            # Seen: whoever awaits it still gets it raised, but asyncio does not log it again
            # for a future nobody awaits any more (its prompt was stopped); the writer has.
            future.exception()


def _statements(writes: list[Write]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements of one transaction, rows of the same statement together (one
    `executemany` each instead of one `execute` per record).

    Order is kept where it matters: rows of one statement keep their order (a key written twice
    ends with the later row; results keep their sequence), and a write with follow-up statements
    (a prompt's discard) stays where it was, between the rows before and after it.
    """
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    segment: dict[str, list[tuple[Any, ...]]] = {}
    for write in writes:
        if write.more:
            out.extend(segment.items())
            segment = {}
            out.append((write.sql, [write.params]))
            out.extend((sql, [params]) for sql, params in write.more)
        else:
            segment.setdefault(write.sql, []).append(write.params)
    out.extend(segment.items())
    return out


class GroupWriter:
    """The writer thread's methods, mixed into `RunStore`, which sets these attributes."""

    path: Path
    commit_count: int
    failure: StoreError | None
    _wconn: sqlite3.Connection
    _queue: queue.SimpleQueue[WriteItem]
    _put_lock: threading.Lock
    _tick: list[Write]
    _stopped: bool
    _group_max: int
    _linger_s: float

    def _writer_main(self) -> None:
        stop = False
        try:
            while not stop:
                batch = self._take_group()
                stop = batch[-1] is None
                self._commit_group([i for i in batch if isinstance(i, Write)])
                for item in batch:
                    if isinstance(item, Barrier):
                        item.event.set()
        finally:  # normally after close(); on a bug, no waiter may be left hanging
            with self._put_lock:
                self._stopped = True
                if self._tick:  # writes of a loop iteration not handed off yet
                    self._queue.put(self._tick)
                    self._tick = []
            self._wconn.close()
            self._abandon_queue()

    def _abandon_queue(self) -> None:
        """Fail every write still queued and release every barrier (the writer has stopped)."""
        writes: list[Write] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Barrier):
                item.event.set()
            elif item is not None:
                for write in item if isinstance(item, list) else [item]:
                    write.error = StoreError(
                        f"run store {self.path}: the writer stopped; not written"
                    )
                    writes.append(write)
        if writes:
            logger.error("run store %s: %d writes lost: the writer stopped", self.path, len(writes))
            self._notify(writes)

    def _take_group(self) -> list[Write | Barrier | None]:
        """Block for one item, then gather more for up to `linger_s`, until `group_max` records
        (a loop iteration's writes stay together, so a group may hold a few more).

        The short linger turns a stream of single writes into fewer, larger transactions (each
        commit has a fixed cost); a barrier or the stop marker ends the group at once.
        """
        batch: list[Write | Barrier | None] = []
        item = self._queue.get()
        deadline = time.monotonic() + self._linger_s
        while True:
            if isinstance(item, list):
                batch.extend(item)
            else:
                batch.append(item)
            if not isinstance(batch[-1], Write) or len(batch) >= self._group_max:
                return batch
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return batch

    def _commit_group(self, writes: list[Write]) -> None:
        """Commit `writes` in one transaction and wake their waiters.

        When a statement fails (a dropped table, a bad value) the group is retried one write per
        transaction, so only the faulty write fails. When the database itself fails (disk full,
        locked, read-only) every write of the group fails at once instead of waiting again.
        """
        if not writes:
            return
        try:
            self._transaction(writes)
        except sqlite3.Error as exc:
            if _error_name(exc).startswith(_STATEMENT_ERRORS):
                for write in writes:
                    try:
                        self._transaction([write])
                    except sqlite3.Error as one:
                        self._fail([write], one)
            else:
                self._fail(writes, exc)
        except Exception as exc:  # a bug, not the disk: fail these writes, keep the writer going
            logger.exception("run store %s: unexpected writer error", self.path)
            for write in writes:
                write.error = StoreError(f"run store {self.path}: writer failed: {exc!r}")
        self._notify(writes)

    def _fail(self, writes: list[Write], exc: sqlite3.Error) -> None:
        for write in writes:
            write.error = store_error(self.path, f"write {write.label}", exc)
        first = writes[0].error
        assert first is not None
        if self.failure is None and not _error_name(exc).startswith(_STATEMENT_ERRORS):
            # The database itself failed (disk full, I/O, read-only, damaged), not one record.
            # From now on nothing more is queued (`RunStore._put` refuses): a record that cannot
            # be stored is a call that a resume would pay for again, so spending must stop.
            self.failure = first
            logger.error("%s (%d writes failed; no more writes are taken)", first, len(writes))
        else:
            logger.debug("%s (%d writes failed)", first, len(writes))

    def _transaction(self, writes: list[Write]) -> None:
        conn = self._wconn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in _statements(writes):
                if len(rows) == 1:
                    conn.execute(sql, rows[0])
                else:
                    conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.debug("run store %s: rollback failed", self.path, exc_info=True)
            raise
        self.commit_count += 1

    def _notify(self, writes: list[Write]) -> None:
        """Wake every waiter: one call_soon_threadsafe per event loop, events set directly."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        for write in writes:
            if write.event is not None:
                write.event.set()
            elif write.loop is not None and write.future is not None:
                by_loop.setdefault(write.loop, []).append((write.future, write.error))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_futures, pairs)
            except RuntimeError:  # the loop is closed (Ctrl-C, exit): nobody waits any more
                logger.debug("run store %s: %d waiters' loop is closed", self.path, len(pairs))
