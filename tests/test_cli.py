"""The `toa` command line: fake-server as a real subprocess, help texts (the demo: test_demo.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from toa import __version__
from toa.cli import app


def _wait_for_port(port_file: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text())
        assert proc.poll() is None, "fake-server exited early"
        time.sleep(0.05)
    raise AssertionError("fake-server did not write its port in time")


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def test_fake_server_subprocess_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0", "--port-file"]
    cmd += [str(port_file), "--agents", "qwen,llama", "--world", "hurts", "--seed", "3"]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = _wait_for_port(port_file, proc)
        base = f"http://127.0.0.1:{port}"
        models = _get(base + "/v1/models")
        assert [m["id"] for m in models["data"]] == ["qwen", "llama"]  # type: ignore[index]
        out = _post(
            base + "/v1/chat/completions",
            {"model": "llama", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert out["object"] == "chat.completion"
        stats = _get(base + "/stats")
        assert stats["total"] == 1
        assert stats["by_agent"] == {"qwen": 0, "llama": 1}
        assert stats["by_kind"]["fresh"] == 1  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            log.close()
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()


def test_version_and_help() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
    result = runner.invoke(app, ["fake-server", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--latency-ms", "--agents", "--world", "--fail-rate", "--seed"):
        assert option in result.output


def test_fake_server_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    world = runner.invoke(app, ["fake-server", "--world", "nope"], env=env)
    assert world.exit_code == 2
    assert "unknown world 'nope'" in world.output
    assert "Traceback" not in world.output
    rate = runner.invoke(app, ["fake-server", "--fail-rate", "1.5"], env=env)
    assert rate.exit_code == 2
    assert "--fail-rate" in rate.output
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(app, ["fake-server", "--port", str(port)], env=env)
    assert busy.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in " ".join(busy.output.split())
    assert "Traceback" not in busy.output
