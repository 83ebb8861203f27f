"""Progress readable in a log file: `toa run > log` prints plain lines while it runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from toa.testing import running_in_thread

LINE = re.compile(
    r"^prompts (\d+)/30 \(\d+\.\d%\) \| \d+:\d\d elapsed \| ETA (\S+) \| [\d,]+ calls "
    r"\([\d.]+/s\) \| [\d,]+ tok"
)


def test_toa_run_into_a_file_prints_progress_lines(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(30)),
        encoding="utf-8",
    )
    with running_in_thread(latency_ms=(20.0, 60.0)) as server:
        config = tmp_path / "config.yaml"
        agents = "".join(
            f"  - {{name: {a}, model: {a}, base_url: '{server.base_url}'}}\n"
            for a in ("agent_a", "agent_b")
        )
        config.write_text(
            f"agents:\n{agents}reward: {{type: simulated}}\n"
            "strategy: {name: toa, budget: 6}\nrunner: {prompts_in_flight: 4}\n",
            encoding="utf-8",
        )
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [sys.executable, "-m", "toa", "run", "-c", str(config), "-i", str(prompts),
                 "-o", str(tmp_path / "run")],
                stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False,
                env={**os.environ, "TOA_PROGRESS_EVERY_S": "0.3"},
            )  # fmt: skip
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text
    assert "\x1b[" not in text  # no terminal escapes in a file
    lines = [m for m in map(LINE.match, text.splitlines()) if m]
    assert len(lines) >= 3, text  # the start, at least one while running, the end
    counts = [int(m.group(1)) for m in lines]
    assert counts[0] == 0
    assert counts[-1] == 30
    assert counts == sorted(counts)
    assert any(0 < c < 30 for c in counts), text
    assert lines[-1].group(2) == "0:00"
