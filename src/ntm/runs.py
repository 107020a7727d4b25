"""Run folders as models: read a run's config, build its model, load its weights.

A run folder (``ntm train``'s) and a shipped model's folder (:mod:`ntm.pretrained`) are read
the same way: ``config.json`` rebuilds the model, and the weights come from the folder's own
``model.safetensors`` or else its latest checkpoint. The files themselves are
:mod:`ntm.checkpoint`'s.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from ntm import checkpoint as ckpt
from ntm.config import LSTMConfig, NTMConfig
from ntm.model import NTM, LSTMBaseline
from ntm.runconfig import RunConfig


def build_model(config: NTMConfig | LSTMConfig, engine: str) -> nn.Module:
    """The model of ``config``; ``engine`` is how an NTM runs (see :class:`ntm.NTM`)."""
    if isinstance(config, LSTMConfig):
        return LSTMBaseline.from_config(config)
    return NTM.from_config(config, engine=engine)


def read_run_config(run_dir: Path) -> RunConfig:
    """The configuration of the run in ``run_dir``; errors name the file."""
    data = ckpt.read_config(run_dir)
    try:
        return RunConfig.from_dict(data)
    except ValueError as error:
        raise ckpt.RunError(f"{run_dir / ckpt.CONFIG_FILE}: {error}") from None


def load_run(run_dir: str | Path, engine: str = "fused") -> tuple[RunConfig, nn.Module]:
    """The run's configuration and its model (latest checkpoint), in eval mode; an NTM runs
    on ``engine``."""
    run_dir = Path(run_dir)
    run = read_run_config(run_dir)
    model = build_model(run.model, engine)
    path = run_dir / ckpt.MODEL_FILE  # a shipped model: weights beside the config
    if not path.is_file():
        path = ckpt.latest_checkpoint(run_dir) / ckpt.MODEL_FILE
    ckpt.load_weights_strict(model, ckpt.load_model_tensors(path), path)
    return run, model.eval()


def load(run_dir: str | Path) -> nn.Module:
    """The model of a run folder (latest checkpoint), in eval mode."""
    return load_run(run_dir)[1]


def default_run_dir(run: RunConfig) -> Path:
    """``runs/TASK-MODEL-TIME``, with a number added when that folder exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{run.train.task}-{run.train.model}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
