"""What the `http` reward sends and reads, as plain settings: `HttpRewardSettings`.

The protocols (`HttpProtocol`) and their request and reply shapes are described in
`toa.rewards.http`'s docstring. This module holds what is known about them before any request:
each protocol's default path (`DEFAULT_PATHS`) and input formats (`INPUT_FORMATS`), which
settings apply to which protocols (`ONLY_FOR`, checked by `check_applicable`), and the checks of a
json protocol's ``request_template`` (`template_placeholders`, `check_json_settings`). It imports
nothing of the reward's own, so `toa.rewards.shapes` (bodies and replies) and `toa.rewards.http`
(the model) both build on it. The YAML side (`toa.config.rewards.HttpRewardConfig`) validates a
configuration into these settings.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_PATHS",
    "INPUT_FORMATS",
    "ONLY_FOR",
    "PLACEHOLDER",
    "HttpInputFormat",
    "HttpProtocol",
    "HttpRewardSettings",
    "TokenReduce",
    "check_applicable",
    "check_json_settings",
    "template_placeholders",
]

HttpProtocol = Literal[
    "vllm-classify", "vllm-pooling", "vllm-score", "tei-predict", "tei-rerank", "json"
]
HttpInputFormat = Literal["text", "messages", "pairs"]
TokenReduce = Literal["last", "sum", "mean"]

DEFAULT_PATHS: Mapping[str, str] = {
    "vllm-classify": "/classify",
    "vllm-pooling": "/pooling",
    "vllm-score": "/score",
    "tei-predict": "/predict",
    "tei-rerank": "/rerank",
    "json": "",
}
INPUT_FORMATS: Mapping[str, tuple[str, ...]] = {  # the first one is the default
    "vllm-classify": ("text", "messages"),
    "vllm-pooling": ("messages", "text"),
    "tei-predict": ("pairs", "text"),
}
ONLY_FOR: Mapping[str, frozenset[str]] = {
    "input_format": frozenset(INPUT_FORMATS),
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
"""The settings that apply to some protocols only, with those protocols."""

PLACEHOLDER = re.compile(r"\{(prompt|response|responses|model|messages)\}")
_WHOLE_ONLY = frozenset({"responses", "messages"})


def check_applicable(protocol: str, given: Collection[str]) -> None:
    """ValueError when a setting named in `given` does not apply to `protocol` (`ONLY_FOR`)."""
    for name in sorted(set(given) & ONLY_FOR.keys()):
        if protocol not in ONLY_FOR[name]:
            allowed = ", ".join(sorted(ONLY_FOR[name]))
            raise ValueError(f"{name} does not apply to protocol {protocol!r} ({allowed})")


def check_json_settings(template: Any, path: str | None) -> None:
    """ValueError unless the json protocol's `template` and `path` are usable together."""
    if template is None or not path:
        raise ValueError("protocol 'json' needs request_template and response_path")
    if any(not part for part in path.split(".")):
        raise ValueError(f"response_path {path!r} has an empty segment")
    found = template_placeholders(template)
    if not found & {"response", "responses", "messages"}:
        raise ValueError("request_template needs {response}, {responses} or {messages}")
    if "responses" in found and found & {"response", "messages"}:
        raise ValueError("request_template mixes {responses} with {response} / {messages}")


def template_placeholders(node: Any) -> set[str]:
    """The placeholder names in a template's strings; ValueError when ``{responses}`` or
    ``{messages}`` is part of a longer string."""
    if isinstance(node, str):
        names = set(PLACEHOLDER.findall(node))
        if names & _WHOLE_ONLY and PLACEHOLDER.fullmatch(node) is None:
            raise ValueError(f"{{responses}} and {{messages}} must be a whole string: {node!r}")
        return names
    if isinstance(node, Mapping):
        node = list(node.values())
    if isinstance(node, list):
        return set().union(*(template_placeholders(v) for v in node)) if node else set()
    return set()


@dataclass(frozen=True, slots=True)
class HttpRewardSettings:
    """How the `http` reward talks to its server (see `toa.rewards.http`'s docstring).

    Construction checks the settings against each other (ValueError says what is wrong); which
    fields a YAML configuration may set for a protocol is checked by `check_applicable`.

    Attributes:
        protocol: the server's protocol (`HttpProtocol`).
        path: the endpoint path, appended to each base URL; the protocol's default when None.
        model: the ``model`` field of vLLM requests (and ``{model}`` of a json template).
        max_batch_size: responses per request at most (>= 1; TEI's default client limit is 32).
        input_format: 'text' | 'messages' (vLLM classify / pooling), 'pairs' | 'text' (TEI predict).
        text_template: text inputs, with ``{prompt}`` and ``{response}``.
        label_index: which class probability / output column is the score (>= 0).
        label: tei-predict: the label whose score is the score.
        token_reduce: vllm-pooling per-token outputs: 'last' token, 'sum' or 'mean' over tokens.
        pooling_task: vllm-pooling ``task`` field (e.g. 'classify', 'token_classify').
        use_activation: vLLM ``use_activation`` (False: raw logits); not sent when None.
        raw_scores: TEI ``raw_scores`` (True: logits rather than sigmoid/softmax scores).
        request_template / response_path: json protocol only (`toa.rewards.http`).
        extra_body: fields added to every request body (e.g. ``truncate_prompt_tokens``).
    """

    protocol: HttpProtocol
    path: str | None = None
    model: str | None = None
    max_batch_size: int = 32
    input_format: HttpInputFormat | None = None
    text_template: str = "{prompt}\n\n{response}"
    label_index: int = 0
    label: str | None = None
    token_reduce: TokenReduce = "last"
    pooling_task: str | None = None
    use_activation: bool | None = None
    raw_scores: bool = False
    request_template: Mapping[str, Any] | None = None
    response_path: str | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.protocol not in DEFAULT_PATHS:
            raise ValueError(f"protocol must be one of {sorted(DEFAULT_PATHS)}: {self.protocol!r}")
        if self.max_batch_size < 1 or self.label_index < 0:
            raise ValueError(
                f"max_batch_size must be >= 1 and label_index >= 0: "
                f"{self.max_batch_size}, {self.label_index}"
            )
        allowed_formats = INPUT_FORMATS.get(self.protocol, ())
        if self.input_format is not None and self.input_format not in allowed_formats:
            raise ValueError(f"input_format for {self.protocol!r} must be one of {allowed_formats}")
        if "{response}" not in self.text_template:
            raise ValueError("text_template must contain {response}")
        if self.path is not None and self.path and not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.protocol == "json":
            check_json_settings(self.request_template, self.response_path)

    @property
    def resolved_path(self) -> str:
        """The path requests go to: `path`, or the protocol's default."""
        return DEFAULT_PATHS[self.protocol] if self.path is None else self.path

    @property
    def resolved_input_format(self) -> str | None:
        """`input_format`, or the protocol's default (None where the protocol has no choice)."""
        formats = INPUT_FORMATS.get(self.protocol)
        return self.input_format or (formats[0] if formats else None)

    @property
    def batched_json(self) -> bool:
        """json protocol: the template carries ``{responses}`` (one request per prompt)."""
        return "responses" in template_placeholders(self.request_template)
