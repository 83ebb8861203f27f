"""The embedded default: `toa demo` (and `make demo`).

Three real local models of different families (SmolLM2-135M chat, Qwen2.5-Coder-0.5B chat,
Gemma-3-270M base in completion mode) collaborate under TOA on math word problems that ship with
TOA (written for it, with known answers), scored by the `verify` reward. The demo starts the
model servers if needed, runs the engine into a run directory (resumable: running it again
continues where it stopped), exports SFT and DPO files, and returns what the summary shows.

`--simulated` runs the same pipeline against the built-in fake server instead (no models).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from toa.agents.spec import AgentSpec
from toa.config import RunSettings, parse_config
from toa.engine.runner import ProgressSink, RunReport, run
from toa.engine.store import RunStore
from toa.export import DPOOptions, ExportReport, SFTOptions, export_run

__all__ = [
    "AgentTally",
    "DemoOptions",
    "DemoResult",
    "agent_config",
    "demo_problems_path",
    "local_settings",
    "run_demo",
    "simulated_settings",
    "tally",
]

DEMO_PROBLEMS = "demo_math.jsonl"


def demo_problems_path() -> Path:
    """The math word problems shipped with TOA (20, with gold answers)."""
    return Path(str(resources.files("toa.data").joinpath(DEMO_PROBLEMS)))


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs.

    Attributes:
        problems: how many of the shipped problems (1-20).
        budget: generations per problem.
        strategy: any strategy name.
        max_tokens: completion tokens per call.
        out: the run directory (created; resumed when it exists with the same settings).
        simulated: use the fake server's simulated agents instead of the local models.
    """

    problems: int = 20
    budget: int = 8
    strategy: str = "toa"
    max_tokens: int = 320
    out: Path = Path("runs/demo")
    simulated: bool = False


@dataclass
class AgentTally:
    """One agent's record in the demo."""

    samples: int = 0
    correct: int = 0
    failed: int = 0
    best: int = 0  # problems where this agent wrote the final (best) answer
    first_correct: int = 0  # problems where its first fresh answer was correct
    first_answers: int = 0


@dataclass
class DemoResult:
    """Everything the summary shows."""

    report: RunReport
    run_dir: Path
    problems: int = 0
    best_correct: int = 0
    agents: dict[str, AgentTally] = field(default_factory=dict)
    sft: ExportReport | None = None
    dpo: ExportReport | None = None
    sft_path: Path | None = None
    dpo_path: Path | None = None


def agent_config(spec: AgentSpec) -> dict[str, Any]:
    """The YAML-shaped configuration of a running local model (for the manifest)."""
    s = spec.sampling
    return {
        "name": spec.name,
        "base_url": list(spec.base_urls),
        "model": spec.model,
        "mode": spec.mode,
        "prompt_template": spec.prompt_template,
        "max_concurrency": spec.max_concurrency,
        "timeout_s": spec.timeout_s,
        "params_b": spec.params_b,
        "sampling": {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "stop": list(s.stop),
        },
        "extra_body": dict(spec.extra_body),
        "retry": {"max_attempts": 3, "base_delay_s": 1.0},
        "breaker": {"failure_threshold": 3, "cooldown_s": 20.0},
    }


def _settings(
    agents: list[dict[str, Any]], options: DemoOptions, reward: dict[str, Any]
) -> RunSettings:
    return parse_config(
        {
            "agents": agents,
            "reward": reward,
            "strategy": {"name": options.strategy, "budget": options.budget},
            "templates": {"task": "math"},
            # One prompt per agent server in flight keeps every server (and both cores) busy.
            "runner": {"prompts_in_flight": max(2, len(agents))},
            "seed": 0,
        },
        source="toa demo",
    )


def local_settings(options: DemoOptions) -> RunSettings:
    """Start (or reuse) the three local model servers and configure the run on them."""
    from toa.local import agent_specs, start_servers
    from toa.types import SamplingParams

    servers = start_servers()
    sampling = SamplingParams(temperature=0.7, max_tokens=options.max_tokens)
    specs = agent_specs(servers, sampling=sampling)
    return _settings([agent_config(s) for s in specs], options, {"type": "verify", "mode": "gsm8k"})


def _results(run_dir: Path) -> Iterator[dict[str, Any]]:
    with RunStore.open_readonly(run_dir / "store.sqlite") as store:
        for _prompt_id, status, line in store.iter_results():
            if status == "done":
                yield json.loads(line)


def tally(run_dir: Path, *, correct_at: float = 1.0) -> tuple[int, int, dict[str, AgentTally]]:
    """(problems done, problems whose best answer is correct, per-agent tallies)."""
    problems = best_correct = 0
    agents: dict[str, AgentTally] = {}
    for result in _results(run_dir):
        problems += 1
        best = result.get("best")
        if best is not None and (best.get("reward") or 0.0) >= correct_at:
            best_correct += 1
        if best is not None:
            agents.setdefault(best["agent"], AgentTally()).best += 1
        firsts: Counter[str] = Counter()
        for sample in result["samples"]:
            t = agents.setdefault(sample["agent"], AgentTally())
            t.samples += 1
            reward = sample.get("reward")
            if reward is None:
                t.failed += 1
                continue
            t.correct += reward >= correct_at
            if sample["action"] == "fresh" and sample["depth"] == 1 and not firsts[sample["agent"]]:
                firsts[sample["agent"]] += 1
                t.first_answers += 1
                t.first_correct += reward >= correct_at
    return problems, best_correct, agents


def export_demo(run_dir: Path) -> tuple[ExportReport, ExportReport, Path, Path]:
    """SFT (best answer per problem) and DPO (best vs lowest) files next to the run."""
    sft_path, dpo_path = run_dir / "sft.jsonl", run_dir / "dpo.jsonl"
    sft = export_run(run_dir, format="sft", out=sft_path, options=SFTOptions())
    dpo = export_run(run_dir, format="dpo", out=dpo_path, options=DPOOptions())
    return sft, dpo, sft_path, dpo_path


async def run_demo(
    options: DemoOptions,
    *,
    settings: RunSettings,
    progress: ProgressSink | None = None,
    stop: asyncio.Event | None = None,
) -> DemoResult:
    """Run the demo with `settings` (see `local_settings`), export, and tally the results."""
    report = await run(
        settings,
        input_path=demo_problems_path(),
        run_dir=options.out,
        limit=options.problems,
        progress=progress,
        stop=stop,
    )
    result = DemoResult(report=report, run_dir=options.out)
    threshold = 0.7 if options.simulated else 1.0
    result.problems, result.best_correct, result.agents = tally(options.out, correct_at=threshold)
    if result.problems:
        result.sft, result.dpo, result.sft_path, result.dpo_path = export_demo(options.out)
    return result


@contextlib.asynccontextmanager
async def simulated_settings(options: DemoOptions) -> AsyncIterator[RunSettings]:
    """A fake server with three simulated agents for the demo's pipeline (no models needed)."""
    from toa.testing import FakeServer

    async with FakeServer(latency_ms=(20.0, 80.0)) as server:
        agents = [
            {"name": name, "base_url": server.base_url, "model": name, "params_b": 1.0}
            for name in ("agent_a", "agent_b", "agent_c")
        ]
        yield _settings(agents, options, {"type": "simulated"})
