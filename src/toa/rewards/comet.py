"""The `comet` reward: COMET and COMET-KIWI translation quality through unbabel-comet.

Optional extra ``pip install 'toa-synth[comet]'`` (unbabel-comet, imported only when the reward is
built). Written against unbabel-comet 2.2.x: ``comet.load_from_checkpoint(path,
local_files_only=...)`` and ``model.predict(samples, batch_size=..., gpus=0|1,
progress_bar=False).scores``; samples are dicts ``{"src", "mt"}`` (reference-free quality
estimation, COMET-KIWI) or ``{"src", "mt", "ref"}`` (reference-based, COMET-22, XCOMET).

Checkpoints are local; nothing is downloaded. ``path`` is the ``model.ckpt`` file or the model
directory that holds ``checkpoints/model.ckpt`` (the layout of a downloaded COMET model, with
``hparams.yaml`` beside ``checkpoints/``). COMET also loads the tokenizer and config of the
encoder named by ``pretrained_model`` in ``hparams.yaml`` (``xlm-roberta-large``,
``microsoft/infoxlm-large``); offline, that must already be in the local Hugging Face cache
(``HF_HUB_OFFLINE=1``) or ``pretrained_model`` must name a local directory.

Inputs per response: ``mt`` is the response; ``src`` is ``prompt.extra[source_field]`` (None:
the prompt's last user message); ``ref`` is ``prompt.extra[reference_field]``. ``reference``
picks the mode: ``auto`` sends references when the model requires them
(``model.requires_references()``), ``required`` always, ``none`` never (refused at build for a
model that requires them). A missing or non-string source or reference fails that response
(`ScoreFailure`); nothing is scored without its inputs.

Scores are COMET's raw segment scores (about 0-1 for the released models; not clipped). The model
runs on the single worker thread of a `ThreadedReward`; `score_batch` takes responses to many
prompts, so `BatchingReward` can fill whole batches. Each ``predict`` call builds a Lightning
trainer, whose per-call banner ("GPU available: ...") this adapter quiets by setting the
``pytorch_lightning`` and ``lightning.pytorch`` loggers to WARNING. Note that importing comet
calls ``logging.basicConfig(level=INFO)`` (comet's own behaviour).

`CometReward` runs on the plain `CometSettings`; the YAML side, ``reward: {type: comet, ...}``, is
`toa.config.rewards.CometRewardConfig`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from toa.errors import ConfigError
from toa.rewards.batching import ScoreItem, ThreadedReward, WorkerReward
from toa.types import Prompt, Score, ScoreFailure

__all__ = [
    "CometDevice",
    "CometReference",
    "CometReward",
    "CometSettings",
    "build_sample",
    "resolve_checkpoint",
]

_EXTRA_HINT = "pip install 'toa-synth[comet]'"
_QUIET_LOGGERS = ("pytorch_lightning", "lightning.pytorch")


CometReference = Literal["auto", "required", "none"]
CometDevice = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True, slots=True)
class CometSettings:
    """What the `comet` reward loads and which inputs it sends (``reward: {type: comet, ...}``).

    Attributes:
        path: the ``model.ckpt`` file, or the model directory holding ``checkpoints/model.ckpt``.
        source_field: the prompt's extra field holding the source text; None: the prompt's last
            user message is the source.
        reference_field: the prompt's extra field holding the reference translation.
        reference: ``auto`` (references when the model requires them), ``required`` or ``none``.
        batch_size: segments per forward pass inside ``predict`` (>= 1).
        device: ``auto`` (one GPU when CUDA is available, else CPU), ``cpu`` or ``cuda``.
    """

    path: str
    source_field: str | None = "source"
    reference_field: str = "reference"
    reference: CometReference = "auto"
    batch_size: int = 16
    device: CometDevice = "auto"


class CometReward(WorkerReward):
    """A COMET or COMET-KIWI checkpoint as a `RewardModel` and a `BatchScorer`.

    Raises (at construction):
        ConfigError: unbabel-comet is missing, the checkpoint or its ``hparams.yaml`` is
            missing, loading fails, or ``reference: none`` with a model that requires
            references.
    """

    name = "comet"

    def __init__(self, settings: CometSettings) -> None:
        self.settings = settings
        comet = _import_comet()
        checkpoint = resolve_checkpoint(settings.path)
        self._model: Any = _load(comet, checkpoint)
        self.uses_reference = _uses_reference(settings, self._model)
        """True when every sample carries a reference (``ref``)."""
        self._gpus = _gpus(settings.device)
        self._worker = ThreadedReward(self.name, self._score_items, on_close=self._release)

    def _release(self) -> None:
        self._model = None

    def _score_items(self, items: Sequence[ScoreItem]) -> list[Score]:
        """On the worker thread: build samples, one ``predict`` for all that could be built."""
        built = [build_sample(self.settings, self.uses_reference, p, r) for p, r in items]
        samples = [sample for sample in built if not isinstance(sample, ScoreFailure)]
        if not samples:
            return [b for b in built if isinstance(b, ScoreFailure)]
        if self._model is None:
            raise RuntimeError("the comet reward was closed")
        prediction = self._model.predict(
            samples, batch_size=self.settings.batch_size, gpus=self._gpus, progress_bar=False
        )
        values = iter(_scores_of(prediction, len(samples)))
        return [b if isinstance(b, ScoreFailure) else next(values) for b in built]


def build_sample(
    settings: CometSettings, uses_reference: bool, prompt: Prompt, response: str
) -> dict[str, str] | ScoreFailure:
    """COMET's input for one response: ``{"src", "mt"}`` plus ``"ref"`` when `uses_reference`.

    A missing or non-string source or reference gives a `ScoreFailure` naming the field.
    """
    if settings.source_field is None:
        source: object = prompt.text
    else:
        source = prompt.extra.get(settings.source_field)
    if not isinstance(source, str):
        return _missing(prompt, settings.source_field, "source", source)
    sample = {"src": source, "mt": response}
    if uses_reference:
        reference = prompt.extra.get(settings.reference_field)
        if not isinstance(reference, str):
            return _missing(prompt, settings.reference_field, "reference", reference)
        sample["ref"] = reference
    return sample


def _missing(prompt: Prompt, field: str | None, role: str, value: object) -> ScoreFailure:
    problem = "is missing" if value is None else f"is a {type(value).__name__}, not a string"
    return ScoreFailure(
        f"comet: the {role} field {field!r} of prompt {prompt.id!r} {problem}",
        f"Missing{role.capitalize()}",
    )


def resolve_checkpoint(path: str) -> Path:
    """The ``model.ckpt`` file that `path` names (the file, or a model directory holding it).

    Raises:
        ConfigError: no such checkpoint, or no ``hparams.yaml`` two levels above it (COMET needs
            it to know the model class).
    """
    given = Path(path).expanduser()
    checkpoint = given / "checkpoints" / "model.ckpt" if given.is_dir() else given
    if not checkpoint.is_file():
        hint = ""
        if not given.exists() and "/" in path and not path.startswith((".", "/", "~")):
            hint = (
                "; it looks like a hub id, and nothing is downloaded here: fetch it where there "
                f"is hub access (`hf download {path} --local-dir DIR`) and set path to DIR"
            )
        raise ConfigError(f"comet reward: no checkpoint at {path} (expected model.ckpt){hint}")
    hparams = checkpoint.parent.parent / "hparams.yaml"
    if not hparams.is_file():
        raise ConfigError(
            f"comet reward: {hparams} is missing: COMET needs the hparams.yaml of the model "
            "directory beside checkpoints/ (keep the downloaded layout)"
        )
    return checkpoint


def _import_comet() -> ModuleType:
    try:
        return importlib.import_module("comet")
    except ImportError as error:
        raise ConfigError(f"the comet reward needs unbabel-comet: {_EXTRA_HINT}") from error


def _load(comet: ModuleType, checkpoint: Path) -> Any:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        model = comet.load_from_checkpoint(str(checkpoint), local_files_only=True)
    except Exception as error:
        raise ConfigError(
            f"comet reward: cannot load {checkpoint}: {error}. The encoder named by "
            "pretrained_model in hparams.yaml must be in the local Hugging Face cache "
            "(HF_HUB_OFFLINE=1) or be a local directory"
        ) from error
    model.eval()
    return model


def _uses_reference(settings: CometSettings, model: Any) -> bool:
    required = bool(model.requires_references())
    if settings.reference == "none" and required:
        raise ConfigError(
            f"comet reward: the model at {settings.path} requires references; "
            "set reference: auto or required"
        )
    return settings.reference == "required" or (settings.reference == "auto" and required)


def _gpus(device: str) -> int:
    """COMET's ``gpus`` argument: 1 on CUDA, 0 on the CPU."""
    if device == "cpu":
        return 0
    available = bool(importlib.import_module("torch").cuda.is_available())
    if device == "cuda" and not available:
        raise ConfigError("comet reward: device cuda is not available on this machine")
    return 1 if available else 0


def _scores_of(prediction: Any, expected: int) -> list[Score]:
    """The segment scores of a COMET ``Prediction`` (``ThreadedReward`` checks each value)."""
    scores = getattr(prediction, "scores", None)
    if scores is None and isinstance(prediction, dict):
        scores = prediction.get("scores")
    if not isinstance(scores, Sequence) or len(scores) != expected:
        raise ValueError(f"comet predict returned {scores!r:.80} for {expected} samples")
    return list(scores)
