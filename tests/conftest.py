"""Shared fixtures: tiny, fast training runs; and the check of a native kernel against its
reference in float64."""

import importlib.util
import os
from collections.abc import Callable
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


def matches_in_float64(
    native: Callable[..., torch.Tensor],
    reference: Callable[..., torch.Tensor],
    exact: list[torch.Tensor],
    names: tuple[str, ...],
    *,
    rtol: float = 1e-4,
    gradient_rtol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Assert that ``native`` on ``exact`` (float64 inputs, named ``names``) cast to float32
    gives ``reference``'s outputs on them, and the same gradients of every input, to float32
    rounding (an absolute tolerance of 1e-5 times the tensor's largest value, or times 1 for
    outputs below 1, beside ``rtol``); returns ``native``'s output."""
    exact = [t.detach().requires_grad_() for t in exact]
    expected = reference(*exact)
    grad_out = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    expected_grads = torch.autograd.grad(expected, exact, grad_out)
    single = [t.detach().float().requires_grad_() for t in exact]
    out = native(*single)
    grads = torch.autograd.grad(out, single, grad_out.float())
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    torch.testing.assert_close(out.double(), expected, atol=1e-5 * scale, rtol=rtol)
    for name, got, want in zip(names, grads, expected_grads, strict=True):
        scale = want.abs().max().item() if want.numel() else 0.0
        torch.testing.assert_close(got.double(), want, atol=1e-5 * max(scale, 1e-3),
                                   rtol=gradient_rtol, msg=f"the gradient of {name}")  # fmt: skip
    return out


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
