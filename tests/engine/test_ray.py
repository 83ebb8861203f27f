"""The Ray backend on a local Ray (loopback, 2 CPUs, no dashboard) over the fake server.

Equal trees with and without Ray (sequential TOA and every baseline), a global concurrency limit
that holds over two workers, a worker killed mid-run (the run ends, one result per prompt, only
what the dead worker had not handed over is asked for again), and the errors made before any
call when Ray is missing or the address is wrong.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from toa.config import parse_config, with_overrides
from toa.engine.ray_runner import NAMESPACE, POLL_S, check_ray, import_ray
from toa.engine.runner import RunReport, run
from toa.errors import ConfigError
from toa.settings import RunSettings
from toa.store.run_store import RunStore
from toa.testing import FakeServer, read_request_log, running_in_thread

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

# Ray's own processes and log files are closed by Ray on its own schedule: its resource
# warnings are not ours (this module's code opens nothing it does not close).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

AGENTS = ("agent_a", "agent_b", "agent_c")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    import_ray()  # its environment: no usage statistics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
            _node_ip_address="127.0.0.1",
        )  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()
        time.sleep(1.0)  # Ray's processes exit; then their handles are collected here, not at exit
        hook = sys.unraisablehook
        sys.unraisablehook = lambda _unraisable: None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
        finally:
            sys.unraisablehook = hook


def _prompts(path: Path, n: int) -> Path:
    path.write_text(
        "".join(json.dumps({"id": f"p{i:03d}", "prompt": f"Question {i}?"}) + "\n"
                for i in range(n)),
        encoding="utf-8",
    )  # fmt: skip
    return path


def _settings(base_url: str, strategy: dict[str, Any], **agent: Any) -> RunSettings:
    return parse_config(
        {
            "agents": [{"name": n, "model": n, "base_url": base_url, **agent} for n in AGENTS],
            "reward": {"type": "simulated"},
            "strategy": strategy,
            "runner": {"prompts_in_flight": 8},
            "seed": 5,
        }
    )


def _trees(run_dir: Path) -> dict[str, dict[str, Any]]:
    with RunStore.open_readonly(run_dir / "store.sqlite") as reader:
        return {pid: tree for pid, _s, _r, tree in reader.iter_results_with_trees()}  # type: ignore[misc]


def _ray(settings: RunSettings, workers: int = 2) -> RunSettings:
    return with_overrides(settings, backend="ray", workers=workers)


STRATEGIES = [
    {"name": "toa", "budget": 6, "prior": {"source": "none"}},
    {"name": "ensemble", "budget": 4},
    {"name": "random", "budget": 3, "agent": "agent_b"},
    {"name": "prs", "budget": 4, "agent": "agent_a"},
    {"name": "seq-refine", "budget": 3},
    {"name": "moa", "budget": 6},
]


def test_ray_and_local_runs_give_the_same_trees(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "prompts.jsonl", 12)
    with running_in_thread(latency_ms=(1.0, 4.0), seed=1) as fake:
        for strategy in STRATEGIES:
            settings = _settings(fake.base_url, strategy)
            local, remote = tmp_path / f"{strategy['name']}-local", tmp_path / strategy["name"]
            asyncio.run(run(settings, input_path=prompts, run_dir=local))
            report = asyncio.run(run(_ray(settings), input_path=prompts, run_dir=remote))
            assert (report.finished, report.failed, report.exit_code) == (12, 0, 0)
            expected, got = _trees(local), _trees(remote)
            assert got.keys() == expected.keys()
            different = [p for p in expected if expected[p] != got[p]]
            assert not different, (strategy["name"], different)
            manifest = json.loads((remote / "manifest.json").read_text(encoding="utf-8"))
            assert manifest["config"]["runner"]["backend"] == "ray"
            assert manifest["config"]["runner"]["workers"] == 2
            lines = (remote / "results.jsonl").read_text(encoding="utf-8").splitlines()
            assert sorted(json.loads(line)["id"] for line in lines) == sorted(expected)


def test_a_global_concurrency_limit_holds_over_the_workers(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "prompts.jsonl", 40)
    with running_in_thread(latency_ms=30.0, seed=1) as fake:
        settings = parse_config(
            {
                "agents": [{"name": "agent_a", "model": "agent_a", "base_url": fake.base_url,
                            "max_concurrency": 8}],
                "reward": {"type": "simulated"},
                "strategy": {"name": "random", "budget": 6, "agent": "agent_a"},
                "runner": {"prompts_in_flight": 32, "backend": "ray", "workers": 2},
            }
        )  # fmt: skip
        report = asyncio.run(run(settings, input_path=prompts, run_dir=tmp_path / "run"))
        most = fake.max_in_flight
    assert report.finished == 40
    assert most <= 8  # 32 prompts x 6 samples could have had 192 in flight
    assert most > 4  # both workers' shares (4 each) were in use at once


def test_a_killed_worker_costs_only_what_it_had_not_handed_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = _prompts(tmp_path / "prompts.jsonl", 60)
    log_path = tmp_path / "requests.jsonl"
    with running_in_thread(latency_ms=(20.0, 40.0), request_log_path=log_path, seed=1) as fake:
        settings = _ray(_settings(fake.base_url, {"name": "ensemble", "budget": 6}))
        box: list[RunReport | BaseException] = []

        def target() -> None:
            try:
                box.append(asyncio.run(run(settings, input_path=prompts, run_dir=tmp_path / "r")))
            except BaseException as exc:  # handed to the test thread
                box.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        killed_at = _kill_a_worker_after(fake, 60)
        thread.join(240)
    assert box, "the run did not end"
    report = box[0]
    assert isinstance(report, RunReport), report
    assert (report.finished, report.failed) == (60, 0)
    assert "ray worker 0 died" in caplog.text or "ray worker 1 died" in caplog.text, caplog.text
    lines = (tmp_path / "r" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == [f"p{i:03d}" for i in range(60)]
    # Requests answered twice: only those the dead worker had been answered but had not yet
    # handed over (its last collection window) or had in flight when it died.
    first: dict[str, dict[str, Any]] = {}
    repeats = []
    for entry in sorted(read_request_log(log_path), key=lambda e: e["seq"]):
        if entry["status"] != 200:
            continue
        seen = first.setdefault(entry["request_id"], entry)
        if seen is not entry:
            repeats.append(seen)
    late = [e for e in repeats if e["time"] < killed_at - POLL_S - 0.5]
    assert not late, (killed_at, late[:3])


def _kill_a_worker_after(fake: FakeServer, requests: int) -> float:
    deadline = time.monotonic() + 120
    while fake.stats()["total"] < requests:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == NAMESPACE and a["name"].startswith("toa-")]  # fmt: skip
    assert names
    killed_at = time.time()
    ray.kill(ray.get_actor(sorted(names)[0], namespace=NAMESPACE), no_restart=True)
    return killed_at


def test_missing_ray_and_a_dead_address_are_refused_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="no Ray head answers there"):
        check_ray("127.0.0.1:9")
    with pytest.raises(ConfigError, match="expected auto or HOST:PORT"):
        check_ray("nowhere")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    prompts = _prompts(tmp_path / "prompts.jsonl", 2)
    with running_in_thread(seed=1) as fake:
        settings = _ray(_settings(fake.base_url, {"name": "ensemble", "budget": 2}))
        with pytest.raises(ConfigError, match=r"pip install 'toa-synth\[ray\]'"):
            asyncio.run(run(settings, input_path=prompts, run_dir=tmp_path / "run"))
        assert fake.stats()["total"] == 0
    assert not (tmp_path / "run").exists()


def test_the_reward_can_run_once_in_a_ray_actor_shared_by_the_workers(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the hf extra is not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rewards"))
    from test_hf import save_llama

    model = save_llama(tmp_path / "tiny-reward")
    prompts = _prompts(tmp_path / "prompts.jsonl", 8)
    seen: set[str] = set()
    with running_in_thread(latency_ms=(1.0, 4.0), seed=1) as fake:
        data = json.loads(json.dumps(_settings(fake.base_url, STRATEGIES[1]).config_data))
        data["reward"] = {"type": "hf", "path": str(model), "device": "cpu"}
        settings = parse_config(data)
        asyncio.run(run(settings, input_path=prompts, run_dir=tmp_path / "local"))
        shared = with_overrides(settings, backend="ray", workers=2)
        data = json.loads(json.dumps(shared.config_data))
        data["runner"]["reward_placement"] = "ray"
        shared = parse_config(data)
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                seen.update(a["name"] for a in ray.util.list_named_actors(all_namespaces=True))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            report = asyncio.run(run(shared, input_path=prompts, run_dir=tmp_path / "ray"))
        finally:
            done.set()
            watcher.join(10)
    assert (report.finished, report.failed) == (8, 0)
    local, remote = _trees(tmp_path / "local"), _trees(tmp_path / "ray")
    # The same trees and scores; a score may differ in its last digits: a batch padded
    # differently (other prompts share it) changes float rounding in the model.
    assert remote.keys() == local.keys()
    for pid, tree in local.items():
        other = remote[pid]
        assert [n["text"] for n in other["nodes"]] == [n["text"] for n in tree["nodes"]]
        for mine, theirs in zip(tree["nodes"], other["nodes"], strict=True):
            if mine["reward"] is None:
                assert theirs["reward"] is None
            else:
                assert theirs["reward"] == pytest.approx(mine["reward"], abs=1e-4)
    assert [n for n in seen if n.endswith("-reward")], seen
    rewards = [n["reward"] for t in remote.values() for n in t["nodes"] if n["kind"] == "response"]
    assert rewards
    assert all(isinstance(r, float) for r in rewards)
