"""The update guard: every update checked, a non-finite one skipped, rollback on a run.

Each update is checked for non-finite values, skipped when it has any, and a rollback is
called for after several in a row.

It checks on the host (the CPU's way: reading a flag costs nothing there), or keeps the
checks and the counters on the device with no host sync (a GPU's way: the optimiser skips
the update in its kernel through ``found_inf``, as for mixed precision, and the counters are
read once at each evaluation and checkpoint). Either way the gradients are averaged over
the processes first, and the processes agree on every decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ntm.runs import checkpoint as ckpt
from ntm.training import distributed
from ntm.training.distributed import World

#: Non-finite updates in a row that make the trainer roll back to its last checkpoint.
MAX_BAD_UPDATES = 3


class DeviceTally:
    """The step's counters kept on the device, so that an update needs no host sync: the
    trainer reads them (one transfer) at each evaluation and checkpoint."""

    def __init__(self, device: torch.device, bad_in_a_row: int) -> None:
        def zero() -> torch.Tensor:
            return torch.zeros((), dtype=torch.float64, device=device)

        self.cost, self.errors, self.sequences, self.skipped = zero(), zero(), zero(), zero()
        self.bad_in_a_row = zero() + bad_in_a_row
        self.worst_run = self.bad_in_a_row.clone()  # longest run of skipped updates
        self.losses: list[torch.Tensor] = []  # this process's loss per update
        self.pending = False

    def add(self, loss: torch.Tensor, errors: torch.Tensor, part: int, bad: torch.Tensor) -> None:
        """Count one update of ``part`` sequences: its loss (bits per sequence) and wrong
        bits, unless ``bad`` (a non-finite loss or gradient: the update was skipped)."""
        zero = torch.zeros((), dtype=torch.float64, device=loss.device)
        self.losses.append(loss.detach())
        self.cost += torch.where(bad, zero, loss.detach().double() * part)
        self.errors += torch.where(bad, zero, errors.double())
        self.sequences += (~bad).double() * part
        self.skipped += bad
        self.bad_in_a_row = (self.bad_in_a_row + 1) * bad
        self.worst_run = torch.maximum(self.worst_run, self.bad_in_a_row)
        self.pending = True

    def read(self) -> tuple[list[float], list[float]]:
        """Cost, errors, sequences, skipped, run and worst run since the last read; the
        losses per update. Resets all but the current run of skipped updates."""
        values = torch.stack([self.cost, self.errors, self.sequences, self.skipped,
                              self.bad_in_a_row, self.worst_run]).tolist()  # fmt: skip
        losses = torch.stack(self.losses).double().tolist() if self.losses else []
        for counter in (self.cost, self.errors, self.sequences, self.skipped):
            counter.zero_()
        self.worst_run.copy_(self.bad_in_a_row)
        self.losses.clear()
        self.pending = False
        return values, losses


class Step(NamedTuple):
    """One update's share in this process: its loss (bits per sequence, a tensor that
    backpropagates) and wrong bits over ``part`` sequences of a global batch of ``size``."""

    loss: torch.Tensor
    wrong: torch.Tensor
    part: int
    size: int
    stop: bool  # this process was asked to stop (the processes agree on it here)
    level: bool = False  # a curriculum level's batch, whose bit errors are wanted


@dataclass(frozen=True)
class Outcome:
    """What one update came to, the same on every process."""

    value: float | None  # the whole batch's loss in bits per sequence (None: on the device)
    stop: bool  # some process was asked to stop
    sums: tuple[float, float, int] | None  # a good update's cost, wrong bits and sequences
    level_errors: float | None  # its training bit errors per sequence, for a curriculum
    roll_back: bool = False  # MAX_BAD_UPDATES skipped updates in a row


class UpdateGuard:
    """Backward pass, checks, clipping and the optimiser's step of one update; counts the
    skipped updates (``skipped``, and ``bad_in_a_row`` for the rollback)."""

    def __init__(
        self, world: World, device: torch.device, clip_mode: str = "norm", clip: float = 0.0
    ) -> None:
        self.world = world
        self.device = device
        self.clip_mode, self.clip = clip_mode, clip  # the gradients' bound (0: none)
        self.skipped = 0
        self.bad_in_a_row = 0
        self.tally: DeviceTally | None = None

    def keep_on_device(self) -> None:
        """From here, check and count on the device with no host sync."""
        self.tally = DeviceTally(self.device, self.bad_in_a_row)

    def update(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: Step) -> Outcome:
        """One update of ``model`` by ``optimizer`` from this process's ``step``."""
        if self.tally is not None:
            return self._on_device(model, optimizer, step)
        loss, part, size = step.loss, step.part, step.size
        # Sums over the whole batch, the same on every process, in one collective call.
        cost_sum, errors_sum, stops = distributed.all_sum(
            [float(loss.detach()) * part, float(step.wrong), float(step.stop)], self.world
        )
        value = cost_sum / size
        finite = math.isfinite(value)
        if finite:
            self._backward(model, loss, part, size)
            finite = bool(_gradients_finite(model))
        if not finite:
            optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            self.bad_in_a_row += 1
            return Outcome(value, stops > 0, None, None, self.bad_in_a_row >= MAX_BAD_UPDATES)
        self.bad_in_a_row = 0
        self._clip(model)
        optimizer.step()
        errors = errors_sum / size if step.level else None
        return Outcome(value, stops > 0, (cost_sum, errors_sum, size), errors)

    def _on_device(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: Step) -> Outcome:
        tally = self.tally
        assert tally is not None
        # The stop request lives on the host: agreeing on it waits for no kernel.
        loss, wrong, part, size = step.loss, step.wrong, step.part, step.size
        stops = distributed.all_sum([float(step.stop)], self.world)[0]
        self._backward(model, loss, part, size)
        finite = torch.isfinite(loss.detach()) & _gradients_finite(model)
        bad = distributed.any_on_device(~finite, self.world)
        self._clip(model)
        optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
        tally.add(loss, wrong, part, bad)
        errors = None
        if step.level:  # decided on the host: the one sync
            bad_anywhere, errors_sum = bool(bad), distributed.all_sum([float(wrong)], self.world)
            errors = None if bad_anywhere else errors_sum[0] / size
        return Outcome(None, stops > 0, None, errors)

    def _clip(self, model: nn.Module) -> None:
        if self.clip > 0:
            if self.clip_mode == "norm":
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
            else:
                torch.nn.utils.clip_grad_value_(model.parameters(), self.clip)

    def _backward(self, model: nn.Module, loss: torch.Tensor, part: int, size: int) -> None:
        # Scaled so that the gradient, averaged over the processes, is the whole batch's.
        (loss * (part * self.world.size / size)).backward()  # type: ignore[no-untyped-call]
        distributed.average_gradients(model.parameters(), self.world)

    def settle(self) -> tuple[tuple[float, float, int] | None, list[float], bool]:
        """Bring the device's counters into this guard: the good updates' cost, wrong bits
        and sequences since the last reading (over all processes), this process's losses,
        and whether :data:`MAX_BAD_UPDATES` updates in a row were skipped. Nothing when the
        host keeps the counters."""
        tally = self.tally
        if tally is None or not tally.pending:
            return None, [], False
        (cost, errors, sequences, skipped, run, worst), losses = tally.read()
        cost, errors, sequences = distributed.all_sum([cost, errors, sequences], self.world)
        self.skipped += round(skipped)
        self.bad_in_a_row = round(run)
        roll_back = worst >= MAX_BAD_UPDATES
        if roll_back:
            tally.bad_in_a_row.zero_()
            tally.worst_run.zero_()
        return (cost, errors, round(sequences)), losses, roll_back

    def roll_back(self, model: nn.Module, optimizer: torch.optim.Optimizer, run_dir: Path) -> str:
        """Reload weights and optimiser from the run's last checkpoint (read by rank 0,
        handed to the others) and halve the learning rate; returns the line for
        ``train.log``. Counters go on, and the data follow the update counter, so the run
        does not replay the batches that failed."""
        lowered = [group["lr"] * 0.5 for group in optimizer.param_groups]
        found = None
        if self.world.main:
            checkpoint = ckpt.load_checkpoint(run_dir)
            found = (checkpoint.model, checkpoint.trainer["optimizer"], checkpoint.path)
        weights, optimizer_state, path = distributed.from_main(found, self.world)
        ckpt.load_weights_strict(model, weights, path / ckpt.MODEL_FILE)
        optimizer.load_state_dict(optimizer_state)
        for group, lr in zip(optimizer.param_groups, lowered, strict=True):
            group["lr"] = lr  # saved with the optimiser state, so a resumed run keeps it
        self.bad_in_a_row = 0
        return (
            f"{MAX_BAD_UPDATES} non-finite updates in a row: rolled back to {path.name}, "
            f"learning rate now {optimizer.param_groups[0]['lr']:.3g}"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "bad_in_a_row": self.bad_in_a_row}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state["skipped"])
        self.bad_in_a_row = int(state["bad_in_a_row"])


def _gradients_finite(model: nn.Module) -> torch.Tensor:
    """Whether every gradient is finite, as a tensor on the device."""
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    return torch.stack([g.abs().max() for g in grads]).isfinite().all()
