"""TOA's Bayesian play rule (``rule: bayes``): Thompson sampling on the chance of a new best.

A data-synthesis or best-of-N run keeps the best response of each tree, so the question every
play asks is: which action is most likely to beat the best response so far, and by how much?
The actions are "agent a writes fresh" (go wider), "agent a refines the best response so far"
(go deeper) and, with `aggregate` on, "agent a merges the best responses so far into one"
(MoA's aggregation, as one more move of the search). Each has a posterior belief:

* fresh by a: a's answers sit at percentile u ~ Beta(lambda_a, 1) of the prompt's pool of fresh
  answers (lambda = 1: as good as the pool), with the strength lambda_a ~ Gamma (conjugate: each
  fresh answer of a adds 1 to the shape and ``-log u`` to the rate, both weighted down by ties:
  `toa.search.priors.rank_evidence`). Its chance of beating the
  best, which stands at percentile u_b of that pool, is ``1 - u_b ** lambda_a``: about
  ``lambda_a / (n + 1)`` after n fresh answers, so it falls as the tree grows, and faster for
  weak writers.
* refine by a: the chance that a's rewrite of the best beats it, ~ Beta; a refinement that
  beats its parent is a win.
* aggregate by a: the chance that a's merge of the `AGGREGATE_WIDTH` best responses beats the
  best of them, ~ Beta (only once two responses are scored).
* the margin of a win (in the prompt's reward standard deviations): the mean of the margins
  seen, from the prior's; an action's value is its chance times its margin (an expected gain
  over the best, so that frequent tiny gains do not crowd out rarer large ones).

Every play samples each chance once (seeded) and takes the highest value: Thompson sampling, so
arms that are probably poor are rarely played but never ruled out, no arm needs a forced first
visit, and the choice between wider and deeper follows what refinement has actually gained on
this prompt. The budget is short and known, so exploring is worth less as it runs out: each
sample is pulled towards its posterior mean by ``sqrt(plays left / budget)`` (the first play
samples fully, the last is nearly greedy). Beliefs start from a `Prior` (what earlier prompts
taught, worth at most `prior_strength` plays per action, so the prompt's own plays soon
outweigh it) or cold (Gamma(1, 1), Beta(1, 1)).

Failures: a play that failed (generation or reward) yielded nothing: it counts as a loss for its
action (a refinement that did not win; a fresh answer at percentile 1/4), so a failing agent is
not chosen again and again. Plays in flight count the same way until they land (a virtual
loss), which spreads `parallel_plays`; with one play in flight the search is sequential and
reproducible node for node. Responses still carry normalised rewards and visit statistics
(running rank by default), so trees of every rule read alike.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from toa.errors import ConfigError, TOAError
from toa.search.context import derive_rng
from toa.search.draws import gamma_sampler
from toa.search.plays import Play, TOAConfig
from toa.search.priors import COLD_GAIN, Prior, Spread, rank_evidence
from toa.search.steps import record_score
from toa.search.templates import Templates, aggregate_messages, fresh_messages, refine_messages
from toa.search.tree import ROOT_ID, SearchTree
from toa.types import Message, Prompt, Score

__all__ = ["AGGREGATE_WIDTH", "HORIZON_POWER", "BayesState", "Belief", "Kind", "Params"]

AGGREGATE_WIDTH = 3
"""How many of the best responses an aggregate action merges (at most; at least two)."""

HORIZON_POWER = 0.5
"""Samples are shrunk towards their mean by ``(plays left / budget) ** HORIZON_POWER``."""

LOSS_LOG_RANK = math.log(4.0)
"""``-log u`` that a failed or in-flight fresh play adds: an answer at percentile 1/4."""


@dataclass(frozen=True, slots=True)
class Params:
    """A prior: (a, b) of the chance's Beta, or (shape, rate) of the strength's Gamma, and the
    mean margin of a win with its weight in wins."""

    a: float
    b: float
    gain: float
    gain_weight: float


@dataclass(slots=True)
class Belief:
    """What one prompt has seen of one action, on top of its prior.

    Refine: `wins` of `trials` (failures included), `pending` plays in flight. Fresh: the
    percentile evidence is recomputed from the pool each play (`BayesState`); `losses` counts
    failed plays, `pending` plays in flight. Both: `gained` wins with a measured margin, whose
    margins sum to `gain`.
    """

    kind: Kind
    wins: float = 0.0
    trials: float = 0.0
    losses: float = 0.0
    pending: float = 0.0
    gained: float = 0.0
    gain: float = 0.0

    def mean_gain(self, prior: Params) -> float:
        """Posterior mean margin of a win, in reward standard deviations."""
        return (prior.gain * prior.gain_weight + self.gain) / (prior.gain_weight + self.gained)

    def sample_gain(self, rng: random.Random, prior: Params) -> float:
        """A sampled mean margin: Gamma around the posterior mean, its shape the wins behind it
        (so a margin seen a few times is still uncertain and gets explored)."""
        weight = prior.gain_weight + self.gained
        return rng.gammavariate(weight, self.mean_gain(prior) / weight)

    def refine_params(self, prior: Params) -> tuple[float, float]:
        """The Beta posterior of a refinement's chance of beating its parent."""
        return prior.a + self.wins, prior.b + self.trials + self.pending - self.wins

    def fresh_params(self, prior: Params, answers: float, log_rank: float) -> tuple[float, float]:
        """The Gamma posterior of a fresh writer's strength, given its scored answers' evidence."""
        bad = self.losses + self.pending
        return prior.a + answers + bad, prior.b + log_rank + bad * LOSS_LOG_RANK


def fresh_chance(strength: float, best_at: float | None) -> float:
    """Chance that a fresh answer of that strength beats the best at percentile `best_at`."""
    if best_at is None:
        return 1.0
    return 1.0 - math.pow(best_at, strength)


Kind = Literal["fresh", "refine", "aggregate"]


@dataclass(slots=True)
class _InFlight:
    kind: Kind
    agent: str
    parents: tuple[int, ...]  # the refined or merged responses


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
            "prior": None if prior is None or prior.is_empty else prior.record(),
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
        self._gamma = gamma_sampler(self.rng)  # `rng.gammavariate`, draw for draw
        self.history: list[float] = []
        self._spread = Spread()  # of `history`, kept as it grows
        self._ranked: list[tuple[float, int]] = []  # scored responses as `tree.ranked()` orders
        self.started = 0
        self._normaliser = config.normalisation.function()
        strength = config.prior_strength
        self._fresh = {a: Belief("fresh") for a in agents}
        self._refine = {a: Belief("refine") for a in agents}
        self._aggregate = {a: Belief("aggregate") for a in agents}
        self._fresh_prior: dict[str, Params] = {}
        # refine priors by the refined response's agent, then the refiner; built when first needed
        self._refine_prior: dict[str, dict[str, Params]] = {}
        self._aggregate_prior: dict[str, Params] = {}
        for agent in agents:
            m = self.prior.aggregate_belief(agent, strength=strength)
            self._aggregate_prior[agent] = Params(m.a, m.b, m.gain, m.gain_weight)
            g = self.prior.fresh_belief(agent, strength=strength)
            self._fresh_prior[agent] = Params(g.shape, g.rate, g.gain, g.gain_weight)
            self.tree.add_agent(ROOT_ID, agent, "fresh")
        self._pool: list[float] = []  # rewards of the scored fresh answers, sorted
        # (weight, weighted -log u) of each writer's fresh answers in the pool, while it holds
        self._rank_evidence: dict[str, tuple[float, float]] = {}
        self._fresh_rewards: dict[str, list[float]] = {a: [] for a in agents}
        self._in_flight: dict[int, _InFlight] = {}
        self._best: int | None = None
        self._requests: dict[tuple[object, ...], tuple[Message, ...]] = {}  # see `start_play`

    @property
    def done(self) -> bool:
        """True once `budget` plays have started."""
        return self.started >= self.budget

    def beliefs(self) -> dict[str, float]:
        """Posterior mean chance of beating the best now, per action ('fresh:a', 'refine:a').

        Refine beliefs are about refining the current best response (cold before there is one).
        """
        best_at = self._best_percentile()
        out: dict[str, float] = {}
        for agent, belief in self._fresh.items():
            shape, rate = self._fresh_posterior(agent, belief)
            out[f"fresh:{agent}"] = fresh_chance(shape / rate, best_at)
        parent = self.tree.node(self._best).agent if self._best is not None else None
        for agent, belief in self._refine.items():
            prior = (
                self._refine_priors(parent)[agent]
                if parent is not None
                else Params(1.0, 1.0, COLD_GAIN, 1.0)
            )
            a, b = belief.refine_params(prior)
            out[f"refine:{agent}"] = a / (a + b)
        if self.config.aggregate:
            for agent, belief in self._aggregate.items():
                a, b = belief.refine_params(self._aggregate_prior[agent])
                out[f"aggregate:{agent}"] = a / (a + b)
        return out

    def start_play(self, is_available: Callable[[str], bool]) -> Play:
        """Choose an action by Thompson sampling and add its pending response."""

        if self.done:
            raise TOAError(f"toa: all {self.budget} plays have already started")
        self.started += 1
        agents = self.tree.agents
        usable = [a for a in agents if is_available(a)] or agents
        best = self._best
        best_at = self._best_percentile()
        spread = math.pow((self.budget - self.started + 1) / self.budget, HORIZON_POWER)
        # The hot loop of every play, written out: `rng`'s draws stay in exactly this order (a
        # Beta draw is ``y / (y + z)`` of two Gamma draws, as `random.betavariate` makes it; a
        # margin is `Belief.sample_gain`), so seeded trees stay the same. Each action's value
        # is compared as it comes; ties keep their order for `rng.choice`.
        gamma = self._gamma
        pow_ = math.pow
        top = -1.0
        winners: list[tuple[Kind, str]] = []
        fresh_prior = self._fresh_prior
        evidence = self._rank_evidence
        for agent in usable:
            belief = self._fresh[agent]
            prior = fresh_prior[agent]
            found = evidence.get(agent) or self._evidence_of(agent)
            # `Belief.fresh_params`, written out
            bad = belief.losses + belief.pending
            shape = prior.a + found[0] + bad
            rate = prior.b + found[1] + bad * LOSS_LOG_RANK
            mean = shape / rate
            strength = mean + spread * (gamma(shape, 1.0 / rate) - mean)
            strength = strength if strength > 0.0 else 0.0
            if best_at is None:  # nothing to beat yet: the strongest writer goes first
                value = strength
            else:
                weight = prior.gain_weight + belief.gained
                mean = (prior.gain * prior.gain_weight + belief.gain) / weight
                gain = mean + spread * (gamma(weight, mean / weight) - mean)
                value = (1.0 - pow_(best_at, strength)) * (gain if gain > 0.0 else 0.0)
            if value > top:
                top, winners = value, [("fresh", agent)]
            elif value == top:
                winners.append(("fresh", agent))
        arms: list[tuple[Kind, dict[str, Belief], dict[str, Params]]] = []
        if best is not None:
            arms.append(("refine", self._refine, self._refine_priors(self.tree.node(best).agent)))
        merged = self._to_merge()
        if merged:
            arms.append(("aggregate", self._aggregate, self._aggregate_prior))
        for kind, beliefs, priors in arms:
            for agent in usable:
                belief = beliefs[agent]
                prior = priors[agent]
                a = prior.a + belief.wins
                b = prior.b + belief.trials + belief.pending - belief.wins
                mean = a / (a + b)
                y = gamma(a, 1.0)
                draw = y / (y + gamma(b, 1.0)) if y else 0.0
                chance = mean + spread * (draw - mean)
                weight = prior.gain_weight + belief.gained
                mean = (prior.gain * prior.gain_weight + belief.gain) / weight
                gain = mean + spread * (gamma(weight, mean / weight) - mean)
                value = (chance if chance > 0.0 else 0.0) * (gain if gain > 0.0 else 0.0)
                if value > top:
                    top, winners = value, [(kind, agent)]
                elif value == top:
                    winners.append((kind, agent))
        kind, agent = winners[0] if len(winners) == 1 else self.rng.choice(winners)
        # A request is the same for every agent that makes it (the fresh one; a refinement of
        # one response; a merge of the same responses, whose texts never change): each is
        # rendered once, and the context encodes the same tuple once.
        requests = self._requests
        if kind == "fresh":
            self._fresh[agent].pending += 1.0
            node_id = self.tree.add_response(self.tree.agent_child(ROOT_ID, agent, "fresh"))
            self._in_flight[node_id] = _InFlight("fresh", agent, ())
            messages = requests.get(())
            if messages is None:
                messages = requests[()] = fresh_messages(self.prompt, self.templates)
            return Play(node_id, agent, messages)
        if kind == "aggregate":
            self._aggregate[agent].pending += 1.0
            arm = self.tree.agent_child(merged[0], agent, "aggregate")
            node_id = self.tree.add_response(arm, parents=merged)
            self._in_flight[node_id] = _InFlight("aggregate", agent, merged)
            key = ("aggregate", *merged)
            messages = requests.get(key)
            if messages is None:
                texts = [self.tree.node(i).text or "" for i in merged]
                messages = aggregate_messages(self.prompt, texts, self.templates)
                requests[key] = messages
            return Play(node_id, agent, messages)
        assert best is not None
        self._refine[agent].pending += 1.0
        node_id = self.tree.add_response(
            self.tree.agent_child(best, agent, "refine"), parents=(best,)
        )
        self._in_flight[node_id] = _InFlight("refine", agent, (best,))
        messages = requests.get(("refine", best))
        if messages is None:
            text = self.tree.node(best).text or ""
            messages = requests["refine", best] = refine_messages(self.prompt, text, self.templates)
        return Play(node_id, agent, messages)

    def finish_play(self, play: Play, score: Score | None) -> None:
        """Record the play's score (None: the generation failed, already on the tree)."""
        flight = self._in_flight.pop(play.node_id)
        fresh = flight.kind == "fresh"
        beliefs = {"fresh": self._fresh, "refine": self._refine, "aggregate": self._aggregate}
        belief = beliefs[flight.kind][flight.agent]
        belief.pending -= 1.0
        if not fresh:
            belief.trials += 1.0
        before = None if self._best is None else self.tree.node(self._best).reward
        q = None
        if score is not None:
            q = record_score(
                self.tree, play.node_id, score, normaliser=self._normaliser, history=self.history
            )
        if q is None:  # failed: a loss for its action, nothing to compare
            if fresh:
                belief.losses += 1.0
            return
        reward = self.tree.node(play.node_id).reward
        assert reward is not None
        if fresh:
            bisect.insort(self._pool, reward)
            self._fresh_rewards[flight.agent].append(reward)
            self._rank_evidence.clear()
            bar = before
        else:
            bars = [self.tree.node(i).reward for i in flight.parents]
            bar = None if None in bars else max(b for b in bars if b is not None)
        if bar is not None and reward > bar:
            belief.wins += 1.0
            spread = self._spread.value()  # of the rewards before this one
            if spread is not None:
                belief.gained += 1.0
                belief.gain += (reward - bar) / spread
        if before is None or reward > before:
            self._best = play.node_id
        self._spread.add(reward)
        bisect.insort(self._ranked, (-reward, play.node_id))

    def _to_merge(self) -> tuple[int, ...]:
        """The responses an aggregate action would merge now: the best few with text (empty
        when aggregation is off or fewer than two are scored)."""
        if not self.config.aggregate:
            return ()
        node = self.tree.node
        ranked: list[int] = []
        for _, i in self._ranked:
            if node(i).text is not None:
                ranked.append(i)
                if len(ranked) == AGGREGATE_WIDTH:
                    break
        return tuple(ranked) if len(ranked) >= 2 else ()

    def _refine_priors(self, parent: str) -> dict[str, Params]:
        """Each refiner's prior for refining a response of `parent`'s (built on first use)."""
        found = self._refine_prior.get(parent)
        if found is None:
            found = self._refine_prior[parent] = {}
            strength = self.config.prior_strength
            for agent in self.tree.agents:
                r = self.prior.refine_belief(agent, parent, strength=strength)
                found[agent] = Params(r.a, r.b, r.gain, r.gain_weight)
        return found

    def _fresh_posterior(self, agent: str, belief: Belief) -> tuple[float, float]:
        found = self._rank_evidence.get(agent) or self._evidence_of(agent)
        return belief.fresh_params(self._fresh_prior[agent], *found)

    def _evidence_of(self, agent: str) -> tuple[float, float]:
        """(weight, weighted -log u) of `agent`'s fresh answers in the pool, kept until the pool
        changes (then recomputed)."""
        answers = log_rank = 0.0
        if len(self._pool) >= 2:  # one answer alone says nothing about its writer
            for reward in self._fresh_rewards[agent]:
                weight, evidence = rank_evidence(reward, self._pool)
                answers += weight
                log_rank += evidence
        found = self._rank_evidence[agent] = (answers, log_rank)
        return found

    def _best_percentile(self) -> float | None:
        """Where the best response stands in the pool of fresh answers, in (0, 1); None: no best.

        ``(fresh answers below it + half of those equal to it + 1/2) / (fresh answers + 1)``: the
        best of n fresh answers stands at n / (n + 1); a refinement above them all a bit higher.
        """
        if self._best is None:
            return None
        best = self.tree.node(self._best).reward
        assert best is not None
        below = bisect.bisect_left(self._pool, best)
        equal = bisect.bisect_right(self._pool, best) - below
        return (below + 0.5 * equal + 0.5) / (len(self._pool) + 1)
