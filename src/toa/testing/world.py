"""Simulated worlds: agents with hidden quality, for tests and benchmarks of search.

A world is pure (no I/O, no clock). Both the fake OpenAI-compatible server
(`toa.testing.server`) and in-memory search contexts use it, so a search behaves the same whether
it talks HTTP or not.

Dynamics (these are what search tests and benchmarks rely on; change them only on purpose):

* Quality. Every response has a hidden quality q in [0, 1]. The response text ends with a marker
  ``[[toa-q=0.123456]]`` that `decode_quality` reads back exactly (the `simulated` reward).
* Families. A request's family is N mod n_families when its text holds a marker
  ``[[toa-family=N]]`` (put it in the prompt: every fresh, refine or aggregate request built from
  that prompt then has the same family, whatever template wraps it; `family_marker` makes one);
  otherwise ``blake2b(text without quality markers) mod n_families``. Both are stable across
  processes and Python versions. The best agent, and the best workflow, may differ per family.
* Fresh answer (the request carries no marker): ``q = clip(N(fresh_mean[family], fresh_std))``.
* Refinement (exactly one marker in the request: the parent's quality p):
  ``g = refine_gain[family]``; the expected move is ``g * (1 - p)`` when g >= 0 (closes a fraction
  of the gap to 1, so gains shrink as p grows) and ``g * p`` when g < 0 (loses a fraction of p);
  then ``q = clip(p + move + N(0, refine_std))``.
* Aggregation (two or more markers, best parent quality m): with ``g = aggregate_gain``, the
  same rule as refinement from m: ``q = clip(m + move + N(0, refine_std))``, ``move = g * (1 - m)``
  when g >= 0, ``g * m`` when g < 0.
* Randomness. The noise is drawn from a generator seeded by (world seed, agent, request text,
  sample key). The sample key is the request's ``seed`` field when it has one; otherwise the server
  counts how many times it has seen that exact request, so repeated identical requests give
  different samples while a seeded replay gives the same ones.

The named worlds (three agents ``agent_a``, ``agent_b``, ``agent_c``; three families):

* ``helps`` (default): refinement helps; the best fresh agent differs by family
  (a in family 0, b in family 1, c in family 2; c is best on average, a worst); a is the best
  refiner, c the weakest.
* ``hurts``: same fresh answers, but every rewrite (refinement or aggregation) is on average
  worse than its (best) parent.
* ``dominant``: ``agent_c`` is best fresh and best at refining in every family.
* ``specialists``: each agent is the best writer and the only good refiner on its own family
  (a on 0, b on 1, c on 2) and poor on the others, where its rewrites hurt a little. On average
  the agents are alike, so neither one agent nor a prior over all prompts is enough: a search
  wins only by finding, per prompt, whose family it is.

Judges. An agent whose profile has ``judge=True`` (`judge_profile`; `toa.testing.build_world`'s
``judges`` makes them) grades instead of answering, with
`judge_verdict`: the graded quality q is the request's LAST quality marker (the response under
judgement, placed after the question and any reference). A request that asks for a rating on a
1-10 scale (its text matches `JUDGE_SCORE_REQUEST_RE`: "1 to 10", "1-10", "1 - 10") gets
``"Score: N"`` with N = floor(1 + 9 q + 1/2) (1 + 9 q rounded half up); any other gets ``"Yes"``
when q >= 0.5, else ``"No"``, and P(yes) = q (the fake server's log-probabilities). A request with
no marker gets ``"I cannot judge this response."``. Judge answers carry no quality marker.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import struct
from dataclasses import dataclass, field
from typing import Literal

from toa.rewards.simulated import (
    QUALITY_MARKER_RE,
    decode_quality,
    encode_quality,
    qualities_in,
)

__all__ = [
    "FAMILY_MARKER_RE",
    "JUDGE_SCORE_REQUEST_RE",
    "QUALITY_MARKER_RE",
    "UNSURE_VERDICT",
    "AgentProfile",
    "Verdict",
    "World",
    "decode_quality",
    "encode_quality",
    "family_marker",
    "judge_profile",
    "judge_verdict",
    "prompt_family",
    "qualities_in",
]

FAMILY_MARKER_RE = re.compile(r"\[\[toa-family=(\d+)\]\]")
JUDGE_SCORE_REQUEST_RE = re.compile(r"\b1\s*(?:-|–|to)\s*10\b", re.IGNORECASE)
"""A judge request that matches asks for a 1-10 score; any other asks Yes or No."""
UNSURE_VERDICT = "I cannot judge this response."

_FILLER = tuple(
    [
        "the",
        "answer",
        "follows",
        "from",
        "the",
        "question",
        "by",
        "careful",
        "reasoning",
        "step",
        "by",
        "step",
        "and",
        "a",
        "short",
        "check",
        "of",
        "each",
        "intermediate",
        "result",
        "against",
        "the",
        "constraints",
        "given",
        "so",
        "that",
        "nothing",
        "is",
        "left",
        "out",
    ]
)


def family_marker(family: int) -> str:
    """The marker that pins a prompt (and every request built from it) to `family`."""
    return f"[[toa-family={family}]]"


def prompt_family(text: str, n_families: int) -> int:
    """The family of a request text: its family marker, else a stable hash (module docstring)."""
    marker = FAMILY_MARKER_RE.search(text)
    if marker is not None:
        return int(marker.group(1)) % n_families
    stripped = QUALITY_MARKER_RE.sub("", text)
    digest = hashlib.blake2b(stripped.encode("utf-8"), digest_size=8).digest()
    return int(struct.unpack("<Q", digest)[0] % n_families)


def _clip(q: float) -> float:
    return min(1.0, max(0.0, q))


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """Hidden behaviour of one simulated agent. Per-family tuples have one entry per family."""

    name: str
    fresh_mean: tuple[float, ...]
    refine_gain: tuple[float, ...]
    fresh_std: float = 0.12
    refine_std: float = 0.06
    aggregate_gain: float = 0.15
    words: int = 24  # length of the filler text of a response, in words
    judge: bool = False  # grades responses (`judge_verdict`) instead of answering


@dataclass(frozen=True, slots=True)
class Verdict:
    """A simulated judge's answer.

    Attributes:
        mode: 'yes_no', 'score', or 'unsure' (the request held no quality marker).
        text: the reply: "Yes" / "No", "Score: N" (N in 1..10), or `UNSURE_VERDICT`.
        quality: the graded quality q in [0, 1] (None when unsure).
    """

    mode: Literal["yes_no", "score", "unsure"]
    text: str
    quality: float | None


def judge_profile(name: str, n_families: int = 3) -> AgentProfile:
    """A judge agent's profile (its answer-quality fields are unused)."""
    return AgentProfile(name, (0.5,) * n_families, (0.0,) * n_families, judge=True)


def judge_verdict(request_text: str) -> Verdict:
    """What a simulated judge answers to `request_text` (module docstring). Deterministic."""
    q = decode_quality(request_text)
    if q is None:
        return Verdict("unsure", UNSURE_VERDICT, None)
    if JUDGE_SCORE_REQUEST_RE.search(request_text):
        return Verdict("score", f"Score: {math.floor(1.0 + 9.0 * q + 0.5)}", q)
    return Verdict("yes_no", "Yes" if q >= 0.5 else "No", q)


@dataclass(frozen=True)
class World:
    """A set of agent profiles over `n_families` prompt families, with a seed."""

    agents: tuple[AgentProfile, ...]
    n_families: int = 3
    seed: int = 0
    name: str = "custom"
    _by_name: dict[str, AgentProfile] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {a.name: a for a in self.agents}
        if len(by_name) != len(self.agents):
            raise ValueError("agent names in a world must be unique")
        for a in self.agents:
            if len(a.fresh_mean) != self.n_families or len(a.refine_gain) != self.n_families:
                raise ValueError(
                    f"agent {a.name!r}: per-family tuples need {self.n_families} values"
                )
        object.__setattr__(self, "_by_name", by_name)

    @classmethod
    def named(cls, name: str, *, seed: int = 0) -> World:
        """One of the documented worlds: 'helps', 'hurts', 'dominant' or 'specialists'."""
        try:
            agents = _NAMED_WORLDS[name]
        except KeyError:
            raise ValueError(
                f"unknown world {name!r}; choose one of {sorted(_NAMED_WORLDS)}"
            ) from None
        return cls(agents=agents, seed=seed, name=name)

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    def profile(self, agent: str) -> AgentProfile:
        """The profile of `agent`; KeyError names the known agents."""
        try:
            return self._by_name[agent]
        except KeyError:
            raise KeyError(f"unknown agent {agent!r}; this world has {self.agent_names}") from None

    def rng(self, agent: str, request_text: str, sample_key: int | str) -> random.Random:
        """The noise generator for one request (see the module docstring)."""
        material = f"{self.seed}\x1f{agent}\x1f{sample_key}\x1f{request_text}".encode()
        digest = hashlib.blake2b(material, digest_size=8).digest()
        return random.Random(struct.unpack("<Q", digest)[0])

    def quality(
        self, agent: str, family: int, parent_qualities: list[float], rng: random.Random
    ) -> float:
        """Quality of a new response: fresh, refinement or aggregation, by number of parents."""
        p = self.profile(agent)
        if not parent_qualities:
            return _clip(rng.gauss(p.fresh_mean[family], p.fresh_std))
        if len(parent_qualities) == 1:
            parent = parent_qualities[0]
            gain = p.refine_gain[family]
            move = gain * (1.0 - parent) if gain >= 0 else gain * parent
            return _clip(parent + move + rng.gauss(0.0, p.refine_std))
        best = max(parent_qualities)
        gain = p.aggregate_gain
        move = gain * (1.0 - best) if gain >= 0 else gain * best
        return _clip(best + move + rng.gauss(0.0, p.refine_std))

    def respond(self, agent: str, request_text: str, sample_key: int | str) -> tuple[str, float]:
        """A response text and its hidden quality for one request.

        `request_text` is everything the agent was sent: it decides the family, its quality
        markers are the parents' qualities, and with `sample_key` it seeds the noise.
        """
        rng = self.rng(agent, request_text, sample_key)
        family = prompt_family(request_text, self.n_families)
        # Rounded to the marker's precision, so the simulated reward reads back exactly q.
        q = round(self.quality(agent, family, qualities_in(request_text), rng), 6)
        n_words = self.profile(agent).words
        start = rng.randrange(len(_FILLER))
        words = [_FILLER[(start + i) % len(_FILLER)] for i in range(n_words)]
        return f"{agent}: {' '.join(words)} {encode_quality(q)}", q


def _profiles(
    fresh: dict[str, tuple[float, float, float]],
    gains: dict[str, tuple[float, float, float]],
    *,
    aggregate_gain: float = 0.15,
) -> tuple[AgentProfile, ...]:
    return tuple(
        AgentProfile(name, fresh[name], gains[name], aggregate_gain=aggregate_gain)
        for name in sorted(fresh)
    )


_FRESH_VARIED = {
    "agent_a": (0.52, 0.30, 0.34),
    "agent_b": (0.36, 0.50, 0.38),
    "agent_c": (0.44, 0.43, 0.55),
}
_NAMED_WORLDS: dict[str, tuple[AgentProfile, ...]] = {
    "helps": _profiles(
        _FRESH_VARIED,
        {
            "agent_a": (0.30, 0.22, 0.26),
            "agent_b": (0.12, 0.20, 0.10),
            "agent_c": (0.06, 0.08, 0.12),
        },
    ),
    "hurts": _profiles(
        _FRESH_VARIED,
        {
            "agent_a": (-0.10, -0.15, -0.12),
            "agent_b": (-0.18, -0.08, -0.15),
            "agent_c": (-0.14, -0.16, -0.06),
        },
        aggregate_gain=-0.10,
    ),
    "specialists": _profiles(
        {
            "agent_a": (0.60, 0.30, 0.32),
            "agent_b": (0.32, 0.60, 0.30),
            "agent_c": (0.30, 0.32, 0.60),
        },
        {
            "agent_a": (0.25, -0.05, -0.05),
            "agent_b": (-0.05, 0.25, -0.05),
            "agent_c": (-0.05, -0.05, 0.25),
        },
    ),
    "dominant": _profiles(
        {
            "agent_a": (0.35, 0.33, 0.36),
            "agent_b": (0.38, 0.36, 0.34),
            "agent_c": (0.62, 0.60, 0.64),
        },
        {
            "agent_a": (0.05, 0.06, 0.04),
            "agent_b": (0.06, 0.05, 0.07),
            "agent_c": (0.20, 0.22, 0.18),
        },
    ),
}
