"""The plain-HTTP transport against scripted HTTP/1.1 servers on loopback: keep-alive reuse,
framing (Content-Length, chunked, end of connection), failures that must never be retried here
or reused, timeouts, cancellation, the connection limit."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from toa.agents import transport as transport_module
from toa.agents.transport import Reply, Target, Transport, TransportError, make_target

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Gets a request's body and the writer; writes a reply; returns whether to keep the connection."""


class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 whose replies a test writes byte by byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.heads: list[bytes] = []
        self.open_now = 0
        self.most_open = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def target(self, path: str = "/v1/chat/completions", **headers: str) -> Target:
        return make_target(f"http://127.0.0.1:{self.port}{path}", headers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.heads.append(head)
                self.requests.append(body)
                keep = await self.handler(body, writer)
                await writer.drain()
                if not keep:
                    return
        finally:
            self.open_now -= 1
            writer.close()


def reply(body: bytes, *, status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def echo(body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(reply(body))
    return True


async def post(transport: Transport, target: Target, payload: bytes = b"{}", **kw: float) -> Reply:
    return await transport.post(
        target, payload, timeout_s=kw.get("timeout_s", 5.0), connect_timeout_s=2.0
    )


async def test_keep_alive_reuses_one_connection_and_sends_the_headers() -> None:
    async with ScriptedServer(echo) as server:
        transport = Transport()
        target = server.target(Authorization="Bearer sk-secret")
        for i in range(5):
            answer = await post(transport, target, b'{"n": %d}' % i)
            assert (answer.status, answer.body) == (200, b'{"n": %d}' % i)
        await transport.close()
    assert server.connections == 1
    head = server.heads[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Authorization: Bearer sk-secret\r\n" in head
    assert "sk-secret" not in repr(target)


async def test_concurrent_requests_each_get_their_own_reply() -> None:
    async def slow_echo(body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.01)
        writer.write(reply(body))
        return True

    async with ScriptedServer(slow_echo) as server:
        transport = Transport()
        target = server.target()
        for _ in range(2):  # the second round reuses the first round's connections
            bodies = [b'{"i": %d}' % i for i in range(40)]
            answers = await asyncio.gather(*(post(transport, target, b) for b in bodies))
            assert [a.body for a in answers] == bodies
        await transport.close()
    assert server.connections == 40


async def test_chunked_and_gzip_bodies_and_retry_after() -> None:
    async def chunked(body: bytes, writer: asyncio.StreamWriter) -> bool:
        packed = gzip.compress(b'{"text": "' + b"x" * 5000 + b'"}')
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Encoding: gzip\r\nRetry-After: 7\r\n\r\n"
        )
        for start in range(0, len(packed), 100):
            part = packed[start : start + 100]
            writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async with ScriptedServer(chunked) as server:
        transport = Transport()
        for _ in range(2):
            answer = await post(transport, server.target())
            assert answer.status == 429
            assert answer.retry_after == "7"
            assert answer.body == b'{"text": "' + b"x" * 5000 + b'"}'
        await transport.close()
    assert server.connections == 1


async def test_a_reply_ended_by_the_connection_and_connection_close() -> None:
    async def until_eof(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        return False

    async with ScriptedServer(until_eof) as server:
        transport = Transport()
        for i in range(3):
            assert (await post(transport, server.target(), b"[%d]" % i)).body == b"[%d]" % i
        await transport.close()
    assert server.connections == 3  # never reused


async def test_connection_close_header_is_not_reused_even_with_a_length() -> None:
    async def closing(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(body, extra="Connection: close\r\n"))
        return True  # the server would keep it: the client must not

    async with ScriptedServer(closing) as server:
        transport = Transport()
        for _ in range(3):
            assert (await post(transport, server.target())).status == 200
        await transport.close()
    assert server.connections == 3


async def test_closed_without_a_reply_fails_once_and_is_never_resent() -> None:
    async def drop(body: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with ScriptedServer(drop) as server:
        transport = Transport()
        with pytest.raises(ConnectionResetError, match="without a reply"):
            await post(transport, server.target())
        await transport.close()
    assert len(server.requests) == 1  # paid once: retrying is the client's decision


async def test_a_reply_cut_short_and_a_reply_that_is_not_http() -> None:
    async def cut(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
        return False

    async def garbage(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        return True

    async with ScriptedServer(cut) as server:
        transport = Transport()
        with pytest.raises(TransportError, match="middle of a reply"):
            await post(transport, server.target())
        await transport.close()
    async with ScriptedServer(garbage) as server:
        transport = Transport()
        with pytest.raises(TransportError, match="not valid HTTP"):
            await post(transport, server.target())
        await transport.close()


async def test_a_timeout_closes_the_connection() -> None:
    first = asyncio.Event()

    async def stall_once(body: bytes, writer: asyncio.StreamWriter) -> bool:
        if not first.is_set():
            first.set()
            await asyncio.sleep(2)  # the client gave up by now
        writer.write(reply(body))
        return True

    async with ScriptedServer(stall_once) as server:
        transport = Transport()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await post(transport, server.target(), timeout_s=0.2)
        assert loop.time() - started < 1.5
        assert (await post(transport, server.target(), b"[2]")).body == b"[2]"
        await transport.close()
    assert server.connections == 2  # the timed-out connection was not reused


async def test_timeouts_fire_after_their_deadline_and_answers_in_time_are_kept() -> None:
    """Deadlines share one timer per tick (`TICK_S`): a request times out no earlier than its
    `timeout_s` and about a tick later at most; one answered in time is not touched by its
    tick's timer."""

    async def by_body(body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(float(body))
        writer.write(reply(body))
        return True

    async with ScriptedServer(by_body) as server:
        transport = Transport()
        loop = asyncio.get_running_loop()
        target = server.target()

        async def timed(delay: str, timeout_s: float) -> tuple[float, Reply | BaseException]:
            started = loop.time()
            try:
                answer: Reply | BaseException = await post(
                    transport, target, delay.encode(), timeout_s=timeout_s
                )
            except TimeoutError as exc:
                answer = exc
            return loop.time() - started, answer

        runs = await asyncio.gather(
            *(timed("5", 0.1 + 0.013 * i) for i in range(6)),  # each one times out
            *(timed("0.05", 0.1 + 0.013 * i) for i in range(6)),  # each one is answered
        )
        await transport.close()
    for i, (took, answer) in enumerate(runs[:6]):
        assert isinstance(answer, TimeoutError)
        assert 0.1 + 0.013 * i <= took < 0.1 + 0.013 * i + 0.5
    assert all(isinstance(a, Reply) and a.body == b"0.05" for _, a in runs[6:])


def test_the_transport_runs_on_uvloop() -> None:
    """An application on uvloop (uvicorn's default) gets the same transport: its TCP transport
    is not an `asyncio.Transport` subclass, and its clock is its own."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[list[bytes], int, bool]:
        async with ScriptedServer(echo) as server:
            transport = Transport()
            bodies = [(await post(transport, server.target(), b"[%d]" % i)).body for i in range(3)]
            stalled = ScriptedServer(lambda body, writer: asyncio.sleep(5, result=True))
            async with stalled:
                try:
                    await post(transport, stalled.target(), timeout_s=0.1)
                except TimeoutError:
                    timed_out = True
                else:
                    timed_out = False
            await transport.close()
        return bodies, server.connections, timed_out

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        bodies, connections, timed_out = runner.run(main())
    assert bodies == [b"[0]", b"[1]", b"[2]"]
    assert connections == 1
    assert timed_out


async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool() -> None:
    async def slow(body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.3)
        writer.write(reply(body))
        return True

    async with ScriptedServer(slow) as server:
        transport = Transport()
        task = asyncio.ensure_future(post(transport, server.target(), b"[1]"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await post(transport, server.target(), b"[2]")).body == b"[2]"
        await transport.close()
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def once(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(body))
        return False  # keep-alive in the headers, but the server closes it afterwards

    async with ScriptedServer(once) as server:
        transport = Transport()
        for i in range(3):
            assert (await post(transport, server.target(), b"[%d]" % i)).status == 200
            await asyncio.sleep(0.05)  # the close reaches the client
        await transport.close()
    assert server.connections == 3


async def test_idle_connections_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport_module, "IDLE_S", 0.0)
    async with ScriptedServer(echo) as server:
        transport = Transport()
        for _ in range(2):
            assert (await post(transport, server.target())).status == 200
        await transport.close()
    assert server.connections == 2


async def test_connection_limit_bounds_requests_in_flight() -> None:
    async def slow_echo(body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(reply(body))
        return True

    async with ScriptedServer(slow_echo) as server:
        transport = Transport(connection_limit=2)
        await asyncio.gather(*(post(transport, server.target()) for _ in range(10)))
        await transport.close()
    assert server.most_open <= 2


async def test_refused_connection_is_an_os_error() -> None:
    async with ScriptedServer(echo) as server:
        port = server.port
    await asyncio.sleep(0.05)
    transport = Transport()
    with pytest.raises(OSError):  # noqa: PT011 (refused: the errno's class varies)
        await post(transport, make_target(f"http://127.0.0.1:{port}/v1", {}))
    await transport.close()


def test_targets() -> None:
    target = make_target("http://[::1]:8000/base/v1/chat?x=1", {"Authorization": "Bearer k"})
    assert (target.host, target.port, target.secure) == ("::1", 8000, False)
    assert target.head.startswith(b"POST /base/v1/chat?x=1 HTTP/1.1\r\nHost: [::1]:8000\r\n")
    assert target.head.endswith(b"Authorization: Bearer k\r\nContent-Length: ")
    assert "Bearer" not in repr(target)
    plain = make_target("http://example.org/v1", {})
    assert (plain.port, b"Host: example.org\r\n" in plain.head) == (80, True)
    assert make_target("https://api.example.org/v1", {}).port == 443
    with pytest.raises(ValueError, match="not an http"):
        make_target("ftp://example.org/v1", {})


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_https_goes_through_aiohttp_with_certificate_checks(tmp_path: Path) -> None:
    """An https:// endpoint is served by aiohttp's TLS: a self-signed certificate is refused as
    a connection error (the key is never sent in clear, nothing is trusted by default)."""
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)]
    subprocess.run(
        [*command, "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    transport = Transport()
    try:
        with pytest.raises(TransportError, match=r"(?i)certificate"):
            await post(transport, make_target(f"https://127.0.0.1:{port}/v1", {}))
    finally:
        await transport.close()
        server.close()
