"""Engine throughput: the full engine (TOA search + store + accounting) vs bare client calls.

Workload (issue 4): 1,000 prompts, 5 agents, strategy toa, budget 20 (20,000 calls), fake server
at 50 ms latency in its own process, up to 256 calls in flight. The same 20,000 calls are also
sent as a bare loop of raw client calls (no search, no store) in the same run. Each measurement
runs in a fresh child process so that CPU time and peak RSS are its own. Finally peak RSS of
10,000 prompts at budget 4 is compared with 1,000 prompts at budget 4 (memory must stay flat).

    python benchmarks/engine_throughput.py [--prompts 1000] [--budget 20] [--skip-memory]

Targets: engine calls/s >= 70% of the bare loop's; wall time 5x below the reference
implementation's 56 s for this workload (<= 11.2 s); peak RSS at 10,000 prompts within 20% of
1,000 prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENTS = [f"agent_{i}" for i in range(5)]
CONCURRENCY = 256
REFERENCE_WALL_S = 56.0


def start_server(latency_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0", "--port-file"]
    cmd += [str(port_file), "--latency-ms", str(latency_ms), "--agents", ",".join(AGENTS)]
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


def config(port: int, budget: int) -> dict[str, object]:
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
            for name in AGENTS
        ],
        "reward": {"type": "simulated"},
        "strategy": {"name": "toa", "budget": budget},
        "runner": {"prompts_in_flight": CONCURRENCY},
        "seed": 0,
    }


def child_engine(port: int, prompts: int, budget: int) -> dict[str, float]:
    from toa.config import parse_config
    from toa.engine.runner import run

    settings = parse_config(config(port, budget))
    work = Path(tempfile.mkdtemp())
    write_prompts(work / "prompts.jsonl", prompts)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    report = asyncio.run(run(settings, input_path=work / "prompts.jsonl", run_dir=work / "run"))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    calls = report.compute.calls
    assert report.finished == prompts, report
    return {"wall_s": wall, "calls": calls, "cpu_s": cpu, "rss_mb": _peak_rss_mb()}


def child_bare(port: int, prompts: int, budget: int) -> dict[str, float]:
    from toa.agents import AgentPool, AgentSpec
    from toa.types import Message, SamplingParams

    specs = [
        AgentSpec(
            name=name,
            base_urls=(f"http://127.0.0.1:{port}/v1",),
            model=name,
            max_concurrency=CONCURRENCY,
            sampling=SamplingParams(max_tokens=64),
        )
        for name in AGENTS
    ]
    n_calls = prompts * budget

    async def main() -> None:
        slots = asyncio.Semaphore(CONCURRENCY)
        async with AgentPool(specs) as pool:

            async def one(i: int) -> None:
                async with slots:
                    await pool[AGENTS[i % len(AGENTS)]].generate([Message("user", f"Q {i}?")])

            await asyncio.gather(*(one(i) for i in range(n_calls)))

    wall0, cpu0 = time.perf_counter(), time.process_time()
    asyncio.run(main())
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall_s": wall, "calls": n_calls, "cpu_s": cpu, "rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(kind: str, port: int, prompts: int, budget: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, "--port", str(port)]
    cmd += ["--prompts", str(prompts), "--budget", str(budget)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child", choices=["engine", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fn = child_engine if args.child == "engine" else child_bare
        print(json.dumps(fn(args.port, args.prompts, args.budget)))
        return

    proc, port = start_server(args.latency_ms)
    try:
        bare = measure("bare", port, args.prompts, args.budget)
        engine = measure("engine", port, args.prompts, args.budget)
        memory = None
        if not args.skip_memory:
            small = measure("engine", port, 1000, 4)
            large = measure("engine", port, 10000, 4)
            memory = (small["rss_mb"], large["rss_mb"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    print(
        f"{args.prompts} prompts x budget {args.budget}, {len(AGENTS)} agents, "
        f"{args.latency_ms:g} ms latency, {CONCURRENCY} in flight, {os.cpu_count()} CPUs"
    )
    print(f"{'':<8}{'wall s':>8}{'calls/s':>10}{'CPU us/call':>13}{'peak RSS MB':>13}")
    for name, m in (("bare", bare), ("engine", engine)):
        print(
            f"{name:<8}{m['wall_s']:>8.2f}{m['calls'] / m['wall_s']:>10.0f}"
            f"{m['cpu_s'] / m['calls'] * 1e6:>13.0f}{m['rss_mb']:>13.1f}"
        )
    ratio = (engine["calls"] / engine["wall_s"]) / (bare["calls"] / bare["wall_s"])
    speedup = REFERENCE_WALL_S / engine["wall_s"]
    fields = [
        f"engine_calls_per_s={engine['calls'] / engine['wall_s']:.0f}",
        f"bare_calls_per_s={bare['calls'] / bare['wall_s']:.0f}",
        f"throughput_ratio={ratio:.2f}",
        f"engine_wall_s={engine['wall_s']:.2f}",
        f"speedup_vs_reference={speedup:.1f}",
        f"engine_cpu_us_per_call={engine['cpu_s'] / engine['calls'] * 1e6:.0f}",
    ]
    if memory is not None:
        growth = memory[1] / memory[0]
        print(
            f"peak RSS, budget 4: 1,000 prompts {memory[0]:.1f} MB; "
            f"10,000 prompts {memory[1]:.1f} MB"
        )
        fields.append(f"rss_growth_10x_prompts={growth:.2f}")
    print("RESULT engine_throughput " + " ".join(fields))


if __name__ == "__main__":
    main()
