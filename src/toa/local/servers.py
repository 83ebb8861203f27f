"""One llama.cpp OpenAI-compatible server per local model, on its own loopback port.

`start_servers` assembles and verifies the weights, launches ``python -m llama_cpp.server`` for
each model that has no healthy server yet (detached, in its own session), and waits until each
answers ``GET /v1/models``. State lives in the state directory (see `toa.local.paths`):
``<name>.json`` (pid, port, model path, start time, threads, context, logprobs) and
``<name>.log`` (the command line, then the server's output; rewritten at each start).
`stop_servers` sends SIGTERM, then SIGKILL after a bound.

The functions are synchronous (they wait for processes); from async code call them through
``asyncio.to_thread``. llama_cpp itself is never imported here: it only runs as a subprocess.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as metadata
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from toa.errors import LocalModelError, ServerStartError
from toa.local.assemble import PackageLocator, ensure_model
from toa.local.paths import state_dir as default_state_dir
from toa.local.procs import (
    fetch_model_ids,
    is_server_process,
    launch_detached,
    log_tail,
    pick_free_port,
    pid_alive,
    terminate,
)
from toa.local.registry import ModelEntry, ModelRefs, resolve_models
from toa.local.state import HOST, SERVER_MODULE, ServerInfo, locked, read_server, state_file

__all__ = [
    "default_threads",
    "server_command",
    "start_servers",
    "stop_servers",
]

_log = logging.getLogger(__name__)


def default_threads(n_servers: int) -> int:
    """Decode threads per server: the usable cores shared out, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, n_servers))


def server_command(
    entry: ModelEntry, model_path: Path, port: int, n_threads: int, n_ctx: int, logprobs: bool
) -> list[str]:
    """The command line of one llama.cpp server (chat models use their GGUF's chat template).

    `logprobs` sets ``--logits_all`` (see `ModelEntry.logprobs`).
    """
    return [
        sys.executable, "-m", SERVER_MODULE,
        "--model", str(model_path),
        "--model_alias", entry.name,
        "--host", HOST,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads),
        "--n_threads_batch", str(n_threads),
        "--logits_all", str(logprobs),
    ]  # fmt: skip


def _require_llama_cpp() -> None:
    try:
        metadata.distribution("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise LocalModelError(
            "llama-cpp-python is not installed, so local models cannot be served; run "
            "`make install-local` (it builds llama-cpp-python[server]==0.3.36 with "
            "CMAKE_ARGS=-DGGML_NATIVE=OFF, about 5-7 minutes on 2 cores)"
        ) from None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one server should run: the model, its file and the llama.cpp settings."""

    entry: ModelEntry
    model_path: Path
    n_threads: int
    n_ctx: int
    logprobs: bool

    def matches(self, info: ServerInfo) -> bool:
        """True when a running server serves the same file with the same context and logits."""
        return (info.model_path, info.n_ctx, info.logprobs) == (
            self.model_path,
            self.n_ctx,
            self.logprobs,
        )


def _launch(plan: _Plan, sdir: Path) -> ServerInfo:
    entry, port = plan.entry, pick_free_port(HOST)
    command = server_command(
        entry, plan.model_path, port, plan.n_threads, plan.n_ctx, plan.logprobs
    )
    log_path = sdir / f"{entry.name}.log"
    log_path.write_text(f"# toa: {' '.join(command)}\n", encoding="utf-8")
    pid = launch_detached(command, log_path)
    info = ServerInfo(
        name=entry.name,
        base_url=f"http://{HOST}:{port}/v1",
        pid=pid,
        port=port,
        model_path=plan.model_path,
        started_at=time.time(),
        log_path=log_path,
        n_threads=plan.n_threads,
        n_ctx=plan.n_ctx,
        logprobs=plan.logprobs,
        entry=entry,
    )
    tmp = state_file(sdir, f".{entry.name}")
    tmp.write_text(json.dumps(info.to_json(), indent=1), encoding="utf-8")
    os.replace(tmp, state_file(sdir, entry.name))
    _log.info("started %s: pid %d on port %d, log %s", entry.name, pid, port, log_path)
    return info


def _failure(info: ServerInfo, why: str) -> ServerStartError:
    tail = log_tail(info.log_path) if info.log_path else ""
    return ServerStartError(
        f"the server of {info.name!r} {why}; see its log {info.log_path}"
        + (f"; last lines:\n{tail}" if tail else "")
    )


def _wait_ready(pending: list[ServerInfo], timeout_s: float) -> list[tuple[ServerInfo, str]]:
    """Poll until every server answers; returns (server, reason) for those that failed."""
    deadline = time.monotonic() + timeout_s
    failed: list[tuple[ServerInfo, str]] = []
    while pending:
        for info in list(pending):
            assert info.pid is not None
            if not pid_alive(info.pid):
                failed.append((info, "exited during start-up"))
                pending.remove(info)
            elif info.name in (fetch_model_ids(info.base_url, timeout_s=1.0) or ()):
                pending.remove(info)
        if pending and time.monotonic() > deadline:
            failed += [(info, f"did not answer within {timeout_s:g} s") for info in pending]
            break
        if pending:
            time.sleep(0.2)
    return failed


def _reuse_or_clean(plan: _Plan, sdir: Path, wait_s: float) -> ServerInfo | None:
    """A running server of this model to reuse; stale, hung or mismatched ones are cleaned away.

    A busy server (listening, generating for someone) is reused as it is; one that does not
    listen yet (loading) gets `wait_s` seconds before it is replaced.
    """
    entry = plan.entry
    state, info = read_server(entry, sdir)
    if info is not None and plan.matches(info):
        if state == "starting" and not _wait_ready([info], wait_s):
            state = "up"
        if state in ("up", "busy"):
            _log.info("reusing %s on port %s (pid %s, %s)", entry.name, info.port, info.pid, state)
            return info
    if state == "stale":
        _log.info("removing stale server state of %s", entry.name)
    elif info is not None:
        _log.info("replacing %s server (pid %s, state %s)", entry.name, info.pid, state)
        _stop_one(info, sdir)
    with contextlib.suppress(FileNotFoundError):
        state_file(sdir, entry.name).unlink()
    return None


def _port_taken(info: ServerInfo) -> bool:
    tail = log_tail(info.log_path).lower() if info.log_path else ""
    return "address already in use" in tail or "errno 98" in tail


def _launch_all(todo: list[_Plan], sdir: Path, timeout_s: float) -> dict[str, ServerInfo]:
    """Launch servers, wait until all answer; a lost port race is retried on a new port (3x)."""
    started: dict[str, ServerInfo] = {}
    for _attempt in range(3):
        launched = [_launch(plan, sdir) for plan in todo]
        failed = _wait_ready(list(launched), timeout_s)
        bad = {info.name for info, _ in failed}
        started |= {info.name: info for info in launched if info.name not in bad}
        for info, _ in failed:
            _stop_one(info, sdir)
        retry = {
            info.name for info, why in failed if why.startswith("exited") and _port_taken(info)
        }
        if len(retry) < len(failed):
            info, why = next((i, w) for i, w in failed if i.name not in retry)
            raise _failure(info, why)
        todo = [plan for plan in todo if plan.entry.name in retry]
        if not todo:
            return started
        _log.warning("port taken for %s; retrying on another port", sorted(retry))
    raise ServerStartError(f"could not find a free port for {[p.entry.name for p in todo]}")


def start_servers(
    models: ModelRefs = None,
    *,
    cache_dir: Path | str | None = None,
    state_dir: Path | str | None = None,
    n_threads: int | None = None,
    n_ctx: int = 2048,
    logprobs: bool | None = None,
    ready_timeout_s: float = 120.0,
    locator: PackageLocator | None = None,
) -> dict[str, ServerInfo]:
    """Make sure each model has a healthy server; returns them by name (idempotent).

    Args:
        models: bundled names and/or `ModelEntry` objects (None: `DEFAULT_MODELS`).
        cache_dir: where assembled weights go (default: `toa.local.paths.cache_dir`).
        state_dir: where state and log files go (default: `toa.local.paths.state_dir`).
        n_threads: decode threads per server (default: `default_threads` of the models started).
        n_ctx: context window in tokens (prompt plus completion).
        logprobs: serve log-probabilities (None: each entry's `ModelEntry.logprobs`).
        ready_timeout_s: how long to wait for new servers to answer, in seconds.
        locator: how packages are found (tests inject one).

    Raises ModelPackageMissingError / ModelHashMismatchError (weights), LocalModelError (no
    llama-cpp-python) and ServerStartError (a server exited or did not answer; names its log).
    """
    entries = resolve_models(models)
    sdir = default_state_dir(state_dir)
    result: dict[str, ServerInfo] = {}
    managed = [e for e in entries if e.base_url is None]
    paths = {e.name: ensure_model(e, cache_dir, locator) for e in managed}
    for entry in entries:
        if entry.base_url is not None:
            result[entry.name] = _check_remote(entry)
    if managed:
        _require_llama_cpp()
    threads = n_threads or default_threads(len(managed))
    plans = [
        _Plan(e, paths[e.name], threads, n_ctx, e.logprobs if logprobs is None else logprobs)
        for e in managed
    ]
    with locked(sdir):
        todo: list[_Plan] = []
        for plan in plans:
            reused = _reuse_or_clean(plan, sdir, ready_timeout_s)
            if reused is None:
                todo.append(plan)
            else:
                result[plan.entry.name] = reused
        if todo:
            result |= _launch_all(todo, sdir, ready_timeout_s)
    return {e.name: result[e.name] for e in entries}


def _check_remote(entry: ModelEntry) -> ServerInfo:
    state, info = read_server(entry)
    assert info is not None
    if state != "up":
        raise ServerStartError(
            f"model {entry.name!r}: no OpenAI-compatible server answers at {entry.base_url}/models"
        )
    return info


def _stop_one(info: ServerInfo, sdir: Path) -> None:
    pid, port = info.pid, info.port
    if pid is not None and port is not None and is_server_process(pid, SERVER_MODULE, port):
        if not terminate(pid):
            raise LocalModelError(f"could not stop the server of {info.name!r} (pid {info.pid})")
        _log.info("stopped %s (pid %d)", info.name, pid)
    with contextlib.suppress(FileNotFoundError):
        state_file(sdir, info.name).unlink()


def stop_servers(models: ModelRefs = None, *, state_dir: Path | str | None = None) -> list[str]:
    """Stop servers (None: every server with a state file, user models included).

    Names need not be bundled models. SIGTERM first, SIGKILL after 10 s; state files are
    removed, logs are kept. Returns the names whose state file was removed (stale ones too).
    """
    sdir = default_state_dir(state_dir)
    if models is None:
        names = sorted(p.stem for p in sdir.glob("[!.]*.json")) if sdir.is_dir() else []
    else:
        refs = [models] if isinstance(models, str | ModelEntry) else list(models)
        names = [m.name if isinstance(m, ModelEntry) else m for m in refs]
    if not names:
        return []
    stopped: list[str] = []
    with locked(sdir):
        for name in names:
            path = state_file(sdir, name)
            try:
                info = ServerInfo.from_json(json.loads(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink()
                continue
            _stop_one(info, sdir)
            stopped.append(name)
    return stopped
