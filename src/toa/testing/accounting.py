"""What the fake server counts: request statistics, concurrency and the log of requests received.

`FakeServer.stats`, ``GET /stats``, `FakeServer.requests` and the in-flight counts read a
`Ledger`; `toa.testing.server` documents what each one counts. A ledger may be read from another
thread than the server's: its counters and log are guarded by a lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from toa.testing.protocol import KINDS, Call

__all__ = ["ReceivedRequest"]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One generation request the server received, recorded when its handling ended.

    Attributes:
        seq: arrival number (0, 1, 2, ...) of the request, over the server's life; also the
            order in which requests took script items and random draws.
        path: the request path, e.g. ``/v1/chat/completions``.
        agent: the ``model`` the request named ('' when it named none).
        kind: ``fresh``, ``refine`` or ``aggregate``; ``judge`` for any request to a judge
            agent; '' for a rejected request.
        body: the parsed JSON body ({} when it was not a JSON object).
        headers: the request headers, as received.
        status: the HTTP status the server answered; 0 when it sent no response (a dropped
            connection, a client that gave up first, or a server that was closing).
        fault: ``"ok"``, the fault applied (one of `FAULT_KINDS`), ``"dead"`` for a dead agent,
            or ``"invalid"`` for a rejected request (400 malformed, 404 unknown model).
        quality: the hidden quality of the answer generated for it, when one was.
        arrived: wall clock (Unix seconds) when its handling began, when known.
    """

    seq: int
    path: str
    agent: str
    kind: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    fault: str
    quality: float | None = None
    arrived: float | None = None


class Ledger:
    """The fake server's counters and request log, for the agents `agent_names`; `by_kind` counts
    the request kinds `kinds` (the server adds ``"judge"`` when its world has a judge agent)."""

    _total: int
    _by_agent: dict[str, int]
    _by_kind: dict[str, int]
    _by_status: dict[str, int]
    _max_in_flight: int
    _max_in_flight_by_agent: dict[str, int]

    def __init__(
        self, agent_names: Sequence[str], log_size: int, kinds: Sequence[str] = KINDS
    ) -> None:
        self._agent_names = tuple(agent_names)
        self._kinds = tuple(kinds)
        self._lock = threading.Lock()
        self._log: deque[ReceivedRequest] = deque(maxlen=log_size)
        self._in_flight = 0
        self._in_flight_by_agent = dict.fromkeys(self._agent_names, 0)
        self._clear()

    # --------------------------------------------------------------------------------- reads

    @property
    def in_flight(self) -> int:
        """Requests in flight now: from `arrive` to `depart`."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests in flight at once since creation (or `reset`)."""
        return self._max_in_flight

    def in_flight_by_agent(self) -> dict[str, int]:
        """Requests in flight now, per agent."""
        with self._lock:
            return dict(self._in_flight_by_agent)

    def max_in_flight_by_agent(self) -> dict[str, int]:
        """`max_in_flight`, per agent."""
        with self._lock:
            return dict(self._max_in_flight_by_agent)

    def requests(self) -> list[ReceivedRequest]:
        """The logged requests, oldest first."""
        with self._lock:
            return list(self._log)

    def stats(self) -> dict[str, Any]:
        """total, by_agent, by_kind and by_status (see `toa.testing.server`)."""
        with self._lock:
            return {
                "total": self._total,
                "by_agent": dict(self._by_agent),
                "by_kind": dict(self._by_kind),
                "by_status": dict(self._by_status),
            }

    # -------------------------------------------------------------------------------- writes

    def reset(self) -> None:
        """Zero the statistics and clear the log; requests in flight stay counted."""
        with self._lock:
            self._clear()
            self._log.clear()

    def arrive(self, call: Call) -> None:
        """Count a valid request to a known agent, now in flight."""
        with self._lock:
            self._total += 1
            self._by_agent[call.agent] += 1
            self._by_kind[call.kind] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            n = self._in_flight_by_agent[call.agent] = self._in_flight_by_agent[call.agent] + 1
            if n > self._max_in_flight_by_agent[call.agent]:
                self._max_in_flight_by_agent[call.agent] = n

    def depart(self, agent: str) -> None:
        """A request counted by `arrive` is no longer in flight."""
        with self._lock:
            self._in_flight -= 1
            self._in_flight_by_agent[agent] -= 1

    def record(self, received: ReceivedRequest) -> None:
        """Log a finished request."""
        with self._lock:
            self._log.append(received)

    def finish(self, status: int) -> None:
        """Count a finished generation request by its HTTP status (0: no response)."""
        key = str(status)
        with self._lock:
            self._by_status[key] = self._by_status.get(key, 0) + 1

    def _clear(self) -> None:
        self._total = 0
        self._by_agent = dict.fromkeys(self._agent_names, 0)
        self._by_kind = dict.fromkeys(self._kinds, 0)
        self._by_status = {}
        self._max_in_flight = self._in_flight
        self._max_in_flight_by_agent = dict(self._in_flight_by_agent)
