"""The embedded demo (interim): the agent client against the built-in fake server.

Until the real local models and the run engine land, `toa demo` shows the client layer working
end to end over real HTTP on loopback: three simulated agents (two chat, one completion-mode)
answer the same prompts, and the summary shows what the hidden quality says about each.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from toa.agents import AgentPool, AgentSpec
from toa.errors import AgentError
from toa.testing import FakeServer, decode_quality, family_marker
from toa.types import Completion

__all__ = ["run_demo"]

_QUESTIONS = (
    "Explain in two sentences why the sky looks blue.",
    "A train leaves at 9:40 and arrives at 11:05. How long is the trip?",
    "Translate into German: 'The library opens at eight.'",
    "Write a haiku about a quiet harbour.",
    "List three ways to reduce memory use in a Python service.",
    "What is 17 times 23?",
)


@dataclass
class _AgentTally:
    qualities: list[float] = field(default_factory=list)
    tokens: int = 0
    latency_s: float = 0.0
    failures: int = 0


async def _ask(pool: AgentPool, name: str, text: str) -> Completion | AgentError:
    try:
        return await pool[name].generate(text)
    except AgentError as error:
        return error


async def _run(n_prompts: int, progress: Progress) -> dict[str, _AgentTally]:
    tallies: dict[str, _AgentTally] = {}
    async with FakeServer(latency_ms=(20.0, 80.0)) as server:
        specs = [
            AgentSpec(name="agent_a", base_urls=(server.base_url,), model="agent_a"),
            AgentSpec(
                name="agent_b",
                base_urls=(server.base_url,),
                model="agent_b",
                mode="completion",
                prompt_template="Question: {prompt}\nAnswer:",
            ),
            AgentSpec(name="agent_c", base_urls=(server.base_url,), model="agent_c"),
        ]
        prompts = [
            f"{family_marker(i % 3)} {_QUESTIONS[i % len(_QUESTIONS)]}" for i in range(n_prompts)
        ]
        task = progress.add_task("calls", total=len(specs) * len(prompts))
        async with AgentPool(specs, seed=0) as pool:
            calls = [(s.name, p) for s in specs for p in prompts]
            for name, _ in calls:
                tallies.setdefault(name, _AgentTally())

            async def one(name: str, text: str) -> None:
                out = await _ask(pool, name, text)
                tally = tallies[name]
                if isinstance(out, AgentError):
                    tally.failures += 1
                else:
                    q = decode_quality(out.text)
                    if q is not None:
                        tally.qualities.append(q)
                    tally.tokens += out.usage.total_tokens
                    tally.latency_s += out.latency_s
                progress.advance(task)

            await asyncio.gather(*(one(name, text) for name, text in calls))
    return tallies


def run_demo(console: Console, *, n_prompts: int = 6) -> None:
    """Run the interim demo and print a per-agent summary."""
    with Progress(console=console, transient=True) as progress:
        tallies = asyncio.run(_run(n_prompts, progress))
    table = Table(title="TOA demo (simulated agents over HTTP on loopback)")
    for column in ("agent", "answers", "failures", "mean hidden quality", "tokens", "mean s"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for name, t in tallies.items():
        n = len(t.qualities)
        table.add_row(
            name,
            str(n),
            str(t.failures),
            f"{statistics.fmean(t.qualities):.3f}" if n else "-",
            str(t.tokens),
            f"{t.latency_s / n:.3f}" if n else "-",
        )
    console.print(table)
    console.print(
        "This interim demo exercises the agent client only. The tree search, the engine and "
        "the real local models are on their way (see README and CHANGELOG)."
    )
