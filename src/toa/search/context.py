"""The seam between strategies and the engine: `SearchContext`, `Strategy` and the seeded RNG.

A strategy decides *what* to ask; the context does everything else. It owns retries, backoff,
sleeping, circuit breakers, concurrency limits, accounting and storage, identically for every
strategy (TOA_SPEC defects 1-3, 11). A strategy never opens a client, sleeps or writes a file.

`node_id` on every call is the id of the tree node the call creates, so an engine can store each
call under its tree position and replay it on resume without paying twice.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from toa.errors import ConfigError
from toa.search.priors import Prior
from toa.search.tree import SearchTree
from toa.types import Completion, Message, Prompt, Score

__all__ = ["SearchContext", "Strategy", "check_budget", "derive_rng"]


@runtime_checkable
class SearchContext(Protocol):
    """What a strategy may call. Implemented by the engine and by `toa.testing.sim_context`."""

    @property
    def agents(self) -> tuple[str, ...]:
        """The configured agent names, in configuration order."""
        ...

    def is_available(self, agent: str) -> bool:
        """False while the agent's circuit breakers are open; searches then leave it out."""
        ...

    async def generate(
        self, agent: str, messages: Sequence[Message], *, node_id: int
    ) -> Completion:
        """One generation by `agent`, after the context's own retries.

        Raises:
            toa.errors.AgentError: the call failed for good (`AgentUnavailableError` when the
                agent is out); the strategy records the failure on the tree.
        """
        ...

    async def score(
        self, prompt: Prompt, responses: Sequence[str], *, node_ids: Sequence[int]
    ) -> list[Score]:
        """Raw rewards against the original prompt: one float or `ScoreFailure` per response."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """A search over agents for one prompt that returns its whole tree."""

    @property
    def name(self) -> str:
        """The strategy's name: 'toa', 'random', 'prs', 'ensemble', 'seq-refine' or 'moa'."""
        ...

    async def run(
        self,
        prompt: Prompt,
        ctx: SearchContext,
        *,
        budget: int,
        seed: int,
        prior: Prior | None = None,
    ) -> SearchTree:
        """Spend `budget` generations (>= 1) on `prompt`; every random choice follows `seed`.

        `prior` is what earlier prompts of the run taught (`toa.search.priors`); strategies that
        learn nothing across prompts ignore it.
        """
        ...


def derive_rng(seed: int, prompt_id: str) -> random.Random:
    """The generator for every random choice of one run on one prompt.

    Seeded from sha256 of (seed, prompt id), so it is the same in every process and Python version
    (unlike ``hash()``), and differs between prompts of one run.
    """
    digest = hashlib.sha256(f"{seed}\x1f{prompt_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def check_budget(budget: int, strategy: str) -> None:
    """Raise `ConfigError` unless `budget` is an int >= 1."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"{strategy}: budget must be an integer >= 1 generation, got {budget!r}")
