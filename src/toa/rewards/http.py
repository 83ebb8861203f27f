"""The `http` reward: a reward model behind a server (vLLM, text-embeddings-inference, JSON).

Every request goes through `toa.agents.AgentClient.post_json` (replicas, concurrency limit,
timeouts, retries with backoff, circuit breakers). ``base_url`` is the server ROOT (e.g.
``http://127.0.0.1:8000``, no ``/v1``): vLLM serves these endpoints there. Protocols and the
shapes sent and read (built and parsed in `toa.rewards.shapes`, with the sources):

* ``vllm-classify`` ``POST /classify``: ``{"model", "input": [text, ...]}`` (or, with
  ``input_format: messages``, one ``{"model", "messages": [...]}`` per response) ->
  ``{"data": [{"index", "label", "probs": [p0, p1, ...], "num_classes"}]}``; the score is
  ``probs[label_index]``.
* ``vllm-pooling`` ``POST /pooling`` (reward models): one ``{"model", "messages": [prompt
  messages..., {"role": "assistant", "content": response}]}`` per response (the server applies
  the model's chat template), or ``{"model", "input": [text, ...]}`` -> ``{"data": [{"index",
  "data": [...]}]}``. ``data`` is a number list (sequence reward: the score is
  ``data[label_index]``) or a per-token list of lists (token rewards: the token rows are reduced
  by ``token_reduce``, 'last' by default, then ``[label_index]``).
* ``vllm-score`` ``POST /score``: ``{"model", "text_1": prompt, "text_2": [responses]}``
  (``text_1`` a list, zipped, when a batch mixes prompts) -> ``{"data": [{"index", "score"}]}``.
  ``text_1``/``text_2`` are accepted by every vLLM version with ``/score``.
* ``tei-predict`` ``POST /predict``: ``{"inputs": [[prompt, response], ...], "raw_scores"}`` (or
  ``[[text], ...]``) -> ``[[{"label", "score"}, ...], ...]``; the score is that of ``label``, or
  the only prediction when ``label`` is unset.
* ``tei-rerank`` ``POST /rerank``: ``{"query": prompt, "texts": [responses], "raw_scores",
  "return_text": false}`` -> ``[{"index", "score"}, ...]`` in any order.
* ``json`` ``POST path`` (default: the base URL itself): ``request_template`` is a JSON object
  whose strings may hold ``{prompt}``, ``{response}``, ``{model}``; a string that is exactly
  ``"{responses}"`` becomes the list of responses (one request per prompt), exactly
  ``"{messages}"`` the conversation ending with the response. ``response_path`` (`extract_path`)
  finds the scores: one number per request, or a list of one number per response with
  ``{responses}``.

The prompt text is the prompt's last user message; ``text_template`` (``{prompt}``,
``{response}``) builds text inputs. Responses of one call go in one request where the protocol
allows (``max_batch_size`` at most; larger calls are split into concurrent requests), so the model
composes with `toa.rewards.batching.BatchingReward` (`score_batch` takes items of many prompts).
Failures: a request that failed after the client's retries, and a reply that is malformed (wrong
length, missing field, not a finite number), give each response it carried a `ScoreFailure`
naming the cause; never a made-up score.

`HttpRewardModel` runs on plain settings: the server as a `toa.agents.AgentSpec` (replicas, API key
variable, timeout, concurrency limit, retries, circuit breaker; its name is the reward's name) and
the protocol's `HttpRewardSettings` (`toa.rewards.http_settings`). The YAML side,
``reward: {type: http, ...}``, is `toa.config.rewards.HttpRewardConfig`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from toa.agents.client import AgentClient
from toa.agents.spec import AgentSpec
from toa.errors import AgentError
from toa.rewards.endpoint import LazyClient
from toa.rewards.http_settings import HttpProtocol, HttpRewardSettings
from toa.rewards.shapes import Item, MalformedReply, build_jobs, extract_path, parse_reply
from toa.types import Prompt, Score, ScoreFailure

__all__ = [
    "HttpProtocol",
    "HttpRewardModel",
    "HttpRewardSettings",
    "MalformedReply",
    "extract_path",
]


class HttpRewardModel:
    """Scores responses through a reward server (module docstring). One instance per run.

    Args:
        settings: what to send and how to read the replies.
        server: the server: a spec (a pool is opened on first use, closed by `aclose`) or a
            client to share; its name is the reward's name.
    """

    def __init__(self, settings: HttpRewardSettings, server: AgentSpec | AgentClient) -> None:
        self.settings = settings
        self._handle = LazyClient(server)
        self.name = self._handle.spec.name
        self._path = settings.resolved_path

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        """One raw score or `ScoreFailure` per response, in order (any number of responses)."""
        return await self.score_batch([(prompt, r) for r in responses])

    async def score_batch(self, items: Sequence[Item]) -> list[Score]:
        """Like `score`, for responses to many prompts (what `BatchingReward` sends)."""
        if not items:
            return []
        client = await self._handle.get()
        jobs = build_jobs(self.settings, list(items))
        parts = await asyncio.gather(*(self._run(client, body, len(idx)) for idx, body in jobs))
        scores: dict[int, Score] = {}
        for (indices, _), part in zip(jobs, parts, strict=True):
            scores.update(zip(indices, part, strict=True))
        return [scores[i] for i in range(len(items))]

    async def aclose(self) -> None:
        await self._handle.aclose()

    async def _run(self, client: AgentClient, body: dict[str, Any], n: int) -> list[Score]:
        where = f"reward {self.name!r} ({self.settings.protocol}, POST {self._path or '/'})"
        try:
            reply = await client.post_json(self._path, body)
        except AgentError as exc:
            return [ScoreFailure(f"{where}: request failed: {exc}", type(exc).__name__)] * n
        try:
            values = parse_reply(self.settings, reply, n)
        except MalformedReply as exc:
            return [ScoreFailure(f"{where}: malformed reply: {exc}", "MalformedReply")] * n
        return list(values)
