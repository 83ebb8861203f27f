"""Compact JSON for what every call and every prompt writes: request bodies, trees, result lines,
priors.

`dumps` is orjson (a dozen times faster than the standard library on a search tree, measured in
`benchmarks/engine_throughput.py`'s profile; see the changelog), with the standard library as
the fallback for what orjson refuses (integers beyond 64 bits, keys that are not strings), so
that nothing the standard library could write fails here. Read-only mappings (a prompt's
`extra`) are written as objects. The output is UTF-8 with compact separators; floats round-trip.
JSON has no NaN or infinity: orjson writes them as ``null``. What TOA computes is finite by
construction (rewards, margins, latencies); a value from outside (a prompt's row fields, which
the standard library's reader takes with NaN) is checked with `user_data`, and one that holds
NaN or an infinity is written by the standard library, as before, so that nothing is nulled.

Hashed forms (request hashes, prompt hashes) do not use this module: their bytes are pinned,
and they keep the standard library's exact output.

`loads` reads replies: orjson (about four times faster than the standard library on a chat
completion), except where the two could differ. orjson reads an integer beyond 64 bits as a
float, and a reader must not round a number, so a reply holding 19 digits in a row (every such
integer has at least that many) is read by the standard library; so is anything orjson refuses
(``NaN``, ``1e400``, a lone surrogate, UTF-16), with the standard library's own verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["dumps", "dumps_text", "holds_non_finite", "loads"]


_DIGITS = bytes(b"0"[0] if chr(i).isdigit() and i < 128 else b" "[0] for i in range(256))
"""A byte table: every ASCII digit to '0', anything else to a space."""

_LONG_NUMBER = b"0" * 19
"""19 digits in a row (in the `_DIGITS` form): where an integer beyond 64 bits could be (orjson
would read it as a float). A byte table and a substring search: a tenth of a regex's time."""


def loads(data: bytes) -> Any:
    """The JSON value of `data`, exactly as `json.loads` reads it (orjson where it can).

    Raises:
        ValueError: `data` is not JSON (`json.JSONDecodeError` or `UnicodeDecodeError`).
    """
    if _LONG_NUMBER not in data.translate(_DIGITS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library may read it (NaN, 1e400, UTF-16) or says why not
    return json.loads(data)


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


def dumps_text(value: Any, *, sort_keys: bool = False, user_data: Any = None) -> str:
    """`dumps` as a str. `user_data`: the part of `value` that came from outside; when it holds
    NaN or an infinity, the standard library writes the whole value (``NaN``, ``Infinity``)."""
    if user_data is not None and holds_non_finite(user_data):
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), default=_default, sort_keys=sort_keys
        )
    return dumps(value, sort_keys=sort_keys).decode("utf-8")


def holds_non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity is inside `value` (mappings, lists and tuples searched)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(holds_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(holds_non_finite(v) for v in value)
    return False
