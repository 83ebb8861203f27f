"""Helpers for tests (users' too): simulated worlds and the fake OpenAI-compatible server."""

from __future__ import annotations

from toa.testing.request_log import read_request_log, request_id
from toa.testing.serve import build_world, running_in_thread, serve
from toa.testing.server import FakeServer, Faults, ReceivedRequest
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import (
    AgentProfile,
    World,
    decode_quality,
    encode_quality,
    family_marker,
    prompt_family,
    qualities_in,
)

__all__ = [
    "AgentProfile",
    "FakeServer",
    "Faults",
    "ReceivedRequest",
    "SimulatedContext",
    "World",
    "build_world",
    "decode_quality",
    "encode_quality",
    "family_marker",
    "prompt_family",
    "qualities_in",
    "read_request_log",
    "request_id",
    "running_in_thread",
    "serve",
    "simulated_prompts",
]
