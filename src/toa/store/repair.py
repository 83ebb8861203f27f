"""Repairing a run whose store is missing, empty or damaged (``toa repair RUN_DIR``).

A run's store is the source of truth, and ``results.jsonl`` is rebuilt from it; when the store is
gone or damaged, every command refuses it (status, export, resume), although the results file
(and usually most of the store) can still be read. `repair_run` recovers both:

1. It takes the run's lock (`toa.store.layout.LOCK_NAME`, the one `toa run` holds), so it never
   races a running process, and refuses a directory that is not a run (no manifest).
2. It works on a copy of the store (``store.sqlite`` and its ``-wal``, whose committed frames
   are part of the database) in a work folder inside the run directory, never on the store
   itself, and checks it: missing, empty (0 bytes), not a database, ``PRAGMA integrity_check``
   not ok, or a table that cannot be read whole although the check passed.
3. It creates a new store with the current schema (`RunStore` itself creates it) and copies into
   it every row SQLite can still read, table by table, for every table the new store has (so a
   table added to the schema is copied too): in rowid order, skipping the rows of damaged pages
   (each skipped stretch is probed row by row). A table's unreadable rows are counted from its
   key index when that can be read, else at least those that failed. Rows that read but hold
   damaged content (a result, tree, prior or evidence that does not decode) are dropped too.
4. It adds every result line of ``results.jsonl`` whose prompt has no result in the recovered
   store, exactly as the line reads (status from its ``status``), so that the results file
   rebuilt from the store holds the same line. Such a prompt has no stored calls: it is
   finished, so a resume skips it and never pays for it again.
5. Unless ``dry_run``: the old files are moved aside (``store.sqlite.damaged-<UTC time>`` and
   its ``-wal`` / ``-shm``), the new store takes the store's place (one rename), results.jsonl is
   rewritten from it and a stale ``results.jsonl.tmp`` is removed.

A healthy store whose results file agrees is left as it is. A healthy store is never replaced:
result lines it lacks (a store restored from an older backup) are added to it in place, and a
results file that disagrees with it is rewritten from it. The library never prints: it logs, and
returns a `RepairReport` (``toa repair`` draws it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from toa.errors import StoreError
from toa.store.layout import RESULTS_NAME, STORE_NAME
from toa.store.manifest import read_manifest
from toa.store.run_files import rebuild_results, run_lock
from toa.store.run_store import SCHEMA_VERSION, RunStore, StoreReader
from toa.store.writer import free_space

__all__ = [
    "RepairAction",
    "RepairReport",
    "StoreState",
    "TableRepair",
    "repair_run",
]

logger = logging.getLogger(__name__)

StoreState = Literal["ok", "missing", "empty", "not a database", "damaged"]
"""What the store was found to be: ``damaged`` covers a failed integrity check, a table that
cannot be read whole, damaged content, and a database that is not a TOA store."""

RepairAction = Literal["none", "results rewritten", "results added", "store rebuilt"]
"""What a repair does: nothing (all is well), rewrite results.jsonl from a healthy store, add
results.jsonl's extra lines to a healthy store, or replace a damaged store by a rebuilt one."""

_WORK_PREFIX = ".repair-"  # the work folder inside the run directory (removed at the end)
_PAGE = 512  # rows read per query
_MAX_PROBES = 100_000  # rowids probed one by one across one damaged stretch, at most
_MAX_ROWID = 2**63 - 1
_INTEGRITY_SHOWN = 3  # integrity-check messages quoted in the report


@dataclass(frozen=True, slots=True)
class TableRepair:
    """One table of the store: rows copied into the new store, and rows lost.

    `unreadable` counts the rows that could not be read, or were read with damaged content; it
    is exact when the table read without error, or when its key index could be read whole
    (`exact`), and otherwise a lower bound (0 with `exact` False: unknown, the table itself
    could not be opened). `present` is False for a table the old store did not have.
    """

    name: str
    recovered: int
    unreadable: int
    exact: bool = True
    present: bool = True


@dataclass(frozen=True)
class RepairReport:
    """What `repair_run` found and did (with `dry_run`, what it would do; nothing was changed).

    Attributes:
        run_dir: the run directory.
        state: what the store was found to be (`StoreState`).
        problem: the first problem found, in words ('' for a healthy store).
        action: what was (or would be) done (`RepairAction`).
        dry_run: True when nothing was changed on purpose.
        tables: each table of the new store, in schema order.
        results_from_store: results recovered from the old store.
        results_from_file: results taken from results.jsonl alone (the store had none readable).
        bad_result_lines: lines of results.jsonl that are not a result (skipped).
        results_lines: the lines results.jsonl holds after the repair (or would).
        lost_prompts: prompts that had records in the old store that could not be recovered and
            that have no result now: a resume runs them again and pays for the lost calls.
        damaged_copy: where the old store was moved (None when nothing was moved).
        stale_tmp: a leftover results.jsonl.tmp was found (removed unless `dry_run`).
        next_command: what to run next.
    """

    run_dir: Path
    state: StoreState
    problem: str
    action: RepairAction
    dry_run: bool
    tables: tuple[TableRepair, ...] = ()
    results_from_store: int = 0
    results_from_file: int = 0
    bad_result_lines: int = 0
    results_lines: int = 0
    lost_prompts: tuple[str, ...] = ()
    damaged_copy: Path | None = None
    stale_tmp: bool = False
    next_command: str = ""

    @property
    def changed(self) -> bool:
        """Whether the run directory was changed."""
        return not self.dry_run and (self.action != "none" or self.stale_tmp)

    @property
    def rows_unreadable(self) -> int:
        """Rows known to be lost, over every table."""
        return sum(t.unreadable for t in self.tables)


def repair_run(run_dir: str | os.PathLike[str], *, dry_run: bool = False) -> RepairReport:
    """Recover a run whose store is missing, empty or damaged (see the module docstring).

    Args:
        run_dir: a run directory (it holds a manifest).
        dry_run: find out and report what would be done, and change nothing.

    Raises:
        ConfigError: `run_dir` is not a run directory (no readable manifest).
        RunLockedError: another TOA process is using the run.
        StoreError: the store was written by another schema version, or a file could not be
            copied, written or moved (the message says what is where; the store is left whole).
    """
    run_dir = Path(run_dir)
    read_manifest(run_dir)  # ConfigError: not a run
    with run_lock(run_dir, what=", then repair it"):
        for stale in run_dir.glob(f"{_WORK_PREFIX}*"):  # left by a repair that was killed
            shutil.rmtree(stale, ignore_errors=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        work = run_dir / f"{_WORK_PREFIX}{stamp}"
        try:
            work.mkdir()
            return _repair(run_dir, work, stamp, dry_run=dry_run)
        except (OSError, sqlite3.Error) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StoreError(
                f"{run_dir}: repair failed: {why} ({free_space(run_dir)} free there); the run's "
                f"store is still in place"
            ) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- the repair


@dataclass
class _Salvage:
    """What was read from the old store into the new one."""

    state: StoreState = "ok"
    problem: str = ""
    tables: list[TableRepair] = field(default_factory=list)
    lost_prompts: set[str] = field(default_factory=set)  # prompts with a record not recovered

    def damaged(self, problem: str) -> None:
        if self.state == "ok":
            self.state = "damaged"
        if not self.problem:
            self.problem = problem


@dataclass(frozen=True, slots=True)
class _Line:
    """Where one result line of results.jsonl is (the last line of its prompt)."""

    status: str
    offset: int
    size: int


def _repair(run_dir: Path, work: Path, stamp: str, *, dry_run: bool) -> RepairReport:
    store = run_dir / STORE_NAME
    tmp = run_dir / f"{RESULTS_NAME}.tmp"
    had_tmp = tmp.exists()
    new_path = work / STORE_NAME
    RunStore(new_path).close()  # the current schema, exactly as a run creates it
    salvage = _Salvage()
    if not store.is_file():
        salvage.state, salvage.problem = "missing", f"{store.name} is missing"
    elif store.stat().st_size == 0 and not _size(store.with_name(f"{store.name}-wal")):
        salvage.state, salvage.problem = "empty", f"{store.name} is empty (0 bytes)"
    else:
        old_path = _copy_store(store, work / "old")
        with _connection(new_path) as new, _connection(old_path) as old:
            _salvage_into(old, new, salvage, store)
    lines, bad_lines = _result_lines(run_dir / RESULTS_NAME)
    with _connection(new_path) as new:
        from_store = {row[0] for row in new.execute("SELECT prompt_id FROM results")}
        extra = {pid: line for pid, line in lines.items() if pid not in from_store}
        _add_results(new, run_dir / RESULTS_NAME, extra)
        now_done = {row[0] for row in new.execute("SELECT prompt_id FROM results")}
        integrity = new.execute("PRAGMA integrity_check").fetchall()
        new.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if integrity != [("ok",)]:  # never expected: the new store was written by this process
        raise StoreError(
            f"{run_dir}: repair failed: the rebuilt store does not check ({integrity})"
        )
    lost = tuple(sorted(salvage.lost_prompts - now_done))
    action: RepairAction
    if salvage.state != "ok":
        action = "store rebuilt"
    elif extra:
        action = "results added"
    else:
        with StoreReader(new_path) as reader:
            agrees = _file_agrees(run_dir / RESULTS_NAME, reader)
        action = "none" if agrees else "results rewritten"
    damaged_copy: Path | None = None
    if not dry_run:
        damaged_copy = _apply(run_dir, action, new_path, extra, stamp)
        if action == "none" and tmp.exists():
            tmp.unlink()
    results_lines = len(now_done)
    if not dry_run and action != "none":
        with StoreReader(store) as reader:
            results_lines = rebuild_results(run_dir, reader)
    report = RepairReport(
        run_dir=run_dir,
        state=salvage.state,
        problem=salvage.problem,
        action=action,
        dry_run=dry_run,
        tables=tuple(salvage.tables),
        results_from_store=len(from_store),
        results_from_file=len(extra),
        bad_result_lines=bad_lines,
        results_lines=results_lines,
        lost_prompts=lost,
        damaged_copy=damaged_copy,
        stale_tmp=had_tmp,
        next_command=f"toa resume {run_dir}",
    )
    _log(report)
    return report


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _log(report: RepairReport) -> None:
    logger.info(
        "repair %s: store %s%s; %s: %s; %d results from the store, %d from %s",
        report.run_dir,
        report.state,
        f" ({report.problem})" if report.problem else "",
        "would do" if report.dry_run else "done",
        report.action,
        report.results_from_store,
        report.results_from_file,
        RESULTS_NAME,
    )
    for table in report.tables:
        if table.unreadable or not table.exact:
            logger.warning(
                "repair %s: table %s: %d rows recovered, %s%d unreadable",
                report.run_dir,
                table.name,
                table.recovered,
                "" if table.exact else "at least ",
                table.unreadable,
            )
    if report.lost_prompts:
        logger.warning(
            "repair %s: %d prompts lost records and have no result: a resume runs them again",
            report.run_dir,
            len(report.lost_prompts),
        )


@contextlib.contextmanager
def _connection(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _copy_store(store: Path, folder: Path) -> Path:
    """A copy of the store and its WAL (the shared-memory index is rebuilt from the WAL)."""
    folder.mkdir()
    copy = folder / store.name
    shutil.copyfile(store, copy)
    wal = store.with_name(store.name + "-wal")
    if wal.is_file():
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    return copy


def _salvage_into(
    old: sqlite3.Connection, new: sqlite3.Connection, salvage: _Salvage, path: Path
) -> None:
    """Check the old store and copy what it still holds into the new one, table by table."""
    checks: list[str] = []  # what the integrity check says, up to where it stops
    try:
        old.execute("PRAGMA query_only = 1")
        for row in old.execute("PRAGMA integrity_check(100)"):
            checks.append(str(row[0]))
    except sqlite3.Error as exc:
        if not checks and _error_name(exc).startswith("SQLITE_NOTADB"):
            salvage.state, salvage.problem = "not a database", f"not an SQLite database ({exc})"
        else:
            checks.append(str(exc))
    if checks != ["ok"] and salvage.state == "ok":
        shown = "; ".join(checks[:_INTEGRITY_SHOWN])
        extra = len(checks) - _INTEGRITY_SHOWN
        more = f" (and {extra} more)" if extra > 0 else ""
        salvage.damaged(f"integrity check: {shown}{more}")
    _check_version(old, salvage, path)
    tables = [
        str(row[0])
        for row in new.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY rowid"
        )
    ]
    new.execute("BEGIN")
    for table in tables:
        # The rows a new store starts with (its schema version): the old store's own go first.
        seeded = new.execute(f"SELECT * FROM {_quote(table)}").fetchall()
        new.execute(f"DELETE FROM {_quote(table)}")
        salvage.tables.append(_copy_table(old, new, table, salvage))
        if seeded:
            marks = ", ".join("?" * len(seeded[0]))
            new.executemany(f"INSERT OR IGNORE INTO {_quote(table)} VALUES ({marks})", seeded)
    new.execute("COMMIT")


def _check_version(old: sqlite3.Connection, salvage: _Salvage, path: Path) -> None:
    """Refuse a store of another schema version; note a store whose version cannot be read."""
    try:
        rows = old.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except sqlite3.Error as exc:
        if salvage.state == "ok":
            salvage.damaged(f"its schema version cannot be read ({exc})")
        return
    if not rows:
        salvage.damaged("it has no schema version (not a TOA run store?)")
    elif str(rows[0][0]) != str(SCHEMA_VERSION):
        raise StoreError(
            f"run store {path}: schema version {rows[0][0]}, this TOA repairs version "
            f"{SCHEMA_VERSION}; repair it with the TOA release that wrote it (nothing was changed)"
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_info({_quote(table)})")]


def _copy_table(
    old: sqlite3.Connection, new: sqlite3.Connection, table: str, salvage: _Salvage
) -> TableRepair:
    """Copy every readable row of `table` from `old` into `new` (the columns both have)."""
    wanted = _columns(new, table)
    try:
        have = set(_columns(old, table))
    except sqlite3.Error as exc:
        salvage.damaged(f"table {table} cannot be opened ({exc})")
        return TableRepair(table, 0, 0, exact=False)
    if not have:
        return TableRepair(table, 0, 0, present=False)  # a table added since the store was made
    columns = [c for c in wanted if c in have]
    names = ", ".join(_quote(c) for c in columns)
    insert = (
        f"INSERT OR IGNORE INTO {_quote(table)} ({names}) VALUES ({', '.join('?' * len(columns))})"
    )
    check = _CHECKS.get(table)
    scan = _Scan(old, table, names)
    recovered = rejected = 0
    rejected_prompts: set[str] = set()
    for batch in scan.batches():
        rows = []
        for row in batch:
            if check is not None and not check(dict(zip(columns, row, strict=True))):
                rejected += 1
                if "prompt_id" in columns:
                    rejected_prompts.add(str(row[columns.index("prompt_id")]))
                continue
            rows.append(row)
        before = new.total_changes
        new.executemany(insert, rows)
        added = new.total_changes - before
        recovered += added
        rejected += len(rows) - added  # a repeated key (damaged pages): the first row is kept
    if scan.error is None and not rejected:
        return TableRepair(table, recovered, 0)
    if scan.error is not None:
        salvage.damaged(f"table {table} cannot be read whole ({scan.error})")
    else:
        salvage.damaged(f"table {table} holds {rejected} rows with damaged content")
    salvage.lost_prompts |= rejected_prompts
    known = _lost_keys(old, new, table)
    if known is None:
        return TableRepair(table, recovered, scan.failed + rejected, exact=False)
    lost, exact, key_columns = known
    if "prompt_id" in key_columns:
        at = key_columns.index("prompt_id")
        salvage.lost_prompts |= {str(key[at]) for key in lost}
    count = len(lost) if exact else max(len(lost), scan.failed + rejected)
    return TableRepair(table, recovered, count, exact=exact)


class _Scan:
    """The readable rows of one table, in rowid order, stepping over damaged stretches.

    Rows are read a page at a time (``rowid > last``); when a read fails, the damaged stretch is
    found by seeking ever further (1, 2, 4, ... rowids on) until a seek succeeds, narrowed down,
    and its rowids probed one by one. `failed` counts the probes that raised; `error` is the
    first error met (None: the table read whole).
    """

    def __init__(self, conn: sqlite3.Connection, table: str, names: str) -> None:
        self.conn = conn
        self.table = _quote(table)
        self.page_sql = (
            f"SELECT rowid, {names} FROM {self.table} WHERE rowid > ? ORDER BY rowid LIMIT {_PAGE}"
        )
        self.row_sql = f"SELECT {names} FROM {self.table} WHERE rowid = ?"
        self.plain_sql = f"SELECT {names} FROM {self.table}"
        self.failed = 0
        self.error: sqlite3.Error | None = None

    def batches(self) -> Iterator[list[tuple[Any, ...]]]:
        last = 0  # SQLite numbers rows from 1 (TOA never sets a rowid)
        while True:
            rows: list[tuple[Any, ...]] = []
            try:
                for row in self.conn.execute(self.page_sql, (last,)):
                    rows.append(row)
            except sqlite3.Error as exc:
                if not rows and last == 0 and "no such column: rowid" in str(exc):
                    yield from self._plain()  # a WITHOUT ROWID table
                    return
                self.error = self.error or exc
                if rows:
                    last = rows[-1][0]
                    yield [row[1:] for row in rows]
                resume = self._skip(last)
                if resume is None:
                    return
                yield from self._probe(last, resume)
                last = resume
                continue
            if rows:
                last = rows[-1][0]
                yield [row[1:] for row in rows]
            if len(rows) < _PAGE:
                return

    def _plain(self) -> Iterator[list[tuple[Any, ...]]]:
        """A table without rowids: read it in one pass, keeping what comes before an error."""
        rows: list[tuple[Any, ...]] = []
        try:
            for row in self.conn.execute(self.plain_sql):
                rows.append(row)
        except sqlite3.Error as exc:
            self.error = exc
        yield rows

    def _seeks(self, rowid: int) -> bool:
        """Whether reading on from `rowid` works (the page holding its successor reads)."""
        try:
            self.conn.execute(
                f"SELECT rowid FROM {self.table} WHERE rowid > ? ORDER BY rowid LIMIT 1", (rowid,)
            ).fetchall()
        except sqlite3.Error:
            return False
        return True

    def _skip(self, last: int) -> int | None:
        """The first rowid past `last` from which reads work again (None: none does)."""
        bad, step = last, 1
        while last + step <= _MAX_ROWID:
            probe = last + step
            if self._seeks(probe):
                good = probe
                while good - bad > _MAX_PROBES:  # narrow a wide stretch before probing it
                    middle = (bad + good) // 2
                    if self._seeks(middle):
                        good = middle
                    else:
                        bad = middle
                return good
            bad, step = probe, step * 2
        return None

    def _probe(self, last: int, resume: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows in (`last`, `resume`] that read one by one (at most `_MAX_PROBES` tried)."""
        rows: list[tuple[Any, ...]] = []
        for rowid in range(max(last + 1, resume - _MAX_PROBES + 1), resume + 1):
            try:
                rows.extend(self.conn.execute(self.row_sql, (rowid,)).fetchall())
            except sqlite3.Error:
                self.failed += 1
            if len(rows) >= _PAGE:
                yield rows
                rows = []
        if rows:
            yield rows


def _lost_keys(
    old: sqlite3.Connection, new: sqlite3.Connection, table: str
) -> tuple[set[tuple[Any, ...]], bool, list[str]] | None:
    """The keys the old store's key index holds that the new table lacks, whether the index
    read whole, and the key's columns; None when the table has no key index or it cannot be
    read at all."""
    try:
        indexes = old.execute(f"PRAGMA index_list({_quote(table)})").fetchall()
        chosen = next(
            (row for row in indexes if row[3] == "pk"),
            next((row for row in indexes if row[2] and not row[4]), None),
        )
        if chosen is None:
            return None
        key_columns = [
            str(row[2]) for row in old.execute(f"PRAGMA index_info({_quote(chosen[1])})")
        ]
    except sqlite3.Error:
        return None
    names = ", ".join(_quote(c) for c in key_columns)
    keys: set[tuple[Any, ...]] = set()
    exact = True
    try:
        sql = f"SELECT {names} FROM {_quote(table)} INDEXED BY {_quote(chosen[1])}"
        for row in old.execute(sql):
            keys.add(tuple(row))
    except sqlite3.Error:
        exact = False
    if not keys and not exact:
        return None
    have = {tuple(row) for row in new.execute(f"SELECT {names} FROM {_quote(table)}")}
    return keys - have, exact, key_columns


def _json_object(text: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _result_ok(row: dict[str, Any]) -> bool:
    data = _json_object(row.get("result_json"))
    return (
        data is not None
        and data.get("id") == row.get("prompt_id")
        and data.get("status") == row.get("status")
    )


def _tree_ok(row: dict[str, Any]) -> bool:
    blob = row.get("tree_zjson")
    if not isinstance(blob, bytes):
        return False
    try:
        return _json_object(zlib.decompress(blob).decode("utf-8")) is not None
    except (zlib.error, UnicodeDecodeError):
        return False


_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "results": _result_ok,
    "trees": _tree_ok,
    "priors": lambda row: _json_object(row.get("prior_json")) is not None,
    "evidence": lambda row: _json_object(row.get("evidence_json")) is not None,
}
"""Content checks of the records that decode (a damaged page may read with garbled bytes)."""


def _error_name(error: sqlite3.Error) -> str:
    return getattr(error, "sqlite_errorname", None) or "SQLITE_ERROR"


# ------------------------------------------------------------------------- results.jsonl


def _result_lines(path: Path) -> tuple[dict[str, _Line], int]:
    """Each prompt's last result line in results.jsonl (by where it is), and the bad lines."""
    lines: dict[str, _Line] = {}
    bad = 0
    if not path.is_file():
        return lines, bad
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                data = _json_object(raw.decode("utf-8"))
            except UnicodeDecodeError:
                data = None
            prompt_id = data.get("id") if data is not None else None
            status = data.get("status") if data is not None else None
            if not isinstance(prompt_id, str) or status not in ("done", "failed"):
                bad += 1
                logger.warning("%s line %d: not a result line; skipped", path, number)
                continue
            lines.pop(prompt_id, None)  # a prompt run again (failed, then done): the last counts
            lines[prompt_id] = _Line(str(status), start, len(raw))
    return lines, bad


def _add_results(conn: sqlite3.Connection, path: Path, extra: dict[str, _Line]) -> None:
    """Store each result line of `extra` as a result, in the file's order, stamped now."""
    if not extra:
        return
    sql = (
        "INSERT OR REPLACE INTO results (prompt_id, status, result_json, finished_s, seq) "
        "VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM results))"
    )
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        with path.open("rb") as handle:
            for prompt_id, line in sorted(extra.items(), key=lambda item: item[1].offset):
                handle.seek(line.offset)
                text = handle.read(line.size).decode("utf-8").rstrip("\r\n")
                conn.execute(sql, (prompt_id, line.status, text, now))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _file_agrees(path: Path, store: StoreReader) -> bool:
    """Whether results.jsonl holds exactly the store's results, in order."""
    if not path.is_file():
        return next(store.iter_results(), None) is None
    with path.open("rb") as handle:
        lines = (line.rstrip(b"\r\n") for line in handle if line.strip())
        for _prompt_id, _status, result_json in store.iter_results():
            if next(lines, None) != result_json.encode("utf-8"):
                return False
        return next(lines, None) is None


# ------------------------------------------------------------------------------ the swap


def _apply(
    run_dir: Path, action: RepairAction, new_path: Path, extra: dict[str, _Line], stamp: str
) -> Path | None:
    """Make the change `action` names; returns where the old store went (if it was moved)."""
    store = run_dir / STORE_NAME
    if action == "results added":  # a healthy store: the lines it lacks go into it, in place
        with _connection(store) as conn:
            conn.execute("PRAGMA busy_timeout = 5000")
            _add_results(conn, run_dir / RESULTS_NAME, extra)
        return None
    if action != "store rebuilt":
        return None
    _fsync(new_path)
    aside = _free_name(run_dir, f"{STORE_NAME}.damaged-{stamp}")
    moved = False
    if store.exists():
        try:  # a second name first: the store stays in place until the new one replaces it
            os.link(store, aside)
        except OSError:
            shutil.copy2(store, aside)
        moved = True
    for suffix in ("-wal", "-shm"):
        side = run_dir / f"{STORE_NAME}{suffix}"
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
            moved = True
    os.replace(new_path, store)
    _fsync(run_dir)
    if moved:
        logger.info("repair %s: the old store is now %s", run_dir, aside)
    return aside if moved else None


def _free_name(folder: Path, name: str) -> Path:
    path, n = folder / name, 1
    while any(folder.glob(f"{path.name}*")):
        path, n = folder / f"{name}-{n}", n + 1
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
