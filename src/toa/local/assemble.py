"""Model weights from installed packages: locate, assemble, verify. Packages are data, not code.

Files are found through ``importlib.metadata`` (the distribution's RECORD), never by importing the
package. Parts are concatenated in order into the cache directory, streaming (1 MiB at a time) into
a temporary file that is renamed into place only once its sha256 matches the table. A small JSON
marker (``<name>.verified.json``: path, size, mtime, sha256) records each successful check, so a
start-up does not re-hash hundreds of MB; a file whose size or mtime changed is hashed again.
A single-part model is served straight from its package file (verified the same way, not copied).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from toa.errors import (
    ConfigError,
    LocalModelError,
    ModelHashMismatchError,
    ModelPackageMissingError,
)
from toa.local.paths import cache_dir as default_cache_dir
from toa.local.registry import ModelEntry, ModelRefs, PackagePart, resolve_models

__all__ = [
    "CHUNK_BYTES",
    "PackageLocator",
    "assemble",
    "ensure_model",
    "ensure_models",
    "file_sha256",
    "is_marked_verified",
    "locate_parts",
    "marker_path",
    "target_path",
]

_log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Bytes read and written per step while copying or hashing (1 MiB)."""

_INSTALL_HINT = "run `make demo` (or `make install-local`), or: {pip}"


class PackageLocator:
    """Finds files of installed distributions through their metadata; never imports them.

    Args:
        search_path: directories to search (like ``sys.path`` entries); None searches sys.path.
    """

    def __init__(self, search_path: Sequence[str | Path] | None = None) -> None:
        self._path = None if search_path is None else [str(p) for p in search_path]

    def distribution(self, name: str) -> metadata.Distribution | None:
        """The installed distribution called `name`, or None."""
        if self._path is None:
            try:
                return metadata.distribution(name)
            except metadata.PackageNotFoundError:
                return None
        return next(iter(metadata.distributions(name=name, path=self._path)), None)

    def locate(self, part: PackagePart) -> Path | None:
        """The file of `part` on disk; None when its package or the file is missing."""
        dist = self.distribution(part.package)
        if dist is None:
            return None
        if dist.version != part.version:
            _log.warning(
                "%s is version %s, the model table expects %s; the sha256 check decides",
                part.package,
                dist.version,
                part.version,
            )
        for file in dist.files or ():
            if file.as_posix() == part.path:
                found = Path(str(dist.locate_file(file)))
                return found if found.is_file() else None
        return None


def locate_parts(entry: ModelEntry, locator: PackageLocator | None = None) -> list[Path]:
    """The part files of a bundled model, in order.

    Raises ModelPackageMissingError naming every missing package and the install command.
    """
    finder = locator or PackageLocator()
    found = [(part, finder.locate(part)) for part in entry.parts]
    missing = [part.requirement for part, path in found if path is None]
    if missing:
        raise ModelPackageMissingError(
            f"model {entry.name!r} needs packages that are not installed (or lack their data "
            f"file): {', '.join(missing)}; " + _INSTALL_HINT.format(pip=entry.pip_command)
        )
    return [path for _, path in found if path is not None]


def target_path(entry: ModelEntry, cache: Path, locator: PackageLocator | None = None) -> Path:
    """Where the model's GGUF is (or will be): a user file, a single package file, or the cache."""
    if entry.path is not None:
        return entry.path
    if len(entry.parts) == 1:
        return locate_parts(entry, locator)[0]
    return cache / entry.filename


def marker_path(entry: ModelEntry, cache: Path) -> Path:
    """The verified-marker file of a model in `cache`."""
    return cache / f"{entry.name}.verified.json"


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file, read in `CHUNK_BYTES` steps."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path, sha256: str) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def is_marked_verified(entry: ModelEntry, path: Path, cache: Path) -> bool:
    """True when the marker says `path` was verified and its size and mtime did not change since."""
    if entry.sha256 is None or not path.is_file():
        return False
    try:
        recorded = json.loads(marker_path(entry, cache).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == _stat_key(path, entry.sha256))


def _write_marker(entry: ModelEntry, path: Path, cache: Path) -> None:
    assert entry.sha256 is not None
    cache.mkdir(parents=True, exist_ok=True)
    marker = marker_path(entry, cache)
    tmp = marker.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_stat_key(path, entry.sha256)), encoding="utf-8")
    os.replace(tmp, marker)


def _mismatch(entry: ModelEntry, actual: str, what: str) -> ModelHashMismatchError:
    reinstall = entry.pip_command.replace("--no-deps", "--no-deps --force-reinstall")
    fix = (
        f"reinstall the packages: {reinstall}"
        if entry.parts
        else "check that the file is the one you meant, or correct the sha256 you gave"
    )
    return ModelHashMismatchError(
        f"model {entry.name!r}: {what} has sha256 {actual}, expected {entry.sha256}; "
        f"refusing to use it. Source: {entry.source}. To fix: {fix}",
        expected=entry.sha256 or "",
        actual=actual,
    )


def _check_sizes(entry: ModelEntry, paths: Sequence[Path]) -> None:
    for part, path in zip(entry.parts, paths, strict=True):
        size = path.stat().st_size
        if size != part.size:
            raise _mismatch(
                entry,
                f"(not computed: {part.path} is {size} bytes, expected {part.size})",
                f"package {part.requirement}",
            )


def _copy_hashing(paths: Sequence[Path], out: BinaryIO) -> str:
    """Append the files to `out` in `CHUNK_BYTES` steps; returns the sha256 (hex) of all bytes."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    with memoryview(buffer) as view:
        for path in paths:
            with path.open("rb") as source:
                while n := source.readinto(buffer):
                    out.write(view[:n])
                    digest.update(view[:n])
    return digest.hexdigest()


def _remove_abandoned(cache: Path, entry: ModelEntry, idle_s: float = 600.0) -> None:
    """Delete temporary files of assemblies that were killed (untouched for `idle_s` seconds)."""
    now = time.time()
    for tmp in cache.glob(f".{entry.filename}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > idle_s:
                tmp.unlink()
                _log.info("removed abandoned temporary file %s", tmp)


def assemble(entry: ModelEntry, cache: Path, locator: PackageLocator | None = None) -> Path:
    """Concatenate a bundled model's parts into ``cache/<name>.gguf``, checking the sha256.

    Streams through a temporary file in `cache`, renamed into place only when the hash matches.
    Raises ModelPackageMissingError, ModelHashMismatchError, or LocalModelError (disk space).
    """
    paths = locate_parts(entry, locator)
    _check_sizes(entry, paths)
    cache.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(cache, entry)
    size = entry.size or 0
    free = shutil.disk_usage(cache).free
    if free < size:
        raise LocalModelError(
            f"model {entry.name!r} needs {size / 1e6:.0f} MB in {cache}, only {free / 1e6:.0f} MB "
            "free; free some space or set TOA_CACHE_DIR to another disk"
        )
    final = cache / entry.filename
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=f".{entry.filename}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _copy_hashing(paths, out)
            out.flush()
            os.fsync(out.fileno())
        if actual != entry.sha256:
            raise _mismatch(
                entry, actual, "the file assembled from " + ", ".join(entry.requirements)
            )
        tmp.chmod(0o644)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _write_marker(entry, final, cache)
    _log.info("assembled %s (%d bytes) into %s", entry.name, size, final)
    return final


def _verify_existing(entry: ModelEntry, path: Path, cache: Path) -> bool:
    """Hash an existing file; True (and a marker written) when it matches."""
    actual = file_sha256(path)
    if actual == entry.sha256:
        _write_marker(entry, path, cache)
        return True
    if entry.parts and path.parent == cache:
        _log.warning("cached %s does not match its sha256; assembling it again", path)
        path.unlink()
        return False
    raise _mismatch(entry, actual, str(path))


def ensure_model(
    entry: ModelEntry, cache: Path | str | None = None, locator: PackageLocator | None = None
) -> Path:
    """The verified GGUF file of a model, assembling it first when needed.

    User files without a sha256 are used as they are (a warning is logged). Raises ConfigError for
    a server-only entry or a user file that does not exist, and the errors of `assemble`.
    """
    if entry.kind == "server":
        raise ConfigError(f"model {entry.name!r} is a server ({entry.base_url}), not a file")
    where = default_cache_dir(cache)
    path = target_path(entry, where, locator)
    if entry.kind == "file" and not path.is_file():
        raise ConfigError(f"model {entry.name!r}: GGUF file {path} does not exist")
    if entry.sha256 is None:
        _log.warning("model %r has no sha256 to check; using %s unverified", entry.name, path)
        return path
    if is_marked_verified(entry, path, where):
        return path
    if len(entry.parts) == 1:
        _check_sizes(entry, [path])
    if path.is_file() and _verify_existing(entry, path, where):
        return path
    return assemble(entry, where, locator)


def ensure_models(
    models: ModelRefs = None,
    cache: Path | str | None = None,
    locator: PackageLocator | None = None,
) -> dict[str, Path]:
    """Verified GGUF paths by name (None: `DEFAULT_MODELS`); user servers are skipped."""
    entries = resolve_models(models)
    return {e.name: ensure_model(e, cache, locator) for e in entries if e.kind != "server"}
