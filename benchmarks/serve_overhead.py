"""Serve overhead: what `toa serve` adds to a request, against the same request sent directly.

Starts `toa fake-server` (one agent, `agent_a`, a fixed latency: 50 ms unless told) and
`toa serve` over it (strategy random, budget 1, on agent_a: one generation per request, the
reward `simulated`, every search stored in a temporary --store), each in its own process. Then
N chat completions from C concurrent clients (one aiohttp session) are sent two ways, in
alternating rounds in the same run (A/B/A/B...), after a short warm-up of both:

    (A) direct: POST /v1/chat/completions to the fake server, model agent_a;
    (B) serve:  POST /v1/chat/completions to `toa serve`, model toa with
        "toa": {"strategy": "random", "budget": 1} (one search of one generation).

Per-request latency (post to body read) and failures (a status other than 200, or an exception)
are recorded. The median and p99 of each way (all rounds pooled) give the added latency
(serve - direct) and the ratio serve / direct. CPU time (user + sys, from /proc/PID/stat) of
the `toa serve` process during B, per request, is what one search costs the server; the fake
server's CPU per request during A and B is shown for reference. The clients, the fake server
and `toa serve` share the machine's cores, so the figures depend on it (CPUs are printed).

    python benchmarks/serve_overhead.py [--requests 2000] [--clients 200] [--latency-ms 50]
                                        [--rounds 2]

Target (issue): median added latency under 5 ms and no failed request (PASS / FAIL lines; the
benchmark does not fail on them). The last line is `RESULT serve_overhead key=value ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

AGENT = "agent_a"
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 20.0
PHASE_TIMEOUT_S = 25.0  # per round of one way: what is not done by then counts as failed
TARGET_ADDED_MEDIAN_MS = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads, not its children);
    NaN when it cannot be read (the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14, 15


def start_fake_server(work: Path, latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port_file = work / "fake.port"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0", "--port-file"]
    cmd += [str(port_file), "--latency-ms", f"{latency_ms:g}", "--agents", AGENT]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit("the fake server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/v1"


def write_config(work: Path, fake_url: str, clients: int) -> Path:
    slots = max(512, clients)
    config = {
        "agents": [
            {
                "name": AGENT,
                "base_url": fake_url,
                "model": AGENT,
                "max_concurrency": slots,
                "params_b": 1.0,
                "sampling": {"max_tokens": 64},
            }
        ],
        "reward": {"type": "simulated"},
        "strategy": {"name": "random", "budget": 1, "agent": AGENT},
        "runner": {"prompts_in_flight": slots},
        "serve": {"max_concurrent_searches": slots, "max_budget": 4},
        "seed": 0,
    }
    path = work / "serve.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: deque[str] = field(default_factory=lambda: deque(maxlen=50))


def start_serve(config: Path, store: Path) -> ServeProcess:
    """`toa serve` on a free port; its stderr is read by a thread (kept: the last 50 lines) so
    that the pipe never fills, and the URL comes from its "serving toa on" line."""
    cmd = [sys.executable, "-m", "toa", "serve", "-c", str(config), "--port", "0"]
    cmd += ["--store", str(store)]
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}  # one line, no wrapping
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    log: deque[str] = deque(maxlen=50)
    found: list[str] = []
    ready = threading.Event()
    assert proc.stderr is not None

    def reader(stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            log.append(line)
            match = re.search(r"serving toa on (http://\S+/v1)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()  # the process ended (its stderr closed)

    threading.Thread(target=reader, args=(proc.stderr,), name="serve-stderr", daemon=True).start()
    ready.wait(START_TIMEOUT_S)
    if not found:
        stop(proc)
        tail = "\n".join(log) or "(no output)"
        raise SystemExit(f"toa serve did not start within {START_TIMEOUT_S:.0f} s:\n{tail}")
    return ServeProcess(proc, found[0], log)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL when it has not ended within 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------- measurement


@dataclass
class Phase:
    """One round of one way: latencies of the requests that succeeded, failures, CPU."""

    way: str
    latencies_s: list[float]
    failed: int
    errors: dict[str, int]
    wall_s: float
    serve_cpu_s: float
    fake_cpu_s: float


def body_of(way: str, i: int) -> bytes:
    body: dict[str, Any] = {
        "model": AGENT if way == "direct" else "toa",
        "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
        "max_tokens": 64,
    }
    if way == "serve":
        body["toa"] = {"strategy": "random", "budget": 1}
    return json.dumps(body).encode()


async def run_phase(
    session: aiohttp.ClientSession,
    way: str,
    url: str,
    n: int,
    clients: int,
    pids: tuple[int, int],
) -> Phase:
    """`n` requests of one way from `clients` concurrent clients (each takes the next index)."""
    endpoint = url + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    bodies = [body_of(way, i) for i in range(n)]
    next_index = iter(range(n))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def client() -> None:
        for i in next_index:
            started = time.perf_counter()
            try:
                async with session.post(
                    endpoint, data=bodies[i], headers=headers, timeout=timeout
                ) as response:
                    raw = await response.read()
                    status = response.status
                if status != 200:
                    error = f"HTTP {status}: {raw[:160].decode('utf-8', 'replace')}"
                else:
                    json.loads(raw)["choices"][0]["message"]["content"]  # a real answer
                    latencies.append(time.perf_counter() - started)
                    continue
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, IndexError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
            errors[error] = errors.get(error, 0) + 1

    serve_pid, fake_pid = pids
    serve0, fake0, wall0 = cpu_seconds(serve_pid), cpu_seconds(fake_pid), time.perf_counter()
    tasks = [asyncio.create_task(client()) for _ in range(min(clients, n))]
    _done, pending = await asyncio.wait(tasks, timeout=PHASE_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - wall0
    serve_cpu, fake_cpu = cpu_seconds(serve_pid) - serve0, cpu_seconds(fake_pid) - fake0
    missing = n - len(latencies) - sum(errors.values())
    if missing:
        errors[f"not finished within {PHASE_TIMEOUT_S:.0f} s"] = missing
    return Phase(way, latencies, n - len(latencies), errors, wall, serve_cpu, fake_cpu)


async def measure(
    direct_url: str, serve_url: str, args: argparse.Namespace, pids: tuple[int, int]
) -> list[Phase]:
    connector = aiohttp.TCPConnector(limit=max(args.clients, 1) * 2, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = min(args.requests, max(args.clients, 100))
        for way, url in (("direct", direct_url), ("serve", serve_url)):  # connections, imports
            await run_phase(session, way, url, warm, args.clients, pids)
        phases = []
        for _ in range(args.rounds):
            for way, url in (("direct", direct_url), ("serve", serve_url)):
                phases.append(await run_phase(session, way, url, args.requests, args.clients, pids))
        return phases


# -------------------------------------------------------------------------------- report


def quantile_ms(values: list[float], q: float) -> float:
    """Nearest-rank quantile `q` of `values` (seconds), in ms; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] * 1e3


def report(phases: list[Phase], args: argparse.Namespace) -> None:
    print(
        f"{args.requests} requests x {args.rounds} rounds per way, {args.clients} clients, "
        f"fake server latency {args.latency_ms:g} ms, {os.cpu_count()} CPUs"
    )
    head = f"{'round':<6}{'way':<8}{'median ms':>10}{'p99 ms':>9}{'req/s':>8}{'failed':>8}"
    print(head + f"{'serve CPU ms/req':>18}{'fake CPU ms/req':>17}")
    for k, phase in enumerate(phases):
        n = len(phase.latencies_s) + phase.failed
        print(
            f"{k // 2 + 1:<6}{phase.way:<8}{quantile_ms(phase.latencies_s, 0.5):>10.1f}"
            f"{quantile_ms(phase.latencies_s, 0.99):>9.1f}{n / phase.wall_s:>8.0f}"
            f"{phase.failed:>8}{phase.serve_cpu_s / n * 1e3:>18.2f}"
            f"{phase.fake_cpu_s / n * 1e3:>17.2f}"
        )
    pooled: dict[str, dict[str, float]] = {}
    for way in ("direct", "serve"):
        mine = [p for p in phases if p.way == way]
        latencies = [s for p in mine for s in p.latencies_s]
        n = sum(len(p.latencies_s) + p.failed for p in mine)
        pooled[way] = {
            "median": quantile_ms(latencies, 0.5),
            "p99": quantile_ms(latencies, 0.99),
            "failed": sum(p.failed for p in mine),
            "serve_cpu_ms": sum(p.serve_cpu_s for p in mine) / n * 1e3,
            "fake_cpu_ms": sum(p.fake_cpu_s for p in mine) / n * 1e3,
            "rps_median": statistics.median(
                (len(p.latencies_s) + p.failed) / p.wall_s for p in mine
            ),
        }
    direct, serve = pooled["direct"], pooled["serve"]
    print(f"{'all':<6}{'way':<8}{'median ms':>10}{'p99 ms':>9}{'req/s':>8}{'failed':>8}")
    for way, row in pooled.items():
        print(
            f"{'all':<6}{way:<8}{row['median']:>10.1f}{row['p99']:>9.1f}"
            f"{row['rps_median']:>8.0f}{row['failed']:>8.0f}"
        )
    added_median = serve["median"] - direct["median"]
    added_p99 = serve["p99"] - direct["p99"]
    ratio_median = serve["median"] / direct["median"]
    ratio_p99 = serve["p99"] / direct["p99"]
    failed = int(direct["failed"] + serve["failed"])
    print(
        f"added latency: median {added_median:.2f} ms (x{ratio_median:.3f}), "
        f"p99 {added_p99:.2f} ms (x{ratio_p99:.3f})"
    )
    print(
        f"CPU per request: toa serve {serve['serve_cpu_ms']:.2f} ms (during direct: "
        f"{direct['serve_cpu_ms']:.2f}); fake server {direct['fake_cpu_ms']:.2f} ms direct, "
        f"{serve['fake_cpu_ms']:.2f} ms via serve"
    )
    errors: dict[str, int] = {}
    for phase in phases:
        for error, count in phase.errors.items():
            errors[f"{phase.way}: {error}"] = errors.get(f"{phase.way}: {error}", 0) + count
    for error, count in sorted(errors.items(), key=lambda item: -item[1])[:5]:
        print(f"  {count} x {error}")
    ok_latency = added_median < TARGET_ADDED_MEDIAN_MS
    print(
        f"{'PASS' if ok_latency else 'FAIL'}: median added latency {added_median:.2f} ms "
        f"(target < {TARGET_ADDED_MEDIAN_MS:g} ms)"
    )
    print(f"{'PASS' if failed == 0 else 'FAIL'}: {failed} failed request(s) (target 0)")
    fields = [
        f"clients={args.clients}",
        f"requests={args.requests}",
        f"added_median_ms={added_median:.2f}",
        f"added_p99_ms={added_p99:.2f}",
        f"latency_ratio_median={ratio_median:.3f}",
        f"serve_cpu_ms_per_request={serve['serve_cpu_ms']:.2f}",
        f"failed={failed}",
        f"direct_median_ms={direct['median']:.2f}",
        f"serve_median_ms={serve['median']:.2f}",
        f"direct_p99_ms={direct['p99']:.2f}",
        f"serve_p99_ms={serve['p99']:.2f}",
        f"latency_ratio_p99={ratio_p99:.3f}",
    ]
    print("RESULT serve_overhead " + " ".join(fields))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per way and round")
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="fake server latency")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each way (alternated)")
    args = parser.parse_args()
    if args.requests < 1 or args.clients < 1 or args.rounds < 1:
        parser.error("--requests, --clients and --rounds must be at least 1")

    procs: list[subprocess.Popen[bytes]] = []
    serve: ServeProcess | None = None
    with tempfile.TemporaryDirectory(prefix="toa-serve-bench-") as tmp:
        work = Path(tmp)
        try:
            fake, fake_url = start_fake_server(work, args.latency_ms)
            procs.append(fake)
            serve = start_serve(write_config(work, fake_url, args.clients), work / "store")
            procs.append(serve.proc)
            pids = (serve.proc.pid, fake.pid)
            phases = asyncio.run(measure(fake_url, serve.url, args, pids))
            if serve.proc.poll() is not None:
                print("toa serve ended during the benchmark:\n" + "\n".join(serve.log))
        finally:
            for proc in reversed(procs):
                with contextlib.suppress(Exception):
                    stop(proc)
        if serve is not None:
            warnings = [line for line in serve.log if "stopped:" not in line]
            if len(warnings) > 1:  # more than the "serving toa on" line
                print("toa serve said:\n  " + "\n  ".join(warnings[-10:]))
    report(phases, args)


if __name__ == "__main__":
    main()
