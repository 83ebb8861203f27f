"""The runner end to end, against the real fake server on 127.0.0.1.

Faults (errors, 429s, timeouts, a dead agent), SIGKILL and Ctrl-C of a `python -m toa` child
followed by `toa resume`, bad input rows, API keys kept out of every file and log, and which
configuration changes a resume accepts. The fake server always runs in this (the parent) process,
so its request log is the ground truth of what was sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from toa.agents.spec import AgentSpec
from toa.config import load_config
from toa.engine.context import request_hash
from toa.engine.runner import run
from toa.errors import ConfigError
from toa.testing import FakeServer, Faults, running_in_thread
from toa.types import Message

AGENTS = ("agent_a", "agent_b", "agent_c")
CLI_TIMEOUT_S = 60


# ------------------------------------------------------------------------------------ helpers


def agent(name: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": base_url, "model": name, "params_b": 1.0, **extra}


def write_config(path: Path, agents: list[dict[str, Any]], **top: Any) -> Path:
    data: dict[str, Any] = {
        "agents": agents,
        "reward": {"type": "simulated"},
        "strategy": {"name": "toa", "budget": 6},
        "runner": {"prompts_in_flight": 4},
        "seed": 3,
    }
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_prompts(path: Path, n: int) -> Path:
    rows = (
        json.dumps({"id": f"p{i:03d}", "prompt": f"Question number {i}: why?"}) for i in range(n)
    )
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the store through a read-only connection of our own."""
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def cli_env(**extra: str) -> dict[str, str]:
    # wide lines so that rich never wraps a message we look for
    return {**os.environ, "COLUMNS": "1000", "NO_COLOR": "1", **extra}


def toa(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toa", *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=CLI_TIMEOUT_S,
    )


def assert_secret_absent(run_dir: Path, secret: str) -> list[str]:
    """No file of the run directory holds `secret` (bytes, SQLite and WAL included)."""
    scanned = []
    for path in sorted(run_dir.iterdir()):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the API key is in {path.name}"
            scanned.append(path.name)
    return scanned


def wait_idle(server: FakeServer, timeout_s: float = 10.0) -> None:
    """Wait until the server handles no request (a killed client's are cut off)."""
    deadline = time.monotonic() + timeout_s
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight == 0


# ---------------------------------------------------------------------------------- 1. faults


async def test_faulty_run_finishes_with_one_result_per_prompt_and_every_failure_recorded(
    tmp_path: Path,
) -> None:
    threshold, concurrency = 12, 8
    faults = Faults(
        error_rate=0.2,
        rate_limit_rate=0.05,
        retry_after_s=0.05,
        timeout_rate=0.05,
        hang_s=1.0,
        dead_agents=frozenset({"agent_b"}),
    )
    n_prompts = 200
    inputs = write_prompts(tmp_path / "prompts.jsonl", n_prompts)
    run_dir = tmp_path / "run"
    async with FakeServer(faults=faults, seed=11) as server:
        agents = [
            agent(
                name,
                server.base_url,
                timeout_s=0.3,
                max_concurrency=concurrency,
                retry={"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.05},
                # a high threshold: 25% random failures never open a live agent's breaker,
                # a long cool-down: no probe of the dead agent during the run
                breaker={"failure_threshold": threshold, "cooldown_s": 120, "max_cooldown_s": 120},
            )
            for name in AGENTS
        ]
        config = write_config(tmp_path / "config.yaml", agents, runner={"prompts_in_flight": 32})
        settings = load_config(config)
        started = time.monotonic()
        report = await asyncio.wait_for(run(settings, input_path=inputs, run_dir=run_dir), 45)
        elapsed = time.monotonic() - started
        stats = server.stats()

    assert elapsed < 45
    assert (report.total, report.finished) == (n_prompts, n_prompts)
    assert (report.failed, report.bad_rows) == (0, 0)
    assert report.exit_code == 0
    assert not report.interrupted

    # exactly one line per prompt
    results = read_results(run_dir)
    ids = [r["id"] for r in results]
    assert len(ids) == n_prompts
    assert set(ids) == {f"p{i:03d}" for i in range(n_prompts)}

    # the dead agent: skipped once its breaker opened; the others did the work
    by_agent = stats["by_agent"]
    assert by_agent["agent_b"] <= threshold + concurrency, by_agent
    assert by_agent["agent_a"] > 150, by_agent
    assert by_agent["agent_c"] > 150, by_agent
    assert stats["by_status"].get("503", 0) == by_agent["agent_b"]  # every one of them failed
    # the faults did happen
    for status in ("500", "429", "0"):  # "0": timed out by the client
        assert stats["by_status"].get(status, 0) > 0, stats["by_status"]

    # every failure is recorded with its error, and never gets a reward
    samples = [s for r in results for s in r["samples"]]
    failed = [s for s in samples if "error" in s]
    assert failed, "the faults caused no failed generation"
    kinds = Counter(s["error"].split(":")[0] for s in failed)
    assert kinds["AgentUnavailableError"] > 0, kinds
    for s in failed:
        assert isinstance(s["error"], str)
        assert s["error"].strip()
        assert s["reward"] is None
        assert s["response"] is None
    for s in samples:
        if "error" not in s and "reward_error" not in s:
            assert isinstance(s["reward"], float)
            assert s["response"]
        if "reward_error" in s:
            assert s["reward"] is None
            assert s["reward_error"].strip()
    for s in samples:  # no 0 standing in for a failure
        if s["reward"] == 0:
            assert "error" not in s
            assert "reward_error" not in s
    dead = [s for s in samples if s["agent"] == "agent_b"]
    assert dead
    assert all("error" in s for s in dead)
    for r in results:
        assert r["status"] == "done"
        compute = r["compute"]
        assert compute["calls"] == len(r["samples"]) == 6
        assert compute["failed_calls"] == sum("error" in s for s in r["samples"])
        if r["best"] is not None:
            assert r["best"]["reward"] is not None

    db = run_dir / "store.sqlite"
    failed_rows = query(db, "SELECT error, error_type FROM calls WHERE NOT ok")
    assert len(failed_rows) == len(failed)
    assert all(error and error.strip() and error_type for error, error_type in failed_rows)
    assert query(db, "SELECT COUNT(*) FROM calls")[0][0] == 6 * n_prompts
    assert query(db, "SELECT COUNT(*) FROM calls WHERE ok AND text IS NULL")[0][0] == 0
    assert query(db, "SELECT COUNT(*) FROM rewards WHERE NOT ok AND error IS NULL")[0][0] == 0
    assert query(db, "SELECT COUNT(*) FROM rewards WHERE ok AND score IS NULL")[0][0] == 0


# ------------------------------------------------------------------- 2, 3. SIGKILL and Ctrl-C


def _store_progress(db: Path) -> tuple[int, int]:
    """(prompts with a result, prompts with calls but no result yet) in the store, now."""
    if not db.exists():
        return 0, 0
    try:
        done = query(db, "SELECT COUNT(*) FROM results")[0][0]
        partial = query(
            db,
            "SELECT COUNT(DISTINCT prompt_id) FROM calls "
            "WHERE prompt_id NOT IN (SELECT prompt_id FROM results)",
        )[0][0]
    except sqlite3.Error:  # the child is still creating it
        return 0, 0
    return int(done), int(partial)


def _identity(body: dict[str, Any]) -> tuple[str, int, str]:
    """What makes a generation request the same request: model, seed and messages."""
    return body["model"], body["seed"], json.dumps(body["messages"], sort_keys=True)


@pytest.fixture
def interrupted_setup(tmp_path: Path) -> Iterator[tuple[FakeServer, Path, Path, Path]]:
    with running_in_thread(latency_ms=(10.0, 60.0), seed=5) as server:
        agents = [
            agent(
                name,
                server.base_url,
                api_key_env="TOA_TEST_API_KEY",
                retry={"max_attempts": 1},
                breaker={"failure_threshold": 1000, "cooldown_s": 1},
            )
            for name in AGENTS
        ]
        config = write_config(tmp_path / "config.yaml", agents)
        inputs = write_prompts(tmp_path / "prompts.jsonl", 40)
        yield server, config, inputs, tmp_path / "run"


SECRET = "sk-test-7f3c2a91d0e84b6c"


def _run_until_partial_then(
    sig: signal.Signals,
    server: FakeServer,
    config: Path,
    inputs: Path,
    run_dir: Path,
    *,
    partial_at_least: int = 2,
) -> tuple[int, float]:
    """Start `toa run` in a child, send `sig` once some prompts are done and some partial.

    Returns the child's exit status and the seconds it took to exit after the signal.
    """
    log = (run_dir.parent / f"child-{sig.name}.log").open("wb")
    env = cli_env(TOA_TEST_API_KEY=SECRET)
    cmd = [sys.executable, "-m", "toa", "-vv", "run", "-c", str(config), "-i", str(inputs)]
    child = subprocess.Popen(
        [*cmd, "-o", str(run_dir)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            done, partial = _store_progress(run_dir / "store.sqlite")
            if done >= 5 and partial >= partial_at_least:
                break
            assert child.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        child.send_signal(sig)
        signalled = time.monotonic()
        status = child.wait(timeout=20)
        return status, time.monotonic() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()


def _committed_calls(run_dir: Path) -> dict[tuple[str, int], tuple[str, bool]]:
    rows = query(run_dir / "store.sqlite", "SELECT prompt_id, node_id, agent, ok FROM calls")
    return {(p, n): (a, bool(ok)) for p, n, a, ok in rows}


def _committed_hashes(run_dir: Path) -> dict[str, tuple[str, int]]:
    """(prompt id, node id) of each committed call, by its request hash (seed included)."""
    rows = query(run_dir / "store.sqlite", "SELECT prompt_id, node_id, request_hash FROM calls")
    by_hash = {h: (p, n) for p, n, h in rows}
    assert len(by_hash) == len(rows)  # distinct: a request hash names one call
    return by_hash


_SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "stop", "seed")


def _sent_hash(request: Any, specs: dict[str, AgentSpec]) -> str:
    """The request hash of a request the server received (what the engine stored for it)."""
    body = request.body
    messages = [Message(m["role"], m["content"]) for m in body["messages"]]
    sampling = {k: body[k] for k in _SAMPLING_FIELDS if k in body}
    return request_hash(specs[request.agent], messages, sampling)


def _check_resume(
    server: FakeServer, config: Path, run_dir: Path, *, fault_free: bool
) -> list[dict[str, Any]]:
    """Resume the stopped run and check the guarantees; returns the final results."""
    db = run_dir / "store.sqlite"
    specs = {spec.name: spec for spec in load_config(config).agents}
    committed = _committed_calls(run_dir)
    by_hash = _committed_hashes(run_dir)
    done_before = dict(query(db, "SELECT prompt_id, result_json FROM results"))
    partial = {p for p, _ in committed} - set(done_before)
    assert committed
    assert done_before
    assert partial

    # `toa status` on the stopped run
    status = toa("status", str(run_dir))
    assert status.returncode == 0, status.stderr
    assert f"{len(done_before)} done, {len(partial)} partial, 0 failed" in status.stderr

    # what the committed calls were, by the server's own log
    wait_idle(server)
    sent_before = server.requests
    identities_by_call: dict[tuple[str, int], set[tuple[str, int, str]]] = {}
    seeds: set[int] = set()
    for request in sent_before:
        key = by_hash.get(_sent_hash(request, specs))
        if key is not None:
            assert request.agent == committed[key][0]
            identities_by_call.setdefault(key, set()).add(_identity(request.body))
            seeds.add(request.body["seed"])
    assert len(seeds) == len(committed)  # distinct seeds: one per request and sample index
    missing = set(committed) - set(identities_by_call)
    assert not missing, f"committed calls the server never saw: {sorted(missing)[:5]}"
    finished_identities = set().union(*identities_by_call.values())
    last_seq = max(r.seq for r in sent_before)

    resumed = toa("-vv", "resume", str(run_dir), env=cli_env(TOA_TEST_API_KEY=SECRET))
    (run_dir.parent / "resume.log").write_text(resumed.stderr)  # kept for a failure's post-mortem
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert SECRET not in resumed.stdout + resumed.stderr

    # no finished generation was requested again
    sent_after = [r for r in server.requests if r.seq > last_seq]
    assert sent_after, "the resume sent nothing"
    repeated = [r for r in sent_after if _identity(r.body) in finished_identities]
    assert not repeated, f"{len(repeated)} committed calls were sent again"
    # (stricter: no seed of a committed call again, not even with other messages)
    assert not [r for r in sent_after if r.body["seed"] in seeds]
    for request in sent_after:
        assert request.headers.get("Authorization") == f"Bearer {SECRET}"

    # exactly one result line per prompt; results finished before the stop are kept as they were
    results = read_results(run_dir)
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) == 40
    final = dict(query(db, "SELECT prompt_id, result_json FROM results"))
    for prompt_id, line in done_before.items():
        assert final[prompt_id] == line
    # every committed call of an unfinished prompt was replayed from the store
    by_id = {r["id"]: r for r in results}
    for prompt_id in partial:
        stored = sum(1 for p, _ in committed if p == prompt_id)
        assert by_id[prompt_id]["compute"]["replayed_calls"] == stored, prompt_id
        assert by_id[prompt_id]["compute"]["calls"] == 6
    if fault_free:
        assert all("error" not in s for r in results for s in r["samples"])

    status = toa("status", str(run_dir))
    assert status.returncode == 0, status.stderr
    assert "40 done, 0 partial, 0 failed" in status.stderr
    assert_secret_absent(run_dir, SECRET)
    return results


def test_sigkill_then_resume_never_repeats_a_committed_call(
    interrupted_setup: tuple[FakeServer, Path, Path, Path],
) -> None:
    server, config, inputs, run_dir = interrupted_setup
    # some calls fail for good (one attempt): stored failures must replay as failures too
    server.set_faults(Faults(error_rate=0.15, script=("500", "ok", "500")))
    status, _ = _run_until_partial_then(signal.SIGKILL, server, config, inputs, run_dir)
    assert status == -signal.SIGKILL
    assert (run_dir / "store.sqlite-wal").exists()  # killed: the WAL was never checkpointed
    scanned = assert_secret_absent(run_dir, SECRET)
    assert {"manifest.json", "store.sqlite", "store.sqlite-wal"} <= set(scanned)
    failed = query(run_dir / "store.sqlite", "SELECT error FROM calls WHERE NOT ok")
    assert failed
    assert all(error for (error,) in failed)
    _check_resume(server, config, run_dir, fault_free=False)


@pytest.mark.parametrize("prior", ["none", "online"])
def test_ctrl_c_exits_130_keeps_results_and_resume_matches_an_uninterrupted_run(
    interrupted_setup: tuple[FakeServer, Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prior: str,
) -> None:
    """With online priors and one prompt in flight, a prompt's prior is what the prompts before
    it taught: the stopped-and-resumed run must still make exactly the uninterrupted trees.
    (With many prompts in flight the snapshots depend on timing; see the README.)"""
    server, config, inputs, run_dir = interrupted_setup
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    if prior == "none":
        data["strategy"]["prior"] = {"source": "none"}
    else:
        data["runner"]["prompts_in_flight"] = 1
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    status, exit_s = _run_until_partial_then(
        signal.SIGINT, server, config, inputs, run_dir, partial_at_least=2 if prior == "none" else 1
    )
    log = (tmp_path / "child-SIGINT.log").read_text(encoding="utf-8", errors="replace")
    assert status == 130, log[-3000:]
    assert exit_s < 5, f"took {exit_s:.1f} s to stop"
    assert "toa resume" in log
    assert SECRET not in log
    wal = run_dir / "store.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # closed cleanly: checkpointed
    # results so far are kept: one well-formed line per result in the store
    kept = read_results(run_dir)
    stored = query(run_dir / "store.sqlite", "SELECT prompt_id FROM results")
    assert kept
    assert sorted(r["id"] for r in kept) == sorted(p for (p,) in stored)

    results = _check_resume(server, config, run_dir, fault_free=True)

    # the stopped-and-resumed run made the same trees as an uninterrupted one (seeded server)
    reference_dir = tmp_path / "reference"
    with running_in_thread(seed=5) as fast:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        for a in data["agents"]:
            a["base_url"] = fast.base_url
        reference_config = write_config(tmp_path / "reference.yaml", **data)
        monkeypatch.setenv("TOA_TEST_API_KEY", SECRET)
        report = asyncio.run(
            run(load_config(reference_config), input_path=inputs, run_dir=reference_dir)
        )
    assert report.finished == 40
    reference = {r["id"]: r for r in read_results(reference_dir)}
    for r in results:
        ref = reference[r["id"]]
        assert r["samples"] == ref["samples"], r["id"]
        assert r["best"] == ref["best"]


# ------------------------------------------------------------------------------ 4. bad input


def test_bad_rows_are_reported_with_file_and_line_and_good_rows_run(tmp_path: Path) -> None:
    lines: list[bytes] = [
        b'{"id": "g1", "prompt": "Explain rainbows."}',  # 1 good
        b'{"id": "bad-json", "prompt": "unterminated',  # 2 malformed JSON
        b'{"id": "no-prompt", "question": "where is the prompt?"}',  # 3 missing prompt
        b'{"id": "empty", "prompt": "   "}',  # 4 empty prompt
        b'{"id": "g1", "prompt": "Same id again."}',  # 5 duplicate id
        b'{"id": "wrong-type", "prompt": 42}',  # 6 wrong type (prompt)
        b'{"id": "caf\xe9", "prompt": "Latin-1 bytes"}',  # 7 not UTF-8
        b'{"id": "g2", "instruction": "Write a haiku."}',  # 8 good
        b'{"id": ["a", "list"], "prompt": "id of the wrong type"}',  # 9 wrong type (id)
        b'["not", "an", "object"]',  # 10 not an object
        b'{"id": 3, "prompt": "Integer ids are fine."}',  # 11 good
    ]
    bad = {
        2: "malformed JSON",
        3: "no prompt",
        4: "empty",
        5: "duplicate id",
        6: "must be a string",
        7: "UTF-8",
        9: "id field",
        10: "not an object",
    }
    inputs = tmp_path / "mixed.jsonl"
    inputs.write_bytes(b"\n".join(lines) + b"\n")
    with running_in_thread() as server:
        config = write_config(tmp_path / "c.yaml", [agent(n, server.base_url) for n in AGENTS])
        out = toa("run", "-c", str(config), "-i", str(inputs), "-o", str(tmp_path / "run"))
    output = out.stdout + out.stderr
    assert out.returncode == 1, output[-3000:]
    for line, reason in bad.items():
        matching = [m for m in output.splitlines() if f"{inputs}:{line}:" in m]
        assert matching, f"no message for line {line}:\n{output}"
        assert any(reason.lower() in m.lower() for m in matching), (line, matching)
    for good in (1, 8, 11):
        assert f"{inputs}:{good}:" not in output
    assert "3 finished" in output
    assert f"{len(bad)} bad rows" in output
    results = read_results(tmp_path / "run")
    assert sorted(r["id"] for r in results) == ["3", "g1", "g2"]
    assert all(r["status"] == "done" and r["best"] is not None for r in results)


# -------------------------------------------------------------------------------- 5. secrets


def test_api_key_appears_in_no_file_log_or_error(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdefSECRET"
    # failures of every kind: 500s, 429s, auth errors and a dead agent
    faults = Faults(
        error_rate=0.3,
        rate_limit_rate=0.1,
        retry_after_s=0.01,
        dead_agents=frozenset({"agent_c"}),
        script=("401", "ok", "403", "500", "400"),
    )
    with running_in_thread(faults=faults) as server:
        agents = [
            agent(
                n,
                server.base_url,
                api_key_env="TOA_SECRET_KEY",
                retry={"max_attempts": 2, "base_delay_s": 0.0},
                breaker={"failure_threshold": 3, "cooldown_s": 60},
            )
            for n in AGENTS
        ]
        config = write_config(tmp_path / "c.yaml", agents, runner={"prompts_in_flight": 8})
        inputs = write_prompts(tmp_path / "p.jsonl", 12)
        run_dir = tmp_path / "run"
        env = cli_env(TOA_SECRET_KEY=secret)
        out = toa("-vv", "run", "-c", str(config), "-i", str(inputs), "-o", str(run_dir), env=env)
        sent = server.requests
    output = out.stdout + out.stderr
    assert out.returncode == 0, output[-3000:]
    assert "DEBUG" in output  # -vv really logged at debug level
    assert secret not in output
    # the key was used
    assert sent
    assert all(r.headers.get("Authorization") == f"Bearer {secret}" for r in sent)
    # failures happened and were recorded with their errors
    results = read_results(run_dir)
    errors = [s["error"] for r in results for s in r["samples"] if "error" in s]
    assert errors
    assert all(secret not in e for e in errors)
    assert query(run_dir / "store.sqlite", "SELECT COUNT(*) FROM calls WHERE NOT ok")[0][0] > 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["agents"][0]["api_key_env"] == "TOA_SECRET_KEY"
    scanned = assert_secret_absent(run_dir, secret)
    assert {"manifest.json", "results.jsonl", "store.sqlite"} <= set(scanned)


def test_missing_api_key_variable_is_a_clear_error(tmp_path: Path) -> None:
    with running_in_thread() as server:
        agents = [agent("agent_a", server.base_url, api_key_env="TOA_UNSET_KEY_FOR_TEST")]
        config = write_config(tmp_path / "c.yaml", agents)
        inputs = write_prompts(tmp_path / "p.jsonl", 2)
        env = cli_env()
        env.pop("TOA_UNSET_KEY_FOR_TEST", None)
        out = toa("run", "-c", str(config), "-i", str(inputs), "-o", str(tmp_path / "r"), env=env)
        assert server.stats()["total"] == 0
    assert out.returncode == 2, out.stderr
    assert "TOA_UNSET_KEY_FOR_TEST" in out.stderr


# ----------------------------------------------------------------- 6. resume and config changes


async def test_resume_refuses_changed_generation_settings_and_accepts_operational_ones(
    tmp_path: Path,
) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 6)
    run_dir = tmp_path / "run"
    async with FakeServer() as first, FakeServer() as second:
        base = [agent(n, first.base_url) for n in AGENTS]
        config = write_config(tmp_path / "c.yaml", base)
        report = await run(load_config(config), input_path=inputs, run_dir=run_dir, limit=2)
        assert report.finished == 2
        manifest = (run_dir / "manifest.json").read_text()
        sent = first.stats()["total"]

        hotter = [dict(a) for a in base]
        hotter[1]["sampling"] = {"temperature": 1.3}
        bigger = {"name": "toa", "budget": 9}
        changes = [
            (write_config(tmp_path / "t.yaml", hotter), "agents[1].sampling.temperature"),
            (write_config(tmp_path / "b.yaml", base, strategy=bigger), "strategy.budget"),
            (write_config(tmp_path / "s.yaml", base, seed=4), "seed"),
            (
                write_config(tmp_path / "r.yaml", base, strategy={"name": "random", "budget": 6}),
                "strategy.name",
            ),
        ]
        for changed, field in changes:
            with pytest.raises(ConfigError) as refused:
                await run(load_config(changed), input_path=inputs, run_dir=run_dir)
            assert field in str(refused.value), str(refused.value)
            assert (run_dir / "manifest.json").read_text() == manifest  # untouched
        assert first.stats()["total"] == sent  # nothing was sent

        # the CLI says the same, with exit code 2
        args = ["run", "-c", str(changes[0][0]), "-i", str(inputs), "-o", str(run_dir)]
        out = await asyncio.to_thread(toa, *args)
        assert out.returncode == 2
        assert "agents[1].sampling.temperature" in out.stderr
        args = ["run", "-c", str(config), "-i", str(inputs), "-o", str(run_dir), "--budget", "7"]
        out = await asyncio.to_thread(toa, *args)
        assert out.returncode == 2
        assert "strategy.budget" in out.stderr

        # where calls go and how many at once may change: the run continues on `second`
        moved = [
            agent(
                n,
                second.base_url,
                max_concurrency=3,
                timeout_s=30,
                retry={"max_attempts": 2},
                price={"prompt_usd_per_mtok": 1.0},
            )
            for n in AGENTS
        ]
        moved_config = write_config(tmp_path / "m.yaml", moved, runner={"prompts_in_flight": 2})
        report = await run(load_config(moved_config), input_path=inputs, run_dir=run_dir)
        assert (report.already_done, report.finished, report.exit_code) == (2, 4, 0)
        assert first.stats()["total"] == sent
        assert second.stats()["total"] == 4 * 6
    results = read_results(run_dir)
    assert sorted(r["id"] for r in results) == [f"p{i:03d}" for i in range(6)]
    assert (
        json.loads((run_dir / "manifest.json").read_text())["config"]["agents"][0]["base_url"]
        == second.base_url
    )


async def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path: Path) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 8)
    run_dir = tmp_path / "run"
    async with FakeServer(latency_ms=250) as server:
        config = write_config(tmp_path / "c.yaml", [agent(n, server.base_url) for n in AGENTS])
        settings = load_config(config)
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, input_path=inputs, run_dir=run_dir, stop=stop))
        while not (run_dir / "manifest.json").exists():
            await asyncio.sleep(0.01)
        out = await asyncio.to_thread(
            toa, "run", "-c", str(config), "-i", str(inputs), "-o", str(run_dir)
        )
        assert out.returncode == 2
        assert "in use" in out.stderr
        stop.set()
        report = await task
    assert report.interrupted
    assert report.exit_code == 130


async def test_cancelling_the_run_task_propagates(tmp_path: Path) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 8)
    async with FakeServer(latency_ms=250) as server:
        config = write_config(tmp_path / "c.yaml", [agent(n, server.base_url) for n in AGENTS])
        settings = load_config(config)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await run(settings, input_path=inputs, run_dir=tmp_path / "run")
