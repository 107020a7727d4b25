"""Training: run configuration, presets, the training loop, evaluation and resuming."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
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
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ntm import checkpoint as ckpt
from ntm import distributed
from ntm.config import (
    PAPER_SETTINGS,
    LSTMConfig,
    NTMConfig,
    from_dict,
    paper_lstm_config,
    paper_ntm_config,
    require,
)
from ntm.distributed import SINGLE, World
from ntm.fused import compiled_available, plain_steps, use_compiled
from ntm.model import NTM, LSTMBaseline
from ntm.optim import GravesRMSprop
from ntm.tasks import TASKS, Batch, bit_errors, concat, cost_bits, loss_bits, make_task

PRESETS = ("fast", "paper")
MODELS = ("ntm", "lstm")
OPTIMIZERS = ("adam", "rmsprop")
CLIP_MODES = ("norm", "value")
ENGINES = ("eager", "fused", "compiled")


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
    task: Any
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


def build_model(config: NTMConfig | LSTMConfig, engine: str | None = None) -> nn.Module:
    """The model of ``config``; ``engine`` picks the NTM's execution path. The fused path's
    step functions are shared by the process, so only a training engine switches them
    between compiled and plain; ``None`` (loading a model to look at) leaves them as they
    are, and a run training in the same process keeps its engine."""
    if isinstance(config, LSTMConfig):
        return LSTMBaseline.from_config(config)
    if engine is not None:
        use_compiled(engine == "compiled")
    return NTM.from_config(config, fused=engine != "eager")


def usable_engine(engine: str) -> tuple[str, str | None]:
    """``engine``, or ``fused`` with the reason when ``compiled`` cannot work here."""
    if engine != "compiled":
        return engine, None
    problem = compiled_available()
    return ("fused", problem) if problem else (engine, None)


def build_optimizer(train: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if train.optimizer == "rmsprop":
        return GravesRMSprop(model.parameters(), lr=train.lr, momentum=train.momentum)
    return torch.optim.Adam(model.parameters(), lr=train.lr)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batch: Batch,
    chunk: int = 256,
    inspect: Callable[[Tensor, Batch], None] | None = None,
) -> tuple[float, float]:
    """Cost in bits and bit errors per sequence of ``model`` on ``batch``, in chunks.

    ``inspect``, if given, sees each chunk's logits with that chunk of the batch.
    """
    total = batch.inputs.shape[1]
    cost = errors = 0.0
    was_training = model.training
    model.eval()
    # Uncompiled: evaluation is rare and at its own batch sizes, which compiling would cost
    # more (a graph per size, tens of seconds each) than it saves.
    with plain_steps():
        for start in range(0, total, chunk):
            part = slice(start, start + chunk)
            inputs, targets = batch.inputs[:, part], batch.targets[:, part]
            mask = batch.mask[:, part]
            logits, _ = model(inputs)
            size = inputs.shape[1]
            cost += cost_bits(logits, targets, mask) * size
            errors += bit_errors(logits, targets, mask) * size
            if inspect is not None:
                inspect(logits, Batch(inputs, targets, mask))
    model.train(was_training)
    return cost / total, errors / total


def held_out_batch(run: RunConfig) -> Batch:
    """The fixed held-out set, from its own seeded generator."""
    generator = torch.Generator().manual_seed(run.train.eval_seed)
    batch: Batch = run.task.sample(run.train.eval_size, generator)
    return batch


def sequence_seed(seed: int, update: int, slot: int) -> int:
    """The seed of one training sequence: slot ``slot`` of the batch of update ``update`` of
    a run seeded ``seed``. Fixed by these three alone, the data do not depend on how many
    processes draw them, and a resumed run draws what the uninterrupted one would have."""
    digest = hashlib.blake2b(f"{seed}:{update}:{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def draw_batch(task: Any, seed: int, update: int, slots: range) -> Batch:
    """The sequences ``slots`` of update ``update``'s batch, each from its own seeded
    generator, side by side (padded to the longest)."""
    generator = torch.Generator()
    return concat(
        [task.sample(1, generator.manual_seed(sequence_seed(seed, update, s))) for s in slots]
    )


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


#: Non-finite updates in a row that make the trainer roll back to its last checkpoint.
MAX_BAD_UPDATES = 3

#: Per task, the setting a curriculum raises and the setting it starts above.
CURRICULUM_KNOBS = {
    "copy": ("max_length", "min_length"),
    "repeat_copy": ("max_length", "min_length"),
    "associative_recall": ("max_items", "min_items"),
}
#: Updates between curriculum checks, and the training bit errors per sequence below which
#: the next level starts.
CURRICULUM_WINDOW = 20
CURRICULUM_THRESHOLD = 0.5
#: One batch in this many comes from the full task while the curriculum is below the top.
CURRICULUM_MIX = 4


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
    level: int = 0  # curriculum cap of the task's knob; 0 when there is no curriculum
    level_errors: float = 0.0  # training bit errors summed over the current check window
    level_sequences: int = 0
    level_updates: int = 0


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
        self, run: RunConfig, run_dir: Path, *, quiet: bool = False, world: World = SINGLE
    ) -> None:
        self.run = run
        self.run_dir = run_dir
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
        self.engine, self.engine_problem = usable_engine(train.engine)
        self.model = build_model(run.model, self.engine)
        # The module that trains: the model itself, or a replica that averages gradients
        # over the processes (and starts from rank 0's weights).
        self.replica: nn.Module = (
            DistributedDataParallel(self.model) if world.parallel else self.model
        )
        self.optimizer = build_optimizer(train, self.model)
        self.stop_agreed = False  # every process saw the stop request (parallel runs)
        self.progress = _Progress(next_eval=train.eval_every, next_checkpoint=self._ckpt_every())
        knob = CURRICULUM_KNOBS.get(train.task) if train.curriculum else None
        if knob is not None:
            full, low = getattr(run.task, knob[0]), getattr(run.task, knob[1])
            self.progress.level = min(low + 3, full)
        self.held_out = held_out_batch(run) if world.main else None
        self.losses: list[float] = []
        self.last_eval = (math.nan, math.nan)
        self.on_update: Callable[[Trainer], None] | None = None

    def _ckpt_every(self) -> int:
        return self.run.train.checkpoint_every or self.run.train.eval_every

    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "progress": dataclasses.asdict(self.progress),
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
            self.progress = _Progress(**state["progress"])
            self.last_eval = (float(state["last_eval"][0]), float(state["last_eval"][1]))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ckpt.RunError(
                f"{source / ckpt.TRAINER_FILE} is not a trainer state of this run: {error}"
            ) from None

    def set_learning_rate(self, lr: float) -> None:
        """Train on at ``lr`` from here (the checkpoint holds the rate it was trained at,
        lowered by any rollbacks); train.log records the change."""
        before = {float(group["lr"]) for group in self.optimizer.param_groups}
        if before == {lr}:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        was = ", ".join(f"{x:g}" for x in sorted(before))
        self.log(f"{self.progress.sequences:>10,d} seq  learning rate {was} -> {lr:g}")

    def save(self) -> None:
        if self.world.main:
            ckpt.save_checkpoint(self.run_dir, self.progress.sequences, self.model, self.state())

    def log(self, line: str) -> None:
        if not self.world.main:
            return
        ckpt.append_log(self.run_dir, line)
        if not self.quiet:
            tqdm.write(line, file=sys.stderr)

    def _training_task(self) -> Any:
        """The task the next batch comes from: the full task, or the curriculum's level."""
        level = self.progress.level
        if not level:
            return self.run.task
        return dataclasses.replace(
            self.run.task, **{CURRICULUM_KNOBS[self.run.train.task][0]: level}
        )

    def _training_batch(self, size: int) -> tuple[Batch, bool]:
        """This process's share of the next batch of ``size`` sequences, and whether it
        comes from the curriculum's level. Below the top level every fourth batch comes from
        the full task, so the network never settles on a solution for short sequences only
        (a mixed curriculum, as Zaremba & Sutskever, 2014, used); whole batches keep the
        short ones unpadded."""
        task, updates = self._training_task(), self.progress.updates
        if task is not self.run.task and updates % CURRICULUM_MIX == 0:
            task = self.run.task
        slots = self.world.share(size)
        return draw_batch(task, self.run.train.seed, updates, slots), task is not self.run.task

    def _advance_curriculum(self, errors: float, size: int) -> None:
        p = self.progress
        knob = CURRICULUM_KNOBS.get(self.run.train.task)
        if not p.level or knob is None:
            return
        full, low = getattr(self.run.task, knob[0]), getattr(self.run.task, knob[1])
        if p.level >= full:
            return
        p.level_errors += errors * size
        p.level_sequences += size
        p.level_updates += 1
        if p.level_updates < CURRICULUM_WINDOW:
            return
        if p.level_errors / p.level_sequences < CURRICULUM_THRESHOLD:
            p.level = min(full, p.level + max(1, (full - low) // 8))
            self.log(f"{p.sequences:>10,d} seq  curriculum: {knob[0]} up to {p.level}")
        p.level_errors, p.level_sequences, p.level_updates = 0.0, 0, 0

    def _step(self, batch: Batch, size: int, from_level: bool, stop: bool) -> float:
        """One update on a global batch of ``size`` sequences, of which ``batch`` is this
        process's share; ``from_level``: the batch comes from the curriculum's level.
        ``stop``: this process was asked to stop (the processes agree on it here).

        A non-finite loss or gradient skips the update (counted in ``metrics.csv``); after
        :data:`MAX_BAD_UPDATES` in a row the trainer rolls back to its last checkpoint with
        half the learning rate. Returns the loss of the whole batch in bits per sequence.
        """
        train, p = self.run.train, self.progress
        part = batch.inputs.shape[1]
        logits, _ = self.replica(batch.inputs)
        loss = loss_bits(logits, batch.targets, batch.mask)
        self.optimizer.zero_grad(set_to_none=True)
        errors = bit_errors(logits, batch.targets, batch.mask)
        # Sums over the whole batch, the same on every process, in one collective call.
        cost_sum, errors_sum, stops = distributed.all_sum(
            [float(loss.detach()) * part, errors * part, float(stop)], self.world
        )
        self.stop_agreed = stops > 0
        value = cost_sum / size
        finite = math.isfinite(value)
        if finite:
            # Scaled so that the gradient, averaged over the processes, is the whole batch's.
            (loss * (part * self.world.size / size)).backward()  # type: ignore[no-untyped-call]
            grads = [q.grad for q in self.model.parameters() if q.grad is not None]
            finite = bool(torch.stack([g.abs().max() for g in grads]).isfinite().all())
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            p.skipped += 1
            p.bad_in_a_row += 1
            if p.bad_in_a_row >= MAX_BAD_UPDATES:
                self._roll_back()
            return value
        p.bad_in_a_row = 0
        if train.clip > 0:
            params = self.model.parameters()
            if train.clip_mode == "norm":
                torch.nn.utils.clip_grad_norm_(params, train.clip)
            else:
                torch.nn.utils.clip_grad_value_(params, train.clip)
        self.optimizer.step()
        p.window_cost += cost_sum
        p.window_errors += errors_sum
        p.window_sequences += size
        if from_level:
            self._advance_curriculum(errors_sum / size, size)
        return value

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

    def _report(self) -> bool:
        """Evaluate, append a metrics row, log it. Returns True when the target is met.
        Rank 0 evaluates; every process learns the result."""
        solved = self._evaluate_and_record() if self.world.main else False
        solved, self.last_eval = distributed.from_main((solved, self.last_eval), self.world)
        p = self.progress
        p.window_cost = p.window_errors = 0.0
        p.window_sequences = 0
        return bool(solved)

    def _evaluate_and_record(self) -> bool:
        p, train = self.progress, self.run.train
        assert self.held_out is not None  # rank 0 holds it
        self.last_eval = evaluate(self.model, self.held_out)
        eval_cost, eval_errors = self.last_eval
        seen = max(p.window_sequences, 1)
        row = {
            "sequences": p.sequences,
            "seconds": round(p.seconds, 3),
            "train_cost": p.window_cost / seen,
            "train_bit_errors": p.window_errors / seen,
            "eval_cost": eval_cost,
            "eval_bit_errors": eval_errors,
            "skipped_steps": p.skipped,
        }
        ckpt.append_metrics(self.run_dir, row)
        self.log(
            f"{p.sequences:>10,d} seq {p.seconds:8.1f} s  train cost {row['train_cost']:7.3f}  "
            f"held-out cost {eval_cost:7.3f} bits, {eval_errors:7.3f} bit errors per sequence"
        )
        return train.target_bit_errors > 0 and eval_errors < train.target_bit_errors

    def fit(self) -> TrainResult:
        train, p = self.run.train, self.progress
        solved = interrupted = False
        bar = tqdm(
            total=train.max_sequences,
            initial=p.sequences,
            unit="seq",
            unit_scale=True,
            dynamic_ncols=True,
            disable=self.quiet,
            desc=f"{train.task} {train.model}",
        )
        started = time.perf_counter() - p.seconds
        if self.engine_problem:
            self.log(f"torch.compile does not work here ({self.engine_problem}); engine fused")
        elif self.engine == "compiled" and isinstance(self.model, NTM):
            self.log(
                "compiling the NTM step with torch.compile (one to two minutes the first time)"
            )
        with _Interrupt() as interrupt, bar:
            while p.sequences < train.max_sequences and not solved:
                if self.stop_agreed or (interrupt.requested and not self.world.parallel):
                    interrupted = True
                    break
                size = min(train.batch_size, train.max_sequences - p.sequences)
                if size < self.world.size:
                    break  # too few sequences left to give every process one
                batch, from_level = self._training_batch(size)
                self.losses.append(self._step(batch, size, from_level, interrupt.requested))
                p.sequences += size
                p.updates += 1
                p.seconds = time.perf_counter() - started
                bar.update(size)
                if self.on_update is not None:
                    self.on_update(self)
                due_eval = p.sequences >= p.next_eval
                if due_eval:
                    solved = self._report()
                    p.next_eval += train.eval_every
                    eval_cost, eval_errors = self.last_eval
                    bar.set_postfix(cost=f"{eval_cost:.3f}", bit_errors=f"{eval_errors:.3f}")
                else:
                    bar.set_postfix(loss=f"{self.losses[-1]:.3f}", refresh=False)
                if p.sequences >= p.next_checkpoint:
                    p.next_checkpoint += self._ckpt_every()
                    self.save()
            if not solved and not interrupted and p.window_sequences:
                solved = self._report()
        self.save()
        if interrupted:
            self.log(
                f"interrupted at {p.sequences:,d} sequences; checkpoint saved, resume with "
                f"`ntm train --resume {self.run_dir}`"
            )
        elif solved:
            self.log(
                f"solved: held-out bit errors {self.last_eval[1]:.3f} < {train.target_bit_errors} "
                f"after {p.sequences:,d} sequences, {p.seconds / 60:.1f} minutes"
            )
        return TrainResult(
            run_dir=self.run_dir,
            sequences=p.sequences,
            seconds=p.seconds,
            solved=solved,
            interrupted=interrupted,
            eval_cost=self.last_eval[0],
            eval_bit_errors=self.last_eval[1],
            losses=self.losses,
        )


def default_run_dir(run: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{run.train.task}-{run.train.model}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


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
    """A trainer for a new run, with its folder created and its config written (by rank 0)."""

    def prepare() -> Path:
        folder = run_dir or default_run_dir(run)
        if (folder / ckpt.CONFIG_FILE).exists():
            raise ckpt.RunError(
                f"{str(folder)!r} already holds a run; continue it with --resume {folder}"
            )
        folder.mkdir(parents=True, exist_ok=True)
        ckpt.save_config(folder, run.to_dict())
        ckpt.write_metrics(folder, [])
        return folder

    # A bad --init-from is refused before the run folder exists.
    source = _on_main(world, lambda: read_init_source(run)) if run.train.init_from else None
    folder = _on_main(world, prepare)
    trainer = Trainer(run, folder, quiet=quiet, world=world)
    if source is not None:
        take_init_source(trainer, source)
    trainer.save()  # a checkpoint from the first moment: resume and rollback always have one
    return trainer


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

    def read_config() -> dict[str, Any]:
        run = read_run_config(run_dir)
        if overrides:
            run = dataclasses.replace(run, train=dataclasses.replace(run.train, **overrides))
            ckpt.save_config(run_dir, run.to_dict())
        return run.to_dict()

    run = RunConfig.from_dict(_on_main(world, read_config))
    trainer = Trainer(run, run_dir, quiet=quiet, world=world)

    def read_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if not any((run_dir / ckpt.CHECKPOINTS).glob("step-*/" + ckpt.TRAINER_FILE)):
            # Stopped between writing its config and its first checkpoint: nothing trained.
            ckpt.write_metrics(run_dir, [])
            return None
        trainer.load(ckpt.load_checkpoint(run_dir))
        # Rows written after the checkpoint will be written again.
        rows = ckpt.read_metrics(run_dir)
        ckpt.write_metrics(
            run_dir, [r for r in rows if r["sequences"] <= trainer.progress.sequences]
        )
        return trainer.model.state_dict(), trainer.state()

    state = _on_main(world, read_state)
    if state is None:  # begin as the new run would have
        if run.train.init_from:
            take_init_source(trainer, _on_main(world, lambda: read_init_source(run)))
        trainer.save()
    elif not world.main:
        trainer.adopt(state[0], state[1], run_dir)
    if "lr" in overrides:
        trainer.set_learning_rate(run.train.lr)
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


def read_run_config(run_dir: Path) -> RunConfig:
    """The configuration of the run in ``run_dir``; errors name the file."""
    data = ckpt.read_config(run_dir)
    try:
        return RunConfig.from_dict(data)
    except ValueError as error:
        raise ckpt.RunError(f"{run_dir / ckpt.CONFIG_FILE}: {error}") from None


def load_run(run_dir: str | Path) -> tuple[RunConfig, nn.Module]:
    """The run's configuration and its model (latest checkpoint), in eval mode."""
    run_dir = Path(run_dir)
    run = read_run_config(run_dir)
    model = build_model(run.model)
    path = run_dir / ckpt.MODEL_FILE  # a shipped model: weights beside the config
    if not path.is_file():
        path = ckpt.latest_checkpoint(run_dir) / ckpt.MODEL_FILE
    ckpt.load_weights_strict(model, ckpt.load_model_tensors(path), path)
    return run, model.eval()


def load(run_dir: str | Path) -> nn.Module:
    """The model of a run folder (latest checkpoint), in eval mode."""
    return load_run(run_dir)[1]


#: Tensors whose columns are the input channels (followed, in an NTM, by the previous reads),
#: and tensors whose rows are the output channels.
_INPUT_WEIGHTS = ("cell.controller.0.weight_ih", "cell.controller.0.weight", "lstm.weight_ih_l0")
_OUTPUT_TENSORS = (
    "cell.output_layer.weight",
    "cell.output_layer.bias",
    "output_layer.weight",
    "output_layer.bias",
)


def init_source(name: str) -> tuple[Path, str]:
    """The folder that ``--init-from NAME`` means (a run folder, else a shipped model) and
    how train.log names it."""
    folder = Path(name)
    if folder.is_dir():
        return folder, str(folder)
    from ntm import pretrained  # noqa: PLC0415 - ntm.pretrained imports this module

    if name in pretrained.available():
        return pretrained.path(name), f"the shipped {name} model"
    raise ckpt.RunError(
        f"--init-from {name!r} is neither a run folder nor a shipped model "
        f"({', '.join(pretrained.available())})"
    )


@dataclass
class InitSource:
    """The weights a run starts from (``--init-from``), read and checked by rank 0."""

    weights: dict[str, Tensor]
    input_size: int  # the source's input channels: this run's extra ones follow them
    line: str  # for train.log


def read_init_source(run: RunConfig) -> InitSource:
    """The model that ``run.train.init_from`` names, checked against ``run.model``: the two
    must agree in every setting but their channel counts, and ``run`` may only add channels."""
    source, label = init_source(run.train.init_from)
    trained_run, trained = load_run(source)
    old, config = trained_run.model, run.model
    where = f"--init-from {run.train.init_from}"
    if type(old) is not type(config):
        raise ckpt.RunError(
            f"{where}: it holds a {type(old).__name__}, this run a {type(config).__name__}"
        )
    channels = ("input_size", "output_size")
    differ = [
        f"{f.name} is {getattr(old, f.name)!r} there, {getattr(config, f.name)!r} here"
        for f in dataclasses.fields(config)
        if f.name not in channels and getattr(old, f.name) != getattr(config, f.name)
    ]
    for name in channels:
        if getattr(config, name) < getattr(old, name):
            differ.append(
                f"{name} is {getattr(old, name)} there, {getattr(config, name)} here "
                "(channels can be added, not removed)"
            )
    if differ:
        raise ckpt.RunError(f"{where}: the models must match: {'; '.join(differ)}")
    grown = [
        f"{name} {getattr(old, name)} -> {getattr(config, name)}"
        for name in channels
        if getattr(old, name) != getattr(config, name)
    ]
    line = f"weights from {label} ({trained_run.train.task})"
    if grown:
        line += f": {', '.join(grown)}"
    return InitSource(trained.state_dict(), old.input_size, line)


def take_init_source(trainer: Trainer, source: InitSource) -> None:
    """Copy ``source``'s weights into every process's model. Added input channels get zero
    weights, so while they are silent the model computes what the source did; added output
    channels keep their fresh weights."""
    weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    inputs = source.input_size
    added = trainer.run.model.input_size - inputs
    for key, value in source.weights.items():
        slot = weights[key]
        if key in _INPUT_WEIGHTS and added:
            slot[:, :inputs] = value[:, :inputs]
            slot[:, inputs : inputs + added] = 0.0
            slot[:, inputs + added :] = value[:, inputs:]
        elif key in _OUTPUT_TENSORS:
            slot[: value.shape[0]] = value
        else:
            slot.copy_(value)
    trainer.model.load_state_dict(weights)
    trainer.log(source.line)
