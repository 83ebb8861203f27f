"""`toa demo --simulated`: calibration, the strategy, best-of-N on the chosen agent, one cache.

Fast: the fake server's simulated agents, a few problems, small budgets.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.demo import (
    AgentChoice,
    DemoOptions,
    DemoResult,
    RunTotals,
    run_demo,
    simulated_settings,
)
from toa.engine.runner import RunReport
from toa.errors import ConfigError
from toa.testing import FakeServer


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ids(path: Path) -> set[str]:
    return {str(row["id"]) for row in _lines(path)}


def test_simulated_demo_prints_both_strategies_the_agent_and_a_verdict(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--simulated", "--problems", "3", "--budget", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    choice = json.loads((out / "strongest_agent.json").read_text())["agent"]
    assert choice in ("agent_a", "agent_b", "agent_c")
    for agent in ("agent_a", "agent_b", "agent_c"):
        assert agent in result.output
    assert f"strongest single agent: {choice} (chosen now" in result.output
    assert "toa (all agents)" in result.output
    assert f"best-of-4 on {choice}" in result.output
    assert any(
        f"TOA {word} best-of-4 on {choice}" in result.output
        for word in ("beat", "matched", "lost to")
    ), result.output
    assert len(_lines(out / "toa" / "results.jsonl")) == 3
    assert len(_lines(out / "best-of-n" / "results.jsonl")) == 3
    assert len((out / "toa" / "sft.jsonl").read_text().splitlines()) == 3
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # resumes: nothing left to do
    assert again.exit_code == 0, again.output
    assert "3 already done" in again.output
    assert f"strongest single agent: {choice} (chosen by an earlier run" in again.output


async def test_calibration_is_held_out_the_choice_is_stored_and_a_rerun_sends_nothing(
    tmp_path: Path,
) -> None:
    options = DemoOptions(problems=5, budget=6, out=tmp_path / "demo", simulated=True)
    async with FakeServer() as server:
        async with simulated_settings(options, server=server) as settings:
            first = await run_demo(options, settings=settings)
        sent = server.stats()["total"]
        async with simulated_settings(options, server=server) as settings:
            second = await run_demo(options, settings=settings)
        assert server.stats()["total"] == sent  # every call came from the stores: nothing new

    assert first.choice is not None
    assert second.choice is not None
    assert not first.choice.reused
    assert second.choice.reused
    assert second.choice.agent == first.choice.agent
    # the choice: the best mean reward over the calibration samples, held-out problems only
    calibration = _ids(options.calibration_dir / "results.jsonl")
    evaluated = _ids(options.run_dir / "results.jsonl")
    assert len(calibration) == options.calibration_problems
    assert len(evaluated) == 5
    assert calibration.isdisjoint(evaluated)
    assert set(first.choice.problems) == calibration
    scores = first.choice.scores
    assert all(s.samples == options.calibration_problems * 2 for s in scores.values())
    assert first.choice.agent == max(scores, key=lambda name: scores[name].mean_reward)
    # TOA's online prior starts from the calibration run's evidence, stored beside it
    manifest = json.loads((options.run_dir / "manifest.json").read_text(encoding="utf-8"))
    prior = manifest["config"]["strategy"]["prior"]
    assert prior["source"] == "online"
    assert Path(prior["path"]) == (options.out / "calibration_priors.json").resolve()
    seeded = json.loads(Path(prior["path"]).read_text(encoding="utf-8"))
    assert seeded["prompts"] == options.calibration_problems

    # best-of-N: `random` on the chosen agent, same budget, same problems
    baseline = _lines(options.baseline_dir / "results.jsonl")
    assert _ids(options.baseline_dir / "results.jsonl") == evaluated
    for row in baseline:
        assert row["strategy"] == "random"
        samples = row["samples"]
        assert isinstance(samples, list)
        assert len(samples) == options.budget
        assert {s["agent"] for s in samples} == {first.choice.agent}
    # one shared cache: best-of-N got every fresh answer TOA had from that agent for free
    shared = 0
    for row in _lines(options.run_dir / "results.jsonl"):
        samples = row["samples"]
        assert isinstance(samples, list)
        fresh = [s for s in samples if s["action"] == "fresh" and s["agent"] == first.choice.agent]
        shared += min(options.budget, len(fresh))
    assert first.baseline is not None
    assert first.baseline.cached_calls == shared  # TOA's own choices decide how many
    assert first.baseline.calls == 5 * options.budget

    # the rerun reports the same totals and verdict from the stores
    assert second.baseline is not None
    assert second.totals is not None
    assert first.totals is not None
    assert second.baseline.correct == first.baseline.correct
    assert second.totals.correct == first.totals.correct
    assert second.verdict() == first.verdict() is not None
    assert first.exit_code == second.exit_code == 0


async def test_best_of_n_reuses_the_strategys_samples_of_its_agent(tmp_path: Path) -> None:
    # ensemble's fresh samples are random's: 2 of each agent's per problem come from the cache
    options = DemoOptions(
        problems=2, budget=6, strategy="ensemble", out=tmp_path / "demo", simulated=True
    )
    async with FakeServer() as server, simulated_settings(options, server=server) as settings:
        result = await run_demo(options, settings=settings)
        by_agent = server.stats()["by_agent"]
    assert result.choice is not None
    assert result.baseline is not None
    assert result.baseline.calls == 2 * 6
    assert result.baseline.cached_calls == 2 * 2
    calibration = options.calibration_problems * options.calibration_samples
    assert by_agent[result.choice.agent] == calibration + 2 * 6  # 2 x 2 ensemble + 2 x 4 new
    assert "ensemble" in (result.verdict() or "")


async def test_a_stop_skips_the_later_phases_and_a_rerun_finishes(tmp_path: Path) -> None:
    options = DemoOptions(problems=3, budget=3, out=tmp_path / "demo", simulated=True)
    stop = asyncio.Event()
    phases: list[str] = []

    def progress(phase: str) -> None:
        phases.append(phase)
        if phase == "toa":
            stop.set()  # as Ctrl-C would, once calibration is done

    async with FakeServer() as server, simulated_settings(options, server=server) as settings:
        stopped = await run_demo(options, settings=settings, progress=progress, stop=stop)
        assert phases == ["calibration", "toa"]
        assert stopped.choice is not None
        assert stopped.report.interrupted
        assert stopped.exit_code == 130
        assert stopped.baseline is None
        assert stopped.verdict() is None
        assert not options.baseline_dir.exists()
        finished = await run_demo(options, settings=settings)
    assert finished.choice is not None
    assert finished.choice.reused
    assert finished.choice.agent == stopped.choice.agent
    assert finished.exit_code == 0
    assert finished.verdict() is not None


async def test_a_stored_choice_for_other_agents_is_refused(tmp_path: Path) -> None:
    options = DemoOptions(problems=1, budget=2, out=tmp_path / "demo", simulated=True)
    options.out.mkdir(parents=True)
    stored = {
        "agent": "someone",
        "rule": "by hand",
        "calibration_problems": ["cal-01"],
        "samples_per_agent_per_problem": 2,
        "agents": ["someone", "else"],
        "scores": {},
    }
    options.choice_path.write_text(json.dumps(stored))
    async with FakeServer() as server, simulated_settings(options, server=server) as settings:
        with pytest.raises(ConfigError, match="use another output directory"):
            await run_demo(options, settings=settings)
        assert server.stats()["total"] == 0


def _result(ours: int, theirs: int, *, done: int = 4, evaluated: int = 4) -> DemoResult:
    ids = [f"p{i}" for i in range(done)]
    totals = RunTotals(Path("toa"), correct=set(ids[:ours]), done=set(ids))
    baseline = RunTotals(Path("best-of-n"), correct=set(ids[:theirs]), done=set(ids))
    choice = AgentChoice("qwen", ("cal-01",), 2, {}, "rule", Path("choice.json"))
    return DemoResult(
        report=RunReport(run_dir=Path("toa")),
        run_dir=Path("toa"),
        budget=8,
        evaluated=evaluated,
        choice=choice,
        totals=totals,
        baseline=baseline,
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "sentence"),
    [
        (3, 1, "TOA beat best-of-8 on qwen by 2 problems (3 vs 1 of 4 correct"),
        (2, 2, "TOA matched best-of-8 on qwen: 2 of 4 correct each."),
        (1, 2, "TOA lost to best-of-8 on qwen by 1 problem (1 vs 2 of 4 correct"),
    ],
)
def test_the_verdict_says_what_happened(ours: int, theirs: int, sentence: str) -> None:
    verdict = _result(ours, theirs).verdict()
    assert verdict is not None
    assert verdict.startswith(sentence)


def test_no_verdict_until_both_runs_finished_every_problem() -> None:
    assert _result(3, 0, done=3, evaluated=4).verdict() is None


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="calibration problems"):
        DemoOptions(calibration_problems=7)
    with pytest.raises(ConfigError, match="problems must be"):
        DemoOptions(problems=0)


def test_the_cli_defaults_are_the_options_defaults() -> None:
    from toa.cli.demo import DEFAULTS as _DEFAULTS

    defaults = DemoOptions()
    assert {name: getattr(defaults, name) for name in _DEFAULTS} == _DEFAULTS
