"""Run configuration: the training settings, the presets, and the config a run folder keeps.

A run is fixed by three sections, ``train`` (:class:`TrainConfig`), ``task`` (the task
dataclass) and ``model`` (:class:`ntm.NTMConfig` or :class:`ntm.LSTMConfig`); ``config.json``
holds them, and :func:`resolve_config` builds them from the defaults, a preset, a config
file and the command line's flags.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

from ntm.config import (
    CONTROLLERS,
    PAPER_SETTINGS,
    DNCConfig,
    LSTMConfig,
    NTMConfig,
    from_dict,
    paper_lstm_config,
    paper_ntm_config,
    require,
    task_dnc_config,
)
from ntm.devices import DEVICE_FORMS, is_form
from ntm.model import ENGINES
from ntm.tasks import TASKS, Task, make_task

PRESETS = ("fast", "paper")
SCHEDULES = ("constant", "plateau")
MODELS = ("ntm", "lstm", "dnc")
#: A run's model configuration, of whichever kind.
ModelConfig = NTMConfig | LSTMConfig | DNCConfig
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
        default="ntm",
        metadata={
            "help": "ntm; lstm for the paper's LSTM baseline; dnc for the Differentiable "
            "Neural Computer (Graves et al., 2016)"
        },
    )
    controller: str = field(
        default="lstm", metadata={"help": "NTM controller: lstm or feedforward (a DNC's: lstm)"}
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
        metadata={"help": "stop when held-out bit errors per sequence fall below this (0: off)"},
    )
    target_cost: float = field(
        default=0.0,
        metadata={"help": "stop when the held-out cost in bits per sequence falls below this "
                  "(0: off)"},
    )  # fmt: skip
    target_excess: float = field(
        default=0.0,
        metadata={"help": "ngrams: stop when the held-out cost is less than this many bits per "
                  "sequence above the Bayes-optimal cost of the same sequences (0: off)"},
    )  # fmt: skip
    schedule: str = field(
        default="constant",
        metadata={"help": "learning rate: constant, or plateau: multiplied by --lr-decay after "
                  "--lr-patience evaluations without a new best held-out cost, down to "
                  "--lr-floor, where the next such stretch ends the run"},
    )  # fmt: skip
    lr_decay: float = field(default=0.3, metadata={"help": "plateau: factor of each lowering"})
    lr_patience: int = field(
        default=8, metadata={"help": "plateau: evaluations without a new best before lowering"}
    )
    lr_floor: float = field(default=3e-5, metadata={"help": "plateau: the lowest rate"})
    plateau_after: float = field(
        default=0.5,
        metadata={"help": "plateau: act only once the held-out cost (ngrams: above the optimum) "
                  "is below this fraction of its first value, so that a flat start, before "
                  "the network finds its memory, is not taken for the end (1: at once)"},
    )  # fmt: skip
    withhold_end_marker: bool = field(
        default=False,
        metadata={"help": "repeat_copy: train without the end marker until the held-out copies "
                  "are right (bit errors outside the marker below the target), then with it"},
    )  # fmt: skip
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
        default="native",
        metadata={
            "help": "NTM execution: eager (autograd step by step), fused (hand-written "
            "backward), compiled (fused, steps compiled with torch.compile; on a GPU replayed "
            "as CUDA graphs), native (fused, the recurrence in C, built in seconds with the "
            "system's C compiler; where that cannot build, compiled; on a GPU, fused)"
        },
    )
    device: str = field(
        default="auto",
        metadata={
            "help": "where to train: auto (a GPU where there is one, else the CPU), cpu, "
            "cuda, cuda:N; checkpoints do not depend on it (a run may resume elsewhere)"
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
            "controller": CONTROLLERS,
            "optimizer": OPTIMIZERS,
            "clip_mode": CLIP_MODES,
            "engine": ENGINES,
            "schedule": SCHEDULES,
        }
        for key, allowed in choices.items():
            value = getattr(self, key)
            require(value in allowed, name, key, value, f"one of {', '.join(allowed)}")
        require(is_form(self.device), name, "device", self.device, DEVICE_FORMS)
        require(
            self.model != "dnc" or self.controller == "lstm",
            name,
            "controller",
            self.controller,
            "lstm for --model dnc (the DNC's controller is an LSTM)",
        )
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
        for key in ("target_bit_errors", "target_cost", "target_excess"):
            value = getattr(self, key)
            require(math.isfinite(value) and value >= 0, name, key, value, "a number >= 0")
        require(
            self.target_excess == 0 or self.task == "ngrams",
            name,
            "target_excess",
            self.target_excess,
            "0 for a task without a Bayes-optimal cost (only ngrams has one)",
        )
        require(0 < self.lr_decay < 1, name, "lr_decay", self.lr_decay, "a number in (0, 1)")
        require(self.lr_patience >= 1, name, "lr_patience", self.lr_patience, "an integer >= 1")
        require(
            0 < self.plateau_after <= 1,
            name,
            "plateau_after",
            self.plateau_after,
            "a number in (0, 1]",
        )
        require(
            math.isfinite(self.lr_floor) and self.lr_floor > 0,
            name,
            "lr_floor",
            self.lr_floor,
            "a finite number > 0",
        )
        require(
            not self.withhold_end_marker or self.task == "repeat_copy",
            name,
            "withhold_end_marker",
            self.withhold_end_marker,
            "False for a task without an end marker (only repeat_copy has one)",
        )

    def targets(self) -> list[str]:
        """The targets that end the run when all are met, in words, for the log."""
        words = []
        if self.target_bit_errors > 0:
            words.append(f"held-out bit errors < {self.target_bit_errors:g}")
        if self.target_cost > 0:
            words.append(f"held-out cost < {self.target_cost:g} bits")
        if self.target_excess > 0:
            words.append(f"held-out cost < Bayes-optimal + {self.target_excess:g} bits")
        return words


@dataclass(frozen=True)
class Recipe:
    """Settings a preset gives one task, and why."""

    settings: dict[str, Any]
    why: str


#: Each task's target and budget, whatever the preset and model (the default target: held-out
#: bit errors below 0.1, which suits the copy tasks and recall).
TASK_TARGETS: dict[str, Recipe] = {
    "ngrams": Recipe(
        {"target_bit_errors": 0.0, "target_excess": 1.0},
        "judged as the paper does: against the Bayes-optimal cost of the same sequences",
    ),
    "priority_sort": Recipe(
        {"target_bit_errors": 0.0, "target_cost": 20.0, "max_sequences": 1_200_000},
        "judged by cost: the paper's NTM reached 18 to 20 bits after about a million sequences",
    ),
}
#: The fast preset's NTM settings per task beyond Adam at 3e-3 (docs/results.md).
FAST_NTM: dict[str, Recipe] = {
    "repeat_copy": Recipe(
        {"withhold_end_marker": True},
        "from scratch the end marker keeps the NTM from finding its memory; without it the "
        "copies are learned in about 45,000 sequences, and the marker after them",
    ),
    "associative_recall": Recipe(
        {"lr": 1e-3}, "at 3e-3 recall stalls near 3 bit errors per sequence; at 1e-3 it learns"
    ),
    "priority_sort": Recipe(
        {"lr": 1e-3, "batch_size": 8},
        "at 3e-3 it does not start; at batch 32 the schedule stopped it at 32.6 bits after a "
        "million sequences, where batch 8 (four times the updates) reached 20 bits at 200,704",
    ),
}
#: The fast preset's NTM model per task, where it differs from the paper's (docs/results.md).
FAST_NTM_MODEL: dict[str, Recipe] = {
    "ngrams": Recipe(
        {"memory_init": "random"},
        "a fixed random memory lets content addressing tell the slots apart: 134.8 bits on the "
        "check after 73,728 sequences, where a constant memory had 159.5 (with 256 slots, "
        "one run diverged at 45,000 sequences)",
    ),
    "priority_sort": Recipe(
        {"memory_init": "random"},
        "with a constant memory every slot looks alike to content addressing, which priority "
        "sort needs from the start",
    ),
}
#: The fast preset's DNC settings per task beyond Adam at 3e-3 (docs/results.md).
FAST_DNC: dict[str, Recipe] = {
    "priority_sort": Recipe(
        {"lr": 1e-3, "batch_size": 8},
        "the NTM's recipe (3e-3 and batch 32 are untried on the DNC): 36.6 bits on the check "
        "after 24,576 sequences, where the NTM had about 120",
    ),
}
#: What the fast preset sets for every task and model: the learning rate lowered on
#: plateaus of the held-out cost, as the shipped models' hand-made drops did.
FAST_COMMON: dict[str, Any] = {"schedule": "plateau"}


def describe_recipes() -> str:
    """Each task's preset settings and why, for ``ntm train --help``."""
    lines = textwrap.wrap(
        "per-task defaults (--preset fast: Adam 3e-3 and --schedule plateau, then these; the "
        "targets apply to every preset and model; an LSTM, and a DNC where no DNC line says "
        "otherwise, take only those):",
        96,
    )
    for task in TASKS:
        parts = [("", [TASK_TARGETS]), ("NTM: ", [FAST_NTM, FAST_NTM_MODEL]), ("DNC: ", [FAST_DNC])]
        for part, tables in parts:
            recipes = [t[task] for t in tables if task in t]
            if not recipes:
                continue
            flags = " ".join(
                f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else
                f"--{k.replace('_', '-')}" for r in recipes for k, v in r.settings.items()
            )  # fmt: skip
            text = f"{task}: {part}{flags} ({'; '.join(r.why for r in recipes)})"
            lines += textwrap.wrap(
                text, 96, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False
            )
    return "\n".join(lines)


def preset_train_settings(preset: str, task: str, model: str, controller: str) -> dict[str, Any]:
    """Training settings a preset changes from the :class:`TrainConfig` defaults."""
    if preset == "paper":
        kind = {"lstm": "baseline", "dnc": "lstm"}.get(model, controller)
        setting = PAPER_SETTINGS[task][kind]
        return {
            "optimizer": "rmsprop",
            "lr": setting.learning_rate,
            "momentum": 0.9,
            "batch_size": 1,
            "clip_mode": "value",
            "clip": 10.0,
            "eval_every": 10_000,
            **_settings(TASK_TARGETS, task),
        }
    recipe = _settings({"ntm": FAST_NTM, "dnc": FAST_DNC}.get(model, {}), task)
    return {**FAST_COMMON, **_settings(TASK_TARGETS, task), **recipe}


def _settings(recipes: dict[str, Recipe], task: str) -> dict[str, Any]:
    recipe = recipes.get(task)
    return dict(recipe.settings) if recipe is not None else {}


def preset_model_config(
    preset: str, task: str, model: str, controller: str, input_size: int, output_size: int
) -> ModelConfig:
    """The model a preset trains on ``task``."""
    if model == "lstm":
        return paper_lstm_config(task, input_size, output_size)
    if model == "dnc":
        return task_dnc_config(task, input_size, output_size)
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
        **_settings(FAST_NTM_MODEL, task),
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


#: The configuration class of each model kind.
MODEL_CONFIGS: dict[str, type[NTMConfig] | type[LSTMConfig] | type[DNCConfig]] = {
    "ntm": NTMConfig,
    "lstm": LSTMConfig,
    "dnc": DNCConfig,
}


def model_config(model: str, values: dict[str, Any]) -> ModelConfig:
    """The configuration of model kind ``model`` (one of :data:`MODELS`) from ``values``."""
    return MODEL_CONFIGS[model].from_dict(values)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs: training settings, the task and the model."""

    train: TrainConfig
    task: Task
    model: ModelConfig

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
    "device",
    "lr",
    "target_bit_errors",
    "target_cost",
    "target_excess",
    "schedule",
    "lr_decay",
    "lr_patience",
    "lr_floor",
    "plateau_after",
    "eval_every",
    "checkpoint_every",
    "threads",
    "engine",
)
