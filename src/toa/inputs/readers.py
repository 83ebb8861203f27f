"""Prompts in: JSONL, JSON, CSV and Parquet files, streamed row by row.

`read_prompts` yields a `Prompt` for each good row and an `InputError` for each bad row, in file
order, and holds about one row in memory (one batch for Parquet), so a run's memory does not grow
with the number of prompts. The only state that grows is the set of ids seen, for duplicates.

Formats, chosen by the file's extension (case-insensitive):

- ``.jsonl`` / ``.ndjson``: one JSON object per line; blank lines are skipped.
- ``.json``: one top-level array of objects, decoded element by element (a minified one-line
  array is fine). After a malformed element the reader skips to the next line that starts an
  element (a ``{`` no further right than the broken one), so the rows after it still run.
- ``.csv``: a header row, then one row per record; values are strings, empty cells are omitted.
- ``.parquet``: read in batches with pyarrow (``pip install 'toa-synth[parquet]'``); nulls are
  omitted, like empty CSV cells.
- ``.jsonl.gz``, ``.ndjson.gz``, ``.json.gz``, ``.csv.gz``: the same, gzip-compressed.

Row rules:

- The prompt is the `prompt_field` if given, else the first of ``instruction``, ``prompt`` that
  the row has (a null counts as absent). A row may instead hold ``messages``: a list of
  ``{"role", "content"}`` objects (roles ``system``, ``user``, ``assistant``) ending with a
  non-empty user message; in CSV it is a JSON string. A row with both a prompt field and
  ``messages`` uses the prompt field and carries ``messages`` as an extra field, unless
  `prompt_field` was given explicitly: then having both is an error, since the choice is unclear.
- The id is the `id_field` value, a string or an integer (turned into a string). A row without
  one (or with null) gets ``"p-"`` and the first 12 hex digits of the SHA-256 of the
  conversation's canonical JSON (the UTF-8 of a list of ``{"content", "role"}`` objects, keys
  sorted, no spaces, non-ASCII kept), so the id survives reordering the file and resuming a run.
  A prompt string and a single user message with the same text get the same id. Two rows with the
  same conversation and no id therefore have the same id: a duplicate.
- Every other field goes into `Prompt.extra` as parsed (``gold_answer``, ``reference``, ...).

A bad row gets one `InputError` naming the file and the line where the row starts (for Parquet,
``row N``, counting data rows from 1, also stored in `InputError.line`): malformed JSON, a row
that is not an object, no prompt, an empty prompt, a wrong type, a duplicate id (naming where the
id was first used) or bytes that are not UTF-8. A UTF-8 byte order mark at the start is accepted.
A CSV header or Parquet schema with no prompt column (nor ``messages``) is one error for the whole
file, and no row is read: no row could be good.

The JSONL, CSV and Parquet readers are here; the ``.json`` array reader is in
`toa.inputs.json_array`, and the row rules are applied by `toa.inputs.rows`.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import json
import logging
import os
import zlib
from collections.abc import Callable, Generator, Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import Any

from toa.errors import ConfigError, InputError
from toa.inputs.json_array import JsonArrayReader
from toa.inputs.rows import (
    DEFAULT_PROMPT_FIELDS,
    MESSAGES_FIELD,
    RawRow,
    RowParser,
    escaped_not_utf8,
    not_utf8,
)
from toa.types import Prompt

__all__ = ["DEFAULT_PROMPT_FIELDS", "MESSAGES_FIELD", "SUPPORTED_SUFFIXES", "read_prompts"]

logger = logging.getLogger(__name__)

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    *_FORMATS,
    ".parquet",
    *(f"{suffix}.gz" for suffix in _FORMATS),
)
"""The file extensions `read_prompts` understands."""

_CHUNK_BYTES = 1 << 16  # what the .json reader reads at a time (read when a file is opened)
_PARQUET_BATCH_ROWS = 1024


def read_prompts(
    path: str | os.PathLike[str],
    *,
    prompt_field: str | None = None,
    id_field: str = "id",
    limit: int | None = None,
) -> Generator[Prompt | InputError, None, None]:
    """Stream the prompts of an input file: a `Prompt` per good row, an `InputError` per bad one.

    Errors are yielded, not raised, so the caller can count and log them and go on; the rows keep
    file order. The file is checked when this is called; it is opened on the first `next()` and
    closed when the generator finishes or is closed. The module docstring gives the row rules.

    Args:
        path: the input file; its extension picks the format (see `SUPPORTED_SUFFIXES`).
        prompt_field: the field holding the prompt text; default ``instruction``, then ``prompt``.
        id_field: the field holding the row's id.
        limit: stop after this many good prompts (>= 0); bad rows before that are still yielded.

    Raises:
        ConfigError: the file is missing, its extension is unknown, `limit` is negative, or it is
            Parquet and pyarrow is not installed.
    """
    file = Path(path)
    if not file.is_file():
        problem = "is a directory, not a file" if file.is_dir() else "not found"
        raise ConfigError(f"input file {problem}: {path}")
    fmt = _format_of(file)
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    if prompt_field is not None and not prompt_field:
        raise ConfigError("prompt_field must not be empty")
    parser = RowParser(str(path), fmt, prompt_field, id_field)
    if fmt == "parquet":
        rows = _parquet_rows(file, _import_parquet(), parser.columns_problem)
    else:
        gzipped = file.name.lower().endswith(".gz")
        rows = _text_rows(file, fmt, gzipped=gzipped, columns_problem=parser.columns_problem)
    return _prompts(rows, parser, limit)


def _format_of(file: Path) -> str:
    name = file.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _FORMATS.get(suffix.removesuffix(".gz"), "parquet")
    raise ConfigError(
        f"cannot read prompts from {file}: unknown extension; supported: "
        + ", ".join(SUPPORTED_SUFFIXES)
    )


def _import_parquet() -> Any:
    try:
        return importlib.import_module("pyarrow.parquet")
    except ImportError as error:
        raise ConfigError(
            "reading Parquet files needs pyarrow: pip install 'toa-synth[parquet]'"
        ) from error


def _prompts(
    rows: Generator[RawRow, None, None], parser: RowParser, limit: int | None
) -> Generator[Prompt | InputError, None, None]:
    good = bad = 0
    try:
        if limit == 0:
            return
        for raw in rows:
            item = parser.parse(raw)
            if isinstance(item, InputError):
                bad += 1
            else:
                good += 1
            yield item
            if good == limit:
                return
    finally:
        rows.close()
        logger.debug("read %d prompts and %d bad rows from %s", good, bad, parser.path)


# --- text formats -------------------------------------------------------------------------------


ColumnsCheck = Callable[[list[str], str], str | None]
"""`RowParser.columns_problem`: why no row with these columns can hold a prompt, or None."""


def _text_rows(
    file: Path, fmt: str, *, gzipped: bool, columns_problem: ColumnsCheck
) -> Generator[RawRow, None, None]:
    raw: BufferedIOBase = gzip.open(file, "rb") if gzipped else open(file, "rb")  # noqa: SIM115
    with raw:
        try:
            if fmt == "jsonl":
                yield from _jsonl_rows(raw)
            elif fmt == "csv":
                yield from _csv_rows(raw, columns_problem)
            else:
                yield from JsonArrayReader(raw, chunk_bytes=_CHUNK_BYTES).rows()
        except (OSError, EOFError, zlib.error) as error:
            yield RawRow(0, problem=f"cannot read the rest of the file: {error}")


def _jsonl_rows(raw: BufferedIOBase) -> Iterator[RawRow]:
    for number, data in enumerate(raw, start=1):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = error.object[error.start]
            yield RawRow(number, problem=not_utf8(byte, f" at byte {error.start + 1}"))
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            yield RawRow(number, json.loads(text))
        except json.JSONDecodeError as error:
            what = error.msg.removesuffix(" at")  # some messages end in "at": avoid "at at"
            yield RawRow(number, problem=f"malformed JSON: {what} at column {error.colno}")


def _decoded_lines(raw: BufferedIOBase) -> Iterator[str]:
    """The file's lines, with bytes that are not UTF-8 kept as lone surrogates to report later."""
    for number, data in enumerate(raw, start=1):
        text = data.decode("utf-8", errors="surrogateescape")
        yield text.removeprefix("\ufeff") if number == 1 else text


def _csv_rows(raw: BufferedIOBase, columns_problem: ColumnsCheck) -> Iterator[RawRow]:
    reader = csv.reader(_decoded_lines(raw))
    header: list[str] | None = None
    end = 0
    while True:
        start = end + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            end = reader.line_num
            yield RawRow(start, problem=f"malformed CSV: {error}")
            continue
        end = reader.line_num
        if not record:  # a blank line
            continue
        if header is None:
            header = record
            problem = _header_problem(header) or columns_problem(header, "header")
            if problem:
                yield RawRow(start, problem=problem)
                return
        else:
            yield _csv_row(start, header, record)


def _header_problem(header: list[str]) -> str | None:
    reason = escaped_not_utf8("\n".join(header))
    if reason:
        return f"CSV header: {reason}; no rows were read"
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        return f"CSV header repeats column(s) {', '.join(map(repr, duplicates))}; no rows were read"
    return None


def _csv_row(start: int, header: list[str], record: list[str]) -> RawRow:
    if len(record) != len(header):
        return RawRow(start, problem=f"has {len(record)} fields, the header has {len(header)}")
    reason = escaped_not_utf8("\n".join(record))
    if reason:
        return RawRow(start, problem=reason)
    return RawRow(
        start, {name: value for name, value in zip(header, record, strict=True) if value != ""}
    )


# --- Parquet ------------------------------------------------------------------------------------


def _parquet_rows(
    file: Path, parquet: Any, columns_problem: ColumnsCheck
) -> Generator[RawRow, None, None]:
    arrow_error = importlib.import_module("pyarrow").ArrowException
    number = 0
    try:
        with parquet.ParquetFile(file) as reader:
            problem = columns_problem(list(reader.schema_arrow.names), "schema")
            if problem:
                yield RawRow(0, problem=problem)
                return
            for batch in reader.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    number += 1  # a null is a missing value, like an empty CSV cell
                    yield RawRow(number, {k: v for k, v in row.items() if v is not None})
    except (OSError, arrow_error) as error:
        yield RawRow(0, problem=f"cannot read the Parquet file after row {number}: {error}")


# --- rows to prompts ----------------------------------------------------------------------------
