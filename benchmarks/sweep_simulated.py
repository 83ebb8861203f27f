"""A `toa sweep` on the simulated `helps` world: the README's plot, and TOA vs the best other.

Starts the fake server (three agents with hidden qualities, no latency) in a thread, runs
``toa sweep`` as a user would (strategies toa, ensemble, random, prs; budgets 4, 8, 16; random /
prs's agent chosen by ``--single-agent auto`` on 12 calibration prompts that are not evaluated),
then prints the cells and one line::

    RESULT sweep_simulated prompts=60 toa_minus_best_b4=... toa_minus_best_b8=... ...

(mean best reward of TOA minus that of the best other strategy at each budget; negative: TOA
loses). ``--docs`` copies the scaling plot to ``docs/sweep_scaling.png`` (``make docs-plot``).
Seeded, but TOA's online prior learns from prompts in the order they finish, so the figures vary a
little between runs (two runs here: +0.2061 and +0.2090 at budget 8).

    python benchmarks/sweep_simulated.py [--prompts 60] [--out DIR] [--docs]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from toa.testing import running_in_thread, simulated_prompts

ROOT = Path(__file__).resolve().parent.parent
PARAMS_B = {"agent_a": 7.0, "agent_b": 3.0, "agent_c": 1.5}


def _config(path: Path, base_url: str) -> Path:
    agents = "".join(
        f"  - {{name: {name}, model: {name}, base_url: '{base_url}', params_b: {size}}}\n"
        for name, size in PARAMS_B.items()
    )
    path.write_text(
        f"agents:\n{agents}reward: {{type: simulated}}\nstrategy: {{name: toa, budget: 4}}\n"
        "seed: 0\n",
        encoding="utf-8",
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=60, help="evaluated prompts")
    parser.add_argument("--out", type=Path, default=None, help="sweep directory (kept)")
    parser.add_argument("--docs", action="store_true", help="copy the plot into docs/")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="toa-sweep-"))
    sweep_dir = args.out or work / "sweep"
    calibration = 12
    prompts = work / "prompts.jsonl"
    with prompts.open("w", encoding="utf-8") as out:
        for p in simulated_prompts(args.prompts + calibration, seed=1):
            out.write(json.dumps({"id": p.id, "prompt": p.messages[-1].content}) + "\n")
    with running_in_thread(seed=0) as server:
        config = _config(work / "config.yaml", server.base_url)
        command = [
            sys.executable, "-m", "toa", "sweep", "-c", str(config), "-i", str(prompts),
            "-o", str(sweep_dir), "--strategies", "toa,ensemble,random,prs",
            "--budgets", "4,8,16", "--single-agent", "auto", "--calibration", str(calibration),
        ]  # fmt: skip
        done = subprocess.run(command, check=False)
    if done.returncode != 0:
        print(f"toa sweep exited {done.returncode}", file=sys.stderr)
        return done.returncode
    document = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    figures = [f"prompts={args.prompts}"]
    for budget in document["budgets"]:
        cells = {c["strategy"]: c for c in document["cells"] if c["budget"] == budget}
        others = [c["mean_best_reward"] for s, c in cells.items() if s != "toa"]
        if "toa" in cells and others:
            figures.append(
                f"toa_minus_best_b{budget}={cells['toa']['mean_best_reward'] - max(others):+.4f}"
            )
    if args.docs:
        target = ROOT / "docs" / "sweep_scaling.png"
        shutil.copyfile(sweep_dir / "scaling.png", target)
        print(f"wrote {target}")
    print("RESULT sweep_simulated " + " ".join(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
