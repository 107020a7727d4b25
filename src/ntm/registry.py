"""Models and tasks by name, where the trainer, command line, evaluation and pictures look.

A **model** is any ``nn.Module`` whose constructor takes ``(input_size, output_size,
**settings)`` and whose ``forward`` maps time-major inputs ``(T, B, I)`` to logits
``(T, B, O)``, or to ``(logits, state)``. A **task** is a class built from its settings as
keyword arguments, whose instances have ``input_size``, ``output_size`` and
``sample(batch_size, generator) -> ntm.Batch``. Either enters by one registration:

- in Python, ``ntm.register_model("gru", GRUModel)`` or ``ntm.register_task("parity", Parity)``;
- from an installed package, an entry point in the group ``ntm.models`` or ``ntm.tasks``
  (``gru = mypkg.models:GRUModel``), found the first time a name is looked up.

The built-in models and tasks register themselves the same way, in their own modules.

Everything richer is optional, declared on the class itself, and read only through this
module's accessor of the same name (:func:`engines`, :func:`optimal_cost`, ...):

a model's
    ``config_class`` (a dataclass of its settings; by default one is made from the
    constructor's annotated keyword arguments), ``engines`` (the engines its constructor's
    ``engine=`` names besides ``auto``; :mod:`ntm.engines.select` chooses among them),
    ``recipe(task, preset, train)`` (its per-task settings, a :class:`Recipe`),
    ``input_weights(config)`` and ``output_weights`` (the tensors whose columns are the
    input channels and whose rows are the output channels, for ``--init-from`` with more
    channels), ``from_config``, ``two_processes_from_batch`` (the smallest batch at which
    two processes on a CPU train it faster than one: ``ntm train`` then starts two),
    ``width_setting`` (the setting that scales its width, which ``benchmarks/compare.py``
    adjusts to match parameter counts), ``causal`` (True: each output depends only on the
    inputs up to its step, so evaluation may cut a chunk after its last scored step), a
    ``state_bytes()`` method (the bytes of one sequence's state, by which evaluation on a
    CPU sizes its chunks to stay in the cache), and a
    ``trace(inputs)`` method for ``ntm viz`` returning ``(logits, final state, trace)``,
    whose trace declares what it holds (``trace.contents()``, a :class:`TraceContents`);
a task's
    ``target`` (a :class:`Recipe` of training settings: the target and budget that suit
    it), ``generalisation`` (``(label, settings)`` pairs that ``ntm eval`` reports beside
    the training distribution), ``ladder()`` (the same for the settings beyond training
    that ``ntm eval --ladder`` climbs, computed from the task's own settings),
    ``within_training()`` (settings inside the training distribution that it shows first,
    outside the ladder's mean), ``tokens``
    (True: one-hot token inputs and targets, scored by cross-entropy and wrong tokens, see
    :func:`ntm.tasks.scoring`), ``end_marker`` (True: the last target channel marks the end
    of the answer, as repeat copy's does; the trainer may withhold it until the rest is
    right, and evaluation reports it apart), ``curriculum`` (the setting a curriculum
    raises and the one it starts above), ``optimal_cost(batch)`` (a reference cost, such as
    the n-grams Bayes optimum, that ``--target-excess`` is measured against),
    ``batch_variant(seed)`` (the task one training batch is drawn from, given a seed of its
    update, an integer in [0, 2**64): the Chomsky-hierarchy tasks draw one length per
    batch, as their paper does), ``batch_settings`` (the names of the settings that change
    only how ``batch_variant`` draws training batches, not what ``sample`` draws: the
    descriptions of held-out sets leave them out), ``settings_before`` (the values of
    settings added since a run folder was saved: such a run goes on as it began),
    ``to_dict`` and ``with_settings``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, NamedTuple

from torch import Tensor

from ntm.config import JSONConfig

MODEL_GROUP = "ntm.models"
TASK_GROUP = "ntm.tasks"

#: The types a setting may have: what a command line and a JSON file can carry.
SETTING_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Recipe:
    """Settings that suit one task, and why: training settings (``train``, the fields of
    :class:`ntm.runs.config.TrainConfig`) and model settings (``model``)."""

    train: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""


class TraceContents(NamedTuple):
    """What a model's trace holds, declared by the trace (``trace.contents()``), for
    ``ntm viz`` and the viewer, time-major, on the trace's device.

    Fields:
        read_weights: (T, B, R, N) each read head's weighting.
        write_weights: (T, B, W, N) each write head's weighting.
        memory: (T, B, N, M) the memory after each step's write.
        erase: (T, B, W, M) each write head's erase vector, or None.
        add: (T, B, W, M) each write head's add vector, or None.
        panels: the extra pictures the trace offers, by name: ``usage`` (T, B, N),
            ``allocation`` (T, B, N), ``gates`` (T, B, 2: allocation and write gate),
            ``read_modes`` (T, B, R, 3: backward, content, forward), ``free_gates``
            (T, B, R). The pictures draw the ones they know, by these names.
    """

    read_weights: Tensor
    write_weights: Tensor
    memory: Tensor
    erase: Tensor | None = None
    add: Tensor | None = None
    panels: Mapping[str, Tensor] = {}


class RegistryError(ValueError):
    """A name that is not registered, or a registration that breaks the contract."""


_MODELS: dict[str, type[Any]] = {}
_TASKS: dict[str, type[Any]] = {}
_LOADED: set[str] = set()


def _register(table: dict[str, type[Any]], kind: str, name: str, cls: Any) -> None:
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise RegistryError(f"{kind} name {name!r}: expected letters, digits and underscores")
    if not inspect.isclass(cls):
        raise RegistryError(f"{kind} {name!r}: expected a class, got {cls!r}")
    known = table.get(name)
    if known is not None and known is not cls:
        raise RegistryError(
            f"{kind} {name!r} is already registered ({known.__module__}.{known.__qualname__})"
        )
    table[name] = cls


def register_model(name: str, cls: type[Any]) -> type[Any]:
    """Make ``cls`` the model called ``name`` (``ntm train --model NAME``); returns ``cls``.

    Its settings are its constructor's keyword arguments after ``input_size`` and
    ``output_size`` (or the fields of its ``config_class``); each needs a default and an
    annotation of int, float, str or bool, so that a command line and ``config.json`` can
    carry it."""
    _register(_MODELS, "model", name, cls)
    try:
        config_class(cls)
    except RegistryError:
        del _MODELS[name]
        raise
    return cls


def register_task(name: str, cls: type[Any]) -> type[Any]:
    """Make ``cls`` the task called ``name`` (``ntm train --task NAME``); returns ``cls``."""
    _register(_TASKS, "task", name, cls)
    return cls


def _load(group: str, table: dict[str, type[Any]], kind: str) -> None:
    """Register the entry points of ``group`` (once per process)."""
    if group in _LOADED:
        return
    _LOADED.add(group)
    for entry in metadata.entry_points(group=group):
        try:
            cls = entry.load()
        except Exception as error:
            raise RegistryError(
                f"the {kind} {entry.name!r} ({entry.value}, entry point of group {group}) "
                f"cannot be loaded: {type(error).__name__}: {error}"
            ) from None
        if table.get(entry.name) is not cls:
            (register_model if kind == "model" else register_task)(entry.name, cls)


def models() -> dict[str, type[Any]]:
    """Every registered model class by name, the built-in ones first."""
    _load(MODEL_GROUP, _MODELS, "model")
    return dict(_MODELS)


def tasks() -> dict[str, type[Any]]:
    """Every registered task class by name, the built-in ones first."""
    _load(TASK_GROUP, _TASKS, "task")
    return dict(_TASKS)


def model_class(name: str) -> type[Any]:
    """The model registered as ``name``."""
    known = models()
    if name not in known:
        raise RegistryError(f"unknown model {name!r}; expected one of: {', '.join(known)}")
    return known[name]


def task_class(name: str) -> type[Any]:
    """The task registered as ``name``."""
    known = tasks()
    if name not in known:
        raise RegistryError(f"unknown task {name!r}; expected one of: {', '.join(known)}")
    return known[name]


def model_name(cls: type[Any]) -> str:
    """The name ``cls`` is registered under."""
    for name, known in models().items():
        if known is cls:
            return name
    raise RegistryError(f"{cls.__qualname__} is not a registered model")


# --- Settings ----------------------------------------------------------------------------

_MADE: dict[type[Any], type[JSONConfig]] = {}


def config_class(cls: type[Any]) -> type[JSONConfig]:
    """The dataclass of a model's settings (``input_size``, ``output_size`` and the rest):
    its own ``config_class``, or one made from its constructor's keyword arguments."""
    own = getattr(cls, "config_class", None)
    if own is not None:
        return typing.cast("type[JSONConfig]", own)
    if cls not in _MADE:
        _MADE[cls] = _settings_dataclass(cls)
    return _MADE[cls]


def _settings_dataclass(cls: type[Any]) -> type[JSONConfig]:
    owner = f"model {cls.__qualname__}"
    signature = inspect.signature(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception as error:
        raise RegistryError(
            f"{owner}: cannot read its constructor's annotations: {error}"
        ) from None
    names = list(signature.parameters)
    if names[:2] != ["input_size", "output_size"]:
        raise RegistryError(
            f"{owner}: its constructor must take (input_size, output_size, **settings); "
            f"it takes ({', '.join(names)})"
        )
    fields: list[tuple[str, type[Any], Any]] = [
        ("input_size", int, dataclasses.field(default=0)),
        ("output_size", int, dataclasses.field(default=0)),
    ]
    for name, parameter in list(signature.parameters.items())[2:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in ("device", "dtype", "engine", "batch_first"):
            continue  # how and where it runs, not what it is
        kind = hints.get(name)
        if kind not in SETTING_TYPES:
            raise RegistryError(
                f"{owner}: setting {name!r} needs an annotation of int, float, str or bool "
                f"(a command line and config.json carry only those), got {kind!r}"
            )
        if parameter.default is parameter.empty:
            raise RegistryError(f"{owner}: setting {name!r} needs a default")
        fields.append((name, kind, dataclasses.field(default=parameter.default)))
    return dataclasses.make_dataclass(
        f"{cls.__name__}Settings", fields, bases=(JSONConfig,), frozen=True
    )


def settings_of(cls: type[Any]) -> list[tuple[str, type[Any], Any]]:
    """(name, type, default) of each setting of a model class or a task class, without a
    model's ``input_size`` and ``output_size``."""
    target = config_class(cls) if cls in _MODELS.values() else cls
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        return [
            (f.name, hints[f.name], f.default)
            for f in dataclasses.fields(target)
            if f.name not in ("input_size", "output_size") and f.init
        ]
    hints = typing.get_type_hints(target.__init__)
    return [
        (name, hints.get(name, str), p.default)
        for name, p in inspect.signature(target).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def build_model(cls: type[Any], config: Any, engine: str = "auto") -> Any:
    """A model of class ``cls`` from its settings ``config`` (an instance of
    :func:`config_class`), asking for ``engine`` when it has engines (``auto``: its own
    default)."""
    from_config: Callable[..., Any] | None = getattr(cls, "from_config", None)
    extra = {"engine": engine} if engine != "auto" and engines(cls) else {}
    if from_config is not None:
        return from_config(config, **extra)
    return cls(**config.to_dict(), **extra)


# --- The optional members: read here, and nowhere else ------------------------------------
#
# Each accessor reads one optional member of the contract (the module's docstring lists them)
# and says what its absence means, so the rest of the library never probes a model, a task
# or a trace for what it may have.


def engines(model: Any) -> tuple[str, ...]:
    """The engines a model class (or model) runs a sequence on; () for one without."""
    return tuple(getattr(model, "engines", ()))


def recipe(cls: type[Any]) -> Callable[[str, str, Mapping[str, Any]], Any] | None:
    """A model class's ``recipe(task, preset, train)``; None where it has none."""
    return getattr(cls, "recipe", None)


def input_weights(cls: type[Any], config: Any) -> tuple[str, ...] | None:
    """The tensors whose first columns are a model's input channels (None: undeclared)."""
    declared = getattr(cls, "input_weights", None)
    return None if declared is None else tuple(declared(config))


def output_weights(cls: type[Any]) -> tuple[str, ...]:
    """The tensors whose rows are a model's output channels; () where undeclared."""
    return tuple(getattr(cls, "output_weights", ()))


def two_processes_from_batch(cls: type[Any]) -> int:
    """The smallest batch at which two processes train the model faster than one on a CPU
    (0: never, as far as it knows)."""
    return int(getattr(cls, "two_processes_from_batch", 0))


def width_setting(cls: type[Any]) -> tuple[str, int] | None:
    """The setting that scales a model's width and the step between its widths
    (``width_setting``), which a comparison at equal parameter counts adjusts; None where
    the model declares none."""
    declared = getattr(cls, "width_setting", None)
    return None if declared is None else (str(declared[0]), int(declared[1]))


def causal(model: Any) -> bool:
    """Whether a model class (or model) declares that each of its outputs depends only on
    the inputs up to its step (``causal``); False where it declares nothing."""
    return bool(getattr(model, "causal", False))


def state_bytes(model: Any) -> int | None:
    """The bytes of one sequence's state in a model (its ``state_bytes()``); None where it
    declares none."""
    declared = getattr(model, "state_bytes", None)
    return None if declared is None else int(declared())


def tracer(model: Any) -> Callable[..., tuple[Any, Any, Any]] | None:
    """A model's ``trace(inputs) -> (logits, final state, trace)``; None without one."""
    return getattr(model, "trace", None)


def adapt_weights(cls: type[Any]) -> Callable[[dict[str, Tensor], Any, Any], Any] | None:
    """A model class's ``adapt_weights(tensors, trained, wanted)``: its trained weights
    (with settings ``trained``) made to fit a model with settings ``wanted`` that differ
    only in settings no weight learns the meaning of (an NTM's memory size); None where the
    model declares none (it then loads only weights of the shapes its settings give)."""
    return getattr(cls, "adapt_weights", None)


def initial_state(model: Any) -> Callable[[int], Any] | None:
    """A model's ``initial_state(batch_size)``; None without one."""
    return getattr(model, "initial_state", None)


def trace_contents(trace: Any) -> TraceContents | None:
    """What a trace declares it holds (its ``contents()``); None where it declares nothing."""
    declared = getattr(trace, "contents", None)
    return None if declared is None else typing.cast("TraceContents", declared())


def task_target(cls: type[Any]) -> Recipe:
    """A task class's ``target`` (its training settings); the default target otherwise."""
    declared = getattr(cls, "target", None)
    return declared if isinstance(declared, Recipe) else Recipe()


def generalisation(task: Any) -> list[tuple[str, dict[str, Any]]]:
    """A task's (class's or instance's) ``generalisation`` settings; [] without."""
    return list(getattr(task, "generalisation", []))


def ladder(task: Any) -> list[tuple[str, dict[str, Any]]]:
    """A task's ``ladder()``, else its generalisation settings."""
    own = getattr(task, "ladder", None)
    return list(own()) if own is not None else generalisation(task)


def within_training(task: Any) -> list[tuple[str, dict[str, Any]]]:
    """A task's ``within_training()``: settings inside its training distribution that
    ``ntm eval --ladder`` shows before the climb (where within it a model starts to fail;
    they are no part of the ladder's mean); [] without."""
    own = getattr(task, "within_training", None)
    return list(own()) if own is not None else []


def tokens(task: Any) -> bool:
    """Whether a task is a token task (``tokens = True``)."""
    return bool(getattr(task, "tokens", False))


def end_marker(task: Any) -> bool:
    """Whether a task's targets end with an end-marker channel (``end_marker = True``)."""
    return bool(getattr(task, "end_marker", False))


def curriculum(cls: type[Any]) -> tuple[str, str] | None:
    """A task class's ``curriculum``: (the setting a curriculum raises, the one it starts
    above); None without one."""
    declared = getattr(cls, "curriculum", None)
    return None if declared is None else (str(declared[0]), str(declared[1]))


def batch_variant(task: Any, seed: int) -> Any:
    """The task that one training batch is drawn from: a task's ``batch_variant(seed)``
    (``seed``: its update's, in [0, 2**64)), else the task itself."""
    own = getattr(task, "batch_variant", None)
    return task if own is None else own(seed)


def batch_settings(task: Any) -> tuple[str, ...]:
    """A task's ``batch_settings``: the settings that change only how its training batches
    are drawn (:func:`batch_variant`), not its samples; () without."""
    names = getattr(task, "batch_settings", ())
    return (names,) if isinstance(names, str) else tuple(names)


def settings_before(cls: type[Any]) -> dict[str, Any]:
    """A task class's ``settings_before``: the values its settings added since had in the
    runs saved before them (a run folder's config without such a setting gets this value,
    not the new default); {} without."""
    return dict(getattr(cls, "settings_before", {}))


def optimal_cost(task: Any) -> Callable[[Any], float] | None:
    """A task's ``optimal_cost(batch)`` (a reference cost, such as the n-grams Bayes
    optimum), or a task class's; None without one."""
    return getattr(task, "optimal_cost", None)
