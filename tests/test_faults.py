"""Faults, injected on purpose: NaNs, kills, interrupts, poisoned files, malformed input."""

import argparse
import contextlib
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ntm
from ntm.cli import build_parser, main
from ntm.pictures import figures as viz
from ntm.runs import checkpoint as ckpt
from ntm.sweeps import local as sweep
from ntm.sweeps import ray_backend as sweep_ray
from ntm.training import launch
from ntm.training import trainer as training

from .conftest import tiny_run


def nan_on_updates(trainer: training.Trainer, bad: set[int]) -> None:
    """Make the model's outputs NaN during the listed updates (1-based)."""
    forward = trainer.model.forward
    calls = {"n": 0}

    def poisoned(inputs: torch.Tensor, state: object = None) -> tuple[torch.Tensor, object]:
        logits, new_state = forward(inputs, state)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] in bad:
                logits = logits * math.nan
        return logits, new_state

    trainer.model.forward = poisoned  # type: ignore[method-assign]


#: The two ways the trainer checks a step: on the host (the CPU's), or on the device with
#: no host sync (the GPU's), which must skip and roll back alike.
CHECKS = pytest.mark.parametrize("sync_free", [False, True], ids=["host", "device"])


@CHECKS
def test_one_nan_loss_skips_one_update(run_dir: Path, sync_free: bool) -> None:
    trainer = training.start(tiny_run(max_sequences=64, eval_every=64), run_dir, quiet=True)
    trainer.sync_free = sync_free
    nan_on_updates(trainer, {2})
    result = trainer.fit()
    assert math.isnan(result.losses[1])
    assert ckpt.read_metrics(run_dir)[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert "rolled back" not in (run_dir / "train.log").read_text()


@CHECKS
def test_nan_gradients_are_skipped_too(run_dir: Path, sync_free: bool) -> None:
    trainer = training.start(tiny_run(max_sequences=64, eval_every=64), run_dir, quiet=True)
    trainer.sync_free = sync_free
    calls = {"n": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * math.inf if calls["n"] == 1 else grad

    weight = trainer.model.cell.output_layer.weight  # type: ignore[union-attr]
    weight.register_hook(poison)
    trainer.fit()
    assert ckpt.read_metrics(run_dir)[-1]["skipped_steps"] == 1
    assert torch.isfinite(weight).all()


@CHECKS
def test_nan_updates_in_a_row_roll_back_with_lower_lr(run_dir: Path, sync_free: bool) -> None:
    trainer = training.start(
        tiny_run(max_sequences=160, eval_every=64, checkpoint_every=64), run_dir, quiet=True
    )
    trainer.sync_free = sync_free
    good = {}

    def remember(t: training.Trainer) -> None:
        if t.progress.sequences == 64:
            good.update({k: v.clone() for k, v in t.model.state_dict().items()})

    trainer.on_update = remember
    nan_on_updates(trainer, {6, 7, 8})  # updates 6-8: sequences 81-128, after the 64 checkpoint
    rolled = {}
    roll_back = trainer._roll_back

    def spy() -> None:
        roll_back()
        rolled.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer._roll_back = spy  # type: ignore[method-assign]
    result = trainer.fit()
    assert rolled, "no rollback happened"
    assert all(torch.equal(rolled[k], good[k]) for k in good)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1.5e-3)
    log = (run_dir / "train.log").read_text()
    assert "3 non-finite updates in a row: rolled back to step-000000000064" in log
    assert ckpt.read_metrics(run_dir)[-1]["skipped_steps"] == 3
    assert result.sequences == 160
    # The lowered learning rate is part of the checkpoint, so a resumed run keeps it.
    assert training.reopen(run_dir, quiet=True).optimizer.param_groups[0]["lr"] == 1.5e-3


def test_a_thousand_steps_stay_finite() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(9, 8, controller_size=32, memory_size=32, word_size=8, engine="fused")
    inputs = torch.randn(1000, 2, 9) * 3
    outputs, state = model(inputs)
    assert torch.isfinite(outputs).all()
    assert all(torch.isfinite(t).all() for t in state)
    outputs.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- Numerical safety of the pure functions, over extreme inputs -----------------------

B, H, N, M = 2, 2, 6, 4


@st.composite
def extreme_inputs(draw: st.DrawFn) -> dict[str, torch.Tensor | torch.dtype]:
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    row_scale = draw(st.sampled_from([0.0, 1e-6, 1.0, 1e6]))
    memory = torch.randn(B, N, M, generator=generator, dtype=dtype) * row_scale
    if draw(st.booleans()):
        memory[:, : N // 2] = 0.0  # some all-zero rows
    key_scale = draw(st.sampled_from([0.0, 1.0, 1e3]))
    weighting = draw(st.sampled_from(["one_hot", "uniform", "zero", "random"]))
    previous = {
        "one_hot": torch.eye(N, dtype=dtype)[torch.randint(0, N, (B, H), generator=generator)],
        "uniform": torch.full((B, H, N), 1.0 / N, dtype=dtype),
        "zero": torch.zeros(B, H, N, dtype=dtype),
        "random": torch.softmax(torch.randn(B, H, N, generator=generator, dtype=dtype), -1),
    }[weighting]
    return {
        "memory": memory,
        "previous": previous,
        "key": torch.randn(B, H, M, generator=generator, dtype=dtype) * key_scale,
        "strength": torch.full(
            (B, H), draw(st.sampled_from([0.0, 1e-3, 1.0, 1e3, 1e6])), dtype=dtype
        ),
        "gate": torch.full((B, H), draw(st.sampled_from([0.0, 0.5, 1.0])), dtype=dtype),
        "shift_weights": torch.softmax(
            torch.randn(B, H, 3, generator=generator, dtype=dtype) * 5, -1
        ),
        "gamma": torch.full((B, H), draw(st.sampled_from([1.0, 2.0, 50.0, 1e3])), dtype=dtype),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extreme_inputs())
def test_addressing_stays_finite_and_normalised(x: dict[str, torch.Tensor]) -> None:
    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    weights = ntm.models.ntm.addressing.address(**leaves)
    assert torch.isfinite(weights).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, dtype=weights.dtype))
    reads = ntm.models.ntm.memory.read(leaves["memory"], weights)
    erase = torch.sigmoid(leaves["key"])
    written = ntm.models.ntm.memory.write(
        leaves["memory"], weights, erase, torch.tanh(leaves["key"])
    )
    probe = torch.randn(written.shape, generator=torch.Generator().manual_seed(0))
    (
        (weights * weights.detach()).sum() + reads.sum() + (written * probe.to(written.dtype)).sum()
    ).backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None
        assert torch.isfinite(leaf.grad).all(), name


# --- Safe loading ---------------------------------------------------------------------


class _Payload:
    """Unpickling this runs code: it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.makedirs, (str(self.marker),))


def test_planted_pickle_is_refused_and_never_runs(run_dir: Path, tmp_path: Path) -> None:
    training.train(tiny_run(max_sequences=32, eval_every=32), run_dir, quiet=True)
    marker = tmp_path / "pwned"
    trainer_file = ckpt.latest_checkpoint(run_dir) / "trainer.pt"
    with trainer_file.open("wb") as handle:
        pickle.dump({"optimizer": _Payload(marker)}, handle)
    with pytest.raises(ckpt.RunError, match="cannot be loaded safely"):
        training.reopen(run_dir, quiet=True)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert not marker.exists()


def test_mismatched_checkpoint_names_tensor_and_shapes(run_dir: Path) -> None:
    training.train(tiny_run(max_sequences=32, eval_every=32), run_dir, quiet=True)
    config = (run_dir / "config.json").read_text()
    (run_dir / "config.json").write_text(config.replace('"memory_size": 16', '"memory_size": 20'))
    with pytest.raises(
        ckpt.RunError,
        match=r"cell.initial_memory has shape \(16, 6\), the config expects \(20, 6\)",
    ):
        ntm.load(run_dir)


def test_config_schema_is_checked(run_dir: Path) -> None:
    training.train(tiny_run(max_sequences=32, eval_every=32), run_dir, quiet=True)
    config = (run_dir / "config.json").read_text()
    (run_dir / "config.json").write_text(config.replace('"word_size": 6', '"word_size": "six"'))
    with pytest.raises(ckpt.RunError, match="word_size: expected int, got 'six'"):
        ntm.load(run_dir)


# --- Bad input to the modules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.zeros(2, 3, 5), r"input has shape \(2, 3, 5\), expected \(\*, 5\)"),
        (torch.zeros(2, 4), r"input has shape \(2, 4\), expected \(\*, 5\)"),
        (
            torch.zeros(2, 5, dtype=torch.int64),
            "input must be a floating-point tensor, got torch.int64",
        ),
        (torch.tensor([[0.0, math.nan, 0.0, 0.0, 0.0]]), "input contains NaN or infinite values"),
        (torch.tensor([[0.0, math.inf, 0.0, 0.0, 0.0]]), "input contains NaN or infinite values"),
    ],
)
def test_cell_rejects_bad_input(value: torch.Tensor, message: str) -> None:
    cell = ntm.NTMCell(5, 3, controller_size=8, memory_size=10, word_size=4)
    with pytest.raises(ValueError, match=rf"NTMCell: {message}"):
        cell(value)


def test_sequence_models_reject_bad_input() -> None:
    for model in (
        ntm.NTM(5, 3, controller_size=8, memory_size=10, word_size=4),
        ntm.NTM(5, 3, controller_size=8, memory_size=10, word_size=4, engine="fused"),
        ntm.LSTMBaseline(5, 3, hidden_size=8, num_layers=1),
    ):
        name = type(model).__name__
        with pytest.raises(
            ValueError, match=rf"{name}: inputs has shape \(4, 5\), expected \(\*, \*, 5\)"
        ):
            model(torch.zeros(4, 5))
        with pytest.raises(ValueError, match=f"{name}: inputs contains NaN"):
            model(torch.full((3, 2, 5), math.nan))


def test_bad_state_is_named() -> None:
    cell = ntm.NTMCell(5, 3, controller_size=8, memory_size=10, word_size=4)
    state = cell.initial_state(2)
    with pytest.raises(
        ValueError, match=r"state.memory has shape \(2, 9, 4\), expected \(2, 10, 4\)"
    ):
        cell(torch.zeros(2, 5), state._replace(memory=torch.zeros(2, 9, 4)))


# --- The command line under random input --------------------------------------------------


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The ``ntm`` subcommands and their parsers, read from the parser itself."""
    parser = build_parser()
    return {
        name: sub
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for name, sub in action.choices.items()  # type: ignore[union-attr]
    }


def every_flag() -> list[str]:
    """Every subcommand and every option string of every subcommand."""
    flags = set(subcommands())
    for sub in subcommands().values():
        flags |= {o for a in sub._actions for o in a.option_strings if o not in ("-h", "--help")}
    return sorted(flags)


COMMANDS = sorted(subcommands())
FLAGS = every_flag()
# Paths are relative and absent: whatever the command line makes of them lands in the
# example's own empty folder, where the test sees it.
VALUES = ["copy", "paper", "lstm", "0", "-1", "1e9", "nan", "inf", "x", "", "3", "0.5", "=",
          "max_length=3", "no/such/run", "--", "-", "feedforward", "learned", "1-3", "5-2",
          "memory_init=constant,learned", "seed=1", "lr=0.1,0.2", "ray", "asha",
          "127.0.0.1:1"]  # fmt: skip
TOKENS = st.sampled_from(FLAGS + VALUES)


def test_the_fuzzed_command_line_covers_every_subcommand() -> None:
    assert {"train", "sweep", "eval", "viz"} <= set(FLAGS)
    assert {"--seeds", "--set", "--jobs", "--out", "--nproc", "--pretrained"} <= set(FLAGS)


class _ArgumentsAcceptedError(Exception):
    """Raised where the command would start work (training, processes, a sweep's runs,
    drawing): the arguments were accepted."""


@contextlib.contextmanager
def _inside(folder: str) -> Iterator[None]:
    """Run in ``folder`` as the working directory (``contextlib.chdir`` from Python 3.11)."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _made_by_the_sweep(folder: Path, jobs: list[Any]) -> set[Path]:
    """The folders ``ntm sweep`` makes before it hands its runs to ``sweep.run``: its output
    folder (the grandparent of every run folder) and the folders above it, up to ``folder``."""
    made: set[Path] = set()
    for job in jobs:
        out = (folder / job.run_dir).resolve().parent.parent
        made |= {p for p in (out, *out.parents) if p.is_relative_to(folder) and p != folder}
    return made


@pytest.mark.processes
@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(TOKENS, max_size=8),
        # A subcommand first: many more command lines get past the parser to the code.
        st.builds(
            lambda command, rest: [command, *rest],
            st.sampled_from(COMMANDS),
            st.lists(TOKENS, max_size=7),
        ),
    )
)
@example(["train", "--nproc", "3"])
@example(["sweep", "--seeds", "1-3", "--set", "memory_init=constant,learned", "--jobs", "2"])
@example(["sweep", "--out", "no/such/run", "--set", "seed=1"])
@example(["sweep", "--out", "no/such/run"])
@example(["sweep", "--backend", "ray", "--stop", "asha", "--stop-grace", "0"])
@example(["sweep", "--backend", "ray", "--trial-cpus", "2", "--set", "lr=0.1,0.2"])
@example(["viz", "--pretrained", "copy"])
@example(["eval", "--pretrained", "copy", "--size", "3"])
@example(["train", "--config", ""])
def test_cli_fuzz_never_tracebacks(argv: list[str]) -> None:
    """Any command line ends in exit code 0 or 2, never a traceback; it starts no training,
    no process and no sweep, and writes nothing."""
    reached: dict[str, Any] = {}

    def stop(where: str) -> Any:
        def stub(*args: object, **kwargs: object) -> None:
            reached[where] = args
            raise _ArgumentsAcceptedError(where)

        return stub

    with tempfile.TemporaryDirectory() as name, pytest.MonkeyPatch.context() as patch:
        for owner, attribute in [
            (training, "start"),
            (training, "reopen"),
            (launch, "launch"),  # ntm train --nproc N: starts N processes
            (sweep, "run"),  # starts one ntm train process per run
            (sweep_ray, "run"),  # starts Ray, then the runs there
            (viz, "draw_run"),  # writes PNGs
        ]:
            patch.setattr(owner, attribute, stop(f"{owner.__name__}.{attribute}"))
        # evaluate_run is left as it is: it reads a run and writes nothing.
        folder = Path(name).resolve()
        with _inside(name):
            try:
                code = main(argv)
            except SystemExit as exit_info:
                code = int(exit_info.code or 0)
            except _ArgumentsAcceptedError:
                code = 0
        assert code in (0, 2)
        # Nothing written, but the empty output folder of a sweep that reached its runs.
        sweeps = [
            reached[k]
            for k in ("ntm.sweeps.local.run", "ntm.sweeps.ray_backend.run")
            if k in reached
        ]
        jobs = sweeps[0][0] if sweeps else []
        left = set(folder.rglob("*"))
        assert left == _made_by_the_sweep(folder, jobs), sorted(
            str(p.relative_to(folder)) for p in left
        )


# --- Kills and interrupts, in real processes -----------------------------------------------

KILL_RUN = [
    "--max-sequences", "512", "--batch-size", "16", "--eval-every", "64", "--eval-size", "8",
    "--checkpoint-every", "16", "--controller-size", "12", "--memory-size", "12",
    "--word-size", "5", "--bits", "3", "--max-length", "4", "--seed", "5", "--quiet",
    "--engine", "fused",
]  # fmt: skip


def ntm_process(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python -m ntm ARGS`` in a new process, its standard error appended to ``log``."""
    with log.open("ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "ntm", *args], stderr=handle)


def _newest_checkpoint(run_dir: Path) -> int:
    """The sequences of the run's newest complete checkpoint (-1 before the first)."""
    try:
        name = (run_dir / ckpt.CHECKPOINTS / ckpt.LATEST).read_text().strip()
    except FileNotFoundError:
        return -1
    return int(name.removeprefix("step-"))


def _wait_for_checkpoint(process: subprocess.Popen[bytes], run_dir: Path, past: int) -> float:
    """Wait until the run has a checkpoint beyond ``past`` sequences, the process still
    training; returns when that was seen (time.monotonic)."""
    while _newest_checkpoint(run_dir) <= past:
        assert process.poll() is None, f"the run ended at {_newest_checkpoint(run_dir)}"
        time.sleep(0.002)
    return time.monotonic()


def _wait_for_metrics(process: subprocess.Popen[bytes], run_dir: Path, log: Path) -> None:
    """Wait until the run has written its first metrics row, the process still training."""
    while not ckpt.read_metrics(run_dir):
        assert process.poll() is None, log.read_text()
        time.sleep(0.05)


@pytest.mark.processes
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """Six SIGKILLs, each followed by ``--resume``: one in start-up, five at random moments
    between two checkpoints (a random fraction of the interval between the two checkpoints
    before it, and never past the next one, so the kills follow the run's progress on a
    fast machine and a slow one alike). The model at the end is bit for bit the
    uninterrupted run's."""
    log = tmp_path / "stderr.txt"
    reference = tmp_path / "reference"
    assert ntm_process(log, "train", "--run-dir", str(reference), *KILL_RUN).wait() == 0
    killed = tmp_path / "killed"
    rng = random.Random(7)
    # Where the kills come: in the first three quarters of the run, so that each one comes
    # while the run trains, whatever the machine's speed.
    targets = sorted(rng.sample(range(0, 384, 16), 5))
    process = ntm_process(log, "train", "--run-dir", str(killed), *KILL_RUN)
    # First in start-up: as soon as the run folder has its config, most often before the
    # first checkpoint (then --resume starts the run from the beginning).
    while not (killed / ckpt.CONFIG_FILE).exists():
        assert process.poll() is None, log.read_text()
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process = ntm_process(log, "train", "--resume", str(killed), "--quiet")
    for target in targets:
        _wait_for_checkpoint(process, killed, target - 1)
        before = _wait_for_checkpoint(process, killed, _newest_checkpoint(killed))
        newest = _newest_checkpoint(killed)
        after = _wait_for_checkpoint(process, killed, newest)
        # The random moment, but no later than the next checkpoint: the interval measured
        # may have been slow (a loaded moment) and the next ones fast, and the kill must
        # still come while the run trains.
        newest, moment = _newest_checkpoint(killed), after + rng.random() * (after - before)
        while time.monotonic() < moment and _newest_checkpoint(killed) == newest:
            time.sleep(0.002)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        process = ntm_process(log, "train", "--resume", str(killed), "--quiet")
    assert process.wait() == 0, log.read_text()
    final = ckpt.load_checkpoint(killed)
    expected = ckpt.load_checkpoint(reference)
    assert final.trainer["progress"]["sequences"] == 512
    for name, tensor in expected.model.items():
        assert torch.equal(final.model[name], tensor), name


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    args = [*KILL_RUN[:1], "100000", *KILL_RUN[2:]]
    process = ntm_process(log, "train", "--run-dir", str(run_dir), *args)
    _wait_for_metrics(process, run_dir, log)
    process.send_signal(signal.SIGINT)
    assert process.wait() == 130
    assert "Traceback" not in log.read_text()
    state = ckpt.load_checkpoint(run_dir).trainer
    assert state["progress"]["sequences"] >= 64
    assert "interrupted at" in (run_dir / "train.log").read_text()
