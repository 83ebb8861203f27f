"""Checks on export options shared by the SFT and DPO builders."""

from __future__ import annotations

import math

from toa.errors import ExportError

__all__ = ["check_finite"]


def check_finite(name: str, value: float | None, *, minimum: float | None = None) -> None:
    """Raise `ExportError` unless `value` is None, or finite and at least `minimum`."""
    if value is None:
        return
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" and >= {minimum}" if minimum is not None else ""
        raise ExportError(f"{name} must be a finite number{bound}, got {value}")
