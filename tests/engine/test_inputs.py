"""Reading prompts: formats, row rules, bad rows with file and line, streaming, limit."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import sys
import tempfile
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toa.errors import ConfigError, InputError
from toa.inputs import readers as inputs
from toa.inputs.readers import read_prompts
from toa.types import Message, Prompt

ROWS: list[dict[str, Any]] = [
    {"id": "a", "instruction": "What is 2+2?", "gold_answer": "4", "tag": "math"},
    {"id": "b", "prompt": "Translate: bonjour", "reference": "hello"},
    {"id": "3", "instruction": "Nommez une couleur, s'il vous plaît.", "tag": "misc"},
]
EXPECTED = [
    ("a", (Message("user", "What is 2+2?"),), {"gold_answer": "4", "tag": "math"}),
    ("b", (Message("user", "Translate: bonjour"),), {"reference": "hello"}),
    ("3", (Message("user", "Nommez une couleur, s'il vous plaît."),), {"tag": "misc"}),
]
GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k" / "test.jsonl"


# --- helpers --------------------------------------------------------------------------------------


def read_all(path: Path, **options: Any) -> list[Prompt | InputError]:
    return list(read_prompts(path, **options))


def prompts_of(items: Iterable[Prompt | InputError]) -> list[Prompt]:
    return [item for item in items if isinstance(item, Prompt)]


def errors_of(items: Iterable[Prompt | InputError]) -> list[InputError]:
    return [item for item in items if isinstance(item, InputError)]


def as_tuples(prompts: Iterable[Prompt]) -> list[tuple[str, tuple[Message, ...], dict[str, Any]]]:
    return [(p.id, p.messages, dict(p.extra)) for p in prompts]


def outline(items: Iterable[Prompt | InputError]) -> list[tuple[str, str | int | None]]:
    """('ok', id) for a prompt, ('bad', line) for an error: the order rows came out in."""
    return [("bad", i.line) if isinstance(i, InputError) else ("ok", i.id) for i in items]


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_lines(path: Path, lines: Iterable[str | bytes]) -> Path:
    data = [line if isinstance(line, bytes) else line.encode("utf-8") for line in lines]
    path.write_bytes(b"\n".join(data) + b"\n")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    columns = dict.fromkeys(key for row in rows for key in row)
    pq.write_table(pa.Table.from_pylist([{**columns, **row} for row in rows]), path)
    return path


def assert_error(error: Prompt | InputError, path: Path, line: int, *reason: str) -> None:
    assert isinstance(error, InputError), error
    assert error.path == str(path)
    assert error.line == line
    assert str(error).startswith(f"{path}:{line}: ")
    for part in reason:
        assert part in str(error)


# --- formats ----------------------------------------------------------------------------------


WRITERS = {
    "jsonl": lambda p: write_jsonl(p.with_suffix(".jsonl"), ROWS),
    "ndjson": lambda p: write_jsonl(p.with_suffix(".ndjson"), ROWS),
    "json-pretty": lambda p: _write_text(p.with_suffix(".json"), json.dumps(ROWS, indent=2)),
    "json-minified": lambda p: _write_text(p.with_suffix(".json"), json.dumps(ROWS)),
    "csv": lambda p: write_csv(p.with_suffix(".csv"), ROWS),
    "parquet": lambda p: write_parquet(p.with_suffix(".parquet"), ROWS),
    "jsonl.gz": lambda p: _gzip(write_jsonl(p.with_suffix(".jsonl"), ROWS)),
    "json.gz": lambda p: _gzip(_write_text(p.with_suffix(".json"), json.dumps(ROWS, indent=1))),
    "csv.gz": lambda p: _gzip(write_csv(p.with_suffix(".csv"), ROWS)),
}


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _gzip(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    return target


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_reads_the_same_prompts(tmp_path: Path, fmt: str) -> None:
    path = WRITERS[fmt](tmp_path / "prompts")
    items = read_all(path)
    assert errors_of(items) == []
    assert as_tuples(prompts_of(items)) == EXPECTED


@pytest.mark.parametrize("fmt", ["jsonl", "json-pretty", "csv"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path, fmt: str) -> None:
    path = WRITERS[fmt](tmp_path / "prompts")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert as_tuples(prompts_of(read_all(path))) == EXPECTED


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "PROMPTS.JSONL", ROWS)
    assert len(read_all(path)) == 3


@pytest.mark.parametrize("name", ["prompts.txt", "prompts", "prompts.parquet.gz", "p.yaml"])
def test_an_unknown_extension_is_a_config_error_naming_the_supported_ones(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\.jsonl.*\.csv.*\.parquet"):
        read_prompts(path)


def test_a_missing_file_is_a_config_error_raised_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_prompts(tmp_path / "absent.jsonl")
    with pytest.raises(ConfigError, match="not found"):
        read_prompts(tmp_path / "absent.txt")  # missing comes before the unknown extension
    with pytest.raises(ConfigError, match="is a directory"):
        read_prompts(tmp_path)


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prompts.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"pip install 'toa-synth\[parquet\]'"):
        read_prompts(path)


def test_a_bad_limit_or_prompt_field_is_a_config_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with pytest.raises(ConfigError, match="limit"):
        read_prompts(path, limit=-1)
    with pytest.raises(ConfigError, match="prompt_field"):
        read_prompts(path, prompt_field="")


# --- row rules ----------------------------------------------------------------------------------


def test_messages_rows(tmp_path: Path) -> None:
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is TOA?"},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "c", "messages": chat, "tag": "chat"}])
    [prompt] = read_all(path)
    assert isinstance(prompt, Prompt)
    assert prompt.messages == (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello."),
        Message("user", "What is TOA?"),
    )
    assert prompt.text == "What is TOA?"
    assert dict(prompt.extra) == {"tag": "chat"}


def test_messages_in_csv_are_a_json_string(tmp_path: Path) -> None:
    chat = json.dumps([{"role": "user", "content": "Hi there"}])
    path = write_csv(tmp_path / "p.csv", [{"id": "c", "messages": chat}])
    [prompt] = read_all(path)
    assert isinstance(prompt, Prompt)
    assert prompt.messages == (Message("user", "Hi there"),)


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([], "non-empty list"),
        ("not json", "not JSON"),
        ({"role": "user"}, "non-empty list"),
        ([{"role": "user", "content": "a"}, "b"], "messages[1] must be an object"),
        ([{"role": "robot", "content": "a"}], "messages[0] has role 'robot'"),
        ([{"role": ["user"], "content": "a"}], "messages[0] has role"),
        ([{"role": "user", "content": 7}], "'content' must be a string"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "end with"),
        ([{"role": "user", "content": "  "}], "last user message"),
    ],
)
def test_malformed_messages_are_bad_rows(tmp_path: Path, messages: object, reason: str) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "messages": messages}, ROWS[0]])
    bad, good = read_all(path)
    assert_error(bad, path, 1, reason)
    assert isinstance(good, Prompt)


def test_a_prompt_field_wins_over_messages_unless_chosen_explicitly(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "from messages"}]
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"id": "x", "prompt": "from prompt", "messages": chat}]
    )
    [prompt] = read_all(path)
    assert isinstance(prompt, Prompt)
    assert prompt.text == "from prompt"
    assert prompt.extra["messages"] == chat  # carried, not lost
    [error] = read_all(path, prompt_field="prompt")
    assert_error(error, path, 1, "both 'prompt' and 'messages'")


def test_instruction_comes_before_prompt(tmp_path: Path) -> None:
    row = {"id": "x", "instruction": "first", "prompt": "second"}
    [prompt] = read_all(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert isinstance(prompt, Prompt)
    assert prompt.text == "first"
    assert dict(prompt.extra) == {"prompt": "second"}


def test_the_prompt_field_option(tmp_path: Path) -> None:
    rows = [{"id": "q", "question": "Why?", "instruction": "ignored"}, {"id": "r", "prompt": "x"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    prompt, error = read_all(path, prompt_field="question")
    assert isinstance(prompt, Prompt)
    assert prompt.text == "Why?"
    assert dict(prompt.extra) == {"instruction": "ignored"}
    assert_error(
        error, path, 2, "no prompt", "'question'", "'messages'", "the row has 'id', 'prompt'"
    )


def test_the_id_field_option_and_integer_ids(tmp_path: Path) -> None:
    rows = [{"uid": 830, "id": "kept", "instruction": "x"}]
    [prompt] = read_all(write_jsonl(tmp_path / "p.jsonl", rows), id_field="uid")
    assert isinstance(prompt, Prompt)
    assert prompt.id == "830"
    assert dict(prompt.extra) == {"id": "kept"}


def test_extra_fields_are_carried_as_parsed(tmp_path: Path) -> None:
    row = {
        "id": "x",
        "instruction": "Solve",
        "gold_answer": "42",
        "reference": {"text": "r", "score": 0.5},
        "tags": ["a", "b"],
        "note": None,
    }
    [prompt] = read_all(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert isinstance(prompt, Prompt)
    assert dict(prompt.extra) == {
        "gold_answer": "42",
        "reference": {"text": "r", "score": 0.5},
        "tags": ["a", "b"],
        "note": None,
    }
    with pytest.raises(TypeError):
        prompt.extra["x"] = 1  # type: ignore[index]


def test_empty_csv_cells_are_omitted_and_values_are_strings(tmp_path: Path) -> None:
    rows = [{"id": "1", "instruction": "x", "gold_answer": "", "score": "3"}]
    [prompt] = read_all(write_csv(tmp_path / "p.csv", rows))
    assert isinstance(prompt, Prompt)
    assert dict(prompt.extra) == {"score": "3"}


# --- derived ids ------------------------------------------------------------------------------


def expected_id(messages: list[dict[str, str]]) -> str:
    canonical = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "p-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def test_rows_without_ids_get_stable_ids_from_their_content(tmp_path: Path) -> None:
    one = write_jsonl(tmp_path / "one.jsonl", [{"prompt": "Olá"}, {"instruction": "Two"}])
    two = write_jsonl(
        tmp_path / "two.jsonl",
        [
            {"instruction": "Two", "tag": "moved"},
            {"messages": [{"role": "user", "content": "Olá"}]},
        ],
    )
    first, second = prompts_of(read_all(one))
    moved_second, moved_first = prompts_of(read_all(two))
    assert first.id == expected_id([{"role": "user", "content": "Olá"}])
    assert first.id.startswith("p-")
    assert len(first.id) == 14
    assert (first.id, second.id) == (moved_first.id, moved_second.id)


def test_two_identical_prompts_without_ids_are_duplicates(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "same"}, {"prompt": "same"}])
    good, bad = read_all(path)
    assert isinstance(good, Prompt)
    assert_error(bad, path, 2, f"duplicate id {good.id!r}", "line 1", "derived from the prompt")


@pytest.mark.parametrize(
    ("value", "reason"),
    [(1.5, "a number (1.5)"), (True, "a boolean"), ([1], "a list"), ("  ", "is empty")],
)
def test_an_id_of_the_wrong_type_is_a_bad_row(tmp_path: Path, value: object, reason: str) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": value, "prompt": "x"}])
    [error] = read_all(path)
    assert_error(error, path, 1, "id field 'id'", reason)


# --- bad rows, one mixed file per format ------------------------------------------------------


def test_jsonl_bad_rows_each_give_one_error_and_good_rows_still_come(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            '{"id": "a", "instruction": "one"}',
            '{"id": "x", "instruction": "unclosed"',
            "[1, 2]",
            "",
            '{"id": "m", "tag": "t"}',
            '{"id": "e", "instruction": "   "}',
            '{"id": "t", "instruction": 42}',
            '{"id": 1.5, "instruction": "x"}',
            '{"id": "a", "instruction": "again"}',
            b'{"id": "u", "instruction": "caf\xe9"}',
            '{"id": "g", "messages": [{"role": "robot", "content": "hi"}]}',
            "   ",
            '{"id": "b", "instruction": "two"}',
        ],
    )
    items = read_all(path)
    assert outline(items) == [
        ("ok", "a"),
        *(("bad", line) for line in (2, 3, 5, 6, 7, 8, 9, 10, 11)),
        ("ok", "b"),
    ]
    errors = iter(items[1:-1])
    assert_error(next(errors), path, 2, "malformed JSON", "column")
    assert_error(next(errors), path, 3, "the row is a list, not an object")
    assert_error(next(errors), path, 5, "no prompt", "'instruction', 'prompt'", "'id', 'tag'")
    assert_error(next(errors), path, 6, "'instruction' is empty")
    assert_error(next(errors), path, 7, "'instruction' must be a string, got a number")
    assert_error(next(errors), path, 8, "id field 'id' must be a string or an integer")
    assert_error(next(errors), path, 9, "duplicate id 'a', first used on line 1")
    assert_error(next(errors), path, 10, "not valid UTF-8", "0xe9")
    assert_error(next(errors), path, 11, "has role 'robot'")


JSON_MIXED = """[
  {"id": "a", "instruction": "one"},
  {"id": "b", "instruction": 5},
  {
    "id": "c",
    "instruction": "broken"
    "tag": "x"
  },
  {"id": "d", "instruction": "four"},
  "just a string",
  {"id": "a", "instruction": "dup"}
  {"id": "e", "instruction": "after a missing comma"},
  {"id": "f", "instruction": "caf\xe9"},
  {"id": "g", "messages": [{"role": "user", "content": "last"}]}
]
"""


def test_json_array_bad_elements_are_reported_and_reading_goes_on(tmp_path: Path) -> None:
    data = JSON_MIXED.encode("utf-8").replace("caf\xe9".encode(), b"caf\xe9")
    path = tmp_path / "mixed.json"
    path.write_bytes(data)
    items = read_all(path)
    assert outline(items) == [
        ("ok", "a"),
        ("bad", 3),
        ("bad", 4),
        ("ok", "d"),
        ("bad", 10),
        ("bad", 11),
        ("bad", 12),
        ("ok", "e"),
        ("bad", 13),
        ("ok", "g"),
    ]
    assert_error(items[1], path, 3, "'instruction' must be a string")
    assert_error(
        items[2], path, 4, "malformed JSON", "(line 7, column 5)", "reading on from line 9"
    )
    assert_error(items[4], path, 10, "the row is a string, not an object")
    assert_error(items[5], path, 11, "duplicate id 'a', first used on line 2")
    assert_error(items[6], path, 12, "expected ',' or ']' after the element on line 11")
    assert_error(items[8], path, 13, "not valid UTF-8", "0xe9")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "the file is empty"),
        ('{"id": "a", "prompt": "x"}', 1, "expected a JSON array"),
        (
            '\n\n[{"id": "a", "prompt": "x"},\n',
            None,
            "the file ends before the array is closed with ']'",
        ),
        ('[{"id": "a", "prompt": "x"}] [', 1, "after the array's closing ']'"),
    ],
)
def test_json_file_level_problems(tmp_path: Path, text: str, line: int | None, reason: str) -> None:
    path = _write_text(tmp_path / "p.json", text)
    [error] = errors_of(read_all(path))
    if line is None:
        assert str(error) == f"{path}: {reason}"
    else:
        assert_error(error, path, line, reason)


def test_json_array_garbage_with_no_element_after_it_skips_the_rest(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "p.json", '[{"id": "a", "prompt": "x"}, {"id": oops} ]')
    good, bad = read_all(path)
    assert isinstance(good, Prompt)
    assert_error(bad, path, 1, "malformed JSON", "the rest was skipped")


CSV_MIXED = (
    b"id,instruction,tag\r\n"
    b'a,"first\r\nline two",t\r\n'
    b"b,,t\r\n"
    b"c,   ,t\r\n"
    b"d,x\r\n"
    b"a,dup,t\r\n"
    b"\r\n"
    b"e,caf\xe9,t\r\n"
    b'f,"good\r\nmulti",\r\n'
    b"g,last,t\r\n"
)


def test_csv_bad_rows_name_the_line_where_the_record_starts(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(CSV_MIXED)
    items = read_all(path)
    assert outline(items) == [
        ("ok", "a"),
        ("bad", 4),
        ("bad", 5),
        ("bad", 6),
        ("bad", 7),
        ("bad", 9),
        ("ok", "f"),
        ("ok", "g"),
    ]
    assert items[0] == Prompt.from_text("a", "first\r\nline two", tag="t")
    assert_error(items[1], path, 4, "no prompt", "the row has 'id', 'tag'")
    assert_error(items[2], path, 5, "'instruction' is empty")
    assert_error(items[3], path, 6, "has 2 fields, the header has 3")
    assert_error(items[4], path, 7, "duplicate id 'a', first used on line 2")
    assert_error(items[5], path, 9, "not valid UTF-8", "0xe9")
    assert dict(prompts_of(items)[1].extra) == {}


def test_a_csv_header_with_repeated_columns_is_one_error(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "p.csv", "id,prompt,prompt\n1,a,b\n")
    [error] = read_all(path)
    assert_error(error, path, 1, "repeats column(s) 'prompt'")


def test_a_csv_header_without_a_prompt_column_is_one_error(tmp_path: Path) -> None:
    rows = "".join(f"q{i},{i}\n" for i in range(5000))
    path = _write_text(tmp_path / "p.csv", "question,answer\n" + rows)
    [error] = read_all(path)
    assert_error(error, path, 1, "no prompt column", "'question', 'answer'", "--prompt-field")
    named = list(read_prompts(path, prompt_field="query"))
    assert len(named) == 1
    assert "looked for 'query', 'messages'" in str(named[0])
    assert "--prompt-field" not in str(named[0])
    assert len(prompts_of(read_all(path, prompt_field="question"))) == 5000


def test_a_parquet_schema_without_a_prompt_column_is_one_error(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "p.parquet", [{"question": f"q{i}"} for i in range(50)])
    [error] = read_all(path)
    assert isinstance(error, InputError)
    assert "no prompt column" in str(error)
    assert "the schema has 'question'" in str(error)


def test_parquet_bad_rows_name_the_row(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"id": "a", "instruction": "one", "gold_answer": "1"},
        {"id": "b", "instruction": "   ", "gold_answer": None},
        {"id": "a", "instruction": "dup", "gold_answer": None},
        {"id": "c", "instruction": None, "gold_answer": "3"},
        {"id": None, "instruction": "no id", "gold_answer": "4"},
    ]
    path = write_parquet(tmp_path / "mixed.parquet", rows)
    items = read_all(path)
    derived = prompts_of(items)[-1].id
    assert derived.startswith("p-")
    assert outline(items) == [("ok", "a"), ("bad", 2), ("bad", 3), ("bad", 4), ("ok", derived)]
    for item, row, reason in zip(
        items[1:4], (2, 3, 4), ("is empty", "first used on row 1", "no prompt"), strict=True
    ):
        assert isinstance(item, InputError)
        assert item.line == row
        assert str(item).startswith(f"{path}: row {row}: ")
        assert reason in str(item)
    assert dict(prompts_of(items)[0].extra) == {"gold_answer": "1"}


def test_a_corrupt_parquet_file_is_one_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "p.parquet"
    path.write_bytes(b"not parquet at all")
    [error] = read_all(path)
    assert isinstance(error, InputError)
    assert error.line is None
    assert "cannot read the Parquet file" in str(error)


def test_a_truncated_gzip_file_reports_the_rows_before_and_one_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl.gz"
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS * 50).encode())
    path.write_bytes(data[: len(data) - 12])
    items = read_all(path)
    *good, last = items
    assert len(prompts_of(good)) >= 1
    assert isinstance(last, InputError)
    assert "cannot read the rest of the file" in str(last)


# --- limit and streaming ----------------------------------------------------------------------


def test_limit_stops_after_that_many_good_prompts(tmp_path: Path) -> None:
    lines = ['{"id": "a", "prompt": "1"}', "not json", '{"id": "b", "prompt": "2"}', "{bad"]
    path = write_lines(tmp_path / "p.jsonl", lines)
    assert outline(read_all(path, limit=2)) == [("ok", "a"), ("bad", 2), ("ok", "b")]
    assert outline(read_all(path, limit=1)) == [("ok", "a")]
    assert read_all(path, limit=0) == []
    assert len(read_all(path, limit=10)) == 4


def big_jsonl(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for number in range(count):
            file.write(json.dumps({"id": f"{number:06d}", "prompt": f"question {number:06d}"}))
            file.write("\n")
    return path


def first_item_peak_bytes(path: Path) -> tuple[Prompt | InputError, int]:
    items = read_prompts(path)
    tracemalloc.start()
    try:
        first = next(items)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        items.close()
    return first, peak


def test_the_first_prompt_comes_without_reading_the_whole_file(tmp_path: Path) -> None:
    path = big_jsonl(tmp_path / "big.jsonl", 200_000)
    assert path.stat().st_size > 8_000_000
    first, peak = first_item_peak_bytes(path)
    assert isinstance(first, Prompt)
    assert first.id == "000000"
    assert peak < 1_000_000
    # A change near the end, made after the first row was read, is seen: that part was unread.
    items = read_prompts(path)
    assert next(items).id == "000000"  # type: ignore[union-attr]
    with path.open("r+b") as file:
        file.seek(-len(b'{"id": "199999", "prompt": "question 199999"}\n'), 2)
        file.write(b'{"id": "CHANGE", "prompt": "question 199999"}\n')
    *_, last = items
    assert isinstance(last, Prompt)
    assert last.id == "CHANGE"


@pytest.mark.parametrize("indent", [None, 2])
def test_a_large_json_array_is_decoded_element_by_element(
    tmp_path: Path, indent: int | None
) -> None:
    rows = [{"id": number, "prompt": f"question {number}", "n": number} for number in range(50_000)]
    path = _write_text(tmp_path / "big.json", json.dumps(rows, indent=indent))
    assert path.stat().st_size > 2_000_000
    first, peak = first_item_peak_bytes(path)
    assert first == Prompt.from_text("0", "question 0", n=0)
    assert peak < 1_000_000
    items = read_all(path)
    assert len(items) == 50_000
    assert errors_of(items) == []
    assert items[-1] == Prompt.from_text("49999", "question 49999", n=49_999)


def test_csv_is_streamed(tmp_path: Path) -> None:
    rows = [{"id": str(number), "prompt": f"q{number}"} for number in range(100_000)]
    path = write_csv(tmp_path / "big.csv", rows)
    first, peak = first_item_peak_bytes(path)
    assert first == Prompt.from_text("0", "q0")
    assert peak < 1_000_000


def test_json_arrays_survive_tiny_chunks(tmp_path: Path) -> None:
    rows = [*ROWS, {"id": 12345, "prompt": "Grüße, 世界 🌍", "score": 1.25e-3, "n": 1234567}]
    for indent in (None, 0, 3):
        path = _write_text(tmp_path / "p.json", json.dumps(rows, indent=indent, ensure_ascii=False))
        for size in (1, 2, 3, 7):
            with mock.patch.object(inputs, "_CHUNK_BYTES", size):
                items = read_all(path)
            assert errors_of(items) == []
            assert len(items) == 4
            assert items[-1] == Prompt.from_text(
                "12345", "Grüße, 世界 🌍", score=1.25e-3, n=1234567
            )


# --- properties and real data -------------------------------------------------------------------

RESERVED = {"id", "instruction", "prompt", "messages"}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
good_rows = st.lists(
    st.tuples(
        st.text(min_size=1).filter(str.strip),
        st.dictionaries(st.text(max_size=8).filter(lambda k: k not in RESERVED), json_values),
    ),
    max_size=15,
)


def numbered(rows: list[tuple[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for number, (text, extra) in enumerate(rows):
        yield {**extra, "id": number if number % 2 else f"row-{number}", "instruction": text}


@settings(max_examples=60, deadline=None)
@given(rows=good_rows, ascii_only=st.booleans())
def test_good_jsonl_rows_come_back_exactly(
    rows: list[tuple[str, dict[str, Any]]], ascii_only: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.jsonl"
        lines = (json.dumps(row, ensure_ascii=ascii_only) + "\n" for row in numbered(rows))
        path.write_text("".join(lines), encoding="utf-8")
        items = read_all(path)
    assert as_tuples(items) == [  # type: ignore[arg-type]
        (str(row["id"]), (Message("user", text),), extra)
        for row, (text, extra) in zip(numbered(rows), rows, strict=True)
    ]


@settings(max_examples=40, deadline=None)
@given(rows=good_rows, indent=st.sampled_from([None, 0, 2]), chunk=st.integers(1, 64))
def test_good_json_arrays_come_back_exactly_whatever_the_chunk_size(
    rows: list[tuple[str, dict[str, Any]]], indent: int | None, chunk: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.json"
        path.write_text(json.dumps(list(numbered(rows)), indent=indent, ensure_ascii=False))
        with mock.patch.object(inputs, "_CHUNK_BYTES", chunk):
            items = read_all(path)
    assert as_tuples(items) == [  # type: ignore[arg-type]
        (str(row["id"]), (Message("user", text),), extra)
        for row, (text, extra) in zip(numbered(rows), rows, strict=True)
    ]


@pytest.mark.skipif(not GSM8K.exists(), reason=f"{GSM8K} is not here")
def test_gsm8k_test_set_reads_whole() -> None:
    items = read_all(GSM8K)
    assert errors_of(items) == []
    assert len(items) == 1319
    prompts = prompts_of(items)
    assert len({p.id for p in prompts}) == 1319
    assert all(isinstance(p.extra.get("gold_answer"), str) for p in prompts)
    assert all(p.messages[0].role == "user" and p.text for p in prompts)
