"""The agent client against the real fake server on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from toa.agents import AgentPool, AgentSpec, BreakerPolicy, RetryPolicy
from toa.errors import (
    AgentConnectionError,
    AgentUnavailableError,
    AuthenticationError,
    ConfigError,
    ContextLengthError,
    InvalidRequestError,
    ServerError,
)
from toa.testing import FakeServer, Faults
from toa.types import Message, SamplingParams

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.01)


def agent(server: FakeServer | list[FakeServer], **kw: Any) -> AgentSpec:
    servers = server if isinstance(server, list) else [server]
    fields: dict[str, Any] = {
        "name": "agent_a",
        "base_urls": tuple(s.base_url for s in servers),
        "model": "agent_a",
        "retry": FAST_RETRY,
        "timeout_s": 5.0,
    }
    fields.update(kw)
    return AgentSpec(**fields)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer() as s:
        yield s


async def test_chat_request_as_received(server: FakeServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("TOA_TEST_KEY", "sk-test-123")
    spec = agent(
        server,
        api_key_env="TOA_TEST_KEY",
        sampling=SamplingParams(temperature=0.2, max_tokens=50, stop=("\n\n",), seed=7),
    )
    async with AgentPool([spec]) as pool:
        out = await pool["agent_a"].generate([Message("user", "What is 2+2?")])
    (received,) = server.requests
    assert received.path == "/v1/chat/completions"
    assert received.body == {
        "model": "agent_a",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "temperature": 0.2,
        "top_p": 1.0,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "seed": 7,
    }
    assert received.headers["Authorization"] == "Bearer sk-test-123"
    assert out.agent == "agent_a"
    assert out.text.startswith("agent_a:")
    assert out.endpoint == server.base_url
    assert out.usage.prompt_tokens == 3  # words, as the fake server counts
    assert out.usage.completion_tokens is not None
    assert out.attempts == 1


async def test_completion_mode_request_as_received(server: FakeServer) -> None:
    spec = agent(server, mode="completion", prompt_template="Question: {prompt}\nAnswer:")
    async with AgentPool([spec]) as pool:
        out = await pool["agent_a"].generate("Name a colour.")
    (received,) = server.requests
    assert received.path == "/v1/completions"
    assert received.body["prompt"] == "Question: Name a colour.\nAnswer:"
    assert "messages" not in received.body
    assert "Authorization" not in received.headers
    assert out.text.startswith("agent_a:")


async def test_missing_usage_is_reported_missing() -> None:
    async with FakeServer(omit_usage=True) as s, AgentPool([agent(s)]) as pool:
        out = await pool["agent_a"].generate("hi")
    assert out.usage.missing
    assert out.usage.prompt_tokens is None


async def test_replicas_balanced_by_least_in_flight() -> None:
    async with FakeServer(latency_ms=40) as s1, FakeServer(latency_ms=40) as s2:
        async with AgentPool([agent([s1, s2])]) as pool:
            client = pool["agent_a"]
            await asyncio.gather(*(client.generate(f"q{i}") for i in range(40)))
        assert len(s1.requests) == 20
        assert len(s2.requests) == 20


async def test_least_in_flight_prefers_the_idle_replica() -> None:
    # A slow replica keeps its requests longer, so the fast one takes more of a steady stream.
    async with FakeServer(latency_ms=200) as slow, FakeServer(latency_ms=5) as fast:
        async with AgentPool([agent([slow, fast], max_concurrency=4)]) as pool:
            client = pool["agent_a"]
            await asyncio.gather(*(client.generate(f"q{i}") for i in range(40)))
        assert len(fast.requests) > 3 * len(slow.requests)


async def test_concurrency_limit_bounds_requests_in_flight() -> None:
    async with FakeServer(latency_ms=30) as s:
        async with AgentPool([agent(s, max_concurrency=3)]) as pool:
            await asyncio.gather(*(pool["agent_a"].generate(f"q{i}") for i in range(24)))
        assert s.max_in_flight == 3


async def test_requests_per_minute_limit_spaces_requests() -> None:
    async with FakeServer() as s, AgentPool([agent(s, requests_per_minute=1200)]) as pool:
        started = time.monotonic()
        await asyncio.gather(*(pool["agent_a"].generate(f"q{i}") for i in range(5)))
        # five requests spaced 50 ms apart cannot finish in less than 200 ms
        assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("fault", ["500", "503", "timeout", "drop"])
async def test_transient_failures_are_retried(fault: str) -> None:
    faults = Faults(script=(fault, fault, "ok"), hang_s=2.0)
    async with FakeServer(faults=faults) as s, AgentPool([agent(s, timeout_s=0.3)]) as pool:
        out = await pool["agent_a"].generate("hi")
        stats = pool["agent_a"].stats
    assert out.attempts == 3
    assert s.stats()["total"] == 3
    assert (stats.attempts, stats.retries, stats.succeeded) == (3, 2, 1)


async def test_retry_after_is_honoured() -> None:
    faults = Faults(script=("429", "ok"), retry_after_s=0.3)
    async with FakeServer(faults=faults) as s, AgentPool([agent(s)]) as pool:
        started = time.monotonic()
        out = await pool["agent_a"].generate("hi")
        waited = time.monotonic() - started
    assert out.attempts == 2
    assert waited >= 0.3  # backoff alone would be ~1 ms


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("400", InvalidRequestError),
        ("401", AuthenticationError),
        ("403", AuthenticationError),
        ("context", ContextLengthError),
    ],
)
async def test_fatal_errors_are_not_retried(fault: str, error: type[Exception]) -> None:
    async with FakeServer(faults=Faults(script=(fault, "ok"))) as s:
        async with AgentPool([agent(s)]) as pool:
            with pytest.raises(error) as caught:
                await pool["agent_a"].generate("hi")
        assert s.stats()["total"] == 1
    text = str(caught.value)
    assert "agent 'agent_a'" in text
    assert s.base_url in text
    assert "HTTP 4" in text


async def test_gives_up_after_max_attempts() -> None:
    async with FakeServer(faults=Faults(error_rate=1.0)) as s:
        spec = agent(s, breaker=BreakerPolicy(failure_threshold=100))
        async with AgentPool([spec]) as pool:
            with pytest.raises(ServerError) as caught:
                await pool["agent_a"].generate("hi")
        assert s.stats()["total"] == FAST_RETRY.max_attempts
    assert any("gave up after 4 attempts" in n for n in caught.value.__notes__)


async def test_breaker_opens_then_probe_closes_it() -> None:
    breaker = BreakerPolicy(failure_threshold=2, cooldown_s=0.3)
    async with FakeServer() as s:
        s.kill_agent("agent_a")
        async with AgentPool([agent(s, breaker=breaker)]) as pool:
            client = pool["agent_a"]
            with pytest.raises(AgentUnavailableError) as caught:
                await client.generate("hi")  # two failures open the breaker mid-retries
            assert isinstance(caught.value.__cause__, ServerError)
            assert s.stats()["total"] == 2
            assert not client.is_available()
            with pytest.raises(AgentUnavailableError):
                await client.generate("again")  # refused at once: nothing sent
            assert s.stats()["total"] == 2
            s.revive_agent("agent_a")
            await asyncio.sleep(0.35)
            assert client.is_available()
            out = await client.generate("after cool-down")  # the probe
            assert out.attempts == 1
            assert client.endpoints[0].breaker.state.value == "closed"


async def test_dead_replica_is_routed_around() -> None:
    breaker = BreakerPolicy(failure_threshold=2, cooldown_s=60)
    async with FakeServer() as good, FakeServer() as bad:
        bad.kill_agent("agent_a")
        async with AgentPool([agent([bad, good], breaker=breaker)]) as pool:
            client = pool["agent_a"]
            outs = await asyncio.gather(*(client.generate(f"q{i}") for i in range(20)))
            # requests already in flight to the bad replica fail and are retried on the good one
            assert all(o.endpoint == good.base_url for o in outs)
            assert client.endpoints[0].breaker.state.value == "open"
            sent_to_bad = bad.stats()["total"]
            assert 2 <= sent_to_bad <= 10
            await asyncio.gather(*(client.generate(f"r{i}") for i in range(20)))
            assert bad.stats()["total"] == sent_to_bad  # out of rotation once open


async def test_agents_sharing_one_url_have_their_own_breakers(caplog: Any) -> None:
    """One server for three agents: the dead one's breaker opens, the others keep working."""
    breaker = BreakerPolicy(failure_threshold=2, cooldown_s=60)
    async with FakeServer() as s:
        s.kill_agent("agent_b")
        specs = [agent(s, name=name, model=name, breaker=breaker) for name in s.world.agent_names]
        async with AgentPool(specs) as pool:
            caplog.set_level(logging.INFO, logger="toa.agents")

            async def ask(name: str, i: int) -> str:
                try:
                    await pool[name].generate(f"{name} q{i}")
                except AgentUnavailableError as error:
                    return f"unavailable:{error.agent}"
                return "ok"

            outcomes = await asyncio.gather(
                *(ask(name, i) for i in range(30) for name in ("agent_a", "agent_b", "agent_c"))
            )
            by_agent = {
                name: outcomes[k::3] for k, name in enumerate(("agent_a", "agent_b", "agent_c"))
            }
            assert set(by_agent["agent_a"]) == set(by_agent["agent_c"]) == {"ok"}
            assert set(by_agent["agent_b"]) == {"unavailable:agent_b"}
            states = {name: pool[name].endpoints[0].breaker.state.value for name in by_agent}
            assert states == {"agent_a": "closed", "agent_b": "open", "agent_c": "closed"}
            assert pool["agent_a"].is_available()
            assert not pool["agent_b"].is_available()
    [opened] = [r.getMessage() for r in caplog.records if "taken out" in r.getMessage()]
    assert opened.startswith(f"agent 'agent_b' at {s.base_url} taken out"), opened


async def test_unreachable_agent_reports_unavailable_without_hanging() -> None:
    async with FakeServer() as s:
        url = s.base_url
    # The server is closed: connections are refused.
    spec = AgentSpec(
        name="gone",
        base_urls=(url,),
        model="agent_a",
        retry=FAST_RETRY,
        breaker=BreakerPolicy(failure_threshold=3, cooldown_s=30),
    )
    async with AgentPool([spec]) as pool:
        with pytest.raises(AgentUnavailableError) as caught:
            await asyncio.wait_for(pool["gone"].generate("hi"), timeout=5)
        assert isinstance(caught.value.__cause__, AgentConnectionError)
        assert not pool["gone"].is_available()
        assert 29 < pool["gone"].retry_in_s() <= 30
        assert "next probe" in str(caught.value)


async def test_missing_key_variable_is_a_config_error(monkeypatch: Any) -> None:
    monkeypatch.delenv("TOA_NO_SUCH_KEY", raising=False)
    spec = agent([], base_urls=("http://127.0.0.1:9/v1",), api_key_env="TOA_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="TOA_NO_SUCH_KEY"):
        async with AgentPool([spec]):
            pass


def _echo_key_app() -> web.Application:
    """Echoes the Authorization header in its errors, as some hosted APIs do: 500, 500, then 401."""
    seen = [0]

    async def handler(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "")
        seen[0] += 1
        status = 500 if seen[0] <= 2 else 401
        return web.json_response(
            {"error": {"message": f"Incorrect API key provided: {key}"}}, status=status
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    return app


async def test_key_never_in_logs_errors_or_reprs(monkeypatch: Any, caplog: Any) -> None:
    secret = "sk-very-secret-0123456789"
    monkeypatch.setenv("TOA_SECRET_KEY", secret)
    runner = web.AppRunner(_echo_key_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    try:
        spec = agent([], base_urls=(f"http://127.0.0.1:{port}/v1",), api_key_env="TOA_SECRET_KEY")
        async with AgentPool([spec]) as pool:
            client = pool["agent_a"]
            with pytest.raises(AuthenticationError) as caught:
                await client.generate("hi")
            errors.append(caught.value)
            texts = [repr(client), repr(spec), repr(pool), repr(client.stats)]
    finally:
        await runner.cleanup()
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if secret in t]
    assert "***" in str(errors[0])


def _scoring_app(seen: list[dict[str, Any]]) -> web.Application:
    """A JSON scoring endpoint: fails once with 503, then answers."""

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.json())
        if len(seen) == 1:
            return web.json_response({"error": {"message": "warming up"}}, status=503)
        return web.json_response({"scores": [0.5, 0.25]})

    app = web.Application()
    app.router.add_post("/score", handler)
    return app


async def test_post_json_shares_retries_and_breakers() -> None:
    seen: list[dict[str, Any]] = []
    runner = web.AppRunner(_scoring_app(seen), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        spec = agent([], base_urls=(f"http://127.0.0.1:{port}",), name="rm", model="rm")
        async with AgentPool([spec]) as pool:
            reply = await pool["rm"].post_json("/score", {"texts": ["a", "b"]})
            stats = pool["rm"].stats
    finally:
        await runner.cleanup()
    assert reply == {"scores": [0.5, 0.25]}
    assert seen == [{"texts": ["a", "b"]}] * 2
    assert (stats.calls, stats.attempts, stats.retries) == (1, 2, 1)
