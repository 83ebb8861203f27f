"""`toa serve` end to end with the official `openai` client, over the fake server on loopback.

The server runs in a thread of this process (`serve` on its own event loop) for most tests, and
as a real `toa serve` process for the SIGTERM drain; the fake server's request log shows what
reached the agents.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from toa.config import load_config
from toa.errors import ConfigError
from toa.serve import check_bind, serve
from toa.testing import FakeServer, Faults, read_request_log, running_in_thread

pytestmark = pytest.mark.timeout(120)

AGENTS = ("agent_a", "agent_b", "agent_c")
KEY_ENV = "TOA_TEST_SERVE_KEY"


def _config(path: Path, base_url: str, *, serve_section: str = "", budget: int = 4) -> Path:
    agents = "".join(
        f"  - {{name: {n}, model: {n}, base_url: '{base_url}', timeout_s: 10, "
        "retry: {max_attempts: 1}, breaker: {failure_threshold: 2, cooldown_s: 30}}\n"
        for n in AGENTS
    )
    path.write_text(
        f"agents:\n{agents}reward: {{type: simulated}}\n"
        f"strategy: {{name: toa, budget: {budget}, prior: {{source: none}}}}\n"
        f"{serve_section}seed: 1\n",
        encoding="utf-8",
    )
    return path


@contextmanager
def serving(config: Path, store: Path, **kwargs: Any) -> Iterator[str]:
    """`serve` in a thread of its own; yields the base URL, stops it (clean stop) after."""
    settings = load_config(config)
    box: queue.Queue[object] = queue.Queue()
    loop = asyncio.new_event_loop()
    events: list[asyncio.Event] = []

    async def main() -> None:
        stop = asyncio.Event()
        events.append(stop)
        await serve(settings, serve_dir=store, port=0, stop=stop, ready=box.put, **kwargs)

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # handed to the test thread
            box.put(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    url = box.get(timeout=30)
    if isinstance(url, BaseException):
        raise url
    try:
        yield str(url)
    finally:
        loop.call_soon_threadsafe(events[0].set)
        thread.join(30)


_OPEN: list[openai.OpenAI] = []


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)
    _OPEN.append(client)  # closed after the test (its connections would leak into later ones)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _results(store: Path) -> list[dict[str, Any]]:
    lines = (store / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _stored(store: Path, prompt_id: str) -> dict[str, Any]:
    from toa.store.run_store import RunStore

    with RunStore.open_readonly(store / "store.sqlite") as reader:
        for pid, _status, line in reader.iter_results():
            if pid == prompt_id:
                return dict(json.loads(line))
    raise AssertionError(f"{prompt_id} is not stored")


ASK = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeServer]:
    with running_in_thread(request_log_path=tmp_path / "requests.jsonl", seed=3) as server:
        yield server


def test_a_plain_request_n_best_streaming_strategies_tree_and_export(
    tmp_path: Path, fake: FakeServer
) -> None:
    config = _config(tmp_path / "config.yaml", fake.base_url)
    store = tmp_path / "serve"
    with serving(config, store) as url:
        client = _client(url)
        models = [m.id for m in client.models.list()]
        assert models[:2] == ["toa", "toa:toa"]
        assert {"toa:random", "toa:ensemble", *AGENTS} <= set(models)

        reply = client.chat.completions.create(model="toa", messages=ASK)  # type: ignore[arg-type]
        toa = reply.model_extra["toa"]  # type: ignore[index]
        row = _stored(store, toa["prompt_id"])
        assert reply.id == f"chatcmpl-{toa['prompt_id']}"
        assert reply.choices[0].message.content == row["best"]["response"]
        assert toa["agent"] == row["best"]["agent"]
        assert toa["reward"] == row["best"]["reward"]
        assert (toa["strategy"], toa["budget"]) == ("toa", 4)
        # usage: every internal generation, exactly what the store accounted
        assert reply.usage is not None
        assert reply.usage.prompt_tokens == row["compute"]["prompt_tokens"] > 0
        assert reply.usage.completion_tokens == row["compute"]["completion_tokens"] > 0
        assert toa["reward_usage"]["reward_calls"] == row["compute"]["reward_calls"] == 4
        assert "tree" not in toa

        three = client.chat.completions.create(model="toa", messages=ASK, n=3)  # type: ignore[arg-type]
        texts = [c.message.content for c in three.choices]
        assert len(texts) == 3
        assert len(set(texts)) == 3
        rewards = [c["reward"] for c in three.model_extra["toa"]["choices"]]  # type: ignore[index]
        assert rewards == sorted(rewards, reverse=True)

        stream = client.chat.completions.create(
            model="toa:ensemble",
            messages=ASK,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"toa": {"budget": 3, "return_tree": True}},
        )
        pieces, usage, extension = [], None, None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
            extension = (chunk.model_extra or {}).get("toa") or extension
        assert extension is not None
        row = _stored(store, extension["prompt_id"])
        assert "".join(pieces) == row["best"]["response"]
        assert (row["strategy"], row["budget"], row["compute"]["calls"]) == ("ensemble", 3, 3)
        assert usage is not None
        assert (
            usage.total_tokens
            == row["compute"]["prompt_tokens"] + row["compute"]["completion_tokens"]
        )
        tree = extension["tree"]
        assert [n["kind"] for n in tree["nodes"]].count("response") == 3

        chosen = client.chat.completions.create(
            model="toa",
            messages=ASK,  # type: ignore[arg-type]
            extra_body={"toa": {"strategy": "random", "budget": 2}},
        )
        row = _stored(store, chosen.model_extra["toa"]["prompt_id"])  # type: ignore[index]
        assert (row["strategy"], row["compute"]["calls"]) == ("random", 2)
        assert {s["agent"] for s in row["samples"]} == {"agent_a"}  # the first agent by default

        # An agent's own name goes straight to it: one request, nothing stored.
        before = len(read_request_log(tmp_path / "requests.jsonl"))
        stored = len(_results(store))
        plain = client.chat.completions.create(model="agent_b", messages=ASK)  # type: ignore[arg-type]
        assert plain.choices[0].message.content.startswith("agent_b")  # type: ignore[union-attr]
        log = read_request_log(tmp_path / "requests.jsonl")
        assert [e["agent"] for e in log[before:]] == ["agent_b"]
        assert len(_results(store)) == stored
    # The serve directory is a run directory: export reads the served searches.
    assert len(_results(store)) == 4
    done = subprocess.run(
        [sys.executable, "-m", "toa", "export", str(store), "-f", "sft", "-o",
         str(tmp_path / "sft.jsonl")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "sft.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4
    assert json.loads(rows[0])["messages"][0] == ASK[0]


def test_bad_requests_get_openai_errors_naming_the_field(tmp_path: Path, fake: FakeServer) -> None:
    config = _config(tmp_path / "config.yaml", fake.base_url,
                     serve_section="serve: {max_budget: 8, max_request_bytes: 4096}\n")  # fmt: skip
    with serving(config, tmp_path / "serve") as url:
        client = _client(url)
        cases: list[tuple[dict[str, Any], type[openai.APIStatusError], str | None]] = [
            ({"model": "nope", "messages": ASK}, openai.NotFoundError, "model"),
            ({"model": "toa:tao", "messages": ASK}, openai.NotFoundError, "model"),
            ({"model": "toa", "messages": []}, openai.BadRequestError, "messages"),
            ({"model": "toa", "messages": [{"role": "bot", "content": "x"}]},
             openai.BadRequestError, "messages[0].role"),
            ({"model": "toa", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
             openai.BadRequestError, "messages[0].content"),
            ({"model": "toa", "messages": ASK, "extra_body": {"toa": {"budget": 9}}},
             openai.BadRequestError, "toa.budget"),
            ({"model": "toa", "messages": ASK, "extra_body": {"toa": {"width": 2}}},
             openai.BadRequestError, "toa.width"),
            ({"model": "toa", "messages": ASK, "n": 0}, openai.BadRequestError, "n"),
        ]  # fmt: skip
        for request, error, param in cases:
            with pytest.raises(error) as caught:
                client.chat.completions.create(**request)
            body = caught.value.body
            assert isinstance(body, dict)
            assert body["param"] == param, body
            assert body["message"], body
        with pytest.raises(openai.APIStatusError) as big:
            client.chat.completions.create(
                model="toa", messages=[{"role": "user", "content": "x" * 5000}]
            )
        assert big.value.status_code == 413

        async def raw() -> tuple[int, dict[str, Any]]:
            async with (
                aiohttp.ClientSession() as session,
                session.post(url + "/chat/completions", data=b"{not json") as r,
            ):
                return r.status, await r.json()

        status, body = asyncio.run(raw())
        assert status == 400
        assert "not JSON" in body["error"]["message"]
    assert fake.stats()["total"] == 0  # none of them reached an agent


def test_a_key_is_required_when_configured_and_a_public_bind_needs_one(
    tmp_path: Path, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "s3cret-key")
    config = _config(tmp_path / "config.yaml", fake.base_url,
                     serve_section=f"serve: {{api_key_env: {KEY_ENV}}}\n")  # fmt: skip
    with serving(config, tmp_path / "serve") as url:
        for wrong in ("unused", "s3cret-kez"):
            with pytest.raises(openai.AuthenticationError) as caught:
                _client(url, wrong).models.list()
            assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
            assert "s3cret" not in str(caught.value.body)
        reply = _client(url, "s3cret-key").chat.completions.create(model="toa", messages=ASK)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
    settings = load_config(config)
    assert check_bind("0.0.0.0", settings, insecure=False) == "s3cret-key"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"{KEY_ENV}, which is not set"):
        check_bind("127.0.0.1", settings, insecure=False)
    open_config = load_config(_config(tmp_path / "open.yaml", fake.base_url))
    with pytest.raises(ConfigError, match="not a loopback address"):
        check_bind("0.0.0.0", open_config, insecure=False)
    assert check_bind("0.0.0.0", open_config, insecure=True) is None
    assert check_bind("::1", open_config, insecure=False) is None
    # Without a key configured, any key (or none) is accepted.
    with serving(_config(tmp_path / "open.yaml", fake.base_url), tmp_path / "open") as url:
        assert _client(url, "anything").models.list().data


def test_a_client_that_disconnects_cancels_its_search(tmp_path: Path) -> None:
    log_path = tmp_path / "requests.jsonl"
    with running_in_thread(latency_ms=300.0, request_log_path=log_path, seed=3) as fake:
        config = _config(tmp_path / "config.yaml", fake.base_url, budget=12)
        with serving(config, tmp_path / "serve") as url:

            async def give_up() -> float:
                async with aiohttp.ClientSession() as session:
                    with pytest.raises(TimeoutError):
                        async with session.post(
                            url + "/chat/completions",
                            json={"model": "toa:seq-refine", "messages": ASK},
                            timeout=aiohttp.ClientTimeout(total=0.8),
                        ) as response:
                            await response.read()
                return time.time()

            gone = asyncio.run(give_up())
            time.sleep(1.5)
        log = read_request_log(log_path)
    # seq-refine at budget 12 makes 12 calls one after another (about 3.6 s); the client left
    # after 0.8 s: the one in flight was the last to start.
    assert 1 <= len(log) <= 4, log
    started_after = [e for e in log if e["arrived"] > gone + 0.05]
    assert not started_after, (gone, log)


def test_overload_gets_429_with_retry_after_and_dead_agents_503(tmp_path: Path) -> None:
    with running_in_thread(latency_ms=400.0, seed=3) as fake:
        config = _config(tmp_path / "config.yaml", fake.base_url,
                         serve_section="serve: {max_concurrent_searches: 1}\n")  # fmt: skip
        with serving(config, tmp_path / "serve") as url:

            async def two() -> list[tuple[int, dict[str, str], dict[str, Any]]]:
                async with aiohttp.ClientSession() as session:

                    async def one(delay: float) -> tuple[int, dict[str, str], dict[str, Any]]:
                        await asyncio.sleep(delay)
                        async with session.post(
                            url + "/chat/completions", json={"model": "toa", "messages": ASK}
                        ) as r:
                            return r.status, dict(r.headers), await r.json()

                    return list(await asyncio.gather(one(0.0), one(0.2)))

            (first, _, _), (second, headers, body) = asyncio.run(two())
        assert first == 200
        assert second == 429
        assert int(headers["Retry-After"]) >= 1
        assert body["error"]["code"] == "rate_limit_exceeded"
    dead = Faults(dead_agents=frozenset(AGENTS), dead_mode="503")
    with running_in_thread(faults=dead, seed=3) as fake:
        config = _config(tmp_path / "dead.yaml", fake.base_url)
        with serving(config, tmp_path / "dead") as url:
            client = _client(url)
            for _ in range(2):  # the search whose calls fail, then one refused at once
                with pytest.raises(openai.InternalServerError) as caught:
                    client.chat.completions.create(model="toa", messages=ASK)  # type: ignore[arg-type]
                assert caught.value.status_code == 503
                assert caught.value.body["code"] == "agents_unavailable"  # type: ignore[index]


def test_sigterm_lets_the_search_in_flight_finish(tmp_path: Path) -> None:
    with running_in_thread(latency_ms=250.0, seed=3) as fake:
        config = _config(tmp_path / "config.yaml", fake.base_url)
        store = tmp_path / "serve"
        proc = subprocess.Popen(
            [sys.executable, "-m", "toa", "serve", "-c", str(config), "--port", "0",
             "--store", str(store)],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "serving toa on" in line, line
            url = line.split("serving toa on ")[1].split(" ")[0]
            reply: list[Any] = []
            thread = threading.Thread(
                target=lambda: reply.append(
                    _client(url).chat.completions.create(
                        model="toa:seq-refine",
                        messages=ASK,  # type: ignore[arg-type]
                        extra_body={"toa": {"budget": 4}},
                    )
                )
            )
            thread.start()
            time.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            thread.join(30)
            assert proc.wait(timeout=30) == 0
            rest = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            if proc.stderr is not None:
                proc.stderr.close()
    assert reply, rest
    assert reply[0].choices[0].message.content
    assert "1 search(es) served" in rest, rest
    assert len(_results(store)) == 1
    with pytest.raises(openai.APIConnectionError):
        _client(url).models.list()


def test_a_run_directory_is_not_a_serve_directory(tmp_path: Path, fake: FakeServer) -> None:
    config = _config(tmp_path / "config.yaml", fake.base_url)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p", "prompt": "hi"}) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "toa", "run", "-c", str(config), "-i", str(prompts), "-o",
         str(run_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with pytest.raises(ConfigError, match="not a serve directory"), serving(config, run_dir):
        pass
