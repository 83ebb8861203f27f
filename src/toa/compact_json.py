"""Compact JSON for what every call and every prompt writes: request bodies, trees, result lines,
priors.

`dumps` is orjson (a dozen times faster than the standard library on a search tree, measured in
`benchmarks/engine_throughput.py`'s profile; see the changelog), with the standard library as
the fallback for what orjson refuses (integers beyond 64 bits, keys that are not strings), so
that nothing the standard library could write fails here. Read-only mappings (a prompt's
`extra`) are written as objects. The output is UTF-8 with compact separators; floats round-trip.
JSON has no NaN or infinity: orjson writes them as ``null`` (the records never hold one: rewards,
margins and latencies are finite by construction).

Hashed forms (request hashes, prompt hashes) do not use this module: their bytes are pinned,
and they keep the standard library's exact output. Replies are read by the standard library:
orjson reads an integer beyond 64 bits as a float, and a reader must not round a number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["dumps", "dumps_text"]


def _default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """`value` as compact UTF-8 JSON bytes (object keys sorted with `sort_keys`)."""
    try:
        return orjson.dumps(
            value, default=_default, option=orjson.OPT_SORT_KEYS if sort_keys else 0
        )
    except TypeError:  # orjson's limits (huge integers, non-string keys): the standard library
        text = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), default=_default, sort_keys=sort_keys
        )
        return text.encode("utf-8")


def dumps_text(value: Any, *, sort_keys: bool = False) -> str:
    """`dumps` as a str."""
    return dumps(value, sort_keys=sort_keys).decode("utf-8")
