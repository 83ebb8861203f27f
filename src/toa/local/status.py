"""What `toa models list` shows: per model, its source, size, hash state and server state.

Nothing here changes files or starts processes. Hashing happens only for a file that was never
verified or changed since (``verify=True``); a verified marker makes the check instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toa.errors import ModelPackageMissingError
from toa.local.assemble import (
    PackageLocator,
    file_sha256,
    is_marked_verified,
    locate_parts,
    target_path,
)
from toa.local.paths import cache_dir as default_cache_dir
from toa.local.registry import BUNDLED_MODELS, ModelEntry, ModelRefs, resolve_models
from toa.local.state import ServerState, read_server

__all__ = ["HashState", "ModelStatus", "hash_state", "model_status"]

HashState = Literal[
    "missing-package", "not-assembled", "verified", "unverified", "mismatch",
    "missing-file", "unchecked", "remote",
]  # fmt: skip
"""'missing-package': a weight package is not installed; 'not-assembled': packages present, no
GGUF in the cache yet; 'verified': sha256 checked (marker still valid); 'unverified': present but
not checked since it last changed (``verify=False``); 'mismatch': wrong size or sha256;
'missing-file': a user's GGUF path does not exist; 'unchecked': a user's file with no sha256 to
check; 'remote': a user's own server (nothing on disk)."""


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """One row of `toa models list`.

    Attributes:
        name: the model's name.
        family: its family (SmolLM2, Qwen2.5, Gemma 3, user).
        description: the model and its quantisation.
        mode: 'chat' or 'completion'.
        source: provenance: which packages, who uploaded them, upstream weights.
        license: the weights' licence, when known.
        packages: pip requirements of the weight packages (empty for user models).
        size_bytes: the GGUF's size in bytes (None when unknown).
        optional: True when `make demo` does not install it.
        hash_state: see `HashState`.
        path: the GGUF file (or where it will be assembled); None for a server.
        server_state: see `toa.local.servers.ServerState`.
        port: the server's loopback port when one is recorded.
        pid: the server's process id when one is recorded.
        base_url: the server's API root when one is recorded.
        log_path: the server's log when one is recorded.
        logprobs: whether the recorded server serves log-probabilities (None when unknown).
    """

    name: str
    family: str
    description: str
    mode: str
    source: str
    license: str
    packages: tuple[str, ...]
    size_bytes: int | None
    optional: bool
    hash_state: HashState
    path: Path | None
    server_state: ServerState
    port: int | None = None
    pid: int | None = None
    base_url: str | None = None
    log_path: Path | None = None
    logprobs: bool | None = None


def _parts_state(entry: ModelEntry, locator: PackageLocator | None) -> HashState | None:
    try:
        paths = locate_parts(entry, locator)
    except ModelPackageMissingError:
        return "missing-package"
    sizes_ok = all(
        p.stat().st_size == part.size for p, part in zip(paths, entry.parts, strict=True)
    )
    return None if sizes_ok else "mismatch"


def hash_state(
    entry: ModelEntry,
    cache: Path | str | None = None,
    *,
    verify: bool = True,
    locator: PackageLocator | None = None,
) -> tuple[HashState, Path | None]:
    """The model's hash state and its GGUF path (None for a server); hashes only when needed."""
    if entry.kind == "server":
        return "remote", None
    if entry.parts and (early := _parts_state(entry, locator)) is not None:
        return early, (default_cache_dir(cache) / entry.filename if len(entry.parts) > 1 else None)
    where = default_cache_dir(cache)
    path = target_path(entry, where, locator)
    if not path.is_file():
        return ("not-assembled" if entry.parts else "missing-file"), path
    if entry.sha256 is None:
        return "unchecked", path
    if is_marked_verified(entry, path, where):
        return "verified", path
    if not verify:
        return "unverified", path
    return ("verified" if file_sha256(path) == entry.sha256 else "mismatch"), path


def model_status(
    models: ModelRefs = None,
    *,
    cache_dir: Path | str | None = None,
    state_dir: Path | str | None = None,
    verify: bool = True,
    locator: PackageLocator | None = None,
) -> list[ModelStatus]:
    """Status rows, one per model (None: every bundled model, the optional judge included)."""
    entries = tuple(BUNDLED_MODELS.values()) if models is None else resolve_models(models)
    rows: list[ModelStatus] = []
    for entry in entries:
        hstate, path = hash_state(entry, cache_dir, verify=verify, locator=locator)
        sstate, info = read_server(entry, state_dir)
        rows.append(
            ModelStatus(
                name=entry.name,
                family=entry.family,
                description=entry.description,
                mode=entry.mode,
                source=entry.source,
                license=entry.license,
                packages=entry.requirements,
                size_bytes=entry.size,
                optional=entry.optional,
                hash_state=hstate,
                path=path,
                server_state=sstate,
                port=info.port if info else None,
                pid=info.pid if info else None,
                base_url=info.base_url if info else None,
                log_path=info.log_path if info else None,
                logprobs=info.logprobs if info else None,
            )
        )
    return rows
