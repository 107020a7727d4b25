"""``ntm train --tensorboard``: each evaluation as TensorBoard scalars and a picture.

Written under ``RUN_DIR/tensorboard`` through ``torch.utils.tensorboard`` (the
``tensorboard`` package: ``pip install "torch-ntm[tensorboard]"``); watch with
``tensorboard --logdir RUN_DIR/tensorboard``. Only the process that writes the run folder
logs.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from torch import nn

from ntm.tasks.contract import Batch

#: The folder of the run that holds its TensorBoard events.
FOLDER = "tensorboard"
#: The metrics row's values logged as scalars, under their TensorBoard tags.
SCALARS = {
    "train_cost": "cost/training batches",
    "eval_cost": "cost/held-out",
    "train_bit_errors": "errors/training batches",
    "eval_bit_errors": "errors/held-out",
    "lr": "learning rate",
}


def available() -> bool:
    """Whether the ``tensorboard`` package is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class Board:
    """The run's TensorBoard log: :meth:`evaluation` at each evaluation."""

    def __init__(self, run_dir: Path, title: str) -> None:
        if not available():
            raise ValueError(
                "--tensorboard needs the package tensorboard: "
                'pip install "torch-ntm[tensorboard]" (or pip install tensorboard)'
            )
        writer = importlib.import_module("torch.utils.tensorboard").SummaryWriter
        self.writer = writer(str(run_dir / FOLDER))
        # The figures (and matplotlib, half a second) load with a board, not with every trainer.
        self.figures = importlib.import_module("ntm.pictures.figures")
        self.title = title

    def evaluation(self, row: dict[str, Any], model: nn.Module, held_out: Batch) -> None:
        """Log a metrics row's values and the model on the first held-out sequence."""
        step = int(row["sequences"])
        for key, tag in SCALARS.items():
            self.writer.add_scalar(tag, float(row[key]), step)
        one = Batch(held_out.inputs[:, :1], held_out.targets[:, :1], held_out.mask[:, :1])
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            probabilities, trace, _ = self.figures.run_one(model, one.inputs.to(device))
        finally:
            model.train(was_training)
        title = f"{self.title}, {step:,d} sequences"
        figure = self.figures.sequence_figure(one, probabilities, trace, title)
        self.writer.add_figure("held-out sequence", figure, step)  # closes the figure
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
