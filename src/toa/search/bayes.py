"""TOA's Bayesian play rule (``rule: bayes``): Thompson sampling on the chance of a new best.

A data-synthesis or best-of-N run keeps the best response of each tree, so the question every
play asks is: which action is most likely to produce a response better than the best so far?
The actions are "agent a writes fresh" (go wider) and "agent a refines the best response so far"
(go deeper). Each has a posterior belief about that chance:

* fresh by a: after n scored responses, an exchangeable draw beats all n with chance
  ``1 / (n + 1)``; agent a's chance is ``lambda_a / (n + 1)``, with its strength ``lambda_a`` ~
  Gamma. Each fresh play of a adds its ``1 / (n + 1)`` to the Gamma's rate and a win (beating
  the best at the time it is scored) to its shape. The chance falls as the tree grows, as it
  should, and it falls faster for weak writers.
* refine by a: chance ~ Beta; a refinement that beats its parent is a win.

Every play samples each belief once (seeded) and takes the highest sampled chance: Thompson
sampling, so arms that are probably poor are rarely played but never ruled out, no arm needs a
forced first visit, and the choice between wider and deeper follows what refinement has
actually gained on this prompt. Beliefs start from `Prior` (what earlier prompts taught, as
pseudo-counts of at most `prior_strength` plays) or cold (Gamma(1, 1), Beta(1, 1)).

Failures: a play that failed (generation or reward) yielded nothing: it counts as a loss for its
action, so a failing agent is not chosen again and again. Plays in flight count as losses until
they land (a virtual loss), which spreads `parallel_plays`; with one play in flight the search
is sequential and reproducible node for node. The responses still carry normalised rewards and
visit statistics (running rank by default), so trees of every rule read alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from toa.errors import ConfigError, TOAError
from toa.search._steps import record_score
from toa.search.context import derive_rng
from toa.search.priors import COLD_GAIN, Prior, reward_spread
from toa.search.templates import Templates, fresh_messages, refine_messages
from toa.search.tree import ROOT_ID, SearchTree
from toa.types import Prompt, Score

if TYPE_CHECKING:
    from toa.search.toa import Play, TOAConfig

__all__ = ["BayesState", "Belief"]


@dataclass(slots=True)
class Belief:
    """What one prompt has seen of one action, on top of its prior.

    For a fresh action `trials` sums expected wins (``1 / (n + 1)`` per play), for a refine action
    it counts plays; `pending` is the same for plays in flight (losses until they land).
    """

    kind: Literal["fresh", "refine"]
    wins: float = 0.0
    trials: float = 0.0
    pending: float = 0.0
    gained: float = 0.0
    gain: float = 0.0

    def params(self, prior: Params) -> tuple[float, float]:
        """The chance's posterior: Gamma (shape, rate) for fresh, Beta (a, b) for refine."""
        a = prior.a + self.wins
        b = prior.b + self.trials + self.pending
        if self.kind == "refine":
            b -= self.wins
        return a, b

    def mean_gain(self, prior: Params) -> float:
        """Posterior mean margin of a win, in reward standard deviations."""
        return (prior.gain * prior.gain_weight + self.gain) / (prior.gain_weight + self.gained)

    def sample(self, rng: random.Random, prior: Params, n_scored: int) -> float:
        """A sampled expected margin over the best: sampled chance of a new best x mean margin."""
        a, b = self.params(prior)
        if self.kind == "fresh":
            chance = rng.gammavariate(a, 1.0 / b) / (n_scored + 1)
        else:
            chance = rng.betavariate(a, b)
        return chance * self.mean_gain(prior)

    def mean(self, prior: Params, n_scored: int) -> float:
        """The posterior mean chance of a new best (for inspection and tests)."""
        a, b = self.params(prior)
        return a / b / (n_scored + 1) if self.kind == "fresh" else a / (a + b)


@dataclass(frozen=True, slots=True)
class Params:
    """A prior in one shape for both kinds: (a, b) of the chance's Gamma or Beta, and the margin."""

    a: float
    b: float
    gain: float
    gain_weight: float


@dataclass(slots=True)
class _InFlight:
    kind: Literal["fresh", "refine"]
    agent: str
    weight: float  # what the play added to its belief's `pending`
    parent: int | None  # the refined response


class BayesState:
    """The synchronous core of one Bayesian TOA search on one prompt (module docstring).

    Same protocol as `toa.search.TOAState`: `start_play` -> (generate, score) -> `finish_play`,
    `budget` times.

    Attributes:
        tree: the search tree being built.
        prior: the cross-prompt evidence the beliefs start from (empty: cold).
        rng: the run's generator (`derive_rng(seed, prompt.id)`): every sample and tie.
        history: raw rewards scored so far, in scoring order (for the normalisation).
        started: plays started so far.
    """

    def __init__(
        self,
        prompt: Prompt,
        agents: tuple[str, ...],
        *,
        config: TOAConfig,
        budget: int,
        seed: int,
        templates: Templates,
        prior: Prior | None,
    ) -> None:
        if not agents:
            raise ConfigError("toa: the context has no agents")
        self.prompt = prompt
        self.config = config
        self.templates = templates
        self.budget = budget
        self.prior = prior if prior is not None else Prior.empty(agents)
        record = {
            **config.to_dict(),
            "templates": templates.hashes(),
            "prior": None if prior is None or prior.is_empty else prior.to_dict(),
        }
        self.tree = SearchTree.new(
            prompt_id=prompt.id,
            strategy="toa",
            agents=agents,
            budget=budget,
            seed=seed,
            config=record,
        )
        self.rng = derive_rng(seed, prompt.id)
        self.history: list[float] = []
        self.started = 0
        self._normaliser = config.normalisation.function()
        strength = config.prior_strength
        self._fresh = {a: Belief("fresh") for a in agents}
        self._refine = {a: Belief("refine") for a in agents}
        self._fresh_prior: dict[str, Params] = {}
        self._refine_prior: dict[tuple[str, str], Params] = {}
        for agent in agents:
            g = self.prior.fresh_belief(agent, strength=strength)
            self._fresh_prior[agent] = Params(g.shape, g.rate, g.gain, g.gain_weight)
            for parent in agents:
                r = self.prior.refine_belief(agent, parent, strength=strength)
                self._refine_prior[(agent, parent)] = Params(r.a, r.b, r.gain, r.gain_weight)
            self.tree.add_agent(ROOT_ID, agent, "fresh")
        self._in_flight: dict[int, _InFlight] = {}
        self._best: int | None = None

    @property
    def done(self) -> bool:
        """True once `budget` plays have started."""
        return self.started >= self.budget

    def beliefs(self) -> dict[str, float]:
        """Mean chance of a new best per action now ('fresh:a', 'refine:a'), for inspection.

        Refine beliefs are about refining the current best response (cold before there is one).
        """
        n = len(self.history) + len(self._in_flight)
        out = {f"fresh:{a}": b.mean(self._fresh_prior[a], n) for a, b in self._fresh.items()}
        parent = self.tree.node(self._best).agent if self._best is not None else None
        for agent, belief in self._refine.items():
            prior = (
                self._refine_prior[(agent, parent)]
                if parent is not None
                else Params(1.0, 1.0, COLD_GAIN, 1.0)
            )
            out[f"refine:{agent}"] = belief.mean(prior, n)
        return out

    def start_play(self, is_available: Callable[[str], bool]) -> Play:
        """Choose an action by Thompson sampling and add its pending response."""
        from toa.search.toa import Play

        if self.done:
            raise TOAError(f"toa: all {self.budget} plays have already started")
        self.started += 1
        agents = self.tree.agents
        usable = [a for a in agents if is_available(a)] or list(agents)
        n = len(self.history) + len(self._in_flight)
        best = self._best
        choices: list[tuple[float, Literal["fresh", "refine"], str]] = []
        for agent in usable:
            value = self._fresh[agent].sample(self.rng, self._fresh_prior[agent], n)
            choices.append((value, "fresh", agent))
        if best is not None:
            parent_agent = self.tree.node(best).agent
            for agent in usable:
                prior = self._refine_prior[(agent, parent_agent)]
                choices.append((self._refine[agent].sample(self.rng, prior, n), "refine", agent))
        top = max(value for value, _, _ in choices)
        winners = [c for c in choices if c[0] == top]
        _, kind, agent = winners[0] if len(winners) == 1 else self.rng.choice(winners)
        if kind == "fresh":
            weight = 0.0 if n == 0 else 1.0 / (n + 1)  # the first response beats nothing
            self._fresh[agent].pending += weight
            node_id = self.tree.add_response(self.tree.agent_child(ROOT_ID, agent, "fresh"))
            self._in_flight[node_id] = _InFlight("fresh", agent, weight, None)
            return Play(node_id, agent, fresh_messages(self.prompt, self.templates))
        assert best is not None
        self._refine[agent].pending += 1.0
        node_id = self.tree.add_response(
            self.tree.agent_child(best, agent, "refine"), parents=(best,)
        )
        self._in_flight[node_id] = _InFlight("refine", agent, 1.0, best)
        text = self.tree.node(best).text or ""
        return Play(node_id, agent, refine_messages(self.prompt, text, self.templates))

    def finish_play(self, play: Play, score: Score | None) -> None:
        """Record the play's score (None: the generation failed, already on the tree)."""
        flight = self._in_flight.pop(play.node_id)
        belief = self._fresh[flight.agent] if flight.kind == "fresh" else self._refine[flight.agent]
        belief.pending -= flight.weight
        belief.trials += flight.weight
        before = None if self._best is None else self.tree.node(self._best).reward
        spread = reward_spread(self.history)
        q = None
        if score is not None:
            q = record_score(
                self.tree, play.node_id, score, normaliser=self._normaliser, history=self.history
            )
        if q is None:
            return  # failed: a loss for its action, nothing to compare
        reward = self.tree.node(play.node_id).reward
        assert reward is not None
        if flight.kind == "fresh":
            bar = before
        else:
            assert flight.parent is not None
            bar = self.tree.node(flight.parent).reward
        if bar is not None and reward > bar and flight.weight > 0:
            belief.wins += 1.0
            if spread is not None:
                belief.gained += 1.0
                belief.gain += (reward - bar) / spread
        if before is None or reward > before:
            self._best = play.node_id
