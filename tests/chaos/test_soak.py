"""Sustained abuse: thousands of prompts through a faulty server, the run killed and resumed.

A driver starts `toa run` as a real process against the fake server on loopback (HTTP 500s, 429s
with Retry-After, timeouts, dropped connections and one dead agent), kills it at random moments
with SIGKILL, SIGTERM or SIGINT (at least 10 times, each signal at least twice), resumes it each
time (`toa resume`, or `toa run` again when the first process died before writing its manifest)
and finally lets it finish. Then, from the run directory and the server's request log:

* exactly one result per prompt, in the store and in ``results.jsonl``;
* the store passes ``PRAGMA integrity_check``;
* every failed generation is recorded as a failure (an error, no text), never as an answer;
* no generation the server answered successfully is requested again (same request id in the
  log, status 200 twice). SIGTERM and SIGINT stop cleanly: nothing new is sent, the calls in
  flight finish and are stored, so they allow no exception. A SIGKILL can only lose what was in
  flight or answered but not yet committed when the process died: successes sent before the
  process was gone and answered at most `KILL_WINDOW_S` before the SIGKILL (or after it: the
  server finishes a request whose client has died) are counted apart in the figures, with when
  they were answered relative to the signal; every other repeat fails the test;
* without faults, the same kill loop gives trees equal to those of an uninterrupted seeded run.

The figures (prompts, kills by signal, faults injected, duplicates) are printed in the test run's
summary ("chaos figures"). Everything is bounded: prompts, kills, and each process's wall time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from toa.store.run_store import RunStore
from toa.testing import FakeServer, Faults, read_request_log, running_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AGENTS = ("agent_a", "agent_b", "agent_c")
DEAD = "agent_c"
SOAK_PROMPTS = 2000
EQUAL_PROMPTS = 400
BUDGET = 4
MIN_KILLS = 10
KILL_WINDOW_S = 0.5  # a success this long before a SIGKILL may be lost with the process
PROCESS_TIMEOUT_S = 240.0
SOAK_TIMEOUT_S = 0.5  # a hang fault (5 s) costs a prompt slot this long
EQUAL_TIMEOUT_S = 30.0  # no fault: only a stalled machine could time a request out
SOAK_FAULTS = Faults(
    error_rate=0.04,
    rate_limit_rate=0.04,
    retry_after_s=0.05,
    timeout_rate=0.01,
    hang_s=5.0,
    drop_rate=0.02,
    dead_agents=frozenset({DEAD}),
    dead_mode="503",
)


def _config(path: Path, base_url: str, timeout_s: float) -> Path:
    agents = "".join(
        f"  - name: {name}\n"
        f"    base_url: {base_url}\n"
        f"    model: {name}\n"
        f"    timeout_s: {timeout_s}\n"
        "    max_concurrency: 32\n"
        "    retry: {max_attempts: 4, base_delay_s: 0.01, max_delay_s: 0.05, "
        "max_retry_after_s: 1}\n"
        "    breaker: {failure_threshold: 3, cooldown_s: 2, max_cooldown_s: 5}\n"
        for name in AGENTS
    )
    path.write_text(
        f"agents:\n{agents}"
        "reward:\n  type: simulated\n"
        f"strategy:\n  name: toa\n  budget: {BUDGET}\n  prior: {{source: none}}\n"
        "runner:\n  prompts_in_flight: 32\n"
        "seed: 7\n",
        encoding="utf-8",
    )
    return path


def _prompts(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"id": f"p{i:05d}", "prompt": f"Question number {i}?"}) + "\n")
    return path


@dataclass
class Kill:
    signum: int
    sent_at: float  # time.time(), the clock of the server's request log
    exited_at: float
    returncode: int


@dataclass
class Life:
    """One `toa` process: when it started and ended (time.time()), and the signal that ended it
    (None: it finished)."""

    started_at: float
    ended_at: float
    signum: int | None


@dataclass
class Driver:
    """Starts, kills and resumes one run directory's `toa` process."""

    server: FakeServer
    config: Path
    prompts: Path
    run_dir: Path
    logs: Path
    kills: list[Kill] = field(default_factory=list)
    lives: list[Life] = field(default_factory=list)
    starts: int = 0

    def _command(self) -> list[str]:
        if (self.run_dir / "manifest.json").exists():
            return ["resume", str(self.run_dir)]
        return ["run", "-c", str(self.config), "-i", str(self.prompts), "-o", str(self.run_dir)]

    def _start(self) -> tuple[subprocess.Popen[bytes], Path, float]:
        self.starts += 1
        started_at = time.time()
        log = self.logs / f"{self.run_dir.name}-{self.starts:02d}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "toa", *self._command()],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "200"},
            )
        return proc, log, started_at

    def kill_loop(self, rng: random.Random, n_kills: int, requests: tuple[int, int]) -> None:
        """Start the run and kill it `n_kills` times, each after a random number of requests."""
        kinds = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
        order = kinds * 2 + rng.choices(kinds, k=n_kills - 6)  # each signal at least twice
        rng.shuffle(order)
        for signum in order:
            proc, log, started_at = self._start()
            seen = self.server.stats()["total"]
            wanted = seen + rng.randint(*requests)
            deadline = time.monotonic() + PROCESS_TIMEOUT_S
            while self.server.stats()["total"] < wanted and proc.poll() is None:
                assert time.monotonic() < deadline, f"no progress: {log.read_text()[-3000:]}"
                time.sleep(0.005)
            assert proc.poll() is None, f"the run ended before kill {len(self.kills) + 1}"
            sent_at = time.time()
            proc.send_signal(signum)
            returncode = proc.wait(timeout=60)
            self.kills.append(Kill(signum, sent_at, time.time(), returncode))
            self.lives.append(Life(started_at, self.kills[-1].exited_at, signum))
            output = log.read_text(errors="replace")
            assert "Traceback" not in output, output[-3000:]
            expected = -signal.SIGKILL if signum == signal.SIGKILL else 130
            assert returncode == expected, (signum, returncode, output[-3000:])

    def finish(self) -> str:
        """Resume once more and let it run to the end; its output."""
        proc, log, started_at = self._start()
        returncode = proc.wait(timeout=PROCESS_TIMEOUT_S)
        self.lives.append(Life(started_at, time.time(), None))
        output = log.read_text(errors="replace")
        assert returncode == 0, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        return output


def _trees(run_dir: Path) -> dict[str, dict[str, Any]]:
    reader = RunStore.open_readonly(run_dir / "store.sqlite")
    try:
        trees: dict[str, dict[str, Any]] = {}
        for prompt_id, status, _result, tree in reader.iter_results_with_trees():
            assert status == "done", prompt_id
            assert tree is not None, prompt_id
            assert prompt_id not in trees, prompt_id
            trees[prompt_id] = tree
        return trees
    finally:
        reader.close()


def _check_one_result_per_prompt(run_dir: Path, n: int) -> None:
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == n
    assert set(ids) == {f"p{i:05d}" for i in range(n)}
    conn = sqlite3.connect(f"file:{run_dir / 'store.sqlite'}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT prompt_id) FROM results"
        ).fetchone()
        assert (count, distinct) == (n, n)
    finally:
        conn.close()
    assert not list(run_dir.glob("*.tmp"))


@dataclass
class Duplicates:
    at_kill: int = 0  # answered within KILL_WINDOW_S before a SIGKILL, or until the exit
    lags: list[tuple[str, float]] = field(default_factory=list)  # (signal, answered - sent_at)
    other: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


def _duplicates(log: list[dict[str, Any]], kills: list[Kill]) -> Duplicates:
    """Successful requests sent again: those lost with a SIGKILL, and the others (must be 0).

    Lost with a SIGKILL: sent while the killed process lived (it arrived before the process was
    gone) and answered no earlier than `KILL_WINDOW_S` before the signal; the answer may come
    after it, to a client already dead."""
    first_success: dict[str, dict[str, Any]] = {}
    found = Duplicates()
    for entry in sorted(log, key=lambda e: e["seq"]):
        if entry["status"] != 200:
            continue
        first = first_success.setdefault(entry["request_id"], entry)
        if first is entry:
            continue
        near = [
            k for k in kills
            if k.signum == signal.SIGKILL
            and first["arrived"] <= k.exited_at
            and k.sent_at - KILL_WINDOW_S <= first["time"]
            and entry["arrived"] >= k.exited_at  # sent again by a later process
        ]  # fmt: skip
        if near:
            found.at_kill += 1
            found.lags.append(
                (signal.Signals(near[0].signum).name, first["time"] - near[0].sent_at)
            )
        else:
            found.other += 1
            found.examples.append({"first": first, "again": entry})
    return found


def _explain(found: Duplicates, driver: Driver) -> str:
    """The unexplained repeats, each with the process lives and kills around it (for a failure)."""
    t0 = driver.lives[0].started_at if driver.lives else 0.0
    lives = ", ".join(
        f"[{life.started_at - t0:.2f}, {life.ended_at - t0:.2f}] "
        + (signal.Signals(life.signum).name if life.signum is not None else "finished")
        for life in driver.lives
    )
    lines = [f"{found.other} repeats; process lives (s from the first start): {lives}"]
    for example in found.examples[:5]:
        first, again = example["first"], example["again"]
        lines.append(
            f"{first['agent']} {first['request_id'][:8]}: seq {first['seq']} arrived "
            f"{first['arrived'] - t0:.3f} answered {first['time'] - t0:.3f}; again seq "
            f"{again['seq']} arrived {again['arrived'] - t0:.3f} status {again['status']}"
        )
    return "\n".join(lines)


def _at_kill(found: Duplicates) -> str:
    """The requests sent again after a kill, by signal, with when they had been answered."""
    parts = []
    for name in sorted({n for n, _ in found.lags}):
        lags = [lag for n, lag in found.lags if n == name]
        parts.append(
            f"{name} {len(lags)} (answered {min(lags) * 1000:+.0f} to {max(lags) * 1000:+.0f} ms "
            "from the signal)"
        )
    return f"+{found.at_kill} answered at a kill: " + (", ".join(parts) or "none")


def _failures_recorded(trees: dict[str, dict[str, Any]]) -> int:
    """Every response node is an answer (text, no error) or a failure (error, no text)."""
    failed = 0
    for prompt_id, tree in trees.items():
        for node in tree["nodes"]:
            if node["kind"] != "response":
                continue
            if node["error"] is None:
                assert node["text"], (prompt_id, node)
            else:
                assert node["text"] is None, (prompt_id, node)
                failed += 1
    return failed


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


def test_soak_with_faults_and_kills(tmp_path: Path, logs: Path, chaos_figures: list[str]) -> None:
    started = time.monotonic()
    request_log = tmp_path / "requests.jsonl"
    prompts = _prompts(tmp_path / "prompts.jsonl", SOAK_PROMPTS)
    with running_in_thread(
        latency_ms=(1.0, 5.0), faults=SOAK_FAULTS, request_log_path=request_log, seed=11
    ) as server:
        driver = Driver(
            server, _config(tmp_path / "config.yaml", server.base_url, SOAK_TIMEOUT_S), prompts,
            tmp_path / "run", logs,
        )  # fmt: skip
        driver.kill_loop(random.Random(2026), MIN_KILLS + 2, (100, 900))
        driver.finish()
    _check_one_result_per_prompt(tmp_path / "run", SOAK_PROMPTS)
    trees = _trees(tmp_path / "run")
    failed_nodes = _failures_recorded(trees)
    log = read_request_log(request_log)
    faults = Counter(entry["fault"] for entry in log if entry["fault"] != "ok")
    dead_requests = sum(entry["agent"] == DEAD for entry in log)
    assert all(faults[kind] for kind in ("500", "429", "timeout", "drop", "dead")), faults
    assert dead_requests > 0
    dead_answers = [
        n for t in trees.values() for n in t["nodes"]
        if n["kind"] == "response" and n["agent"] == DEAD and n["error"] is None
    ]  # fmt: skip
    assert not dead_answers
    duplicates = _duplicates(log, driver.kills)
    assert duplicates.other == 0, _explain(duplicates, driver)
    signals = Counter(signal.Signals(k.signum).name for k in driver.kills)
    assert len(driver.kills) >= MIN_KILLS
    assert min(signals.values()) >= 2, signals
    chaos_figures.append(
        f"soak: {SOAK_PROMPTS} prompts x budget {BUDGET}, {len(log)} requests, "
        f"{len(driver.kills)} kills ({', '.join(f'{k} {v}' for k, v in sorted(signals.items()))}), "
        f"faults injected {dict(sorted(faults.items()))} + {dead_requests} to dead {DEAD}, "
        f"{failed_nodes} failed generations recorded, duplicates found = {duplicates.other} "
        f"({_at_kill(duplicates)}), integrity ok, "
        f"{time.monotonic() - started:.0f} s"
    )


def test_kill_loop_without_faults_gives_the_uninterrupted_trees(
    tmp_path: Path, logs: Path, chaos_figures: list[str]
) -> None:
    started = time.monotonic()
    prompts = _prompts(tmp_path / "prompts.jsonl", EQUAL_PROMPTS)
    with running_in_thread(latency_ms=(1.0, 5.0), seed=11) as server:
        config = _config(tmp_path / "config.yaml", server.base_url, EQUAL_TIMEOUT_S)
        Driver(server, config, prompts, tmp_path / "reference", logs).finish()
    request_log = tmp_path / "requests.jsonl"
    with running_in_thread(latency_ms=(1.0, 5.0), request_log_path=request_log, seed=11) as server:
        config = _config(tmp_path / "config.yaml", server.base_url, EQUAL_TIMEOUT_S)
        driver = Driver(server, config, prompts, tmp_path / "killed", logs)
        driver.kill_loop(random.Random(7), MIN_KILLS, (20, 80))
        driver.finish()
    _check_one_result_per_prompt(tmp_path / "killed", EQUAL_PROMPTS)
    reference, killed = _trees(tmp_path / "reference"), _trees(tmp_path / "killed")
    assert killed.keys() == reference.keys()
    different = [p for p in reference if reference[p] != killed[p]]
    assert not different, (len(different), different[:5])
    duplicates = _duplicates(read_request_log(request_log), driver.kills)
    assert duplicates.other == 0, _explain(duplicates, driver)
    chaos_figures.append(
        f"kill loop without faults: {EQUAL_PROMPTS} prompts, {len(driver.kills)} kills, "
        f"{len(reference)} trees equal to the uninterrupted run's, duplicates found = "
        f"{duplicates.other} ({_at_kill(duplicates)}), "
        f"{time.monotonic() - started:.0f} s"
    )
