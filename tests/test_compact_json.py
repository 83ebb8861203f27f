"""`toa.compact_json`: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

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
