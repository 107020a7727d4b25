"""The trainer's evaluator: held-out results, targets, metrics rows and the best model.

Every process evaluates its share of the held-out set and the sums are added up, so that no
process waits while another evaluates; rank 0 alone writes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from ntm import registry
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import RunConfig
from ntm.runs.evaluation import evaluate
from ntm.tasks.contract import Batch
from ntm.tasks.scoring import errors_named, scoring
from ntm.training import distributed
from ntm.training.data import held_out_batch


class Evaluator:
    """Held-out cost and bit errors per sequence of the run's model, and what they mean.

    The task's reference cost (its ``optimal_cost`` of the held-out set, such as the
    n-grams Bayes optimum), where it has one, is what ``--target-excess`` is measured from.
    While repeat copy's end marker is withheld the held-out sequences come without it too
    (drawn when first needed), so the schedule and the switch judge what the run trains."""

    def __init__(
        self, run: RunConfig, run_dir: Path, world: distributed.World = distributed.SINGLE
    ) -> None:
        self.run = run
        self.run_dir = run_dir
        self.world = world
        self.held_out = held_out_batch(run)
        self.withheld: Batch | None = None
        self.optimal: float | None = None
        optimal = registry.optimal_cost(run.task)
        if self.held_out is not None and optimal is not None:
            self.optimal = float(optimal(self.held_out))
        self.last = (math.nan, math.nan)  # the last held-out cost and bit errors
        self.last_row: dict[str, Any] = {}  # the last metrics row recorded

    def measure(self, model: nn.Module, withheld: bool) -> tuple[float, float]:
        """The model's held-out cost and bit errors per sequence. Every process calls it:
        each evaluates its contiguous share of the held-out set (:meth:`World.share`), and
        the sums are added up across processes."""
        batch = self.held_out
        if withheld:
            if self.withheld is None:
                variant = self.run.task.with_settings(end_marker=False)
                self.withheld = held_out_batch(self.run, variant)
            batch = self.withheld
        total = batch.inputs.shape[1]
        share = self.world.share(total)
        part = slice(share.start, share.stop)
        mine = Batch(batch.inputs[:, part], batch.targets[:, part], batch.mask[:, part])
        cost = errors = 0.0
        if len(share):
            cost, errors = evaluate(model, mine, score=scoring(self.run.task))
        sums = distributed.all_sum([cost * len(share), errors * len(share)], self.world)
        self.last = (sums[0] / total, sums[1] / total)
        return self.last

    def target_met(self, cost: float, errors: float) -> bool:
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
        return bool(checks) and all(checks)

    def record(self, progress: Any, skipped: int, lr: float, met: bool, stage: int) -> str:
        """Append the metrics row of this evaluation (``progress``: the trainer's counters,
        with the training batches' sums since the last one); returns its line for
        ``train.log``."""
        cost, errors = self.last
        seen = max(progress.window_sequences, 1)
        row = {
            "sequences": progress.sequences,
            "seconds": round(progress.seconds, 3),
            "train_cost": progress.window_cost / seen,
            "train_bit_errors": progress.window_errors / seen,
            "eval_cost": cost,
            "eval_bit_errors": errors,
            "skipped_steps": skipped,
            "lr": lr,
            "stage": stage,
            "target_met": int(met),
        }
        ckpt.append_metrics(self.run_dir, row)
        self.last_row = row
        excess = "" if self.optimal is None else f" ({cost - self.optimal:+.3f} optimal)"
        return (
            f"{progress.sequences:>10,d} seq {progress.seconds:8.1f} s  train cost "
            f"{row['train_cost']:7.3f}  held-out cost {cost:7.3f} bits{excess}, {errors:7.3f} "
            f"{errors_named(scoring(self.run.task).unit)} per sequence"
        )

    def keep_best(self, model: nn.Module, sequences: int) -> None:
        """Write ``checkpoints/best/``: this model and its held-out result."""
        cost, errors = self.last
        info = {"sequences": sequences, "eval_cost": cost, "eval_bit_errors": errors}
        ckpt.save_best(self.run_dir, model, info)

    def note(self) -> str:
        """The last held-out result in the terms of the run's target, for the progress bar."""
        train, (cost, errors) = self.run.train, self.last
        if train.target_excess > 0 and self.optimal is not None:
            excess = cost - self.optimal
            return f"held-out cost {excess:+.3f} optimal (target < +{train.target_excess:g})"
        if train.target_cost > 0:
            return f"held-out cost {cost:.3f} (target < {train.target_cost:g})"
        target = f" (target < {train.target_bit_errors:g})" if train.target_bit_errors else ""
        return f"held-out bit errors {errors:.4f}{target}"

    def state_dict(self) -> dict[str, Any]:
        return {"last_eval": list(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last = (float(state["last_eval"][0]), float(state["last_eval"][1]))
