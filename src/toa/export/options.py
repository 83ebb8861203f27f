"""Export options from plain strings and numbers (the command line's values), checked.

`make_options` turns ``toa export``'s flags into `SFTOptions` or `DPOOptions`, so the CLI stays a
thin parser and every check lives here, where it is tested.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from toa.errors import ExportError
from toa.export.dpo import DPOOptions
from toa.export.report import ExportFormat
from toa.export.sft import SFTOptions

__all__ = ["make_options"]


def _rejected_rank(rejected: str | None, rejected_rank: int | None) -> int | None:
    """The DPO rejected rank from ``--rejected lowest|rank`` and ``--rejected-rank K``."""
    if rejected not in (None, "lowest", "rank"):
        raise ExportError(f"--rejected must be lowest or rank, got {rejected!r}")
    if rejected == "lowest" and rejected_rank is not None:
        raise ExportError("--rejected lowest and --rejected-rank K contradict: give one")
    if rejected == "rank" and rejected_rank is None:
        raise ExportError("--rejected rank needs --rejected-rank K (the paper: 30 of 160)")
    return rejected_rank


def make_options(format: str, **flags: Any) -> tuple[ExportFormat, SFTOptions | DPOOptions]:
    """The checked format and its options, from flags named like the options' fields.

    The flags are `SFTOptions`' and `DPOOptions`' fields (the `toa export` options, with '_' for
    '-'), plus `rejected`: 'lowest', 'rank' (needs `rejected_rank`) or None (rank when
    `rejected_rank` is given, else lowest). `layout` accepts 'prompt-completion' for
    'prompt_completion'. A flag of the other format is ignored, so the command line can pass
    all of its values whichever format it exports.

    Raises:
        ExportError: an unknown format, flag or value, or contradictory settings.
    """
    unknown = sorted(set(flags) - _FLAGS)
    if unknown:
        raise ExportError(f"unknown export option(s) {unknown}; the options are {sorted(_FLAGS)}")
    if format == "sft":
        if "layout" in flags:
            flags["layout"] = str(flags["layout"]).replace("-", "_")
        return "sft", SFTOptions(**_fields_of(SFTOptions, flags))  # checks the values
    if format != "dpo":
        raise ExportError(f"--format must be sft or dpo, got {format!r}")
    flags["rejected_rank"] = _rejected_rank(flags.pop("rejected", None), flags.get("rejected_rank"))
    return "dpo", DPOOptions(**_fields_of(DPOOptions, flags))  # checks the values


def _fields_of(options: type[Any], flags: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(options)}
    return {name: value for name, value in flags.items() if name in names}


_FLAGS = frozenset(
    {f.name for f in fields(SFTOptions)} | {f.name for f in fields(DPOOptions)} | {"rejected"}
)
