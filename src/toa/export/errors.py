"""The one error the export raises on purpose (a `TOAError`, so the CLI reports it cleanly)."""

from __future__ import annotations

import math

from toa.errors import TOAError

__all__ = ["ExportError", "check_finite"]


class ExportError(TOAError):
    """An export option, the output path or an optional dependency is wrong; says what to do."""


def check_finite(name: str, value: float | None, *, minimum: float | None = None) -> None:
    """Raise `ExportError` unless `value` is None, or finite and at least `minimum`."""
    if value is None:
        return
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" and >= {minimum}" if minimum is not None else ""
        raise ExportError(f"{name} must be a finite number{bound}, got {value}")
