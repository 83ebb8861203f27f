"""Ray scaling: the engine-throughput workload run locally and on Ray with 1 and 2 workers.

Workload: the one of `engine_throughput.py` (fake server at 50 ms latency in its own process, 5
agents, strategy toa, up to 256 calls and 256 prompts in flight), by default at its full size,
1,000 prompts x budget 20 (20,000 calls; about a minute for the three rows on 2 cores). The rows, in
one run, each into a fresh run directory: `local` (runner.backend local), `ray1` and `ray2`
(runner.backend ray, 1 and 2 `PromptWorker` actors). Ray is started once (a loopback local Ray,
as the tests start it) before the Ray rows and shut down at the end, so its start-up is
reported apart (`ray_init_s`) and not counted in any row's wall time.

Per row: wall time, calls/s, throughput vs the local row, and the CPU time of this process
(the driver; Ray's workers run in their own processes) during the row, and the busy CPU time of
the whole machine during the row (every process; from /proc/stat). Each row checks that
every prompt finished and that the calls are prompts x budget, and counts the calls, rewards
and results in the run's store. The driver's ceiling is read off the 2-worker row: the records
it writes into the store per second ((calls + rewards + results) / wall) and its CPU time per
record.

    python benchmarks/ray_scaling.py [--prompts 1000] [--agents 5] [--budget 20]
        [--latency-ms 50] [--repeats 1] [--row-timeout-s 300] [--timeout-s 900]

With --repeats N each row is run N times (interleaved) and the fastest is kept.

Measured on 2 cores, quiet machine, defaults: local 1,131 calls/s (its driver at 100% of one
core), Ray 1 worker 0.83x local, 2 workers 1.17x; the driver wrote 2,708 records/s at 0.11 ms
of CPU per record (about 30% of a core) in the 2-worker row; Ray's init 2.9 s. The fake server,
the driver, Ray's processes and its workers share the 2 cores, so the Ray ratios are noisy and
fall below 1 when anything else is running (0.64-0.99 seen under load); a larger machine is
needed to read scaling from them. Runs of a few dozen prompts are dominated by Ray's per-task
overhead and POLL_S (0.2-0.4x local). After the hot-path work of issue 16 the local row ran
1,650 calls/s and the Ray rows 0.61x / 0.78x of it.

Last, the alternative to splitting each agent's limits over the workers is measured: one async
limiter actor that every request would acquire and release (`Limiter`), 256 callers at once:
1,141 pairs/s at most and 215 ms added per request on the quiet 2-core machine, against nothing
for the split, which is why the engine splits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toa.settings import RunSettings

CONCURRENCY = 256


@dataclass
class Row:
    name: str
    wall_s: float
    cpu_s: float
    machine_cpu_s: float
    calls: int
    finished: int
    failed: int
    stored_calls: int
    stored_rewards: int
    stored_results: int

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s

    @property
    def records(self) -> int:
        return self.stored_calls + self.stored_rewards + self.stored_results


def agent_names(n: int) -> list[str]:
    return [f"agent_{i}" for i in range(n)]


def start_server(latency_ms: float, agents: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0", "--port-file"]
    cmd += [str(port_file), "--latency-ms", str(latency_ms), "--agents", ",".join(agents)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the fake server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def write_prompts(path: Path, n: int) -> None:
    with path.open("w") as out:
        for i in range(n):
            out.write(json.dumps({"id": f"p{i}", "instruction": f"Question number {i}?"}) + "\n")


def config(port: int, agents: list[str], budget: int) -> dict[str, object]:
    return {
        "agents": [
            {
                "name": name,
                "base_url": f"http://127.0.0.1:{port}/v1",
                "model": name,
                "max_concurrency": CONCURRENCY,
                "params_b": 1.0,
                "sampling": {"max_tokens": 64},
            }
            for name in agents
        ],
        "reward": {"type": "simulated"},
        "strategy": {"name": "toa", "budget": budget},
        "runner": {"prompts_in_flight": CONCURRENCY},
        "seed": 0,
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_cpu_s() -> float:
    """Busy CPU time of the whole machine (every process, every core; Linux), or NaN."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return float("nan")
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _count(store_path: Path, table: str) -> int:
    uri = f"file:{store_path}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        (n,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    conn.close()
    return int(n)


def measure(
    name: str,
    settings: RunSettings,
    prompts_path: Path,
    run_dir: Path,
    prompts: int,
    budget: int,
    limit: float,
) -> Row:
    from toa.engine.runner import run
    from toa.store.layout import STORE_NAME

    wall0, cpu0, machine0 = time.perf_counter(), _cpu_s(), _machine_cpu_s()
    report = asyncio.run(
        asyncio.wait_for(run(settings, input_path=prompts_path, run_dir=run_dir), timeout=limit)
    )
    wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
    machine = _machine_cpu_s() - machine0
    store = run_dir / STORE_NAME
    row = Row(
        name=name,
        wall_s=wall,
        cpu_s=cpu,
        machine_cpu_s=machine,
        calls=report.compute.calls,
        finished=report.finished,
        failed=report.failed,
        stored_calls=_count(store, "calls"),
        stored_rewards=_count(store, "rewards"),
        stored_results=_count(store, "results"),
    )
    problems = []
    if report.finished != prompts:
        problems.append(f"finished {report.finished} of {prompts} prompts")
    if report.failed or report.interrupted:
        problems.append(f"failed {report.failed}, interrupted {report.interrupted}")
    if row.calls != prompts * budget:
        problems.append(f"calls {row.calls} != prompts x budget {prompts * budget}")
    if row.stored_calls != prompts * budget or row.stored_results != prompts:
        problems.append(f"store holds {row.stored_calls} calls, {row.stored_results} results")
    if problems:
        raise SystemExit(f"row {name}: " + "; ".join(problems))
    return row


def init_ray() -> float:
    from toa.engine.ray_runner import import_ray

    ray = import_ray()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
            _node_ip_address="127.0.0.1",
        )  # fmt: skip
    return time.perf_counter() - t0


class Limiter:
    """What a cluster-wide limiter actor would be: one semaphore that every request acquires
    and releases through two actor calls (measured here only; the engine splits limits)."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        await self.slots.acquire()

    def release(self) -> None:
        self.slots.release()


def measure_limiter(pairs: int, concurrency: int) -> tuple[float, float]:
    """(acquire/release pairs per second, median ms per pair) through one async limiter actor,
    `concurrency` callers at once: the ceiling and the added latency a limiter actor would put
    on every request of the cluster."""
    ray: Any = sys.modules["ray"]
    actor = ray.remote(num_cpus=0, max_concurrency=10_000)(Limiter).remote(concurrency)
    ray.get(actor.release.remote())  # started (one extra slot: never the bottleneck)
    latencies: list[float] = []

    async def caller(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            await actor.acquire.remote()
            await actor.release.remote()
            latencies.append(time.perf_counter() - t0)

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(pairs // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - t0

    wall = asyncio.run(main())
    ray.kill(actor)
    latencies.sort()
    return len(latencies) / wall, latencies[len(latencies) // 2] * 1e3


def shutdown_ray() -> None:
    if "ray" not in sys.modules:
        return
    ray: Any = sys.modules["ray"]
    if ray.is_initialized():
        ray.shutdown()


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise TimeoutError("the benchmark ran past --timeout-s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=1, help="rows kept: the fastest of N")
    parser.add_argument("--row-timeout-s", type=float, default=300.0)
    parser.add_argument("--limiter-pairs", type=int, default=5120, help="limiter actor calls")
    parser.add_argument("--timeout-s", type=int, default=900, help="the whole benchmark")
    args = parser.parse_args()

    from toa.config import parse_config, with_overrides

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(args.timeout_s)
    agents = agent_names(args.agents)
    with tempfile.TemporaryDirectory(prefix="toa-ray-scaling-") as tmp:
        work = Path(tmp)
        prompts_path = work / "prompts.jsonl"
        write_prompts(prompts_path, args.prompts)
        proc, port = start_server(args.latency_ms, agents)
        try:
            local = parse_config(config(port, agents, args.budget))
            size = (args.prompts, args.budget, args.row_timeout_s)
            best: dict[str, Row] = {}
            ray_init_s = float("nan")
            for rep in range(args.repeats):
                row = measure("local", local, prompts_path, work / f"local-{rep}", *size)
                best["local"] = min(best.get("local", row), row, key=lambda r: r.wall_s)
                if rep == 0:
                    ray_init_s = init_ray()
                for workers in (1, 2):
                    settings = with_overrides(local, backend="ray", workers=workers)
                    name = f"ray{workers}"
                    row = measure(name, settings, prompts_path, work / f"{name}-{rep}", *size)
                    best[name] = min(best.get(name, row), row, key=lambda r: r.wall_s)
            rows = [best["local"], best["ray1"], best["ray2"]]
            limiter_pairs_per_s, limiter_ms = measure_limiter(args.limiter_pairs, CONCURRENCY)
        finally:
            signal.alarm(0)
            try:
                shutdown_ray()
            finally:
                proc.kill()
                proc.wait(timeout=10)

    print(
        f"{args.prompts} prompts x budget {args.budget}, {args.agents} agents, "
        f"{args.latency_ms:g} ms latency, {CONCURRENCY} in flight, {os.cpu_count()} CPUs; "
        f"Ray init {ray_init_s:.2f} s (not in the rows)"
    )
    print(
        f"{'':<7}{'wall s':>8}{'calls/s':>9}{'vs local':>10}{'driver CPU s':>14}"
        f"{'CPU %':>7}{'records':>9}{'records/s':>11}{'CPU ms/rec':>12}{'machine CPU s':>15}"
    )
    base = rows[0].calls_per_s
    for r in rows:
        print(
            f"{r.name:<7}{r.wall_s:>8.2f}{r.calls_per_s:>9.0f}{r.calls_per_s / base:>10.2f}"
            f"{r.cpu_s:>14.2f}{r.cpu_s / r.wall_s * 100:>7.0f}{r.records:>9}"
            f"{r.records / r.wall_s:>11.0f}{r.cpu_s / r.records * 1e3:>12.3f}"
            f"{r.machine_cpu_s:>15.2f}"
        )
    ray1, ray2 = rows[1], rows[2]
    print(
        f"a limiter actor (the alternative to split limits): {limiter_pairs_per_s:.0f} "
        f"acquire/release pairs/s at most, {limiter_ms:.1f} ms added per request (median, "
        f"{CONCURRENCY} callers); split limits add nothing"
    )
    fields = [
        f"prompts={args.prompts}",
        f"calls={rows[0].calls}",
        f"local_calls_per_s={base:.0f}",
        f"ray1_vs_local={ray1.calls_per_s / base:.2f}",
        f"ray2_vs_local={ray2.calls_per_s / base:.2f}",
        f"driver_records_per_s={ray2.records / ray2.wall_s:.0f}",
        f"driver_cpu_ms_per_record={ray2.cpu_s / ray2.records * 1e3:.3f}",
        f"ray_init_s={ray_init_s:.2f}",
        f"limiter_pairs_per_s={limiter_pairs_per_s:.0f}",
        f"limiter_ms_per_request={limiter_ms:.1f}",
    ]
    print("RESULT ray_scaling " + " ".join(fields))


if __name__ == "__main__":
    main()
