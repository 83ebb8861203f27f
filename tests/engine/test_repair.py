"""`toa repair`: a run whose store is gone, empty or damaged gets a store back, and resumes.

One small real run (the fake server on loopback, a simulated reward) is made once; each test
damages a copy of it, repairs it (the library or the command line), checks the report against
what the undamaged store held, and resumes it: finished prompts send no call, the others finish,
and the run ends with exactly one result per prompt.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.engine.runner import rebuild_results
from toa.errors import ConfigError, RunLockedError, StoreError
from toa.store.repair import RepairReport, TableRepair, repair_run
from toa.store.run_store import StoreReader
from toa.testing import FakeServer, running_in_thread

N = 24  # prompts in the run
BUDGET = 3  # generations per prompt (one call each)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with running_in_thread() as fake:
        yield fake


def _toa(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def _text(result: Any) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def finished_run(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of N prompts (its store checkpointed: no WAL)."""
    base = tmp_path_factory.mktemp("base")
    config = base / "config.yaml"
    agents = "".join(
        f"  - name: {name}\n    base_url: {server.base_url}\n    model: {name}\n"
        for name in ("agent_a", "agent_b")
    )
    config.write_text(
        f"agents:\n{agents}reward:\n  type: simulated\n"
        f"strategy:\n  name: random\n  budget: {BUDGET}\nseed: 5\n",
        encoding="utf-8",
    )
    prompts = base / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"p{i:02d}", "prompt": f"Question {i}: why is the sky blue?"}) + "\n"
            for i in range(N)
        ),
        encoding="utf-8",
    )
    out = base / "run"
    done = _toa("run", "-c", config, "-i", prompts, "-o", out)
    assert done.exit_code == 0, done.output
    _checkpoint(out / "store.sqlite")
    return out


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run, for one test to damage."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


# ------------------------------------------------------------------------------------ helpers


def _checkpoint(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _counts(db: Path) -> dict[str, int]:
    tables = _query(
        db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {name: _query(db, f"SELECT COUNT(*) FROM {name}")[0][0] for (name,) in tables}


def _ids(run_dir: Path) -> list[str]:
    text = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["id"] for line in text.splitlines()]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _leaf_pages(db: Path, table: str) -> list[int]:
    try:
        rows = _query(
            db,
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,),
        )
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table")
    return [pageno for (pageno,) in rows]


def _page(db: Path, pageno: int) -> bytes:
    size = _query(db, "PRAGMA page_size")[0][0]
    with db.open("rb") as handle:
        handle.seek((pageno - 1) * size)
        return handle.read(size)


def _smash(db: Path, offset: int, size: int) -> None:
    """Overwrite `size` bytes at `offset` with garbage, as a bad disk sector would."""
    with db.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xa5" * size)


def _smash_page(db: Path, pageno: int) -> None:
    size = _query(db, "PRAGMA page_size")[0][0]
    _smash(db, (pageno - 1) * size, size)


def _results_on(db: Path, pageno: int) -> set[str]:
    """The prompts whose result record starts on page `pageno`."""
    page = _page(db, pageno)
    ids = (f"p{i:02d}" for i in range(N))
    return {p for p in ids if json.dumps({"id": p}, separators=(",", ":"))[:-1].encode() in page}


def _table(report: RepairReport, name: str) -> TableRepair:
    return next(t for t in report.tables if t.name == name)


def _drop_results(run_dir: Path, prompt_ids: set[str]) -> None:
    """Make prompts unfinished: their calls stay, their result (store and file) goes."""
    conn = sqlite3.connect(run_dir / "store.sqlite")
    try:
        for table in ("results", "trees", "evidence"):
            conn.executemany(f"DELETE FROM {table} WHERE prompt_id = ?", [(p,) for p in prompt_ids])
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    path = run_dir / "results.jsonl"
    kept = [
        line
        for line in path.read_text("utf-8").splitlines()
        if json.loads(line)["id"] not in prompt_ids
    ]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _resume(run_dir: Path, server: FakeServer) -> int:
    """Resume the run; returns the calls it sent. It must end with one result per prompt."""
    before = server.stats()["total"]
    done = _toa("resume", run_dir)
    assert done.exit_code == 0, done.output
    ids = _ids(run_dir)
    assert sorted(ids) == [f"p{i:02d}" for i in range(N)]  # one result per prompt
    assert not (run_dir / "results.jsonl.tmp").exists()
    return int(server.stats()["total"]) - int(before)


# -------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_lost_store_is_refused_then_rebuilt_from_results_and_resume_pays_only_the_rest(
    run_dir: Path, server: FakeServer, damage: str
) -> None:
    store = run_dir / "store.sqlite"
    unfinished = {"p03", "p17"}
    _drop_results(run_dir, unfinished)  # two prompts had not finished when the store was lost
    results = (run_dir / "results.jsonl").read_bytes()
    store.unlink()
    if damage == "emptied":
        store.write_bytes(b"")
    refused = _toa("resume", run_dir)
    assert refused.exit_code == 2
    message = _text(refused)
    assert f"holds {N - 2} finished result(s)" in message
    assert f"`toa repair {run_dir}` rebuilds the store from results.jsonl" in message

    report = repair_run(run_dir)
    assert report.state == ("missing" if damage == "deleted" else "empty")
    assert report.action == "store rebuilt"
    assert report.changed
    assert (report.results_from_store, report.results_from_file) == (0, N - 2)
    assert report.results_lines == N - 2
    assert report.lost_prompts == ()
    assert report.next_command == f"toa resume {run_dir}"
    if damage == "deleted":
        assert report.damaged_copy is None
    else:
        assert report.damaged_copy is not None
        assert report.damaged_copy.read_bytes() == b""
    # Every line back, unchanged and in order, and the runner rebuilds the very same file.
    assert (run_dir / "results.jsonl").read_bytes() == results
    with StoreReader(store) as reader:
        rebuild_results(run_dir, reader)
    assert (run_dir / "results.jsonl").read_bytes() == results
    assert _query(store, "PRAGMA integrity_check") == [("ok",)]

    sent = _resume(run_dir, server)
    assert sent == len(unfinished) * BUDGET  # finished prompts: no call at all


def test_damaged_pages_are_recovered_with_the_results_file_and_resume_finishes(
    run_dir: Path, server: FakeServer
) -> None:
    store = run_dir / "store.sqlite"
    before = _counts(store)
    size = store.stat().st_size
    page = 4096
    _smash(store, (size // page // 2) * page, 2 * page)  # two pages in the middle of the file
    damaged = store.read_bytes()
    status = _toa("status", run_dir)
    assert status.exit_code == 2
    assert (
        f"`toa repair {run_dir}` recovers what can be read (results.jsonl holds {N} results)"
        in (_text(status))
    )

    report = repair_run(run_dir)
    assert report.state == "damaged"
    assert report.problem
    assert report.action == "store rebuilt"
    assert report.results_from_store + report.results_from_file == N
    assert report.results_lines == N
    assert report.lost_prompts == ()
    for table in report.tables:  # each key index read whole here: the counts are exact
        if table.exact:
            assert table.recovered + table.unreadable == before[table.name], table
    assert report.damaged_copy is not None
    assert report.damaged_copy.read_bytes() == damaged  # the old store, untouched
    assert _query(store, "PRAGMA integrity_check") == [("ok",)]
    assert sorted(_ids(run_dir)) == [f"p{i:02d}" for i in range(N)]
    assert _toa("status", run_dir).exit_code == 0

    assert _resume(run_dir, server) == 0  # every prompt is finished: nothing is sent


def test_lost_calls_are_counted_exactly_and_only_they_are_paid_again(
    run_dir: Path, server: FakeServer
) -> None:
    store = run_dir / "store.sqlite"
    leaves = _leaf_pages(store, "calls")
    target = leaves[len(leaves) // 2]
    on_page = {
        (prompt_id, node_id)
        for prompt_id, node_id, request_hash in _query(
            store, "SELECT prompt_id, node_id, request_hash FROM calls"
        )
        if request_hash.encode() in _page(store, target)
    }
    assert on_page
    hit = sorted({p for p, _ in on_page})
    spared = sorted({f"p{i:02d}" for i in range(N)} - set(hit))
    unfinished = {hit[0], spared[0], spared[-1]}  # one unfinished prompt lost calls, two did not
    page_bytes = _page(store, target)
    _drop_results(run_dir, unfinished)
    assert _page(store, target) == page_bytes  # the calls' page is where it was
    calls = _query(store, "SELECT COUNT(*) FROM calls")[0][0]
    _smash_page(store, target)

    report = repair_run(run_dir)
    assert report.state == "damaged"
    assert _table(report, "calls") == TableRepair("calls", calls - len(on_page), len(on_page))
    assert report.lost_prompts == (hit[0],)
    assert (report.results_from_store, report.results_from_file) == (N - 3, 0)
    assert _query(store, "SELECT COUNT(*) FROM calls")[0][0] == calls - len(on_page)

    lost_calls = sum(1 for p, _ in on_page if p == hit[0])
    assert _resume(run_dir, server) == lost_calls  # the other calls are replayed from the store


def test_committed_wal_frames_are_part_of_what_is_recovered(run_dir: Path) -> None:
    store = run_dir / "store.sqlite"
    writer = sqlite3.connect(store, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("INSERT INTO meta (key, value) VALUES ('in_the_wal', 'yes')")
        assert (run_dir / "store.sqlite-wal").stat().st_size > 0
        frozen = run_dir.parent / "frozen"  # the files as a killed process leaves them
        shutil.copytree(run_dir, frozen)
    finally:
        writer.close()
    leaves = _leaf_pages(frozen / "store.sqlite", "calls")
    _smash_page(frozen / "store.sqlite", leaves[0])
    wal = (frozen / "store.sqlite-wal").read_bytes()

    report = repair_run(frozen)
    assert report.state == "damaged"
    assert _query(frozen / "store.sqlite", "SELECT value FROM meta WHERE key = 'in_the_wal'") == [
        ("yes",)
    ]
    assert report.damaged_copy is not None
    assert report.damaged_copy.with_name(report.damaged_copy.name + "-wal").read_bytes() == wal


def test_a_file_that_is_not_a_database_is_rebuilt_from_the_results_file(run_dir: Path) -> None:
    store = run_dir / "store.sqlite"
    results = (run_dir / "results.jsonl").read_bytes()
    _smash(store, 0, 100)  # the header
    report = repair_run(run_dir)
    assert report.state == "not a database"
    assert (report.results_from_store, report.results_from_file) == (0, N)
    assert all(not t.exact and t.recovered == 0 for t in report.tables)
    assert (run_dir / "results.jsonl").read_bytes() == results


def test_a_healthy_store_is_left_alone_and_a_stale_temporary_file_goes(run_dir: Path) -> None:
    before = _snapshot(run_dir)
    report = repair_run(run_dir)
    assert (report.state, report.action, report.changed) == ("ok", "none", False)
    assert report.problem == ""
    assert report.rows_unreadable == 0
    assert report.damaged_copy is None
    assert _snapshot(run_dir) == before
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(before)

    (run_dir / "results.jsonl.tmp").write_bytes(b"")
    report = repair_run(run_dir)
    assert (report.action, report.stale_tmp, report.changed) == ("none", True, True)
    assert not (run_dir / "results.jsonl.tmp").exists()
    assert _snapshot(run_dir) == before


def test_a_healthy_store_gets_the_results_it_lacks_and_the_file_it_should_have(
    run_dir: Path,
) -> None:
    store = run_dir / "store.sqlite"
    results = (run_dir / "results.jsonl").read_bytes()
    conn = sqlite3.connect(store)  # a store restored from a backup made before p05 finished
    conn.execute("DELETE FROM results WHERE prompt_id = 'p05'")
    conn.commit()
    conn.close()
    report = repair_run(run_dir)
    assert (report.state, report.action, report.results_from_file) == ("ok", "results added", 1)
    assert report.damaged_copy is None
    assert _query(store, "SELECT COUNT(*) FROM results")[0][0] == N
    assert sorted(_ids(run_dir)) == [f"p{i:02d}" for i in range(N)]

    (run_dir / "results.jsonl").write_bytes(results[: len(results) // 2])  # a torn file
    report = repair_run(run_dir)
    assert (report.action, report.bad_result_lines) == ("results rewritten", 1)
    assert sorted(_ids(run_dir)) == [f"p{i:02d}" for i in range(N)]


def test_a_dry_run_reports_and_changes_nothing(run_dir: Path) -> None:
    store = run_dir / "store.sqlite"
    target = _leaf_pages(store, "results")[1]
    hit = _results_on(store, target)
    assert hit
    _smash_page(store, target)
    (run_dir / "results.jsonl.tmp").write_bytes(b"")
    before = _snapshot(run_dir)
    report = repair_run(run_dir, dry_run=True)
    assert report.dry_run
    assert not report.changed
    assert (report.state, report.action) == ("damaged", "store rebuilt")
    assert (report.results_from_store, report.results_from_file) == (N - len(hit), len(hit))
    assert report.lost_prompts == ()
    assert report.results_lines == N
    assert report.damaged_copy is None
    assert report.stale_tmp
    assert _snapshot(run_dir) == before
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(before)


def test_the_runner_leaves_no_temporary_file_when_the_store_cannot_be_read(run_dir: Path) -> None:
    store = run_dir / "store.sqlite"
    for pageno in _leaf_pages(store, "results"):
        _smash_page(store, pageno)
    results = (run_dir / "results.jsonl").read_bytes()
    with StoreReader(store) as reader, pytest.raises(StoreError, match="toa repair"):
        rebuild_results(run_dir, reader)
    assert not (run_dir / "results.jsonl.tmp").exists()
    assert (run_dir / "results.jsonl").read_bytes() == results


def test_repair_refuses_what_is_not_a_run_and_a_run_in_use(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a TOA run directory"):
        repair_run(tmp_path / "nowhere")
    with (run_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            with pytest.raises(RunLockedError, match="in use by another TOA process"):
                repair_run(run_dir)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    conn = sqlite3.connect(run_dir / "store.sqlite")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    before = _snapshot(run_dir)
    with pytest.raises(StoreError, match="schema version 99, this TOA repairs version 1"):
        repair_run(run_dir)
    assert _snapshot(run_dir) == before


def test_the_command_prints_the_report_and_sets_the_exit_code(
    run_dir: Path, tmp_path: Path
) -> None:
    store = run_dir / "store.sqlite"
    target = _leaf_pages(store, "results")[0]
    hit = len(_results_on(store, target))
    assert hit
    _smash_page(store, target)
    dry = _toa("repair", run_dir, "--dry-run")
    assert dry.exit_code == 0, dry.output
    text = _text(dry)
    assert "dry run: nothing changed" in text
    assert "would be rebuilt" in text
    assert f"{N - hit} from the store, {hit} from results.jsonl only" in text

    done = _toa("repair", run_dir)
    assert done.exit_code == 0, done.output
    text = _text(done)
    assert "store │ damaged" in text
    assert f"results │ {N - hit} rows recovered, {hit} unreadable" in text
    assert "was rebuilt" in text
    assert "store.sqlite.damaged-" in text
    assert f"next: toa resume {run_dir}" in text

    again = _toa("repair", run_dir)
    assert again.exit_code == 0
    assert "nothing: the store is healthy" in _text(again)

    refused = _toa("repair", tmp_path / "nowhere")
    assert refused.exit_code == 2
    assert _text(refused).startswith("error: ")
    assert "not a TOA run directory" in _text(refused)
    assert "Traceback" not in refused.output
    assert os.listdir(tmp_path / "run")  # the run is still there
