"""The `reward` section's schema, and the one place that builds a run's reward from it.

Every reward kind has its pydantic model here (YAML ``reward: {type: KIND, ...}``) and
`RewardConfig` is their union, chosen by ``type``. A model checks its fields (bounds, templates,
which settings apply to which protocol) and turns itself into what the runtime class in
`toa.rewards` takes: plain arguments, or that module's frozen settings dataclass
(`HttpRewardConfig.settings`, `HFRewardConfig.settings`, `CometRewardConfig.settings`; endpoints
become a `toa.agents.AgentSpec` through `to_spec`). Nothing in `toa.rewards` imports pydantic.
Retries and circuit breakers of the rewards that call a server are the agents' models
(`toa.config.common.RetryConfig`, `BreakerConfig`).

`build_reward` builds the reward a configuration describes, once for all the prompts of a run: a
judge named by agent name is looked up among the run's agents; the kinds that gain from batching
(a model or a server behind them: `hf`, `comet`, `http`) are wrapped in `BatchingReward`, so score
requests from all concurrent trees are gathered into batches; the rule-based ones score inline; a
combo builds its children the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from toa.agents.spec import AgentMode, AgentSpec, check_base_urls, check_key_env_name
from toa.config.common import BreakerConfig, RetryConfig, StrictModel
from toa.errors import ConfigError
from toa.rewards.base import RewardModel
from toa.rewards.batching import BatchingReward
from toa.rewards.combo import ComboMode, ComboReward, check_shape
from toa.rewards.comet import CometDevice, CometReference, CometReward, CometSettings
from toa.rewards.hf import HFInputFormat, HFRewardModel, HFSettings, TorchDtype, check_device
from toa.rewards.http import HttpRewardModel
from toa.rewards.http_settings import (
    HttpInputFormat,
    HttpProtocol,
    HttpRewardSettings,
    TokenReduce,
    check_applicable,
)
from toa.rewards.judge import (
    DEFAULT_SCORE_TEMPLATE,
    DEFAULT_YES_NO_TEMPLATE,
    JudgeFallback,
    JudgeMode,
    JudgeReward,
    check_template,
)
from toa.rewards.metric import BleuReward, BleuTokenize, ChrfReward
from toa.rewards.simulated import SimulatedReward
from toa.rewards.verify import VerifyMode, VerifyReward

__all__ = [
    "BatchingConfig",
    "BleuRewardConfig",
    "ChrfRewardConfig",
    "ComboRewardConfig",
    "CometRewardConfig",
    "EndpointConfig",
    "HFRewardConfig",
    "HttpRewardConfig",
    "JudgeAgentConfig",
    "JudgeRewardConfig",
    "RewardConfig",
    "SimulatedRewardConfig",
    "VerifyRewardConfig",
    "build_reward",
]


# ------------------------------------------------------------------------ rule-based kinds


class SimulatedRewardConfig(StrictModel):
    """The hidden quality of `toa fake-server` responses (tests, demos, benchmarks)."""

    type: Literal["simulated"]

    def build(self) -> SimulatedReward:
        return SimulatedReward()


class VerifyRewardConfig(StrictModel):
    """Config of the `verify` reward (see `toa.rewards.verify.VerifyReward`)."""

    type: Literal["verify"]
    mode: VerifyMode = "auto"
    gold_field: str = Field("gold_answer", min_length=1)
    correct: float = Field(1.0, allow_inf_nan=False)
    incorrect: float = Field(0.0, allow_inf_nan=False)
    timeout_s: int = Field(5, ge=1, le=600, description="math-verify limit per step, seconds")

    @model_validator(mode="after")
    def _distinct_values(self) -> VerifyRewardConfig:
        if self.correct == self.incorrect:
            raise ValueError("correct and incorrect must differ, or every answer scores the same")
        return self

    def build(self) -> VerifyReward:
        """The reward this config describes (raises ConfigError if math mode lacks math-verify)."""
        return VerifyReward(
            mode=self.mode,
            gold_field=self.gold_field,
            correct=self.correct,
            incorrect=self.incorrect,
            timeout_s=self.timeout_s,
        )


class ChrfRewardConfig(StrictModel):
    """Config of the `chrf` reward (see `toa.rewards.metric.ChrfReward`)."""

    type: Literal["chrf"]
    reference_field: str = Field("reference", min_length=1)
    char_order: int = Field(6, ge=1, le=10)
    word_order: int = Field(0, ge=0, le=2, description="2 gives chrF++")
    beta: int = Field(2, ge=1)
    lowercase: bool = False

    def build(self) -> ChrfReward:
        """The reward (raises ConfigError when sacrebleu is not installed)."""
        return ChrfReward(
            reference_field=self.reference_field,
            char_order=self.char_order,
            word_order=self.word_order,
            beta=self.beta,
            lowercase=self.lowercase,
        )


class BleuRewardConfig(StrictModel):
    """Config of the `bleu` reward (see `toa.rewards.metric.BleuReward`)."""

    type: Literal["bleu"]
    reference_field: str = Field("reference", min_length=1)
    tokenize: BleuTokenize = "13a"
    lowercase: bool = False

    def build(self) -> BleuReward:
        """The reward (raises ConfigError when sacrebleu is not installed)."""
        return BleuReward(
            reference_field=self.reference_field, tokenize=self.tokenize, lowercase=self.lowercase
        )


# ------------------------------------------------------------------ kinds behind a server


class EndpointConfig(StrictModel):
    """Where a server is and how to call it: replicas, key variable, limits, retries, breaker.

    The base of the rewards that call a server (`HttpRewardConfig`, `JudgeAgentConfig`);
    `to_spec` gives the `toa.agents.AgentSpec` their client runs on.
    """

    name: str = Field("reward", min_length=1)
    base_url: str | list[str]
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_concurrency: int = Field(16, ge=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        check_base_urls(value, example="http://127.0.0.1:8000")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        check_key_env_name(value)
        return value

    def to_spec(self) -> AgentSpec:
        """The client settings; ConfigError when `api_key_env` names an unset variable."""
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ConfigError(
                f"{self.name!r}: environment variable {self.api_key_env} (api_key_env) is not set"
            )
        urls = (self.base_url,) if isinstance(self.base_url, str) else tuple(self.base_url)
        return AgentSpec(
            name=self.name,
            base_urls=urls,
            model=self.model or "",
            api_key_env=self.api_key_env,
            max_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            retry=self.retry.to_policy(),
            breaker=self.breaker.to_policy(),
        )


class HttpRewardConfig(EndpointConfig):
    """The `http` reward (see `toa.rewards.http`). Fields that do not apply to `protocol` are
    refused; the others are those of `toa.rewards.http_settings.HttpRewardSettings`."""

    type: Literal["http"] = "http"
    protocol: HttpProtocol
    path: str | None = None
    max_batch_size: int = Field(32, ge=1)
    input_format: HttpInputFormat | None = None
    text_template: str = "{prompt}\n\n{response}"
    label_index: int = Field(0, ge=0)
    label: str | None = None
    token_reduce: TokenReduce = "last"
    pooling_task: str | None = None
    use_activation: bool | None = None
    raw_scores: bool = False
    request_template: dict[str, Any] | None = None
    response_path: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _coherent(self) -> HttpRewardConfig:
        check_applicable(self.protocol, self.model_fields_set)
        self.settings()  # the settings check themselves against each other
        return self

    def settings(self) -> HttpRewardSettings:
        """What the reward sends and reads (`HttpRewardSettings`)."""
        return HttpRewardSettings(
            protocol=self.protocol,
            path=self.path,
            model=self.model,
            max_batch_size=self.max_batch_size,
            input_format=self.input_format,
            text_template=self.text_template,
            label_index=self.label_index,
            label=self.label,
            token_reduce=self.token_reduce,
            pooling_task=self.pooling_task,
            use_activation=self.use_activation,
            raw_scores=self.raw_scores,
            request_template=self.request_template,
            response_path=self.response_path,
            extra_body=self.extra_body,
        )

    def build(self) -> HttpRewardModel:
        """The reward model; it opens its own client pool on first use (`aclose` closes it)."""
        return HttpRewardModel(self.settings(), self.to_spec())


class JudgeAgentConfig(EndpointConfig):
    """An inline judge endpoint (OpenAI-compatible API root, e.g. ``http://host:8000/v1``)."""

    name: str = Field("judge", min_length=1)
    model: str = Field(min_length=1)
    mode: AgentMode = "chat"
    prompt_template: str = "{prompt}"
    extra_body: dict[str, object] = Field(default_factory=dict)

    def to_spec(self) -> AgentSpec:
        return replace(
            super().to_spec(),
            model=self.model,
            mode=self.mode,
            prompt_template=self.prompt_template,
            extra_body=self.extra_body,
        )


class JudgeRewardConfig(StrictModel):
    """The `judge` reward (see `toa.rewards.judge`). `agent` is an inline endpoint or the name of
    a configured agent (resolved by `build`'s `agents`). Templates: see `check_template`; None
    keeps ours."""

    type: Literal["judge"] = "judge"
    name: str = Field("judge", min_length=1)
    mode: JudgeMode = "yes_no"
    agent: JudgeAgentConfig | str
    top_logprobs: int = Field(5, ge=1, le=20)
    fallback: JudgeFallback = "score"
    max_tokens: int | None = Field(None, ge=1)
    yes_no_template: str | None = None
    score_template: str | None = None
    reference_fields: tuple[str, ...] = ("reference", "gold_answer")

    @field_validator("yes_no_template", "score_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    def build(self, agents: Mapping[str, AgentSpec] | None = None) -> JudgeReward:
        """The reward; a named agent is looked up in `agents` (ConfigError when absent)."""
        if isinstance(self.agent, str):
            known = agents or {}
            if self.agent not in known:
                raise ConfigError(
                    f"judge agent {self.agent!r} is not a configured agent; known: {sorted(known)}"
                )
            spec = known[self.agent]
        else:
            spec = self.agent.to_spec()
        return JudgeReward(
            spec,
            mode=self.mode,
            top_logprobs=self.top_logprobs,
            fallback=self.fallback,
            yes_no_template=self.yes_no_template or DEFAULT_YES_NO_TEMPLATE,
            score_template=self.score_template or DEFAULT_SCORE_TEMPLATE,
            reference_fields=self.reference_fields,
            max_tokens=self.max_tokens,
            name=self.name,
        )


# ------------------------------------------------------------------------ local model kinds


class HFRewardConfig(StrictModel):
    """Configuration of the `hf` reward (YAML ``reward: {type: hf, path: ...}``); the fields are
    those of `toa.rewards.hf.HFSettings`."""

    type: Literal["hf"]
    path: str = Field(min_length=1)
    device: str = "auto"
    dtype: TorchDtype = "auto"
    max_length: int = Field(4096, ge=16)
    batch_size: int = Field(16, ge=1)
    trust_remote_code: bool = False
    label_index: int = Field(0, ge=0)
    output_field: str = Field("logits", min_length=1)
    input_format: HFInputFormat = "auto"

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return check_device(value)

    def settings(self) -> HFSettings:
        """What the reward loads and how it scores (`HFSettings`)."""
        return HFSettings(
            path=self.path,
            device=self.device,
            dtype=self.dtype,
            max_length=self.max_length,
            batch_size=self.batch_size,
            trust_remote_code=self.trust_remote_code,
            label_index=self.label_index,
            output_field=self.output_field,
            input_format=self.input_format,
        )

    def build(self) -> HFRewardModel:
        """The adapter: checks the extra and the directory, then loads the model (blocking)."""
        return HFRewardModel(self.settings())


class CometRewardConfig(StrictModel):
    """Configuration of the `comet` reward (YAML ``reward: {type: comet, path: ...}``); the
    fields are those of `toa.rewards.comet.CometSettings`."""

    type: Literal["comet"]
    path: str = Field(min_length=1)
    source_field: str | None = Field("source", min_length=1)
    reference_field: str = Field("reference", min_length=1)
    reference: CometReference = "auto"
    batch_size: int = Field(16, ge=1)
    device: CometDevice = "auto"

    def settings(self) -> CometSettings:
        """What the reward loads and which inputs it sends (`CometSettings`)."""
        return CometSettings(
            path=self.path,
            source_field=self.source_field,
            reference_field=self.reference_field,
            reference=self.reference,
            batch_size=self.batch_size,
            device=self.device,
        )

    def build(self) -> CometReward:
        """The adapter; loads the checkpoint now (blocking) and raises `ConfigError` on problems."""
        return CometReward(self.settings())


# ------------------------------------------------------------------------------- combo


class ComboRewardConfig(StrictModel):
    """Config of the `combo` reward (see `toa.rewards.combo`). `rewards` holds child reward
    configs of any kind: `RewardConfig` checks them against the reward union (its member narrows
    this field to ``list[RewardConfig]``), and `build_reward` builds them."""

    type: Literal["combo"]
    mode: ComboMode = "sum"
    rewards: list[Any] = Field(min_length=1)
    weights: list[float] | None = Field(None, description="sum only: one > 0 per reward")
    epsilon: float = Field(1e-3, gt=0, lt=1, description="cascade only: tie-break step")
    skip_failed: bool = False

    @model_validator(mode="after")
    def _shape(self) -> ComboRewardConfig:
        check_shape(len(self.rewards), self.mode, self.weights, self.epsilon)
        return self

    def build(self, make_child: Callable[[Any], RewardModel]) -> ComboReward:
        """Build each child with `make_child` (config -> reward), then the combo over them."""
        children = [make_child(child) for child in self.rewards]
        return ComboReward(
            children,
            mode=self.mode,
            weights=self.weights,
            epsilon=self.epsilon,
            skip_failed=self.skip_failed,
        )


# ----------------------------------------------------------------- the union, and building


class BatchingConfig(StrictModel):
    """How score requests of concurrent trees are gathered (hf, comet and http rewards)."""

    max_batch: int = Field(32, ge=1, description="responses per batch at most")
    max_wait_ms: float = Field(5.0, ge=0, description="wait after the first request, in ms")


class HFConfig(HFRewardConfig):
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class CometConfig(CometRewardConfig):
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class HttpConfig(HttpRewardConfig):
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class ComboConfig(ComboRewardConfig):
    rewards: list[RewardConfig] = Field(min_length=1)


RewardConfig = Annotated[
    SimulatedRewardConfig
    | VerifyRewardConfig
    | ChrfRewardConfig
    | BleuRewardConfig
    | JudgeRewardConfig
    | HttpConfig
    | HFConfig
    | CometConfig
    | ComboConfig,
    Field(discriminator="type"),
]
"""Any reward configuration, chosen by its `type`."""

ComboConfig.model_rebuild()


def build_reward(
    config: RewardConfig, agents: Mapping[str, AgentSpec] | None = None
) -> RewardModel:
    """The reward a configuration describes; `agents` resolves a judge named by agent name."""
    if isinstance(config, ComboConfig):
        return config.build(lambda child: build_reward(child, agents))
    if isinstance(config, JudgeRewardConfig):
        return config.build(agents)
    if isinstance(config, HFConfig | CometConfig | HttpConfig):
        batching = config.batching
        return BatchingReward(
            config.build(), max_batch=batching.max_batch, max_wait_ms=batching.max_wait_ms
        )
    built: RewardModel = config.build()
    return built
