"""TOA: tree search over agents (strategy 'toa'), with either of its two rules.

`TOASearch.run` builds the rule's synchronous core (`new_state`: `toa.search.ucb.TOAState` for
the paper's UCB, `toa.search.bayes.BayesState` for the Bayesian rule, the default) and drives it
against a `SearchContext` with up to `parallel_plays` plays in flight: start a play, generate,
score, finish it, until the budget is spent. The settings live in `toa.search.plays`.
"""

from __future__ import annotations

import asyncio

from toa.errors import TOAError
from toa.search.bayes import BayesState
from toa.search.context import SearchContext, check_budget
from toa.search.plays import (
    BAYES_SETTINGS,
    RULES,
    UCB_SETTINGS,
    Play,
    PlayState,
    Rule,
    TOAConfig,
)
from toa.search.priors import Prior
from toa.search.steps import generate_into
from toa.search.templates import Templates
from toa.search.tree import SearchTree
from toa.search.ucb import TOAState
from toa.types import Prompt

__all__ = [
    "BAYES_SETTINGS",
    "RULES",
    "UCB_SETTINGS",
    "Play",
    "PlayState",
    "Rule",
    "TOAConfig",
    "TOASearch",
    "TOAState",
    "new_state",
    "run_play",
]


def new_state(
    prompt: Prompt,
    agents: tuple[str, ...],
    *,
    config: TOAConfig,
    budget: int,
    seed: int,
    templates: Templates,
    prior: Prior | None = None,
) -> PlayState:
    """The search core for `config.rule`: `BayesState` ('bayes', from `prior`) or `TOAState`."""
    if config.rule == "bayes":
        return BayesState(
            prompt,
            agents,
            config=config,
            budget=budget,
            seed=seed,
            templates=templates,
            prior=prior,
        )
    return TOAState(prompt, agents, config=config, budget=budget, seed=seed, templates=templates)


async def run_play(state: PlayState, ctx: SearchContext, play: Play) -> None:
    """Generate and score one play, then hand the result to `state.finish_play`."""
    if not await generate_into(state.tree, ctx, play.node_id, play.messages):
        state.finish_play(play, None)
        return
    text = state.tree.node(play.node_id).text or ""
    scores = await ctx.score(state.prompt, [text], node_ids=[play.node_id])
    if len(scores) != 1:
        raise TOAError(f"the context returned {len(scores)} scores for 1 response")
    state.finish_play(play, scores[0])


class TOASearch:
    """The TOA strategy (name 'toa'): `budget` plays of tree search over the context's agents.

    Exactly `budget` generations are made; failed ones cost their unit and are recorded. With
    rule 'bayes', `run`'s `prior` (what earlier prompts taught) seeds the beliefs; rule 'ucb'
    ignores it.
    """

    name = "toa"

    def __init__(self, config: TOAConfig | None = None, *, templates: Templates | None = None):
        self.config = config or TOAConfig()
        self.templates = templates or Templates.for_task("instruction")

    def __repr__(self) -> str:
        return f"TOASearch({self.config!r}, task={self.templates.task!r})"

    async def run(
        self,
        prompt: Prompt,
        ctx: SearchContext,
        *,
        budget: int,
        seed: int,
        prior: Prior | None = None,
    ) -> SearchTree:
        """Search `prompt` with `budget` plays; returns the whole tree."""
        check_budget(budget, self.name)
        state = new_state(
            prompt,
            tuple(ctx.agents),
            config=self.config,
            budget=budget,
            seed=seed,
            templates=self.templates,
            prior=prior,
        )
        workers = min(self.config.parallel_plays, budget)
        if workers == 1:
            await _play_until_done(state, ctx)
            return state.tree
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(_play_until_done(state, ctx))
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from errors
        return state.tree


async def _play_until_done(state: PlayState, ctx: SearchContext) -> None:
    while not state.done:
        await run_play(state, ctx, state.start_play(ctx.is_available))
