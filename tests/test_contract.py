"""The model contract, checked on every registered model the same way: shapes and errors,
trace, bit-exact resume, two processes equal to one, ``--init-from``, ``ntm eval``,
``ntm viz`` and ``ntm.load``. The costliest checks (two processes; eval, viz and load) run
on the NTM alone by default, and on every other model with ``pytest -m models``."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ntm
from ntm import registry
from ntm.cli import main
from ntm.runs import checkpoint as ckpt
from ntm.runs import config as runconfig
from ntm.runs.load import build_model, logits_of
from ntm.training import trainer as training

from .conftest import TINY_TASK, TINY_TRAIN

#: Settings that make each built-in model small enough to train in a second; a model
#: not named here is tried with its own defaults.
TINY: dict[str, dict[str, Any]] = {
    "ntm": {"controller_size": 16, "memory_size": 16, "word_size": 6},
    "dnc": {"controller_size": 12, "memory_size": 10, "word_size": 5},
    "lstm": {"hidden_size": 16, "num_layers": 1},
    "sam": {"controller_size": 12, "memory_size": 10, "word_size": 5, "k": 3},
}
MODELS = list(registry.models())


def every_model(*marks: pytest.MarkDecorator) -> list[Any]:
    """MODELS as parameters, all but the NTM marked ``models`` (and ``marks``): the default
    run trains the NTM through the costlier checks, ``-m models`` every other model."""
    return [
        model if model == "ntm" else pytest.param(model, marks=[pytest.mark.models, *marks])
        for model in MODELS
    ]


def tiny(model: str, **train: object) -> runconfig.RunConfig:
    settings = {**TINY_TRAIN, "model": model, **train}
    return runconfig.resolve_config(settings, dict(TINY_TASK), dict(TINY.get(model, {})))


def flags(model: str, **train: object) -> list[str]:
    """The ``ntm train`` flags of :func:`tiny`."""
    words = ["--model", model, "--quiet"]
    for name, value in {**TINY_TRAIN, **train, **TINY_TASK, **TINY.get(model, {})}.items():
        words += [f"--{name.replace('_', '-')}", str(value)]
    return words


@pytest.mark.parametrize("model", MODELS)
def test_forward_maps_time_major_inputs_to_logits(model: str) -> None:
    run = tiny(model)
    net = build_model(run, "fused")
    batch = run.task.sample(3, torch.Generator().manual_seed(0))
    logits = logits_of(net(batch.inputs))
    assert logits.shape == (*batch.inputs.shape[:2], run.task.output_size)
    assert torch.isfinite(logits).all()
    wrong = torch.zeros(4, 3, run.task.input_size + 1)
    with pytest.raises(ValueError, match=type(net).__name__):
        net(wrong)


@pytest.mark.parametrize("model", MODELS)
def test_trace_gives_the_forward_pass_logits(model: str) -> None:
    # Seeded: a model's weights must not depend on the tests that ran before. (SAM's trace
    # runs eager and its forward native; on a few draws of tiny weights a near-tie between
    # slots' scores falls the other way after rounding, and the two then differ.)
    torch.manual_seed(0)
    run = tiny(model)
    net = build_model(run)
    if not hasattr(net, "trace"):
        pytest.skip(f"model {model} has no trace")
    batch = run.task.sample(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        traced, _, _ = net.trace(batch.inputs)
        torch.testing.assert_close(traced, logits_of(net(batch.inputs)))


@pytest.mark.parametrize("model", MODELS)
def test_a_resumed_run_computes_the_uninterrupted_run(model: str, tmp_path: Path) -> None:
    # One cosine horizon for both, whatever the budget: the rivals' recipes decay the rate.
    whole = training.train(tiny(model, max_sequences=96, decay_sequences=96), tmp_path / "whole",
                           quiet=True)  # fmt: skip
    part = training.train(tiny(model, max_sequences=48, decay_sequences=96), tmp_path / "part",
                          quiet=True)  # fmt: skip
    rest = training.resume(tmp_path / "part", {"max_sequences": 96}, quiet=True)
    assert part.losses + rest.losses == whole.losses
    resumed, fresh = (
        ckpt.load_checkpoint(tmp_path / "part"),
        ckpt.load_checkpoint(tmp_path / "whole"),
    )
    for name, tensor in fresh.model.items():
        assert torch.equal(resumed.model[name], tensor), name


@pytest.mark.parametrize("model", every_model(pytest.mark.processes))
def test_two_processes_learn_what_one_does(model: str, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    training.train(tiny(model, max_sequences=64, eval_every=32), one, quiet=True)
    command = [sys.executable, "-m", "ntm", "train", *flags(model, max_sequences=64,
               eval_every=32), "--run-dir", str(two), "--nproc", "2"]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows_one, rows_two = ckpt.read_metrics(one), ckpt.read_metrics(two)
    assert [r["sequences"] for r in rows_one] == [r["sequences"] for r in rows_two] == [32, 64]
    for a, b in zip(rows_one, rows_two, strict=True):
        for key in ("train_cost", "train_bit_errors", "eval_cost", "eval_bit_errors"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), key
    # Rank 0 alone writes: every log line once, checkpoints as a single process writes them.
    log = (two / ckpt.LOG_FILE).read_text().splitlines()
    assert len(log) == len(set(log))
    assert sorted(p.name for p in (two / ckpt.CHECKPOINTS).glob("step-*")) == sorted(
        p.name for p in (one / ckpt.CHECKPOINTS).glob("step-*")
    )


@pytest.mark.parametrize("model", MODELS)
def test_init_from_starts_from_the_source_s_weights(model: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    training.train(tiny(model, max_sequences=32, seed=5), source, quiet=True)
    trainer = training.start(tiny(model, max_sequences=32, init_from=str(source)), tmp_path / "new",
                             quiet=True)  # fmt: skip
    trainer.close()
    taken = ckpt.load_checkpoint(tmp_path / "new").model
    for name, tensor in ckpt.load_checkpoint(source).model.items():
        assert torch.equal(taken[name], tensor), name
    assert f"weights from {source}" in (tmp_path / "new" / ckpt.LOG_FILE).read_text()


@pytest.mark.parametrize("model", every_model())
def test_eval_viz_and_load_read_the_trained_model(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", *flags(model, max_sequences=32), "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--size", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["setting"] == "training distribution"
    assert all(row["sequences"] == 8 for row in rows)
    out = tmp_path / "pictures"
    assert main(["viz", str(run_dir), "--out", str(out)]) == 0
    drawn = {"sequence.png", "learning_curves.png"}
    if hasattr(registry.model_class(model), "trace"):
        drawn.add("memory.png")
    assert {p.name for p in out.iterdir()} == drawn
    trainer_model = build_model(tiny(model, max_sequences=32))
    loaded = ntm.load(run_dir, checkpoint="latest")
    assert type(loaded) is type(trainer_model)
    batch = tiny(model).task.sample(4, torch.Generator().manual_seed(2))
    weights = ckpt.load_checkpoint(run_dir).model
    trainer_model.load_state_dict(weights)
    with torch.no_grad():
        torch.testing.assert_close(
            logits_of(loaded(batch.inputs)), logits_of(trainer_model.eval()(batch.inputs))
        )


def test_every_built_in_model_is_checked_here() -> None:
    assert set(TINY) <= set(MODELS)
    assert os.environ.get("NTM_NPROC") == "1"  # the suite's runs use one process by default
