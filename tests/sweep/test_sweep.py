"""`toa sweep` and `toa eval` end to end: real `toa` processes against the fake server on loopback.

A 2 x 2 sweep (sweep.json ordered cheapest first, numbers equal to each cell's results.jsonl), a
rerun that sends nothing, a sweep stopped in the middle (SIGINT) and continued (the same
sweep.json, no generation answered twice), bad arguments refused before any request, and the
evaluation apart from the reward (`verify` accuracy, the missing-field refusal).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.testing import FakeServer, read_request_log, running_in_thread

pytestmark = pytest.mark.timeout(180)

AGENTS = ("agent_a", "agent_b", "agent_c")
PROMPTS = 6


def _config(path: Path, base_url: str) -> Path:
    agents = "".join(
        f"  - name: {name}\n    base_url: {base_url}\n    model: {name}\n    timeout_s: 5\n"
        for name in AGENTS
    )
    path.write_text(
        f"agents:\n{agents}"
        "reward:\n  type: simulated\n"
        "strategy:\n  name: toa\n  budget: 4\n  prior: {source: none}\n"
        "runner:\n  prompts_in_flight: 3\n"
        "seed: 3\n",
        encoding="utf-8",
    )
    return path


def _prompts(path: Path, n: int = PROMPTS, *, gold: bool = False) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            row: dict[str, Any] = {"id": f"p{i:02d}", "prompt": f"What is {i} + {i}?"}
            if gold:
                row["gold_answer"] = str(2 * i)
            out.write(json.dumps(row) + "\n")
    return path


def _toa(
    *args: str | Path, timeout: float = 120, columns: str | None = "200"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run(
        [sys.executable, "-m", "toa", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeServer]:
    with running_in_thread(request_log_path=tmp_path / "requests.jsonl", seed=5) as fake:
        yield fake


def _sweep_args(config: Path, prompts: Path, out: Path, *extra: str) -> list[str | Path]:
    return ["sweep", "-c", config, "-i", prompts, "-o", out, *extra]


def _without_wall(doc: dict[str, Any]) -> dict[str, Any]:
    clocks = ("wall_s", "prompt_wall_s")
    return {**doc, "cells": [{k: v for k, v in c.items() if k not in clocks} for c in doc["cells"]]}


def _results(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def _no_success_twice(log: Path, *, lost_after: float | None = None) -> None:
    """No request answered 200 twice; with `lost_after` (a SIGKILL's time less a margin), a
    repeat is allowed when its first answer came after it: lost with the killed process."""
    first: dict[str, float] = {}
    twice = []
    for entry in sorted(read_request_log(log), key=lambda e: e["seq"]):
        if entry["status"] != 200:
            continue
        rid = entry["request_id"]
        if rid not in first:
            first[rid] = entry["time"]
        elif lost_after is None or first[rid] < lost_after:
            twice.append(rid)
    assert twice == [], f"{len(twice)} generations answered twice"


def test_a_2x2_sweep_its_numbers_and_a_rerun_that_sends_nothing(
    tmp_path: Path, server: FakeServer
) -> None:
    config = _config(tmp_path / "config.yaml", server.base_url)
    prompts = _prompts(tmp_path / "prompts.jsonl")
    out = tmp_path / "sweep"
    args = _sweep_args(config, prompts, out, "--strategies", "toa,ensemble", "--budgets", "4,2")
    started = time.monotonic()
    done = _toa(*args)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    assert [c["name"] for c in doc["cells"]] == ["toa-b2", "ensemble-b2", "toa-b4", "ensemble-b4"]
    # A cell's wall time: while at least one of its prompts ran, within the command's own time;
    # prompt_wall_s sums the prompts' times (3 run at once, so it is more).
    assert sum(c["wall_s"] for c in doc["cells"]) <= took
    assert all(0 < c["wall_s"] <= c["prompt_wall_s"] + 1e-6 for c in doc["cells"])
    assert doc["budgets"] == [2, 4]
    assert doc["strategies"] == ["toa", "ensemble"]
    sent_total = 0
    for cell in doc["cells"]:
        rows = _results(out / cell["run_dir"])
        assert cell["prompts"] == len(rows) == PROMPTS
        bests = [r["best"]["reward"] for r in rows if r["best"] is not None]
        assert cell["with_best"] == len(bests)
        assert cell["mean_best_reward"] == pytest.approx(sum(bests) / len(bests), abs=1e-6)
        assert cell["calls"] == sum(r["compute"]["calls"] for r in rows) == cell["budget"] * PROMPTS
        assert cell["calls_sent"] + cell["cached_calls"] == cell["calls"]
        tokens = sum(r["compute"]["prompt_tokens"] for r in rows)
        assert cell["prompt_tokens"] == tokens
        assert cell["reward_calls"] == sum(r["compute"]["reward_calls"] for r in rows)
        assert cell["top_k"] == 10
        assert cell["mean_topk_reward"] <= cell["mean_best_reward"]
        assert sum(cell["best_agent_share"].values()) == pytest.approx(1.0)
        assert set(cell["best_agent_share"]) <= set(AGENTS)
        assert sum(a["calls"] for a in cell["by_agent"].values()) == cell["calls"]
        assert sum(a["prompt_tokens"] for a in cell["by_agent"].values()) == tokens
        sent_total += cell["calls_sent"]
    # What two cells share was paid once: the server saw exactly the calls the cells sent.
    assert server.stats()["total"] == sent_total
    assert sum(c["cached_calls"] for c in doc["cells"]) > 0  # ensemble-b4 contains ensemble-b2
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == 5
    assert csv_lines[0].startswith("name,strategy,budget")
    assert "calls_agent_a" in csv_lines[0].split(",")
    assert "budget 2: toa" in done.stderr
    assert "budget 4: toa" in done.stderr
    manifest = json.loads((out / "sweep_manifest.json").read_text())
    assert manifest["strategies"] == ["toa", "ensemble"]
    assert manifest["budgets"] == [2, 4]

    before = server.stats()["total"]
    again = _toa(*args, columns=None)  # a pipe, no COLUMNS: 80 columns would cut the table
    assert again.returncode == 0, again.stderr[-3000:]
    assert server.stats()["total"] == before
    table = [line for line in again.stderr.splitlines() if "ensemble-b4" in line]
    assert table, again.stderr
    assert "…" not in table[0], again.stderr
    assert _without_wall(json.loads((out / "sweep.json").read_text())) == _without_wall(doc)
    _no_success_twice(tmp_path / "requests.jsonl")

    # A rerun may add cells (tests/sweep/test_plan.py); dropping one is refused, before any call.
    more = _toa(*_sweep_args(config, prompts, out, "--strategies", "toa", "--budgets", "2"))
    assert more.returncode == 2, more.stderr
    assert "ensemble left out" in more.stderr, more.stderr
    assert server.stats()["total"] == before

    # The endpoints moved (another server, another timeout): the sweep goes on, as `toa resume`
    # would, and sends nothing; another model is another configuration, refused by name.
    with running_in_thread(seed=5) as moved:
        text = config.read_text().replace(server.base_url, moved.base_url)
        config.write_text(text.replace("timeout_s: 5", "timeout_s: 7"))
        again = _toa(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        assert moved.stats()["total"] == 0
        config.write_text(config.read_text().replace("model: agent_c", "model: agent_b", 1))
        changed = _toa(*args)
        assert changed.returncode == 2, changed.stderr
        assert "changes what is generated or scored" in changed.stderr
        assert "agents[2].model: 'agent_c' -> 'agent_b'" in changed.stderr, changed.stderr
        assert moved.stats()["total"] == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_sweep_stopped_in_the_middle_continues_to_the_same_sweep_json(
    tmp_path: Path, signum: int
) -> None:
    prompts = _prompts(tmp_path / "prompts.jsonl", 12)
    grid = ("--strategies", "toa,ensemble", "--budgets", "2,4")
    with running_in_thread(seed=5, latency_ms=(1.0, 3.0)) as server:
        config = _config(tmp_path / "config.yaml", server.base_url)
        reference = tmp_path / "reference"
        done = _toa(*_sweep_args(config, prompts, reference, *grid))
        assert done.returncode == 0, done.stderr[-3000:]
    log = tmp_path / "requests.jsonl"
    with running_in_thread(seed=5, latency_ms=(1.0, 3.0), request_log_path=log) as server:
        config = _config(tmp_path / "config.yaml", server.base_url)
        out = tmp_path / "stopped"
        command = [sys.executable, "-m", "toa", *map(str, _sweep_args(config, prompts, out, *grid))]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while server.stats()["total"] < 40 and proc.poll() is None:  # inside the third cell
            assert time.monotonic() < deadline
            time.sleep(0.005)
        killed_at = time.time()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        if signum == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 130, stderr.decode()[-3000:]
            assert "run the same `toa sweep` command again" in stderr.decode()
        stopped_at = server.stats()["total"]
        assert stopped_at < 12 * (2 + 2 + 4 + 4)  # it did stop before the end
        done = _toa(*_sweep_args(config, prompts, out, *grid))
        assert done.returncode == 0, done.stderr[-3000:]
    ref = json.loads((reference / "sweep.json").read_text())
    got = json.loads((out / "sweep.json").read_text())
    # The same cells, numbers and files apart from the paths of the two sweeps.
    for doc in (ref, got):
        doc.pop("input"), doc.pop("config")
    if signum == signal.SIGKILL:
        # A generation the cache had committed but the cell's store had not when the process
        # died comes back from the cache: the same call, counted as cached instead of sent.
        for doc in (ref, got):
            for cell in doc["cells"]:
                cell["calls_sent"] += cell.pop("cached_calls")
    assert _without_wall(got) == _without_wall(ref)
    # A clean stop loses nothing; a SIGKILL only what was in flight or not yet committed.
    _no_success_twice(log, lost_after=killed_at - 0.5 if signum == signal.SIGKILL else None)


def test_bad_arguments_are_refused_before_any_request(tmp_path: Path, server: FakeServer) -> None:
    config = _config(tmp_path / "config.yaml", server.base_url)
    prompts = _prompts(tmp_path / "prompts.jsonl")
    out = tmp_path / "sweep"
    cases = {
        ("--strategies", "toa,nope", "--budgets", "2"): "unknown strategy 'nope'; the known",
        ("--strategies", "", "--budgets", "2"): "no strategy given",
        ("--strategies", "toa", "--budgets", "0"): "0 is not a budget",
        ("--strategies", "toa", "--budgets", "2,x"): "'x' is not a whole number",
        ("--strategies", "toa", "--budgets", ","): "no budget given",
        ("--strategies", "toa,random", "--budgets", "2"): "--single-agent NAME",
        ("--strategies", "prs", "--budgets", "2", "--single-agent", "zed"): "'zed' is not one",
        (
            "--strategies",
            "random",
            "--budgets",
            "2",
            "--single-agent",
            "auto",
        ): "needs --calibration",
        (
            "--strategies",
            "random",
            "--budgets",
            "2",
            "--single-agent",
            "auto",
            "--calibration",
            "6",
        ): "holds 6 good prompt(s)",
        ("--strategies", "toa", "--budgets", "2", "--eval", "verify"): "'gold_answer'",
        ("--strategies", "toa", "--budgets", "2", "--eval", "nope"): "unknown kind 'nope'",
    }
    runner = CliRunner()
    for extra, message in cases.items():  # in process: each is refused before the engine starts
        args = [str(a) for a in _sweep_args(config, prompts, out, *extra)]
        refused = runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert refused.exit_code == 2, (extra, refused.output)
        assert message in " ".join(refused.output.split()), (extra, refused.output)
    keyed = tmp_path / "keyed.yaml"
    text = config.read_text().replace(
        "timeout_s: 5\n", "timeout_s: 5\n    api_key_env: TOA_SWEEP_UNSET_KEY\n"
    )
    keyed.write_text(text)
    done = _toa(*_sweep_args(keyed, prompts, out, "--strategies", "toa", "--budgets", "2"))
    assert done.returncode == 2, done.stderr
    assert "TOA_SWEEP_UNSET_KEY" in done.stderr
    assert server.stats()["total"] == 0
    assert not out.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    done = _toa(*_sweep_args(config, prompts, other, "--strategies", "toa", "--budgets", "2"))
    assert done.returncode == 2, done.stderr
    assert "not a sweep" in done.stderr
    assert server.stats()["total"] == 0


def test_eval_verify_accuracy_in_the_sweep_and_with_toa_eval(
    tmp_path: Path, server: FakeServer
) -> None:
    config = _config(tmp_path / "config.yaml", server.base_url)
    prompts = _prompts(tmp_path / "prompts.jsonl", 4, gold=True)
    out = tmp_path / "sweep"
    args = ("--strategies", "toa,random", "--budgets", "2", "--single-agent", "agent_b")
    done = _toa(*_sweep_args(config, prompts, out, *args, "--eval", "verify"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "random / prs use the agent agent_b" in done.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["single_agent"] == "agent_b"
    assert doc["eval"] == "verify"
    random_cell = next(c for c in doc["cells"] if c["strategy"] == "random")
    assert set(random_cell["best_agent_share"]) == {"agent_b"}
    for cell in doc["cells"]:
        block = cell["eval"]
        assert block["kind"] == "verify"
        assert block["prompts"] == 4
        assert 0.0 <= block["accuracy"] <= block["topk_accuracy"] <= 1.0
    cell_dir = out / doc["cells"][0]["run_dir"]
    shown = _toa("eval", cell_dir, "--eval", "verify")
    assert shown.returncode == 0, shown.stderr
    written = json.loads((cell_dir / "eval.json").read_text())
    kept = {k: v for k, v in written.items() if k not in ("results_sha256", "evaluator")}
    assert kept == doc["cells"][0]["eval"]
    assert written["evaluator"] == {"kind": "verify", "top_k": 10}
    assert (
        written["results_sha256"]
        == hashlib.sha256((cell_dir / "results.jsonl").read_bytes()).hexdigest()
    )
    assert "accuracy" in shown.stderr
    own = _toa("eval", cell_dir, "--eval", "reward")
    assert own.returncode == 0, own.stderr
    mean_best = json.loads((cell_dir / "eval.json").read_text())["mean_best"]
    assert mean_best == pytest.approx(doc["cells"][0]["mean_best_reward"], abs=1e-6)
    missing = _toa("eval", cell_dir, "--eval", "chrf")
    assert missing.returncode == 2, missing.stderr
    assert "'reference'" in missing.stderr, missing.stderr


def test_single_agent_auto_is_chosen_on_the_calibration_slice(
    tmp_path: Path, server: FakeServer
) -> None:
    config = _config(tmp_path / "config.yaml", server.base_url)
    prompts = _prompts(tmp_path / "prompts.jsonl", 7)
    out = tmp_path / "sweep"
    args = _sweep_args(config, prompts, out, "--strategies", "toa,random", "--budgets", "2")
    args += ["--single-agent", "auto", "--calibration", "3", "--limit", "3"]
    done = _toa(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    calibration = doc["calibration"]
    rows = _results(out / "calibration")
    assert sorted(r["id"] for r in rows) == ["p04", "p05", "p06"]  # the end of the input
    means = {
        a: [s["reward"] for r in rows for s in r["samples"] if s["agent"] == a] for a in AGENTS
    }
    best = max(AGENTS, key=lambda a: sum(means[a]) / len(means[a]))
    assert calibration["agent"] == best == doc["single_agent"]
    assert f"random / prs use {best}" in done.stderr
    for cell in doc["cells"]:  # the first 3 prompts (--limit), none of the calibration's
        assert sorted(r["id"] for r in _results(out / cell["run_dir"])) == ["p00", "p01", "p02"]
    random_cell = next(c for c in doc["cells"] if c["strategy"] == "random")
    assert set(random_cell["best_agent_share"]) == {best}
    before = server.stats()["total"]
    again = _toa(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert server.stats()["total"] == before
    assert _without_wall(json.loads((out / "sweep.json").read_text())) == _without_wall(doc)
