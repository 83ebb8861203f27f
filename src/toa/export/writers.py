"""Row writers: JSON Lines (stdlib), Parquet (pyarrow) and a Hugging Face `datasets` directory.

Each writer streams rows (memory does not grow with the export) into a temporary file beside OUT
and moves it into place only once complete, so OUT is either the previous export or the new one,
never half of one. The column list fixes the schema, so an export with no rows still has its
columns. The optional libraries are imported only when their format is used:
``pip install 'toa-synth[parquet]'`` for Parquet and ``'toa-synth[datasets]'`` for a directory.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from toa.errors import ExportError
from toa.export.records import Column, ColumnKind
from toa.store.layout import MANIFEST_NAME, RUN_FILES

__all__ = ["OutputKind", "RowWriter", "check_output", "output_kind", "writing"]

OutputKind = Literal["jsonl", "parquet", "datasets"]
_BATCH_ROWS = 1024
_DATASET_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")


class RowWriter(Protocol):
    """Takes rows one at a time; `commit` puts the output in place, `abort` removes it."""

    def write(self, row: Mapping[str, Any]) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def output_kind(out: Path) -> OutputKind:
    """'jsonl' or 'parquet' by OUT's suffix; 'datasets' for an existing directory or no suffix.

    Raises:
        ExportError: any other suffix (a likely typo such as ``.json``).
    """
    suffix = out.suffix.lower()
    if suffix in (".jsonl", ".parquet"):
        return "jsonl" if suffix == ".jsonl" else "parquet"
    if out.is_dir() or not suffix:
        return "datasets"
    raise ExportError(
        f"{out}: OUT must end in .jsonl or .parquet, or be a directory (a `datasets` "
        "save_to_disk folder); create the directory first if its name has a dot"
    )


def check_output(out: Path) -> OutputKind:
    """OUT's kind, after checking it can be written without destroying anything else.

    Raises:
        ExportError: OUT's folder is missing, OUT is a run directory or one of a run's own files
            (results.jsonl, store.sqlite, ...), or OUT is a directory that holds something
            other than a saved dataset, or a file stands where a directory export would go.
    """
    kind = output_kind(out)
    if not out.parent.is_dir():
        raise ExportError(f"{out}: the folder {out.parent} does not exist; create it first")
    if (out.parent / MANIFEST_NAME).is_file() and out.name in RUN_FILES:
        raise ExportError(
            f"{out}: is one of the run's own files ({out.parent} is a run directory); "
            "write the export somewhere else"
        )
    if (out / MANIFEST_NAME).is_file():
        raise ExportError(f"{out}: is a run directory; write the export somewhere else")
    if kind == "datasets" and out.exists():
        if not out.is_dir():
            raise ExportError(f"{out}: a file is in the way of the dataset directory")
        names = {p.name for p in out.iterdir()}
        if names and not names.intersection(_DATASET_MARKERS):
            raise ExportError(
                f"{out}: the directory is not empty and is not a saved dataset; "
                "choose a new path or empty it"
            )
    elif kind != "datasets" and out.is_dir():
        raise ExportError(f"{out}: is a directory; choose a file path ending in .{kind}")
    return kind


def _optional(module: str, extra: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(f"{what} needs {extra}: pip install 'toa-synth[{extra}]'") from exc


def _temp_beside(out: Path) -> Path:
    """A fresh hidden name beside `out` (not created: the file gets the usual permissions)."""
    return out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")


class JsonlWriter:
    """One JSON object per line, UTF-8, no NaN (rewards are finite by construction)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp = _temp_beside(out)
        self.file = self.tmp.open("x", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        self.file.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def arrow_schema(columns: Sequence[Column]) -> Any:
    """The pyarrow schema of `columns` (messages: list<struct<role: string, content: string>>)."""
    pa = _optional("pyarrow", "parquet", "writing Parquet or a dataset directory")
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    types: dict[ColumnKind, Any] = {
        "messages": pa.list_(message),
        "str": pa.string(),
        "float": pa.float64(),
        "int": pa.int64(),
    }
    return pa.schema([pa.field(name, types[kind], nullable=False) for name, kind in columns])


class _ArrowBatches:
    """Buffers rows and hands them on as record batches of `_BATCH_ROWS` rows."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.pa = _optional("pyarrow", "parquet", "writing Parquet or a dataset directory")
        self.schema = arrow_schema(columns)
        self.rows: list[Mapping[str, Any]] = []

    def add(self, row: Mapping[str, Any]) -> Any | None:
        """Buffer `row`; a full batch to write, or None."""
        self.rows.append(row)
        return self.take() if len(self.rows) >= _BATCH_ROWS else None

    def take(self, *, empty: bool = False) -> Any | None:
        """The buffered rows as a batch (None when there are none, unless `empty`); empties the
        buffer."""
        if not self.rows and not empty:
            return None
        batch = self.pa.RecordBatch.from_pylist(self.rows, schema=self.schema)
        self.rows = []
        return batch


class ParquetWriter:
    """A Parquet file with the export's fixed schema, written in row batches."""

    def __init__(self, out: Path, columns: Sequence[Column]) -> None:
        pq = _optional("pyarrow.parquet", "parquet", "writing Parquet")
        self.out = out
        self.batches = _ArrowBatches(columns)
        self.tmp = _temp_beside(out)
        self.writer = pq.ParquetWriter(str(self.tmp), self.batches.schema)

    def write(self, row: Mapping[str, Any]) -> None:
        batch = self.batches.add(row)
        if batch is not None:
            self.writer.write_batch(batch)

    def commit(self) -> None:
        batch = self.batches.take()
        if batch is not None:
            self.writer.write_batch(batch)
        self.writer.close()
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


class DatasetsWriter:
    """A `datasets.Dataset.save_to_disk` directory, streamed through an Arrow file.

    Rows go to an Arrow IPC stream in a temporary folder beside OUT; `commit` memory-maps it as a
    Dataset (no copy in memory, no Hugging Face cache), saves it beside OUT and swaps it in.
    """

    def __init__(self, out: Path, columns: Sequence[Column]) -> None:
        self.datasets = _optional("datasets", "datasets", "writing a dataset directory")
        self.out = out
        self.batches = _ArrowBatches(columns)
        self.work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        self.arrow_path = self.work / "rows.arrow"
        pa = self.batches.pa
        self.sink = pa.OSFile(str(self.arrow_path), "wb")
        self.stream = pa.ipc.new_stream(self.sink, self.batches.schema)

    def write(self, row: Mapping[str, Any]) -> None:
        batch = self.batches.add(row)
        if batch is not None:
            self.stream.write_batch(batch)

    def commit(self) -> None:
        # at least one batch, even empty: `datasets` cannot load a stream without any
        self.stream.write_batch(self.batches.take(empty=True))
        self._close_stream()
        staged = self.work / "dataset"
        with _quiet_progress():
            dataset = self.datasets.Dataset.from_file(str(self.arrow_path))
            # an empty dataset needs one explicit shard, or `load_from_disk` cannot read it back
            shards = {"num_shards": 1} if len(dataset) == 0 else {}
            dataset.save_to_disk(str(staged), **shards)
        del dataset  # release the memory map before the folder goes
        _swap_directory(staged, self.out)
        shutil.rmtree(self.work, ignore_errors=True)

    def abort(self) -> None:
        self._close_stream()
        shutil.rmtree(self.work, ignore_errors=True)

    def _close_stream(self) -> None:
        if not self.sink.closed:
            self.stream.close()
            self.sink.close()


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No `datasets` progress bars on stderr for the block (library code prints nothing)."""
    tqdm = importlib.import_module("datasets.utils.tqdm")
    was_disabled = tqdm.are_progress_bars_disabled()
    tqdm.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            tqdm.enable_progress_bars()


def _swap_directory(staged: Path, out: Path) -> None:
    """Put `staged` at `out`, replacing an empty folder or an earlier saved dataset there."""
    if not out.exists():
        os.replace(staged, out)
        return
    old = staged.with_name("previous")
    os.replace(out, old)
    os.replace(staged, out)
    shutil.rmtree(old, ignore_errors=True)


def _open(kind: OutputKind, out: Path, columns: Sequence[Column]) -> RowWriter:
    if kind == "jsonl":
        return JsonlWriter(out)
    if kind == "parquet":
        return ParquetWriter(out, columns)
    return DatasetsWriter(out, columns)


@contextlib.contextmanager
def writing(out: Path, columns: Sequence[Column]) -> Iterator[RowWriter]:
    """A writer for OUT (kind by `check_output`): committed when the block ends, else removed."""
    writer = _open(check_output(out), out, columns)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.commit()
