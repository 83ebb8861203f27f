"""How a configuration error is described: each problem with its file, line and field path.

Used by `toa.config.build`: pydantic's validation errors become one readable message per problem,
with the YAML line of the field and, for an unknown field, the fields allowed there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from toa.config.rewards import RewardConfig

__all__ = ["describe", "line_of"]


def describe(
    exc: ValidationError, source: str, node: yaml.Node | None, root: type[BaseModel]
) -> str:
    """One line per problem: where (file:line), the field path, and what is wrong."""
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration:"]
    for err in exc.errors():
        path = [part for part in err["loc"] if not _is_union_tag(part)]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path.append("type")  # the discriminator is what is wrong
        loc = ".".join(str(part) for part in path)
        line = line_of(node, path)
        where = f"{source}:{line}" if line else source
        message = err["msg"]
        if err["type"] == "union_tag_not_found":  # the only tagged union: the reward kinds
            message = f"missing; one of: {', '.join(sorted(_REWARD_MODELS))}"
        elif err["type"] == "extra_forbidden":
            allowed = _fields_at(err["loc"][:-1], root)
            if allowed:
                message += f"; the fields here are: {', '.join(allowed)}"
        lines.append(f"  {where}: {loc or '(top level)'}: {message}")
    lines.append("examples/config.yaml shows every field with its allowed values.")
    return "\n".join(lines)


def _reward_models() -> dict[str, type[BaseModel]]:
    """Reward config classes by their `type` tag (the members of `RewardConfig`)."""
    union = get_args(RewardConfig)[0]
    models: dict[str, type[BaseModel]] = {}
    for member in get_args(union):
        tag = get_args(member.model_fields["type"].annotation)[0]
        models[str(tag)] = member
    return models


_REWARD_MODELS = _reward_models()


def _is_union_tag(part: object) -> bool:
    """Parts pydantic adds to an error location for union members, not in the YAML."""
    return part in _REWARD_MODELS or part in ("str", "list[str]")


def _fields_at(loc: Sequence[int | str], root: type[BaseModel]) -> list[str] | None:
    """The field names of the section at `loc` under `root` (None when it is not known)."""
    model: type[BaseModel] = root
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(part, str) and part in _REWARD_MODELS:
            model = _REWARD_MODELS[part]
            continue
        if _is_union_tag(part):
            continue
        info = model.model_fields.get(part)
        found = _model_in(info.annotation) if info is not None else None
        if found is None:
            return None
        model = found
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class in a field's annotation (`X`, `list[X]`, `X | None`), if any."""
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation if issubclass(annotation, BaseModel) else None
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the deepest YAML node on the path `loc` (None without a node)."""
    found: int | None = None
    for part in loc:
        if node is None:
            break
        found = node.start_mark.line + 1
        node = _child(node, part)
    if node is not None:
        found = node.start_mark.line + 1
    return found


def _child(node: yaml.Node, part: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None
