"""The fake server's request log: one JSON line per generation request, readable while it runs.

`FakeServer(request_log_path=...)` (``toa fake-server --request-log FILE``) appends a line for
every generation request when its handling ends (rejected ones too), in that order, and flushes
it at once, so another process can follow the file while the server runs. Each line::

    {"seq": 12, "time": 1764681234.56, "path": "/v1/chat/completions", "agent": "agent_a",
     "kind": "fresh", "status": 200, "fault": "ok", "seed": 1234, "request_id": "9f3c...",
     "quality": 0.61, "arrived": 1764681234.55}

* ``seq``: arrival number (`ReceivedRequest.seq`); ``time``: wall clock (Unix seconds) when the
  request ended; ``arrived``: when its handling began (null for a request rejected before).
* ``status``: the HTTP status answered, 0 when none was (a drop, a client that gave up, a server
  closing); ``fault``: ``ok``, the fault applied, ``dead`` or ``invalid`` (see `Faults`).
* ``seed``: the request's ``seed`` field, or null.
* ``request_id``: the hex BLAKE2b-128 digest of the request body as canonical JSON (sorted keys,
  no spaces; a body that is not a JSON object counts as ``{}``): identical requests (same
  model, messages, sampling, seed) have the same id, so a request answered with status 200 twice
  was paid for twice.
* ``quality``: the hidden quality of the answer, when one was generated, else null.

No header is written (an ``Authorization`` header carries a key), nor the messages.
`read_request_log` reads a log back.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from toa.testing.accounting import ReceivedRequest

__all__ = ["RequestLog", "read_request_log", "request_id"]


def request_id(body: dict[str, Any]) -> str:
    """The id of a request body: equal for identical requests, whatever their key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class RequestLog:
    """An open request log (the server opens it on start and closes it on close)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot open the request log {self.path}: {exc.strerror or exc}"
            ) from exc

    def write(self, received: ReceivedRequest) -> None:
        """Append the line of one finished request and flush it."""
        if self._file is None:
            return
        seed = received.body.get("seed")
        line = {
            "seq": received.seq,
            "time": time.time(),
            "path": received.path,
            "agent": received.agent,
            "kind": received.kind,
            "status": received.status,
            "fault": received.fault,
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            "request_id": request_id(received.body),
            "quality": received.quality,
            "arrived": received.arrived,
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


def read_request_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete line of a request log, in file order (a partly written last line is
    skipped: the server may be writing it)."""
    entries: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if not line.endswith("\n"):
                break
            entries.append(json.loads(line))
    return entries
