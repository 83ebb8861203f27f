"""Fixtures of the search tests: simulated worlds, contexts and prompts."""

from __future__ import annotations

import pytest

from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World
from toa.types import Prompt


@pytest.fixture
def helps() -> World:
    return World.named("helps")


@pytest.fixture
def ctx(helps: World) -> SimulatedContext:
    return SimulatedContext(helps)


@pytest.fixture
def prompt() -> Prompt:
    return simulated_prompts(1)[0]
