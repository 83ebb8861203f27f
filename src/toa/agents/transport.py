"""HTTP/1.1 for the agent client: pooled keep-alive connections for ``http://`` endpoints.

The agent client's calls are small JSON POSTs to a handful of servers, hundreds in flight. For
them aiohttp's general machinery (request and response objects, connector bookkeeping, the
per-request timer context) cost about 2x the CPU of what a call needs
(`benchmarks/engine_throughput.py`): a 20,000-call run spent more of its CPU in the HTTP client
than in the search. This module sends those calls over plain asyncio connections instead, with
httptools (the C parser uvicorn uses) reading the replies:

* one pool of idle keep-alive connections per server (host, port); a connection goes back to the
  pool only after a complete reply that allows keep-alive, and is dropped after `IDLE_S` unused
  (below the 5 s keep-alive of uvicorn, which vLLM and SGLang run on, so a reused connection is
  rarely one the server is closing);
* every failure surfaces as an `OSError` (refused, reset, closed without a reply, a reply that is
  not HTTP: `TransportError`) or `TimeoutError`; the client turns them into TOA's errors. A
  request is never re-sent here (that would pay twice): retrying is the client's policy;
* a connection whose request failed, timed out or was cancelled is closed, never reused;
* bodies delimited by Content-Length, chunked encoding or the end of the connection; gzip and
  deflate bodies are decompressed (TOA asks for neither).

``https://`` endpoints (hosted APIs, where the network dominates the cost of a call) go through
aiohttp, with its TLS handling, as before. No proxy is used for either (as before).
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import httptools

__all__ = ["IDLE_S", "Reply", "Target", "Transport", "TransportError"]

IDLE_S = 4.0
"""Seconds an idle keep-alive connection is kept for reuse."""


class TransportError(ConnectionError):
    """The server's reply was not valid HTTP/1.1, or the connection ended in the middle of it."""


class Reply(NamedTuple):
    """A complete reply, whatever its status."""

    status: int
    body: bytes
    retry_after: str | None


@dataclass(frozen=True, slots=True)
class Target:
    """Where one kind of request goes: the URL, and for plain HTTP the pool key and the request
    head up to its Content-Length value (it holds the Authorization header: never log it)."""

    url: str
    secure: bool
    host: str
    port: int
    head: bytes
    headers: Mapping[str, str]

    def __repr__(self) -> str:  # the head holds the API key
        return f"Target({self.url!r})"


def make_target(url: str, headers: Mapping[str, str]) -> Target:
    """The target of POSTs to `url` with `headers` (Content-Length is added per request)."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if secure else 80)
    host = parts.hostname
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority += f":{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}", "Accept: application/json"]
    lines += ["User-Agent: toa", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
    return Target(url=url, secure=secure, host=host, port=port, head=head, headers=dict(headers))


TICK_S = 0.01
"""Request deadlines are kept per tick of this many seconds, one timer per tick: a timeout
fires up to a tick after its deadline, never before it."""


class _Deadlines:
    """The deadlines of one loop's requests in flight, grouped by tick.

    A timer per request costs a heap entry, a handle and its cancellation on every call, nearly
    always cancelled; here a tick's requests share one timer, and a request that ends in time
    only leaves its tick's set.
    """

    __slots__ = ("_ticks", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ticks: dict[int, set[_Connection]] = {}

    def add(self, connection: _Connection, deadline: float) -> int:
        """Expire `connection` at the first tick not before `deadline`; returns that tick."""
        tick = math.ceil(deadline / TICK_S)
        if tick * TICK_S < deadline:  # float rounding: never early
            tick += 1
        waiting = self._ticks.get(tick)
        if waiting is None:
            waiting = self._ticks[tick] = set()
            self.loop.call_at(tick * TICK_S, self._fire, tick)
        waiting.add(connection)
        return tick

    def discard(self, connection: _Connection, tick: int) -> None:
        waiting = self._ticks.get(tick)
        if waiting is not None:
            waiting.discard(connection)

    def _fire(self, tick: int) -> None:
        for connection in self._ticks.pop(tick, ()):
            connection.expire()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its reply read by httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Reply] | None = None
        self._deadlines: _Deadlines | None = None  # where the request in flight expires
        self._tick = 0  # ... at which tick
        self._reset()

    def _reset(self) -> None:
        self._body: list[bytes] = []
        self._retry_after: bytes | None = None
        self._encoding: bytes | None = None
        self._framed = False  # Content-Length or chunked: the reply does not end with the EOF
        self._headers_done = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is not usable
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"the reply is not valid HTTP/1.1 ({exc})"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed:  # a body delimited by the end
            self._deliver(keep_alive=False)
        elif self._headers_done:
            self._fail(TransportError("the server closed the connection in the middle of a reply"))
        else:
            reason = f": {exc}" if exc else ""
            message = f"the server closed the connection without a reply{reason}"
            self._fail(ConnectionResetError(message))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value):
            self._framed = True
        elif name == b"retry-after":
            self._retry_after = value
        elif name == b"content-encoding":
            self._encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._deliver(keep_alive=self._parser.should_keep_alive())

    # the client side
    def send(self, data: bytes, deadline: float, deadlines: _Deadlines) -> asyncio.Future[Reply]:
        """Write one request; the future holds its reply (TimeoutError past `deadline`, on
        `deadlines`' loop clock)."""
        assert self.transport is not None
        assert self._waiter is None
        if self.closed:
            raise ConnectionResetError("the server closed the connection before the request")
        self._waiter = waiter = deadlines.loop.create_future()
        self._tick = deadlines.add(self, deadline)
        self._deadlines = deadlines
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.closed = True
        self._forget_deadline()
        if self.transport is not None:
            self.transport.abort()

    def expire(self) -> None:
        """The request's deadline has passed (called by its tick)."""
        self._deadlines = None
        self._fail(TimeoutError("no complete reply before the deadline"))

    def _forget_deadline(self) -> None:
        if self._deadlines is not None:
            self._deadlines.discard(self, self._tick)
            self._deadlines = None

    def _deliver(self, *, keep_alive: bool) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        body = b"".join(self._body)
        encoding = self._encoding
        retry_after = self._retry_after
        status = self._parser.get_status_code()
        self._finish()
        if encoding in (b"gzip", b"deflate"):
            try:
                body = zlib.decompress(body, wbits=47)  # gzip or zlib, by the header
            except zlib.error as exc:
                self.close()
                message = f"the {encoding.decode()} body is corrupt ({exc})"
                waiter.set_exception(TransportError(message))
                return
        elif encoding not in (None, b"identity"):
            self.close()
            waiter.set_exception(TransportError(f"unsupported Content-Encoding {encoding!r}"))
            return
        if not keep_alive:
            self.close()
        else:
            self.idle_since = time.monotonic()
        after = None if retry_after is None else retry_after.decode("latin-1")
        waiter.set_result(Reply(status, body, after))

    def _fail(self, error: BaseException) -> None:
        waiter = self._waiter
        self._finish()
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _finish(self) -> None:
        self._forget_deadline()
        self._waiter = None
        self._reset()


class Transport:
    """POSTs to agents' servers. Open it inside a running loop; `close` drops every connection.

    Args:
        connection_limit: requests in flight at most over all servers (0 = no limit here; the
            agents' `max_concurrency` limits already bound them).
    """

    def __init__(self, *, connection_limit: int = 0) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._deadlines: _Deadlines | None = None  # of the loop it runs on
        self._slots = asyncio.Semaphore(connection_limit) if connection_limit > 0 else None
        self._connection_limit = connection_limit
        self._session: Any = None  # aiohttp's, made for the first https:// request
        self._closed = False

    def post(
        self, target: Target, payload: bytes, *, timeout_s: float, connect_timeout_s: float
    ) -> Coroutine[Any, Any, Reply]:
        """POST `payload` to `target`: await it for the reply, whatever its status. (It hands
        back the coroutine that does the work, one frame less on every call.)

        Raises:
            RuntimeError: the transport is closed (at once, before anything is awaited).
            TimeoutError: no complete reply within `timeout_s` (connecting within
                `connect_timeout_s`).
            OSError: the connection failed or ended without a complete reply (`TransportError`
                for a reply that is not HTTP).
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        if target.secure:
            return self._post_tls(target, payload, timeout_s, connect_timeout_s)
        if self._slots is None:
            return self._post_plain(target, payload, timeout_s, connect_timeout_s)
        return self._post_limited(target, payload, timeout_s, connect_timeout_s)

    async def _post_limited(
        self, target: Target, payload: bytes, timeout_s: float, connect_timeout_s: float
    ) -> Reply:
        assert self._slots is not None
        async with self._slots:
            return await self._post_plain(target, payload, timeout_s, connect_timeout_s)

    async def _post_plain(
        self, target: Target, payload: bytes, timeout_s: float, connect_timeout_s: float
    ) -> Reply:
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _Deadlines(loop)
        deadline = loop.time() + timeout_s
        key = (target.host, target.port)
        connection = self._take_idle(key)
        if connection is None:
            connection = await self._connect(target, min(connect_timeout_s, timeout_s))
        self._busy.add(connection)
        try:
            reply = await connection.send(
                target.head + str(len(payload)).encode() + b"\r\n\r\n" + payload,
                deadline,
                deadlines,
            )
        except BaseException:  # failed, timed out or cancelled: never reuse it
            connection.close()
            raise
        finally:
            self._busy.discard(connection)
        if not connection.closed and not self._closed:
            self._idle.setdefault(key, []).append(connection)
        return reply

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used first
            if not connection.closed and now - connection.idle_since < IDLE_S:
                return connection
            connection.close()
        return None

    async def _connect(self, target: Target, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, connection = await loop.create_connection(_Connection, target.host, target.port)
        return connection

    async def _post_tls(
        self, target: Target, payload: bytes, timeout_s: float, connect_timeout_s: float
    ) -> Reply:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connection_limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(connect_timeout_s, timeout_s)
        )
        try:
            async with self._session.post(
                target.url, data=payload, headers=target.headers, timeout=timeout
            ) as response:
                body = await response.read()
                return Reply(response.status, body, response.headers.get("Retry-After"))
        except aiohttp.ClientError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Close every connection (requests in flight fail with a connection error)."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        for connection in list(self._busy):
            connection.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
