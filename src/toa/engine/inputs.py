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
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import importlib
import json
import logging
import os
import re
import zlib
from collections.abc import Generator, Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import Any, NamedTuple

from toa.errors import ConfigError, InputError
from toa.types import Message, Prompt, Role

__all__ = ["DEFAULT_PROMPT_FIELDS", "MESSAGES_FIELD", "SUPPORTED_SUFFIXES", "read_prompts"]

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_FIELDS: tuple[str, ...] = ("instruction", "prompt")
"""The fields tried for the prompt text, in order, when no `prompt_field` is given."""

MESSAGES_FIELD = "messages"
"""The field that holds a whole conversation instead of a prompt string."""

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    *_FORMATS,
    ".parquet",
    *(f"{suffix}.gz" for suffix in _FORMATS),
)
"""The file extensions `read_prompts` understands."""

_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
_CHUNK_BYTES = 1 << 16
_MAX_ELEMENT_CHARS = 1 << 26  # a JSON array element this large is taken as malformed
_PARQUET_BATCH_ROWS = 1024
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what `surrogateescape` makes of bytes not UTF-8
_NOT_SPACE = re.compile(r"[^ \t\n\r]")
_LINE_OPENING = re.compile(r"\n([ \t]*)([{\]])")


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
    if fmt == "parquet":
        rows = _parquet_rows(file, _import_parquet())
    else:
        rows = _text_rows(file, fmt, gzipped=file.name.lower().endswith(".gz"))
    parser = _RowParser(str(path), fmt, prompt_field, id_field)
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
    rows: Generator[_RawRow, None, None], parser: _RowParser, limit: int | None
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


class _RawRow(NamedTuple):
    """A row as read: where it starts, its parsed value, or why it could not be read."""

    where: int  # line (text formats) or 1-based row (Parquet); 0: the file as a whole
    value: object = None
    problem: str | None = None


# --- text formats -------------------------------------------------------------------------------


def _text_rows(file: Path, fmt: str, *, gzipped: bool) -> Generator[_RawRow, None, None]:
    raw: BufferedIOBase = gzip.open(file, "rb") if gzipped else open(file, "rb")  # noqa: SIM115
    with raw:
        try:
            if fmt == "jsonl":
                yield from _jsonl_rows(raw)
            elif fmt == "csv":
                yield from _csv_rows(raw)
            else:
                yield from _JsonArrayReader(raw).rows()
        except (OSError, EOFError, zlib.error) as error:
            yield _RawRow(0, problem=f"cannot read the rest of the file: {error}")


def _jsonl_rows(raw: BufferedIOBase) -> Iterator[_RawRow]:
    for number, data in enumerate(raw, start=1):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = error.object[error.start]
            yield _RawRow(number, problem=_not_utf8(byte, f" at byte {error.start + 1}"))
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            yield _RawRow(number, json.loads(text))
        except json.JSONDecodeError as error:
            what = error.msg.removesuffix(" at")  # some messages end in "at": avoid "at at"
            yield _RawRow(number, problem=f"malformed JSON: {what} at column {error.colno}")


def _not_utf8(byte: int, where: str = "") -> str:
    return f"not valid UTF-8: byte 0x{byte:02x}{where}; save the file as UTF-8"


def _escaped_not_utf8(text: str, start: int = 0, end: int | None = None) -> str | None:
    """The reason a `surrogateescape`-decoded text is not UTF-8, or None when it is."""
    found = _NOT_UTF8.search(text, start, len(text) if end is None else end)
    return _not_utf8(ord(found.group()) - 0xDC00) if found else None


def _decoded_lines(raw: BufferedIOBase) -> Iterator[str]:
    """The file's lines, with bytes that are not UTF-8 kept as lone surrogates to report later."""
    for number, data in enumerate(raw, start=1):
        text = data.decode("utf-8", errors="surrogateescape")
        yield text.removeprefix("\ufeff") if number == 1 else text


def _csv_rows(raw: BufferedIOBase) -> Iterator[_RawRow]:
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
            yield _RawRow(start, problem=f"malformed CSV: {error}")
            continue
        end = reader.line_num
        if not record:  # a blank line
            continue
        if header is None:
            header = record
            problem = _header_problem(header)
            if problem:
                yield _RawRow(start, problem=problem)
                return
        else:
            yield _csv_row(start, header, record)


def _header_problem(header: list[str]) -> str | None:
    reason = _escaped_not_utf8("\n".join(header))
    if reason:
        return f"CSV header: {reason}; no rows were read"
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        return f"CSV header repeats column(s) {', '.join(map(repr, duplicates))}; no rows were read"
    return None


def _csv_row(start: int, header: list[str], record: list[str]) -> _RawRow:
    if len(record) != len(header):
        return _RawRow(start, problem=f"has {len(record)} fields, the header has {len(header)}")
    reason = _escaped_not_utf8("\n".join(record))
    if reason:
        return _RawRow(start, problem=reason)
    return _RawRow(
        start, {name: value for name, value in zip(header, record, strict=True) if value != ""}
    )


class _JsonArrayReader:
    """Streams the elements of a file holding one JSON array, decoding one element at a time.

    The text is read in chunks; only the unread part and the current element are buffered. A
    decoding error is taken as real (not as a chunk cut short) once a newline follows its
    position, since no JSON token spans a newline, or at the end of the file.
    """

    def __init__(self, raw: BufferedIOBase) -> None:
        self._raw = raw
        self._bytes = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._decoder = json.JSONDecoder()
        self._buf = ""
        self._pos = 0  # the next character to read
        self._eof = False
        self._started = False
        self._mark = 0  # a position whose line and column are known; never after `_pos`
        self._line = 1
        self._col = 0  # 0-based column of `_mark`

    def rows(self) -> Iterator[_RawRow]:
        """The array's elements, in order, with problems as rows that carry them."""
        opening = self._opening()
        if opening is not None:
            yield opening
            return
        while self._skip_space():
            if self._buf[self._pos] == "]":
                self._pos += 1
                yield from self._trailing()
                return
            more = yield from self._element()
            if not more:
                return
        yield _RawRow(0, problem="the file ends before the array is closed with ']'")

    def _opening(self) -> _RawRow | None:
        if not self._skip_space():
            return _RawRow(1, problem="the file is empty; expected a JSON array of objects")
        if self._buf[self._pos] != "[":
            line, _ = self._locate(self._pos)
            return _RawRow(
                line,
                problem="expected a JSON array of objects ([{...}, ...]); "
                "for one object per line, name the file .jsonl",
            )
        self._pos += 1
        return None

    def _trailing(self) -> Iterator[_RawRow]:
        if self._skip_space():
            line, _ = self._locate(self._pos)
            yield _RawRow(line, problem="unexpected text after the array's closing ']'")

    def _element(self) -> Generator[_RawRow, None, bool]:
        """Read one element and the ',' after it; returns whether there is more to read."""
        line, column = self._locate(self._pos)
        try:
            value = self._decode()
        except json.JSONDecodeError as error:
            at_line, at_col = self._location(error.pos)
            reason = f"malformed JSON: {error.msg} (line {at_line}, column {at_col})"
            newline = self._buf.rfind("\n", self._mark, error.pos)
            row = self._resync(reason, line, newline if newline >= 0 else error.pos, column)
            yield row
            return self._pos < len(self._buf)
        not_utf8 = _escaped_not_utf8(self._buf, self._mark, self._pos)
        yield _RawRow(line, problem=not_utf8) if not_utf8 else _RawRow(line, value)
        if not self._skip_space() or self._buf[self._pos] == "]":
            return True
        if self._buf[self._pos] == ",":
            self._pos += 1
            return True
        at_line, _ = self._locate(self._pos)
        reason = f"malformed JSON: expected ',' or ']' after the element on line {line}"
        if self._buf[self._pos] == "{":  # a missing comma: read the next element all the same
            yield _RawRow(at_line, problem=reason)
            return True
        yield self._resync(reason, at_line, self._pos, column)
        return self._pos < len(self._buf)

    def _decode(self) -> object:
        """Decode the value at `_pos`, reading more text while it is cut short."""
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as error:
                pending = len(self._buf) - self._pos
                if self._eof or pending > _MAX_ELEMENT_CHARS or "\n" in self._buf[error.pos :]:
                    raise
                self._fill(max(pending, _CHUNK_BYTES))  # then decode again, at the moved `_pos`
                continue
            # a number that ends the buffer may go on in the next chunk
            if end < len(self._buf) or self._eof or type(value) not in (int, float):
                self._pos = end
                return value
            self._fill()

    def _resync(self, reason: str, line: int, search_from: int, column: int) -> _RawRow:
        """Skip to a line starting with '{' at most at `column`, or ']' left of it."""
        while True:
            found = _LINE_OPENING.search(self._buf, search_from)
            while found:
                indent = len(found.group(1)) + 1
                if indent <= column - (found.group(2) == "]"):
                    self._pos = found.start(2)
                    resumed, _ = self._locate(self._pos)
                    return _RawRow(line, problem=f"{reason}; reading on from line {resumed}")
                found = _LINE_OPENING.search(self._buf, found.end())
            newline = self._buf.rfind("\n", search_from)
            self._pos = newline if newline >= 0 else len(self._buf)  # keep a partial line only
            self._locate(self._pos)
            if not self._fill():
                self._pos = len(self._buf)
                return _RawRow(line, problem=f"{reason}; no element follows, the rest was skipped")
            search_from = self._pos

    def _skip_space(self) -> bool:
        """Move `_pos` past whitespace; False when the file ends first."""
        while True:
            found = _NOT_SPACE.search(self._buf, self._pos)
            if found:
                self._pos = found.start()
                return True
            self._pos = len(self._buf)
            if not self._fill():
                return False

    def _fill(self, want: int = 1) -> bool:
        """Drop the text before `_mark`, then append at least `want` characters (whole chunks, fewer
        at the end of the file); False when nothing was added."""
        self._buf = self._buf[self._mark :]
        self._pos -= self._mark
        self._mark = 0
        added = 0
        while added < want and not self._eof:
            data = self._raw.read(_CHUNK_BYTES)
            self._eof = not data
            text = self._bytes.decode(data, final=self._eof)
            if not self._started and text:
                self._started = True
                text = text.removeprefix("\ufeff")
            self._buf += text
            added += len(text)
        return added > 0

    def _location(self, pos: int) -> tuple[int, int]:
        """1-based line and column of `pos` (at or after `_mark`)."""
        newlines = self._buf.count("\n", self._mark, pos)
        if not newlines:
            return self._line, self._col + pos - self._mark + 1
        return self._line + newlines, pos - self._buf.rfind("\n", self._mark, pos)

    def _locate(self, pos: int) -> tuple[int, int]:
        """Like `_location`, and move `_mark` to `pos`: the text before it may be dropped."""
        self._line, column = self._location(pos)
        self._col = column - 1
        self._mark = pos
        return self._line, column


# --- Parquet ------------------------------------------------------------------------------------


def _parquet_rows(file: Path, parquet: Any) -> Generator[_RawRow, None, None]:
    arrow_error = importlib.import_module("pyarrow").ArrowException
    number = 0
    try:
        with parquet.ParquetFile(file) as reader:
            for batch in reader.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    number += 1  # a null is a missing value, like an empty CSV cell
                    yield _RawRow(number, {k: v for k, v in row.items() if v is not None})
    except (OSError, arrow_error) as error:
        yield _RawRow(0, problem=f"cannot read the Parquet file after row {number}: {error}")


# --- rows to prompts ----------------------------------------------------------------------------


class _BadRow(Exception):
    """Why a row cannot be used (internal: turned into an `InputError` with the location)."""


class _RowParser:
    """Turns raw rows into prompts or errors, remembering the ids seen to catch duplicates."""

    def __init__(self, path: str, fmt: str, prompt_field: str | None, id_field: str) -> None:
        self.path = path
        self._unit = "row" if fmt == "parquet" else "line"
        self._fields = DEFAULT_PROMPT_FIELDS if prompt_field is None else (prompt_field,)
        self._explicit = prompt_field is not None
        self._id_field = id_field
        self._seen: dict[str, int] = {}

    def parse(self, raw: _RawRow) -> Prompt | InputError:
        """The row's prompt, or the error that says what is wrong with it and where."""
        try:
            if raw.problem is not None:
                raise _BadRow(raw.problem)
            prompt = self._prompt(raw.value)
        except _BadRow as bad:
            return self._error(str(bad), raw.where)
        self._seen[prompt.id] = raw.where
        return prompt

    def _prompt(self, row: object) -> Prompt:
        if not isinstance(row, dict):
            raise _BadRow(f"the row is {_kind(row)}, not an object")
        messages, used = self._messages(row)
        given = _given_id(row.get(self._id_field), self._id_field)
        prompt_id = _derived_id(messages) if given is None else given
        if prompt_id in self._seen:
            raise _BadRow(self._duplicate(prompt_id, derived=given is None))
        skipped = {used, self._id_field}
        extra = {key: value for key, value in row.items() if key not in skipped}
        return Prompt(prompt_id, messages, extra)

    def _messages(self, row: dict[Any, Any]) -> tuple[tuple[Message, ...], str]:
        field = next((name for name in self._fields if row.get(name) is not None), None)
        chat = row.get(MESSAGES_FIELD)
        if field is not None and chat is not None and self._explicit:
            raise _BadRow(f"the row has both {field!r} and {MESSAGES_FIELD!r}; keep one")
        if field is not None:
            return _text_messages(field, row[field]), field
        if chat is not None:
            return _chat_messages(chat), MESSAGES_FIELD
        looked_for = ", ".join(repr(name) for name in (*self._fields, MESSAGES_FIELD))
        has = ", ".join(repr(key) for key in list(row)[:20]) or "no fields"
        raise _BadRow(f"no prompt: looked for {looked_for}; the row has {has}")

    def _duplicate(self, prompt_id: str, *, derived: bool) -> str:
        first = self._seen[prompt_id]
        reason = f"duplicate id {prompt_id!r}, first used on {self._unit} {first}"
        if derived:
            reason += " (derived from the prompt: the same prompt with no id; give rows ids)"
        return reason

    def _error(self, reason: str, where: int) -> InputError:
        if not where:
            return InputError(reason, path=self.path)
        if self._unit == "line":
            return InputError(reason, path=self.path, line=where)
        error = InputError(f"row {where}: {reason}", path=self.path)
        error.line = where
        return error


def _text_messages(field: str, value: object) -> tuple[Message, ...]:
    if not isinstance(value, str):
        raise _BadRow(f"the prompt field {field!r} must be a string, got {_kind(value)}")
    if not value.strip():
        raise _BadRow(f"the prompt field {field!r} is empty")
    return (Message("user", value),)


def _chat_messages(value: object) -> tuple[Message, ...]:
    if isinstance(value, str):  # CSV, or a string column: the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise _BadRow(f"{MESSAGES_FIELD!r} is a string but not JSON: {error.msg}") from None
    if not isinstance(value, list) or not value:
        raise _BadRow(
            f"{MESSAGES_FIELD!r} must be a non-empty list of {{role, content}} objects, "
            f"got {'an empty list' if value == [] else _kind(value)}"
        )
    messages = tuple(_message(index, item) for index, item in enumerate(value))
    if messages[-1].role != "user":
        raise _BadRow(f"{MESSAGES_FIELD!r} must end with a user message, not {messages[-1].role!r}")
    if not messages[-1].content.strip():
        raise _BadRow(f"the last user message in {MESSAGES_FIELD!r} is empty")
    return messages


def _message(index: int, item: object) -> Message:
    where = f"{MESSAGES_FIELD}[{index}]"
    if not isinstance(item, dict):
        raise _BadRow(f"{where} must be an object with 'role' and 'content', got {_kind(item)}")
    role = item.get("role")
    known = _ROLES.get(role) if isinstance(role, str) else None
    if known is None:
        raise _BadRow(f"{where} has role {role!r}; expected 'system', 'user' or 'assistant'")
    content = item.get("content")
    if not isinstance(content, str):
        raise _BadRow(f"{where} 'content' must be a string, got {_kind(content)}")
    return Message(known, content)


def _given_id(value: object, id_field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _BadRow(
            f"the id field {id_field!r} must be a string or an integer, got {_kind(value)}"
        )
    text = str(value)
    if not text.strip():
        raise _BadRow(f"the id field {id_field!r} is empty")
    return text


def _derived_id(messages: tuple[Message, ...]) -> str:
    """``p-`` and 12 hex digits of the SHA-256 of the conversation's canonical JSON."""
    canonical = json.dumps(
        [message.to_dict() for message in messages],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return "p-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _kind(value: object) -> str:
    """A JSON-ish name for a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
