"""What every writer of a run directory shares: its lock, and the rewrite of ``results.jsonl``.

`run_lock` is held by `toa run` / `toa resume` (`toa.engine.runner`) and by `toa repair`
(`toa.store.repair`), so two processes never write one run (they would pay twice for the same
calls). `rebuild_results` rewrites ``results.jsonl`` from the store, atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from toa.errors import RunLockedError, StoreError
from toa.store.layout import LOCK_NAME, RESULTS_NAME
from toa.store.run_store import StoreReader
from toa.store.writer import free_space

__all__ = ["rebuild_results", "run_lock"]


@contextlib.contextmanager
def run_lock(run_dir: Path, *, what: str = "") -> Iterator[None]:
    """Hold the run directory's exclusive lock (the directory is created when missing).

    Raises:
        RunLockedError: another process holds it; `what` is appended to the advice.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"{run_dir} is in use by another TOA process; wait for it to finish or stop it "
                "first (two processes writing one run would pay twice for the same calls)" + what
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rebuild_results(run_dir: Path, store: StoreReader) -> int:
    """Rewrite results.jsonl from the store (atomically), one line per result in the order they
    were written; returns the number of lines.

    Raises:
        StoreError: the store cannot be read (damaged) or the file cannot be written (disk full,
            permissions); the old file is left as it was, no temporary file is left behind, and
            the store still holds every result.
    """
    path = run_dir / RESULTS_NAME
    tmp = path.with_suffix(".jsonl.tmp")
    lines = 0
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for _prompt_id, _status, result_json in store.iter_results():
                out.write(result_json + "\n")
                lines += 1
        tmp.replace(path)
    except StoreError:  # the store cannot be read (damaged): leave no empty temporary file
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(
            f"{path}: cannot rewrite the results file ({exc.strerror or exc}; "
            f"{free_space(path)} free there): the store keeps every result, and "
            f"`toa resume {run_dir}` rewrites the file once there is room"
        ) from exc
    return lines
