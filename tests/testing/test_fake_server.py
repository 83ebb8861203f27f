"""The fake OpenAI-compatible server: shapes, dynamics, determinism, faults and accounting.

The client here is plain aiohttp on purpose: these tests pin the server's behaviour, which the real
TOA client's own tests then rely on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import toa.testing
from toa.testing import (
    FakeServer,
    Faults,
    World,
    build_world,
    decode_quality,
    encode_quality,
    qualities_in,
    running_in_thread,
)

TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer() as fake:
        yield fake


async def post(
    session: aiohttp.ClientSession,
    server: FakeServer,
    body: dict[str, Any],
    *,
    path: str = "/chat/completions",
    timeout: aiohttp.ClientTimeout = TIMEOUT,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST `body`; the status, the JSON answer and the response headers."""
    async with session.post(
        server.base_url + path, json=body, timeout=timeout, headers=headers
    ) as response:
        return response.status, await response.json(), dict(response.headers)


def chat_body(text: str, model: str = "agent_a", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


async def chat_text(
    session: aiohttp.ClientSession, server: FakeServer, text: str, **fields: Any
) -> str:
    status, answer, _ = await post(session, server, chat_body(text, **fields))
    assert status == 200, answer
    content: str = answer["choices"][0]["message"]["content"]
    return content


async def status_of(session: aiohttp.ClientSession, server: FakeServer, **fields: Any) -> int:
    status, _, _ = await post(session, server, chat_body("a question", **fields))
    return status


async def wait_idle(server: FakeServer, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while server.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.in_flight == 0


# ------------------------------------------------------------------------------------ shapes


async def test_chat_completion_shape(session: aiohttp.ClientSession, server: FakeServer) -> None:
    text = "system rules\nWhat is 2 + 2?"
    body = {
        "model": "agent_b",
        "messages": [
            {"role": "system", "content": "system rules"},
            {"role": "user", "content": "What is 2 + 2?"},
        ],
        "temperature": 0.7,
        "top_p": 1.0,
        "stop": ["\n\n"],
    }
    status, answer, headers = await post(session, server, body)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == "agent_b"
    assert isinstance(answer["created"], int)
    [choice] = answer["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    expected, quality = server.world.respond("agent_b", text, 0)
    assert content == expected
    assert decode_quality(content) == quality
    assert answer["usage"] == {
        "prompt_tokens": len(text.split()),
        "completion_tokens": len(content.split()),
        "total_tokens": len(text.split()) + len(content.split()),
    }


async def test_text_completion_shape(session: aiohttp.ClientSession, server: FakeServer) -> None:
    body = {"model": "agent_c", "prompt": "Complete this sentence", "max_tokens": 100}
    status, answer, _ = await post(session, server, body, path="/completions")
    assert status == 200
    assert answer["object"] == "text_completion"
    assert answer["id"].startswith("cmpl-")
    [choice] = answer["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == server.world.respond("agent_c", "Complete this sentence", 0)[0]
    assert answer["usage"]["prompt_tokens"] == 3
    assert server.requests[-1].path == "/v1/completions"


async def test_usage_can_be_omitted(session: aiohttp.ClientSession) -> None:
    async with FakeServer(omit_usage=True) as server:
        status, answer, _ = await post(session, server, chat_body("hello"))
    assert status == 200
    assert "usage" not in answer


async def test_models_health_and_stats_endpoints(
    session: aiohttp.ClientSession, server: FakeServer
) -> None:
    async with session.get(server.base_url + "/models") as response:
        assert response.status == 200
        models = await response.json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["agent_a", "agent_b", "agent_c"]
    assert all(m["object"] == "model" for m in models["data"])
    root = server.base_url.removesuffix("/v1")
    async with session.get(root + "/health") as response:
        assert response.status == 200
    await chat_text(session, server, "hello")
    async with session.get(root + "/stats") as response:
        assert await response.json() == server.stats()


def test_base_url_and_port_need_start() -> None:
    server = FakeServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url


# ------------------------------------------------------------------------------- determinism


async def test_same_seed_same_sequence_gives_same_answers(
    session: aiohttp.ClientSession,
) -> None:
    texts = ["q one", "q two", "q one", f"refine {encode_quality(0.4)}", "q one"]

    async def run(seed: int) -> list[str]:
        async with FakeServer(World.named("helps", seed=seed)) as server:
            return [await chat_text(session, server, t, model="agent_b") for t in texts]

    first, again, other = await run(1), await run(1), await run(2)
    assert first == again
    assert first != other
    assert first[0] != first[2]  # identical unseeded requests are different samples


async def test_identical_unseeded_requests_take_successive_sample_keys(
    session: aiohttp.ClientSession, server: FakeServer
) -> None:
    answers = [await chat_text(session, server, "same question") for _ in range(3)]
    assert len(set(answers)) == 3
    assert answers == [server.world.respond("agent_a", "same question", k)[0] for k in range(3)]


async def test_seed_field_makes_an_answer_reproducible_regardless_of_order(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeServer() as first:
        seeded_first = await chat_text(session, first, "question", seed=7)
    async with FakeServer() as second:
        for _ in range(3):
            await chat_text(session, second, "question")
        await chat_text(session, second, "question", seed=8)
        seeded_later = await chat_text(session, second, "question", seed=7)
        assert await chat_text(session, second, "question", seed=7) == seeded_later
    assert seeded_first == seeded_later == first.world.respond("agent_a", "question", 7)[0]


async def test_faulted_requests_use_no_sample_key(session: aiohttp.ClientSession) -> None:
    async with FakeServer(faults=Faults(script=("500", "429", "503"))) as server:
        for _ in range(3):
            assert await status_of(session, server) != 200
        answer = await chat_text(session, server, "a question")
    assert answer == server.world.respond("agent_a", "a question", 0)[0]


async def test_random_faults_are_deterministic_under_a_seed(
    session: aiohttp.ClientSession,
) -> None:
    async def statuses(seed: int) -> list[int]:
        async with FakeServer(faults=Faults(error_rate=0.5), seed=seed) as server:
            return [await status_of(session, server) for _ in range(24)]

    first = await statuses(3)
    assert first == await statuses(3)
    assert set(first) == {200, 500}
    assert first != await statuses(4)


# ------------------------------------------------------------------------- kinds and stats


async def test_kinds_and_stats_count_every_request_failed_ones_too(
    session: aiohttp.ClientSession,
) -> None:
    refine = f"Improve this answer: {encode_quality(0.5)}"
    aggregate = "Combine: " + " and ".join(encode_quality(q) for q in (0.5, 0.7, 0.2))
    async with FakeServer(faults=Faults(script=("500", "drop"))) as server:
        assert await status_of(session, server, model="agent_c") == 500
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await chat_text(session, server, refine, model="agent_b")
        await chat_text(session, server, "fresh question", model="agent_a")
        await chat_text(session, server, refine, model="agent_a")
        await chat_text(session, server, aggregate, model="agent_c")
        assert await status_of(session, server, model="nobody") == 404
        stats = server.stats()
        assert {k: stats[k] for k in ("total", "by_agent", "by_kind")} == {
            "total": 5,
            "by_agent": {"agent_a": 2, "agent_b": 1, "agent_c": 2},
            "by_kind": {"fresh": 2, "refine": 2, "aggregate": 1},
        }
        assert stats["by_status"] == {"500": 1, "0": 1, "200": 3, "404": 1}
        kinds = [r.kind for r in sorted(server.requests, key=lambda r: r.seq)]
        assert kinds == ["fresh", "refine", "fresh", "refine", "aggregate", ""]
        server.reset_stats()
        assert server.stats() == {
            "total": 0,
            "by_agent": {"agent_a": 0, "agent_b": 0, "agent_c": 0},
            "by_kind": {"fresh": 0, "refine": 0, "aggregate": 0},
            "by_status": {},
        }
        assert server.requests == []


async def test_refinement_follows_the_world(
    session: aiohttp.ClientSession, server: FakeServer
) -> None:
    text = f"Question [[toa-family=0]]\nDraft: {encode_quality(0.3)}"
    content = await chat_text(session, server, text)
    assert qualities_in(text) == [0.3]
    assert decode_quality(content) == server.world.respond("agent_a", text, 0)[1]
    assert server.requests[-1].quality == decode_quality(content)


async def test_request_log_records_body_headers_and_is_bounded(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeServer(request_log_size=2) as server:
        for i in range(3):
            body = chat_body(f"question {i}", seed=i)
            status, _, _ = await post(
                session, server, body, headers={"Authorization": "Bearer sk-test"}
            )
            assert status == 200
        log = server.requests
    assert [r.seq for r in log] == [1, 2]
    last = log[-1]
    assert last.body == chat_body("question 2", seed=2)
    assert last.headers["Authorization"] == "Bearer sk-test"
    assert (last.path, last.agent, last.kind, last.status, last.fault) == (
        "/v1/chat/completions",
        "agent_a",
        "fresh",
        200,
        "ok",
    )


# ------------------------------------------------------------------------------ max_tokens


@pytest.mark.parametrize("max_tokens", [1, 2, 5])
async def test_max_tokens_cuts_filler_but_keeps_the_marker(
    session: aiohttp.ClientSession, server: FakeServer, max_tokens: int
) -> None:
    full, quality = server.world.respond("agent_a", "question", 0)
    assert len(full.split()) > max_tokens
    status, answer, _ = await post(session, server, chat_body("question", max_tokens=max_tokens))
    assert status == 200
    content = answer["choices"][0]["message"]["content"]
    assert len(content.split()) == max_tokens
    assert content.split()[-1] == encode_quality(quality)
    assert full.startswith(content.rsplit(" ", 1)[0]) or max_tokens == 1
    assert decode_quality(content) == quality
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == max_tokens


async def test_max_tokens_large_enough_finishes_with_stop(
    session: aiohttp.ClientSession, server: FakeServer
) -> None:
    full = server.world.respond("agent_a", "question", 0)[0]
    body = chat_body("question", max_tokens=len(full.split()))
    status, answer, _ = await post(session, server, body)
    assert status == 200
    assert answer["choices"][0]["message"]["content"] == full
    assert answer["choices"][0]["finish_reason"] == "stop"


# ----------------------------------------------------------------------------------- faults


def assert_openai_error(answer: dict[str, Any], *, code: str | None = None) -> None:
    assert set(answer) == {"error"}
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["message"]
    assert answer["error"]["code"] == code


async def test_error_rate_gives_http_500(session: aiohttp.ClientSession) -> None:
    async with FakeServer(faults=Faults(error_rate=1.0)) as server:
        status, answer, _ = await post(session, server, chat_body("q"))
    assert status == 500
    assert_openai_error(answer)
    assert answer["error"]["type"] == "server_error"


@pytest.mark.parametrize(("retry_after_s", "header"), [(0.2, "0.2"), (2.0, "2"), (1.5, "1.5")])
async def test_rate_limit_sends_retry_after(
    session: aiohttp.ClientSession, retry_after_s: float, header: str
) -> None:
    faults = Faults(rate_limit_rate=1.0, retry_after_s=retry_after_s)
    async with FakeServer(faults=faults) as server:
        status, answer, headers = await post(session, server, chat_body("q"))
    assert status == 429
    assert headers["Retry-After"] == header
    assert_openai_error(answer, code="rate_limit_exceeded")


async def test_timeout_fault_holds_the_request_for_hang_s(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeServer(faults=Faults(timeout_rate=1.0, hang_s=0.5)) as server:
        with pytest.raises(asyncio.TimeoutError):
            await post(session, server, chat_body("q"), timeout=aiohttp.ClientTimeout(total=0.1))
        await wait_idle(server)  # the client went away: the server ended the handler
        assert server.requests[-1].status == 0
        assert server.requests[-1].fault == "timeout"
        started = time.monotonic()
        status, answer, _ = await post(session, server, chat_body("q"))
        elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed >= 0.45
    # the timed-out request used sample key 0 (it was answered late), this one key 1
    assert answer["choices"][0]["message"]["content"] == server.world.respond("agent_a", "q", 1)[0]


async def test_drop_closes_the_connection_without_a_response(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeServer(faults=Faults(drop_rate=1.0)) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, server, chat_body("q"))
        await wait_idle(server)
        [received] = server.requests
        assert (received.status, received.fault) == (0, "drop")
        assert server.stats()["by_status"] == {"0": 1}
        server.set_faults(Faults())
        assert await status_of(session, server) == 200  # the session recovers


async def test_dead_agents_fail_by_dead_mode(session: aiohttp.ClientSession) -> None:
    async with FakeServer(faults=Faults(dead_agents=frozenset({"agent_b"}))) as server:
        assert await status_of(session, server, model="agent_b") == 503
        assert await status_of(session, server, model="agent_a") == 200
        server.set_faults(Faults(dead_agents=frozenset({"agent_b"}), dead_mode="500"))
        assert await status_of(session, server, model="agent_b") == 500
        server.set_faults(Faults(dead_agents=frozenset({"agent_b"}), dead_mode="drop"))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await status_of(session, server, model="agent_b")
        server.revive_agent("agent_b")
        assert await status_of(session, server, model="agent_b") == 200
        server.kill_agent("agent_c")
        assert server.faults.dead_agents == frozenset({"agent_c"})
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await status_of(session, server, model="agent_c")
        assert server.stats()["by_agent"] == {"agent_a": 1, "agent_b": 4, "agent_c": 1}
        with pytest.raises(ValueError, match="unknown agent"):
            server.kill_agent("nobody")


async def test_script_is_consumed_in_order_before_random_faults(
    session: aiohttp.ClientSession,
) -> None:
    script = ("500", "ok", "429", "503", "400", "401", "403", "context")
    async with FakeServer(faults=Faults(script=script, error_rate=1.0)) as server:
        statuses = [await status_of(session, server) for _ in range(len(script) + 2)]
        assert statuses == [500, 200, 429, 503, 400, 401, 403, 400, 500, 500]
        assert [r.fault for r in server.requests] == [*script, "500", "500"]
        server.set_faults(Faults(script=("ok", "503")))  # a new script starts from its start
        assert [await status_of(session, server) for _ in range(3)] == [200, 503, 200]


async def test_dead_agent_uses_no_script_item(session: aiohttp.ClientSession) -> None:
    faults = Faults(script=("500",), dead_agents=frozenset({"agent_a"}))
    async with FakeServer(faults=faults) as server:
        assert await status_of(session, server, model="agent_a") == 503
        assert await status_of(session, server, model="agent_b") == 500
        assert await status_of(session, server, model="agent_b") == 200


@pytest.mark.parametrize(
    ("item", "status", "code"),
    [
        ("400", 400, None),
        ("401", 401, "invalid_api_key"),
        ("403", 403, "permission_denied"),
        ("503", 503, "service_unavailable"),
        ("context", 400, "context_length_exceeded"),
    ],
)
async def test_scripted_error_shapes(
    session: aiohttp.ClientSession, item: str, status: int, code: str | None
) -> None:
    async with FakeServer(faults=Faults(script=(item,))) as server:
        got, answer, _ = await post(session, server, chat_body("one two three", max_tokens=100))
    assert got == status
    assert_openai_error(answer, code=code)
    if item == "context":
        message = answer["error"]["message"]
        assert message.startswith("This model's maximum context length is 2048 tokens.")
        assert "you requested 103 tokens (3 in the messages, 100 in the completion)" in message
        assert answer["error"]["type"] == "invalid_request_error"


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown script items"):
        Faults(script=("ok", "418"))
    with pytest.raises(ValueError, match="at most 1"):
        Faults(error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=-0.1)
    with pytest.raises(ValueError, match="dead_mode"):
        Faults(dead_mode="404")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown agent"):
        FakeServer(faults=Faults(dead_agents=frozenset({"nobody"})))
    assert Faults(script=["ok"]).script == ("ok",)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ rejected requests


async def test_unknown_model_is_404(session: aiohttp.ClientSession, server: FakeServer) -> None:
    status, answer, _ = await post(session, server, chat_body("q", model="gpt-nobody"))
    assert status == 404
    assert_openai_error(answer, code="model_not_found")
    assert answer["error"]["param"] == "model"
    assert server.requests[-1].agent == "gpt-nobody"
    assert server.requests[-1].fault == "invalid"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", b"{not json"),
        ("/chat/completions", b"[1, 2]"),
        ("/chat/completions", b'{"model": "agent_a"}'),
        ("/chat/completions", b'{"model": "agent_a", "messages": []}'),
        ("/chat/completions", b'{"model": "agent_a", "messages": [{"role": "user"}]}'),
        ("/chat/completions", b'{"messages": [{"role": "user", "content": "q"}]}'),
        ("/completions", b'{"model": "agent_a"}'),
        ("/completions", b'{"model": "agent_a", "prompt": ["a", "b"]}'),
        ("/completions", b'{"model": "agent_a", "prompt": "q", "max_tokens": 0}'),
        ("/completions", b'{"model": "agent_a", "prompt": "q", "seed": "x"}'),
        ("/completions", b'{"model": "agent_a", "prompt": "q", "stream": true}'),
    ],
)
async def test_malformed_requests_are_400(
    session: aiohttp.ClientSession, server: FakeServer, path: str, body: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    async with session.post(server.base_url + path, data=body, headers=headers) as response:
        assert response.status == 400
        assert_openai_error(await response.json())
    stats = server.stats()
    assert stats["total"] == 0  # rejected before reaching an agent
    assert stats["by_status"] == {"400": 1}


# ---------------------------------------------------------------------- concurrency and time


async def test_in_flight_accounting_shows_a_client_limit(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeServer(latency_ms=150) as server:
        limit = asyncio.Semaphore(3)

        async def limited(model: str) -> None:
            async with limit:
                assert await status_of(session, server, model=model) == 200

        await asyncio.gather(*(limited(m) for m in ["agent_a", "agent_b"] * 5))
        assert server.max_in_flight == 3
        assert server.in_flight == 0
        assert max(server.max_in_flight_by_agent.values()) <= 3

        server.reset_stats()
        assert server.max_in_flight == 0
        await asyncio.gather(*(status_of(session, server, model="agent_c") for _ in range(8)))
        assert server.max_in_flight == 8
        assert server.max_in_flight_by_agent == {"agent_a": 0, "agent_b": 0, "agent_c": 8}
        assert server.in_flight_by_agent == {"agent_a": 0, "agent_b": 0, "agent_c": 0}


async def test_latency_is_applied_per_agent(session: aiohttp.ClientSession) -> None:
    async with FakeServer(latency_ms=(200.0, 250.0), agent_latency_ms={"agent_b": 0.0}) as server:
        started = time.monotonic()
        await chat_text(session, server, "q", model="agent_a")
        slow = time.monotonic() - started
        started = time.monotonic()
        await chat_text(session, server, "q", model="agent_b")
        fast = time.monotonic() - started
    assert slow >= 0.19
    assert fast < slow


async def test_close_ends_hanging_requests(session: aiohttp.ClientSession) -> None:
    server = FakeServer(faults=Faults(timeout_rate=1.0, hang_s=30.0))
    await server.start()
    request = asyncio.create_task(status_of(session, server))
    while server.in_flight == 0:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await server.close()
    assert time.monotonic() - started < 2.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await request
    assert server.in_flight == 0
    assert server.requests[-1].status == 0


# ---------------------------------------------------------------------- threads and processes


def test_running_in_thread_serves_sync_code() -> None:
    with running_in_thread(faults=Faults(script=("ok",))) as server:
        request = urllib.request.Request(
            server.base_url + "/chat/completions",
            data=json.dumps(chat_body("sync question", model="agent_c")).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert response.status == 200
        assert answer["choices"][0]["message"]["content"].startswith("agent_c: ")
        assert server.stats()["by_agent"]["agent_c"] == 1
        url = server.base_url
    with pytest.raises(OSError, match="refused"):
        urllib.request.urlopen(url + "/models", timeout=5)


def test_build_world_names_agents_as_the_config_does() -> None:
    base = World.named("helps", seed=5)
    world = build_world("helps", "agent_c, writer ,critic,judge,extra", 5)
    assert world.agent_names == ("agent_c", "writer", "critic", "judge", "extra")
    assert world.seed == 5
    assert world.profile("agent_c") == base.profile("agent_c")
    renamed = {"writer": "agent_a", "critic": "agent_b", "judge": "agent_c", "extra": "agent_a"}
    for name, source in renamed.items():
        profile = world.profile(name)
        assert profile.fresh_mean == base.profile(source).fresh_mean
        assert profile.refine_gain == base.profile(source).refine_gain
    assert build_world("hurts", None, 0) == World.named("hurts")
    assert build_world("dominant", ["x"], 1).agent_names == ("x",)
    with pytest.raises(ValueError, match="unique"):
        build_world("helps", "a,a", 0)
    with pytest.raises(ValueError, match="unknown world"):
        build_world("nowhere", None, 0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_writes_port_file_and_stops_on_signal(tmp_path: Path, signum: int) -> None:
    port_file = tmp_path / "port"
    code = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "from toa.testing.serve import serve;"
        f"serve(port=0, agents='writer,agent_c', seed=3, port_file={str(port_file)!r})"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the server never wrote its port file"
                time.sleep(0.02)
            port = int(port_file.read_text())
            url = f"http://127.0.0.1:{port}/v1/models"
            with urllib.request.urlopen(url, timeout=10) as response:
                models = json.load(response)
            assert [m["id"] for m in models["data"]] == ["writer", "agent_c"]
            os.kill(process.pid, signum)
            _, stderr = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr
    assert f"listening on http://127.0.0.1:{port}/v1" in stderr


def test_public_names_are_sorted_and_exported() -> None:
    assert toa.testing.__all__ == sorted(toa.testing.__all__)
    for name in ("FakeServer", "Faults", "ReceivedRequest", "build_world", "running_in_thread"):
        assert name in toa.testing.__all__
