"""The trainer: the training loop and its checkpoints, resuming and rollback.

It evaluates at intervals (:mod:`ntm.training.evaluator`), keeps the best model, lowers the learning
rate on plateaus (:mod:`ntm.training.schedule`), stops at the task's target, skips non-finite
updates and rolls back after several (:mod:`ntm.training.guard`), and runs data-parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from ntm import registry
from ntm.engines import devices
from ntm.engines.select import select_engine
from ntm.pictures.board import Board
from ntm.registry import model_class
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import RESUMABLE, RunConfig, TrainConfig, recipe_for
from ntm.runs.load import build_model, default_run_dir, logits_of, read_run_config
from ntm.tasks.contract import Batch
from ntm.tasks.scoring import errors_named, scoring
from ntm.training import distributed
from ntm.training.data import Curriculum, CurriculumState, EndMarkerStage, draw_batch
from ntm.training.distributed import SINGLE, World
from ntm.training.evaluator import Evaluator
from ntm.training.guard import Step, UpdateGuard
from ntm.training.optim import GravesRMSprop
from ntm.training.schedule import PlateauSchedule, rate_shape
from ntm.training.transfer import InitSource, read_init_source, transferred

#: The counters of a checkpoint's progress that are the curriculum's.
CURRICULUM_FIELDS = tuple(f.name for f in dataclasses.fields(CurriculumState))


def build_optimizer(train: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if train.optimizer == "rmsprop":
        return GravesRMSprop(model.parameters(), lr=train.lr, momentum=train.momentum)
    # fused: one kernel for all parameters' updates (0.19 against 0.70 ms a step for the copy
    # model on one thread), where the default loops over them.
    if train.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=train.lr, weight_decay=train.weight_decay, fused=True
        )
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
    reason: str = "budget"  # why it ended: one of ckpt.END_REASONS, or interrupted
    errors: str = "bit errors"  # what its errors count: bit errors, or wrong tokens


#: The held-out bit errors, on sequences without the end marker, below which a run that
#: withholds the marker introduces it, when the run has no bit-error target of its own.
COPIES_RIGHT = 0.1
#: Keys of a checkpoint's progress, in checkpoints written before each part kept its own
#: state: the update guard's, the schedule's and the stage.
_GUARD_KEYS, _SCHEDULE_KEYS = (
    ("skipped", "bad_in_a_row"),
    ("best_cost", "first_cost", "stale_evals"),
)


@dataclass
class _Progress:
    """The loop's counters, which a checkpoint saves so a resumed run continues exactly."""

    sequences: int = 0
    updates: int = 0
    seconds: float = 0.0
    window_cost: float = 0.0  # the good updates' sums since the last evaluation
    window_errors: float = 0.0
    window_sequences: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    ended: str = ""  # why the run ended (one of ckpt.END_REASONS), in its final checkpoint

    def count(self, sums: tuple[float, float, int]) -> None:
        """Add a good update's cost, wrong bits and sequences to the window."""
        self.window_cost += sums[0]
        self.window_errors += sums[1]
        self.window_sequences += sums[2]


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
    """Trains one model in one run folder: the loop and the checkpoints; see :func:`train`
    and :func:`resume`. Its parts keep their own state, saved under their own keys: the
    update guard (:class:`ntm.training.guard.UpdateGuard`), the schedule
    (:class:`ntm.training.schedule.PlateauSchedule`), the evaluator
    (:class:`ntm.training.evaluator.Evaluator`), the curriculum and the end-marker stage."""

    def __init__(
        self,
        run: RunConfig,
        run_dir: Path,
        *,
        quiet: bool = False,
        world: World = SINGLE,
        lock: ckpt.RunLock | None = None,
    ) -> None:
        self.run, self.run_dir, self.world = run, run_dir, world
        self.score = scoring(run.task)  # wrong bits, or wrong tokens
        self.lock = lock  # rank 0's hold on the run folder, released when training ends
        self.quiet = quiet or not world.main
        train = run.train
        self.device = devices.resolve(train.device, distributed.local_rank())
        self.model, self.engine, self.engine_problem = _replica(run, self.device, world)
        self.optimizer = build_optimizer(train, self.model)
        self.stop_agreed = False  # every process saw the stop request (parallel runs)
        self.progress = _Progress(next_eval=train.eval_every, next_checkpoint=self._ckpt_every())
        self.curriculum = Curriculum(run.task, train.task, train.curriculum)
        self.stage = EndMarkerStage(run.task, train.withhold_end_marker)
        self.evaluator = Evaluator(run, run_dir, world)
        self.schedule = PlateauSchedule(train, self.evaluator.optimal or 0.0)
        self.guard = UpdateGuard(world, self.device, train.clip_mode, train.clip)
        self.losses: list[float] = []
        # On a GPU the step's checks and counters stay on the device (ntm.training.guard); on the
        # CPU reading them costs nothing, and the host decides at once.
        self.sync_free = self.device.type == "cuda"
        self.on_update: Callable[[Trainer], None] | None = None
        title = f"{train.task}, {train.model} ({run_dir.name})"
        self.board = Board(run_dir, title) if train.tensorboard and world.main else None

    def _ckpt_every(self) -> int:
        return self.run.train.checkpoint_every or self.run.train.eval_every

    def state(self) -> dict[str, Any]:
        """The trainer's part of a checkpoint: the optimiser, the loop's counters, and each
        part's state under its own key."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "progress": dataclasses.asdict(self.progress),
            "curriculum": self.curriculum.state_dict(),
            "guard": self.guard.state_dict(),
            "schedule": self.schedule.state_dict(),
            "stage": self.stage.stage,
            **self.evaluator.state_dict(),
        }

    def load(self, checkpoint: ckpt.Checkpoint) -> None:
        self.adopt(checkpoint.model, checkpoint.trainer, checkpoint.path)

    def adopt(self, model: dict[str, torch.Tensor], state: dict[str, Any], source: Path) -> None:
        """Take over weights and trainer state (from a checkpoint in ``source``, or from
        rank 0)."""
        ckpt.load_weights_strict(self.model, model, source / ckpt.MODEL_FILE)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            counters, parts = _split_state(state)
            self.progress = _Progress(**counters)
            self.curriculum.load_state_dict(parts["curriculum"])
            self.guard.load_state_dict(parts["guard"])
            self.schedule.load_state_dict(parts["schedule"])
            self.stage.stage = 1 if parts["stage"] is None else int(parts["stage"])  # older: 1
            self.evaluator.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ckpt.RunError(
                f"{source / ckpt.TRAINER_FILE} is not a trainer state of this run: {error}"
            ) from None

    def _shape_rate(self, shape: float) -> None:
        """Move the rate to ``shape`` (:func:`rate_shape`) from the last shape applied, by
        their ratio: a rollback's halving and a plateau's lowering stay."""
        last = self.schedule.shape
        if last is None or shape == last:
            return
        for group in self.optimizer.param_groups:
            group["lr"] *= shape / last
        self.schedule.shape = shape

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
            if not self.progress.ended:  # a checkpoint of a stretch that trains again
                ckpt.drop_ended_aside(self.run_dir)

    def _unrecorded_end(self) -> bool:
        """Whether the latest checkpoint's end (target, converged or floor) was never
        recorded: the run stopped between its final checkpoint and ``ended.json``. Not when
        the end was recorded, nor for the recorded end of a run that trains again and stopped
        before its first checkpoint (:data:`ckpt.RESUMED_FILE`, at the same sequences), nor
        for its cap, which a run raises to go on."""
        if self.progress.ended not in ("target", "converged", "floor"):
            return False
        if (self.run_dir / ckpt.ENDED_FILE).is_file():
            return False
        before = ckpt.ended_aside(self.run_dir)
        return before is None or before < self.progress.sequences  # an end of a new stretch

    def log(self, line: str) -> None:
        if not self.world.main:
            return
        ckpt.append_log(self.run_dir, line)
        if not self.quiet:
            tqdm.write(line, file=sys.stderr)

    def _training_batch(self, size: int) -> tuple[Batch, bool]:
        """This process's share of the next batch of ``size`` sequences, and whether it
        comes from the curriculum's level (as the stage trains it)."""
        updates = self.progress.updates
        task, from_level = self.curriculum.task_for(updates)
        task = self.stage.task_for(task)
        batch = draw_batch(task, self.run.train.seed, updates, self.world.share(size))
        return batch.to(self.device), from_level  # drawn on the CPU: the same on any device

    def _step(self, batch: Batch, size: int, from_level: bool, stop: bool) -> float | None:
        """One update on a global batch of ``size`` sequences, of which ``batch`` is this
        process's share; ``from_level``: the batch comes from the curriculum's level;
        ``stop``: this process was asked to stop (the processes agree on it here). Returns
        the whole batch's loss in bits per sequence, or None when the device keeps it."""
        logits = logits_of(self.model(batch.inputs))
        # The outputs the batch has targets for: while the end marker is withheld its output
        # is left out of the loss, as if the model had none yet (scored as 0 on the copies'
        # steps instead, seeds 1 and 2 had not found their memory after 15 minutes).
        logits = logits[..., : batch.targets.shape[-1]]
        loss = self.score.loss(logits, batch.targets, batch.mask)
        self.optimizer.zero_grad(set_to_none=True)
        wrong = self.score.wrong(logits, batch.targets, batch.mask).sum()
        on_host = self.guard.tally is None
        level = from_level and (on_host or self.curriculum.climbing)
        step = Step(loss, wrong, batch.inputs.shape[1], size, stop, level)
        outcome = self.guard.update(self.model, self.optimizer, step)
        self.stop_agreed = outcome.stop
        if outcome.roll_back:
            self._roll_back()
        if outcome.sums is not None:
            self.progress.count(outcome.sums)
        if outcome.level_errors is not None:
            line = self.curriculum.observe(outcome.level_errors, size)
            if line is not None:
                self.log(f"{self.progress.sequences:>10,d} seq  {line}")
        return outcome.value

    def _settle(self) -> None:
        """Bring the device's counters into the progress, and roll back when they saw
        :data:`MAX_BAD_UPDATES` skipped updates in a row."""
        sums, losses, roll_back = self.guard.settle()
        self.losses.extend(losses)
        if sums is not None:
            self.progress.count(sums)
        if roll_back:
            self._roll_back()

    def _roll_back(self) -> None:
        """Back to the last checkpoint at half the learning rate (:meth:`UpdateGuard.roll_back`)."""
        line = self.guard.roll_back(self.model, self.optimizer, self.run_dir)
        self.log(f"{self.progress.sequences:>10,d} seq  {line}")

    def _report(self) -> tuple[bool, str]:
        """Evaluate, append a metrics row, log it, and follow the schedule. Returns whether
        the target is met and why the schedule ends the run ("" while it goes on). Every
        process evaluates its share of the held-out set; rank 0 decides, and every process
        learns the decision and the schedule's state."""
        self._settle()
        p, before = self.progress, self.stage.stage
        cost, errors = self.evaluator.measure(self.model, self.stage.withheld)
        decision = self._decide(cost, errors) if self.world.main else (False, "")
        lr = self.optimizer.param_groups[0]["lr"]
        shared = (decision, self.evaluator.last, lr, self.stage.stage, self.schedule.state_dict())
        decision, self.evaluator.last, lr, self.stage.stage, schedule = distributed.from_main(
            shared, self.world
        )
        self.schedule.load_state_dict(schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if before == 0 and self.stage.stage == 1:
            # The marker's new gradients, divided by second moments that settled while the
            # copies were learned, would take steps of several times the rate (seed 3 lost
            # its copies so): the optimiser starts afresh, as a run from these weights would.
            self.optimizer = build_optimizer(self.run.train, self.model)
            self.schedule.shape = 1.0
        p.window_cost = p.window_errors = 0.0
        p.window_sequences = 0
        return bool(decision[0]), str(decision[1])

    def _decide(self, cost: float, errors: float) -> tuple[bool, str]:
        p, train = self.progress, self.run.train
        met = self.evaluator.target_met(cost, errors) and not self.stage.withheld
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.log(self.evaluator.record(p, self.guard.skipped, lr, met, self.stage.stage))
        if self.board is not None:
            self.board.evaluation(self.evaluator.last_row, self.model, self.evaluator.held_out)
        if self.stage.withheld and errors < (train.target_bit_errors or COPIES_RIGHT):
            self.stage.stage = 1
            self.schedule.restart()
            self.log(
                f"{p.sequences:>10,d} seq  copies right ({errors:.3f} bit errors on "
                "held-out sequences without the end marker): the end marker from here on, "
                f"the optimiser afresh at learning rate {train.lr:g}"
            )
            return False, ""
        return met, self._follow_schedule(cost, met)

    def _follow_schedule(self, cost: float, met: bool = False) -> str:
        """Keep the best model of the stage (the one that met the target, where one did:
        the run ends with it), and on a plateau lower the learning rate. Returns why the
        run ends here ("converged", "floor"), or "" when it goes on."""
        p = self.progress
        decision = self.schedule.observe(cost, float(self.optimizer.param_groups[0]["lr"]))
        if (decision.best or met) and not self.stage.withheld:
            self.evaluator.keep_best(self.model, p.sequences)
        if decision.lower_to is not None:
            self.set_learning_rate(decision.lower_to, "plateau: ")
        if decision.converged:
            self.log(
                f"{p.sequences:>10,d} seq  converged: no new best held-out cost in "
                f"{self.schedule.since_best} evaluations: stopping"
            )
            return "converged"
        if decision.stop:
            self.log(
                f"{p.sequences:>10,d} seq  no new best held-out cost in "
                f"{self.schedule.stale_evals} evaluations at the floor learning rate "
                f"{self.run.train.lr_floor:g}: stopping"
            )
            return "floor"
        return ""

    def close(self) -> None:
        """Let go of the run folder (another process may then train it)."""
        if self.board is not None:
            self.board.close()
            self.board = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def fit(self) -> TrainResult:
        """Train to the target or the budget, or until interrupted or the schedule ends the
        run; then save, and let go of the run folder."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        train, p = self.run.train, self.progress
        if p.ended and _on_main(self.world, self._unrecorded_end):
            # Stopped after its final checkpoint, before it recorded why it ended: record
            # that now rather than train on (with its record, a resumed run trains again).
            self.log(f"{p.sequences:>10,d} seq  ended ({p.ended}) before it said so: recorded")
            return self._finish(p.ended)
        p.ended = ""
        solved = interrupted = False
        ended = ""  # why the schedule ended the run, if it did
        bar = _progress_bar(self.run.train, p.sequences, self.quiet)
        started = time.perf_counter() - p.seconds
        for line in _describe(
            self.run.train, self.stage.withheld, self.engine, self.engine_problem
        ):
            self.log(line)
        if self.sync_free:
            self.guard.keep_on_device()
        if self.world.main:
            ckpt.set_ended_aside(self.run_dir)  # it trains again
        if self.schedule.shape is None:  # a new run (or one saved before runs kept it)
            self.schedule.shape = rate_shape(train, p.sequences) if p.sequences else 1.0
        with _Interrupt() as interrupt, bar:
            while p.sequences < train.max_sequences and not (solved or ended):
                if self.stop_agreed or (interrupt.requested and not self.world.parallel):
                    interrupted = True
                    break
                size = min(train.batch_size, train.max_sequences - p.sequences)
                if size < self.world.size:
                    break  # too few sequences left to give every process one
                self._shape_rate(rate_shape(train, p.sequences))
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
                    solved, ended = self._report()
                    p.next_eval += train.eval_every
                    bar.set_postfix_str(self.evaluator.note(), refresh=False)
                if p.sequences >= p.next_checkpoint:
                    p.next_checkpoint += self._ckpt_every()
                    self.save()
            if not (solved or ended or interrupted) and p.window_sequences:
                solved, ended = self._report()
            # Still inside the interrupt's handler: a signal now waits for the end's record.
            if interrupted:
                self.save()
                return self._finish("interrupted")
            p.ended = "target" if solved else ended or "budget"
            self.save()  # its final checkpoint says why it ended, should its record be lost
            return self._finish(p.ended)

    def _finish(self, reason: str) -> TrainResult:
        """Record why the run ended (unless it was interrupted): the result, and the log's
        last line for a run interrupted or solved."""
        p = self.progress
        interrupted, solved = reason == "interrupted", reason == "target"
        if self.world.main and not interrupted:
            ckpt.write_ended(self.run_dir, reason, p.sequences, p.seconds, self.engine)
        cost, errors = self.evaluator.last
        named = errors_named(self.score.unit)
        result = TrainResult(self.run_dir, p.sequences, p.seconds, solved, interrupted, cost,
                             errors, self.losses, reason, named)  # fmt: skip
        if interrupted or solved:
            self.log(_last_line(result, self.run.train))
        return result


def _replica(
    run: RunConfig, device: torch.device, world: World
) -> tuple[nn.Module, str, str | None]:
    """This process's replica of the run's model on ``device``, seeded and starting from
    rank 0's weights; its engine, and why it is not the one asked for."""
    train = run.train
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    torch.manual_seed(train.seed)
    if train.batch_size < world.size:
        raise ValueError(
            f"--batch-size {train.batch_size} cannot be shared among {world.size} "
            f"processes: use at least {world.size}"
        )
    engines = registry.engines(model_class(train.model))
    engine, problem = select_engine(engines, train.engine, device, torch.float32)
    model = build_model(run, train.engine).to(device)
    distributed.broadcast([*model.parameters(), *model.buffers()], world)
    return model, engine, problem


def _split_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A checkpoint's trainer state as the loop's counters and each part's state. A state
    whose ``progress`` also holds the parts' counters (as older run folders' do) reads the
    same."""
    counters = dict(state["progress"])
    parts = {
        "curriculum": {k: counters.pop(k) for k in CURRICULUM_FIELDS if k in counters},
        "guard": {k: counters.pop(k) for k in _GUARD_KEYS if k in counters},
        "schedule": {k: counters.pop(k) for k in _SCHEDULE_KEYS if k in counters},
        "stage": counters.pop("stage", None),
    }
    parts.update({k: state[k] for k in parts if k in state})
    return counters, parts


def _last_line(result: TrainResult, train: TrainConfig) -> str:
    """What ``train.log`` says of a run that was interrupted or solved."""
    if result.interrupted:
        return (
            f"interrupted at {result.sequences:,d} sequences; checkpoint saved, resume with "
            f"`ntm train --resume {result.run_dir}`"
        )
    return (
        f"solved ({' and '.join(train.targets())}): held-out cost {result.eval_cost:.3f} bits, "
        f"{result.eval_bit_errors:.4f} {result.errors} per sequence after {result.sequences:,d} "
        f"sequences, {result.seconds / 60:.1f} minutes"
    )


def _progress_bar(train: TrainConfig, sequences: int, quiet: bool) -> tqdm:
    """Sequences trained; a total (and so an ETA) only where the run will go that far: no
    target and a constant learning rate. A run that may stop early shows its held-out
    result against its target instead."""
    to_the_end = not train.targets() and train.schedule == "constant"
    return tqdm(
        total=train.max_sequences if to_the_end else None,
        initial=sequences,
        unit="seq",
        unit_scale=True,
        dynamic_ncols=True,
        disable=quiet,
        desc=f"{train.task} {train.model}",
    )


def _describe(train: TrainConfig, withheld: bool, engine: str, problem: str | None) -> list[str]:
    """The lines ``train.log`` begins a stretch of training with."""
    goal = " and ".join(train.targets()) or "none"
    schedule = train.schedule
    if schedule == "plateau":
        schedule += (
            f" (x{train.lr_decay:g} after {train.lr_patience} evaluations without a new "
            f"best, once the held-out cost is below {train.plateau_after:g} of its first; "
            f"down to {train.lr_floor:g})"
        )
    if schedule == "cosine":
        horizon = train.decay_sequences or train.max_sequences
        schedule += f" (down to {train.lr_floor:g} at {horizon:,d} sequences)"
    if train.warmup:
        schedule += f", warm-up over {train.warmup:,d} sequences"
    if train.stop_patience:
        schedule += f"; converged after {train.stop_patience} evaluations without a new best"
    optimizer = train.optimizer + (
        f" (weight decay {train.weight_decay:g})" if train.weight_decay else ""
    )
    lines = [f"target: {goal}; {optimizer}, lr {train.lr:g}, schedule {schedule}"]
    if withheld:
        lines.append("end marker withheld until the copies are right")
    if engine:
        lines.append(f"engine {engine}" + (f": {problem}" if problem else ""))
    if engine == "compiled":
        lines.append("compiling the step with torch.compile (one to two minutes the first time)")
    return lines


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
        else:
            if not world.main:
                trainer.adopt(state[0], state[1], run_dir)
            trainer.log(f"{trainer.progress.sequences:>10,d} seq  resumed from its checkpoint")
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
