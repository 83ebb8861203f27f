"""Where local models and server state live on disk.

- models: ``$TOA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/toa/models`` (``~/.cache/toa/models``);
- servers: ``$TOA_STATE_DIR`` if set, else ``$XDG_CACHE_HOME/toa/servers``
  (``~/.cache/toa/servers``), holding ``<name>.json`` (pid, port, model, start time) and
  ``<name>.log`` (the server's output) per model.

Every public function also takes an explicit directory, which wins over the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "state_dir"]


def _toa_cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "toa"


def cache_dir(override: Path | str | None = None) -> Path:
    """The directory of assembled model files (not created here)."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("TOA_CACHE_DIR")
    return Path(env).expanduser() if env else _toa_cache_root() / "models"


def state_dir(override: Path | str | None = None) -> Path:
    """The directory of server state and log files (not created here)."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("TOA_STATE_DIR")
    return Path(env).expanduser() if env else _toa_cache_root() / "servers"
