"""Server state on disk: one ``<name>.json`` per managed server in the state directory.

`read_server` tells whether a model's server is down, up, starting or stale (its process gone)
without changing anything; `locked` serialises `up`/`down` across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from toa.local.paths import state_dir as default_state_dir
from toa.local.procs import fetch_model_ids, is_server_process, port_open
from toa.local.registry import ModelEntry

__all__ = [
    "HEALTH_TIMEOUT_S",
    "HOST",
    "SERVER_MODULE",
    "ServerInfo",
    "ServerState",
    "locked",
    "read_server",
    "state_file",
]

_log = logging.getLogger(__name__)

HOST = "127.0.0.1"
"""Servers listen on loopback only."""

SERVER_MODULE = "llama_cpp.server"
"""The module run with ``python -m`` to serve a model."""

ServerState = Literal["down", "up", "busy", "starting", "stale"]
"""'down': no state file; 'up': answers ``GET /v1/models``; 'busy': listens but does not answer
within `HEALTH_TIMEOUT_S` (llama-cpp-python answers nothing while it generates); 'starting': its
process runs but does not listen yet (loading the model); 'stale': a state file whose process is
gone (cleaned by `start_servers`/`stop_servers`). A user's own server (not managed by TOA) is
'up' when it answers, else 'down'."""

HEALTH_TIMEOUT_S = 1.0
"""Seconds a status check waits for ``GET /v1/models``."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A server that serves one model.

    Attributes:
        name: the model's name (also the model id requests must name).
        base_url: the API root, ``http://127.0.0.1:<port>/v1``.
        pid: the server's process id (None for a user's own server).
        port: its loopback TCP port (None for a user's own server).
        model_path: the GGUF file it serves (None for a user's own server).
        started_at: when it was started, in Unix seconds (None when unknown).
        log_path: its output log (None for a user's own server).
        n_threads: CPU threads it decodes with (None when unknown).
        n_ctx: its context window in tokens (None when unknown).
        logprobs: whether it serves log-probabilities (None when unknown).
        entry: the model table entry.
    """

    name: str
    base_url: str
    pid: int | None = None
    port: int | None = None
    model_path: Path | None = None
    started_at: float | None = None
    log_path: Path | None = None
    n_threads: int | None = None
    n_ctx: int | None = None
    logprobs: bool | None = None
    entry: ModelEntry | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The state-file form (no model entry)."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "pid": self.pid,
            "port": self.port,
            "model_path": str(self.model_path) if self.model_path else None,
            "started_at": self.started_at,
            "log_path": str(self.log_path) if self.log_path else None,
            "n_threads": self.n_threads,
            "n_ctx": self.n_ctx,
            "logprobs": self.logprobs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], entry: ModelEntry | None = None) -> ServerInfo:
        """Parse a state file written by `to_json`; ValueError/KeyError/TypeError if malformed."""
        model_path, log_path = data.get("model_path"), data.get("log_path")
        return cls(
            name=str(data["name"]),
            base_url=str(data["base_url"]),
            pid=int(data["pid"]),
            port=int(data["port"]),
            model_path=Path(model_path) if model_path else None,
            started_at=float(data["started_at"]) if data.get("started_at") else None,
            log_path=Path(log_path) if log_path else None,
            n_threads=int(data["n_threads"]) if data.get("n_threads") else None,
            n_ctx=int(data["n_ctx"]) if data.get("n_ctx") else None,
            logprobs=bool(data["logprobs"]) if data.get("logprobs") is not None else None,
            entry=entry,
        )


def state_file(sdir: Path, name: str) -> Path:
    """The state file of the server called `name` in state directory `sdir`."""
    return sdir / f"{name}.json"


def read_server(
    entry: ModelEntry, state: Path | str | None = None
) -> tuple[ServerState, ServerInfo | None]:
    """The state of `entry`'s server, and its info when a state file exists (changes nothing)."""
    if entry.base_url is not None:
        remote = ServerInfo(name=entry.name, base_url=entry.base_url, entry=entry)
        return ("up" if fetch_model_ids(entry.base_url) is not None else "down"), remote
    path = state_file(default_state_dir(state), entry.name)
    try:
        info = ServerInfo.from_json(json.loads(path.read_text(encoding="utf-8")), entry)
    except FileNotFoundError:
        return "down", None
    except (OSError, ValueError, KeyError, TypeError):
        _log.warning("unreadable server state file %s; treating it as stale", path)
        return "stale", None
    if (
        info.pid is None
        or info.port is None
        or not is_server_process(info.pid, SERVER_MODULE, info.port)
    ):
        return "stale", info
    ids = fetch_model_ids(info.base_url, timeout_s=HEALTH_TIMEOUT_S)
    if ids is not None and entry.name in ids:
        return "up", info
    return ("busy" if port_open(info.port, HOST) else "starting"), info


@contextlib.contextmanager
def locked(sdir: Path) -> Iterator[None]:
    """Serialise `up`/`down` across processes (an flock on ``<state dir>/.lock``)."""
    sdir.mkdir(parents=True, exist_ok=True)
    with (sdir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
