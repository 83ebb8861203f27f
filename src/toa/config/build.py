"""From a configuration file to the settings a run is made of, with file:line errors.

`load_config` reads YAML, `parse_config` validates data against `toa.config.schema.RunConfig` and
builds `toa.settings.RunSettings`: the runtime agents, the strategy, the templates, the reward
factory, the runner settings and the prior. Every error names the file, the line, the field
path and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from toa.agents.spec import AgentSpec
from toa.config.locate import describe, line_of
from toa.config.rewards import build_reward
from toa.config.schema import (
    SETTINGS_BY_STRATEGY,
    PriorConfig,
    PriorSource,
    RunConfig,
    StrategyConfig,
)
from toa.errors import ConfigError
from toa.search import Templates, make_strategy
from toa.search.context import Strategy
from toa.search.moa import MoAConfig
from toa.search.normalise import Normalisation
from toa.search.presets import toa_preset
from toa.search.priors import Prior, load_prior
from toa.search.toa import UCB_SETTINGS, TOAConfig, TOASearch
from toa.settings import Price, RunnerSettings, RunSettings

__all__ = ["load_config", "parse_config", "with_overrides"]


def with_overrides(
    settings: RunSettings,
    *,
    strategy: str | None = None,
    budget: int | None = None,
    cache: str | None = None,
    agent: str | None = None,
    backend: str | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> RunSettings:
    """The same settings with the CLI's --strategy / --budget / --cache applied (and `agent`,
    the single agent of random / prs: `toa sweep --single-agent`; `backend`, `workers`,
    `address`: the runner's, `toa run --backend ray --workers N --ray-address A`).

    The overrides edit the run's configuration data (what the manifest records), which is then
    validated like a file: a new strategy gets its defaults and its own checks.
    """
    runner = {"backend": backend, "workers": workers, "address": address}
    runner = {k: v for k, v in runner.items() if v is not None}
    if strategy is None and budget is None and cache is None and agent is None and not runner:
        return settings
    data = _without_none(settings.config_data)
    if strategy is not None and strategy != data["strategy"].get("name"):
        data["strategy"] = {"name": strategy, "budget": data["strategy"].get("budget", 16)}
    if budget is not None:
        data["strategy"]["budget"] = budget
    if cache is not None:
        data["runner"]["cache"] = cache
    if agent is not None:
        data["strategy"]["agent"] = agent
    data["runner"].update(runner)
    return parse_config(data, source=settings.source)


def _without_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of JSON data without the keys whose value is None (the defaults)."""
    return {
        key: _without_none(value) if isinstance(value, Mapping) else value
        for key, value in data.items()
        if value is not None
    }


def load_config(path: str | Path) -> RunSettings:
    """Read, validate and build a YAML configuration file.

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is wrong (file, line, field).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the configuration is not UTF-8 text") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping with an `agents` list")
    return parse_config(data, source=str(path), yaml_node=node)


def parse_config(
    data: Mapping[str, Any], *, source: str = "<config>", yaml_node: yaml.Node | None = None
) -> RunSettings:
    """Validate configuration data (already parsed) and build the runtime settings."""
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source, yaml_node, RunConfig)) from None
    try:
        return _build(config, source)
    except ConfigError as exc:
        line = line_of(yaml_node, exc.loc) if isinstance(exc, _FieldError) else None
        raise ConfigError(f"{source}:{line}: {exc}" if line else f"{source}: {exc}") from None


class _FieldError(ConfigError):
    """A ConfigError about the field at `loc` (so that its line can be named)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _build(config: RunConfig, source: str) -> RunSettings:
    t = config.templates
    overrides = {
        role: text
        for role, text in (
            ("fresh", t.fresh),
            ("refine", t.refine),
            ("aggregate", t.aggregate),
            ("aggregate_system", t.aggregate_system),
        )
        if text is not None
    }
    templates = Templates.for_task(t.task, **overrides)
    names = [a.name for a in config.agents]
    strategy = _make_strategy(config.strategy, templates, names)
    prior_source, prior = _prior(config.strategy, strategy, tuple(names), source)
    return RunSettings(
        agents=_agent_specs(config),
        prices={
            a.name: Price(a.price.prompt_usd_per_mtok, a.price.completion_usd_per_mtok)
            for a in config.agents
            if a.price is not None
        },
        strategy=strategy,
        strategy_name=config.strategy.name,
        budget=config.strategy.budget,
        templates=templates,
        reward_factory=partial(build_reward, config.reward),
        runner=RunnerSettings(
            prompts_in_flight=config.runner.prompts_in_flight,
            cache=config.runner.cache,
            backend=config.runner.backend,
            workers=config.runner.workers,
            address=config.runner.address,
            reward_placement=config.runner.reward_placement,
            reward_num_gpus=config.runner.reward_num_gpus,
        ),
        seed=config.seed,
        config_data=config.model_dump(mode="json"),
        source=source,
        prior_source=prior_source,
        prior=prior,
    )


def _agent_specs(config: RunConfig) -> tuple[AgentSpec, ...]:
    """The runtime agents; a combination the schema let through but the client refuses is a
    configuration error at the agent's line, never a bare ValueError."""
    specs = []
    for index, agent in enumerate(config.agents):
        try:
            specs.append(agent.to_spec())
        except ValueError as exc:
            raise _FieldError(("agents", index), f"agents.{index} ({agent.name}): {exc}") from None
    return tuple(specs)


def _prior(
    s: StrategyConfig, strategy: Strategy, agents: tuple[str, ...], source: str
) -> tuple[PriorSource, Prior | None]:
    """Where prompts' priors come from; reads (and checks) a prior file before any call."""
    if not isinstance(strategy, TOASearch) or strategy.config.rule != "bayes":
        return "none", None
    config = s.prior or PriorConfig()
    if config.path is None:
        return config.source, None
    path = Path(config.path)
    if not path.is_absolute() and source not in ("<config>", "<string>"):
        path = Path(source).parent / path
    return config.source, load_prior(path, agents)


def _make_strategy(s: StrategyConfig, templates: Templates, agent_names: Sequence[str]) -> Strategy:
    given = {k for k, v in s.model_dump(exclude_none=True).items() if k not in ("name", "budget")}
    allowed = set(SETTINGS_BY_STRATEGY[s.name])
    stray = sorted(given - allowed)
    if stray:
        raise _FieldError(
            ("strategy", stray[0]),
            f"strategy.{stray[0]}: not a setting of strategy {s.name!r}; its settings are "
            f"{sorted(allowed) or 'none'}",
        )
    settings: dict[str, Any] = {
        k: getattr(s, k) for k in given if k not in ("normalize", "preset", "prior")
    }
    if s.name == "toa":
        _check_rule(s)
        if s.width is not None and s.width < len(agent_names):
            raise _FieldError(
                ("strategy", "width"),
                f"strategy.width: {s.width} is smaller than the number of agents "
                f"({len(agent_names)}): every agent needs a response at depth 1, so width must "
                f"be >= {len(agent_names)} (or leave it unset to derive it from the budget)",
            )
        settings["rule"] = _rule(s)
        if s.normalize is not None:
            settings["normalisation"] = Normalisation(kind=s.normalize.kind, tau=s.normalize.tau)
        if s.prior is not None and s.prior.strength is not None:
            settings["prior_strength"] = s.prior.strength
        if s.preset is not None:
            return make_strategy(
                "toa", templates=templates, **_fields(toa_preset(s.preset, **settings))
            )
    if s.name in ("random", "prs") and s.agent is not None and s.agent not in agent_names:
        raise _FieldError(
            ("strategy", "agent"),
            f"strategy.agent: {s.agent!r} is not one of the agents {list(agent_names)}",
        )
    return make_strategy(s.name, templates=templates, **settings)


def _rule(s: StrategyConfig) -> str:
    """TOA's rule: as given; else 'ucb' for a preset or when a UCB-only setting is given (the
    configurations written before 'bayes' existed keep their meaning); else 'bayes'."""
    if s.rule is not None:
        return s.rule
    given = s.model_dump(exclude_none=True)
    if s.preset is not None or any(k in given for k in UCB_SETTINGS):
        return "ucb"
    return "bayes"


def _check_rule(s: StrategyConfig) -> None:
    """The settings of TOA's two rules do not mix; a prior's source and path agree."""
    rule = _rule(s)
    if s.preset is not None and rule != "ucb":
        raise _FieldError(
            ("strategy", "rule"),
            f"strategy.rule: the paper preset {s.preset!r} uses the paper's rule 'ucb'; "
            "remove `rule` or the preset",
        )
    given = s.model_dump(exclude_none=True)
    if rule == "bayes":
        stray = [k for k in UCB_SETTINGS if k in given]
        if stray:
            raise _FieldError(
                ("strategy", stray[0]),
                f"strategy.{stray[0]}: applies to TOA's rule 'ucb' (the paper's UCB) only, and "
                "the rule here is 'bayes'; use `rule: ucb` or remove it",
            )
    if rule == "ucb" and s.aggregate is not None:
        raise _FieldError(
            ("strategy", "aggregate"),
            "strategy.aggregate: applies to TOA's rule 'bayes' only; the rule here is 'ucb'"
            + (f" (from preset {s.preset!r})" if s.preset else "")
            + "; remove it",
        )
    prior = s.prior
    if prior is None:
        return
    if rule == "ucb" and (prior.source != "none" or prior.strength is not None):
        raise _FieldError(
            ("strategy", "prior"),
            "strategy.prior: cross-prompt priors need TOA's rule 'bayes'; the rule here is "
            "'ucb'"
            + (f" (from preset {s.preset!r})" if s.preset else "")
            + "; remove `prior` or use `rule: bayes`",
        )
    if prior.source == "file" and prior.path is None:
        raise _FieldError(
            ("strategy", "prior", "source"),
            "strategy.prior: source 'file' needs `path: priors.json` "
            "(write one with `toa priors RUN_DIR -o priors.json`)",
        )
    if prior.source == "none" and prior.path is not None:
        raise _FieldError(
            ("strategy", "prior", "path"),
            "strategy.prior.path: not used with `source: none`; remove it, or use `source: file`"
            " (start every prompt from it) or `source: online` (start from it, keep learning)",
        )


def _fields(obj: TOAConfig | MoAConfig) -> dict[str, Any]:
    assert is_dataclass(obj)
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
