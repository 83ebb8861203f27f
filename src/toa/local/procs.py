"""Process plumbing for the model servers: free ports, detached launch, liveness, termination.

Servers are launched through a tiny launcher process that starts them in their own session and
exits at once, so a server is never our child: Ctrl-C in the terminal does not reach it, no
zombie is left behind when it stops, and no `subprocess.Popen` object outlives the call.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from toa.errors import LocalModelError

__all__ = [
    "fetch_model_ids",
    "is_server_process",
    "launch_detached",
    "log_tail",
    "pick_free_port",
    "pid_alive",
    "port_open",
    "terminate",
]

_LAUNCHER = """\
import os, subprocess, sys
with open(sys.argv[1], "ab") as log:
    p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
print(p.pid, flush=True)
os._exit(0)
"""

# Loopback requests must never go through an HTTP proxy configured in the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it; a race is still possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections on `host`:`port` (within `timeout_s` s)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def launch_detached(command: Sequence[str], log_path: Path, timeout_s: float = 30.0) -> int:
    """Start `command` in a new session, output appended to `log_path`; returns its pid.

    The process is not our child (a launcher starts it and exits), so it survives us.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(log_path), *command],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
        return int(done.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise LocalModelError(f"could not launch {command[0]!r}: {exc!r}; see {log_path}") from exc


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that has exited: reap it
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # no procfs (macOS): kill(0) is all we know
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def is_server_process(pid: int, marker: str, port: int) -> bool:
    """True when `pid` looks like our server: its command line has `marker` and ``--port``.

    Guards against a recycled pid. Without procfs it falls back to `pid_alive`.
    """
    if not pid_alive(pid):
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    args = raw.decode(errors="replace").split("\0")
    return marker in args and str(port) in args


def terminate(pid: int, grace_s: float = 10.0, kill_wait_s: float = 5.0) -> bool:
    """SIGTERM the process group of `pid`, SIGKILL after `grace_s` seconds; True once it is gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_wait_s)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return True
            except PermissionError as exc:
                raise LocalModelError(f"not allowed to stop process {pid}: {exc}") from exc
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
    return not pid_alive(pid)


def fetch_model_ids(base_url: str, timeout_s: float = 2.0) -> list[str] | None:
    """GET ``<base_url>/models``; the model ids served, or None when the server does not answer."""
    try:
        with _NO_PROXY.open(f"{base_url}/models", timeout=timeout_s) as reply:
            data = json.loads(reply.read())
        return [str(m["id"]) for m in data["data"]]
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError):
        return None


def log_tail(path: Path, max_bytes: int = 2000) -> str:
    """The last `max_bytes` of a log file, decoded ('' when it cannot be read)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
