"""``--device``: its forms, its errors, and runs that do not depend on the device."""

import math
from pathlib import Path

import pytest
import torch

import ntm
from ntm.cli import main
from ntm.engines import devices
from ntm.runs import checkpoint as ckpt
from ntm.training import trainer as training
from tests.conftest import tiny_flags, tiny_run
from tests.test_faults import nan_on_updates

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
without_cuda = pytest.mark.skipif(CUDA, reason="a CUDA device is present")


def test_the_forms() -> None:
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto") == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "cuda:-1", ""):
        with pytest.raises(devices.DeviceError, match="expected auto, cpu, cuda or cuda:N"):
            devices.resolve(bad)


def test_auto_is_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert devices.resolve("auto") == torch.device("cpu")
    assert devices.resolve("auto", local_rank=1) == torch.device("cpu")
    with pytest.raises(
        devices.DeviceError, match=r"--device cuda: no such device here \(available: cpu\)"
    ):
        devices.resolve("cuda")
    with pytest.raises(devices.DeviceError, match="--device cuda:3: no such device"):
        devices.resolve("cuda:3")


def test_a_missing_gpu_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    run_dir = tmp_path / "run"
    flags = ["train", "--task", "copy", "--run-dir", str(run_dir), *tiny_flags(), "--device"]
    assert main([*flags, "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such device here (available: cpu)" in err
    assert not run_dir.exists()  # refused before the run folder was made
    assert main([*flags, "tpu"]) == 2
    assert "expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err


def test_batches_are_the_same_on_the_device() -> None:
    batch = ntm.make_task("copy").sample(4, torch.Generator().manual_seed(0))
    moved = batch.to("cpu")
    for a, b in zip(moved, batch, strict=True):
        assert torch.equal(a, b)


def test_a_run_resumes_on_a_device_of_its_choosing(tmp_path: Path) -> None:
    """The device is no part of the checkpoints: a run continues on another one (on a
    CPU-only machine: from auto to cpu), with the losses of the run that never stopped."""
    whole = training.train(tiny_run(), tmp_path / "whole", quiet=True)
    part = training.train(tiny_run(max_sequences=96), tmp_path / "part", quiet=True)
    rest = training.resume(tmp_path / "part", {"max_sequences": 192, "device": "cpu"}, quiet=True)
    assert part.losses + rest.losses == whole.losses
    model = ntm.load(tmp_path / "part", device="cpu")
    assert next(model.parameters()).device == torch.device("cpu")


@without_cuda
def test_loading_onto_a_missing_gpu_is_refused(tmp_path: Path) -> None:
    training.train(tiny_run(max_sequences=32), tmp_path / "run", quiet=True)
    with pytest.raises(devices.DeviceError, match="no such device"):
        ntm.load(tmp_path / "run", device="cuda")


@needs_cuda
def test_a_gpu_run_resumes_on_the_cpu(tmp_path: Path) -> None:
    part = training.train(tiny_run(max_sequences=96, device="cuda"), tmp_path / "run", quiet=True)
    rest = training.resume(tmp_path / "run", {"max_sequences": 192, "device": "cpu"}, quiet=True)
    assert part.losses and rest.losses
    model = ntm.load(tmp_path / "run", device="cuda")
    assert next(model.parameters()).is_cuda


def _curve(run_dir: Path) -> torch.Tensor:
    keys = ("train_cost", "train_bit_errors", "eval_cost", "eval_bit_errors")
    return torch.tensor([[row[k] for k in keys] for row in ckpt.read_metrics(run_dir)])


@needs_cuda
@pytest.mark.parametrize("engine", ["fused", "compiled"])
def test_a_gpu_run_is_the_cpu_run(tmp_path: Path, engine: str) -> None:
    """The same run on the GPU (checked without host syncs; compiled: CUDA graphs) and on the
    CPU: the same curve, to float32 rounding."""
    settings = {"max_sequences": 96, "eval_every": 32}
    training.train(tiny_run(**settings, device="cpu"), tmp_path / "cpu", quiet=True)
    gpu_run = tiny_run(**settings, device="cuda", engine=engine)
    trainer = training.start(gpu_run, tmp_path / "gpu", quiet=True)
    assert trainer.sync_free
    trainer.fit()
    gpu, cpu = _curve(tmp_path / "gpu"), _curve(tmp_path / "cpu")
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)


@needs_cuda
def test_a_nan_on_the_gpu_is_skipped_without_a_sync(tmp_path: Path) -> None:
    run = tiny_run(max_sequences=64, eval_every=64, device="cuda")
    trainer = training.start(run, tmp_path / "run", quiet=True)
    nan_on_updates(trainer, {2})
    result = trainer.fit()
    assert math.isnan(result.losses[1]) and len(result.losses) == 4
    assert ckpt.read_metrics(tmp_path / "run")[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
