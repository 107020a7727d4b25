"""Training data: seeded batches, the held-out set, and the curriculum.

The batches do not depend on the number of processes that draw them; the curriculum
lengthens the sequences as the network learns.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from ntm import registry
from ntm.registry import task_class
from ntm.runs.config import RunConfig
from ntm.tasks.contract import Batch, Task


def held_out_batch(run: RunConfig, task: Task | None = None) -> Batch:
    """The run's fixed held-out set, from its own seeded generator (of ``task`` if given: a
    variant of the run's task, such as repeat copy without its end marker)."""
    generator = torch.Generator().manual_seed(run.train.eval_seed)
    batch: Batch = (task or run.task).sample(run.train.eval_size, generator)
    return batch


def sequence_seed(seed: int, update: int, slot: int) -> int:
    """The seed of one training sequence: slot ``slot`` of the batch of update ``update`` of
    a run seeded ``seed``. Fixed by these three alone, the data do not depend on how many
    processes draw them, and a resumed run draws what the uninterrupted one would have."""
    digest = hashlib.blake2b(f"{seed}:{update}:{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def update_seed(seed: int, update: int) -> int:
    """The seed of what one update's batch shares (the length a Chomsky-hierarchy task
    draws for the whole batch, see :func:`ntm.registry.batch_variant`)."""
    digest = hashlib.blake2b(f"{seed}:{update}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def draw_batch(task: Task, seed: int, update: int, slots: range) -> Batch:
    """The sequences ``slots`` of update ``update``'s batch, each from its own seeded
    generator, side by side (padded to the longest), from the variant of ``task`` the whole
    batch shares (:func:`ntm.registry.batch_variant`): every process drawing a share of the
    batch draws from the same one."""
    variant: Task = registry.batch_variant(task, update_seed(seed, update))
    return variant.sample_seeded([sequence_seed(seed, update, s) for s in slots])


#: Updates between curriculum checks, and the training bit errors per sequence below which
#: the next level starts.
CURRICULUM_WINDOW = 20
CURRICULUM_THRESHOLD = 0.5
#: One batch in this many comes from the full task while the curriculum is below the top.
CURRICULUM_MIX = 4


@dataclass
class CurriculumState:
    """What a checkpoint keeps of a curriculum, so a resumed run continues exactly."""

    level: int = 0  # the cap of the task's knob; 0 when there is no curriculum
    level_errors: float = 0.0  # training bit errors summed over the current check window
    level_sequences: int = 0
    level_updates: int = 0


class Curriculum:
    """Short sequences (few items) first, lengthened each time the training bit errors on
    them fall below :data:`CURRICULUM_THRESHOLD` per sequence (over
    :data:`CURRICULUM_WINDOW` updates). Below the top level every fourth batch comes from
    the full task, so the network never settles on a solution for short sequences only (a
    mixed curriculum, as Zaremba & Sutskever, 2014, used); whole batches keep the short ones
    unpadded. ``enabled=False``, or a task without a knob: always the full task."""

    def __init__(self, task: Task, task_name: str, enabled: bool) -> None:
        self.task = task
        # The setting a curriculum raises and the one it starts above (a task's own).
        self.knob = registry.curriculum(task_class(task_name)) if enabled else None
        self.state = CurriculumState()
        if self.knob is not None:
            self.state.level = min(self._low + 3, self._full)

    @property
    def _full(self) -> int:
        assert self.knob is not None
        return int(self.task.to_dict()[self.knob[0]])

    @property
    def _low(self) -> int:
        assert self.knob is not None
        return int(self.task.to_dict()[self.knob[1]])

    def task_for(self, update: int) -> tuple[Task, bool]:
        """The task update ``update`` draws from, and whether it is the curriculum's level
        (not the full task)."""
        level = self.state.level
        if self.knob is None or not level or update % CURRICULUM_MIX == 0:
            return self.task, False
        return self.task.with_settings(**{self.knob[0]: level}), True

    @property
    def climbing(self) -> bool:
        """Whether the level is below the full task, so that :meth:`observe` counts."""
        return self.knob is not None and 0 < self.state.level < self._full

    def observe(self, errors: float, size: int) -> str | None:
        """Count an update on the level's task (``errors``: training bit errors per
        sequence, over ``size`` sequences); returns a line for the log when the level rises."""
        s = self.state
        if self.knob is None or not self.climbing:
            return None
        s.level_errors += errors * size
        s.level_sequences += size
        s.level_updates += 1
        if s.level_updates < CURRICULUM_WINDOW:
            return None
        rose = s.level_errors / s.level_sequences < CURRICULUM_THRESHOLD
        if rose:
            s.level = min(self._full, s.level + max(1, (self._full - self._low) // 8))
        s.level_errors, s.level_sequences, s.level_updates = 0.0, 0, 0
        return f"curriculum: {self.knob[0]} up to {s.level}" if rose else None

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = CurriculumState(**state)


class EndMarkerStage:
    """Repeat copy's end marker withheld until the copies are right (stage 0), then trained
    with it (stage 1); a task without an end marker is always at stage 1. While withheld,
    the sequences come without the marker and without its target channel."""

    def __init__(self, task: Task, withhold: bool) -> None:
        self.stage = 0 if withhold and registry.end_marker(task) else 1

    @property
    def withheld(self) -> bool:
        return self.stage == 0

    def task_for(self, task: Task) -> Task:
        """``task`` as this stage trains it."""
        return task.with_settings(end_marker=False) if self.withheld else task
