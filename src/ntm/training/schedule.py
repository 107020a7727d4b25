"""The learning rate over training, and when training has converged.

Its shape over the sequences (warm-up, cosine), and what the held-out costs mean for it
(plateaus, convergence), kept by an object with its own state.

In the manner of ``torch.optim.lr_scheduler``: the trainer hands it each held-out cost and
saves it by asking for its ``state_dict()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ntm.runs.config import TrainConfig

#: A held-out cost counts as a new best when it is below the best by this fraction.
IMPROVEMENT = 1e-3


def has_learned(best: float, first: float, plateau_after: float) -> bool:
    """Whether a run has begun to learn: its best held-out cost at most ``plateau_after`` of
    its first (both above the task's reference cost). Before that, no plateau counts: a run
    whose cost starts flat is not stopped or slowed for it. A NaN cost counts as learned, so
    that a plateau may still end the run."""
    return not best > plateau_after * first


def rate_shape(train: TrainConfig, sequences: int) -> float:
    """The learning rate after ``sequences`` training sequences, as a multiple of ``--lr``:
    the linear warm-up over ``--warmup`` sequences, then for the cosine schedule half a cosine
    from 1 down to ``--lr-floor / --lr`` at ``--decay-sequences`` (or ``--max-sequences``);
    1 otherwise. Never 0: the
    trainer moves the rate by the ratio of two shapes, which keeps a rollback's halving."""
    shape = 1.0
    if train.warmup > 0:
        shape = min(1.0, (sequences + train.batch_size) / train.warmup)
    if train.schedule == "cosine":
        low = min(1.0, train.lr_floor / train.lr)
        done = min(1.0, sequences / (train.decay_sequences or train.max_sequences))
        shape *= low + (1 - low) * 0.5 * (1 + math.cos(math.pi * done))
    return shape


@dataclass(frozen=True)
class Decision:
    """What one held-out cost means for the run."""

    best: bool = False  # a new best: keep this model
    lower_to: float | None = None  # a plateau: train on at this rate
    stop: bool = False  # the run ends: a plateau at the floor rate, or converged
    converged: bool = False  # no new best in --stop-patience evaluations


class PlateauSchedule:
    """Keep the best held-out cost; once the network has learned (its cost, above
    ``reference``, below ``plateau_after`` of its first), lower the rate by ``lr_decay``
    after ``lr_patience`` evaluations without a new best, down to ``lr_floor``, where the
    next such plateau ends the run. With ``schedule="constant"`` it only keeps the best.

    ``reference``: what no model can beat (0, or a task's reference cost such as the
    n-grams Bayes optimum)."""

    def __init__(self, train: TrainConfig, reference: float = 0.0) -> None:
        self.lowers = train.schedule == "plateau"
        self.decay, self.patience = train.lr_decay, train.lr_patience
        self.floor, self.plateau_after = train.lr_floor, train.plateau_after
        self.reference = reference
        self.best_cost = math.inf
        self.first_cost = math.nan  # the first cost above the reference
        self.stale_evals = 0  # evaluations since the best, once the network has learned
        self.stop_patience = train.stop_patience
        self.since_best = 0  # the same, not reset when the rate is lowered
        # The rate's shape (rate_shape) last applied to the optimiser's rate; None before
        # the first update, and in runs saved before runs kept it.
        self.shape: float | None = None

    def observe(self, cost: float, lr: float) -> Decision:
        """Take one held-out cost, at learning rate ``lr``."""
        if math.isnan(self.first_cost):
            self.first_cost = cost - self.reference
        if cost < self.best_cost * (1 - IMPROVEMENT):
            self.best_cost, self.stale_evals, self.since_best = cost, 0, 0
            return Decision(best=True)
        if not has_learned(self.best_cost - self.reference, self.first_cost, self.plateau_after):
            return Decision()  # a flat start is no plateau
        self.stale_evals += 1
        self.since_best += 1
        if self.stop_patience and self.since_best >= self.stop_patience:
            return Decision(stop=True, converged=True)
        if not self.lowers or self.stale_evals < self.patience:
            return Decision()
        if lr <= self.floor * (1 + 1e-6):
            return Decision(stop=True)
        self.stale_evals = 0
        return Decision(lower_to=max(lr * self.decay, self.floor))

    def restart(self) -> None:
        """Begin again, as for a new stage of the task (repeat copy's end marker)."""
        self.best_cost, self.first_cost, self.stale_evals = math.inf, math.nan, 0
        self.since_best = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_cost": self.best_cost,
            "first_cost": self.first_cost,
            "stale_evals": self.stale_evals,
            "since_best": self.since_best,
            "shape": self.shape,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take a saved state; a run saved before the schedule kept one starts it afresh."""
        self.best_cost = float(state.get("best_cost", math.inf))
        self.first_cost = float(state.get("first_cost", math.nan))
        self.stale_evals = int(state.get("stale_evals", 0))
        self.since_best = int(state.get("since_best", self.stale_evals))  # older runs: none
        shape = state.get("shape")
        self.shape = None if shape is None else float(shape)
