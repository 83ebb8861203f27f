"""Whether the input is still the one a run was made from, and what changed in it.

A run's manifest records its input: the path, the prompt field, the sha256 and size of the file's
bytes and its number of good prompts (`InputIdentity`). Each prompt's content hash (`prompt_hash`:
its messages and its other fields, everything the strategy and the reward see) is stored in the
run store when its search starts; stores written before that have the prompt in its result line.

When a run is continued (`toa resume`, or `toa run` into an existing run directory), the input's
bytes are hashed first. The same sha256 and prompt field: the same input, also when the file was
moved (the manifest takes the new path). Otherwise one streaming pass (`scan_input`) compares every
prompt with the store, and `check_input` decides:

- another path with other prompts is another input: refused, naming both files;
- a finished prompt whose content changed (an edited prompt) would keep the result of its old
  text: refused, naming the prompts, unless `rerun_changed` (``--rerun-changed``) discards their
  results to run them again;
- prompts with no result yet (appended to the file) run; finished prompts no longer in the input
  keep their results (a warning counts them);
- an unfinished prompt (calls stored, or a failed result) whose content changed starts over: its
  stored rewards, prior and evidence belong to the old text (its calls are replayed only for
  identical requests).

Every refusal is an `InputError` raised before anything is sent or rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toa.errors import InputError
from toa.inputs.readers import read_prompts
from toa.store.run_store import StoreReader
from toa.types import Prompt

__all__ = [
    "InputIdentity",
    "InputScan",
    "check_input",
    "file_digest",
    "prompt_hash",
    "same_input",
    "scan_input",
]

logger = logging.getLogger(__name__)

_NAMED = 10  # edited prompts named in a refusal
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class InputIdentity:
    """What a run's manifest records of its input (the ``input`` object of manifest.json)."""

    path: str  # resolved
    prompt_field: str | None
    sha256: str  # of the file's bytes (compressed ones for a .gz file)
    bytes: int
    prompts: int  # good prompts in the whole file

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "prompt_field": self.prompt_field,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "prompts": self.prompts,
        }


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _content_hash(messages: Any, extra: Any) -> str:
    canonical = json.dumps(
        {"messages": messages, "extra": extra},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def prompt_hash(prompt: Prompt) -> str:
    """sha256 of a prompt's content: its messages and its extra fields (a reward's reference or
    gold answer, ...), not its id. Equal to the hash of the prompt in its result line."""
    return _content_hash([m.to_dict() for m in prompt.messages], dict(prompt.extra))


def _result_prompt_hash(result_json: str) -> str | None:
    """The content hash of the prompt a stored result line was made from (None: not readable)."""
    try:
        result = json.loads(result_json)
    except ValueError:
        return None
    if not isinstance(result, dict) or "messages" not in result:
        return None
    return _content_hash(result["messages"], result.get("extra", {}))


def same_input(recorded: Mapping[str, Any], sha256: str, prompt_field: str | None) -> bool:
    """Whether the manifest's input has these bytes, read with this prompt field."""
    return recorded.get("sha256") == sha256 and recorded.get("prompt_field") == prompt_field


@dataclass
class InputScan:
    """One pass over the input against the run store (see `scan_input`)."""

    prompts: int = 0  # good prompts in the file (all of them, when counted to the end)
    total: int = 0  # good prompts within the limit: what this run may start
    done: int = 0  # of those, finished in the store and unchanged
    compared: bool = False  # whether each prompt was compared with the store
    new: int = 0  # prompts the store holds nothing of (no result, never started)
    found: int = 0  # finished prompts of the store that are in the input, changed or not
    removed: int = 0  # finished prompts of the store that are no longer in the input
    edited: list[str] = field(default_factory=list)  # finished prompts whose content changed
    restarted: list[str] = field(default_factory=list)  # unfinished ones whose content changed

    @property
    def differs(self) -> bool:
        """Whether the input's prompts differ from what the store knows of them."""
        return bool(self.edited or self.restarted or self.new or self.removed)


def scan_input(
    store: StoreReader,
    path: Path,
    prompt_field: str | None,
    limit: int | None,
    *,
    compare: bool,
    count_all: bool,
) -> InputScan:
    """Count the input's prompts (and those already done), streaming; with `compare`, also
    compare each prompt's content with the store's. Reads to the end of the file when
    `compare` or `count_all`, else stops at `limit`."""
    scan = InputScan(compared=compare)
    to_end = compare or count_all
    for item in read_prompts(path, prompt_field=prompt_field, limit=None if to_end else limit):
        if not isinstance(item, Prompt):
            continue
        scan.prompts += 1
        within = limit is None or scan.prompts <= limit
        scan.total += within
        if compare:
            _compare(store, item, scan, within=within)
        elif within:
            scan.done += store.result_status(item.id) == "done"
    if compare:
        scan.removed = max(0, store.summary().prompts_done - scan.found)
    return scan


def _compare(store: StoreReader, prompt: Prompt, scan: InputScan, *, within: bool) -> None:
    status = store.result_status(prompt.id)
    stored = store.prompt_hash(prompt.id)
    if status is None and stored is None:
        scan.new += 1
        return
    if stored is None:  # a store of an older TOA: the prompt is in its result line
        result = store.result_for(prompt.id)
        stored = _result_prompt_hash(result[1]) if result is not None else None
    changed = stored is not None and stored != prompt_hash(prompt)
    if status == "done":
        scan.found += 1
        if changed:
            scan.edited.append(prompt.id)
        elif within:
            scan.done += 1
    elif changed:
        scan.restarted.append(prompt.id)


def _describe(recorded: Mapping[str, Any]) -> str:
    sha = recorded.get("sha256")
    prompts = recorded.get("prompts")
    text = f"sha256 {sha[:12]}" if isinstance(sha, str) else "sha256 not recorded"
    if isinstance(prompts, int):
        text += f", {prompts} prompts"
    if recorded.get("prompt_field") is not None:
        text += f", prompt field {recorded['prompt_field']!r}"
    return text


def _differences(scan: InputScan) -> str:
    parts = [
        (len(scan.edited), "finished prompt(s) edited"),
        (scan.new, "prompt(s) not in the run"),
        (scan.removed, "finished prompt(s) missing"),
        (len(scan.restarted), "unfinished prompt(s) changed"),
    ]
    listed = [f"{count} {what}" for count, what in parts if count]
    return ", ".join(listed) or "the same prompts in other bytes"


def _named(ids: list[str]) -> str:
    shown = ", ".join(repr(prompt_id) for prompt_id in ids[:_NAMED])
    return shown + (f" and {len(ids) - _NAMED} more" if len(ids) > _NAMED else "")


def check_input(
    recorded: Mapping[str, Any],
    current: InputIdentity,
    scan: InputScan,
    *,
    run_dir: Path,
    rerun_changed: bool = False,
) -> None:
    """Refuse an input that is not this run's, or edits of its finished prompts; log the rest.

    `recorded` is the manifest's ``input`` object, `current` the input given now; `scan` must
    have been made with ``compare=True`` unless `same_input` holds.

    Raises:
        InputError: another file with other prompts (naming both files and the differences),
            or finished prompts edited without `rerun_changed` (naming them).
    """
    old_path = str(recorded.get("path", ""))
    moved = old_path != current.path
    if same_input(recorded, current.sha256, current.prompt_field):
        if moved:
            logger.info(
                "%s: the run's input moved from %s to %s (the same content)",
                run_dir,
                old_path,
                current.path,
            )
        return
    assert scan.compared, "a changed input needs a comparing scan"
    known = isinstance(recorded.get("sha256"), str)
    # An older TOA recorded no sha256: another path is refused only when finished prompts differ
    # (prompts it never finished look new either way).
    foreign = scan.differs if known else bool(scan.edited or scan.removed)
    if moved and foreign:
        raise InputError(
            f"{run_dir}: this run was made from {old_path} ({_describe(recorded)}); you gave "
            f"{current.path} ({_describe(current.to_dict())}): {_differences(scan)}. Nothing was "
            f"sent and the run is unchanged. Use the original input (-i {old_path}), or start a "
            "new run directory (-o)"
        )
    if scan.edited and not rerun_changed:
        old_field = recorded.get("prompt_field")
        field = (
            f" (the prompt field was {old_field!r}, now {current.prompt_field!r})"
            if old_field != current.prompt_field
            else ""
        )
        raise InputError(
            f"{current.path}: {len(scan.edited)} finished prompt(s) of the run in {run_dir} "
            f"changed since they ran{field}: {_named(scan.edited)}; their results come from the "
            "old content. Nothing was sent and the run is unchanged. Restore their old content, "
            "or pass --rerun-changed to discard those results and run the prompts again"
        )
    if moved:
        logger.info("%s: the run's input is now %s (was %s)", run_dir, current.path, old_path)
    if scan.edited:
        logger.warning(
            "%s: %d edited finished prompt(s) run again (--rerun-changed): %s; their old results "
            "are discarded",
            current.path,
            len(scan.edited),
            _named(scan.edited),
        )
    if scan.restarted:
        logger.info(
            "%s: %d unfinished prompt(s) changed since they started: they start over",
            current.path,
            len(scan.restarted),
        )
    if scan.new:
        logger.info("%s: %d prompt(s) new to the run", current.path, scan.new)
    if not scan.differs:
        logger.info("%s: the file changed, the prompts the run holds did not", current.path)
    if scan.removed:
        logger.warning(
            "%s: %d finished prompt(s) of the run are no longer in the input; their results are "
            "kept",
            current.path,
            scan.removed,
        )
