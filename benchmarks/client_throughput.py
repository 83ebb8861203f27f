"""Client throughput: TOA's agent client vs a raw aiohttp loop (the floor), in one run.

Starts `toa fake-server` in a subprocess (50 ms latency), then sends N requests at concurrency C
through (1) a bare aiohttp loop that only posts, reads and parses JSON, (2) TOA's `AgentPool`
client (request building, replica choice, breaker, limits, retries armed, typed results) and
(3) the openai SDK when it is installed (`pip install -e .[bench]`). Each is run `--rounds` times
in alternating order; the medians of requests/s and of client CPU microseconds per request
(process CPU time, the server excluded) are reported, with ratios to the raw loop.

    python benchmarks/client_throughput.py [--requests 2000] [--concurrency 256] [--rounds 3]

Target (issue 2): TOA client CPU per request within 3x of the raw loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from toa.agents import AgentPool, AgentSpec, RetryPolicy
from toa.types import Message, SamplingParams

Runner = Callable[[str, int, int], Awaitable[None]]
SAMPLING = SamplingParams(temperature=0.7, max_tokens=64)


def start_server(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0"]
    cmd += ["--latency-ms", str(latency_ms), "--port-file", str(port_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the fake server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/v1"


async def run_raw(base_url: str, n: int, concurrency: int) -> None:
    """The floor: post a prebuilt-style body, read it, parse the JSON, take the text."""
    slots = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json"}
    url = base_url + "/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> str:
            body = {"model": "agent_a", "messages": [{"role": "user", "content": f"question {i}"}]}
            body.update(SAMPLING.to_request_fields())
            async with (
                slots,
                session.post(url, data=json.dumps(body).encode(), headers=headers) as r,
            ):
                data = json.loads(await r.read())
            text: str = data["choices"][0]["message"]["content"]
            return text

        await asyncio.gather(*(one(i) for i in range(n)))


async def run_toa(base_url: str, n: int, concurrency: int) -> None:
    spec = AgentSpec(
        name="agent_a",
        base_urls=(base_url,),
        model="agent_a",
        max_concurrency=concurrency,
        sampling=SAMPLING,
        retry=RetryPolicy(max_attempts=3),
    )
    async with AgentPool([spec]) as pool:
        client = pool["agent_a"]
        await asyncio.gather(
            *(client.generate([Message("user", f"question {i}")]) for i in range(n))
        )


async def run_openai(base_url: str, n: int, concurrency: int) -> None:
    import openai  # optional: the `bench` extra

    slots = asyncio.Semaphore(concurrency)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    try:

        async def one(i: int) -> str:
            async with slots:
                out = await client.chat.completions.create(
                    model="agent_a",
                    messages=[{"role": "user", "content": f"question {i}"}],
                    temperature=SAMPLING.temperature,
                    top_p=SAMPLING.top_p,
                    max_tokens=SAMPLING.max_tokens,
                )
            return out.choices[0].message.content or ""

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()


def measure(runner: Runner, base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """(requests per second, client CPU microseconds per request) of one run."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    asyncio.run(runner(base_url, n, concurrency))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return n / wall, cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    runners: dict[str, Runner] = {"raw-aiohttp": run_raw, "toa-client": run_toa}
    try:
        import openai  # noqa: F401

        runners["openai-sdk"] = run_openai
    except ImportError:
        print("openai SDK not installed: skipping it (pip install -e .[bench])")

    proc, base_url = start_server(args.latency_ms)
    try:
        for runner in runners.values():  # warm-up: connections, imports, JIT-free caches
            measure(runner, base_url, min(200, args.requests), args.concurrency)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, runner in runners.items():
                results[name].append(measure(runner, base_url, args.requests, args.concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    medians = {
        name: (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in results.items()
    }
    raw_rps, raw_cpu = medians["raw-aiohttp"]
    print(
        f"{args.requests} requests, concurrency {args.concurrency}, server latency "
        f"{args.latency_ms:g} ms, {args.rounds} rounds (medians), {os.cpu_count()} CPUs"
    )
    print(f"{'client':<14}{'req/s':>10}{'CPU us/req':>12}{'CPU ratio':>11}")
    for name, (rps, cpu) in medians.items():
        print(f"{name:<14}{rps:>10.0f}{cpu:>12.0f}{cpu / raw_cpu:>11.2f}")
    toa_rps, toa_cpu = medians["toa-client"]
    fields = [
        f"toa_rps={toa_rps:.0f}",
        f"raw_rps={raw_rps:.0f}",
        f"toa_cpu_us={toa_cpu:.0f}",
        f"raw_cpu_us={raw_cpu:.0f}",
        f"cpu_ratio={toa_cpu / raw_cpu:.2f}",
    ]
    if "openai-sdk" in medians:
        fields.append(f"openai_cpu_ratio={medians['openai-sdk'][1] / raw_cpu:.2f}")
    fields.append(f"target_met={'yes' if toa_cpu / raw_cpu <= 3 else 'no'}")
    print("RESULT client_throughput " + " ".join(fields))


if __name__ == "__main__":
    main()
