"""Faults the fake server injects: which requests fail, and how.

Faults (`Faults`, changeable at run time with `FakeServer.set_faults`), decided at arrival for
each request addressed to a known agent, in this order:

1. A dead agent (``dead_agents``): the request fails by ``dead_mode`` (HTTP 500, HTTP 503, or a
   dropped connection). It uses no script item and no random draw.
2. The script: each request takes the next item, in arrival order (the order of
   `ReceivedRequest.seq`: when its body has been read), until the script is used up.
   ``set_faults`` starts the new script from its first item; ``kill_agent`` / ``revive_agent``
   keep the position.
3. Random faults: one uniform draw u per request from a generator seeded by the server seed
   (deterministic for a given arrival order, whatever the rates): HTTP 500 when
   ``u < error_rate``, else HTTP 429 within the next ``rate_limit_rate``, else a timeout within
   the next ``timeout_rate``, else a drop within the next ``drop_rate``, else a normal answer.

Outcomes: ``"500"`` / ``"503"`` server errors; ``"429"`` with header ``Retry-After`` =
``retry_after_s`` (``"1"``, ``"0.2"``); ``"timeout"`` holds the request ``hang_s`` seconds and
then answers normally (a client with a shorter timeout gives up first; the server then cancels
the handler); ``"drop"`` closes the connection without writing any HTTP response (the client sees
a server disconnection); ``"400"`` invalid request, ``"401"`` invalid API key, ``"403"``
permission denied; ``"context"`` is HTTP 400 with code ``context_length_exceeded`` and vLLM's
message ("This model's maximum context length is 2048 tokens. However, you requested ...").
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from aiohttp import web

from toa.testing.protocol import Call, error_response

__all__ = ["CONTEXT_LENGTH_TOKENS", "FAULT_KINDS", "Faults"]

FAULT_KINDS: Final = frozenset(
    {"ok", "500", "503", "429", "timeout", "drop", "400", "401", "403", "context"}
)
"""The items a `Faults.script` may hold."""

CONTEXT_LENGTH_TOKENS: Final = 2048
"""The context length that the scripted ``"context"`` error reports, in tokens."""

_DEAD_MODES: Final = ("500", "503", "drop")


@dataclass(frozen=True, slots=True)
class Faults:
    """Faults the server injects (see the module docstring for the order they apply in).

    Attributes:
        error_rate: probability in [0, 1] of HTTP 500.
        rate_limit_rate: probability in [0, 1] of HTTP 429 with ``Retry-After``.
        retry_after_s: the ``Retry-After`` value, in seconds (>= 0, may be fractional).
        timeout_rate: probability in [0, 1] that the server holds the request `hang_s` seconds
            before answering normally.
        hang_s: how long a timeout fault holds the request, in seconds (>= 0).
        drop_rate: probability in [0, 1] that the connection is closed without any response.
        dead_agents: agents whose every request fails, by `dead_mode`.
        dead_mode: how a dead agent's requests fail: ``"500"``, ``"503"`` or ``"drop"``.
        script: outcomes for the next requests, one per request in arrival order, before the
            random faults: each one of `FAULT_KINDS`.

    The four rates must add up to at most 1.
    """

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    timeout_rate: float = 0.0
    hang_s: float = 30.0
    drop_rate: float = 0.0
    dead_agents: frozenset[str] = frozenset()
    dead_mode: Literal["500", "503", "drop"] = "503"
    script: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._check_rates()
        if self.retry_after_s < 0 or self.hang_s < 0:
            raise ValueError("Faults.retry_after_s and Faults.hang_s must be >= 0")
        if self.dead_mode not in _DEAD_MODES:
            raise ValueError(
                f"Faults.dead_mode must be one of {_DEAD_MODES}, got {self.dead_mode!r}"
            )
        dead_agents: object = self.dead_agents
        script: object = self.script
        if isinstance(dead_agents, str) or isinstance(script, str):
            raise TypeError("Faults.dead_agents and Faults.script take collections, not a string")
        object.__setattr__(self, "dead_agents", frozenset(self.dead_agents))
        object.__setattr__(self, "script", tuple(self.script))
        unknown = sorted(set(self.script) - FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown script items {unknown}; choose from {sorted(FAULT_KINDS)}")

    def _check_rates(self) -> None:
        rates = {
            "error_rate": self.error_rate,
            "rate_limit_rate": self.rate_limit_rate,
            "timeout_rate": self.timeout_rate,
            "drop_rate": self.drop_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be in [0, 1], got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"the fault rates must add up to at most 1, got {sum(rates.values())}")


NO_FAULTS: Final = Faults()
"""No faults: every request is answered normally."""


def decide_fault(
    agent: str, faults: Faults, script_pos: int, rng: random.Random
) -> tuple[str, int]:
    """The outcome for a request to `agent` (module docstring), and the new script position.

    ``"dead"`` for a dead agent, else a script item or a random fault (one draw from `rng`, made
    only when the script is used up), else ``"ok"``.
    """
    if agent in faults.dead_agents:
        return "dead", script_pos
    if script_pos < len(faults.script):
        return faults.script[script_pos], script_pos + 1
    u = rng.random()
    for outcome, rate in (
        ("500", faults.error_rate),
        ("429", faults.rate_limit_rate),
        ("timeout", faults.timeout_rate),
        ("drop", faults.drop_rate),
    ):
        if u < rate:
            return outcome, script_pos
        u -= rate
    return "ok", script_pos


def dead_agent_response(request: web.Request, call: Call, faults: Faults) -> web.Response:
    """The failure of a request to a dead agent, by `Faults.dead_mode` (a drop raises)."""
    if faults.dead_mode == "drop":
        drop(request)
    message = f"agent {call.agent!r} is down (simulated dead agent)"
    return error_response(int(faults.dead_mode), message, type_="server_error")


def fault_response(fault: str, call: Call, faults: Faults) -> web.Response:
    """The error response of an HTTP-status fault: ``"500"``, ``"429"``, ``"context"``, ..."""
    if fault == "429":
        retry_after = _format_seconds(faults.retry_after_s)
        return error_response(
            429,
            f"Rate limit reached (simulated fault). Please try again in {retry_after}s.",
            type_="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": retry_after},
        )
    if fault == "context":
        return _context_length_response(call)
    status, message, type_, code = _FAULTS[fault]
    return error_response(status, message, type_=type_, code=code)


def _context_length_response(call: Call) -> web.Response:
    prompt_tokens = len(call.text.split())
    completion_tokens = call.max_tokens or 0
    return error_response(
        400,
        f"This model's maximum context length is {CONTEXT_LENGTH_TOKENS} tokens. However, "
        f"you requested {prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the "
        f"messages, {completion_tokens} in the completion). Please reduce the length of the "
        "messages or completion.",
        param="messages" if call.chat else "prompt",
        code="context_length_exceeded",
    )


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


_FAULTS: Final[dict[str, tuple[int, str, str, str | None]]] = {
    "500": (500, "The server had an error processing your request (simulated fault).",
            "server_error", None),
    "503": (503, "The server is overloaded or not ready yet (simulated fault).",
            "server_error", "service_unavailable"),
    "400": (400, "Invalid request (simulated fault).", "invalid_request_error", None),
    "401": (401, "Incorrect API key provided (simulated fault).", "invalid_request_error",
            "invalid_api_key"),
    "403": (403, "You are not allowed to use this model (simulated fault).", "permission_error",
            "permission_denied"),
}  # fmt: skip


def drop(request: web.Request) -> NoReturn:
    """Close the connection without a response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp treats a CancelledError out of a handler as a client gone away: it writes nothing
    # and logs only at DEBUG.
    raise asyncio.CancelledError
