"""Run configuration: the training settings, the presets, and the config a run folder keeps.

A run is fixed by three sections, ``train`` (:class:`TrainConfig`), ``task`` (the task
dataclass) and ``model`` (:class:`ntm.NTMConfig` or :class:`ntm.LSTMConfig`); ``config.json``
holds them, and :func:`resolve_config` builds them from the defaults, a preset, a config
file and the command line's flags.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ntm.config import (
    PAPER_SETTINGS,
    LSTMConfig,
    NTMConfig,
    from_dict,
    paper_lstm_config,
    paper_ntm_config,
    require,
)
from ntm.model import ENGINES
from ntm.tasks import TASKS, Task, make_task

PRESETS = ("fast", "paper")
MODELS = ("ntm", "lstm")
OPTIMIZERS = ("adam", "rmsprop")
CLIP_MODES = ("norm", "value")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``ntm train`` makes a flag of every field."""

    task: str = field(default="copy", metadata={"help": "which of the five tasks"})
    preset: str = field(
        default="fast",
        metadata={"help": "fast: quickest to solve on a CPU; paper: the paper's set-up"},
    )
    model: str = field(
        default="ntm", metadata={"help": "ntm, or lstm for the paper's LSTM baseline"}
    )
    controller: str = field(
        default="lstm", metadata={"help": "NTM controller: lstm or feedforward"}
    )
    optimizer: str = field(
        default="adam", metadata={"help": "adam, or rmsprop (Graves' centred form)"}
    )
    lr: float = field(default=3e-3, metadata={"help": "learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "RMSProp momentum"})
    batch_size: int = field(default=32, metadata={"help": "sequences per update"})
    clip_mode: str = field(
        default="norm",
        metadata={"help": "norm: clip the global gradient norm; value: each element"},
    )
    clip: float = field(default=50.0, metadata={"help": "gradient clipping bound (0: off)"})
    seed: int = field(default=1, metadata={"help": "seed of the weights and training batches"})
    max_sequences: int = field(
        default=1_000_000, metadata={"help": "stop after this many training sequences"}
    )
    target_bit_errors: float = field(
        default=0.1,
        metadata={"help": "stop when held-out bit errors per sequence fall below this (0: never)"},
    )
    eval_every: int = field(
        default=4096, metadata={"help": "evaluate on the held-out set every this many sequences"}
    )
    eval_size: int = field(default=512, metadata={"help": "sequences in the held-out set"})
    eval_seed: int = field(
        default=1_000_003, metadata={"help": "seed of the held-out set (never used in training)"}
    )
    checkpoint_every: int = field(
        default=0, metadata={"help": "checkpoint every this many sequences (0: at each evaluation)"}
    )
    threads: int = field(default=1, metadata={"help": "PyTorch intra-op threads (0: PyTorch's)"})
    curriculum: bool = field(
        default=False,
        metadata={
            "help": "start on short sequences (few items) and lengthen them as the training "
            "bit errors fall; evaluation always uses the full task"
        },
    )
    engine: str = field(
        default="compiled",
        metadata={
            "help": "NTM execution: eager (autograd step by step), fused (hand-written "
            "backward), compiled (fused, steps compiled with torch.compile)"
        },
    )
    init_from: str = field(
        default="",
        metadata={
            "help": "start from the weights of this run folder (its latest checkpoint) or "
            "shipped model, e.g. copy; it may have fewer input or output channels, which are "
            "then added (new inputs with zero weights); the optimiser starts afresh",
            "metavar": "RUN_DIR|MODEL",
        },
    )

    def __post_init__(self) -> None:
        name = type(self).__name__
        choices = {
            "task": tuple(TASKS),
            "preset": PRESETS,
            "model": MODELS,
            "controller": ("lstm", "feedforward"),
            "optimizer": OPTIMIZERS,
            "clip_mode": CLIP_MODES,
            "engine": ENGINES,
        }
        for key, allowed in choices.items():
            value = getattr(self, key)
            require(value in allowed, name, key, value, f"one of {', '.join(allowed)}")
        positive = ("batch_size", "max_sequences", "eval_every", "eval_size")
        for key in positive:
            require(getattr(self, key) >= 1, name, key, getattr(self, key), "an integer >= 1")
        for key in ("checkpoint_every", "threads", "seed", "eval_seed"):
            require(getattr(self, key) >= 0, name, key, getattr(self, key), "an integer >= 0")
        require(math.isfinite(self.lr) and self.lr > 0, name, "lr", self.lr, "a finite number > 0")
        require(0 <= self.momentum < 1, name, "momentum", self.momentum, "a number in [0, 1)")
        require(
            math.isfinite(self.clip) and self.clip >= 0, name, "clip", self.clip, "a number >= 0"
        )
        require(
            math.isfinite(self.target_bit_errors) and self.target_bit_errors >= 0,
            name,
            "target_bit_errors",
            self.target_bit_errors,
            "a number >= 0",
        )


def preset_train_settings(preset: str, task: str, model: str, controller: str) -> dict[str, Any]:
    """Training settings a preset changes from the :class:`TrainConfig` defaults."""
    if preset == "paper":
        setting = PAPER_SETTINGS[task]["baseline" if model == "lstm" else controller]
        return {
            "optimizer": "rmsprop",
            "lr": setting.learning_rate,
            "momentum": 0.9,
            "batch_size": 1,
            "clip_mode": "value",
            "clip": 10.0,
            "eval_every": 10_000,
        }
    return {}


def preset_model_config(
    preset: str, task: str, model: str, controller: str, input_size: int, output_size: int
) -> NTMConfig | LSTMConfig:
    """The model a preset trains on ``task``."""
    if model == "lstm":
        return paper_lstm_config(task, input_size, output_size)
    if preset == "paper":
        return paper_ntm_config(task, controller, input_size, output_size)
    setting = PAPER_SETTINGS[task][controller]
    return NTMConfig(
        input_size=input_size,
        output_size=output_size,
        controller=controller,
        controller_size=setting.size,
        controller_layers=setting.layers,
        num_read_heads=setting.heads,
        num_write_heads=setting.heads,
    )


SECTIONS = ("train", "task", "model")


def check_sections(data: dict[str, Any]) -> None:
    """Raise a ValueError unless ``data`` has only the sections of a run config, each an object."""
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ValueError(
            f"config: unknown section(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(SECTIONS)}"
        )
    for section in SECTIONS:
        if not isinstance(data.get(section, {}), dict):
            raise ValueError(f"config: section {section!r} must be a JSON object")


def model_config(model: str, values: dict[str, Any]) -> NTMConfig | LSTMConfig:
    """The configuration of model kind ``model`` (``ntm`` or ``lstm``) from ``values``."""
    return LSTMConfig.from_dict(values) if model == "lstm" else NTMConfig.from_dict(values)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs: training settings, the task and the model."""

    train: TrainConfig
    task: Task
    model: NTMConfig | LSTMConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": dataclasses.asdict(self.train),
            "task": self.task.to_dict(),
            "model": self.model.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        check_sections(data)
        train = from_dict(TrainConfig, data.get("train", {}))
        task = make_task(train.task, **data.get("task", {}))
        return cls(train, task, model_config(train.model, data.get("model", {}))).checked()

    def checked(self) -> RunConfig:
        """Raise a ValueError when the model's sizes do not fit the task."""
        for key, task_value in (
            ("input_size", self.task.input_size),
            ("output_size", self.task.output_size),
        ):
            value = getattr(self.model, key)
            require(
                value == task_value,
                type(self.model).__name__,
                key,
                value,
                f"{task_value}, the {self.train.task} task's {key}",
            )
        return self


def resolve_config(
    train_settings: dict[str, Any],
    task_settings: dict[str, Any],
    model_settings: dict[str, Any],
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Combine, in increasing priority: defaults, the preset, ``base`` (a config file), flags."""
    base = base or {}
    check_sections(base)
    chosen = {**base.get("train", {}), **train_settings}
    probe = from_dict(TrainConfig, chosen)  # validates names and values first
    preset = preset_train_settings(probe.preset, probe.task, probe.model, probe.controller)
    train = from_dict(TrainConfig, {**preset, **chosen})
    task = make_task(train.task, **{**base.get("task", {}), **task_settings})
    default_model = preset_model_config(
        train.preset, train.task, train.model, train.controller, task.input_size, task.output_size
    )
    model_values = {**default_model.to_dict(), **base.get("model", {}), **model_settings}
    return RunConfig(train, task, model_config(train.model, model_values)).checked()


#: Settings a resumed run may change; all others are fixed by the run's config.json.
RESUMABLE = (
    "max_sequences",
    "lr",
    "target_bit_errors",
    "eval_every",
    "checkpoint_every",
    "threads",
    "engine",
)
