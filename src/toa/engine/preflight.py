"""What is checked before a run directory is touched: keys, the input, the directory itself.

A run that cannot start must leave nothing behind (no manifest, no empty store) and say in one
line what is wrong and what to do. `check_start` runs first in `toa.engine.runner.run`.
"""

from __future__ import annotations

import os
from pathlib import Path

from toa.agents.client import check_key
from toa.errors import ConfigError, InputError, StoreError
from toa.inputs.readers import SUPPORTED_SUFFIXES
from toa.settings import RunSettings
from toa.store.layout import MANIFEST_NAME, RESULTS_NAME, RUN_FILES, STORE_NAME

__all__ = ["check_serve_start", "check_start"]

_SHOWN = 5  # entries of a foreign directory named in its error


def check_start(
    settings: RunSettings, *, input_path: Path, run_dir: Path, force: bool = False
) -> None:
    """Raise before anything is created when the run cannot start as asked.

    Checks: every agent's `api_key_env` is set; the input is a readable file of a supported
    kind; `run_dir` is a directory or can be one (no file in the way), and is a run, or new,
    or empty (`force` allows a directory holding other files); a run's store has not gone
    missing while its results remain.

    Raises:
        ConfigError: a key variable is unset, or the output path cannot be a run directory.
        InputError: the input is missing, not a file, or of an unknown kind.
        StoreError: the run's store is gone (or empty) but its results.jsonl holds results.
    """
    _check_keys(settings)
    _check_input(input_path)
    _check_run_dir(run_dir, force=force)


def check_serve_start(settings: RunSettings, *, serve_dir: Path) -> None:
    """`check_start` for `toa serve` (no input file): the agents' key variables, and the
    directory is a run (or serve) directory, new or empty."""
    _check_keys(settings)
    _check_run_dir(serve_dir, force=False)


def _check_keys(settings: RunSettings) -> None:
    for spec in settings.agents:
        try:
            check_key(spec)  # the client's own check, made before the run directory exists
        except ConfigError as exc:
            raise ConfigError(f"{settings.source}: {exc} (nothing was created)") from None


def _check_input(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such input file; check the path (-i)")
    if not path.is_file():
        raise InputError(f"{path}: is not a file; give a prompts file (-i)")
    name = path.name.lower()
    if not name.endswith(SUPPORTED_SUFFIXES):
        raise InputError(f"{path}: unknown input kind; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot be read (permission denied)")


def _check_run_dir(run_dir: Path, *, force: bool) -> None:
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() and not parent.is_dir():
            where = "is" if parent == run_dir else f"is under {parent}, which is"
            raise ConfigError(
                f"{run_dir}: the output {where} a file, not a directory; choose another "
                "output directory (-o)"
            )
        if parent.exists():
            break
    if not run_dir.is_dir():
        return
    entries = sorted(p.name for p in run_dir.iterdir())
    if (run_dir / MANIFEST_NAME).is_file():
        _check_store_present(run_dir)
        return
    foreign = [name for name in entries if name not in RUN_FILES]
    if foreign and not force:
        shown = ", ".join(foreign[:_SHOWN]) + (", ..." if len(foreign) > _SHOWN else "")
        raise ConfigError(
            f"{run_dir}: is not a TOA run directory and is not empty (it holds {shown}); "
            "choose a new or empty directory (-o), or pass --force to write the run there"
        )


def _check_store_present(run_dir: Path) -> None:
    """A run whose store is gone must not start over silently: that pays for everything again."""
    store = run_dir / STORE_NAME
    results = run_dir / RESULTS_NAME
    if store.is_file() and store.stat().st_size > 0:
        return
    lines = _count_lines(results)
    if lines == 0:
        return  # nothing finished yet: an empty or missing store loses nothing
    state = "is empty (0 bytes)" if store.is_file() else "is missing"
    raise StoreError(
        f"{run_dir}: the run's store {store.name} {state}, but {results.name} holds {lines} "
        f"finished result(s); resuming would pay for every call again. `toa repair {run_dir}` "
        f"rebuilds the store from {results.name} (then `toa resume {run_dir}` skips those "
        "prompts); or restore the store from a backup"
    )


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
