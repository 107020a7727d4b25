"""Shared fixtures: tiny, fast training runs."""

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ntm.runs.config import RunConfig, resolve_config

# `ntm train` run by the tests uses one process unless a test asks for more (--nproc): the
# default depends on how busy the machine is, and the tests should not.
os.environ["NTM_NPROC"] = "1"

#: A copy model small enough to train a few hundred sequences in about a second.
TINY_MODEL = {"controller_size": 16, "memory_size": 16, "word_size": 6}
TINY_TASK = {"bits": 4, "max_length": 5}
TINY_TRAIN = {
    "max_sequences": 192,
    "batch_size": 16,
    "eval_every": 64,
    "eval_size": 16,
    "seed": 3,
    "engine": "fused",  # the compiled engine is tested on its own: compiling takes a while
}


def benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/NAME.py``, imported as a module."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_run(**train: object) -> RunConfig:
    return resolve_config({**TINY_TRAIN, **train}, dict(TINY_TASK), dict(TINY_MODEL))


def tiny_flags(**train: object) -> list[str]:
    """The ``ntm train`` flags of :func:`tiny_run` (a training setting given as None is
    left out)."""
    flags = []
    for name, value in {**TINY_TRAIN, **train, **TINY_TASK, **TINY_MODEL}.items():
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
