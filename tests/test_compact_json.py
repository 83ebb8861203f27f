"""`toa.compact_json`: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toa import compact_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_dumps_reads_back_as_the_standard_library_writes(value: Any) -> None:
    written = compact_json.dumps(value)
    assert json.loads(written) == json.loads(json.dumps(value))


@given(st.dictionaries(st.text(), st.integers(), max_size=5))
def test_sorted_keys_come_sorted(value: dict[str, int]) -> None:
    text = compact_json.dumps_text(value, sort_keys=True)
    assert list(json.loads(text)) == sorted(value)
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    assert compact_json.dumps({1: "a"}) == b'{"1":"a"}'  # a key that is not a string
    assert compact_json.dumps([2**70]) == b"[1180591620717411303424]"  # beyond 64 bits
    assert compact_json.dumps({"extra": MappingProxyType({"gold": 4})}) == b'{"extra":{"gold":4}}'
    assert compact_json.dumps_text({"é": "ü"}) == '{"é":"ü"}'  # UTF-8 as is


def test_a_nan_from_outside_is_kept_not_nulled() -> None:
    row = {"id": "p1", "extra": {"score": float("nan"), "ok": [1.5]}, "best": None}
    line = compact_json.dumps_text(row, user_data=row["extra"])
    assert line == '{"id":"p1","extra":{"score":NaN,"ok":[1.5]},"best":null}'
    assert (
        compact_json.dumps_text({"extra": {"a": 1.0}}, user_data={"a": 1.0})
        == '{"extra":{"a":1.0}}'
    )
    assert compact_json.holds_non_finite({"a": [1, (2.0, -math.inf)]})
    assert not compact_json.holds_non_finite({"a": [1, "nan", None]})


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 is not 1.0 here; NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@given(json_values)
def test_loads_reads_what_the_standard_library_reads(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        data = text.encode("utf-8")
        assert _same(compact_json.loads(data), json.loads(data))


@given(st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False))
def test_loads_never_rounds_a_number(number: int | float) -> None:
    data = f'{{"usage":{{"prompt_tokens":{number!r}}}}}'.encode()
    assert _same(compact_json.loads(data), json.loads(data))


def test_loads_leaves_to_the_standard_library_what_orjson_reads_otherwise_or_refuses() -> None:
    for number in (2**64, 2**64 - 1, 2**63, -(2**63) - 1, -(2**63), 10**30, -(10**19)):
        assert _same(compact_json.loads(str(number).encode()), number)
    assert math.isnan(compact_json.loads(b"[NaN]")[0])
    assert compact_json.loads(b"1e400") == math.inf
    assert compact_json.loads(b'"\\ud800"') == "\ud800"  # a lone surrogate
    assert compact_json.loads('{"a": "é"}'.encode("utf-16")) == {"a": "é"}
    assert compact_json.loads(b'{"a":1,"a":2}') == {"a": 2}
    assert compact_json.loads(b'{"t":"1234567890123456789012"}') == {"t": "1234567890123456789012"}
    for bad in (b"", b"[1,2", b'{"a":}', b"\xff\xfe\x00"):
        with pytest.raises(ValueError, match=r"Expecting|decode"):
            compact_json.loads(bad)
