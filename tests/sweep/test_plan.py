"""The sweep's arguments and their checks, in process (no server, no call)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toa.config import parse_config
from toa.errors import ConfigError
from toa.search.strategies import STRATEGY_NAMES
from toa.sweep import (
    Cell,
    SweepPlan,
    compare_line,
    parse_budgets,
    parse_strategies,
    resolve_single_agent,
    sweep_csv,
)
from toa.sweep.plan import check_rerun
from toa.sweep.summary import busy_seconds


def _settings(agents: tuple[str, ...] = ("a", "b"), strategy: str = "toa", **extra: str):  # type: ignore[no-untyped-def]
    return parse_config(
        {
            "agents": [
                {"name": n, "base_url": "http://127.0.0.1:1/v1", "model": n} for n in agents
            ],
            "reward": {"type": "simulated"},
            "strategy": {"name": strategy, "budget": 4, **extra},
        }
    )


def test_strategies_and_budgets_are_parsed_and_checked() -> None:
    assert parse_strategies(" toa, ensemble ,random") == ("toa", "ensemble", "random")
    assert parse_budgets("16,4,8") == (4, 8, 16)
    with pytest.raises(ConfigError, match="unknown strategy 'tao'") as err:
        parse_strategies("toa,tao")
    assert all(name in str(err.value) for name in STRATEGY_NAMES)
    for bad, message in (("", "no budget"), ("4,0", "0 is not a budget"), ("4.5", "'4.5' is not"),
                         ("-2", "-2 is not a budget"), ("4,4", "4 given twice")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            parse_budgets(bad)
    with pytest.raises(ConfigError, match="given twice"):
        parse_strategies("toa,toa")


def test_cells_run_cheapest_first() -> None:
    plan = SweepPlan(Path("s"), Path("c"), Path("i"), ("toa", "ensemble"), (8, 2))
    assert [c.name for c in plan.cells] == ["toa-b2", "ensemble-b2", "toa-b8", "ensemble-b8"]
    assert plan.cell_dir(Cell("toa", 8)) == Path("s/cells/toa-b8")


def test_the_single_agent_of_random_and_prs() -> None:
    assert resolve_single_agent(_settings(), ("toa", "ensemble"), None) is None
    assert resolve_single_agent(_settings(), ("random",), "b") == "b"
    assert resolve_single_agent(_settings(("solo",)), ("prs",), None) == "solo"
    assert resolve_single_agent(_settings(strategy="random", agent="b"), ("prs",), None) == "b"
    with pytest.raises(ConfigError, match="--single-agent NAME"):
        resolve_single_agent(_settings(), ("toa", "random"), None)
    with pytest.raises(ConfigError, match="'c' is not one of the agents a, b"):
        resolve_single_agent(_settings(), ("random",), "c")
    with pytest.raises(ConfigError, match="auto needs --calibration N"):
        resolve_single_agent(_settings(), ("random",), "auto")
    assert resolve_single_agent(_settings(), ("random",), "auto", calibration=3) == "auto"
    with pytest.raises(ConfigError, match="only with --single-agent auto"):
        resolve_single_agent(_settings(), ("random",), "a", calibration=3)
    with pytest.raises(ConfigError, match="no cell runs a single agent"):
        resolve_single_agent(_settings(), ("toa",), "auto", calibration=3)


def _manifest(strategies: list[str], budgets: list[int], limit: int | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "config": {"path": "/c.yaml", "sha256": "c1"},
        "input": {"path": "/p.jsonl", "sha256": "i1"},
        "prompt_field": None,
        "limit": limit,
        "single_agent": None,
        "strategies": strategies,
        "budgets": budgets,
    }


def test_a_rerun_may_only_add_cells() -> None:
    old = _manifest(["toa"], [4])
    assert check_rerun(old, _manifest(["toa"], [4]), Path("s")) == []
    added = check_rerun(old, _manifest(["toa", "ensemble"], [4, 8]), Path("s"))
    assert added == ["ensemble-b4", "toa-b8", "ensemble-b8"]
    with pytest.raises(ConfigError, match="budgets: 4 left out"):
        check_rerun(old, _manifest(["toa"], [8]), Path("s"))
    with pytest.raises(ConfigError, match="limit: None then, 5 now"):
        check_rerun(old, _manifest(["toa"], [4], limit=5), Path("s"))
    other = {**_manifest(["toa"], [4]), "input": {"path": "/q.jsonl", "sha256": "i2"}}
    with pytest.raises(ConfigError, match=r"the input /q\.jsonl is not the one"):
        check_rerun(old, other, Path("s"))


def _cell(strategy: str, budget: int, best: float | None, with_best: int = 5) -> dict:  # type: ignore[type-arg]
    return {"name": f"{strategy}-b{budget}", "strategy": strategy, "budget": budget,
            "mean_best_reward": best, "with_best": with_best,
            "best_agent_share": {"a": 1.0}}  # fmt: skip


def test_the_comparison_names_the_best_other_strategy_and_never_uses_one_sample() -> None:
    cells = [
        _cell("toa", 4, 0.7), _cell("ensemble", 4, 0.6), _cell("random", 4, 0.65),
        _cell("toa", 8, 0.7), _cell("ensemble", 8, 0.9, with_best=1),
        _cell("toa", 16, 0.5, with_best=1), _cell("random", 16, 0.4),
    ]  # fmt: skip
    lines = compare_line(cells)
    assert lines[0] == "budget 4: toa 0.700 vs random 0.650 (toa wins by +0.050, 5 vs 5 prompts)"
    assert len(lines) == 2  # budget 8: the only other cell has one prompt with a best answer
    assert lines[1] == "budget 16: too few prompts with a best answer to compare"
    assert sweep_csv(cells[:1]).splitlines()[1] == "toa-b4,toa,4,0.7,5,a:1.0"


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10)), max_size=12))
def test_busy_seconds_is_the_length_of_the_union_of_intervals(
    spans: list[tuple[int, int]],
) -> None:
    intervals = [(float(start), float(start + length)) for start, length in spans]
    covered = {t for start, end in intervals for t in range(int(start), int(end))}
    assert busy_seconds(intervals) == pytest.approx(len(covered))
