"""Run configuration: YAML validated with pydantic at the edge, turned into plain runtime objects.

Every error names the file, the line, the field path and what is allowed. API keys never appear
in a configuration: agents name the environment variable that holds theirs (`api_key_env`).
See examples/config.yaml for a commented example of every field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from toa._config_errors import _describe, _line_of
from toa.agents.spec import (
    AgentSpec,
    BreakerPolicy,
    RetryPolicy,
    check_base_urls,
    check_key_env_name,
)
from toa.errors import ConfigError
from toa.rewards.factory import RewardConfig
from toa.search import Templates, make_strategy
from toa.search.context import Strategy
from toa.search.moa import MoAConfig
from toa.search.normalise import Normalisation
from toa.search.presets import toa_preset
from toa.search.priors import Prior, load_prior
from toa.search.toa import UCB_SETTINGS, TOAConfig, TOASearch
from toa.types import SamplingParams

__all__ = [
    "AgentConfig",
    "PriorConfig",
    "PriorSource",
    "RewardConfig",
    "RunConfig",
    "RunSettings",
    "StrategyConfig",
    "load_config",
    "parse_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingConfig(_Model):
    """Sampling settings of an agent."""

    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    stop: list[str] = Field(default_factory=list)


class RetryConfig(_Model):
    """Retries of transient failures (connection, timeout, 429, 5xx)."""

    max_attempts: int = Field(5, ge=1)
    base_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(120.0, ge=0)


class BreakerConfig(_Model):
    """Per-endpoint circuit breaker."""

    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, ge=0)
    max_cooldown_s: float = Field(300.0, ge=0)


class PriceConfig(_Model):
    """Prices in US dollars per million tokens, for the cost shown in progress and summaries."""

    prompt_usd_per_mtok: float = Field(0.0, ge=0)
    completion_usd_per_mtok: float = Field(0.0, ge=0)


class AgentConfig(_Model):
    """One agent (see `toa.agents.AgentSpec` for what each field does)."""

    name: str = Field(min_length=1)
    base_url: str | list[str]
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    mode: Literal["chat", "completion"] = "chat"
    prompt_template: str = "{prompt}"
    max_concurrency: int = Field(64, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    params_b: float | None = Field(None, gt=0)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    price: PriceConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        check_base_urls(value)
        return value

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{prompt}" not in value:
            raise ValueError("must contain {prompt}")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        check_key_env_name(value)
        return value

    def to_spec(self) -> AgentSpec:
        """The runtime settings the client uses."""
        urls = (self.base_url,) if isinstance(self.base_url, str) else tuple(self.base_url)
        s = self.sampling
        return AgentSpec(
            name=self.name,
            base_urls=urls,
            model=self.model,
            mode=self.mode,
            api_key_env=self.api_key_env,
            max_concurrency=self.max_concurrency,
            requests_per_minute=self.requests_per_minute,
            timeout_s=self.timeout_s,
            sampling=SamplingParams(s.temperature, s.top_p, s.max_tokens, tuple(s.stop)),
            prompt_template=self.prompt_template,
            params_b=self.params_b,
            extra_body=self.extra_body,
            retry=RetryPolicy(**self.retry.model_dump()),
            breaker=BreakerPolicy(**self.breaker.model_dump()),
        )


class NormaliseConfig(_Model):
    """Reward normalisation used by TOA's UCB: 'rank' and 'minmax' are scale-free."""

    kind: Literal["rank", "minmax", "sigmoid"] = "rank"
    tau: float | None = Field(None, gt=0, description="sigmoid only: q = sigmoid(r / tau)")


PriorSource = Literal["online", "file", "none"]


class PriorConfig(_Model):
    """Where TOA's cross-prompt prior comes from (rule 'bayes'; see toa.search.priors).

    online: learned by the run from its finished prompts (the default), starting from `path`
    when given; file: a priors.json written by `toa priors` (path relative to the configuration
    file), the same for every prompt; none: every prompt starts cold.
    """

    source: PriorSource = "online"
    strength: float | None = Field(
        None, gt=0, description="pseudo-plays of prior evidence per action at most (default 16)"
    )
    path: str | None = Field(
        None, min_length=1, description="a priors.json: file's prior, or online's starting point"
    )


class StrategyConfig(_Model):
    """Which strategy runs, with its budget and settings (unknown settings are errors)."""

    name: Literal["toa", "random", "prs", "ensemble", "seq-refine", "moa"] = "toa"
    budget: int = Field(16, ge=1)
    preset: Literal["alpaca", "wmt", "ultrafeedback", "math"] | None = None
    # toa
    rule: Literal["bayes", "ucb"] | None = None
    prior: PriorConfig | None = None
    aggregate: bool | None = None
    alpha: float | None = Field(None, ge=0)
    width: int | None = Field(None, ge=1)
    width_fraction: float | None = Field(None, gt=0, le=1)
    topk_child: int | None = Field(None, ge=1)
    improvement_cap: int | None = Field(None, ge=1)
    fresh_arms: bool | None = None
    normalize: NormaliseConfig | None = None
    parallel_plays: int | None = Field(None, ge=1)
    # random, prs
    agent: str | None = None
    # moa
    layers: int | None = Field(None, ge=1)
    n_aggregate: int | None = Field(None, ge=1)
    aggregator_role: Literal["user", "system"] | None = None


class TemplatesConfig(_Model):
    """Built-in templates for a task, with optional overrides of any text."""

    task: Literal["instruction", "translation", "math"] = "instruction"
    fresh: str | None = None
    refine: str | None = None
    aggregate: str | None = None
    aggregate_system: str | None = None


class RunnerConfig(_Model):
    """How the engine runs: prompts at once (each with its own tree), the generation cache.

    Neither changes what is generated, so both may change when a run is resumed.
    """

    prompts_in_flight: int = Field(16, ge=1)
    cache: str | None = Field(
        None,
        min_length=1,
        description="a generation cache file shared across runs (SQLite; see toa.engine.cache)",
    )


class RunConfig(_Model):
    """The whole configuration file."""

    agents: list[AgentConfig] = Field(min_length=1)
    reward: RewardConfig
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    seed: int = 0

    @field_validator("agents")
    @classmethod
    def _unique(cls, agents: list[AgentConfig]) -> list[AgentConfig]:
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agent names must be unique; repeated: {dupes}")
        return agents


_TOA_FIELDS = (
    "alpha",
    "width",
    "width_fraction",
    "topk_child",
    "improvement_cap",
    "fresh_arms",
    "parallel_plays",
)
_SETTINGS_BY_STRATEGY: dict[str, tuple[str, ...]] = {
    "toa": (*_TOA_FIELDS, "normalize", "preset", "rule", "prior", "aggregate"),
    "random": ("agent",),
    "prs": ("agent",),
    "ensemble": (),
    "seq-refine": (),
    "moa": ("layers", "n_aggregate", "aggregator_role"),
}


@dataclass(frozen=True)
class RunSettings:
    """A validated configuration turned into what the engine runs.

    Attributes:
        config: the validated model (its JSON form goes into the manifest).
        agents: runtime agent settings, in configuration order.
        strategy: the strategy object.
        budget: generations per prompt.
        templates: the template set (hashes go into the manifest).
        source: where the configuration came from (a path or '<string>').
        prior_source: where each prompt's prior comes from: 'online' (learned by the run),
            'file' (`prior`) or 'none'.
        prior: the prior read from `strategy.prior.path`: every prompt's (source 'file') or
            the starting point of what the run learns (source 'online').
    """

    config: RunConfig
    agents: tuple[AgentSpec, ...]
    strategy: Strategy
    budget: int
    templates: Templates
    source: str
    prior_source: PriorSource = "none"
    prior: Prior | None = None

    @property
    def seed(self) -> int:
        return self.config.seed

    def config_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON data (it holds env-var names, never keys)."""
        data: dict[str, Any] = self.config.model_dump(mode="json")
        return data

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the configuration."""
        canonical = json.dumps(self.config_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def with_overrides(
        self, *, strategy: str | None = None, budget: int | None = None, cache: str | None = None
    ) -> RunSettings:
        """The same settings with the CLI's --strategy / --budget / --cache applied."""
        if strategy is None and budget is None and cache is None:
            return self
        data = self.config.model_dump(mode="json", exclude_none=True)
        if strategy is not None and strategy != data["strategy"].get("name"):
            data["strategy"] = {"name": strategy, "budget": data["strategy"].get("budget", 16)}
        if budget is not None:
            data["strategy"]["budget"] = budget
        if cache is not None:
            data["runner"]["cache"] = cache
        return parse_config(data, source=self.source)


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
        raise ConfigError(_describe(exc, source, yaml_node, RunConfig)) from None
    try:
        return _build(config, source)
    except ConfigError as exc:
        line = _line_of(yaml_node, exc.loc) if isinstance(exc, _FieldError) else None
        raise ConfigError(f"{source}:{line}: {exc}" if line else f"{source}: {exc}") from None


class _FieldError(ConfigError):
    """A ConfigError about the field at `loc` (so that its line can be named)."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
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
        config=config,
        agents=tuple(a.to_spec() for a in config.agents),
        strategy=strategy,
        budget=config.strategy.budget,
        templates=templates,
        source=source,
        prior_source=prior_source,
        prior=prior,
    )


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
    allowed = set(_SETTINGS_BY_STRATEGY[s.name])
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
