"""CLI start-up: how long `toa --help`, `toa run --help` and `toa status RUN` take, end to end.

Each command runs in a fresh child process, several times (7 unless told); the median wall time
(start of the process to its exit, as the parent sees it) is reported. The commands go through
the venv's `toa` console script (next to this Python) when it exists, else `python -m toa`;
with the console script both ways are shown. For reference the same is measured for the Python
floor (`python -c pass`) and for `python -c "import toa.cli"` (the CLI's own imports, nothing
run). `toa status` reads a small finished run that the benchmark makes first: a `toa
fake-server` with agents a and b, 3 prompts, strategy toa at budget 2, reward `simulated`.

    python benchmarks/cli_startup.py [--repeats 7]

Goal (issue 16): each command under 0.3 s on a quiet machine. The last line is
`RESULT cli_startup help_s=... run_help_s=... status_s=... import_cli_s=... python_floor_s=...
goal_s=0.3` (medians in seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 0.3
AGENTS = ("a", "b")


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = work / "port"
    cmd = [sys.executable, "-m", "toa", "fake-server", "--port", "0", "--port-file"]
    cmd += [str(port_file), "--agents", ",".join(AGENTS)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the fake server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def make_run(work: Path) -> Path:
    """A finished 3-prompt run in work/run, made by `toa run` against a fake server."""
    prompts = work / "prompts.jsonl"
    with prompts.open("w") as out:
        for i in range(3):
            out.write(json.dumps({"id": f"p{i}", "instruction": f"Question number {i}?"}) + "\n")
    proc, port = start_server(work)
    try:
        config = {
            "agents": [
                {"name": name, "base_url": f"http://127.0.0.1:{port}/v1", "model": name}
                for name in AGENTS
            ],
            "reward": {"type": "simulated"},
            "strategy": {"name": "toa", "budget": 2},
            "seed": 0,
        }
        config_path = work / "config.yaml"
        config_path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        run_dir = work / "run"
        cmd = [sys.executable, "-m", "toa", "run", "-c", str(config_path), "-i", str(prompts)]
        done = subprocess.run(
            [*cmd, "-o", str(run_dir)], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise SystemExit(f"toa run failed ({done.returncode}):\n{done.stderr}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return run_dir


def median_wall(cmd: list[str], repeats: int) -> float:
    """The median wall time of `cmd` over `repeats` fresh processes (after one warm-up run)."""
    env = {**os.environ, "COLUMNS": "100"}
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr.decode()}")
        if i > 0:  # the first run warms the file cache and the bytecode
            times.append(elapsed)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="Runs per command (median).")
    args = parser.parse_args()

    script = Path(sys.executable).parent / "toa"
    launchers = {"python -m toa": [sys.executable, "-m", "toa"]}
    if script.is_file():
        launchers = {"toa": [str(script)], **launchers}
    main_launcher = next(iter(launchers))

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(Path(tmp))
        rows: list[tuple[str, float]] = [
            ("python -c pass", median_wall([sys.executable, "-c", "pass"], args.repeats)),
            (
                'python -c "import toa.cli"',
                median_wall([sys.executable, "-c", "import toa.cli"], args.repeats),
            ),
        ]
        results: dict[tuple[str, str], float] = {}
        for name, launcher in launchers.items():
            for label, extra in (
                ("--help", ["--help"]),
                ("run --help", ["run", "--help"]),
                ("status RUN", ["status", str(run_dir)]),
            ):
                seconds = median_wall([*launcher, *extra], args.repeats)
                results[name, label] = seconds
                rows.append((f"{name} {label}", seconds))

    print(f"median of {args.repeats} fresh processes, {os.cpu_count()} CPUs, goal {GOAL_S} s")
    print(f"{'command':<34}{'median s':>10}")
    for label, seconds in rows:
        flag = "" if label.startswith("python") or seconds < GOAL_S else "  over goal"
        print(f"{label:<34}{seconds:>10.3f}{flag}")
    fields = [
        f"help_s={results[main_launcher, '--help']:.3f}",
        f"run_help_s={results[main_launcher, 'run --help']:.3f}",
        f"status_s={results[main_launcher, 'status RUN']:.3f}",
        f"import_cli_s={rows[1][1]:.3f}",
        f"python_floor_s={rows[0][1]:.3f}",
        f"goal_s={GOAL_S}",
    ]
    print("RESULT cli_startup " + " ".join(fields))


if __name__ == "__main__":
    main()
