"""Request bodies and reply parsing for each protocol of the `http` reward.

The request and reply shapes of each protocol are listed in `toa.rewards.http`'s docstring; they
follow the vLLM docs (docs/models/pooling_models/{classify,reward,scoring}.md and
vllm/entrypoints/pooling/*/protocol.py) and TEI's router/src/http/types.rs.

`build_jobs` groups the items (prompt, response) of one call into requests: one request per item
for ``messages`` inputs and for a json template without ``{responses}``; one per prompt (split in
``max_batch_size`` chunks) for tei-rerank and a json template with ``{responses}``; otherwise
``max_batch_size`` chunks of the items in order. ``extra_body`` is added to every body.

`parse_reply` reads one score per item from a 2xx reply: results that carry ``index`` fields are
put back in request order, and a reply of the wrong length, with a missing field or a value that
is not a finite number raises `MalformedReply` saying what was expected where. `extract_path`
reads the json protocol's ``response_path``. `build_jobs` and `parse_reply` read the plain
`toa.rewards.http_settings.HttpRewardSettings`, which also checks a ``request_template``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from toa.rewards.http_settings import PLACEHOLDER, HttpRewardSettings
from toa.types import Prompt

__all__ = [
    "Item",
    "Job",
    "MalformedReply",
    "build_jobs",
    "extract_path",
    "parse_reply",
]

Item = tuple[Prompt, str]
Job = tuple[list[int], dict[str, Any]]  # (indices of the items it carries, request body)


class MalformedReply(ValueError):
    """A 2xx reply whose shape is not the one the protocol promises."""


# ------------------------------------------------------------------------------- requests


def _fill(template: str, **values: str) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _conversation(prompt: Prompt, response: str) -> list[dict[str, str]]:
    return [m.to_dict() for m in prompt.messages] + [{"role": "assistant", "content": response}]


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _by_prompt(items: list[Item]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, (prompt, _) in enumerate(items):
        groups.setdefault(prompt.text, []).append(i)
    return list(groups.values())


def build_jobs(cfg: HttpRewardSettings, items: list[Item]) -> list[Job]:
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


def _body(cfg: HttpRewardSettings, items: list[Item]) -> dict[str, Any]:
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


def _tei_body(cfg: HttpRewardSettings, items: list[Item]) -> dict[str, Any]:
    if cfg.protocol == "tei-rerank":
        texts = [r for _, r in items]
        query = items[0][0].text
        return {"query": query, "texts": texts, "raw_scores": cfg.raw_scores, "return_text": False}
    if cfg.resolved_input_format == "pairs":
        inputs = [[prompt.text, r] for prompt, r in items]
    else:
        inputs = [[_fill(cfg.text_template, prompt=pr.text, response=r)] for pr, r in items]
    return {"inputs": inputs, "raw_scores": cfg.raw_scores}


def _json_body(cfg: HttpRewardSettings, items: list[Item]) -> dict[str, Any]:
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
        whole = PLACEHOLDER.fullmatch(node)
        if whole is not None:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
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


def parse_reply(cfg: HttpRewardSettings, reply: Any, n: int) -> list[float]:
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


def _pooled(cfg: HttpRewardSettings, value: Any, where: str) -> float:
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


def _parse_json(cfg: HttpRewardSettings, reply: Any, n: int) -> list[float]:
    path = cfg.response_path or ""
    value = extract_path(reply, path)
    if not cfg.batched_json:
        return [_number(value[0] if isinstance(value, list) and len(value) == 1 else value, path)]
    if not isinstance(value, list) or len(value) != n:
        raise MalformedReply(f"expected {path!r} to be a list of {n} number(s); got {_kind(value)}")
    return [_number(v, f"{path}[{i}]") for i, v in enumerate(value)]
