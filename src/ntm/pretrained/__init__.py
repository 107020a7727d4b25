"""Trained models shipped inside the package: ``ntm.pretrained.load("copy")``.

Each model is a folder here holding what a run folder holds for evaluation: ``config.json``
(model, task and training settings), ``model.safetensors`` (the weights, loaded without
unpickling anything) and ``metrics.csv`` (its learning curve). ``ntm eval --pretrained
copy`` and ``ntm viz --pretrained copy`` use them as they would a run folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ntm.checkpoint import CONFIG_FILE, RunError
from ntm.runs import load_run

_ROOT = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped models (task names)."""
    return sorted(p.name for p in _ROOT.iterdir() if (p / CONFIG_FILE).is_file())


def path(name: str) -> Path:
    """The folder of the shipped model ``name``."""
    names = available()
    if name not in names:
        shipped = ", ".join(names) or "none"
        raise RunError(f"no pretrained model {name!r}; shipped: {shipped}")
    return _ROOT / name


def load(name: str, device: torch.device | str = "cpu") -> nn.Module:
    """The shipped model ``name``, in eval mode on ``device`` (default the CPU)."""
    return load_run(path(name), device=device)[1]
