"""An in-memory `SearchContext` over a simulated `World`, with fault injection and call records.

Use it to test and benchmark strategies without HTTP: it answers at once, deterministically.

* generate: the request text is the messages' contents joined with "\\n"; the world's sample key
  is the node id the call creates (``sample_key="node"``, the default), so a run is reproducible
  and a replay gets the same samples. With ``sample_key="request"`` it is instead how many times
  the context has seen that exact request (agent and text) before, as the engine's per-request
  seeds do: strategies measured on fresh contexts then draw the same samples for the same
  requests (common random numbers), so their differences are not sampling noise.
* score: the hidden quality the response carries (`decode_quality`), the `simulated` reward.
* faults: `generate_failure_rate` / `score_failure_rate` make calls fail, decided by a hash of
  (seed, call kind, request, node id), so the same call always fails or succeeds; agents listed in
  `unavailable` report `is_available() == False` and raise `AgentUnavailableError`.
* records: every call, failed ones included (`calls`, `score_calls`, `stats()`), like the fake
  server's ``GET /stats``.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from toa.errors import AgentUnavailableError, ServerError
from toa.testing.world import World, decode_quality, family_marker, qualities_in
from toa.types import Completion, Message, Prompt, Score, ScoreFailure, Usage

__all__ = ["CallRecord", "RequestKind", "SimulatedContext", "request_kind", "simulated_prompts"]

RequestKind = Literal["fresh", "refine", "aggregate"]


def request_kind(text: str) -> RequestKind:
    """What the world will do with a request: by its number of quality markers (0, 1, 2+)."""
    n = len(qualities_in(text))
    return "fresh" if n == 0 else "refine" if n == 1 else "aggregate"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One generation request as the context received it.

    Attributes:
        agent: the agent asked.
        kind: 'fresh', 'refine' or 'aggregate' (from the request text).
        node_id: the tree node the call creates.
        failed: True when the call raised.
        parent_qualities: the quality markers the request carried (the responses it refines or
            aggregates), in order.
    """

    agent: str
    kind: RequestKind
    node_id: int
    failed: bool
    parent_qualities: tuple[float, ...] = ()


class SimulatedContext:
    """A `toa.search.SearchContext` backed by `World.respond` (module docstring).

    Args:
        world: the simulated world.
        agents: the configured agents, in order (default: the world's).
        generate_failure_rate: probability in [0, 1] that a generation fails (`ServerError`).
        score_failure_rate: probability in [0, 1] that one response's score fails.
        unavailable: agents whose circuit breakers are open.
        seed: drives the fault decisions (the world has its own seed for the noise).
        sample_key: "node" (the node id) or "request" (the request's count): module docstring.
    """

    def __init__(
        self,
        world: World,
        *,
        agents: Sequence[str] | None = None,
        generate_failure_rate: float = 0.0,
        score_failure_rate: float = 0.0,
        unavailable: Collection[str] = (),
        seed: int = 0,
        sample_key: Literal["node", "request"] = "node",
    ) -> None:
        for name, rate in (("generate", generate_failure_rate), ("score", score_failure_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}_failure_rate must be in [0, 1], got {rate}")
        self.world = world
        self._agents = tuple(agents) if agents is not None else world.agent_names
        for agent in self._agents:
            world.profile(agent)  # KeyError names the world's agents
        self.generate_failure_rate = generate_failure_rate
        self.score_failure_rate = score_failure_rate
        self.unavailable = frozenset(unavailable)
        self.seed = seed
        if sample_key not in ("node", "request"):
            raise ValueError(f"sample_key must be 'node' or 'request', got {sample_key!r}")
        self.sample_key = sample_key
        self._seen: Counter[tuple[str, str]] = Counter()
        self.calls: list[CallRecord] = []
        self.score_calls: list[tuple[int, ...]] = []

    @property
    def agents(self) -> tuple[str, ...]:
        """The configured agent names, in order."""
        return self._agents

    def is_available(self, agent: str) -> bool:
        """False for agents listed in `unavailable`."""
        return agent not in self.unavailable

    async def generate(
        self, agent: str, messages: Sequence[Message], *, node_id: int
    ) -> Completion:
        """The world's response to the joined messages, sample key = `node_id`."""
        await asyncio.sleep(0)  # a real context always yields; so do we (parallel plays)
        text = "\n".join(m.content for m in messages)
        failed = agent in self.unavailable or self._fails("generate", f"{agent}\x1f{text}", node_id)
        parents = tuple(qualities_in(text))
        self.calls.append(CallRecord(agent, request_kind(text), node_id, failed, parents))
        if agent in self.unavailable:
            raise AgentUnavailableError(
                "circuit breaker open (simulated)", agent=agent, retry_in_s=30
            )
        if failed:
            raise ServerError("simulated failure after retries", agent=agent, status=500)
        key = node_id
        if self.sample_key == "request":
            key = self._seen[(agent, text)]
            self._seen[(agent, text)] += 1
        response, _quality = self.world.respond(agent, text, key)
        return Completion(
            agent=agent,
            text=response,
            usage=Usage(len(text.split()), len(response.split())),
            finish_reason="stop",
            endpoint=f"sim://{self.world.name}",
            model=agent,
            latency_s=0.0,
        )

    async def score(
        self, prompt: Prompt, responses: Sequence[str], *, node_ids: Sequence[int]
    ) -> list[Score]:
        """The hidden quality of each response, or a `ScoreFailure` (injected or no marker)."""
        await asyncio.sleep(0)
        self.score_calls.append(tuple(node_ids))
        out: list[Score] = []
        for text, node_id in zip(responses, node_ids, strict=True):
            quality = decode_quality(text)
            if self._fails("score", prompt.id, node_id):
                out.append(ScoreFailure("simulated reward failure", "SimulatedFault"))
            elif quality is None:
                out.append(ScoreFailure("the response carries no quality marker"))
            else:
                out.append(quality)
        return out

    def stats(self) -> dict[str, object]:
        """Request counts like the fake server's /stats: total, by_agent, by_kind."""
        return {
            "total": len(self.calls),
            "by_agent": dict(sorted(Counter(c.agent for c in self.calls).items())),
            "by_kind": dict(sorted(Counter(c.kind for c in self.calls).items())),
        }

    def _fails(self, what: str, key: str, node_id: int) -> bool:
        rate = self.generate_failure_rate if what == "generate" else self.score_failure_rate
        if rate <= 0.0:
            return False
        material = f"{self.seed}\x1f{what}\x1f{key}\x1f{node_id}".encode()
        draw: int = struct.unpack("<Q", hashlib.blake2b(material, digest_size=8).digest())[0]
        return draw / 2**64 < rate


def simulated_prompts(n: int, *, seed: int = 0, n_families: int = 3) -> list[Prompt]:
    """`n` prompts whose families cycle 0, 1, ..., n_families - 1 (balanced), with stable ids."""
    return [
        Prompt.from_text(
            f"sim-{seed}-{i}",
            f"Question {i} of set {seed}: explain the idea clearly. "
            f"{family_marker(i % n_families)}",
            family=i % n_families,
        )
        for i in range(n)
    ]
