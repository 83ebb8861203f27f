"""TOA: multi-agent sampling with Tree Search-based Orchestrated Agents (arXiv 2412.17061)."""

from __future__ import annotations

from toa.errors import (
    AgentConnectionError,
    AgentError,
    AgentTimeoutError,
    AgentUnavailableError,
    AuthenticationError,
    ConfigError,
    ContextLengthError,
    FatalAgentError,
    InputError,
    InvalidRequestError,
    RateLimitError,
    ResponseFormatError,
    RetryableAgentError,
    ServerError,
    TOAError,
    is_retryable,
)
from toa.types import Completion, Message, Prompt, SamplingParams, Usage

__version__ = "0.1.0.dev0"

__all__ = [
    "AgentConnectionError",
    "AgentError",
    "AgentTimeoutError",
    "AgentUnavailableError",
    "AuthenticationError",
    "Completion",
    "ConfigError",
    "ContextLengthError",
    "FatalAgentError",
    "InputError",
    "InvalidRequestError",
    "Message",
    "Prompt",
    "RateLimitError",
    "ResponseFormatError",
    "RetryableAgentError",
    "SamplingParams",
    "ServerError",
    "TOAError",
    "Usage",
    "__version__",
    "is_retryable",
]
