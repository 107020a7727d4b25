"""The trainer: the training loop, its schedule, checkpoints, resuming and rollback.

It evaluates at intervals, keeps the best model, lowers the learning rate on plateaus, stops
at the task's target, rolls back after non-finite updates, and runs data-parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ntm import checkpoint as ckpt
from ntm import devices, distributed
from ntm.data import Curriculum, CurriculumState, draw_batch, held_out_batch
from ntm.distributed import SINGLE, World
from ntm.evaluation import evaluate
from ntm.optim import GravesRMSprop
from ntm.registry import model_class
from ntm.runconfig import RESUMABLE, RunConfig, TrainConfig, recipe_for
from ntm.runs import build_model, choose_engine, default_run_dir, logits_of, read_run_config
from ntm.tasks import Batch, loss_bits, wrong_bits
from ntm.transfer import InitSource, read_init_source, transferred

#: The counters of a checkpoint's progress that are the curriculum's.
CURRICULUM_FIELDS = tuple(f.name for f in dataclasses.fields(CurriculumState))


def build_optimizer(train: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if train.optimizer == "rmsprop":
        return GravesRMSprop(model.parameters(), lr=train.lr, momentum=train.momentum)
    # fused: one kernel for all parameters' updates (0.19 against 0.70 ms a step for the copy
    # model on one thread), where the default loops over them.
    return torch.optim.Adam(model.parameters(), lr=train.lr, fused=True)


@dataclass
class TrainResult:
    run_dir: Path
    sequences: int
    seconds: float
    solved: bool
    interrupted: bool
    eval_cost: float
    eval_bit_errors: float
    losses: list[float] = field(default_factory=list)  # per update, this process only
    reason: str = "budget"  # why it ended: target, floor, budget or interrupted


#: Non-finite updates in a row that make the trainer roll back to its last checkpoint.
MAX_BAD_UPDATES = 3
#: A held-out cost counts as a new best when it is below the best by this fraction.
IMPROVEMENT = 1e-3
#: The held-out bit errors, on sequences without the end marker, below which a run that
#: withholds the marker introduces it, when the run has no bit-error target of its own.
COPIES_RIGHT = 0.1


@dataclass
class _Progress:
    """Counters that a checkpoint saves so a resumed run continues exactly."""

    sequences: int = 0
    updates: int = 0
    seconds: float = 0.0
    window_cost: float = 0.0  # sums since the last report
    window_errors: float = 0.0
    window_sequences: int = 0
    skipped: int = 0  # updates skipped for a non-finite loss or gradient
    bad_in_a_row: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    best_cost: float = math.inf  # lowest held-out cost of the current stage
    first_cost: float = math.nan  # its first held-out cost (ngrams: above the optimum)
    stale_evals: int = 0  # evaluations since the best, once the schedule acts
    stage: int = 1  # repeat copy with the end marker withheld: 0 until the copies are right


class _DeviceTally:
    """The step's counters kept on the device, so that an update needs no host sync: the
    trainer reads them (one transfer) at each evaluation and checkpoint. Used on a GPU, where
    reading a loss or a finiteness flag per update would stall the queue of kernels."""

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


class _Interrupt:
    """Turns SIGINT/SIGTERM into a flag the loop checks between updates."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> _Interrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Trains one model in one run folder; see :func:`train` and :func:`resume`."""

    def __init__(
        self,
        run: RunConfig,
        run_dir: Path,
        *,
        quiet: bool = False,
        world: World = SINGLE,
        lock: ckpt.RunLock | None = None,
    ) -> None:
        self.run = run
        self.run_dir = run_dir
        self.lock = lock  # rank 0's hold on the run folder, released when training ends
        self.world = world
        self.quiet = quiet or not world.main
        train = run.train
        if train.threads > 0:
            torch.set_num_threads(train.threads)
        torch.manual_seed(train.seed)
        if train.batch_size < world.size:
            raise ValueError(
                f"--batch-size {train.batch_size} cannot be shared among {world.size} "
                f"processes: use at least {world.size}"
            )
        self.device = devices.resolve(train.device, distributed.local_rank())
        self.engine, self.engine_problem = choose_engine(
            train.engine, self.device, torch.float32, model_class(train.model)
        )
        self.model = build_model(run, self.engine).to(self.device)
        # Every process's replica starts from rank 0's weights.
        distributed.broadcast([*self.model.parameters(), *self.model.buffers()], world)
        self.optimizer = build_optimizer(train, self.model)
        self.stop_agreed = False  # every process saw the stop request (parallel runs)
        self.progress = _Progress(
            next_eval=train.eval_every,
            next_checkpoint=self._ckpt_every(),
            # Only a task with an end marker can have it withheld (--no-end-marker: none).
            stage=0 if train.withhold_end_marker and getattr(run.task, "end_marker", False) else 1,
        )
        self.curriculum = Curriculum(run.task, train.task, train.curriculum)
        self.held_out = held_out_batch(run) if world.main else None
        # While the end marker is withheld, the held-out sequences come without it too, so
        # the schedule and the switch judge what the run trains (drawn when first needed).
        self.withheld_held_out: Batch | None = None
        # n-grams: the Bayes-optimal cost of the held-out sequences, the target's reference.
        self.optimal: float | None = None
        if self.held_out is not None and hasattr(run.task, "optimal_cost"):
            self.optimal = float(run.task.optimal_cost(self.held_out))
        self.losses: list[float] = []
        # On a GPU the step's checks and counters stay on the device (see _step_on_device);
        # on the CPU reading them costs nothing, and the host decides at once.
        self.sync_free = self.device.type == "cuda"
        self.tally: _DeviceTally | None = None
        self.last_eval = (math.nan, math.nan)
        self.on_update: Callable[[Trainer], None] | None = None

    def _ckpt_every(self) -> int:
        return self.run.train.checkpoint_every or self.run.train.eval_every

    def state(self) -> dict[str, Any]:
        """The trainer's part of a checkpoint: optimiser, counters (with the curriculum's)
        and the last held-out result."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "progress": {**dataclasses.asdict(self.progress), **self.curriculum.state_dict()},
            "last_eval": list(self.last_eval),
        }

    def load(self, checkpoint: ckpt.Checkpoint) -> None:
        self.adopt(checkpoint.model, checkpoint.trainer, checkpoint.path)

    def adopt(self, model: dict[str, torch.Tensor], state: dict[str, Any], source: Path) -> None:
        """Take over weights and trainer state (from a checkpoint in ``source``, or from
        rank 0)."""
        ckpt.load_weights_strict(self.model, model, source / ckpt.MODEL_FILE)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            counters = dict(state["progress"])
            curriculum = {k: counters.pop(k) for k in CURRICULUM_FIELDS if k in counters}
            self.progress = _Progress(**counters)
            self.curriculum.load_state_dict(curriculum)
            self.last_eval = (float(state["last_eval"][0]), float(state["last_eval"][1]))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ckpt.RunError(
                f"{source / ckpt.TRAINER_FILE} is not a trainer state of this run: {error}"
            ) from None

    def set_learning_rate(self, lr: float, why: str = "") -> None:
        """Train on at ``lr`` from here (the checkpoint holds the rate it was trained at,
        lowered by any rollbacks and the schedule); train.log records the change."""
        before = {float(group["lr"]) for group in self.optimizer.param_groups}
        if before == {lr}:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        was = ", ".join(f"{x:g}" for x in sorted(before))
        self.log(f"{self.progress.sequences:>10,d} seq  {why}learning rate {was} -> {lr:g}")

    def save(self) -> None:
        self._settle()
        if self.world.main:
            ckpt.save_checkpoint(self.run_dir, self.progress.sequences, self.model, self.state())

    def log(self, line: str) -> None:
        if not self.world.main:
            return
        ckpt.append_log(self.run_dir, line)
        if not self.quiet:
            tqdm.write(line, file=sys.stderr)

    def _training_batch(self, size: int) -> tuple[Batch, bool]:
        """This process's share of the next batch of ``size`` sequences, and whether it
        comes from the curriculum's level. While repeat copy's end marker is withheld, the
        sequences come without it (and without its target channel)."""
        updates = self.progress.updates
        task, from_level = self.curriculum.task_for(updates)
        withheld = self.progress.stage == 0
        if withheld:
            task = task.with_settings(end_marker=False)
        batch = draw_batch(task, self.run.train.seed, updates, self.world.share(size))
        return batch.to(self.device), from_level  # drawn on the CPU: the same on any device

    def _step(self, batch: Batch, size: int, from_level: bool, stop: bool) -> float | None:
        """One update on a global batch of ``size`` sequences, of which ``batch`` is this
        process's share; ``from_level``: the batch comes from the curriculum's level.
        ``stop``: this process was asked to stop (the processes agree on it here).

        A non-finite loss or gradient skips the update (counted in ``metrics.csv``); after
        :data:`MAX_BAD_UPDATES` in a row the trainer rolls back to its last checkpoint with
        half the learning rate. Returns the loss of the whole batch in bits per sequence,
        or None when the device keeps it (:meth:`_step_on_device`).
        """
        p = self.progress
        part = batch.inputs.shape[1]
        logits = logits_of(self.model(batch.inputs))
        # The outputs the batch has targets for: while the end marker is withheld its output
        # is left out of the loss, as if the model had none yet (scored as 0 on the copies'
        # steps instead, seeds 1 and 2 had not found their memory after 15 minutes).
        logits = logits[..., : batch.targets.shape[-1]]
        loss = loss_bits(logits, batch.targets, batch.mask)
        self.optimizer.zero_grad(set_to_none=True)
        wrong = wrong_bits(logits, batch.targets, batch.mask)
        if self.tally is not None:
            self._step_on_device(loss, wrong, part, size, from_level, stop)
            return None
        # Sums over the whole batch, the same on every process, in one collective call.
        cost_sum, errors_sum, stops = distributed.all_sum(
            [float(loss.detach()) * part, float(wrong), float(stop)], self.world
        )
        self.stop_agreed = stops > 0
        value = cost_sum / size
        finite = math.isfinite(value)
        if finite:
            self._backward(loss, part, size)
            finite = bool(self._gradients_finite())
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            p.skipped += 1
            p.bad_in_a_row += 1
            if p.bad_in_a_row >= MAX_BAD_UPDATES:
                self._roll_back()
            return value
        p.bad_in_a_row = 0
        self._clip()
        self.optimizer.step()
        p.window_cost += cost_sum
        p.window_errors += errors_sum
        p.window_sequences += size
        if from_level:
            self._observe_level(errors_sum / size, size)
        return value

    def _step_on_device(
        self, loss: torch.Tensor, wrong: torch.Tensor, part: int, size: int, from_level: bool,
        stop: bool,
    ) -> None:  # fmt: skip
        """:meth:`_step`'s update with no host sync: whether the loss and the gradients are
        finite stays on the device, where it tells the optimiser to skip the update (its
        ``found_inf``, as for mixed precision), and the counters go to :class:`_DeviceTally`.
        A run of :data:`MAX_BAD_UPDATES` skipped updates rolls back at the next read."""
        tally = self.tally
        assert tally is not None
        # The stop request lives on the host: agreeing on it waits for no kernel.
        self.stop_agreed = distributed.all_sum([float(stop)], self.world)[0] > 0
        self._backward(loss, part, size)
        finite = torch.isfinite(loss.detach()) & self._gradients_finite()
        bad = distributed.any_on_device(~finite, self.world)
        self._clip()
        self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf  # type: ignore[attr-defined]
        tally.add(loss, wrong, part, bad)
        if from_level and self.curriculum.climbing:  # decided on the host: the one sync
            bad_anywhere, errors_sum = bool(bad), distributed.all_sum([float(wrong)], self.world)
            if not bad_anywhere:
                self._observe_level(errors_sum[0] / size, size)

    def _backward(self, loss: torch.Tensor, part: int, size: int) -> None:
        # Scaled so that the gradient, averaged over the processes, is the whole batch's.
        (loss * (part * self.world.size / size)).backward()  # type: ignore[no-untyped-call]
        distributed.average_gradients(self.model.parameters(), self.world)

    def _gradients_finite(self) -> torch.Tensor:
        """Whether every gradient is finite, as a tensor on the device."""
        grads = [q.grad for q in self.model.parameters() if q.grad is not None]
        return torch.stack([g.abs().max() for g in grads]).isfinite().all()

    def _clip(self) -> None:
        train = self.run.train
        if train.clip > 0:
            params = self.model.parameters()
            if train.clip_mode == "norm":
                torch.nn.utils.clip_grad_norm_(params, train.clip)
            else:
                torch.nn.utils.clip_grad_value_(params, train.clip)

    def _observe_level(self, errors: float, size: int) -> None:
        line = self.curriculum.observe(errors, size)
        if line is not None:
            self.log(f"{self.progress.sequences:>10,d} seq  {line}")

    def _settle(self) -> None:
        """Bring the device's counters (:class:`_DeviceTally`) into the progress, and roll
        back when the updates since the last reading had :data:`MAX_BAD_UPDATES` skipped
        ones in a row. Nothing to do when the host keeps the counters."""
        tally, p = self.tally, self.progress
        if tally is None or not tally.pending:
            return
        (cost, errors, sequences, skipped, run, worst), losses = tally.read()
        self.losses.extend(losses)
        cost, errors, sequences = distributed.all_sum([cost, errors, sequences], self.world)
        p.window_cost += cost
        p.window_errors += errors
        p.window_sequences += round(sequences)
        p.skipped += round(skipped)
        p.bad_in_a_row = round(run)
        if worst >= MAX_BAD_UPDATES:
            self._roll_back()
            tally.bad_in_a_row.zero_()
            tally.worst_run.zero_()

    def _roll_back(self) -> None:
        """Reload weights and optimiser from the last checkpoint and halve the learning rate.

        Counters go on, and the data follow the update counter, so the run does not replay
        the batches that failed."""
        p = self.progress
        lowered = [group["lr"] * 0.5 for group in self.optimizer.param_groups]
        found = None
        if self.world.main:
            checkpoint = ckpt.load_checkpoint(self.run_dir)
            found = (checkpoint.model, checkpoint.trainer["optimizer"], checkpoint.path)
        weights, optimizer_state, path = distributed.from_main(found, self.world)
        ckpt.load_weights_strict(self.model, weights, path / ckpt.MODEL_FILE)
        self.optimizer.load_state_dict(optimizer_state)
        for group, lr in zip(self.optimizer.param_groups, lowered, strict=True):
            group["lr"] = lr  # saved with the optimiser state, so a resumed run keeps it
        p.bad_in_a_row = 0
        self.log(
            f"{p.sequences:>10,d} seq  {MAX_BAD_UPDATES} non-finite updates in a row: rolled "
            f"back to {path.name}, learning rate now "
            f"{self.optimizer.param_groups[0]['lr']:.3g}"
        )

    def _report(self) -> tuple[bool, bool]:
        """Evaluate, append a metrics row, log it, and follow the schedule. Returns whether
        the target is met and whether the schedule ends the run. Rank 0 evaluates; every
        process learns the result and the schedule's state."""
        self._settle()
        p = self.progress
        stage = p.stage
        decision = self._evaluate_and_decide() if self.world.main else (False, False)
        lr = self.optimizer.param_groups[0]["lr"]
        schedule = (p.stage, p.best_cost, p.first_cost, p.stale_evals)
        shared = distributed.from_main((decision, self.last_eval, lr, schedule), self.world)
        decision, self.last_eval, lr, schedule = shared
        p.stage, p.best_cost, p.first_cost, p.stale_evals = schedule
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if stage == 0 and p.stage == 1:
            # The marker's new gradients, divided by second moments that settled while the
            # copies were learned, would take steps of several times the rate (seed 3 lost
            # its copies so): the optimiser starts afresh, as a run from these weights would.
            self.optimizer = build_optimizer(self.run.train, self.model)
        p.window_cost = p.window_errors = 0.0
        p.window_sequences = 0
        return bool(decision[0]), bool(decision[1])

    def _target_met(self, cost: float, errors: float) -> bool:
        """All the run's targets met by a held-out result (none set: never)."""
        train = self.run.train
        checks = []
        if train.target_bit_errors > 0:
            checks.append(errors < train.target_bit_errors)
        if train.target_cost > 0:
            checks.append(cost < train.target_cost)
        if train.target_excess > 0:
            assert self.optimal is not None
            checks.append(cost - self.optimal < train.target_excess)
        return bool(checks) and all(checks) and self.progress.stage == 1

    def _evaluate_and_decide(self) -> tuple[bool, bool]:
        p, train = self.progress, self.run.train
        assert self.held_out is not None  # rank 0 holds it
        held_out = self.held_out
        if p.stage == 0:
            if self.withheld_held_out is None:
                variant = self.run.task.with_settings(end_marker=False)
                self.withheld_held_out = held_out_batch(self.run, variant)
            held_out = self.withheld_held_out
        self.last_eval = evaluate(self.model, held_out)
        eval_cost, eval_errors = self.last_eval
        met = self._target_met(eval_cost, eval_errors)
        lr = float(self.optimizer.param_groups[0]["lr"])
        seen = max(p.window_sequences, 1)
        row = {
            "sequences": p.sequences,
            "seconds": round(p.seconds, 3),
            "train_cost": p.window_cost / seen,
            "train_bit_errors": p.window_errors / seen,
            "eval_cost": eval_cost,
            "eval_bit_errors": eval_errors,
            "skipped_steps": p.skipped,
            "lr": lr,
            "stage": p.stage,
            "target_met": int(met),
        }
        ckpt.append_metrics(self.run_dir, row)
        excess = "" if self.optimal is None else f" ({eval_cost - self.optimal:+.3f} optimal)"
        self.log(
            f"{p.sequences:>10,d} seq {p.seconds:8.1f} s  train cost {row['train_cost']:7.3f}  "
            f"held-out cost {eval_cost:7.3f} bits{excess}, {eval_errors:7.3f} bit errors "
            "per sequence"
        )
        if p.stage == 0 and eval_errors < (train.target_bit_errors or COPIES_RIGHT):
            p.stage, p.best_cost, p.first_cost, p.stale_evals = 1, math.inf, math.nan, 0
            self.log(
                f"{p.sequences:>10,d} seq  copies right ({eval_errors:.3f} bit errors on "
                "held-out sequences without the end marker): the end marker from here on, "
                f"the optimiser afresh at learning rate {train.lr:g}"
            )
            return False, False
        return met, self._follow_schedule(eval_cost)

    def _follow_schedule(self, cost: float) -> bool:
        """Keep the best model of the stage, and on a plateau lower the learning rate (once
        the network has learned: see ``plateau_after``). Returns True when the rate is at
        its floor and the plateau goes on: the run ends."""
        p, train = self.progress, self.run.train
        reference = self.optimal or 0.0  # what no model can beat: 0, or the Bayes optimum
        if math.isnan(p.first_cost):
            p.first_cost = cost - reference
        if cost < p.best_cost * (1 - IMPROVEMENT):
            p.best_cost, p.stale_evals = cost, 0
            if p.stage == 1:
                info = {"sequences": p.sequences, "eval_cost": cost,
                        "eval_bit_errors": self.last_eval[1]}  # fmt: skip
                ckpt.save_best(self.run_dir, self.model, info)
            return False
        if p.best_cost - reference > train.plateau_after * p.first_cost:
            return False  # not learned yet: a flat start is no plateau
        p.stale_evals += 1
        if train.schedule != "plateau" or p.stale_evals < train.lr_patience:
            return False
        lr = float(self.optimizer.param_groups[0]["lr"])
        if lr <= train.lr_floor * (1 + 1e-6):
            self.log(
                f"{p.sequences:>10,d} seq  no new best held-out cost in {p.stale_evals} "
                f"evaluations at the floor learning rate {train.lr_floor:g}: stopping"
            )
            return True
        p.stale_evals = 0
        self.set_learning_rate(max(lr * train.lr_decay, train.lr_floor), "plateau: ")
        return False

    def close(self) -> None:
        """Let go of the run folder (another process may then train it)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _progress_bar(self) -> tqdm:
        """Sequences trained; a total (and so an ETA) only where the run will go that far:
        no target and a constant learning rate. A run that may stop early shows its held-out
        result against its target instead."""
        train = self.run.train
        to_the_end = not train.targets() and train.schedule == "constant"
        return tqdm(
            total=train.max_sequences if to_the_end else None,
            initial=self.progress.sequences,
            unit="seq",
            unit_scale=True,
            dynamic_ncols=True,
            disable=self.quiet,
            desc=f"{train.task} {train.model}",
        )

    def _held_out_note(self) -> str:
        """The last held-out result in the terms of the run's target, for the progress bar."""
        train, (cost, errors) = self.run.train, self.last_eval
        if train.target_excess > 0 and self.optimal is not None:
            excess = cost - self.optimal
            return f"held-out cost {excess:+.3f} optimal (target < +{train.target_excess:g})"
        if train.target_cost > 0:
            return f"held-out cost {cost:.3f} (target < {train.target_cost:g})"
        target = f" (target < {train.target_bit_errors:g})" if train.target_bit_errors else ""
        return f"held-out bit errors {errors:.4f}{target}"

    def fit(self) -> TrainResult:
        """Train to the target or the budget, or until interrupted or the schedule ends the
        run; then save, and let go of the run folder."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        train, p = self.run.train, self.progress
        solved = interrupted = floor = False
        bar = self._progress_bar()
        started = time.perf_counter() - p.seconds
        goal = " and ".join(train.targets()) or "none"
        schedule = train.schedule
        if schedule == "plateau":
            schedule += (
                f" (x{train.lr_decay:g} after {train.lr_patience} evaluations without a new "
                f"best, once the held-out cost is below {train.plateau_after:g} of its first; "
                f"down to {train.lr_floor:g})"
            )
        self.log(f"target: {goal}; lr {train.lr:g}, schedule {schedule}")
        if p.stage == 0:
            self.log("end marker withheld until the copies are right")
        if self.engine_problem:
            self.log(f"engine {self.engine}: {self.engine_problem}")
        if self.engine == "compiled":
            self.log("compiling the step with torch.compile (one to two minutes the first time)")
        if self.sync_free:
            self.tally = _DeviceTally(self.device, p.bad_in_a_row)
        with _Interrupt() as interrupt, bar:
            while p.sequences < train.max_sequences and not (solved or floor):
                if self.stop_agreed or (interrupt.requested and not self.world.parallel):
                    interrupted = True
                    break
                size = min(train.batch_size, train.max_sequences - p.sequences)
                if size < self.world.size:
                    break  # too few sequences left to give every process one
                batch, from_level = self._training_batch(size)
                value = self._step(batch, size, from_level, interrupt.requested)
                if value is not None:
                    self.losses.append(value)
                p.sequences += size
                p.updates += 1
                p.seconds = time.perf_counter() - started
                bar.update(size)
                if self.on_update is not None:
                    self.on_update(self)
                if p.sequences >= p.next_eval:
                    solved, floor = self._report()
                    p.next_eval += train.eval_every
                    bar.set_postfix_str(self._held_out_note(), refresh=False)
                if p.sequences >= p.next_checkpoint:
                    p.next_checkpoint += self._ckpt_every()
                    self.save()
            if not (solved or floor or interrupted) and p.window_sequences:
                solved, floor = self._report()
        self.save()
        reason = "budget"
        if interrupted:
            reason = "interrupted"
            self.log(
                f"interrupted at {p.sequences:,d} sequences; checkpoint saved, resume with "
                f"`ntm train --resume {self.run_dir}`"
            )
        elif solved:
            reason = "target"
            cost, errors = self.last_eval
            self.log(
                f"solved ({goal}): held-out cost {cost:.3f} bits, {errors:.4f} bit errors per "
                f"sequence after {p.sequences:,d} sequences, {p.seconds / 60:.1f} minutes"
            )
        elif floor:
            reason = "floor"
        return TrainResult(
            run_dir=self.run_dir,
            sequences=p.sequences,
            seconds=p.seconds,
            solved=solved,
            interrupted=interrupted,
            eval_cost=self.last_eval[0],
            eval_bit_errors=self.last_eval[1],
            losses=self.losses,
            reason=reason,
        )


def _on_main(world: World, work: Callable[[], Any]) -> Any:
    """``work()`` on rank 0, its result on every process; an error raised there is raised on
    every process, so none waits for a partner that has given up."""
    outcome: tuple[str, Any] = ("ok", None)
    if world.main:
        try:
            outcome = ("ok", work())
        except (ckpt.RunError, ValueError) as error:
            if not world.parallel:
                raise
            outcome = (type(error).__name__, str(error))
    kind, value = distributed.from_main(outcome, world)
    if kind == "RunError":
        raise ckpt.RunError(value)
    if kind == "ValueError":
        raise ValueError(value)
    return value


def start(
    run: RunConfig, run_dir: Path | None = None, *, quiet: bool = False, world: World = SINGLE
) -> Trainer:
    """A trainer for a new run, with its folder created, locked and its config written (by
    rank 0)."""
    held: list[ckpt.RunLock] = []

    def prepare() -> Path:
        folder = run_dir or default_run_dir(run)
        lock = ckpt.RunLock.acquire(folder, create=True)
        try:
            if (folder / ckpt.CONFIG_FILE).exists():
                raise ckpt.RunError(
                    f"{str(folder)!r} already holds a run; continue it with --resume {folder}"
                )
            ckpt.save_config(folder, run.to_dict())
            ckpt.write_metrics(folder, [])
        except BaseException:
            lock.release()
            raise
        held.append(lock)
        return folder

    # A bad --init-from is refused before the run folder exists.
    source = _on_main(world, lambda: read_init_source(run)) if run.train.init_from else None
    folder = _on_main(world, prepare)
    try:
        trainer = Trainer(run, folder, quiet=quiet, world=world, lock=next(iter(held), None))
    except BaseException:
        for lock in held:
            lock.release()
        raise
    try:
        if source is not None:
            _take(trainer, source)
        train = run.train
        if recipe_for(train.preset, train.task, train.model, dataclasses.asdict(train)) is None:
            trainer.log(
                f"model {train.model} has no settings of its own for task {train.task}: "
                "it trains with its defaults"
            )
        trainer.save()  # a checkpoint from the first moment: resume and rollback always have one
    except BaseException:
        trainer.close()
        raise
    return trainer


def _take(trainer: Trainer, source: InitSource) -> None:
    """Start every process's model from ``source``'s weights (``--init-from``)."""
    trainer.model.load_state_dict(transferred(trainer.model.state_dict(), source))
    trainer.log(source.line)


def reopen(
    run_dir: Path,
    overrides: dict[str, Any] | None = None,
    *,
    quiet: bool = False,
    world: World = SINGLE,
) -> Trainer:
    """A trainer that continues the run in ``run_dir`` from its latest checkpoint. In a
    parallel run rank 0 reads the folder and hands the state to the others, so any number
    of processes can continue a run that any number began."""
    overrides = overrides or {}
    fixed = sorted(set(overrides) - set(RESUMABLE))
    if fixed:
        raise ValueError(
            f"--resume: {', '.join(fixed)} cannot change in a resumed run; "
            f"only {', '.join(RESUMABLE)} can"
        )
    held: list[ckpt.RunLock] = []

    def read_config() -> dict[str, Any]:
        run = read_run_config(run_dir)
        held.append(ckpt.RunLock.acquire(run_dir, create=False))
        if overrides:
            run = dataclasses.replace(run, train=dataclasses.replace(run.train, **overrides))
            ckpt.save_config(run_dir, run.to_dict())
        return run.to_dict()

    try:
        run = RunConfig.from_dict(_on_main(world, read_config))
        trainer = Trainer(run, run_dir, quiet=quiet, world=world, lock=next(iter(held), None))
    except BaseException:
        for lock in held:
            lock.release()
        raise

    def read_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if not any((run_dir / ckpt.CHECKPOINTS).glob("step-*/" + ckpt.TRAINER_FILE)):
            # Stopped between writing its config and its first checkpoint: nothing trained.
            ckpt.write_metrics(run_dir, [])
            return None
        checkpoint = ckpt.load_checkpoint(run_dir)
        trainer.load(checkpoint)
        # Rows written after the checkpoint will be written again.
        rows = ckpt.read_metrics(run_dir)
        ckpt.write_metrics(
            run_dir, [r for r in rows if r["sequences"] <= trainer.progress.sequences]
        )
        # The checkpoint as read, on the CPU: the other processes take it from there onto
        # their own devices (rank 0's GPU tensors would unpickle onto rank 0's GPU).
        return checkpoint.model, checkpoint.trainer

    try:
        state = _on_main(world, read_state)
        if state is None:  # begin as the new run would have
            if run.train.init_from:
                _take(trainer, _on_main(world, lambda: read_init_source(run)))
            trainer.save()
        elif not world.main:
            trainer.adopt(state[0], state[1], run_dir)
        if "lr" in overrides:
            trainer.set_learning_rate(run.train.lr)
    except BaseException:
        trainer.close()
        raise
    return trainer


def train(
    run: RunConfig, run_dir: Path | None = None, *, quiet: bool = False, world: World = SINGLE
) -> TrainResult:
    """Train a new run to its target or budget; returns what happened."""
    return start(run, run_dir, quiet=quiet, world=world).fit()


def resume(
    run_dir: Path,
    overrides: dict[str, Any] | None = None,
    *,
    quiet: bool = False,
    world: World = SINGLE,
) -> TrainResult:
    """Continue the run in ``run_dir``; the losses are those the uninterrupted run would have."""
    return reopen(run_dir, overrides, quiet=quiet, world=world).fit()
