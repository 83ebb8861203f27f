"""Run-configuration sections for the running local model servers (what `toa models config` prints).

`running_servers` reads the state of each bundled model's server (it changes nothing) and keeps
those that answer (up, or busy generating). `config_sections` turns them into the ``agents:`` list
of a run configuration (mode, model id, base URL, sampling, and the limits `agent_specs` uses:
one request at a time per server, generous timeouts, few retries) and, when the judge model
(`DEFAULT_JUDGE`) is up with log-probabilities, a ``reward:`` of type ``judge`` that scores each
response by P(yes) from the judge's first-token log-probabilities.

That reward is label-free: ``reference_fields: []``, so the judge never sees a row's
``gold_answer`` or ``reference`` (the judge's default is to show them); gold answers stay in the
input only to evaluate the chosen answers afterwards. ``fallback: fail``: a judge server without
log-probabilities gives failures naming the cause instead of silently switching to 1-10 scores.

`config_yaml` renders the sections as YAML that `toa.config.load_config` accepts once a
``strategy:`` (and the rest) is added; see examples/local-judge.yaml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from toa.agents.spec import AgentSpec
from toa.errors import ConfigError
from toa.local.registry import BUNDLED_MODELS, DEFAULT_JUDGE, ModelRefs, get_model, resolve_models
from toa.local.specs import LOCAL_BREAKER, LOCAL_RETRY, LOCAL_TIMEOUT_S, agent_specs
from toa.local.state import ServerInfo, read_server
from toa.types import SamplingParams

__all__ = [
    "DEFAULT_SAMPLING",
    "JUDGE_TOP_LOGPROBS",
    "agent_config",
    "config_sections",
    "config_yaml",
    "judge_reward_config",
    "running_servers",
]

DEFAULT_SAMPLING = SamplingParams(temperature=0.7, max_tokens=256)
"""The agents' sampling unless told otherwise (that of `agent_specs`)."""

JUDGE_TOP_LOGPROBS = 10
"""First-token alternatives the judge asks for: enough to hold every Yes/No variant."""


def running_servers(
    models: ModelRefs = None, *, state_dir: Path | str | None = None
) -> dict[str, ServerInfo]:
    """The servers that answer (state 'up' or 'busy'), by model name, in table order.

    None means every bundled model (the judge included). Starting, stale and stopped servers
    are left out. Nothing is started, stopped or cleaned.
    """
    entries = tuple(BUNDLED_MODELS.values()) if models is None else resolve_models(models)
    found: dict[str, ServerInfo] = {}
    for entry in entries:
        state, info = read_server(entry, state_dir)
        if state in ("up", "busy") and info is not None:
            found[entry.name] = info
    return found


def agent_config(spec: AgentSpec) -> dict[str, Any]:
    """One ``agents:`` entry (the fields of `toa.config.AgentConfig`) for an agent spec."""
    s = spec.sampling
    config: dict[str, Any] = {
        "name": spec.name,
        "base_url": spec.base_urls[0] if len(spec.base_urls) == 1 else list(spec.base_urls),
        "model": spec.model,
        "mode": spec.mode,
    }
    if spec.prompt_template != "{prompt}":
        config["prompt_template"] = spec.prompt_template
    if spec.params_b is not None:
        config["params_b"] = spec.params_b
    config["max_concurrency"] = spec.max_concurrency
    config["timeout_s"] = spec.timeout_s
    config["sampling"] = _Flow(
        temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=list(s.stop)
    )
    if spec.extra_body:
        config["extra_body"] = _Flow(spec.extra_body)
    config["retry"] = _Flow(asdict(spec.retry))
    config["breaker"] = _Flow(asdict(spec.breaker))
    return config


def judge_reward_config(
    info: ServerInfo,
    *,
    top_logprobs: int = JUDGE_TOP_LOGPROBS,
    timeout_s: float = LOCAL_TIMEOUT_S,
) -> dict[str, Any]:
    """The ``reward:`` section: the `judge` reward, P(yes), on `info`'s server, label-free."""
    entry = info.entry or get_model(info.name)
    return {
        "type": "judge",
        "mode": "yes_no",
        "top_logprobs": top_logprobs,
        "fallback": "fail",
        "reference_fields": [],
        "agent": {
            "name": entry.name,
            "base_url": info.base_url,
            "model": entry.model_id or entry.name,
            "mode": entry.mode,
            "max_concurrency": 1,
            "timeout_s": timeout_s,
            "retry": _Flow(asdict(LOCAL_RETRY)),
            "breaker": _Flow(asdict(LOCAL_BREAKER)),
        },
    }


def config_sections(
    servers: Mapping[str, ServerInfo] | Iterable[ServerInfo],
    *,
    judge: bool | None = None,
    sampling: SamplingParams | None = None,
) -> dict[str, Any]:
    """``{"agents": [...], "reward": {...}}`` for running servers (e.g. `running_servers()`).

    Args:
        servers: the servers to configure.
        judge: None: the judge model's server becomes the `judge` reward when it is among
            `servers` and serves log-probabilities (otherwise it is an agent like the others);
            True: it must (ConfigError otherwise); False: no reward, every server is an agent.
        sampling: the agents' sampling (default `DEFAULT_SAMPLING`; completion models add
            their stop sequences).

    Either key is left out when it would be empty; ConfigError when both would be.
    """
    infos = list(servers.values()) if isinstance(servers, Mapping) else list(servers)
    judge_info = next((i for i in infos if i.name == DEFAULT_JUDGE), None)
    use_judge = judge is not False and judge_info is not None and judge_info.logprobs is True
    if judge is True and not use_judge:
        why = "is not up" if judge_info is None else "runs without log-probabilities"
        raise ConfigError(
            f"the judge model {DEFAULT_JUDGE!r} {why}; start it with `toa models up --judge` "
            f"(after `toa models down {DEFAULT_JUDGE}` if it runs already)"
        )
    agents = [i for i in infos if not (use_judge and i is judge_info)]
    sections: dict[str, Any] = {}
    if agents:
        specs = agent_specs(agents, sampling=sampling or DEFAULT_SAMPLING)
        sections["agents"] = [agent_config(spec) for spec in specs]
    if use_judge:
        assert judge_info is not None
        sections["reward"] = judge_reward_config(judge_info)
    if not sections:
        raise ConfigError(
            "no local model servers are up; start them with `toa models up` "
            "(add --judge for the judge model)"
        )
    return sections


class _Flow(dict[str, Any]):
    """A small mapping written on one line (sampling, retry, breaker)."""


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (prompt templates), escapes for short ones with line
    breaks (stop sequences), keys in the order given."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    lines = value.splitlines()
    block = "\n" in value.strip("\n") and all(line == line.rstrip() for line in lines)
    style = "|" if block else ('"' if "\n" in value else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _flow(dumper: yaml.SafeDumper, value: _Flow) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=True)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(_Flow, _flow)

_HEADER = """\
# Generated by `toa models config` from the local model servers running now. Their ports change
# when they restart: run it again after `toa models up`. Add `strategy:`, `templates:` (and
# `reward:` when none is below) to make a whole configuration; see examples/local-judge.yaml.
"""

_REWARD_NOTE = """\
# The judge model grades each response by P(yes) from its first-token log-probabilities.
# Label-free: `reference_fields: []`, so it never sees a gold answer or reference of the input.
"""


def _dump(data: Mapping[str, Any]) -> str:
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=96)


def config_yaml(sections: Mapping[str, Any], *, header: bool = True) -> str:
    """`config_sections`' result as YAML (with explaining comments when `header`)."""
    parts = [_HEADER] if header else []
    if "agents" in sections:
        parts.append(_dump({"agents": sections["agents"]}))
    if "reward" in sections:
        if header:
            parts.append(("\n" if len(parts) > 1 else "") + _REWARD_NOTE)
        parts.append(_dump({"reward": sections["reward"]}))
    return "".join(parts)
