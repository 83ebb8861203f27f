"""The `hf` reward: a local sequence-classification reward model run through transformers.

Any ``AutoModelForSequenceClassification`` saved in a local directory works: Skywork-Reward and
other Llama/Gemma/Qwen classifiers with one label, ArmoRM (its own code, ``trust_remote_code`` and
``output_field: score``), BERT/DeBERTa cross-encoders. Optional extra:
``pip install 'toa-synth[hf]'`` (torch and transformers, imported only when a model is built).

How a response becomes a score:

1. Input. ``input_format: chat_template`` renders ``[prompt messages..., assistant response]``
   with the tokenizer's chat template and tokenizes the text without adding special tokens (the
   template adds its own). ``pair`` encodes ``(prompt text, response)`` as a text pair with the
   tokenizer's special tokens, the way BERT/DeBERTa reward models are used; the prompt text is the
   single user message, or every message as ``role: content`` joined by blank lines. ``auto``
   (default) uses the chat template when the tokenizer has one, else ``pair``.
2. Truncation. Inputs longer than ``max_length`` tokens lose their end (right truncation).
3. Batching. Inputs are sorted by length and cut into batches of ``batch_size``, padded on the
   RIGHT with an attention mask. Right padding keeps every real token at the position it has
   alone (left padding shifts the position ids of causal models and changes their scores), and
   sequence classifiers read the last non-pad token, so a batched score equals the score alone up
   to float rounding. The pad id is the model config's ``pad_token_id`` (the id the classifier
   looks for), else the tokenizer's pad token, else its eos token.
4. Reward. ``output[output_field][:, label_index]`` (a 1-D field is used as is), as a float.

The model is loaded once, in eval mode, when the adapter is built (with one probe forward pass,
so configuration mistakes fail at build). Every tokenization and forward pass then runs under
``torch.inference_mode()`` on the single worker thread of a `toa.rewards.batching.ThreadedReward`
owned by the adapter: one model instance serves all trees of a run and scoring never blocks
the event loop. `score_batch` takes responses to many prompts, so `BatchingReward` fills batches.

Paths: ``path`` must be a local directory; nothing is ever downloaded (``local_files_only``).
A hub id is refused with the command to fetch it where there is hub access; the HF cache is not
consulted, so the run records exactly which directory it scored with.

`HFRewardModel` runs on the plain `HFSettings`; the YAML side, ``reward: {type: hf, ...}``, is
`toa.config.rewards.HFRewardConfig`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from toa.errors import ConfigError
from toa.rewards.batching import ScoreItem, ThreadedReward, WorkerReward, failures
from toa.types import Prompt, Score, ScoreFailure

__all__ = ["HFInputFormat", "HFRewardModel", "HFSettings", "TorchDtype", "check_device"]

_EXTRA_HINT = "pip install 'toa-synth[hf]'"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


HFInputFormat = Literal["auto", "chat_template", "pair"]
TorchDtype = Literal["auto", "float32", "bfloat16", "float16"]


def check_device(device: str) -> str:
    """`device` when it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ValueError otherwise."""
    if not _DEVICE.match(device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


@dataclass(frozen=True, slots=True)
class HFSettings:
    """What the `hf` reward loads and how it scores (``reward: {type: hf, path: ...}``).

    Attributes:
        path: a local directory holding ``config.json``, the weights and the tokenizer.
        device: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bfloat16 on cuda, float16 on GPUs without bfloat16, float32 on cpu),
            or an explicit torch dtype name.
        max_length: tokens per input at most (>= 16); longer inputs lose their end.
        batch_size: inputs per forward pass (>= 1).
        trust_remote_code: run the model's own Python code (ArmoRM and other custom heads).
            Only set it for a directory you trust; without it such a model is refused.
        label_index: which output column is the reward (>= 0; 0 for one-label models).
        output_field: the model output's field holding the reward (``logits``; ArmoRM:
            ``score``).
        input_format: ``auto``, ``chat_template`` or ``pair`` (see the module docstring).
    """

    path: str
    device: str = "auto"
    dtype: TorchDtype = "auto"
    max_length: int = 4096
    batch_size: int = 16
    trust_remote_code: bool = False
    label_index: int = 0
    output_field: str = "logits"
    input_format: HFInputFormat = "auto"


@dataclass(frozen=True, slots=True)
class _Loaded:
    """The model and what scoring needs; after the build probe, used only on the worker thread."""

    torch: ModuleType
    model: Any
    tokenizer: Any
    device: Any
    use_chat_template: bool
    pass_token_types: bool  # the model's forward takes token_type_ids (BERT-like pairs)
    pad_id: int  # the model's pad_token_id: classifiers read the last token that is not this


class HFRewardModel(WorkerReward):
    """A local transformers sequence classifier as a `RewardModel` and a `BatchScorer`.

    Building loads the model (blocking: seconds for small models, a minute or more for 8B ones;
    call ``await asyncio.to_thread(HFRewardModel, settings)`` to keep an event loop responsive)
    and runs one probe forward pass, so a wrong ``output_field`` or ``label_index`` fails here,
    not mid-run.
    Scoring then runs on the single worker thread of a `ThreadedReward`; wrap the model in
    `BatchingReward` to merge the calls of concurrent trees into full batches.

    Raises (at construction):
        ConfigError: torch/transformers are missing, ``path`` is not a local model directory,
            the model ships its own code and ``trust_remote_code`` is not set, the device is not
            available, the model cannot be loaded, or its output does not fit the settings.
    """

    name = "hf"

    def __init__(self, settings: HFSettings) -> None:
        self.settings = settings
        _import_extra()
        _check_model_dir(settings)
        self._loaded: _Loaded | None = _load(settings)
        self._worker = ThreadedReward(self.name, self._score_items, on_close=self._release)
        self.forward_passes = 0
        """Forward passes run by `score`/`score_batch` so far (one per batch of inputs)."""

    def _release(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is not None and loaded.device.type == "cuda":
            loaded.model.to("cpu")
            loaded.torch.cuda.empty_cache()

    def _score_items(self, items: Sequence[ScoreItem]) -> list[Score]:
        """On the worker thread: encode, sort by length, forward in batches of `batch_size`."""
        loaded = self._loaded
        if loaded is None:
            return failures(len(items), "the hf reward was closed", "RewardClosed")
        encoded = [_encode(loaded, self.settings, prompt, response) for prompt, response in items]
        scores: list[Score] = [e if isinstance(e, ScoreFailure) else math.nan for e in encoded]
        ready = [(i, e) for i, e in enumerate(encoded) if isinstance(e, _Encoded)]
        ready.sort(key=lambda pair: len(pair[1].input_ids))  # less padding per batch
        size = self.settings.batch_size
        for start in range(0, len(ready), size):
            chunk = ready[start : start + size]
            values = self._forward_safely(loaded, [e for _, e in chunk])
            for (index, _), value in zip(chunk, values, strict=True):
                scores[index] = value
        return scores

    def _forward_safely(self, loaded: _Loaded, batch: list[_Encoded]) -> list[Score]:
        """Scores one batch; a failed batch is retried one input at a time (e.g. out of memory)."""
        try:
            values = _forward(loaded, self.settings, batch)
        except Exception as error:
            if len(batch) == 1:
                return [ScoreFailure(f"reward model forward pass failed: {error}", _kind(error))]
            return [value for item in batch for value in self._forward_safely(loaded, [item])]
        self.forward_passes += 1
        return list(values)


def _forward(loaded: _Loaded, settings: HFSettings, batch: list[_Encoded]) -> list[float]:
    """The rewards of one batch, as floats (may be NaN: `checked_scores` fails those)."""
    torch = loaded.torch
    inputs = _pad(torch, batch, loaded.pad_id, loaded.pass_token_types)
    with torch.inference_mode():
        output = loaded.model(**{k: v.to(loaded.device) for k, v in inputs.items()})
    values = _pick(output, settings.output_field, settings.label_index, len(batch))
    return [float(v) for v in values.float().cpu().tolist()]


@dataclass(frozen=True, slots=True)
class _Encoded:
    """One tokenized input: token ids and, for pair inputs of BERT-like models, token types."""

    input_ids: list[int]
    token_type_ids: list[int] | None


def _kind(error: BaseException) -> str:
    return type(error).__name__


def _import_extra() -> tuple[ModuleType, ModuleType]:
    """torch and transformers, or a `ConfigError` naming the extra."""
    try:
        return importlib.import_module("torch"), importlib.import_module("transformers")
    except ImportError as error:
        raise ConfigError(
            f"the hf reward needs torch and transformers ({error.name} is missing): {_EXTRA_HINT}"
        ) from error


def _check_model_dir(settings: HFSettings) -> None:
    """Refuses what cannot load offline or safely, before loading: clear errors at build."""
    path = Path(settings.path).expanduser()
    if not path.is_dir():
        hint = ""
        if _HUB_ID.match(settings.path) and not path.exists():
            hint = (
                "; it looks like a hub id, and nothing is downloaded here: fetch it where there "
                f"is hub access (`hf download {settings.path} --local-dir DIR`) and set path to DIR"
            )
        raise ConfigError(f"hf reward: path is not a local model directory: {settings.path}{hint}")
    config_file = path / "config.json"
    try:
        model_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"hf reward: cannot read {config_file}: {error}") from error
    auto_map = model_config.get("auto_map") or {}
    if "AutoModelForSequenceClassification" in auto_map and not settings.trust_remote_code:
        raise ConfigError(
            f"hf reward: the model in {settings.path} ships its own code "
            f"({auto_map['AutoModelForSequenceClassification']}); loading it without that code "
            "would give a different model. Set trust_remote_code: true if you trust the directory"
        )


def _load(settings: HFSettings) -> _Loaded:
    """Loads tokenizer and model and probes them; any failure becomes a `ConfigError`."""
    torch, transformers = _import_extra()
    device = _resolve_device(torch, settings.device)
    options = {"local_files_only": True, "trust_remote_code": settings.trust_remote_code}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(settings.path, **options)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            settings.path, dtype=_resolve_dtype(torch, settings.dtype, device), **options
        )
    except Exception as error:
        message = f"hf reward: cannot load the model in {settings.path}: {error}"
        raise ConfigError(message) from error
    pad_id = _set_padding(tokenizer, model, settings.path)
    model.to(device)
    model.eval()
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if settings.input_format == "chat_template" and not has_template:
        raise ConfigError(f"hf reward: the tokenizer in {settings.path} has no chat template")
    use_template = settings.input_format == "chat_template" or (
        settings.input_format == "auto" and has_template
    )
    token_types = "token_type_ids" in inspect.signature(model.forward).parameters
    loaded = _Loaded(torch, model, tokenizer, device, use_template, token_types, pad_id)
    _probe(loaded, settings)
    return loaded


def _probe(loaded: _Loaded, settings: HFSettings) -> None:
    """One forward pass on a short text: checks output_field and label_index before the run."""
    ids = list(loaded.tokenizer("Is this a good answer?")["input_ids"])[: settings.max_length]
    try:
        _forward(loaded, settings, [_Encoded(ids or [loaded.pad_id], None)])
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(
            f"hf reward: a probe forward pass failed on {settings.path}: {error}"
        ) from error


def _set_padding(tokenizer: Any, model: Any, path: str) -> int:
    """The pad id: the model's own when its config sets one (sequence classifiers find the last
    real token by it), else the tokenizer's pad or eos token, written into the model's config."""
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "right"
    text_config = model.config.get_text_config()
    if text_config.pad_token_id is not None:
        return int(text_config.pad_token_id)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"hf reward: the tokenizer in {path} has no pad or eos token")
        tokenizer.pad_token = tokenizer.eos_token
    text_config.pad_token_id = model.config.pad_token_id = tokenizer.pad_token_id
    return int(tokenizer.pad_token_id)


def _resolve_device(torch: ModuleType, device: str) -> Any:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(f"hf reward: device {device} is not available on this machine")
    return torch.device(device)


def _resolve_dtype(torch: ModuleType, dtype: str, device: Any) -> Any:
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, dtype)


def _encode(
    loaded: _Loaded, settings: HFSettings, prompt: Prompt, response: str
) -> _Encoded | ScoreFailure:
    """Tokenizes one (prompt, response); a template or tokenizer error fails this response only."""
    tokenizer = loaded.tokenizer
    limits = {"truncation": True, "max_length": settings.max_length}
    try:
        if loaded.use_chat_template:
            chat = [m.to_dict() for m in prompt.messages] + [
                {"role": "assistant", "content": response}
            ]
            text = tokenizer.apply_chat_template(chat, tokenize=False)
            encoding = tokenizer(text, add_special_tokens=False, **limits)
        else:
            encoding = tokenizer(_plain_prompt(prompt), response, **limits)
    except Exception as error:
        return ScoreFailure(f"cannot build the reward model input: {error}", _kind(error))
    ids = list(encoding["input_ids"])
    if not ids:
        return ScoreFailure("the reward model input is empty", "EmptyInput")
    types = encoding.get("token_type_ids") if loaded.pass_token_types else None
    return _Encoded(ids, list(types) if types is not None else None)


def _plain_prompt(prompt: Prompt) -> str:
    """The prompt as one text for ``pair`` inputs (documented in the module docstring)."""
    if len(prompt.messages) == 1 and prompt.messages[0].role == "user":
        return prompt.messages[0].content
    return "\n\n".join(f"{m.role}: {m.content}" for m in prompt.messages)


def _pad(
    torch: ModuleType, batch: list[_Encoded], pad_id: int, token_types: bool
) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` (and ``token_type_ids``) tensors."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    types = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        if item.token_type_ids is not None:
            types[row, :n] = torch.tensor(item.token_type_ids, dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        inputs["token_type_ids"] = types
    return inputs


def _pick(output: Any, field: str, label: int, rows: int) -> Any:
    """The reward column of the model output as a 1-D tensor of `rows` values."""
    values = getattr(output, field, None)
    if values is None and isinstance(output, dict):
        values = output.get(field)
    if values is None:
        raise ConfigError(f"hf reward: the model output has no field {field!r} (output_field)")
    if values.dim() == 2:
        if label >= values.shape[1]:
            raise ConfigError(
                f"hf reward: label_index {label} is out of range: {field} has "
                f"{values.shape[1]} columns"
            )
        values = values[:, label]
    if values.dim() != 1 or values.shape[0] != rows:
        raise ConfigError(f"hf reward: {field} has shape {tuple(values.shape)}, expected ({rows},)")
    return values
