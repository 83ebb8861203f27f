"""The configuration file's schema: pydantic models of every section (the config edge only).

Nothing below `toa.config` sees these models: `toa.config.build` turns a validated `RunConfig`
into the plain `toa.settings.RunSettings` the engine runs on. API keys never appear in a
configuration: agents name the environment variable that holds theirs (`api_key_env`). The
`reward` section's models are in `toa.config.rewards`; retries and circuit breakers, shared with
the rewards that call a server, in `toa.config.common`. See examples/config.yaml for a commented
example of every field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from toa.agents.spec import AgentSpec, check_base_urls, check_key_env_name
from toa.config.common import BreakerConfig, RetryConfig, StrictModel
from toa.config.rewards import RewardConfig
from toa.search.strategies import STRATEGY_NAMES
from toa.settings import PriorSource
from toa.types import SamplingParams

__all__ = [
    "SETTINGS_BY_STRATEGY",
    "AgentConfig",
    "PriorConfig",
    "PriorSource",
    "RewardConfig",
    "RunConfig",
    "ServeConfig",
    "StrategyConfig",
]


class SamplingConfig(StrictModel):
    """Sampling settings of an agent."""

    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    stop: list[str] = Field(default_factory=list)


class PriceConfig(StrictModel):
    """Prices in US dollars per million tokens, for the cost shown in progress and summaries."""

    prompt_usd_per_mtok: float = Field(0.0, ge=0)
    completion_usd_per_mtok: float = Field(0.0, ge=0)


class AgentConfig(StrictModel):
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
            retry=self.retry.to_policy(),
            breaker=self.breaker.to_policy(),
        )


class NormaliseConfig(StrictModel):
    """Reward normalisation used by TOA's UCB: 'rank' and 'minmax' are scale-free."""

    kind: Literal["rank", "minmax", "sigmoid"] = "rank"
    tau: float | None = Field(None, gt=0, description="sigmoid only: q = sigmoid(r / tau)")


class PriorConfig(StrictModel):
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


class StrategyConfig(StrictModel):
    """Which strategy runs, with its budget and settings (unknown settings are errors)."""

    name: str = "toa"  # one of toa.search.STRATEGY_NAMES (the one list of strategies)
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

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in STRATEGY_NAMES:
            raise ValueError(
                f"unknown strategy {value!r}; choose one of "
                + ", ".join(repr(name) for name in STRATEGY_NAMES)
            )
        return value


class TemplatesConfig(StrictModel):
    """Built-in templates for a task, with optional overrides of any text."""

    task: Literal["instruction", "translation", "math"] = "instruction"
    fresh: str | None = None
    refine: str | None = None
    aggregate: str | None = None
    aggregate_system: str | None = None


class RunnerConfig(StrictModel):
    """How the engine runs: prompts at once (each with its own tree), the generation cache,
    the backend (this process, or Ray actors).

    None of it changes what is generated, so all may change when a run is resumed.
    """

    prompts_in_flight: int = Field(16, ge=1)
    cache: str | None = Field(
        None,
        min_length=1,
        description="a generation cache file shared across runs (SQLite; see toa.store.cache)",
    )
    backend: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: a pool of Ray actors (toa.scale)"
    )
    workers: int = Field(2, ge=1, description="ray: worker actors")
    reward_placement: Literal["worker", "ray"] = Field(
        "worker",
        description="ray: where the reward runs: in each worker, or one Ray actor every worker "
        "calls (a model loaded once, batched across workers; with reward_num_gpus)",
    )
    reward_num_gpus: float = Field(0.0, ge=0, description="ray: GPUs of the reward actor")
    address: str | None = Field(
        None,
        min_length=1,
        description="ray: the cluster (auto, HOST:PORT); unset: a local Ray started for the run",
    )


class ServeConfig(StrictModel):
    """`toa serve`'s limits (see `toa.serve`). None of them changes what is generated."""

    max_budget: int = Field(64, ge=1, description="the largest budget a request may ask for")
    max_concurrent_searches: int = Field(
        8, ge=1, description="searches at once; a request beyond gets 429 with Retry-After"
    )
    max_request_bytes: int = Field(1_000_000, ge=1024, description="request body size limit")
    max_messages: int = Field(256, ge=1, description="messages per request")
    api_key_env: str | None = Field(
        None,
        min_length=1,
        description="environment variable holding the bearer key clients must send",
    )
    single_agent: str | None = Field(
        None, min_length=1, description="the agent of `toa:random` / `toa:prs` requests"
    )
    keepalive_s: float = Field(
        5.0, gt=0, description="seconds between progress chunks of a streamed search"
    )
    drain_s: float = Field(
        30.0, ge=0, description="how long SIGTERM waits for the searches in flight"
    )


class RunConfig(StrictModel):
    """The whole configuration file."""

    agents: list[AgentConfig] = Field(min_length=1)
    reward: RewardConfig
    eval: RewardConfig | None = Field(
        None,
        description="how `toa sweep` / `toa eval` judge the chosen answers afterwards, apart "
        "from the reward that steers the search (any reward kind); changes nothing generated",
    )
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    seed: int = 0

    @field_validator("agents")
    @classmethod
    def _unique(cls, agents: list[AgentConfig]) -> list[AgentConfig]:
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agent names must be unique; repeated: {dupes}")
        return agents

    @model_validator(mode="after")
    def _serve_agent(self) -> RunConfig:
        agent = self.serve.single_agent
        names = [a.name for a in self.agents]
        if agent is not None and agent not in names:
            raise ValueError(f"serve.single_agent {agent!r} is not one of the agents {names}")
        return self


_TOA_FIELDS = (
    "alpha",
    "width",
    "width_fraction",
    "topk_child",
    "improvement_cap",
    "fresh_arms",
    "parallel_plays",
)
SETTINGS_BY_STRATEGY: dict[str, tuple[str, ...]] = {
    "toa": (*_TOA_FIELDS, "normalize", "preset", "rule", "prior", "aggregate"),
    "random": ("agent",),
    "prs": ("agent",),
    "ensemble": (),
    "seq-refine": (),
    "moa": ("layers", "n_aggregate", "aggregator_role"),
}
