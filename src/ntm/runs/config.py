"""Run configuration: the training settings, the presets, and the config a run folder keeps.

A run is fixed by three sections, ``train`` (:class:`TrainConfig`), ``task`` (the task's
settings) and ``model`` (the model's settings: its ``config_class``, see
:mod:`ntm.registry`); ``config.json`` holds them, and :func:`resolve_config` builds them
from the defaults, a preset (the model's and the task's recipes), a config file and the
command line's flags.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import typing
from dataclasses import dataclass, field
from typing import Any

from ntm import registry
from ntm.config import JSONConfig, from_dict, require, require_positive
from ntm.engines.devices import DEVICE_FORMS, is_form
from ntm.engines.select import AUTO, ENGINES
from ntm.models.ntm.config import CONTROLLERS
from ntm.registry import Recipe
from ntm.tasks.contract import Task, make_task, task_target

PRESETS = ("fast", "paper")
SCHEDULES = ("constant", "plateau", "cosine")
#: A run's model configuration: the ``config_class`` of its model (see :mod:`ntm.registry`).
ModelConfig = JSONConfig
OPTIMIZERS = ("adam", "adamw", "rmsprop")
CLIP_MODES = ("norm", "value")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``ntm train`` makes a flag of every field."""

    task: str = field(
        default="copy", metadata={"help": "a registered task: the paper's five, or your own"}
    )
    preset: str = field(
        default="fast",
        metadata={"help": "fast: quickest to solve on a CPU; paper: the paper's set-up"},
    )
    model: str = field(
        default="ntm",
        metadata={
            "help": "a registered model: ntm; lstm for the paper's LSTM baseline; dnc for "
            "the Differentiable Neural Computer (Graves et al., 2016); or your own"
        },
    )
    controller: str = field(
        default="lstm", metadata={"help": "NTM controller: lstm or feedforward (a DNC's: lstm)"}
    )
    optimizer: str = field(
        default="adam",
        metadata={"help": "adam; adamw (decoupled weight decay, --weight-decay); or rmsprop "
                  "(Graves' centred form)"},
    )  # fmt: skip
    weight_decay: float = field(
        default=0.0, metadata={"help": "adamw: decoupled weight decay (0: none)"}
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
        metadata={"help": "learning rate: constant; plateau: multiplied by --lr-decay after "
                  "--lr-patience evaluations without a new best held-out cost, down to "
                  "--lr-floor, where the next such stretch ends the run; or cosine: from "
                  "--lr down to --lr-floor along half a cosine over --decay-sequences"},
    )  # fmt: skip
    decay_sequences: int = field(
        default=0,
        metadata={"help": "cosine: the sequences the rate decays over (0: --max-sequences; "
                  "give it to keep the schedule when a resumed run gets a larger budget)"},
    )  # fmt: skip
    warmup: int = field(
        default=0,
        metadata={"help": "sequences over which the learning rate rises linearly to --lr "
                  "(0: none), under any schedule"},
    )  # fmt: skip
    stop_patience: int = field(
        default=0,
        metadata={"help": "converged: stop after this many evaluations without a new best "
                  "held-out cost, once the model has learned (see --plateau-after; 0: off)"},
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
    tensorboard: bool = field(
        default=False,
        metadata={
            "help": "also log each evaluation (costs, errors, learning rate, a held-out "
            "sequence's picture) to RUN_DIR/tensorboard; needs the tensorboard extra"
        },
    )
    engine: str = field(
        default=AUTO,
        metadata={
            "help": "how the model runs a sequence: auto (the fastest that runs here: native, "
            "else fused, else eager), eager (autograd step by step), fused (hand-written "
            "backward), compiled (fused, steps compiled with torch.compile), native (the "
            "recurrence in C, built in seconds with the system's C compiler). One fallback "
            "chain for every model: native and compiled fall back to fused where they cannot "
            "run, fused to eager where the model has no fused (ntm.engines.select)"
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
        values = dataclasses.asdict(self)
        choices = {
            "task": tuple(registry.tasks()),
            "preset": PRESETS,
            "model": tuple(registry.models()),
            "controller": CONTROLLERS,
            "optimizer": OPTIMIZERS,
            "clip_mode": CLIP_MODES,
            "engine": (AUTO, *ENGINES),
            "schedule": SCHEDULES,
        }
        for key, allowed in choices.items():
            value = values[key]
            require(value in allowed, name, key, value, f"one of {', '.join(allowed)}")
        require(is_form(self.device), name, "device", self.device, DEVICE_FORMS)
        positive = ("batch_size", "max_sequences", "eval_every", "eval_size")
        require_positive(name, **{key: values[key] for key in positive})
        nonnegative = (
            "checkpoint_every",
            "threads",
            "seed",
            "eval_seed",
            "warmup",
            "stop_patience",
            "decay_sequences",
        )
        for key in nonnegative:
            require(values[key] >= 0, name, key, values[key], "an integer >= 0")
        require(math.isfinite(self.lr) and self.lr > 0, name, "lr", self.lr, "a finite number > 0")
        require(0 <= self.momentum < 1, name, "momentum", self.momentum, "a number in [0, 1)")
        require(
            math.isfinite(self.clip) and self.clip >= 0, name, "clip", self.clip, "a number >= 0"
        )
        for key in ("target_bit_errors", "target_cost", "target_excess"):
            value = values[key]
            require(math.isfinite(value) and value >= 0, name, key, value, "a number >= 0")
        task = registry.task_class(self.task)
        require(
            self.target_excess == 0 or registry.optimal_cost(task) is not None,
            name,
            "target_excess",
            self.target_excess,
            f"0 for a task without a reference cost ({self.task} has no optimal_cost)",
        )
        require(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            name,
            "weight_decay",
            self.weight_decay,
            "a finite number >= 0",
        )
        require(
            self.weight_decay == 0 or self.optimizer == "adamw",
            name,
            "weight_decay",
            self.weight_decay,
            f"0 with --optimizer {self.optimizer} (weight decay is adamw's)",
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
            not self.withhold_end_marker or has_end_marker(task),
            name,
            "withhold_end_marker",
            self.withhold_end_marker,
            f"False for a task without an end marker ({self.task} has no end_marker setting)",
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


def has_end_marker(task: type[Any]) -> bool:
    """Whether a task class has an ``end_marker`` setting (repeat copy: the marker that
    ``--withhold-end-marker`` holds back)."""
    return any(name == "end_marker" for name, _, _ in registry.settings_of(task))


#: What each preset sets for every task and model. fast: the learning rate lowered on
#: plateaus of the held-out cost, as the shipped models' hand-made drops did. paper: the
#: paper's set-up (centred RMSProp in Graves' form, batch 1, element-wise clipping at 10).
PRESET_COMMON: dict[str, dict[str, Any]] = {
    "fast": {"schedule": "plateau"},
    "paper": {
        "optimizer": "rmsprop",
        "momentum": 0.9,
        "batch_size": 1,
        "clip_mode": "value",
        "clip": 10.0,
        "eval_every": 10_000,
    },
}


def recipe_for(preset: str, task: str, model: str, train: dict[str, Any]) -> Recipe | None:
    """The model's recipe for ``task`` under ``preset`` (None: the model has none for it,
    and trains with its own defaults); ``train``: the training settings chosen so far."""
    cls = registry.model_class(model)
    recipe = registry.recipe(cls)
    if recipe is None:
        return None
    return typing.cast("Recipe | None", recipe(task, preset, train))


def _flags(settings: dict[str, Any]) -> str:
    return " ".join(
        f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')} {v}"
        for k, v in settings.items()
    )


def recipes() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Each task's preset settings and why: (task, [(whose, flags, why)]): the task's target
    (whose ""), then each model's fast-preset settings where they differ from its defaults."""
    defaults = dataclasses.asdict(TrainConfig())
    out = []
    for task in registry.tasks():
        parts = []
        target = task_target(task)
        if target.train:
            parts.append(("", _flags(dict(target.train)), target.why))
        for model, cls in registry.models().items():
            recipe = recipe_for("fast", task, model, {**defaults, "task": task})
            if recipe is None:
                continue
            base = registry.config_class(cls)()
            changed = {
                **recipe.train,
                **{k: v for k, v in recipe.model.items() if base.to_dict()[k] != v},
            }
            if changed:
                parts.append((model, _flags(changed), recipe.why))
        if parts:
            out.append((task, parts))
    return out


#: What the per-task settings are, before them.
_RECIPES_LEAD = (
    "per-task defaults (--preset fast: Adam 3e-3 and --schedule plateau, then these; the "
    "targets apply to every preset and model)"
)


def describe_recipes() -> str:
    """:func:`recipes` as ``ntm train --help`` shows them."""
    lines = textwrap.wrap(_RECIPES_LEAD + ":", 96)
    for task, parts in recipes():
        text = "; ".join(
            f"{whose + ': ' if whose else ''}{flags}{f' ({why})' if why else ''}"
            for whose, flags, why in parts
        )
        lines += textwrap.wrap(
            f"{task}: {text}",
            96,
            initial_indent="  ",
            subsequent_indent="      ",
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def recipes_markdown() -> list[str]:
    """:func:`recipes` as a Markdown list, for docs/guide.md."""
    lines = []
    for task, parts in recipes():
        lines.append(f"- `{task}`:")
        for whose, flags, why in parts:
            who = f"`--model {whose}`" if whose else "target"
            lines.append(f"  - {who}: `{flags}`" + (f": {why}" if why else ""))
    return lines


def preset_train_settings(
    preset: str, task: str, model: str, train: dict[str, Any]
) -> dict[str, Any]:
    """Training settings a preset changes from the :class:`TrainConfig` defaults: the
    preset's own, the task's target, the model's recipe for the task."""
    recipe = recipe_for(preset, task, model, train) or Recipe()
    return {**PRESET_COMMON[preset], **task_target(task).train, **recipe.train}


def preset_model_config(
    preset: str, task: str, model: str, train: dict[str, Any], input_size: int, output_size: int
) -> ModelConfig:
    """The model a preset trains on ``task``: the model's defaults and its recipe."""
    recipe = recipe_for(preset, task, model, train) or Recipe()
    config = registry.config_class(registry.model_class(model))
    return config.from_dict({"input_size": input_size, "output_size": output_size, **recipe.model})


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


def model_config(model: str, values: dict[str, Any]) -> ModelConfig:
    """The settings of the model registered as ``model``, from ``values``."""
    return registry.config_class(registry.model_class(model)).from_dict(values)


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
            value = self.model.to_dict()[key]
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
    probe = dataclasses.asdict(from_dict(TrainConfig, chosen))  # names and values first
    preset = preset_train_settings(probe["preset"], probe["task"], probe["model"], probe)
    train = from_dict(TrainConfig, {**preset, **chosen})
    task = make_task(train.task, **{**base.get("task", {}), **task_settings})
    default_model = preset_model_config(
        train.preset, train.task, train.model, probe, task.input_size, task.output_size
    )
    model_values = {**default_model.to_dict(), **base.get("model", {}), **model_settings}
    return RunConfig(train, task, model_config(train.model, model_values)).checked()


#: Settings a resumed run may change; all others are fixed by the run's config.json.
RESUMABLE = (
    "max_sequences",
    "stop_patience",
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
