"""`toa run --ray-address HOST:PORT` against a Ray cluster the test starts itself with
`ray start --head --node-ip-address 127.0.0.1` (loopback only) and stops at the end: the driver
joins it instead of starting a local Ray, and the run is the same as any other."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from toa.testing import running_in_thread

pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROMPTS = 12
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200"}


def _ray_cli() -> str:
    found = Path(sys.executable).parent / "ray"
    if found.exists():
        return str(found)
    which = shutil.which("ray")
    if which is None:
        pytest.skip("the `ray` command is not installed")
    return which


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    ray = _ray_cli()
    port = _free_port()
    start = [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    start += ["--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"]
    done = subprocess.run(start, env=ENV, capture_output=True, text=True, timeout=120)
    try:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=ENV, capture_output=True, timeout=120)


def test_a_run_joins_a_cluster_by_its_address(tmp_path: Path, cluster: str) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Q {i}?"}) + "\n" for i in range(PROMPTS)),
        encoding="utf-8",
    )
    with running_in_thread(latency_ms=5.0, seed=1) as fake:
        agents = "".join(
            f"  - {{name: {n}, model: {n}, base_url: '{fake.base_url}'}}\n"
            for n in ("agent_a", "agent_b")
        )
        config = tmp_path / "config.yaml"
        config.write_text(
            f"agents:\n{agents}reward: {{type: simulated}}\n"
            "strategy: {name: toa, budget: 4}\nseed: 3\n",
            encoding="utf-8",
        )
        run_dir = tmp_path / "run"
        args = ["run", "-c", str(config), "-i", str(prompts), "-o", str(run_dir)]
        args += ["--backend", "ray", "--workers", "2", "--ray-address", cluster]
        done = subprocess.run(
            [sys.executable, "-m", "toa", *args], env=ENV, capture_output=True, text=True,
            timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert fake.stats()["total"] == PROMPTS * 4
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(
        f"p{i}" for i in range(PROMPTS)
    )
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["runner"]["backend"] == "ray"
    assert manifest["config"]["runner"]["workers"] == 2
