"""The fake OpenAI-compatible server: simulated agents over HTTP, for tests and benchmarks.

`FakeServer` is an aiohttp server on loopback that answers OpenAI requests with the responses of a
`toa.testing.world.World`, so the real HTTP client and the search can be tested and benchmarked
end to end, exactly and deterministically. `toa.testing.serve` runs one from the command line
(``toa fake-server``) or in a thread for synchronous code.

Endpoints:

* ``POST /v1/chat/completions`` (model, messages, ...) and ``POST /v1/completions`` (model,
  prompt: a string, ...): OpenAI response shapes (``chat.completion`` / ``text_completion``, one
  choice). ``model`` names the agent. Errors use OpenAI's shape
  ``{"error": {"message", "type", "param", "code"}}``: a body that is not a JSON object, a
  missing or malformed ``model``, ``messages`` (a non-empty list of objects whose ``content`` is a
  string) or ``prompt``, a ``max_tokens`` or ``seed`` that is not an integer (``max_tokens`` >=
  1), ``stream: true`` or ``n`` other than 1 give HTTP 400; an unknown model gives HTTP 404
  (code ``model_not_found``). Other fields (temperature, top_p, stop, ...) are accepted and
  ignored; so is any ``Authorization`` header.
* ``GET /v1/models``: the agents, in OpenAI's list shape. ``GET /health``: 200.
* Judge agents (profile ``judge=True``, e.g. ``build_world(..., judges="judge")``) answer
  with `toa.testing.world.judge_verdict` instead of a response: "Yes" / "No" (q >= 0.5) or
  "Score: N" (N = 1 + 9 q rounded half up) about the request's last quality marker. When the
  request asks for log-probabilities (chat: ``"logprobs": true`` and ``"top_logprobs": k``;
  completions: ``"logprobs": k``; k in 0..20, else HTTP 400) the choice carries them in OpenAI's
  chat / completions shape, with logprob("Yes") = log(q) and logprob("No") = log(1 - q) for the
  first token of a yes/no verdict (`toa.testing.protocol.judge_body`); otherwise
  ``"logprobs": null``. Other agents ignore ``logprobs`` (always null) as before.
* ``GET /stats``: the same dictionary as `FakeServer.stats` (below).

Dynamics of one generation request:

* Request text: for chat, every message's content joined with ``"\\n"``; for completions, the
  prompt. Its kind is given by its quality markers (`qualities_in`): none is ``fresh``, one is
  ``refine``, two or more is ``aggregate``; every request to a judge agent is ``judge``.
* The answer is ``World.respond(agent, request_text, sample_key)``. The sample key is the request's
  ``seed`` field when it has one; otherwise it is how many unseeded requests with this exact
  (agent, request text) were answered before (0, 1, 2, ...): identical unseeded requests give
  different samples, a seeded request gives the same answer whatever came before, and the same
  sequence of requests to servers with the same seed gives the same answers. Keys are assigned
  at arrival. Requests that get an error status or a dropped connection use up no key (a retry
  gets the sample the failed try would have had); a ``"timeout"`` fault does use one, since the
  server answers it (late). Only counts are kept, per (agent, 16-byte digest of the text): about
  150 bytes per distinct unseeded request, never the texts.
* Response ids are ``chatcmpl-fake<seq>`` / ``cmpl-fake<seq>``; ``created`` is the wall clock,
  the only field that is not deterministic.
* ``max_tokens`` (or ``max_completion_tokens``): when the answer has more whitespace-separated
  words than that, filler words are cut from its end so that it has exactly ``max_tokens`` words
  and still ends with its quality marker (``max_tokens=1`` leaves only the marker);
  finish_reason is then ``"length"``, else ``"stop"``.
* Usage (unless ``omit_usage``): prompt_tokens = words of the request text, completion_tokens =
  words of the answer, total_tokens = their sum. Words are ``str.split()`` pieces.
* Latency: every generation request addressed to a known agent waits ``latency_ms`` (or the
  agent's ``agent_latency_ms``) before its outcome, faults included; a ``(lo, hi)`` pair is drawn
  uniformly in [lo, hi] per request from a generator seeded by the server seed, in arrival order.

Faults (`Faults`, changeable at run time with `FakeServer.set_faults`) are decided at arrival for
each request addressed to a known agent: dead agents, then a script, then random faults (HTTP
500, 429, timeouts, dropped connections). `toa.testing.faults` describes them and their outcomes.

Statistics (`FakeServer.stats`, ``GET /stats``)::

    {"total": N, "by_agent": {"agent_a": N, ...},
     "by_kind": {"fresh": N, "refine": N, "aggregate": N}, "by_status": {"200": N, ...}}

``by_kind`` has a ``"judge"`` key too when the world has a judge agent: every request to a judge
counts there (whatever its markers), never as fresh, refine or aggregate.

``total``, ``by_agent`` (every agent of the world, zeros included) and ``by_kind`` count, at
arrival, every generation request addressed to a known agent with a valid body, failed ones
included, so ``total == sum(by_agent.values()) == sum(by_kind.values())``. ``by_status`` counts
every generation request once it is finished, by the HTTP status it got: rejected ones (400
malformed, 404 unknown model) too, and ``"0"`` for requests that got no response (dropped, the
client gave up, or the server was closing). `FakeServer.requests` keeps the last
``request_log_size`` generation requests as `ReceivedRequest` records, in the order they
finished. `FakeServer.in_flight` / `max_in_flight` (and per agent) count requests from arrival
to the end of their handler, so a test can check that a client bounded its concurrency.
`reset_stats` clears the statistics and the log, not the sample counts nor the script position.

Request log: with ``request_log_path`` (``toa fake-server --request-log FILE``) every finished
generation request also goes to a file (appended to; opened on `start`, closed on `close`), one
JSON line each, written when the request is recorded in `requests` / ``by_status`` (rejected
ones too) and flushed at once, so another process can read it while the server runs::

    {"seq": 12, "time": 1764681234.56, "path": "/v1/chat/completions", "agent": "agent_a",
     "kind": "fresh", "status": 200, "fault": "ok", "seed": 1234, "request_id": "9f3c...",
     "quality": 0.61, "arrived": 1764681234.55}

``seq`` is the arrival number, ``time`` the wall clock (Unix seconds) at the end, ``arrived``
when its handling began (null for a request rejected before), ``status`` the
HTTP status (0: no response), ``fault`` the outcome (``ok``, ``500``, ``429``, ``timeout``,
``drop``, ``dead``, ``invalid``, a script item), ``seed`` the request's seed or null,
``request_id`` the hex BLAKE2b-128 digest of the body as canonical JSON (sorted keys, compact;
a body that is not a JSON object counts as ``{}``), so identical requests (same agent, messages,
sampling, seed) have the same id whatever their key order or headers, and ``quality`` the
answer's hidden quality or null. A test (or a user) can then check from outside that no request
was answered with 200 twice. No header value (an ``Authorization`` header carries a key) and no
message text is written. `toa.testing.read_request_log` reads a log back
(`toa.testing.request_log`).

The server is cheap: no access log, no logging per request above DEBUG, no per-request work
beyond parsing the JSON and computing one answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from toa.testing.accounting import Ledger, ReceivedRequest
from toa.testing.faults import (
    CONTEXT_LENGTH_TOKENS,
    FAULT_KINDS,
    NO_FAULTS,
    Faults,
    dead_agent_response,
    decide_fault,
    drop,
    fault_response,
)
from toa.testing.protocol import (
    JUDGE_KIND,
    KINDS,
    Call,
    Rejected,
    completion_body,
    json_object,
    judge_body,
    models_body,
    parse_call,
    rejection_response,
)
from toa.testing.request_log import RequestLog
from toa.testing.world import World, judge_verdict

__all__ = [
    "CONTEXT_LENGTH_TOKENS",
    "FAULT_KINDS",
    "FakeServer",
    "Faults",
    "ReceivedRequest",
]

logger = logging.getLogger(__name__)

_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_SHUTDOWN_TIMEOUT_S: Final = 1.0

Latency = float | tuple[float, float]
"""A latency in milliseconds: fixed, or ``(lo, hi)`` drawn uniformly per request."""


class FakeServer:
    """An OpenAI-compatible server whose agents are those of a simulated `World`.

    Args:
        world: the agents and their dynamics; ``World.named("helps")`` when None.
        host: interface to listen on (loopback by default).
        port: TCP port; 0 picks a free one (read it from `port` / `base_url` after `start`).
        latency_ms: delay before each generation request's outcome, in milliseconds: fixed, or
            ``(lo, hi)`` for a uniform draw per request.
        agent_latency_ms: per-agent latencies that replace `latency_ms` for those agents.
        faults: the faults to inject (see `Faults`).
        omit_usage: leave ``usage`` out of responses (as some servers do).
        omit_logprobs: judge agents never return log-probabilities, even when asked (as servers
            that do not support them do).
        request_log_size: how many `ReceivedRequest` records `requests` keeps (the last ones).
        request_log_path: a file to which one JSON line per finished generation request is
            appended (`toa.testing.request_log` gives the format), opened on `start`.
        seed: seed of the fault and latency draws; the world's seed when None.

    Use ``async with FakeServer(...) as server:`` or `start` / `close`.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: Latency = 0.0,
        agent_latency_ms: Mapping[str, Latency] | None = None,
        faults: Faults = NO_FAULTS,
        omit_usage: bool = False,
        omit_logprobs: bool = False,
        request_log_size: int = 10_000,
        request_log_path: str | os.PathLike[str] | None = None,
        seed: int | None = None,
    ) -> None:
        self._world = world if world is not None else World.named("helps")
        self._names = frozenset(self._world.agent_names)
        self._judges = frozenset(a.name for a in self._world.agents if a.judge)
        self._host = host
        self._requested_port = port
        self._latency = _check_latency(latency_ms, "latency_ms")
        self._agent_latency: dict[str, Latency] = {}
        for name, value in (agent_latency_ms or {}).items():
            self._check_agent(name)
            self._agent_latency[name] = _check_latency(value, f"agent_latency_ms[{name!r}]")
        for name in faults.dead_agents:
            self._check_agent(name)
        if request_log_size < 0:
            raise ValueError(f"request_log_size must be >= 0, got {request_log_size}")
        self._faults = faults
        self._script_pos = 0
        self._omit_usage = omit_usage
        self._omit_logprobs = omit_logprobs
        seed = self._world.seed if seed is None else seed
        self._fault_rng = random.Random(f"toa-fake-server/faults/{seed}")
        self._latency_rng = random.Random(f"toa-fake-server/latency/{seed}")
        self._samples_seen: dict[tuple[str, bytes], int] = {}
        self._models_body = models_body(self._world.agent_names)
        kinds = (*KINDS, JUDGE_KIND) if self._judges else KINDS
        self._ledger = Ledger(self._world.agent_names, request_log_size, kinds)
        self._seq = 0
        self._request_log_path = request_log_path
        self._request_log: RequestLog | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind the port and start answering. Raises RuntimeError when already started."""
        if self._runner is not None:
            raise RuntimeError("the fake server is already started")
        # handler_cancellation: a client that disconnects (e.g. timed out) ends its handler.
        runner = web.AppRunner(
            self._app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        if self._request_log_path is not None:
            # Opened first: a directory that does not exist is an OSError before anything listens.
            self._request_log = RequestLog(self._request_log_path)
        try:
            await runner.setup()
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except BaseException:
            await runner.cleanup()
            self._close_request_log()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        logger.debug("fake server listening on %s", self.base_url)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/v1/completions", self._handle_completions)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_get("/health", self._handle_health)
        return app

    async def close(self) -> None:
        """Stop: requests still in progress (hanging ones too) end without a response."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()
        self._close_request_log()
        logger.debug("fake server on port %s closed", self._port)

    def _close_request_log(self) -> None:
        log, self._request_log = self._request_log, None
        if log is not None:
            log.close()

    def _record(self, received: ReceivedRequest) -> None:
        self._ledger.record(received)
        if self._request_log is not None:
            self._request_log.write(received)

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------------------- properties

    @property
    def world(self) -> World:
        """The simulated world the agents come from."""
        return self._world

    @property
    def port(self) -> int:
        """The bound TCP port. Raises RuntimeError before `start`."""
        if self._port is None:
            raise RuntimeError("the fake server is not started; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v1"

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The last `request_log_size` generation requests, in the order they finished."""
        return self._ledger.requests()

    @property
    def in_flight(self) -> int:
        """Generation requests being handled now."""
        return self._ledger.in_flight

    @property
    def max_in_flight(self) -> int:
        """The most generation requests handled at once since start (or `reset_stats`)."""
        return self._ledger.max_in_flight

    @property
    def in_flight_by_agent(self) -> dict[str, int]:
        """`in_flight`, per agent."""
        return self._ledger.in_flight_by_agent()

    @property
    def max_in_flight_by_agent(self) -> dict[str, int]:
        """`max_in_flight`, per agent."""
        return self._ledger.max_in_flight_by_agent()

    # ------------------------------------------------------------------------------- control

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults; a script in `faults` starts from its first item."""
        for name in faults.dead_agents:
            self._check_agent(name)
        self._faults = faults
        self._script_pos = 0

    def kill_agent(self, name: str) -> None:
        """Make every request for `name` fail (by `Faults.dead_mode`) until `revive_agent`."""
        self._check_agent(name)
        self._faults = replace(self._faults, dead_agents=self._faults.dead_agents | {name})

    def revive_agent(self, name: str) -> None:
        """Undo `kill_agent`."""
        self._check_agent(name)
        self._faults = replace(self._faults, dead_agents=self._faults.dead_agents - {name})

    def stats(self) -> dict[str, Any]:
        """Request counts (module docstring): total, by_agent, by_kind and by_status."""
        return self._ledger.stats()

    def reset_stats(self) -> None:
        """Zero the statistics and clear the request log (sample counts and script stay)."""
        self._ledger.reset()

    def _check_agent(self, name: str) -> None:
        if name not in self._names:
            raise ValueError(f"unknown agent {name!r}; this world has {self._world.agent_names}")

    # ------------------------------------------------------------------------------ handlers

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _handle_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._models_body)

    async def _handle_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _handle_health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        raw = await request.read()
        # Numbered once the body is in, with no await until the fault is decided (in `_answer`):
        # `seq` order is the order in which requests take script items and random draws.
        seq = self._seq
        self._seq += 1
        headers = dict(request.headers)
        body: dict[str, Any] = {}
        try:
            body = json_object(raw)
            call = parse_call(body, seq=seq, chat=chat, agents=self._names, judges=self._judges)
        except Rejected as rejected:
            model = body.get("model")
            agent = model if isinstance(model, str) else ""
            self._record(
                ReceivedRequest(
                    seq, request.path, agent, "", body, headers, rejected.status, "invalid"
                )
            )
            self._ledger.finish(rejected.status)
            return rejection_response(rejected)
        return await self._answer(request, call, body, headers)

    async def _answer(
        self, request: web.Request, call: Call, body: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        """Decide the fault, wait the latency, answer; account for the request throughout."""
        self._ledger.arrive(call)
        arrived = time.time()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        status, fault, quality = 0, "ok", None
        try:
            faults = self._faults
            fault, self._script_pos = decide_fault(
                call.agent, faults, self._script_pos, self._fault_rng
            )
            sample_key = self._sample_key(call) if fault in ("ok", "timeout") else None
            delay_s = self._delay_s(call.agent)
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            response, quality = await self._outcome(request, call, fault, faults, sample_key)
            status = response.status
            return response
        finally:
            if task is not None:
                self._tasks.discard(task)
            self._ledger.depart(call.agent)
            path = request.path
            self._record(
                ReceivedRequest(
                    call.seq,
                    path,
                    call.agent,
                    call.kind,
                    body,
                    headers,
                    status,
                    fault,
                    quality,
                    arrived,
                )
            )
            self._ledger.finish(status)

    # ------------------------------------------------------------------------------ dynamics

    def _sample_key(self, call: Call) -> int:
        if call.seed is not None:
            return call.seed
        key = (call.agent, hashlib.blake2b(call.text.encode(), digest_size=16).digest())
        count = self._samples_seen.get(key, 0)
        self._samples_seen[key] = count + 1
        return count

    def _delay_s(self, agent: str) -> float:
        latency = self._agent_latency.get(agent, self._latency)
        if isinstance(latency, tuple):
            return self._latency_rng.uniform(*latency) / 1000.0
        return latency / 1000.0

    async def _outcome(
        self,
        request: web.Request,
        call: Call,
        fault: str,
        faults: Faults,
        sample_key: int | None,
    ) -> tuple[web.StreamResponse, float | None]:
        if fault == "dead":
            return dead_agent_response(request, call, faults), None
        if fault == "drop":
            drop(request)
        if fault == "timeout":
            await asyncio.sleep(faults.hang_s)
        if sample_key is not None:
            return self._completion(call, sample_key)
        return fault_response(fault, call, faults), None

    def _completion(self, call: Call, sample_key: int) -> tuple[web.StreamResponse, float | None]:
        if call.judge:
            body = judge_body(
                call,
                judge_verdict(call.text),
                omit_usage=self._omit_usage,
                omit_logprobs=self._omit_logprobs,
            )
            return web.json_response(body), None
        answer, quality = self._world.respond(call.agent, call.text, sample_key)
        body = completion_body(call, answer, omit_usage=self._omit_usage)
        return web.json_response(body), quality


def _check_latency(value: Latency, name: str) -> Latency:
    if isinstance(value, tuple):
        lo, hi = value
        if not 0 <= lo <= hi:
            raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi, got {value}")
        return (float(lo), float(hi))
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)
