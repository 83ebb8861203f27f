"""The embedded default: `toa demo` (and `make demo`).

Three real local models of different families (SmolLM2-135M chat, Qwen2.5-Coder-0.5B chat,
Gemma-3-270M base in completion mode) collaborate under TOA on math word problems that ship with
TOA (written for it, with known answers), scored by the `verify` reward. The demo then measures
TOA against the honest baseline: best-of-N (strategy `random`) on the strongest single agent, at
the same budget, on the same problems.

What it runs, all in one output directory (`DemoOptions.out`), every run resumable:

1. `calibration/`: which agent is the strongest, measured on calibration problems that are never
   evaluated (`demo_calibration.jsonl`, shipped beside the demo problems): strategy `ensemble`
   with `calibration_samples` fresh samples from every agent per problem. The agent with the
   highest mean reward over its samples wins (a failed call scores 0; ties go to the first agent
   in configuration order). The choice is stored in `strongest_agent.json` and reused by every
   later run of the demo in that directory (delete the file to choose again).
2. `<strategy>/` (`toa/` by default): the strategy on the evaluated problems (`demo_math.jsonl`).
   TOA's online prior starts from the calibration run's evidence (`calibration_priors.json`,
   `prior: {source: online, path: ...}`): both sides get what calibration saw, best-of-N as
   the agent it chose, TOA as how well each agent did.
3. `best-of-n/`: strategy `random` on the chosen agent, the same budget, the same problems.

The three runs share one generation cache (`cache.sqlite`), so best-of-N gets TOA's fresh answers
of its agent for free (same request, same seed, same sample index) and rerunning a finished demo
sends nothing. The demo starts the model servers if needed, exports SFT and DPO files from the
strategy's run, and returns what the summary shows.

`--simulated` runs the same pipeline against the built-in fake server instead (no models).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toa.config import RunSettings, parse_config
from toa.engine.runner import ProgressSink, RunReport, run
from toa.errors import ConfigError
from toa.export import DPOOptions, ExportReport, SFTOptions, export_run
from toa.store.run_store import RunStore

if TYPE_CHECKING:
    from toa.testing import FakeServer

__all__ = [
    "AgentChoice",
    "AgentScore",
    "AgentTally",
    "DemoOptions",
    "DemoResult",
    "RunTotals",
    "calibration_problems_path",
    "demo_problems_path",
    "local_settings",
    "run_demo",
    "simulated_settings",
    "tally",
]

DEMO_PROBLEMS = "demo_math.jsonl"
CALIBRATION_PROBLEMS = "demo_calibration.jsonl"
CACHE_NAME = "cache.sqlite"
CHOICE_NAME = "strongest_agent.json"
CALIBRATION_DIR = "calibration"
CALIBRATION_PRIOR = "calibration_priors.json"
BASELINE_DIR = "best-of-n"
MAX_PROBLEMS = 20
MAX_CALIBRATION_PROBLEMS = 6
CHOICE_RULE = (
    "highest mean reward over its fresh calibration samples "
    "(a failed call scores 0; ties: the first agent in configuration order)"
)

PhaseProgress = Callable[[str], ProgressSink | None]
"""Gives the progress sink of one phase of the demo (its label: 'calibration', 'toa', ...)."""


def demo_problems_path() -> Path:
    """The math word problems shipped with TOA (20, with gold answers): the evaluated ones."""
    return Path(str(resources.files("toa.data").joinpath(DEMO_PROBLEMS)))


def calibration_problems_path() -> Path:
    """Six more shipped problems, never evaluated: they choose the strongest single agent."""
    return Path(str(resources.files("toa.data").joinpath(CALIBRATION_PROBLEMS)))


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs.

    Attributes:
        problems: how many of the shipped problems are evaluated (1-20).
        budget: generations per problem (the strategy's and best-of-N's alike).
        strategy: any strategy name.
        max_tokens: completion tokens per call.
        out: the demo's output directory (created; resumed when it exists with the same
            settings): the three run directories, the shared cache and the stored agent choice.
        simulated: use the fake server's simulated agents instead of the local models.
        calibration_problems: how many calibration problems choose the strongest agent (1-6).
        calibration_samples: fresh samples per agent on each calibration problem.
    """

    problems: int = 10
    budget: int = 4
    strategy: str = "toa"
    max_tokens: int = 256
    out: Path = Path("runs/demo")
    simulated: bool = False
    calibration_problems: int = 2
    calibration_samples: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.problems <= MAX_PROBLEMS:
            raise ConfigError(f"demo: problems must be 1-{MAX_PROBLEMS}, not {self.problems}")
        if not 1 <= self.calibration_problems <= MAX_CALIBRATION_PROBLEMS:
            raise ConfigError(
                f"demo: calibration problems must be 1-{MAX_CALIBRATION_PROBLEMS}, "
                f"not {self.calibration_problems}"
            )
        if self.calibration_samples < 1 or self.budget < 1:
            raise ConfigError("demo: the budget and the calibration samples must be at least 1")

    @property
    def run_dir(self) -> Path:
        """The strategy's run directory."""
        return self.out / self.strategy

    @property
    def baseline_dir(self) -> Path:
        """Best-of-N's run directory."""
        return self.out / BASELINE_DIR

    @property
    def calibration_dir(self) -> Path:
        return self.out / CALIBRATION_DIR

    @property
    def cache_path(self) -> Path:
        return self.out / CACHE_NAME

    @property
    def choice_path(self) -> Path:
        return self.out / CHOICE_NAME

    @property
    def correct_at(self) -> float:
        """The reward that counts as a correct answer (simulated rewards are graded)."""
        return 0.7 if self.simulated else 1.0


@dataclass
class AgentTally:
    """One agent's record in the demo."""

    samples: int = 0
    correct: int = 0
    failed: int = 0
    best: int = 0  # problems where this agent wrote the final (best) answer
    first_correct: int = 0  # problems where its first fresh answer was correct
    first_answers: int = 0


@dataclass(frozen=True)
class AgentScore:
    """One agent's calibration record."""

    samples: int
    correct: int
    failed: int
    mean_reward: float


@dataclass(frozen=True)
class AgentChoice:
    """The strongest single agent, as calibration chose it (stored in `strongest_agent.json`).

    Attributes:
        agent: the chosen agent.
        problems: the calibration problems' ids (none of them is evaluated).
        samples: fresh samples per agent on each calibration problem.
        scores: every agent's record, in configuration order.
        rule: how the choice was made, in words.
        path: where the choice is stored.
        reused: True when it was read from `path` (chosen by an earlier run).
    """

    agent: str
    problems: tuple[str, ...]
    samples: int
    scores: dict[str, AgentScore]
    rule: str
    path: Path
    reused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "rule": self.rule,
            "calibration_problems": list(self.problems),
            "samples_per_agent_per_problem": self.samples,
            "agents": list(self.scores),
            "scores": {
                name: {
                    "samples": s.samples,
                    "correct": s.correct,
                    "failed": s.failed,
                    "mean_reward": s.mean_reward,
                }
                for name, s in self.scores.items()
            },
        }


@dataclass
class RunTotals:
    """What one run did over all its finished problems (this invocation's and earlier ones).

    Attributes:
        run_dir: the run directory.
        correct: ids of the problems whose best answer is correct.
        done: ids of the finished problems.
        calls: generation calls, cache hits included (they spend the budget like any other).
        cached_calls: calls answered from the shared generation cache (no request sent).
        prompt_tokens / completion_tokens: reported token counts, cache hits included.
    """

    run_dir: Path
    correct: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class DemoResult:
    """Everything the summary shows (`report` and the tallies are the strategy's run's)."""

    report: RunReport
    run_dir: Path
    strategy: str = "toa"
    budget: int = 0
    evaluated: int = 0
    problems: int = 0
    best_correct: int = 0
    agents: dict[str, AgentTally] = field(default_factory=dict)
    sft: ExportReport | None = None
    dpo: ExportReport | None = None
    sft_path: Path | None = None
    dpo_path: Path | None = None
    choice: AgentChoice | None = None
    calibration_report: RunReport | None = None
    totals: RunTotals | None = None
    baseline_report: RunReport | None = None
    baseline: RunTotals | None = None

    @property
    def exit_code(self) -> int:
        """The worst exit code of the runs made (130 when any was interrupted)."""
        reports = (self.calibration_report, self.report, self.baseline_report)
        codes = [r.exit_code for r in reports if r is not None]
        return 130 if 130 in codes else max(codes, default=0)

    @property
    def complete(self) -> bool:
        """Both runs finished every evaluated problem (then the comparison is fair)."""
        return (
            self.totals is not None
            and self.baseline is not None
            and len(self.totals.done) == len(self.baseline.done) == self.evaluated
            and self.totals.done == self.baseline.done
        )

    def verdict(self) -> str | None:
        """The sentence: the strategy beat / matched / lost to best-of-N (None: incomplete)."""
        if not self.complete or self.totals is None or self.baseline is None:
            return None
        assert self.choice is not None
        name = "TOA" if self.strategy == "toa" else self.strategy
        ours, theirs = len(self.totals.correct), len(self.baseline.correct)
        rival = f"best-of-{self.budget} on {self.choice.agent}"
        counts = f"{ours} vs {theirs} of {self.evaluated} correct, {self.budget} generations each"
        gap = abs(ours - theirs)
        by = f"{gap} problem{'s' if gap != 1 else ''}"
        if ours > theirs:
            return f"{name} beat {rival} by {by} ({counts})."
        if ours < theirs:
            return f"{name} lost to {rival} by {by} ({counts})."
        return f"{name} matched {rival}: {ours} of {self.evaluated} correct each."


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


def _variant(settings: RunSettings, options: DemoOptions, strategy: dict[str, Any]) -> RunSettings:
    """`settings` with another strategy section, on the demo's shared generation cache."""
    data = settings.config_dict()
    data["strategy"] = strategy
    data["runner"]["cache"] = str(options.cache_path.resolve())
    return parse_config(data, source=settings.source)


def local_settings(options: DemoOptions) -> RunSettings:
    """Start (or reuse) the three local model servers and configure the run on them."""
    from toa.local import config_sections, start_servers
    from toa.types import SamplingParams

    servers = start_servers()
    sampling = SamplingParams(temperature=0.7, max_tokens=options.max_tokens)
    agents = config_sections(servers, judge=False, sampling=sampling)["agents"]
    return _settings(agents, options, {"type": "verify", "mode": "gsm8k"})


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


def run_totals(run_dir: Path, *, correct_at: float = 1.0) -> RunTotals:
    """Accuracy, calls and tokens of a run over all its finished problems."""
    totals = RunTotals(run_dir=run_dir)
    for result in _results(run_dir):
        pid = str(result["id"])
        totals.done.add(pid)
        best = result.get("best")
        if best is not None and (best.get("reward") or 0.0) >= correct_at:
            totals.correct.add(pid)
        compute = result.get("compute") or {}
        totals.calls += int(compute.get("calls", 0))
        totals.cached_calls += int(compute.get("cached_calls", 0))
        totals.prompt_tokens += int(compute.get("prompt_tokens", 0))
        totals.completion_tokens += int(compute.get("completion_tokens", 0))
    return totals


def export_demo(run_dir: Path) -> tuple[ExportReport, ExportReport, Path, Path]:
    """SFT (best answer per problem) and DPO (best vs lowest) files next to the run."""
    sft_path, dpo_path = run_dir / "sft.jsonl", run_dir / "dpo.jsonl"
    sft = export_run(run_dir, format="sft", out=sft_path, options=SFTOptions())
    dpo = export_run(run_dir, format="dpo", out=dpo_path, options=DPOOptions())
    return sft, dpo, sft_path, dpo_path


def _choose(calibration_dir: Path, agents: tuple[str, ...], options: DemoOptions) -> AgentChoice:
    """The agent with the highest mean reward on the calibration problems (see the module)."""
    rewards: dict[str, list[float]] = {name: [] for name in agents}
    correct: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    problems: list[str] = []
    for result in _results(calibration_dir):
        problems.append(str(result["id"]))
        for sample in result["samples"]:
            reward = sample.get("reward")
            name = sample["agent"]
            rewards.setdefault(name, []).append(0.0 if reward is None else float(reward))
            failed[name] += reward is None
            correct[name] += reward is not None and reward >= options.correct_at
    scores = {
        name: AgentScore(
            samples=len(values),
            correct=correct[name],
            failed=failed[name],
            mean_reward=round(sum(values) / len(values), 6) if values else 0.0,
        )
        for name, values in rewards.items()
    }
    best = max(agents, key=lambda name: (scores[name].mean_reward, -agents.index(name)))
    return AgentChoice(
        agent=best,
        problems=tuple(sorted(problems)),
        samples=options.calibration_samples,
        scores=scores,
        rule=CHOICE_RULE,
        path=options.choice_path,
    )


def _stored_choice(options: DemoOptions, agents: tuple[str, ...]) -> AgentChoice | None:
    path = options.choice_path
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stored_agents = tuple(data["agents"])
        choice = AgentChoice(
            agent=data["agent"],
            problems=tuple(data["calibration_problems"]),
            samples=int(data["samples_per_agent_per_problem"]),
            scores={name: AgentScore(**s) for name, s in data["scores"].items()},
            rule=data["rule"],
            path=path,
            reused=True,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a stored agent choice ({exc}); delete it") from None
    if stored_agents != agents or choice.agent not in agents:
        raise ConfigError(
            f"{path}: chosen among the agents {list(stored_agents)}, but this demo has "
            f"{list(agents)}; use another output directory or delete the file"
        )
    return choice


def _store_choice(choice: AgentChoice) -> None:
    choice.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = choice.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(choice.to_json(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(choice.path)


def _calibration_prior(options: DemoOptions, agents: tuple[str, ...]) -> Path | None:
    """The calibration run's evidence as a priors.json (written once); None without one."""
    path = options.out / CALIBRATION_PRIOR
    if path.exists():
        return path.resolve()
    store_path = options.calibration_dir / "store.sqlite"
    if not store_path.exists():
        return None
    from toa.engine.runner import learned_prior

    with RunStore.open_readonly(store_path) as store:
        prior = learned_prior(store, agents)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(prior.to_dict(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path.resolve()


def _sink(progress: PhaseProgress | None, phase: str) -> ProgressSink | None:
    return progress(phase) if progress is not None else None


async def run_demo(
    options: DemoOptions,
    *,
    settings: RunSettings,
    progress: PhaseProgress | None = None,
    stop: asyncio.Event | None = None,
) -> DemoResult:
    """Calibrate, run the strategy, run best-of-N on the chosen agent, export, and tally.

    `settings` names the agents (see `local_settings` / `simulated_settings`); the demo runs it
    with its own strategy sections and the shared cache. `progress` gives one sink per phase.
    When `stop` is set, the phase under way stops cleanly and the later ones do not start.
    """
    agents = tuple(a.name for a in settings.agents)
    options.out.mkdir(parents=True, exist_ok=True)
    evaluated = len(
        [line for line in demo_problems_path().read_text().splitlines() if line.strip()]
    )
    result = DemoResult(
        report=RunReport(run_dir=options.run_dir),
        run_dir=options.run_dir,
        strategy=options.strategy,
        budget=options.budget,
        evaluated=min(options.problems, evaluated),
    )

    choice = _stored_choice(options, agents)
    if choice is None:
        calibration = _variant(
            settings,
            options,
            {"name": "ensemble", "budget": options.calibration_samples * len(agents)},
        )
        result.calibration_report = await run(
            calibration,
            input_path=calibration_problems_path(),
            run_dir=options.calibration_dir,
            limit=options.calibration_problems,
            progress=_sink(progress, "calibration"),
            stop=stop,
        )
        report = result.calibration_report
        if report.interrupted or report.failed or report.bad_rows:
            return result  # choose only on complete calibration: rerunning continues it
        choice = _choose(options.calibration_dir, agents, options)
        _store_choice(choice)
    result.choice = choice
    strategy: dict[str, Any] = {"name": options.strategy, "budget": options.budget}
    seed = _calibration_prior(options, agents)
    if options.strategy == "toa" and seed is not None:
        # TOA starts from what calibration saw, as best-of-N starts from the agent it chose
        strategy["prior"] = {"source": "online", "path": str(seed)}
    main = _variant(settings, options, strategy)

    result.report = await run(
        main,
        input_path=demo_problems_path(),
        run_dir=options.run_dir,
        limit=options.problems,
        progress=_sink(progress, options.strategy),
        stop=stop,
    )
    result.problems, result.best_correct, result.agents = tally(
        options.run_dir, correct_at=options.correct_at
    )
    result.totals = run_totals(options.run_dir, correct_at=options.correct_at)
    if result.problems:
        result.sft, result.dpo, result.sft_path, result.dpo_path = export_demo(options.run_dir)
    if result.report.interrupted or (stop is not None and stop.is_set()):
        return result

    baseline = _variant(
        settings, options, {"name": "random", "budget": options.budget, "agent": choice.agent}
    )
    result.baseline_report = await run(
        baseline,
        input_path=demo_problems_path(),
        run_dir=options.baseline_dir,
        limit=options.problems,
        progress=_sink(progress, f"best-of-{options.budget} on {choice.agent}"),
        stop=stop,
    )
    result.baseline = run_totals(options.baseline_dir, correct_at=options.correct_at)
    return result


@contextlib.asynccontextmanager
async def simulated_settings(
    options: DemoOptions, *, server: FakeServer | None = None
) -> AsyncIterator[RunSettings]:
    """Three simulated agents on a fake server for the demo's pipeline (no models needed).

    With `server` given the agents live there (the caller owns it, e.g. to count requests);
    otherwise a fake server runs for as long as the context is open.
    """
    from toa.testing import FakeServer

    async with contextlib.AsyncExitStack() as stack:
        if server is None:
            server = await stack.enter_async_context(FakeServer(latency_ms=(20.0, 80.0)))
        agents = [
            {"name": name, "base_url": server.base_url, "model": name, "params_b": 1.0}
            for name in ("agent_a", "agent_b", "agent_c")
        ]
        yield _settings(agents, options, {"type": "simulated"})
