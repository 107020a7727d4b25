"""Run folders as models: read a run's config, build its model, load its weights.

A run folder (``ntm train``'s) and a shipped model's folder (:mod:`ntm.runs.pretrained`) are read
the same way: ``config.json`` rebuilds the model, and the weights come from the folder's own
``model.safetensors`` or else its latest checkpoint. The files themselves are
:mod:`ntm.runs.checkpoint`'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ntm import registry
from ntm.engines import devices
from ntm.engines.select import AUTO
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import RunConfig, model_config


def build_model(run: RunConfig, engine: str = AUTO) -> nn.Module:
    """The model of ``run`` (its registered class, built from ``run.model``), asking for
    ``engine`` when it has engines (:mod:`ntm.engines.select` decides what runs)."""
    cls = registry.model_class(run.train.model)
    model = registry.build_model(cls, run.model, engine)
    if not isinstance(model, nn.Module):
        raise ckpt.RunError(
            f"model {run.train.model}: built a {type(model).__name__}, not a Module"
        )
    return model


def logits_of(output: Tensor | tuple[Tensor, ...]) -> Tensor:
    """The logits a model's ``forward`` returned: the tensor itself, or the first of
    ``(logits, state)``."""
    return output[0] if isinstance(output, tuple) else output


def read_run_config(run_dir: Path) -> RunConfig:
    """The configuration of the run in ``run_dir``; errors name the file."""
    data = ckpt.read_config(run_dir)
    try:
        return RunConfig.from_dict(_as_saved(data))
    except ValueError as error:
        raise ckpt.RunError(f"{run_dir / ckpt.CONFIG_FILE}: {error}") from None


def _as_saved(data: dict[str, Any]) -> dict[str, Any]:
    """A run folder's config with the task settings added since it was saved at the values
    it trained with (the task's ``settings_before``), so that it resumes, evaluates and
    describes itself as it began."""
    train, task = data.get("train"), data.get("task")
    if not (isinstance(train, dict) and isinstance(task, dict)):
        return data  # RunConfig.from_dict names what is missing
    try:
        before = registry.settings_before(registry.task_class(str(train.get("task"))))
    except registry.RegistryError:
        return data
    return {**data, "task": {**before, **task}}


#: Which of a run's models to load: the one with the lowest held-out cost, or the newest.
CHECKPOINTS = ("best", "latest")


def weights_file(run_dir: Path, checkpoint: str = "best") -> Path:
    """The weights a run folder's model is loaded from: a shipped model's own, else the
    ``best`` checkpoint (the latest when the run has none yet) or the ``latest``."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint = {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    path = run_dir / ckpt.MODEL_FILE  # a shipped model: weights beside the config
    if path.is_file():
        return path
    best = ckpt.best_checkpoint(run_dir) if checkpoint == "best" else None
    return (best or ckpt.latest_checkpoint(run_dir)) / ckpt.MODEL_FILE


def with_model_settings(run: RunConfig, settings: Mapping[str, Any]) -> RunConfig:
    """``run`` with some of its model's settings changed (checked as a new model's are)."""
    values = {**run.model.to_dict(), **settings}
    return RunConfig(run.train, run.task, model_config(run.train.model, values)).checked()


def load_run(
    run_dir: str | Path,
    engine: str = AUTO,
    checkpoint: str = "best",
    device: torch.device | str = "cpu",
    model_settings: Mapping[str, Any] | None = None,
) -> tuple[RunConfig, nn.Module]:
    """The run's configuration and its model (see :func:`weights_file`), in eval mode, on
    ``device`` (a ``torch.device``, or ``auto``, ``cpu``, ``cuda``, ``cuda:N``); a model
    with engines asks for ``engine`` (:func:`ntm.engines.select.select_engine` decides)."""
    run_dir = Path(run_dir)
    trained = read_run_config(run_dir)
    run = with_model_settings(trained, model_settings) if model_settings else trained
    if isinstance(device, str):
        device = devices.resolve(device)
    model = build_model(run, engine)
    path = weights_file(run_dir, checkpoint)
    tensors = ckpt.load_model_tensors(path)
    adapt = registry.adapt_weights(registry.model_class(run.train.model))
    if model_settings and adapt is not None:
        tensors = adapt(tensors, trained.model, run.model)
    try:
        ckpt.load_weights_strict(model, tensors, path)
    except ckpt.RunError as error:
        if not model_settings:
            raise
        given = ", ".join(f"{key}={value}" for key, value in model_settings.items())
        raise ckpt.RunError(
            f"model settings {given}: the trained weights depend on them ({error})"
        ) from None
    return run, model.to(device).eval()


def load(
    run_dir: str | Path, checkpoint: str = "best", device: torch.device | str = "cpu"
) -> nn.Module:
    """The model of a run folder, in eval mode on ``device`` (default the CPU): its ``best``
    checkpoint (lowest held-out cost; the latest when it has none) or its ``latest``."""
    return load_run(run_dir, checkpoint=checkpoint, device=device)[1]


def default_run_dir(run: RunConfig) -> Path:
    """``runs/TASK-MODEL-TIME``, with a number added when that folder exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{run.train.task}-{run.train.model}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
