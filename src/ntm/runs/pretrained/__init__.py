"""Trained models shipped inside the package: ``ntm.runs.pretrained.load("copy")``.

Each model is a folder ``MODEL/TASK/`` here (``ntm/copy/``, ``dnc/copy/``) holding what a run
folder holds for evaluation: ``config.json`` (model, task and training settings),
``model.safetensors`` (the weights, loaded without unpickling anything) and ``metrics.csv``
(its learning curve). ``ntm eval --pretrained copy`` and ``ntm viz --pretrained copy`` use
them as they would a run folder; another model's are ``ntm.runs.pretrained.load("copy",
model="dnc")`` and ``ntm eval --pretrained copy --model dnc``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ntm.runs.checkpoint import CONFIG_FILE, RunError
from ntm.runs.load import load_run

_ROOT = Path(__file__).resolve().parent


def models() -> list[str]:
    """The models that have shipped ones (folders here)."""
    return sorted(p.name for p in _ROOT.iterdir() if p.is_dir() and not p.name.startswith("_"))


def folder(model: str) -> Path:
    """Where the shipped models of model ``model`` live."""
    if model not in models():
        raise RunError(f"model = {model!r}: pretrained models are of model {', '.join(models())}")
    return _ROOT / model


def available(model: str = "ntm") -> list[str]:
    """Names of the shipped models of model ``model`` (``ntm``, ``dnc``): task names."""
    root = folder(model)
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def path(name: str, model: str = "ntm") -> Path:
    """The folder of the shipped model of kind ``model`` for task ``name``."""
    names = available(model)
    if name not in names:
        shipped = ", ".join(names) or "none"
        raise RunError(f"no pretrained {model} model {name!r}; shipped: {shipped}")
    return folder(model) / name


def load(name: str, device: torch.device | str = "cpu", model: str = "ntm") -> nn.Module:
    """The shipped model of kind ``model`` (``ntm``, the default, or ``dnc``) for task
    ``name``, in eval mode on ``device`` (default the CPU)."""
    return load_run(path(name, model), device=device)[1]
