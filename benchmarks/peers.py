"""Peer rows: other people's search algorithms run on exactly our generate/score calls and budgets.

`ABMCTSA` adapts SakanaAI's TreeQuest (``pip install 'toa-synth[peers]'``, package `treequest`)
AB-MCTS-A to the `toa.search.Strategy` protocol, so a benchmark can put it beside `TOASearch` and
the baselines: the same `SearchContext`, the same templates, the same budget of generations, the
same `SearchTree` record. (AB-MCTS-M is left out: it fits a PyMC model per step, far too slow.)

    from peers import ABMCTSA, available    # with benchmarks/ on sys.path
    tree = await ABMCTSA().run(prompt, ctx, budget=16, seed=0)

Mapping onto TreeQuest:

* One TreeQuest action per agent (the context's agents at the start of the run, in order). At the
  root (TreeQuest state None) the action's agent writes fresh (`fresh_messages`); below a node it
  refines that node's response (`refine_messages`). A TreeQuest node's state is the id of our
  response node.
* TreeQuest's `step` is synchronous and would call a synchronous generate function; we use its
  own ask/tell split instead (`step` is exactly ``ask``, the generate function, ``tell``): `ask`
  picks the node and action, we `await ctx.generate` and `ctx.score` on the caller's event loop,
  and `tell` hands back the score. No worker thread, no blocking bridge, and no deep copy of the
  whole search state per step (``step(inplace=False)`` makes one).
* Scores given to TreeQuest must lie in [0, 1] (its nodes reject anything else). With
  ``normalisation="auto"`` (the default) a raw reward in [0, 1] is passed as it is: TreeQuest's
  Thompson sampling is built for such scores, and running normalisations would make the same
  reward worth different amounts at different times (the first reward of a running rank is always
  0.5), which its stored per-node observations cannot follow. Rewards in [0, 1] include the
  simulated reward, `verify`, chrF/BLEU scaled to [0, 1] and probability-like reward models. From
  the first raw reward outside [0, 1] on a prompt, that reward and every later one go through the
  prompt's running rank (`normalise_by_rank`, the project's default; preferred to min-max because
  one outlier does not squash every other reward towards 0 or 1). "identity" never switches
  (a reward outside [0, 1] is then clipped), "rank" and "minmax" apply from the first reward.
  The value given to TreeQuest is also the node's `q`, backed up with `back_up` like every
  strategy does, so the tree's statistics are what the search saw.
* A failed generation or score costs its budget unit and is recorded on the tree as a failure
  (never stored as a reward, never ranked), exactly as in our strategies. TreeQuest still needs a
  number for every expansion it asked for, so it is told 0.0, the lowest score there is. If it
  later chooses to refine a node whose generation failed (no text), the request refines the
  nearest TreeQuest ancestor that has text, or writes fresh when there is none.
* Randomness: TreeQuest draws from NumPy's global generator (``np.random.normal`` and SciPy's
  ``rvs`` without a ``random_state``) and takes no seed. Each run keeps its own
  `numpy.random.RandomState`, seeded from sha256 of (seed, prompt id) (`derive_rng`), and swaps
  it in only around TreeQuest's own synchronous calls (ask/tell), restoring the global state
  afterwards. Those calls never yield to the event loop, so concurrent runs on other prompts
  cannot interleave with them; only another *thread* drawing from NumPy's global generator at the
  same instant could. TreeQuest's trial ids (ULIDs) are random but never reach our tree.
* Generations are sequential within a prompt (AB-MCTS-A decides each expansion after seeing the
  previous score); run prompts concurrently for throughput. `prior` is ignored.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from toa.errors import ConfigError
from toa.search import (
    SearchContext,
    SearchTree,
    Templates,
    derive_rng,
    fresh_messages,
    normalise_by_min_max,
    normalise_by_rank,
    refine_messages,
)
from toa.search.context import check_budget
from toa.search.priors import Prior
from toa.search.steps import generate_into, score_into
from toa.search.tree import ROOT_ID
from toa.types import Message, Prompt

if TYPE_CHECKING:
    from treequest.algos.ab_mcts_a.algo import ABMCTSAAlgoState

__all__ = ["ABMCTSA", "Normalisation", "available"]

Normalisation = Literal["auto", "identity", "rank", "minmax"]
_NORMALISATIONS: tuple[Normalisation, ...] = ("auto", "identity", "rank", "minmax")

FAILED_SCORE = 0.0
"""What TreeQuest is told for a failed generation or score: it needs a number, and 0 is the
lowest score in [0, 1]. The tree itself records the failure, never this number."""


def available() -> bool:
    """True when TreeQuest (the `peers` extra) can be imported."""
    return importlib.util.find_spec("treequest") is not None


class _ScoreMap:
    """Raw reward -> TreeQuest score in [0, 1] for one prompt (see the module docstring)."""

    def __init__(self, kind: Normalisation) -> None:
        self.kind = kind
        self.ranking = kind == "rank"

    def __call__(self, reward: float, history: Sequence[float]) -> float:
        if self.kind == "minmax":
            return normalise_by_min_max(reward, history)
        if self.kind == "auto" and not 0.0 <= reward <= 1.0:
            self.ranking = True
        if self.ranking:
            return normalise_by_rank(reward, history)
        return min(1.0, max(0.0, reward))


class _LocalNumpyRandom:
    """Swaps a private RandomState into NumPy's global generator for the duration of a block."""

    def __init__(self, seed: int) -> None:
        import numpy  # a dependency of treequest; imported late so `available()` needs neither

        self._random = numpy.random
        self._state: Any = numpy.random.RandomState(seed).get_state()
        self._saved: Any = None

    def __enter__(self) -> None:
        self._saved = self._random.get_state()
        self._random.set_state(self._state)

    def __exit__(self, *exc: object) -> None:
        self._state = self._random.get_state()
        self._random.set_state(self._saved)


class ABMCTSA:
    """TreeQuest's AB-MCTS-A as a `toa.search.Strategy` (name 'ab-mcts-a'); module docstring.

    Args:
        templates: the task's templates (default: 'instruction').
        dist_type: TreeQuest's belief model, 'gaussian' (its default) or 'beta'.
        normalisation: raw reward -> [0, 1] score: 'auto' (default), 'identity', 'rank', 'minmax'.
    """

    name = "ab-mcts-a"

    def __init__(
        self,
        *,
        templates: Templates | None = None,
        dist_type: Literal["gaussian", "beta"] = "gaussian",
        normalisation: Normalisation = "auto",
    ) -> None:
        if normalisation not in _NORMALISATIONS:
            raise ConfigError(
                f"{self.name}: normalisation must be one of {list(_NORMALISATIONS)}, "
                f"got {normalisation!r}"
            )
        if dist_type not in ("gaussian", "beta"):
            raise ConfigError(f"{self.name}: dist_type must be 'gaussian' or 'beta'")
        self.templates = templates or Templates.for_task("instruction")
        self.dist_type = dist_type
        self.normalisation = normalisation

    def __repr__(self) -> str:
        return (
            f"ABMCTSA(dist_type={self.dist_type!r}, normalisation={self.normalisation!r}, "
            f"task={self.templates.task!r})"
        )

    async def run(
        self,
        prompt: Prompt,
        ctx: SearchContext,
        *,
        budget: int,
        seed: int,
        prior: Prior | None = None,
    ) -> SearchTree:
        """Spend exactly `budget` generations on `prompt` as AB-MCTS-A directs; the whole tree."""
        del prior  # TreeQuest learns nothing across prompts
        check_budget(budget, self.name)
        import treequest  # the optional `peers` extra

        agents = tuple(ctx.agents)
        if not agents:
            raise ConfigError(f"{self.name}: the context has no agents")
        tree = SearchTree.new(
            prompt_id=prompt.id,
            strategy=self.name,
            agents=agents,
            budget=budget,
            seed=seed,
            config={
                "peer": f"treequest {importlib.metadata.version('treequest')} ABMCTSA",
                "dist_type": self.dist_type,
                "normalisation": self.normalisation,
                "templates": self.templates.hashes(),
            },
        )
        algo: treequest.ABMCTSA[int] = treequest.ABMCTSA(dist_type=self.dist_type)
        numpy_rng = _LocalNumpyRandom(derive_rng(seed, prompt.id).getrandbits(32))
        with numpy_rng:
            search: ABMCTSAAlgoState[int] = algo.init_tree()
        score_map = _ScoreMap(self.normalisation)
        history: list[float] = []
        for _ in range(budget):
            with numpy_rng:
                search, trial = algo.ask(search, list(agents))
            node_id = self._expand(tree, trial.action, trial.parent_state)
            if await generate_into(tree, ctx, node_id, self._messages(tree, prompt, node_id)):
                await score_into(
                    tree, ctx, prompt, [node_id], normaliser=score_map, history=history
                )
            q = tree.node(node_id).q
            with numpy_rng:
                algo.tell(search, trial.trial_id, (node_id, FAILED_SCORE if q is None else q))
        return tree

    def _expand(self, tree: SearchTree, agent: str, parent: int | None) -> int:
        """A pending response by `agent`: fresh under the root, or refining `parent`'s text."""
        base = _with_text(tree, parent)
        if base is None:
            return tree.add_response(tree.agent_child(ROOT_ID, agent, "fresh"))
        return tree.add_response(tree.agent_child(base, agent, "refine"), parents=(base,))

    def _messages(self, tree: SearchTree, prompt: Prompt, node_id: int) -> tuple[Message, ...]:
        node = tree.node(node_id)
        if not node.parents:
            return fresh_messages(prompt, self.templates)
        return refine_messages(prompt, tree.node(node.parents[0]).text or "", self.templates)


def _with_text(tree: SearchTree, response: int | None) -> int | None:
    """`response`, or (when its generation failed) the response it was asked to refine, if any.

    A failed response hangs under the response its request refined, which has text (only texts
    are refined), or under the root: one step up is enough; the loop is for clarity.
    """
    while response is not None and tree.node(response).text is None:
        above = tree.node(tree.node(response).parent).parent  # its agent node's parent
        response = None if above == ROOT_ID else above
    return response
