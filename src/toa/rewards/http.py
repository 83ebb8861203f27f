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
naming the cause; never a made-up score. The server settings this config extends
(`EndpointSettings`, retries, circuit breaker) and `LazyClient` are in `toa.rewards.endpoint`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from toa.agents.client import AgentClient
from toa.errors import AgentError
from toa.rewards.endpoint import BreakerSettings, EndpointSettings, LazyClient, RetrySettings
from toa.rewards.shapes import (
    Item,
    MalformedReply,
    build_jobs,
    check_json_settings,
    extract_path,
    parse_reply,
    template_placeholders,
)
from toa.types import Prompt, Score, ScoreFailure

__all__ = [
    "BreakerSettings",
    "EndpointSettings",
    "HttpProtocol",
    "HttpRewardConfig",
    "HttpRewardModel",
    "LazyClient",
    "MalformedReply",
    "RetrySettings",
    "extract_path",
]

HttpProtocol = Literal[
    "vllm-classify", "vllm-pooling", "vllm-score", "tei-predict", "tei-rerank", "json"
]

DEFAULT_PATHS: Mapping[str, str] = {
    "vllm-classify": "/classify",
    "vllm-pooling": "/pooling",
    "vllm-score": "/score",
    "tei-predict": "/predict",
    "tei-rerank": "/rerank",
    "json": "",
}
_INPUT_FORMATS: Mapping[str, tuple[str, ...]] = {  # the first one is the default
    "vllm-classify": ("text", "messages"),
    "vllm-pooling": ("messages", "text"),
    "tei-predict": ("pairs", "text"),
}
_ONLY_FOR: Mapping[str, frozenset[str]] = {
    "input_format": frozenset(_INPUT_FORMATS),
    "text_template": frozenset({"vllm-classify", "vllm-pooling", "tei-predict"}),
    "label_index": frozenset({"vllm-classify", "vllm-pooling"}),
    "label": frozenset({"tei-predict"}),
    "token_reduce": frozenset({"vllm-pooling"}),
    "pooling_task": frozenset({"vllm-pooling"}),
    "use_activation": frozenset({"vllm-classify", "vllm-pooling", "vllm-score"}),
    "raw_scores": frozenset({"tei-predict", "tei-rerank"}),
    "request_template": frozenset({"json"}),
    "response_path": frozenset({"json"}),
}


class HttpRewardConfig(EndpointSettings):
    """The `http` reward (module docstring). Fields that do not apply to `protocol` are refused.

    Attributes:
        path: the endpoint path, appended to each base URL; the protocol's default when None.
        max_batch_size: responses per request at most (>= 1; TEI's default client limit is 32).
        input_format: 'text' | 'messages' (vLLM classify / pooling), 'pairs' | 'text' (TEI predict).
        text_template: text inputs, with ``{prompt}`` and ``{response}``.
        label_index: which class probability / output column is the score (>= 0).
        label: tei-predict: the label whose score is the score.
        token_reduce: vllm-pooling per-token outputs: 'last' token, 'sum' or 'mean' over tokens.
        pooling_task: vllm-pooling ``task`` field (e.g. 'classify', 'token_classify').
        use_activation: vLLM ``use_activation`` (False: raw logits); not sent when None.
        raw_scores: TEI ``raw_scores`` (True: logits rather than sigmoid/softmax scores).
        request_template / response_path: json protocol only (module docstring).
        extra_body: fields added to every request body (e.g. ``truncate_prompt_tokens``).
    """

    type: Literal["http"] = "http"
    protocol: HttpProtocol
    path: str | None = None
    max_batch_size: int = Field(32, ge=1)
    input_format: Literal["text", "messages", "pairs"] | None = None
    text_template: str = "{prompt}\n\n{response}"
    label_index: int = Field(0, ge=0)
    label: str | None = None
    token_reduce: Literal["last", "sum", "mean"] = "last"
    pooling_task: str | None = None
    use_activation: bool | None = None
    raw_scores: bool = False
    request_template: dict[str, Any] | None = None
    response_path: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _coherent(self) -> HttpRewardConfig:
        for name in sorted(self.model_fields_set & _ONLY_FOR.keys()):
            if self.protocol not in _ONLY_FOR[name]:
                allowed = ", ".join(sorted(_ONLY_FOR[name]))
                raise ValueError(f"{name} does not apply to protocol {self.protocol!r} ({allowed})")
        allowed_formats = _INPUT_FORMATS.get(self.protocol, ())
        if self.input_format is not None and self.input_format not in allowed_formats:
            raise ValueError(f"input_format for {self.protocol!r} must be one of {allowed_formats}")
        if "{response}" not in self.text_template:
            raise ValueError("text_template must contain {response}")
        if self.path is not None and self.path and not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.protocol == "json":
            check_json_settings(self.request_template, self.response_path)
        return self

    @property
    def resolved_path(self) -> str:
        return DEFAULT_PATHS[self.protocol] if self.path is None else self.path

    @property
    def resolved_input_format(self) -> str | None:
        formats = _INPUT_FORMATS.get(self.protocol)
        return self.input_format or (formats[0] if formats else None)

    @property
    def batched_json(self) -> bool:
        """json protocol: the template carries ``{responses}`` (one request per prompt)."""
        return "responses" in template_placeholders(self.request_template)

    def build(self) -> HttpRewardModel:
        """The reward model; it opens its own client pool on first use (`aclose` closes it)."""
        return HttpRewardModel(self)


class HttpRewardModel:
    """Scores responses through a reward server (module docstring). One instance per run."""

    def __init__(self, config: HttpRewardConfig, *, client: AgentClient | None = None) -> None:
        self.config = config
        self.name = config.name
        self._handle = LazyClient(client if client is not None else config.to_spec())
        self._path = config.resolved_path

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        """One raw score or `ScoreFailure` per response, in order (any number of responses)."""
        return await self.score_batch([(prompt, r) for r in responses])

    async def score_batch(self, items: Sequence[Item]) -> list[Score]:
        """Like `score`, for responses to many prompts (what `BatchingReward` sends)."""
        if not items:
            return []
        client = await self._handle.get()
        jobs = build_jobs(self.config, list(items))
        parts = await asyncio.gather(*(self._run(client, body, len(idx)) for idx, body in jobs))
        scores: dict[int, Score] = {}
        for (indices, _), part in zip(jobs, parts, strict=True):
            scores.update(zip(indices, part, strict=True))
        return [scores[i] for i in range(len(items))]

    async def aclose(self) -> None:
        await self._handle.aclose()

    async def _run(self, client: AgentClient, body: dict[str, Any], n: int) -> list[Score]:
        where = f"reward {self.name!r} ({self.config.protocol}, POST {self._path or '/'})"
        try:
            reply = await client.post_json(self._path, body)
        except AgentError as exc:
            return [ScoreFailure(f"{where}: request failed: {exc}", type(exc).__name__)] * n
        try:
            values = parse_reply(self.config, reply, n)
        except MalformedReply as exc:
            return [ScoreFailure(f"{where}: malformed reply: {exc}", "MalformedReply")] * n
        return list(values)
