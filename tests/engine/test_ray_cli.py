"""`toa run --backend ray` as a real process: Ctrl-C and SIGKILL of the driver, then `toa resume`
(with and without Ray), checked on the fake server's request log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from toa.testing import FakeServer, read_request_log, running_in_thread

pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

PROMPTS = 80
WINDOW_S = 1.0  # a SIGKILL loses what the driver had not collected (0.2 s) and what was in flight


def _setup(tmp_path: Path, base_url: str) -> tuple[Path, Path]:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i:03d}", "prompt": f"Q {i}?"}) + "\n"
                for i in range(PROMPTS)),
        encoding="utf-8",
    )  # fmt: skip
    agents = "".join(
        f"  - {{name: {n}, model: {n}, base_url: '{base_url}', timeout_s: 20}}\n"
        for n in ("agent_a", "agent_b", "agent_c")
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"agents:\n{agents}reward: {{type: simulated}}\n"
        "strategy: {name: toa, budget: 6, prior: {source: none}}\n"
        "runner: {prompts_in_flight: 16}\nseed: 2\n",
        encoding="utf-8",
    )
    return config, prompts


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "toa", *args], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200", "RAY_USAGE_STATS_ENABLED": "0"},
        )  # fmt: skip


def _after(fake: FakeServer, proc: subprocess.Popen[bytes], requests: int, log: Path) -> None:
    deadline = time.monotonic() + 180
    while fake.stats()["total"] < requests:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.02)


def _repeats(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first: dict[str, dict[str, Any]] = {}
    repeats = []
    for entry in sorted(log, key=lambda e: e["seq"]):
        if entry["status"] == 200 and first.setdefault(entry["request_id"], entry) is not entry:
            repeats.append(first[entry["request_id"]])
    return repeats


def _one_result_each(run_dir: Path) -> None:
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == [f"p{i:03d}" for i in range(PROMPTS)]


@pytest.mark.parametrize("resume_backend", ["ray", "local"])
def test_the_driver_stopped_or_killed_then_resumed_pays_nothing_twice(
    tmp_path: Path, resume_backend: str
) -> None:
    log_path = tmp_path / "requests.jsonl"
    with running_in_thread(latency_ms=(20.0, 40.0), request_log_path=log_path, seed=4) as fake:
        config, prompts = _setup(tmp_path, fake.base_url)
        run_dir = tmp_path / "run"
        # Ctrl-C: a clean stop (exit 130), nothing answered is asked for again.
        proc = _start(["run", "-c", str(config), "-i", str(prompts), "-o", str(run_dir),
                       "--backend", "ray", "--workers", "2"], tmp_path / "1.log")  # fmt: skip
        _after(fake, proc, 120, tmp_path / "1.log")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, (tmp_path / "1.log").read_text()[-3000:]
        assert _repeats(read_request_log(log_path)) == []
        # SIGKILL of the driver mid-run.
        proc = _start(["resume", str(run_dir), "--backend", "ray"], tmp_path / "2.log")
        _after(fake, proc, fake.stats()["total"] + 120, tmp_path / "2.log")
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        # Resume to the end, with Ray or locally.
        args = ["resume", str(run_dir), "--backend", resume_backend]
        proc = _start(args, tmp_path / "3.log")
        assert proc.wait(timeout=300) == 0, (tmp_path / "3.log").read_text()[-3000:]
        log = read_request_log(log_path)
    _one_result_each(run_dir)
    late = [e for e in _repeats(log) if e["time"] < killed_at - WINDOW_S]
    assert not late, (killed_at, late[:3])
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["runner"]["backend"] == resume_backend
