"""Engine instructions per call: what `toa run` costs, counted by valgrind, not timed.

Timings on a shared 2-core machine swing by 10% from run to run, which hides any change smaller
than that. Instruction counts do not: `valgrind --tool=callgrind` counts the instructions the
engine's process executes, the same to about 0.1% from run to run, whatever else the machine is
doing. The workload is `benchmarks/engine_throughput.py`'s engine (strategy toa, 5 agents,
budget 20, the fake server in its own process, outside valgrind), run twice under callgrind,
with `--small` and with `--large` prompts; the difference, divided by the calls in between, is
the instructions per call, start-up and imports cancelled out.

    python benchmarks/engine_instructions.py [--small 20] [--large 80] [--against OTHER_SRC]

`--against` counts another source tree too (``git worktree add /tmp/old <commit>``, then
``--against /tmp/old/src``), in the same run, and prints the ratio: how a change moved the cost
of a call, to a fraction of a percent. Needs valgrind (Debian's `valgrind` package); the counts
are instructions, not time (a cache miss counts as one).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from engine_throughput import start_server

HERE = Path(__file__).resolve().parent
COLLECTED = re.compile(r"Collected : (\d+)")


def count(src: Path | None, port: int, prompts: int, budget: int) -> int:
    """Instructions of one engine child under callgrind (`src`: the toa source tree to use)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    cmd += [str(HERE / "engine_throughput.py"), "--child", "engine", "--port", str(port)]
    cmd += ["--prompts", str(prompts), "--budget", str(budget)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"the engine child failed under valgrind:\n{out.stderr[-2000:]}")
    found = COLLECTED.search(out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_call(src: Path | None, port: int, small: int, large: int, budget: int) -> float:
    low = count(src, port, small, budget)
    high = count(src, port, large, budget)
    return (high - low) / ((large - small) * budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=20, help="prompts of the first run")
    parser.add_argument("--large", type=int, default=80, help="prompts of the second run")
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--against", type=Path, help="another toa source tree to count too")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind): nothing counted")
    if args.large <= args.small:
        raise SystemExit("--large must be more prompts than --small")
    proc, port = start_server(5.0)
    try:
        ours = per_call(None, port, args.small, args.large, args.budget)
        theirs = None
        if args.against is not None:
            theirs = per_call(args.against.resolve(), port, args.small, args.large, args.budget)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    calls = (args.large - args.small) * args.budget
    print(f"{calls:,} calls between {args.small} and {args.large} prompts at budget {args.budget}")
    print(f"this tree:  {ours:,.0f} instructions per call")
    fields = [f"instructions_per_call={ours:.0f}"]
    if theirs is not None:
        print(f"{args.against}: {theirs:,.0f} instructions per call ({ours / theirs:.3f}x)")
        fields += [f"against_instructions_per_call={theirs:.0f}", f"ratio={ours / theirs:.3f}"]
    print("RESULT engine_instructions " + " ".join(fields))


if __name__ == "__main__":
    main()
