"""The `http` reward: a reward model behind a server (vLLM, text-embeddings-inference, JSON).

Every request goes through `toa.agents.AgentClient.post_json` (replicas, concurrency limit,
timeouts, retries with backoff, circuit breakers). ``base_url`` is the server ROOT (e.g.
``http://127.0.0.1:8000``, no ``/v1``): vLLM serves these endpoints there. Protocols and the
shapes sent and read (vLLM docs: docs/models/pooling_models/{classify,reward,scoring}.md and
vllm/entrypoints/pooling/*/protocol.py; TEI: router/src/http/types.rs):

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
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from toa.agents.client import AgentClient, AgentPool
from toa.agents.spec import (
    AgentSpec,
    BreakerPolicy,
    RetryPolicy,
    check_base_urls,
    check_key_env_name,
)
from toa.errors import AgentError, ConfigError
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
Item = tuple[Prompt, str]
Job = tuple[list[int], dict[str, Any]]  # (indices of the items it carries, request body)

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
_PLACEHOLDER = re.compile(r"\{(prompt|response|responses|model|messages)\}")
_WHOLE_ONLY = frozenset({"responses", "messages"})


class MalformedReply(ValueError):
    """A 2xx reply whose shape is not the one the protocol promises."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Model):
    """Retries of transient failures (see `toa.agents.RetryPolicy`); delays in seconds."""

    max_attempts: int = Field(5, ge=1)
    base_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(120.0, ge=0)

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(**self.model_dump())


class BreakerSettings(_Model):
    """Per-endpoint circuit breaker (see `toa.agents.BreakerPolicy`); times in seconds."""

    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, ge=0)
    max_cooldown_s: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> BreakerSettings:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError("max_cooldown_s must be >= cooldown_s")
        return self

    def to_policy(self) -> BreakerPolicy:
        return BreakerPolicy(**self.model_dump())


class EndpointSettings(_Model):
    """Where a server is and how to call it: replicas, key variable, limits, retries, breaker."""

    name: str = Field("reward", min_length=1)
    base_url: str | list[str]
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_concurrency: int = Field(16, ge=1)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        check_base_urls(value, example="http://127.0.0.1:8000")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        check_key_env_name(value)
        return value

    def to_spec(self) -> AgentSpec:
        """The client settings; ConfigError when `api_key_env` names an unset variable."""
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ConfigError(
                f"{self.name!r}: environment variable {self.api_key_env} (api_key_env) is not set"
            )
        urls = (self.base_url,) if isinstance(self.base_url, str) else tuple(self.base_url)
        return AgentSpec(
            name=self.name,
            base_urls=urls,
            model=self.model or "",
            api_key_env=self.api_key_env,
            max_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            retry=self.retry.to_policy(),
            breaker=self.breaker.to_policy(),
        )


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
            _check_json_settings(self.request_template, self.response_path)
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
        return "responses" in _placeholders(self.request_template)

    def build(self) -> HttpRewardModel:
        """The reward model; it opens its own client pool on first use (`aclose` closes it)."""
        return HttpRewardModel(self)


def _check_json_settings(template: Any, path: str | None) -> None:
    if template is None or not path:
        raise ValueError("protocol 'json' needs request_template and response_path")
    if any(not part for part in path.split(".")):
        raise ValueError(f"response_path {path!r} has an empty segment")
    found = _placeholders(template)
    if not found & {"response", "responses", "messages"}:
        raise ValueError("request_template needs {response}, {responses} or {messages}")
    if "responses" in found and found & {"response", "messages"}:
        raise ValueError("request_template mixes {responses} with {response} / {messages}")


def _placeholders(node: Any) -> set[str]:
    if isinstance(node, str):
        names = set(_PLACEHOLDER.findall(node))
        if names & _WHOLE_ONLY and _PLACEHOLDER.fullmatch(node) is None:
            raise ValueError(f"{{responses}} and {{messages}} must be a whole string: {node!r}")
        return names
    if isinstance(node, Mapping):
        node = list(node.values())
    if isinstance(node, list):
        return set().union(*(_placeholders(v) for v in node)) if node else set()
    return set()


class LazyClient:
    """An `AgentClient` given, or one opened (with its own pool) on first use from a spec."""

    def __init__(self, source: AgentSpec | AgentClient) -> None:
        self.spec = source if isinstance(source, AgentSpec) else source.spec
        self._client = source if isinstance(source, AgentClient) else None
        self._pool: AgentPool | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> AgentClient:
        """The client; opens the owned pool first when needed (ConfigError: missing API key)."""
        async with self._lock:
            if self._client is None:
                pool = AgentPool([self.spec])
                await pool.open()
                self._pool, self._client = pool, pool[self.spec.name]
            return self._client

    async def aclose(self) -> None:
        """Close the owned pool (idempotent); a client that was given is left open."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._client = None
            await pool.close()


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
        jobs = _jobs(self.config, list(items))
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
            values = _parse(self.config, reply, n)
        except MalformedReply as exc:
            return [ScoreFailure(f"{where}: malformed reply: {exc}", "MalformedReply")] * n
        return list(values)


# ------------------------------------------------------------------------------- requests


def _fill(template: str, **values: str) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _conversation(prompt: Prompt, response: str) -> list[dict[str, str]]:
    return [m.to_dict() for m in prompt.messages] + [{"role": "assistant", "content": response}]


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _by_prompt(items: list[Item]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, (prompt, _) in enumerate(items):
        groups.setdefault(prompt.text, []).append(i)
    return list(groups.values())


def _jobs(cfg: HttpRewardConfig, items: list[Item]) -> list[Job]:
    """The requests that carry `items`: (item indices, body), bodies with `extra_body` added."""
    p, fmt, size = cfg.protocol, cfg.resolved_input_format, cfg.max_batch_size
    per_item = fmt == "messages" or (p == "json" and not cfg.batched_json)
    if per_item:
        groups = [[i] for i in range(len(items))]
    elif p in ("tei-rerank", "json"):
        groups = [c for g in _by_prompt(items) for c in _chunks(g, size)]
    else:
        groups = _chunks(list(range(len(items))), size)
    return [(g, {**_body(cfg, [items[i] for i in g]), **cfg.extra_body}) for g in groups]


def _body(cfg: HttpRewardConfig, items: list[Item]) -> dict[str, Any]:
    p = cfg.protocol
    if p == "json":
        return _json_body(cfg, items)
    if p.startswith("tei-"):
        return _tei_body(cfg, items)
    body: dict[str, Any] = {"model": cfg.model} if cfg.model else {}
    if p == "vllm-score":
        prompts = [prompt.text for prompt, _ in items]
        body["text_1"] = prompts[0] if len(set(prompts)) == 1 else prompts
        body["text_2"] = [r for _, r in items]
    elif cfg.resolved_input_format == "messages":
        body["messages"] = _conversation(*items[0])
    else:
        body["input"] = [_fill(cfg.text_template, prompt=pr.text, response=r) for pr, r in items]
    if cfg.pooling_task is not None:
        body["task"] = cfg.pooling_task
    if cfg.use_activation is not None:
        body["use_activation"] = cfg.use_activation
    return body


def _tei_body(cfg: HttpRewardConfig, items: list[Item]) -> dict[str, Any]:
    if cfg.protocol == "tei-rerank":
        texts = [r for _, r in items]
        query = items[0][0].text
        return {"query": query, "texts": texts, "raw_scores": cfg.raw_scores, "return_text": False}
    if cfg.resolved_input_format == "pairs":
        inputs = [[prompt.text, r] for prompt, r in items]
    else:
        inputs = [[_fill(cfg.text_template, prompt=pr.text, response=r)] for pr, r in items]
    return {"inputs": inputs, "raw_scores": cfg.raw_scores}


def _json_body(cfg: HttpRewardConfig, items: list[Item]) -> dict[str, Any]:
    prompt, response = items[0]
    values: dict[str, Any] = {
        "prompt": prompt.text,
        "response": response,
        "responses": [r for _, r in items],
        "model": cfg.model or "",
        "messages": _conversation(prompt, response),
    }
    body: dict[str, Any] = _fill_json(cfg.request_template, values)
    return body


def _fill_json(node: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        if whole is not None:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
    if isinstance(node, Mapping):
        return {k: _fill_json(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_json(v, values) for v in node]
    return node


# -------------------------------------------------------------------------------- replies


def extract_path(data: Any, path: str) -> Any:
    """The value at a dotted `path` in parsed JSON: keys, list indices (digits), and ``*`` for
    every element of a list (``data.*.score`` -> a list). MalformedReply names what is missing."""
    return _walk(data, path.split("."), "")


def _walk(node: Any, parts: list[str], seen: str) -> Any:
    if not parts:
        return node
    head, rest = parts[0], parts[1:]
    here = f"{seen}.{head}" if seen else head
    if head == "*":
        if not isinstance(node, list):
            raise MalformedReply(f"expected a list at {seen or 'the top'}, got {_kind(node)}")
        return [_walk(v, rest, f"{seen}.{i}" if seen else str(i)) for i, v in enumerate(node)]
    if isinstance(node, list) and head.isdigit() and int(head) < len(node):
        return _walk(node[int(head)], rest, here)
    if not isinstance(node, Mapping) or head not in node:
        raise MalformedReply(f"missing {here!r} (found {_kind(node)})")
    return _walk(node[head], rest, here)


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"an object with keys {sorted(value)[:8]}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {str(value)[:40]!r}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise MalformedReply(f"expected a finite number at {where}, got {_kind(value)}")


def _numbers(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise MalformedReply(f"expected a non-empty list of numbers at {where}, got {_kind(value)}")
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _pick(values: list[float], index: int, where: str) -> float:
    if index >= len(values):
        raise MalformedReply(f"{where} has {len(values)} value(s); no label_index {index}")
    return values[index]


def _parse(cfg: HttpRewardConfig, reply: Any, n: int) -> list[float]:
    """One score per response from a 2xx reply; MalformedReply says what was expected."""
    if cfg.protocol == "json":
        return _parse_json(cfg, reply, n)
    if cfg.protocol == "tei-predict":
        if n == 1 and isinstance(reply, list) and reply and isinstance(reply[0], Mapping):
            reply = [reply]  # one input's predictions, unbatched
        if not isinstance(reply, list) or len(reply) != n:
            raise MalformedReply(f"expected a list of {n} prediction list(s); got {_kind(reply)}")
        return [_prediction(cfg.label, preds, f"[{i}]") for i, preds in enumerate(reply)]
    key = None if cfg.protocol == "tei-rerank" else "data"
    field = {"vllm-classify": "probs", "vllm-pooling": "data"}.get(cfg.protocol, "score")
    found = [
        (r.get(field), f"{key or ''}[{i}].{field}") for i, r in enumerate(_results(reply, key, n))
    ]
    if field == "score":
        return [_number(value, where) for value, where in found]
    return [_pooled(cfg, value, where) for value, where in found]


def _results(reply: Any, key: str | None, n: int) -> list[Mapping[str, Any]]:
    """The `n` result objects of a reply (``reply[key]``, or the reply itself), in request order
    by their ``index`` fields when every one has one."""
    if key is not None and not isinstance(reply, Mapping):
        raise MalformedReply(f"expected an object with `{key}`, got {_kind(reply)}")
    items = reply.get(key) if key is not None else reply
    where = f"`{key}`" if key else "the reply"
    if not isinstance(items, list) or len(items) != n:
        raise MalformedReply(f"expected {where} to be a list of {n} result(s); got {_kind(items)}")
    if not all(isinstance(item, Mapping) for item in items):
        raise MalformedReply(f"expected every element of {where} to be an object")
    indices = [item.get("index") for item in items]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        return list(items)
    if sorted(indices) != list(range(n)):
        raise MalformedReply(f"expected indices 0..{n - 1} in {where}, got {indices}")
    return sorted(items, key=lambda item: int(item["index"]))


def _pooled(cfg: HttpRewardConfig, value: Any, where: str) -> float:
    """A number; a list (``[label_index]``); or per-token rows reduced by `token_reduce`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value, where)
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        rows = [_numbers(row, f"{where}[{t}]") for t, row in enumerate(value)]
        if cfg.token_reduce == "last":
            return _pick(rows[-1], cfg.label_index, f"{where}[-1]")
        column = [_pick(row, cfg.label_index, f"{where}[{t}]") for t, row in enumerate(rows)]
        return math.fsum(column) / (1 if cfg.token_reduce == "sum" else len(column))
    return _pick(_numbers(value, where), cfg.label_index, where)


def _prediction(label: str | None, predictions: Any, where: str) -> float:
    if not isinstance(predictions, list) or not all(isinstance(p, Mapping) for p in predictions):
        raise MalformedReply(f"expected {where} to be a list of {{label, score}} objects")
    if label is None:
        if len(predictions) != 1:
            raise MalformedReply(f"{where} has {len(predictions)} labels: set `label` to choose")
        return _number(predictions[0].get("score"), f"{where}[0].score")
    for p in predictions:
        if p.get("label") == label:
            return _number(p.get("score"), f"{where} label {label!r}")
    found = [p.get("label") for p in predictions]
    raise MalformedReply(f"{where} has no label {label!r} (labels: {found})")


def _parse_json(cfg: HttpRewardConfig, reply: Any, n: int) -> list[float]:
    path = cfg.response_path or ""
    value = extract_path(reply, path)
    if not cfg.batched_json:
        return [_number(value[0] if isinstance(value, list) and len(value) == 1 else value, path)]
    if not isinstance(value, list) or len(value) != n:
        raise MalformedReply(f"expected {path!r} to be a list of {n} number(s); got {_kind(value)}")
    return [_number(v, f"{path}[{i}]") for i, v in enumerate(value)]
