"""Cross-prompt priors: what finished prompts taught about each agent, as counts.

A run with the same agents on thousands of prompts should not re-learn on every prompt which
agent is strong. Every finished tree (of any strategy) yields `Evidence`; a run adds up the
evidence of its finished prompts (`Prior`), and a new prompt's Bayesian TOA search
(`toa.search.bayes`) starts from it as pseudo-counts of limited strength, so the prompt's own
evidence overrides the prior after a few plays (empirical-Bayes shrinkage).

What is counted (rewards are only compared within one prompt):

* fresh, per agent: each fresh response's mid-rank percentile u in (0, 1) among the prompt's
  fresh responses. Under the model ``u ~ Beta(lambda, 1)`` (`lambda` = 1: as good as the pool;
  a higher `lambda` writes better answers) ``-log u`` is all the evidence there is about the
  writer's strength, and the chance that its next answer beats n exchangeable ones is
  ``lambda / (lambda + n)``. A response tied with others tells less (a pool where every answer
  got the same 0/1 reward tells nothing): each counts with weight ``1 - others tied with it /
  (pool - 1)``, `ranked` sums the weights and `log_rank` the weighted ``-log u``. Prompts with
  fewer than two fresh responses say nothing and are left out. `wins` counts the fresh responses
  that beat the best response made before them (in node order, the order a sequential search
  made them).
* refine, per refiner and per (refiner, parent's agent): a refinement `wins` when its reward
  beats its parent's.
* aggregate, per aggregator: a response that merges several earlier ones (MoA's aggregation,
  TOA's 'aggregate' action) `wins` when it beats the best of them.
* margins: for each win, by how much it beat what it had to beat, in units of the prompt's
  reward standard deviation (`gained` wins had a measurable margin, `gain` sums them).

Failed generations and failed rewards are not evidence about quality (circuit breakers and the
search's own failure counting deal with them) and are left out. Rewards are only compared within
one prompt, so the counts are scale-free: a 0/1 reward, a chrF score and a reward model's logit
give counts of the same meaning.

`Prior.to_dict` / `Prior.from_dict` are the ``priors.json`` format that `toa priors` writes and
``strategy.prior: {source: file}`` reads.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toa import compact_json
from toa.errors import ConfigError
from toa.search.tree import ROOT_ID, SearchTree

__all__ = [
    "PRIOR_FORMAT",
    "ArmCounts",
    "BetaParams",
    "GammaParams",
    "Prior",
    "Spread",
    "evidence_from_tree",
    "load_prior",
    "rank_evidence",
    "reward_spread",
]

PRIOR_FORMAT = "toa-prior/1"
"""The `format` field of a priors file."""

PAIR_SHRINK = 4.0
"""Pseudo-plays of a refiner's overall rate mixed into each (refiner, parent agent) rate."""

COLD_GAIN = 0.5
"""The margin of a win, in reward standard deviations, believed before any evidence."""

GAIN_SHRINK = 2.0
"""Pseudo-wins of the pooled margin (over every agent, per kind) mixed into an action's margin."""


_FIELDS = ("plays", "wins", "log_rank", "gained", "gain", "ranked")


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """Counts of one kind of action.

    Attributes:
        plays: scored plays.
        wins: plays that beat what they had to beat (the best so far; the parent).
        log_rank: fresh only: weighted sum of ``-log u`` over the percentiles u (module docstring).
        gained: wins whose margin could be measured (the prompt's rewards had a spread).
        gain: sum of those margins, each in units of the prompt's reward standard deviation.
        ranked: fresh only: the weights of the percentiles in `log_rank` (module docstring).
    """

    plays: float = 0.0
    wins: float = 0.0
    log_rank: float = 0.0
    gained: float = 0.0
    gain: float = 0.0
    ranked: float = 0.0

    def __add__(self, other: ArmCounts) -> ArmCounts:
        return ArmCounts(
            self.plays + other.plays,
            self.wins + other.wins,
            self.log_rank + other.log_rank,
            self.gained + other.gained,
            self.gain + other.gain,
            self.ranked + other.ranked,
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "plays": _num(self.plays),
            "wins": _num(self.wins),
            "log_rank": _num(self.log_rank),
            "gained": _num(self.gained),
            "gain": _num(self.gain),
            "ranked": _num(self.ranked),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ArmCounts:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected an object with {', '.join(_FIELDS)}")
        values = []
        for key in _FIELDS:
            value = data.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{where}.{key}: expected a finite number >= 0, got {value!r}")
            values.append(float(value))
        counts = cls(*values)
        if counts.wins > counts.plays:
            raise ValueError(f"{where}: wins ({counts.wins}) exceed plays ({counts.plays})")
        if counts.gained > counts.wins:
            raise ValueError(f"{where}: gained ({counts.gained}) exceeds wins ({counts.wins})")
        return counts

    def mean_gain(self, *, strength: float, pooled: float) -> tuple[float, float]:
        """(mean margin of a win in reward standard deviations, its weight in wins) as a prior:
        this action's margins shrunk towards `pooled` (all actions' of its kind) by
        `GAIN_SHRINK` wins, worth ``min(strength, gained + GAIN_SHRINK)`` wins."""
        mean = (self.gain + GAIN_SHRINK * pooled) / (self.gained + GAIN_SHRINK)
        return mean, max(1.0, min(strength, self.gained + GAIN_SHRINK))


_NO_COUNTS = ArmCounts()
"""What an action without evidence has (shared: `ArmCounts` is frozen)."""


@dataclass(frozen=True, slots=True)
class GammaParams:
    """A Gamma(shape, rate) belief about a fresh writer's strength `lambda`, and the
    mean margin of its wins (`gain`, in reward standard deviations, worth `gain_weight` wins)."""

    shape: float
    rate: float
    gain: float = 0.5
    gain_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class BetaParams:
    """A Beta(a, b) belief about a refiner's chance of beating its parent, and the mean margin
    of its wins (`gain`, in reward standard deviations, worth `gain_weight` wins)."""

    a: float
    b: float
    gain: float = 0.5
    gain_weight: float = 1.0


@dataclass(frozen=True)
class Prior:
    """Evidence summed over prompts (one prompt's evidence is a `Prior` with ``prompts == 1``).

    Attributes:
        agents: the agents the evidence is about, in configuration order.
        prompts: finished prompts counted.
        fresh: counts per agent writing fresh.
        refine: counts per refiner.
        pairs: counts per (refiner, agent of the refined response).
        aggregate: counts per aggregator.
    """

    agents: tuple[str, ...]
    prompts: int = 0
    fresh: Mapping[str, ArmCounts] = field(default_factory=dict)
    refine: Mapping[str, ArmCounts] = field(default_factory=dict)
    pairs: Mapping[tuple[str, str], ArmCounts] = field(default_factory=dict)
    aggregate: Mapping[str, ArmCounts] = field(default_factory=dict)

    @classmethod
    def empty(cls, agents: Iterable[str]) -> Prior:
        """No evidence yet: every belief is the cold one."""
        return cls(agents=tuple(agents))

    @property
    def is_empty(self) -> bool:
        return self.prompts == 0

    # Sums over every agent, asked for by each belief: computed once per prior (it is frozen).
    @functools.cached_property
    def _fresh_total(self) -> ArmCounts:
        return _total(self.fresh)

    @functools.cached_property
    def _refine_pooled(self) -> float:
        return _pooled(self.refine)

    @functools.cached_property
    def _aggregate_pooled(self) -> float:
        return _pooled(self.aggregate)

    def __add__(self, other: Prior) -> Prior:
        return Prior(
            agents=self.agents,
            prompts=self.prompts + other.prompts,
            fresh=_sum(self.fresh, other.fresh),
            refine=_sum(self.refine, other.refine),
            pairs=_sum(self.pairs, other.pairs),
            aggregate=_sum(self.aggregate, other.aggregate),
        )

    def fresh_belief(self, agent: str, *, strength: float) -> GammaParams:
        """Gamma belief about `agent`'s strength as a fresh writer, before a prompt's evidence.

        Cold: Gamma(1, 1) (mean 1: as good as the pool). With evidence, the cross-prompt strength
        ``(ranked + 1) / (log_rank + 1)`` (shrunk towards 1) as ``max(1, min(strength, ranked))``
        pseudo-observations, each worth one of the prompt's own (untied) fresh answers.
        """
        counts = self.fresh.get(agent, _NO_COUNTS)
        gain, gain_weight = self._fresh_total.mean_gain(strength=strength, pooled=COLD_GAIN)
        if counts.ranked <= 0:
            return GammaParams(1.0, 1.0, gain, gain_weight)
        n_eff = max(1.0, min(strength, counts.ranked))
        mean = (counts.ranked + 1.0) / (counts.log_rank + 1.0)
        return GammaParams(n_eff, n_eff / mean, gain, gain_weight)

    def refine_belief(self, refiner: str, parent_agent: str, *, strength: float) -> BetaParams:
        """Beta belief that `refiner` beats a response of `parent_agent`, before a prompt's own.

        Cold: Beta(1, 1). With evidence: the refiner's rate, and where the pair has data the pair's
        rate shrunk towards it (`PAIR_SHRINK` pseudo-plays), as ``max(2, min(strength, plays))``
        pseudo-plays.
        """
        overall = self.refine.get(refiner, _NO_COUNTS)
        pooled = self._refine_pooled
        if overall.plays <= 0:
            return BetaParams(1.0, 1.0, *overall.mean_gain(strength=strength, pooled=pooled))
        rate = (overall.wins + 1.0) / (overall.plays + 2.0)
        pair = self.pairs.get((refiner, parent_agent), _NO_COUNTS)
        if pair.plays > 0:
            rate = (pair.wins + PAIR_SHRINK * rate) / (pair.plays + PAIR_SHRINK)
        n_eff = max(2.0, min(strength, overall.plays))
        gain, gain_weight = (pair if pair.gained > 0 else overall).mean_gain(
            strength=strength, pooled=pooled
        )
        return BetaParams(n_eff * rate, n_eff * (1.0 - rate), gain, gain_weight)

    def aggregate_belief(self, agent: str, *, strength: float) -> BetaParams:
        """Beta belief that `agent`'s merge of the best responses beats the best of them.

        Cold: Beta(1, 1); with evidence the agent's rate as ``max(2, min(strength, plays))``
        pseudo-plays, like `refine_belief` without pairs.
        """
        counts = self.aggregate.get(agent, _NO_COUNTS)
        gain = counts.mean_gain(strength=strength, pooled=self._aggregate_pooled)
        if counts.plays <= 0:
            return BetaParams(1.0, 1.0, *gain)
        rate = (counts.wins + 1.0) / (counts.plays + 2.0)
        n_eff = max(2.0, min(strength, counts.plays))
        return BetaParams(n_eff * rate, n_eff * (1.0 - rate), *gain)

    def to_dict(self) -> dict[str, Any]:
        """The ``priors.json`` form (module docstring)."""
        return {
            "format": PRIOR_FORMAT,
            "agents": list(self.agents),
            "prompts": self.prompts,
            "fresh": {a: self.fresh[a].to_dict() for a in sorted(self.fresh)},
            "refine": {a: self.refine[a].to_dict() for a in sorted(self.refine)},
            "pairs": [
                {"refiner": r, "parent": p, **self.pairs[(r, p)].to_dict()}
                for r, p in sorted(self.pairs)
            ],
            "aggregate": {a: self.aggregate[a].to_dict() for a in sorted(self.aggregate)},
        }

    @classmethod
    def from_dict(cls, data: Any) -> Prior:
        """Parse the ``priors.json`` form; `ValueError` says which field is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("a prior must be a JSON object")
        if data.get("format") != PRIOR_FORMAT:
            raise ValueError(f"format must be {PRIOR_FORMAT!r}, got {data.get('format')!r}")
        agents = data.get("agents")
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise ValueError("agents must be a list of agent names")
        prompts = data.get("prompts", 0)
        if isinstance(prompts, bool) or not isinstance(prompts, int) or prompts < 0:
            raise ValueError(f"prompts must be an integer >= 0, got {prompts!r}")
        known = set(agents)
        fresh = _counts_by_agent(data.get("fresh", {}), "fresh", known)
        refine = _counts_by_agent(data.get("refine", {}), "refine", known)
        aggregate = _counts_by_agent(data.get("aggregate", {}), "aggregate", known)
        raw_pairs = data.get("pairs", [])
        if not isinstance(raw_pairs, list):
            raise ValueError("pairs must be a list")
        pairs: dict[tuple[str, str], ArmCounts] = {}
        for i, item in enumerate(raw_pairs):
            where = f"pairs[{i}]"
            if not isinstance(item, Mapping):
                raise ValueError(f"{where}: expected an object")
            key = (item.get("refiner"), item.get("parent"))
            for name in key:
                if name not in known:
                    raise ValueError(f"{where}: {name!r} is not one of the agents {agents}")
            pairs[(str(key[0]), str(key[1]))] = ArmCounts.from_dict(item, where)
        return cls(tuple(agents), prompts, fresh, refine, pairs, aggregate)

    def for_agents(self, agents: tuple[str, ...], source: str) -> Prior:
        """This prior checked against a run's agents (the same set, any order).

        Raises:
            ConfigError: the prior is about other agents (names both lists and `source`).
        """
        if set(self.agents) != set(agents):
            missing = sorted(set(agents) - set(self.agents))
            extra = sorted(set(self.agents) - set(agents))
            raise ConfigError(
                f"{source}: the prior is about agents {list(self.agents)}, the run has "
                f"{list(agents)} (missing: {missing or 'none'}, "
                f"not in the run: {extra or 'none'}); "
                "write a prior for these agents with `toa priors RUN_DIR -o FILE` from a run "
                "that used them, or use `prior: {source: online}`"
            )
        return Prior(agents, self.prompts, self.fresh, self.refine, self.pairs, self.aggregate)

    def to_json(self) -> str:
        """Canonical compact JSON (sorted keys): what a store keeps with a prompt (computed once
        per prior: prompts that start between two finishing share the run's snapshot)."""
        return self._json

    def record(self) -> dict[str, Any]:
        """`to_dict`, computed once per prior and shared by every caller (the trees of prompts
        that start from this prior, `to_json`): read it, never modify it."""
        return self._record

    @functools.cached_property
    def _record(self) -> dict[str, Any]:
        return self.to_dict()

    @functools.cached_property
    def _json(self) -> str:
        return compact_json.dumps_text(self._record, sort_keys=True)


def load_prior(path: str | Path, agents: tuple[str, ...]) -> Prior:
    """Read a ``priors.json`` file for a run with `agents`.

    Raises:
        ConfigError: the file is missing or unreadable, not JSON, not a prior, or about other
            agents; the message names the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: prior file not found; write one with `toa priors RUN_DIR -o {path}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the prior file ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}: the prior file is not JSON ({exc.msg}); "
            "write one with `toa priors RUN_DIR -o FILE`"
        ) from None
    try:
        prior = Prior.from_dict(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a TOA prior: {exc}") from None
    return prior.for_agents(agents, str(path))


def evidence_from_tree(tree: SearchTree) -> Prior:
    """One finished tree's evidence (module docstring), for the tree's agents."""
    # Each action's counts are summed as plain floats, in node order (the same sums as adding
    # `ArmCounts` node by node), and made `ArmCounts` at the end.
    fresh: dict[str, list[float]] = {}
    refine: dict[str, list[float]] = {}
    pairs: dict[tuple[str, str], list[float]] = {}
    aggregate: dict[str, list[float]] = {}
    node_of = tree.node
    scored = [n for n in tree.nodes if n.kind == "response" and n.reward is not None]
    rewards = [n.reward for n in scored if n.reward is not None]
    spread = reward_spread(rewards)
    pool = sorted(n.reward for n in scored if n.action == "fresh" and n.reward is not None)
    ranked_pool = len(pool) >= 2
    best: float | None = None
    for node, reward in zip(scored, rewards, strict=True):
        action = node.action
        if action == "fresh":
            if ranked_pool:
                weight, log_rank = rank_evidence(reward, pool)
                _count(fresh, node.agent, reward, best, spread, log_rank, weight)
        elif action == "refine" and len(node.parents) == 1:
            parent = node_of(node.parents[0])
            if parent.reward is not None and parent.id != ROOT_ID:
                _count(refine, node.agent, reward, parent.reward, spread)
                _count(pairs, (node.agent, parent.agent), reward, parent.reward, spread)
        elif action == "aggregate" and node.parents:
            bars = [node_of(i).reward for i in node.parents]
            if all(b is not None for b in bars):
                bar = max(b for b in bars if b is not None)
                _count(aggregate, node.agent, reward, bar, spread)
        best = reward if best is None else max(best, reward)
    return Prior(
        tree.agents,
        1,
        {k: ArmCounts(*v) for k, v in fresh.items()},
        {k: ArmCounts(*v) for k, v in refine.items()},
        {k: ArmCounts(*v) for k, v in pairs.items()},
        {k: ArmCounts(*v) for k, v in aggregate.items()},
    )


def _count(
    sums: dict[Any, list[float]],
    key: Any,
    reward: float,
    bar: float | None,
    spread: float | None,
    log_rank: float = 0.0,
    ranked: float = 0.0,
) -> None:
    """Add one play that had to beat `bar` (None: nothing to beat, no win) to `sums[key]`
    (plays, wins, log_rank, gained, gain, ranked)."""
    counts = sums.get(key)
    if counts is None:
        counts = sums[key] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    counts[0] += 1.0
    if bar is not None and reward > bar:
        counts[1] += 1.0
        if spread is not None:
            counts[3] += 1.0
            counts[4] += (reward - bar) / spread
    counts[2] += log_rank
    counts[5] += ranked


def rank_evidence(value: float, pool: Sequence[float]) -> tuple[float, float]:
    """(weight, weighted ``-log u``) of one fresh answer in the sorted `pool` (which holds it):
    u its mid-rank percentile, the weight ``1 - others tied / (len(pool) - 1)`` (module
    docstring); a pool of one says nothing."""
    if len(pool) < 2:
        return 0.0, 0.0
    below = bisect.bisect_left(pool, value)
    equal = bisect.bisect_right(pool, value) - below
    u = (below + 0.5 * equal) / len(pool)
    weight = 1.0 - (equal - 1) / (len(pool) - 1)
    return weight, weight * -math.log(u)


class Spread:
    """The population standard deviation of a growing list of rewards, exact and cheap to
    update: `statistics.pstdev`'s value (the correctly rounded root of the exact variance), from
    running integer sums instead of a pass over every reward with fractions.

    Each finite float is an integer times a power of two, ``2 ** -scale``; the rewards are kept
    as integers over the finest such power seen so far (the sums are shifted up when a finer one
    comes), and the sums of those integers and of their squares are kept exactly (Python
    integers), so the variance ``(n * sxx - sx ** 2) / (n ** 2 * 4 ** scale)`` is the exact
    rational pstdev starts from, and `value` rounds its root once. Rewards such as 0.4855 need
    about 2 ** -54: integers of some 60 bits, not the 1,100 that ``2 ** -1074`` (every float's
    common unit) would take.
    """

    __slots__ = ("count", "finite", "scale", "sx", "sxx")

    def __init__(self) -> None:
        self.count = 0
        self.finite = True
        self.scale = 0
        self.sx = 0
        self.sxx = 0

    def add(self, reward: float) -> None:
        self.count += 1
        if not math.isfinite(reward):
            self.finite = False
            return
        num, den = reward.as_integer_ratio()  # den is a power of two, at most 2 ** 1074
        scale = den.bit_length() - 1
        if scale > self.scale:  # a finer unit: the sums so far in it
            up = scale - self.scale
            self.sx <<= up
            self.sxx <<= 2 * up
            self.scale = scale
        elif scale < self.scale:
            num <<= self.scale - scale
        self.sx += num
        self.sxx += num * num

    def value(self) -> float | None:
        """The spread; None with fewer than 2 rewards, no spread (or one too small for a
        float: rewards 5e-324 apart), or a non-finite reward."""
        n = self.count
        if n < 2 or not self.finite:
            return None
        numerator = n * self.sxx - self.sx * self.sx  # variance = numerator / (n * n * 4**scale)
        if numerator <= 0:
            return None
        spread = _sqrt_of_ratio(numerator, n * n << (2 * self.scale))
        # a root below the smallest float rounds to 0.0: no spread to divide by either
        return spread if 0.0 < spread < math.inf else None


def _sqrt_of_ratio(n: int, m: int) -> float:
    """The square root of ``n / m`` (both > 0) as a float, correctly rounded.

    An integer root with at least 55 significant bits, rounded to odd (its last bit set when
    inexact), keeps enough information for the one rounding to 53 bits that the conversion to
    float makes (int to float and int / int both round correctly) to be the correct one.
    """
    shift = (n.bit_length() - m.bit_length() - 112) // 2  # the root has >= 55 bits
    if shift >= 0:
        m <<= 2 * shift
    else:
        n <<= -2 * shift
    root = math.isqrt(n // m)
    root |= root * root * m != n
    return float(root << shift) if shift >= 0 else root / (1 << -shift)


def reward_spread(rewards: Sequence[float]) -> float | None:
    """The standard deviation of one prompt's rewards (`statistics.pstdev`'s value); None with
    fewer than 2 or no spread."""
    spread = Spread()
    for reward in rewards:
        spread.add(reward)
    return spread.value()


def _total(counts: Mapping[Any, ArmCounts]) -> ArmCounts:
    total = ArmCounts()
    for key in sorted(counts):  # a fixed order: the same sum from memory and from JSON
        total = total + counts[key]
    return total


def _pooled(counts: Mapping[Any, ArmCounts]) -> float:
    """Mean margin of a win over every action of one kind; `COLD_GAIN` with no margins yet."""
    total = _total(counts)
    if total.gained <= 0:
        return COLD_GAIN
    return (total.gain + COLD_GAIN) / (total.gained + 1.0)


def _sum(left: Mapping[Any, ArmCounts], right: Mapping[Any, ArmCounts]) -> dict[Any, ArmCounts]:
    out = dict(left)
    for key, counts in right.items():
        out[key] = out.get(key, _NO_COUNTS) + counts
    return out


def _counts_by_agent(data: Any, where: str, known: set[str]) -> dict[str, ArmCounts]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be an object keyed by agent")
    out: dict[str, ArmCounts] = {}
    for agent, counts in data.items():
        if agent not in known:
            raise ValueError(f"{where}: {agent!r} is not one of the agents {sorted(known)}")
        out[agent] = ArmCounts.from_dict(counts, f"{where}.{agent}")
    return out


def _num(value: float) -> float | int:
    """Whole numbers as ints in JSON (counts read naturally); others exact (repr round-trips)."""
    value = float(value)
    return int(value) if value.is_integer() else value
