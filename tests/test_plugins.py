"""A model and a task from outside the package, entering by entry points (the groups
``ntm.models`` and ``ntm.tasks``), trained, evaluated, drawn, resumed and swept from the
command line; and the contract's errors. The tests that start ``ntm`` processes with the
plug-in installed are marked ``processes``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import ntm
from ntm import registry
from ntm.runs import checkpoint as ckpt
from ntm.runs import config as runconfig
from ntm.training import trainer as training
from ntm.training.data import draw_batch, update_seed

#: A folder holding a package and its ``*.dist-info`` with ``entry_points.txt``: on
#: ``sys.path`` it is an installed distribution, as ``pip install`` would leave it.
PLUGIN = Path(__file__).parent / "plugin_example"

RUN = [
    "--model", "gru", "--task", "echo", "--max-sequences", "64", "--batch-size", "16",
    "--eval-every", "32", "--eval-size", "16", "--quiet", "--nproc", "1",
]  # fmt: skip


def _ntm(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "ntm", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.processes
def test_an_installed_model_and_task_train_evaluate_resume_and_sweep(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    flags = ["--model-arg", "hidden_size=8", "--task-arg", "length=3"]
    result = _ntm("train", *RUN, *flags, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    config = json.loads((run_dir / ckpt.CONFIG_FILE).read_text())
    assert config["train"]["model"] == "gru"
    assert config["model"] == {"input_size": 3, "output_size": 3, "hidden_size": 8}
    assert config["task"] == {"bits": 3, "length": 3}
    log = (run_dir / ckpt.LOG_FILE).read_text()
    assert "model gru has no settings of its own for task echo" in log
    assert [row["sequences"] for row in ckpt.read_metrics(run_dir)] == [32, 64]

    evaluated = _ntm("eval", str(run_dir), "--size", "8", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    rows = json.loads(evaluated.stdout)
    assert [row["setting"] for row in rows] == ["training distribution"]
    assert rows[0]["task"] == "bits=3, length=3"

    drawn = _ntm("viz", str(run_dir), "--out", str(tmp_path / "pictures"))
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "pictures" / "sequence.png").is_file()

    resumed = _ntm("train", "--resume", str(run_dir), "--max-sequences", "96")
    assert resumed.returncode == 0, resumed.stderr
    assert [row["sequences"] for row in ckpt.read_metrics(run_dir)] == [32, 64, 96]

    out = tmp_path / "sweep"
    swept = _ntm(
        "sweep", *RUN[:-2], "--seeds", "1-2", "--set", "hidden_size=4,8", "--out", str(out)
    )
    assert swept.returncode == 0, swept.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 2  # one per setting of hidden_size

    loaded = subprocess.run(
        [sys.executable, "-c", f"import ntm; print(type(ntm.load({str(run_dir)!r})).__name__)"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), *sys.path])},
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert loaded.stdout.strip() == "GRUModel"


@pytest.mark.processes
def test_a_bad_setting_of_an_installed_model_is_named(tmp_path: Path) -> None:
    result = _ntm("train", *RUN, "--model-arg", "hidden_size=big", "--run-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--model-arg 'hidden_size=big': 'big' is not a valid int" in result.stderr
    result = _ntm("train", *RUN, "--model-arg", "depth=2", "--run-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--model-arg 'depth=2': expected KEY=VALUE with KEY one of hidden_size" in result.stderr
    result = _ntm("train", *RUN, "--task-arg", "length=1", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "Echo.length = 1: expected an integer >= 2" in result.stderr


def test_the_built_in_models_and_tasks_are_registered_as_a_user_s_are() -> None:
    built_in = {"ntm", "lstm", "dnc", "transformer", "mamba", "xlstm"}
    assert set(list(registry.models())[: len(built_in)]) == built_in
    assert list(registry.tasks())[:6] == [
        "copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort", "mqar",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown model 'nope'; expected one of: ntm, lstm, "):
        registry.model_class("nope")


class _Tiny(nn.Module):
    def __init__(self, input_size: int, output_size: int, width: int = 4) -> None:
        super().__init__()
        self.layer = nn.Linear(input_size, output_size)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.layer(inputs), None


def test_register_model_in_python_and_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ntm.register_model`` is all a model needs: its settings come from its constructor."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    ntm.register_model("tiny_linear", _Tiny)
    run = runconfig.resolve_config(
        {"model": "tiny_linear", "max_sequences": 32, "batch_size": 16, "eval_every": 16,
         "eval_size": 8},
        {"max_length": 3},
        {"width": 2},
    )  # fmt: skip
    assert run.model.to_dict() == {"input_size": 9, "output_size": 8, "width": 2}
    result = training.train(run, tmp_path / "run", quiet=True)
    assert result.sequences == 32
    assert isinstance(ntm.load(tmp_path / "run"), _Tiny)


def test_a_model_that_breaks_the_contract_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    class NoSizes(nn.Module):
        def __init__(self, hidden: int = 3) -> None:
            super().__init__()

    class Untyped(nn.Module):
        def __init__(self, input_size: int, output_size: int, layers=2) -> None:  # type: ignore[no-untyped-def]
            super().__init__()

    with pytest.raises(ValueError, match=r"must take \(input_size, output_size, \*\*settings\)"):
        registry.register_model("no_sizes", NoSizes)
    with pytest.raises(ValueError, match="setting 'layers' needs an annotation"):
        registry.register_model("untyped", Untyped)
    with pytest.raises(ValueError, match="model 'ntm' is already registered"):
        registry.register_model("ntm", _Tiny)
    assert "untyped" not in registry.models()


class _Ramp:
    """A task from outside the package whose batches share one length, its update seed's."""

    batch_settings = ("length",)

    def __init__(self, length: int = 0) -> None:
        self.length = length
        self.input_size = self.output_size = 1

    def batch_variant(self, seed: int) -> "_Ramp":
        return _Ramp(1 + seed % 5)

    def within_training(self) -> list[tuple[str, dict]]:
        return [("length 3", {"length": 3})]

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> ntm.Batch:
        steps = self.length or int(torch.randint(1, 6, (1,), generator=generator))
        ones = torch.ones(steps, batch_size, 1)
        return ntm.Batch(ones, ones, ones[..., 0].bool())


def test_a_task_s_batch_variant_is_what_training_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """An optional ``batch_variant(seed)``: a plug-in task's, as the built-in ones'."""
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    ntm.register_task("ramp", _Ramp)
    task = ntm.make_task("ramp")
    for update in range(6):
        batch = draw_batch(task, 3, update, range(4))
        assert batch.inputs.shape == (1 + update_seed(3, update) % 5, 4, 1)
    assert task.to_dict() == {"length": 0}  # the task itself is unchanged
    assert registry.batch_settings(task) == ("length",)
    assert registry.within_training(task) == [("length 3", {"length": 3})]
    # One name given as a string is one setting, not its letters.
    monkeypatch.setattr(_Ramp, "batch_settings", "length")
    assert registry.batch_settings(ntm.make_task("ramp")) == ("length",)
