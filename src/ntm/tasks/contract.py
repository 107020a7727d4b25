"""What every task is: a batch, the task protocol, and the tasks by name.

Also the base class of the built-in tasks.

Dimension legend: ``T`` time, ``B`` batch, ``I`` input channels, ``O`` target channels.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor

from ntm import registry
from ntm.config import check_value, from_dict, require
from ntm.registry import Recipe, settings_of, task_class


class Batch(NamedTuple):
    """A batch of episodes, time-major.

    Fields:
        inputs: (T, B, I) float
        targets: (T, B, O) float, 0 or 1
        mask: (T, B) bool, True where the target is scored
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device`` (itself when it is there already). From the CPU to a GPU
        through pinned memory, so the copy waits for no kernel queued before it (a plain
        copy from pageable memory makes the host wait for the GPU to finish its queue)."""
        if torch.device(device).type == "cuda" and self.inputs.device.type == "cpu":
            return Batch(*(t.pin_memory().to(device, non_blocking=True) for t in self))
        return Batch(self.inputs.to(device), self.targets.to(device), self.mask.to(device))


def concat(batches: list[Batch]) -> Batch:
    """Batches side by side, (T, B1 + B2 + ..., ...): shorter ones padded at the end with
    zero inputs and targets, unscored."""
    if len(batches) == 1:
        return batches[0]
    steps = max(b.inputs.shape[0] for b in batches)

    def padded(x: Tensor) -> Tensor:
        if x.shape[0] == steps:
            return x
        return torch.cat([x, x.new_zeros((steps - x.shape[0], *x.shape[1:]))])

    return Batch(
        torch.cat([padded(b.inputs) for b in batches], 1),
        torch.cat([padded(b.targets) for b in batches], 1),
        torch.cat([padded(b.mask) for b in batches], 1),
    )


class Task(Protocol):
    """What every task offers."""

    name: ClassVar[str]

    @property
    def input_size(self) -> int: ...

    @property
    def output_size(self) -> int: ...

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch: ...

    def sample_seeded(self, seeds: Sequence[int]) -> Batch: ...

    def to_dict(self) -> dict[str, Any]: ...

    def with_settings(self, **changes: Any) -> Task: ...


def _uniform_int(low: int, high: int, size: int, generator: torch.Generator | None) -> Tensor:
    """Integers uniform in [low, high], inclusive. Shape (size,)."""
    return torch.randint(low, high + 1, (size,), generator=generator)


def _random_bits(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator).float()


def _check_batch_size(owner: str, batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{owner}.sample: batch_size must be an integer >= 1, got {batch_size!r}")


def one_per_seed(sample: Callable[[int, torch.Generator], Batch], seeds: Sequence[int]) -> Batch:
    """One sequence per seed, each ``sample(1, generator)`` from a generator seeded with it,
    side by side (padded to the longest, as :func:`concat` pads)."""
    generator = torch.Generator()
    return concat([sample(1, generator.manual_seed(s)) for s in seeds])


class _TaskBase:
    """Shared helpers: dict round trip and range checks."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return from_dict(cls, data)

    def with_settings(self, **changes: Any) -> Any:
        """This task with ``changes`` to its settings (checked as a new task's are)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def sample_seeded(self, seeds: Sequence[int]) -> Batch:
        return one_per_seed(self.sample, seeds)  # type: ignore[attr-defined]

    def _require_range(self, low_name: str, high_name: str, minimum: int) -> None:
        owner = type(self).__name__
        settings = self.to_dict()
        low, high = settings[low_name], settings[high_name]
        require(low >= minimum, owner, low_name, low, f"an integer >= {minimum}")
        require(high >= low, owner, high_name, high, f"an integer >= {low_name} = {low}")


class RegisteredTask:
    """A registered task class that is not one of this module's, given what the library
    asks of every task beyond the contract (``input_size``, ``output_size``, ``sample``):
    its settings as a dict, a copy with other settings, one sequence per seed; and the
    contract's optional members, as the wrapped task (``.task``) has them."""

    def __init__(self, name: str, cls: type[Any], settings: Mapping[str, Any]) -> None:
        owner = cls.__qualname__
        known = {n: (kind, default) for n, kind, default in settings_of(cls)}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(
                f"{owner}: unknown setting(s) {', '.join(map(repr, unknown))}; expected some "
                f"of: {', '.join(known) or 'none'}"
            )
        values = {n: check_value(owner, n, v, known[n][0]) for n, v in settings.items()}
        self.name = name
        self._settings = {
            **{n: d for n, (_, d) in known.items() if d is not dataclasses.MISSING},
            **values,
        }
        self.task = cls(**values)

    @property
    def input_size(self) -> int:
        return int(self.task.input_size)

    @property
    def output_size(self) -> int:
        return int(self.task.output_size)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        _check_batch_size(type(self.task).__qualname__, batch_size)
        inputs, targets, mask = self.task.sample(batch_size, generator)
        return Batch(inputs, targets, mask.bool())

    def sample_seeded(self, seeds: Sequence[int]) -> Batch:
        return one_per_seed(self.sample, seeds)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._settings)

    def with_settings(self, **changes: Any) -> RegisteredTask:
        return RegisteredTask(self.name, type(self.task), {**self._settings, **changes})

    # The optional members of the contract, as the wrapped task has them (see ntm.registry).
    @property
    def generalisation(self) -> list[tuple[str, dict[str, Any]]]:
        return registry.generalisation(self.task)

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        return registry.ladder(self.task)

    def within_training(self) -> list[tuple[str, dict[str, Any]]]:
        return registry.within_training(self.task)

    @property
    def tokens(self) -> bool:
        return registry.tokens(self.task)

    @property
    def end_marker(self) -> bool:
        return registry.end_marker(self.task)

    @property
    def optimal_cost(self) -> Callable[[Batch], float] | None:
        return registry.optimal_cost(self.task)

    @property
    def batch_settings(self) -> tuple[str, ...]:
        return registry.batch_settings(self.task)

    def batch_variant(self, seed: int) -> RegisteredTask:
        # For drawing one batch only: its settings (to_dict) stay the task's own.
        variant = copy.copy(self)
        variant.task = registry.batch_variant(self.task, seed)
        return variant


def make_task(name: str, **settings: Any) -> Any:
    """The task registered as ``name`` with ``settings`` overriding its defaults."""
    cls = task_class(name)
    if issubclass(cls, _TaskBase):
        return cls.from_dict(settings)
    return RegisteredTask(name, cls, settings)


def task_target(name: str) -> Recipe:
    """The training settings that suit task ``name`` (its target and budget; the default
    target, held-out bit errors below 0.1, where it declares none)."""
    return registry.task_target(task_class(name))


def ladder(task: Any) -> list[tuple[str, dict[str, Any]]]:
    """The settings beyond ``task``'s training distribution that ``ntm eval --ladder``
    climbs: its ``ladder()`` (longer sequences, more items, ...; computed from its own
    settings), else its class's generalisation settings."""
    return registry.ladder(task)


def generalisation(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The settings beside its training distribution that ``ntm eval`` reports for task
    ``name``: (label, settings changed)."""
    return registry.generalisation(task_class(name))
