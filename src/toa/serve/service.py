"""What `toa serve` keeps open: the serve directory (a run directory whose prompts are the served
requests), the engine's `RunSession` over it, and the limits of the configuration's ``serve:``
section.

Every search is a prompt of the directory's store, searched by the same engine as `toa run`
(`toa.engine.runner.RunSession.run_prompt`): its calls, rewards, tree and result are stored as
they complete and its result line is appended to ``results.jsonl``, so `toa export`, `toa report`
and `toa status` read a serve directory like any run. A cancelled search (the client went away)
sends nothing more and leaves no result; what it was answered is kept in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from toa.agents import AgentPool
from toa.config import with_overrides
from toa.engine.preflight import check_serve_start
from toa.engine.session import PromptOutcome, RunSession, results_file
from toa.errors import ConfigError, ServeRequestError
from toa.search.context import Strategy
from toa.search.strategies import STRATEGY_NAMES
from toa.serve.protocol import SearchRequest
from toa.settings import RunSettings
from toa.store.cache import GenerationCache
from toa.store.layout import MANIFEST_NAME, STORE_NAME
from toa.store.manifest import build_manifest, check_resumable, read_manifest, write_manifest
from toa.store.run_files import rebuild_results, run_lock
from toa.store.run_store import RunStore
from toa.types import Prompt

__all__ = ["SERVE_KIND", "ServeLimits", "ServeService", "new_prompt_id"]

logger = logging.getLogger(__name__)

SERVE_KIND = "serve"
"""The manifest's ``kind`` of a serve directory (a `toa run` directory has none)."""
_SINGLE_AGENT = ("random", "prs")


@dataclass(frozen=True)
class ServeLimits:
    """The configuration's ``serve:`` section (see `toa.config.schema.ServeConfig`)."""

    max_budget: int = 64
    max_concurrent_searches: int = 8
    max_request_bytes: int = 1_000_000
    max_messages: int = 256
    api_key_env: str | None = None
    single_agent: str | None = None
    keepalive_s: float = 5.0
    drain_s: float = 30.0

    @classmethod
    def of(cls, settings: RunSettings) -> ServeLimits:
        section = settings.config_data.get("serve") or {}
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def new_prompt_id() -> str:
    """A served request's prompt id: ``req-<UTC time>-<8 hex digits>``."""
    return f"req-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


class ServeService:
    """The open serve directory and the searches running in it (see the module docstring)."""

    def __init__(self, settings: RunSettings, serve_dir: Path) -> None:
        self.settings = settings
        self.serve_dir = serve_dir
        self.limits = ServeLimits.of(settings)
        self.active = 0
        self.served = 0
        self._strategies: dict[str, Strategy] = {}
        self._stack = contextlib.AsyncExitStack()
        self._session: RunSession | None = None
        self._pool: AgentPool | None = None
        self._seconds: list[float] = []  # recent search times, for Retry-After

    # ------------------------------------------------------------------------------ life

    async def open(self) -> None:
        """Lock and open the directory (created when missing), the agents and the reward.

        Raises:
            ConfigError: the directory is a `toa run` directory, or holds a serve directory
                made with settings that generate differently.
            RunLockedError: another process uses it.
        """
        serve_dir = self.serve_dir
        check_serve_start(self.settings, serve_dir=serve_dir)
        stack = self._stack
        stack.enter_context(run_lock(serve_dir, what=" (another `toa serve` on this --store?)"))
        try:
            self._write_manifest()
            # No linger before a commit: a search waits for several commits in a row (its
            # prompt hash, its calls, its result), each on the client's latency path.
            store = RunStore(serve_dir / STORE_NAME, linger_s=0.0)
            stack.callback(store.close)
            rebuild_results(serve_dir, store)
            cache = None
            if self.settings.runner.cache is not None:
                cache = GenerationCache(self.settings.runner.cache)
                stack.callback(cache.close)
            reward = await asyncio.to_thread(self.settings.build_reward)
            stack.push_async_callback(reward.aclose)
            pool = await stack.enter_async_context(
                AgentPool(self.settings.agents, seed=self.settings.seed)
            )
            results: IO[str] = stack.enter_context(results_file(serve_dir))
            stack.callback(rebuild_results, serve_dir, store)  # runs before the store closes
            stack.callback(store.flush)
            self._pool = pool
            self._session = RunSession(
                self.settings, serve_dir, store, pool, reward, results, None, cache
            )
            for name in STRATEGY_NAMES:  # every strategy's settings checked before serving
                self.strategy(name)
        except BaseException:
            await stack.aclose()
            raise

    async def close(self) -> None:
        await self._stack.aclose()

    def _write_manifest(self) -> None:
        path = self.serve_dir / MANIFEST_NAME
        new = build_manifest(self.settings, input_path=self.serve_dir, prompt_field=None)
        new["kind"] = SERVE_KIND
        new["input"] = {"path": None, "served": True}
        if path.exists():
            old = read_manifest(self.serve_dir)
            if old.get("kind") != SERVE_KIND:
                raise ConfigError(
                    f"{self.serve_dir} holds a `toa run` directory, not a serve directory; "
                    "give `toa serve --store` another directory"
                )
            check_resumable(old, new)
            new["started"] = old.get("started", new["started"])
            new["resumed"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_manifest(self.serve_dir, new)

    # ---------------------------------------------------------------------------- searches

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.settings.agents)

    def strategy(self, name: str) -> Strategy:
        """The strategy object of `name`, from the configuration's settings (its own section
        when it is the configured strategy, defaults otherwise); random / prs use
        ``serve.single_agent`` (default: the configuration's agent, else the first)."""
        if name not in self._strategies:
            agent = None
            if name in _SINGLE_AGENT:
                configured = self.settings.config_data.get("strategy", {}).get("agent")
                agent = self.limits.single_agent or configured or self.agents[0]
            settings = with_overrides(self.settings, strategy=name, agent=agent)
            self._strategies[name] = settings.strategy
        return self._strategies[name]

    def retry_after_s(self) -> float:
        """A guess of when a search slot frees: the median recent search time (1 s floor)."""
        recent = sorted(self._seconds[-50:])
        return max(1.0, recent[len(recent) // 2]) if recent else 1.0

    def check_capacity(self) -> None:
        """`ServeRequestError` 429 when every search slot is taken, 503 when no agent can take
        a request now (every breaker open)."""
        if self.active >= self.limits.max_concurrent_searches:
            raise ServeRequestError(
                f"{self.active} searches are running, the most this server runs at once "
                f"(serve.max_concurrent_searches); retry later",
                status=429,
                code="rate_limit_exceeded",
                error_type="requests",
                retry_after_s=self.retry_after_s(),
            )
        assert self._pool is not None, "open() first"
        if not any(client.is_available() for client in self._pool):
            wait = min(client.retry_in_s() for client in self._pool)
            raise ServeRequestError(
                "every agent is unavailable (their endpoints failed; circuit breakers open); "
                f"retry in {wait:.0f} s",
                status=503,
                error_type="server_error",
                code="agents_unavailable",
                retry_after_s=max(1.0, wait),
            )

    def start(
        self, request: SearchRequest, prompt_id: str | None = None
    ) -> asyncio.Task[tuple[Prompt, PromptOutcome]]:
        """Take a search slot now (429 / 503 as `check_capacity`) and start the search as a
        task; the slot is given back when the task ends, however it ends."""
        self.check_capacity()
        self.active += 1
        task = asyncio.create_task(self._search(request, prompt_id or new_prompt_id()))
        task.add_done_callback(self._release)
        return task

    def _release(self, _task: asyncio.Task[tuple[Prompt, PromptOutcome]]) -> None:
        self.active -= 1

    async def search(
        self, request: SearchRequest, prompt_id: str | None = None
    ) -> tuple[Prompt, PromptOutcome]:
        """Run one request's search to the end (cancelling the caller cancels it: no further
        call is sent). Raises `ServeRequestError` (429 / 503 before it starts, 503 when every
        generation failed, 500 when the search itself failed)."""
        task = self.start(request, prompt_id)
        try:
            return await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _search(self, request: SearchRequest, prompt_id: str) -> tuple[Prompt, PromptOutcome]:
        assert self._session is not None, "open() first"
        strategy = self.strategy(request.strategy)
        prompt = Prompt(
            id=prompt_id,
            messages=request.messages,
            extra={"served": {"model": request.model, "n": request.n}},
        )
        started = time.perf_counter()
        outcome = await self._session.run_prompt(prompt, strategy=strategy, budget=request.budget)
        self._seconds.append(time.perf_counter() - started)
        del self._seconds[:-200]
        self.served += 1
        if not outcome.ok:
            raise ServeRequestError(
                f"the {request.strategy} search failed: {outcome.result.get('error')} "
                f"(prompt {prompt.id} in {self.serve_dir})",
                status=500,
                error_type="server_error",
            )
        if outcome.result.get("best") is None:
            errors = _sample_errors(outcome.result)
            raise ServeRequestError(
                f"no agent answered (prompt {prompt.id}): {errors}",
                status=503,
                error_type="server_error",
                code="agents_unavailable",
                retry_after_s=self.retry_after_s(),
            )
        return prompt, outcome


def _sample_errors(result: Mapping[str, Any]) -> str:
    errors = sorted({str(s.get("error")) for s in result.get("samples", []) if s.get("error")})
    return "; ".join(errors[:3]) or "every generation failed"
