"""Steps every strategy shares: make a generation call, score responses, record both on the tree.

One copy of this logic, so that failures are handled the same way everywhere: a failed generation
or score costs its budget unit, is written on its node, and is never scored as 0 nor ranked.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from toa.errors import AgentError, TOAError
from toa.search.context import SearchContext
from toa.search.normalise import Normaliser
from toa.search.tree import SearchTree, back_up
from toa.types import Message, Prompt, Score, ScoreFailure

logger = logging.getLogger(__name__)

Request = tuple[int, Sequence[Message]]
"""(id of the pending response node, the messages to send)."""


async def generate_into(
    tree: SearchTree, ctx: SearchContext, node_id: int, messages: Sequence[Message]
) -> bool:
    """Make the generation for pending response `node_id`; True when it succeeded."""
    agent = tree.node(node_id).agent
    try:
        completion = await ctx.generate(agent, messages, node_id=node_id)
    except AgentError as err:
        logger.info("generation for node %d by %s failed: %s", node_id, agent, err)
        tree.record_generation_failure(node_id, f"{type(err).__name__}: {err}")
        return False
    tree.record_completion(node_id, completion)
    return True


async def generate_all(tree: SearchTree, ctx: SearchContext, requests: Sequence[Request]) -> None:
    """Make several generations concurrently (node ids were allocated in order beforehand)."""
    await asyncio.gather(*(generate_into(tree, ctx, i, m) for i, m in requests))


def record_score(
    tree: SearchTree,
    node_id: int,
    score: Score,
    *,
    normaliser: Normaliser,
    history: list[float],
) -> float | None:
    """Record one score; on success normalise, back up and return q, else return None.

    `history` (raw rewards scored earlier on this prompt) gets the new reward appended.
    """
    if isinstance(score, ScoreFailure):
        kind = f"{score.error_type}: " if score.error_type else ""
        tree.record_reward_failure(node_id, f"{kind}{score.message}")
        return None
    reward = float(score)
    if not math.isfinite(reward):
        tree.record_reward_failure(node_id, f"reward is not a finite number: {reward!r}")
        return None
    q = normaliser(reward, history)
    history.append(reward)
    tree.record_reward(node_id, reward, q)
    back_up(tree, node_id, q)
    return q


async def score_into(
    tree: SearchTree,
    ctx: SearchContext,
    prompt: Prompt,
    node_ids: Sequence[int],
    *,
    normaliser: Normaliser,
    history: list[float],
) -> None:
    """Score the generated responses among `node_ids` in one call and record each result."""
    ids = [i for i in node_ids if tree.node(i).text is not None]
    if not ids:
        return
    texts = [tree.node(i).text or "" for i in ids]
    scores = await ctx.score(prompt, texts, node_ids=ids)
    if len(scores) != len(ids):
        raise TOAError(
            f"the context returned {len(scores)} scores for {len(ids)} responses; "
            "SearchContext.score must return exactly one per response"
        )
    for node_id, score in zip(ids, scores, strict=True):
        record_score(tree, node_id, score, normaliser=normaliser, history=history)
