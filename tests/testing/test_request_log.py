"""The fake server's request log, and `toa fake-server`'s fault options, over real HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.testing import FakeServer, Faults, read_request_log, request_id, running_in_thread


def _post(base: str, body: dict[str, Any], key: str = "") -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        base + "/chat/completions", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def _chat(agent: str, text: str, seed: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": agent, "messages": [{"role": "user", "content": text}]}
    if seed is not None:
        body["seed"] = seed
    return body


async def test_the_log_has_one_line_per_request_with_stable_ids(tmp_path: Path) -> None:
    import aiohttp

    path = tmp_path / "requests.jsonl"
    faults = Faults(script=("ok", "ok", "500", "ok"))
    async with FakeServer(faults=faults, request_log_path=path) as server:
        async with aiohttp.ClientSession() as session:
            url = server.base_url + "/chat/completions"
            bodies = [
                _chat("agent_a", "hi", seed=1),
                {"seed": 1, "messages": [{"content": "hi", "role": "user"}], "model": "agent_a"},
                _chat("agent_a", "hi", seed=2),
                _chat("agent_b", "hi", seed=1),
                {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]},
            ]
            for body in bodies:
                headers = {"Authorization": "Bearer sk-secret-123"}
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
        lines = read_request_log(path)  # flushed while the server runs
        assert [line["status"] for line in lines] == [200, 200, 500, 200, 404]
    assert [line["seq"] for line in lines] == [0, 1, 2, 3, 4]
    assert [line["fault"] for line in lines] == ["ok", "ok", "500", "ok", "invalid"]
    ids = [line["request_id"] for line in lines]
    assert ids[0] == ids[1] == request_id(bodies[0])  # key order does not matter
    assert len(set(ids[1:])) == 4  # another seed, agent or model: another id
    assert [line["seed"] for line in lines] == [1, 1, 2, 1, None]
    assert lines[0]["agent"] == "agent_a"
    assert lines[0]["kind"] == "fresh"
    assert isinstance(lines[0]["quality"], float)
    assert lines[2]["quality"] is None
    assert all(time.time() - 60 < line["time"] <= time.time() for line in lines)
    assert all(line["arrived"] <= line["time"] for line in lines[:4])  # handling began, ended
    assert lines[4]["arrived"] is None  # rejected before its handling began
    text = path.read_text(encoding="utf-8")
    assert "sk-secret" not in text
    assert "Bearer" not in text
    assert '"hi"' not in text  # no message text either
    async with FakeServer(request_log_path=path):  # a restarted server appends
        pass
    assert len(read_request_log(path)) == 5


def _wait_for_port(port_file: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text())
        assert proc.poll() is None, "fake-server exited early"
        time.sleep(0.05)
    raise AssertionError("fake-server did not write its port in time")


def test_the_command_line_injects_rate_limits_and_dead_agents(tmp_path: Path) -> None:
    port_file, log = tmp_path / "port", tmp_path / "requests.jsonl"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0", "--port-file"]
    cmd += [str(port_file), "--rate-limit-rate", "1", "--retry-after-s", "0.2"]
    cmd += ["--dead-agents", "agent_c", "--dead-mode", "500", "--request-log", str(log)]
    cmd += ["--latency-ms", "1,3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{_wait_for_port(port_file, proc)}/v1"
        status, headers = _post(base, _chat("agent_a", "hi", seed=3), key="sk-secret-456")
        assert status == 429
        assert headers["Retry-After"] == "0.2"
        assert _post(base, _chat("agent_c", "hi"))[0] == 500
        entries = read_request_log(log)
        assert [(e["agent"], e["status"], e["fault"]) for e in entries] == [
            ("agent_a", 429, "429"),
            ("agent_c", 500, "dead"),
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "sk-secret" not in log.read_text(encoding="utf-8")


def test_fault_options_are_checked_before_listening(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    cases = {
        ("--rate-limit-rate", "1.5"): "--rate-limit-rate must be in [0, 1], got 1.5",
        ("--error-rate", "0.6", "--drop-rate", "0.6"): "must add up to at most 1",
        ("--dead-agents", "zed"): "unknown agent(s) ['zed']",
        ("--dead-mode", "404"): "--dead-mode must be one of",
        ("--latency-ms", "5,2"): "--latency-ms must be a number >= 0 or LO,HI",
        ("--latency-ms", "fast"): "got 'fast'",
        ("--hang-s", "-1"): "--hang-s must be >= 0",
        ("--request-log", str(tmp_path / "no" / "dir.log")): "No such file or directory",
    }
    for args, expected in cases.items():
        result = runner.invoke(app, ["fake-server", *args], env=env)
        assert result.exit_code == 2, (args, result.output)
        assert expected in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output
        assert "listening" not in result.output


def _post_or_dropped(base: str, body: dict[str, Any]) -> int:
    """`_post`'s status, or 0 when the server closed the connection without a response."""
    try:
        return _post(base, body)[0]
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
        return 0


def _wait_for_lines(path: Path, n: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = read_request_log(path) if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_fail_rate_alias_and_dropping_dead_agents_on_the_command_line(tmp_path: Path) -> None:
    port_file, log = tmp_path / "port", tmp_path / "requests.jsonl"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0", "--port-file"]
    cmd += [str(port_file), "--fail-rate", "1", "--dead-agents", " agent_b ,agent_c"]
    cmd += ["--dead-mode", "drop", "--request-log", str(log), "--latency-ms", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{_wait_for_port(port_file, proc)}/v1"
        assert _post_or_dropped(base, _chat("agent_a", "hi", seed=1)) == 500
        assert _post_or_dropped(base, _chat("agent_b", "hi", seed=1)) == 0
        assert _post_or_dropped(base, _chat("agent_c", "hi")) == 0
        entries = _wait_for_lines(log, 3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert [(e["agent"], e["status"], e["fault"], e["seed"]) for e in entries] == [
        ("agent_a", 500, "500", 1),
        ("agent_b", 0, "dead", 1),
        ("agent_c", 0, "dead", None),
    ]
    assert all(e["quality"] is None for e in entries)


def test_running_in_thread_takes_faults_and_a_request_log(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    faults = Faults(rate_limit_rate=1.0, retry_after_s=0.25)
    with running_in_thread(faults=faults, request_log_path=log, latency_ms=(1, 2)) as server:
        status, headers = _post(server.base_url, _chat("agent_a", "hi", seed=7), key="sk-xyz")
        assert (status, headers["Retry-After"]) == (429, "0.25")
        server.set_faults(Faults())
        assert _post(server.base_url, _chat("agent_a", "hi", seed=7), key="sk-xyz")[0] == 200
        assert _post(server.base_url, _chat("agent_a", "hi", seed=8))[0] == 200
        lines = read_request_log(log)  # readable while the server runs
    assert [(line["status"], line["fault"]) for line in lines] == [
        (429, "429"),
        (200, "ok"),
        (200, "ok"),
    ]
    ids = [line["request_id"] for line in lines]
    assert ids[0] == ids[1] != ids[2]  # a retry of the same request keeps its id; a seed not
    assert ids[0] == request_id(_chat("agent_a", "hi", seed=7))
    assert "sk-xyz" not in log.read_text(encoding="utf-8")


async def test_a_client_that_gives_up_on_a_timeout_is_logged_with_status_0(
    tmp_path: Path,
) -> None:
    import aiohttp

    log = tmp_path / "requests.jsonl"
    async with FakeServer(faults=Faults(timeout_rate=1.0, hang_s=5.0), request_log_path=log) as s:
        timeout = aiohttp.ClientTimeout(total=0.2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.post(
                    s.base_url + "/chat/completions", json=_chat("agent_a", "hi", seed=1)
                ) as response:
                    await response.read()
            except TimeoutError:
                pass
            else:
                raise AssertionError("the timeout fault answered at once")
        deadline = time.monotonic() + 5
        while not read_request_log(log) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        lines = read_request_log(log)
    assert [(line["status"], line["fault"]) for line in lines] == [(0, "timeout")]


async def test_a_log_in_a_missing_directory_fails_at_start(tmp_path: Path) -> None:
    server = FakeServer(request_log_path=tmp_path / "missing" / "requests.jsonl")
    with pytest.raises(OSError, match=r"cannot open the request log .*missing"):
        await server.start()
    with pytest.raises(RuntimeError, match="not started"):
        server.port  # noqa: B018  # nothing listens
    await server.close()  # a no-op


def test_read_request_log_skips_a_partly_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text('{"seq": 0, "status": 200}\n{"seq": 1, "sta', encoding="utf-8")
    assert read_request_log(path) == [{"seq": 0, "status": 200}]


def test_help_explains_every_fault_option() -> None:
    result = CliRunner().invoke(app, ["fake-server", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for option, words in {
        "--error-rate": "HTTP 500",
        "--fail-rate": "HTTP 500",
        "--rate-limit-rate": "HTTP 429",
        "--retry-after-s": "Retry-After",
        "--timeout-rate": "--hang-s",
        "--hang-s": "timeout",
        "--drop-rate": "without any HTTP response",
        "--dead-agents": "every request fails",
        "--dead-mode": "500 | 503 | drop",
        "--latency-ms": "LO,HI",
        "--request-log": "request_id",
    }.items():
        assert option in text, option
        assert words in text, (option, words)
