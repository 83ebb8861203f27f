"""Cross-prompt priors in a run: stored per prompt, learned online, written by `toa priors`,
read back with `prior: {source: file}`. A real `FakeServer` on 127.0.0.1 answers every call."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from toa.cli import app
from toa.config import parse_config
from toa.engine.runner import run
from toa.search import Prior
from toa.testing import FakeServer

AGENTS = ("agent_a", "agent_b", "agent_c")


def settings(base_url: str, in_flight: int = 1, **strategy: Any) -> Any:
    return parse_config(
        {
            "agents": [{"name": n, "base_url": base_url, "model": n} for n in AGENTS],
            "reward": {"type": "simulated"},
            "strategy": {"name": "toa", "budget": 6, **strategy},
            "runner": {"prompts_in_flight": in_flight},
            "seed": 3,
        }
    )


def write_prompts(path: Path, n: int) -> Path:
    rows = (json.dumps({"id": f"p{i:02d}", "prompt": f"Question {i}: why?"}) for i in range(n))
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def stored(run_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(run_dir / "store.sqlite") as conn:
        return conn.execute(sql).fetchall()


async def test_online_priors_grow_prompt_by_prompt_and_are_stored_with_each_prompt(
    tmp_path: Path,
) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 6)
    async with FakeServer() as server:
        report = await run(settings(server.base_url), input_path=inputs, run_dir=tmp_path / "r")
    assert report.finished == 6
    priors = dict(stored(tmp_path / "r", "SELECT prompt_id, prior_json FROM priors"))
    order = [p for (p,) in stored(tmp_path / "r", "SELECT prompt_id FROM evidence ORDER BY seq")]
    assert sorted(priors) == sorted(order) == [f"p{i:02d}" for i in range(6)]
    # one prompt in flight: each prompt's prior holds exactly the prompts finished before it
    for i, prompt_id in enumerate(order):
        assert Prior.from_dict(json.loads(priors[prompt_id])).prompts == i


async def test_toa_priors_writes_what_a_run_learned_and_a_run_starts_from_it(
    tmp_path: Path,
) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 5)
    async with FakeServer() as server:
        await run(
            settings(server.base_url, in_flight=3, name="ensemble", budget=6),
            input_path=inputs,
            run_dir=tmp_path / "ensemble",
        )
        out = tmp_path / "priors.json"
        result = CliRunner().invoke(app, ["priors", str(tmp_path / "ensemble"), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "evidence of 5 finished prompts" in result.output
        learned = Prior.from_dict(json.loads(out.read_text(encoding="utf-8")))
        assert learned.prompts == 5
        assert sum(c.plays for c in learned.fresh.values()) == 5 * 6
        printed = CliRunner().invoke(app, ["priors", str(tmp_path / "ensemble")])
        assert json.loads(printed.stdout) == json.loads(out.read_text(encoding="utf-8"))

        from_file = settings(
            server.base_url, in_flight=3, prior={"source": "file", "path": str(out)}
        )
        await run(from_file, input_path=inputs, run_dir=tmp_path / "toa")
    kept = {
        json.loads(p)["prompts"]
        for (p,) in stored(tmp_path / "toa", "SELECT prior_json FROM priors")
    }
    assert kept == {5}  # every prompt started from the file, whatever finished before it

    async with FakeServer() as server:
        seeded = settings(
            server.base_url, in_flight=1, prior={"source": "online", "path": str(out)}
        )
        await run(seeded, input_path=inputs, run_dir=tmp_path / "seeded")
    grown = [
        json.loads(p)["prompts"]
        for (p,) in stored(tmp_path / "seeded", "SELECT prior_json FROM priors ORDER BY rowid")
    ]
    assert grown == [5, 6, 7, 8, 9]  # online from the file: its 5 prompts, then the run's own
    mine = CliRunner().invoke(app, ["priors", str(tmp_path / "seeded")])
    assert json.loads(mine.stdout)["prompts"] == 5  # `toa priors`: the run's own evidence


async def test_a_run_without_priors_stores_none_but_still_its_evidence(tmp_path: Path) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 3)
    async with FakeServer() as server:
        await run(
            settings(server.base_url, prior={"source": "none"}),
            input_path=inputs,
            run_dir=tmp_path / "r",
        )
    assert stored(tmp_path / "r", "SELECT COUNT(*) FROM priors") == [(0,)]
    assert stored(tmp_path / "r", "SELECT COUNT(*) FROM evidence") == [(3,)]


def test_toa_priors_on_a_directory_that_is_not_a_run_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["priors", str(tmp_path)])
    assert result.exit_code == 2
    assert "error" in result.output
