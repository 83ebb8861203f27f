"""The agent client: with `toa.agents.transport`, the only code in TOA that speaks HTTP.

One `AgentPool` owns one HTTP transport (pooled keep-alive connections for http://, aiohttp for
https://) shared by every agent; each `AgentClient` adds, for its agent: replicas chosen by least
in-flight requests, a concurrency limit, an optional requests-per-minute limit, timeouts, bounded
retries with backoff and jitter (retryable failures only, Retry-After honoured), and a circuit
breaker per replica. When every replica is out the client raises `AgentUnavailableError` at once
instead of waiting, and `is_available()` says so beforehand, so a search can skip the agent.

Breakers belong to (agent, replica), never to a URL alone: agents that share one server (several
models behind one vLLM router, say) each have their own, so one agent's failures (its model not
loaded, its backend dead) never take the others out; only failures an agent sees itself count for
it. Every breaker message names the agent and the replica's URL.

aiohttp was chosen over the openai SDK by measurement (benchmarks/client_throughput.py); the
plain-HTTP transport over aiohttp by measurement too (benchmarks/engine_throughput.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar

from toa import compact_json
from toa.agents.breaker import CircuitBreaker, RateLimiter
from toa.agents.slots import Slots
from toa.agents.spec import AgentSpec
from toa.agents.transport import Target, Transport, make_target
from toa.agents.wire import build_body, endpoint_path, error_for_status, parse_choice
from toa.errors import (
    AgentConnectionError,
    AgentError,
    AgentTimeoutError,
    AgentUnavailableError,
    ConfigError,
    FatalAgentError,
    RateLimitError,
    ResponseFormatError,
    RetryableAgentError,
)
from toa.types import Completion, Message, SamplingParams, as_messages

__all__ = ["AgentClient", "AgentPool", "AgentStats", "Endpoint", "check_key"]

logger = logging.getLogger(__name__)


class _Secret:
    """Holds an API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"

    __str__ = __repr__


@dataclass(slots=True)
class AgentStats:
    """Counters of one agent's client, for progress displays and tests."""

    calls: int = 0  # generate() calls
    succeeded: int = 0
    failed: int = 0
    attempts: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    unavailable: int = 0  # calls refused at once because every replica was out


class Endpoint:
    """One replica: its base URL, requests in flight, and its circuit breaker."""

    __slots__ = ("base_url", "breaker", "in_flight")

    def __init__(self, base_url: str, breaker: CircuitBreaker) -> None:
        self.base_url = base_url
        self.breaker = breaker
        self.in_flight = 0


T = TypeVar("T")
Parser = Callable[[Endpoint, bytes, float], T]
"""Turns a 2xx body from an endpoint into a result (raising ResponseFormatError if it cannot)."""


class AgentClient:
    """Generates completions for one agent. Build it through `AgentPool`.

    Args:
        spec: the agent's settings.
        transport: the shared HTTP transport (not owned).
        rng: source of backoff jitter (seed it for reproducible timings in tests).
        clock: monotonic clock used by breakers and the rate limiter.
    """

    def __init__(
        self,
        spec: AgentSpec,
        transport: Transport,
        *,
        rng: random.Random | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.spec = spec
        self.stats = AgentStats()
        self._transport = transport
        self._rng = rng or random.Random()
        self._secret = _read_key(spec)
        self._path = endpoint_path(spec)
        self.endpoints = tuple(
            Endpoint(
                u, CircuitBreaker(spec.breaker, label=f"agent {spec.name!r} at {u}", clock=clock)
            )
            for u in spec.base_urls
        )
        self._slots = Slots(spec.max_concurrency)
        self._fields = spec.sampling.to_request_fields()  # the agent's own, made once
        self._limiter = (
            RateLimiter(spec.requests_per_minute, clock=clock) if spec.requests_per_minute else None
        )
        self._headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            self._headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        self._targets: dict[tuple[str, str], Target] = {}  # (base URL, path) -> target
        self._turn = 0  # rotates ties between equally loaded replicas

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"AgentClient(name={self.name!r}, endpoints={len(self.endpoints)})"

    def is_available(self) -> bool:
        """False when every replica's breaker is open (the search should skip this agent)."""
        for endpoint in self.endpoints:  # noqa: SIM110 (asked on every play: no generator)
            if endpoint.breaker.is_ready():
                return True
        return False

    def retry_in_s(self) -> float:
        """Seconds until some replica may take a request again (0 when one may now)."""
        return min(e.breaker.retry_in_s() for e in self.endpoints)

    async def generate(
        self,
        messages: Sequence[Message] | str,
        *,
        sampling: SamplingParams | None = None,
        extra_body: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One completion of `messages`, retried as the policy allows.

        `sampling` replaces the agent's sampling settings for this call, and `seed` their seed.
        `extra_body` adds request fields for this call (e.g. ``{"logprobs": True,
        "top_logprobs": 5}``; the reply's top log-probabilities then fill `Completion.logprobs`).

        Raises:
            FatalAgentError: a failure retrying cannot fix (400, context length, 401/403, a reply
                that is not OpenAI-shaped); raised at once.
            RetryableAgentError: the last transient failure, once `max_attempts` are spent.
            AgentUnavailableError: every replica is out; raised without waiting.
        """
        fields = self._fields if sampling is None else sampling.to_request_fields()
        if seed is not None:
            fields = {**fields, "seed": seed}
        body = build_body(self.spec, as_messages(messages), fields)
        if extra_body:
            body.update(extra_body)
        completion, attempts = await self._call(self._path, body, self._completion)
        return completion if attempts == 1 else replace(completion, attempts=attempts)

    async def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST `body` to ``base_url + path`` with the same replicas, limits, retries and
        breakers as `generate`; returns the parsed JSON reply (for reward and scoring servers).

        Raises:
            The same errors as `generate`; `ResponseFormatError` when the reply is not JSON.
        """
        result, _ = await self._call(path, body, self._json)
        return result

    def _completion(self, endpoint: Endpoint, body: bytes, started: float) -> Completion:
        try:
            text, finish_reason, usage, logprobs = parse_choice(self.spec, body)
        except ResponseFormatError as exc:
            exc.endpoint = endpoint.base_url
            raise
        return Completion(
            agent=self.spec.name,
            text=text,
            usage=usage,
            finish_reason=finish_reason,
            endpoint=endpoint.base_url,
            model=self.spec.model,
            latency_s=time.perf_counter() - started,
            logprobs=logprobs,
        )

    def _json(self, endpoint: Endpoint, body: bytes, started: float) -> Any:
        try:
            return compact_json.loads(body)
        except ValueError as exc:
            raise ResponseFormatError(
                f"the reply is not JSON ({exc}); check the endpoint's URL and path",
                agent=self.spec.name,
                endpoint=endpoint.base_url,
            ) from exc

    async def _call(self, path: str, body: Mapping[str, Any], parse: Parser[T]) -> tuple[T, int]:
        """(result, attempts) of one logical call, retried as the policy allows; counts it in
        `stats`. (The retry loop, each attempt and its breaker verdict are one coroutine each:
        every call passes through them.)"""
        stats = self.stats
        stats.calls += 1
        payload = compact_json.dumps(body)
        policy = self.spec.retry
        last: RetryableAgentError | None = None
        try:
            for attempt in range(1, policy.max_attempts + 1):
                try:
                    result = await self._attempt(path, payload, parse, last=last)
                except RetryableAgentError as error:
                    last = error
                    if attempt == policy.max_attempts:
                        break
                    stats.retries += 1
                    retry_after = error.retry_after_s if isinstance(error, RateLimitError) else None
                    delay = policy.delay_s(attempt, self._rng, retry_after)
                    logger.debug("%s; retry %d in %.2f s", error, attempt, delay)
                    await asyncio.sleep(delay)
                else:
                    stats.succeeded += 1
                    return result, attempt
            assert last is not None
            last.add_note(f"gave up after {policy.max_attempts} attempts")
            raise last
        except AgentError:
            stats.failed += 1
            raise

    def _claim_endpoint(self, *, avoid: str | None) -> Endpoint | None:
        """The ready replica with the fewest requests in flight (preferring not `avoid`)."""
        if len(self.endpoints) == 1:  # the common case, without the balancing below
            only = self.endpoints[0]
            if not only.breaker.is_ready():
                return None
            only.breaker.try_acquire()
            return only
        ready = [e for e in self.endpoints if e.breaker.is_ready()]
        if len(ready) > 1 and avoid is not None:
            ready = [e for e in ready if e.base_url != avoid] or ready
        if not ready:
            return None
        self._turn += 1
        n = len(ready)
        best = min(range(n), key=lambda i: (ready[i].in_flight, (i - self._turn) % n))
        endpoint = ready[best]
        endpoint.breaker.try_acquire()
        return endpoint

    def _unavailable(self, last: AgentError | None) -> AgentUnavailableError:
        self.stats.unavailable += 1
        wait_s = self.retry_in_s()
        error = AgentUnavailableError(
            f"all {len(self.endpoints)} replica(s) are out after repeated failures; the next "
            f"probe is in {wait_s:.1f} s. Check that the servers are up"
            + (f" (last failure: {last})" if last else ""),
            agent=self.name,
            retry_in_s=wait_s,
        )
        error.__cause__ = last
        return error

    async def _attempt(
        self, path: str, payload: bytes, parse: Parser[T], *, last: AgentError | None
    ) -> T:
        """One HTTP request, under the concurrency and rate limits, to the replica chosen once a
        slot is free (so the choice sees the current load); records the outcome on its breaker.
        """
        slots = self._slots
        if not slots.try_take():  # the limit is reached: wait for a slot
            await slots.take()
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
            endpoint = self._claim_endpoint(avoid=last.endpoint if last else None)
            if endpoint is None:
                raise self._unavailable(last)
            endpoint.in_flight += 1
            self.stats.attempts += 1
            breaker = endpoint.breaker
            verdict_given = False
            try:
                result = await self._post(endpoint, path, payload, parse)
            except RateLimitError:
                breaker.record_success()  # busy, but alive
                verdict_given = True
                raise
            except (RetryableAgentError, ResponseFormatError):
                breaker.record_failure()
                verdict_given = True
                raise
            except FatalAgentError:
                breaker.record_success()  # it answered: the request was at fault
                verdict_given = True
                raise
            else:
                breaker.record_success()
                verdict_given = True
                return result
            finally:
                endpoint.in_flight -= 1
                if not verdict_given:  # cancelled or an unexpected error: free a claimed probe
                    breaker.release()
        finally:
            slots.give()

    async def _post(self, endpoint: Endpoint, path: str, payload: bytes, parse: Parser[T]) -> T:
        spec = self.spec
        started = time.perf_counter()
        target = self._targets.get((endpoint.base_url, path))
        if target is None:
            target = make_target(endpoint.base_url + path, self._headers)
            self._targets[endpoint.base_url, path] = target
        try:
            reply = await self._transport.post(
                target, payload, timeout_s=spec.timeout_s, connect_timeout_s=spec.connect_timeout_s
            )
        except TimeoutError as exc:
            raise AgentTimeoutError(
                f"no answer within {spec.timeout_s:g} s; raise timeout_s or check the server load",
                agent=spec.name,
                endpoint=endpoint.base_url,
            ) from exc
        except OSError as exc:
            raise AgentConnectionError(
                f"connection failed ({type(exc).__name__}: {exc}); is the server running?",
                agent=spec.name,
                endpoint=endpoint.base_url,
            ) from exc
        if reply.status >= 300:
            secret = self._secret.reveal() if self._secret else None
            raise error_for_status(
                spec, endpoint.base_url, reply.status, reply.body, reply.retry_after, secret=secret
            )
        return parse(endpoint, reply.body, started)


def check_key(spec: AgentSpec) -> None:
    """Raise `ConfigError` when the agent names an `api_key_env` that is unset or empty."""
    if spec.api_key_env is not None and not os.environ.get(spec.api_key_env):
        raise ConfigError(
            f"agent {spec.name!r}: environment variable {spec.api_key_env} (named by "
            "api_key_env) is not set or empty; export it before the run"
        )


def _read_key(spec: AgentSpec) -> _Secret | None:
    check_key(spec)
    return None if spec.api_key_env is None else _Secret(os.environ[spec.api_key_env])


class AgentPool:
    """The clients of a set of agents over one shared HTTP transport.

    Use as ``async with AgentPool(specs) as pool: await pool["qwen"].generate(...)``.

    Args:
        specs: the agents (unique names).
        seed: seeds the backoff jitter of every client (None = random).
        connection_limit: open connections at most over all agents (0 = unlimited; the per-agent
            `max_concurrency` limits already bound them).
    """

    def __init__(
        self,
        specs: Sequence[AgentSpec],
        *,
        seed: int | None = None,
        connection_limit: int = 0,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"agent names must be unique, got {names}")
        self._specs = tuple(specs)
        self._seed = seed
        self._connection_limit = connection_limit
        self._transport: Transport | None = None
        self._clients: dict[str, AgentClient] = {}

    async def __aenter__(self) -> AgentPool:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the shared transport and build the clients (reads API keys from the
        environment)."""
        if self._transport is not None:
            return
        transport = Transport(connection_limit=self._connection_limit)
        try:
            rng = random.Random(self._seed)
            self._clients = {
                s.name: AgentClient(s, transport, rng=random.Random(rng.random()))
                for s in self._specs
            }
        except BaseException:
            await transport.close()
            raise
        self._transport = transport

    async def close(self) -> None:
        """Close the shared transport; in-flight requests are abandoned."""
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._specs)

    def __getitem__(self, name: str) -> AgentClient:
        try:
            return self._clients[name]
        except KeyError:
            if self._transport is None:
                raise RuntimeError(
                    "the pool is not open; use `async with AgentPool(...)`"
                ) from None
            raise KeyError(f"unknown agent {name!r}; known: {list(self._clients)}") from None

    def __iter__(self) -> Iterator[AgentClient]:
        return iter(self._clients.values())
