"""Training runs: reproducibility, checkpoints, resume and crash safety."""

import copy
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import ntm
from ntm.engines import fused
from ntm.engines.fused import compiled_available, fused_sequence
from ntm.runs import checkpoint as ckpt
from ntm.runs import config as runconfig
from ntm.runs import load as runs
from ntm.training import data
from ntm.training import trainer as training
from ntm.training.optim import GravesRMSprop

from .conftest import TINY_MODEL, TINY_TASK, TINY_TRAIN, tiny_run


def test_same_seed_same_losses(tmp_path: Path) -> None:
    first = training.train(tiny_run(), tmp_path / "a", quiet=True)
    second = training.train(tiny_run(), tmp_path / "b", quiet=True)
    assert first.losses == second.losses
    assert len(first.losses) == 12
    other = training.train(tiny_run(seed=4), tmp_path / "c", quiet=True)
    assert other.losses != first.losses


def test_run_folder_contents(run_dir: Path) -> None:
    result = training.train(tiny_run(), run_dir, quiet=True)
    assert result.sequences == 192
    config = json.loads((run_dir / "config.json").read_text())
    assert set(config) == {"train", "task", "model"}
    assert config["task"]["bits"] == 4
    rows = ckpt.read_metrics(run_dir)
    assert [r["sequences"] for r in rows] == [64, 128, 192]
    assert all(math.isfinite(r["eval_cost"]) for r in rows)
    latest = ckpt.latest_checkpoint(run_dir)
    assert (latest / "model.safetensors").is_file()
    assert (latest / "trainer.pt").is_file()


def assert_same_values(saved: object, live: object, where: str) -> None:
    """``saved`` (read back from a file) holds exactly what ``live`` held: equal tensors of
    the same dtype, and equal plain values, through nested dicts, lists and tuples."""
    if isinstance(live, torch.Tensor):
        assert isinstance(saved, torch.Tensor), where
        assert saved.dtype == live.dtype, where
        assert torch.equal(saved, live), where
    elif isinstance(live, dict):
        assert isinstance(saved, dict), where
        assert set(saved) == set(live), where
        for key, value in live.items():
            assert_same_values(saved[key], value, f"{where}[{key!r}]")
    elif isinstance(live, (list, tuple)):
        assert isinstance(saved, (list, tuple)), where
        assert len(saved) == len(live), where
        for i, (a, b) in enumerate(zip(saved, live, strict=True)):
            assert_same_values(a, b, f"{where}[{i}]")
    else:
        assert saved == live, where


def test_checkpoint_holds_the_trained_weights_and_optimiser(run_dir: Path) -> None:
    trainer = training.start(tiny_run(max_sequences=48, eval_every=48), run_dir, quiet=True)
    initial = copy.deepcopy(trainer.model.state_dict())
    trainer.fit()
    assert trainer.progress.updates == 3
    weights = copy.deepcopy(trainer.model.state_dict())
    optimiser = copy.deepcopy(trainer.optimizer.state_dict())
    assert not all(torch.equal(initial[k], weights[k]) for k in weights), "nothing trained"
    assert len(optimiser["state"]) == len(list(trainer.model.parameters()))

    model = ntm.load(run_dir)
    loaded = model.state_dict()
    assert list(loaded) == list(weights)
    for name, tensor in weights.items():
        assert_same_values(loaded[name], tensor, name)
    saved = ckpt.load_checkpoint(run_dir).trainer
    assert saved["progress"]["sequences"] == 48
    assert_same_values(saved["optimizer"], optimiser, "optimizer")
    # A resumed run continues from that same optimiser state.
    resumed = training.reopen(run_dir, quiet=True)
    assert_same_values(resumed.optimizer.state_dict(), optimiser, "reopened optimizer")
    resumed.close()

    batch = ntm.make_task("copy", **TINY_TASK).sample(8, torch.Generator().manual_seed(0))
    live = trainer.model.eval()
    model.engine = live.engine  # loaded to run natively; compared on the engine it trained on
    with torch.no_grad():
        expected, expected_state = live(batch.inputs)
        got, state = model(batch.inputs)
    assert torch.equal(got, expected)
    for name, a, b in zip(state._fields, state, expected_state, strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("engine", ["eager", "fused", "native"])
def test_resume_gives_the_uninterrupted_losses(tmp_path: Path, engine: str) -> None:
    whole = training.train(tiny_run(engine=engine), tmp_path / "whole", quiet=True)
    part = training.train(tiny_run(engine=engine, max_sequences=96), tmp_path / "part", quiet=True)
    rest = training.resume(tmp_path / "part", {"max_sequences": 192}, quiet=True)
    assert part.losses + rest.losses == whole.losses
    whole_rows = {r["sequences"]: r["eval_cost"] for r in ckpt.read_metrics(tmp_path / "whole")}
    resumed_rows = {r["sequences"]: r["eval_cost"] for r in ckpt.read_metrics(tmp_path / "part")}
    assert list(resumed_rows) == [64, 96, 128, 192]  # 96: the report when the first part stopped
    assert all(resumed_rows[k] == whole_rows[k] for k in (64, 128, 192))


def test_resume_at_another_learning_rate(tmp_path: Path) -> None:
    training.train(tiny_run(engine="fused", max_sequences=96), tmp_path / "a", quiet=True)
    training.train(tiny_run(engine="fused", max_sequences=96), tmp_path / "b", quiet=True)
    same = training.resume(tmp_path / "a", {"max_sequences": 192}, quiet=True)
    trainer = training.reopen(tmp_path / "b", {"max_sequences": 192, "lr": 1e-4}, quiet=True)
    assert {g["lr"] for g in trainer.optimizer.param_groups} == {1e-4}
    lower = trainer.fit()
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["lr"] == 1e-4
    assert "learning rate 0.003 -> 0.0001" in (tmp_path / "b" / "train.log").read_text()
    assert "learning rate" not in (tmp_path / "a" / "train.log").read_text()
    # Same start, same data: the smaller steps give other, smaller weight changes.
    assert same.losses[0] == lower.losses[0]
    assert same.losses[1:] != lower.losses[1:]


def test_resume_between_checkpoints_drops_rows_written_after_it(tmp_path: Path) -> None:
    run = tiny_run(checkpoint_every=128)
    trainer = training.start(run, tmp_path / "r", quiet=True)
    trainer.fit()
    # Pretend the process died after the 128 checkpoint but after writing the 192 row.
    state = ckpt.load_checkpoint(tmp_path / "r")
    assert state.trainer["progress"]["sequences"] == 192
    for path in (tmp_path / "r" / "checkpoints").glob("step-*192"):
        for file in path.iterdir():
            file.unlink()
        path.rmdir()
    (tmp_path / "r" / "checkpoints" / "latest").unlink()
    resumed = training.reopen(tmp_path / "r", quiet=True)
    assert resumed.progress.sequences == 128
    assert [r["sequences"] for r in ckpt.read_metrics(tmp_path / "r")] == [64, 128]


def test_crash_between_write_and_rename_leaves_last_checkpoint(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = training.start(tiny_run(max_sequences=64), run_dir, quiet=True)
    trainer.fit()
    good = ckpt.latest_checkpoint(run_dir)
    before = ntm.load(run_dir).state_dict()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(Path, "rename", crash)
    trainer.progress.sequences = 999
    with pytest.raises(OSError, match="simulated crash"):
        trainer.save()
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(run_dir) == good
    after = ntm.load(run_dir).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


def test_crash_during_atomic_text_write_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    ckpt.write_text_atomic(path, "old")

    def crash_mid_write() -> None:
        with ckpt.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        crash_mid_write()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_training_reduces_the_cost(run_dir: Path) -> None:
    run = runconfig.resolve_config(
        {**TINY_TRAIN, "max_sequences": 640, "eval_every": 64, "lr": 0.01},
        {"bits": 4, "max_length": 2},
        dict(TINY_MODEL),
    )
    training.train(run, run_dir, quiet=True)
    rows = ckpt.read_metrics(run_dir)
    # Chance is 6 bits per sequence; the model learns to copy some of it.
    assert rows[-1]["eval_cost"] < 0.85 * rows[0]["eval_cost"]


def test_target_stops_training(run_dir: Path) -> None:
    result = training.train(tiny_run(target_bit_errors=1000.0), run_dir, quiet=True)
    assert result.solved
    assert result.sequences == 64


def test_curriculum_starts_short_and_grows() -> None:
    task = ntm.make_task("copy", max_length=10)
    curriculum = data.Curriculum(task, "copy", enabled=True)
    assert curriculum.state.level == 4
    assert curriculum.task_for(1) == (task.with_settings(max_length=4), True)
    for _ in range(data.CURRICULUM_WINDOW - 1):
        assert curriculum.observe(errors=0.0, size=16) is None
    assert curriculum.observe(errors=0.0, size=16) == "curriculum: max_length up to 5"
    assert curriculum.state.level == 5
    for _ in range(data.CURRICULUM_WINDOW):  # too many errors: the level stays
        curriculum.observe(errors=1.0, size=16)
    assert curriculum.state.level == 5
    without = data.Curriculum(task, "copy", enabled=False)
    assert without.state.level == 0
    assert without.task_for(1) == (task, False)
    assert data.Curriculum(ntm.make_task("ngrams"), "ngrams", enabled=True).state.level == 0


def test_curriculum_state_is_checkpointed(run_dir: Path) -> None:
    trainer = training.start(tiny_run(max_sequences=16, curriculum=True), run_dir, quiet=True)
    trainer.curriculum.state.level = 5
    trainer.curriculum.state.level_updates = 7
    trainer.save()
    trainer.close()
    resumed = training.reopen(run_dir, quiet=True)
    assert resumed.curriculum.state == data.CurriculumState(level=5, level_updates=7)
    resumed.close()


def test_curriculum_mixes_in_full_task_batches(run_dir: Path) -> None:
    trainer = training.start(tiny_run(max_sequences=16, curriculum=True), run_dir, quiet=True)
    parts = []
    for updates in range(8):
        trainer.progress.updates = updates
        batch, from_level = trainer._training_batch(16)
        parts.append(from_level)
        longest = int(batch.mask.sum(0).max())
        assert longest <= (4 if from_level else 5)
    assert parts == [False, True, True, True, False, True, True, True]


def test_paper_preset_uses_graves_rmsprop_and_batch_one() -> None:
    run = runconfig.resolve_config({"preset": "paper"}, {}, {})
    assert run.train.optimizer == "rmsprop"
    assert run.train.batch_size == 1
    assert run.train.lr == 1e-4
    assert run.train.clip_mode == "value"
    assert run.model.memory_init == "learned"  # type: ignore[union-attr]
    trainer = training.Trainer(run, Path("unused"), quiet=True)
    assert isinstance(trainer.optimizer, GravesRMSprop)


def test_flags_override_preset_and_file() -> None:
    base = {"train": {"lr": 0.5, "batch_size": 4}, "model": {"memory_size": 64}}
    run = runconfig.resolve_config({"lr": 0.25}, {}, {}, base)
    assert run.train.lr == 0.25
    assert run.train.batch_size == 4
    assert run.model.memory_size == 64  # type: ignore[union-attr]


def test_lstm_baseline_trains(run_dir: Path) -> None:
    run = runconfig.resolve_config(
        {"model": "lstm", "max_sequences": 32, "batch_size": 16, "eval_every": 32, "eval_size": 8},
        dict(TINY_TASK),
        {"hidden_size": 8, "num_layers": 1},
    )
    result = training.train(run, run_dir, quiet=True)
    assert isinstance(ntm.load(run_dir), ntm.LSTMBaseline)
    assert math.isfinite(result.eval_cost)


def test_graves_rmsprop_matches_the_formula() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = GravesRMSprop([w], lr=0.1, decay=0.5, momentum=0.5, eps=1e-4)
    g = torch.tensor([0.2, -0.4])
    w.grad = g.clone()
    opt.step()
    n, gbar = 0.5 * g * g, 0.5 * g
    delta = -0.1 * g / torch.sqrt(n - gbar * gbar + 1e-4)
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, -2.0]) + delta)


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_fused_path_matches_eager_in_float32(controller: str) -> None:
    torch.manual_seed(0)
    model = ntm.NTM(9, 8, controller=controller)
    batch = ntm.make_task("copy").sample(4, torch.Generator().manual_seed(1))
    eager, _ = model(batch.inputs)
    grads_eager = torch.autograd.grad(eager.square().sum(), list(model.parameters()))
    fused, _ = fused_sequence(model.cell, batch.inputs, model.cell.initial_state(4))
    grads_fused = torch.autograd.grad(fused.square().sum(), list(model.parameters()))
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_fused, grads_eager, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.models
def test_compiled_engine_matches_eager() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, controller_size=8, memory_size=10, word_size=4)
    x = torch.randn(6, 4, 5)
    weights = torch.randn(6, 4, 3)
    eager, eager_state = model(x)
    grads_eager = torch.autograd.grad((eager * weights).sum(), list(model.parameters()))
    if compiled_available() is not None:
        pytest.skip(f"torch.compile does not work here: {compiled_available()}")
    model.engine = "compiled"
    compiled, state = model(x)  # 6 steps: one chunk of 4, then two single steps
    grads = torch.autograd.grad((compiled * weights).sum(), list(model.parameters()))
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for a, b in zip(state, eager_state, strict=True):
        torch.testing.assert_close(a, b.detach(), atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, grads_eager, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_graph_replay_bookkeeping_keeps_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CUDA graphs (the compiled engine on a GPU) a sequence starts a generation of
    graphs and copies out what outlives it: the final state and the initial state's
    gradients. That bookkeeping, run here around the plain steps, changes no result."""
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, controller_size=8, memory_size=10, word_size=4)
    x = torch.randn(6, 4, 5)
    weights = torch.randn(6, 4, 3)
    state = model.cell.initial_state(4)
    spec, params = fused.cell_spec(model.cell, compiled=False)
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    results = {}
    for graphs in (False, True):
        replay = dataclasses.replace(spec, graphs=graphs)
        start = [t.detach().clone().requires_grad_() for t in state]
        out = fused._FusedSequence.apply(replay, x, *start, *params)
        grads = torch.autograd.grad((out[0] * weights).sum(), [*params, *start[:4]])
        results[graphs] = (out, grads)
    assert marks == [1]
    for a, b in zip(results[True][0], results[False][0], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(results[True][1], results[False][1], strict=True):
        assert torch.equal(a, b)


def test_a_graph_sequence_backward_after_the_next_forward_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On CUDA graphs the next sequence overwrites what the last one saved: its backward
    pass then raises, where it would otherwise return wrong gradients."""
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, controller_size=8, memory_size=10, word_size=4)
    spec, params = fused.cell_spec(model.cell, compiled=False)
    replay = dataclasses.replace(spec, graphs=True)
    state = model.cell.initial_state(2)
    first = fused._FusedSequence.apply(replay, torch.randn(4, 2, 5), *state, *params)[0]
    second = fused._FusedSequence.apply(replay, torch.randn(4, 2, 5), *state, *params)[0]
    with pytest.raises(RuntimeError, match="backward pass came after another sequence's"):
        first.sum().backward()
    second.sum().backward()  # the newest sequence's is fine


def test_chunks_cover_every_step_once_in_two_shapes() -> None:
    for steps in range(0, 12):
        chunks = fused._chunks(steps, 4)
        covered = [t for start, stop in chunks for t in range(start, stop)]
        assert covered == list(range(steps))
        assert {stop - start for start, stop in chunks} <= {1, 4}


@pytest.mark.parametrize(
    "options",
    [
        {"controller": "lstm"},
        {"controller": "feedforward"},
        {"num_read_heads": 2, "num_write_heads": 3, "controller_layers": 2, "shift_range": 2},
        {"controller": "feedforward", "controller_layers": 2, "memory_init": "learned"},
        {"learn_initial_reads": False, "learn_initial_weights": False},
        {"head_clip": 0.5, "output_clip": 0.3},
        {"head_clip": 0.0, "output_clip": 0.0},
    ],
)
def test_fused_path_matches_eager_in_float64(options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = ntm.NTM(
        5, 3, controller_size=8, memory_size=10, word_size=4, dtype=torch.float64, **options
    )
    x = torch.randn(7, 3, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(7, 3, 3, dtype=torch.float64)
    eager, eager_state = model(x)
    grads_eager = torch.autograd.grad((eager * weights).sum(), [x, *model.parameters()])
    model.engine = "fused"
    fused, fused_state = model(x)
    grads_fused = torch.autograd.grad((fused * weights).sum(), [x, *model.parameters()])
    torch.testing.assert_close(fused, eager)
    torch.testing.assert_close(fused_state.memory, eager_state.memory)
    for a, b in zip(grads_fused, grads_eager, strict=True):
        torch.testing.assert_close(a, b)


def test_init_from_adds_channels_and_keeps_what_was_learned(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    training.train(tiny_run(max_sequences=64), copy, quiet=True)
    # Repeat copy of the same vectors: one more input (the count) and one more output.
    run = runconfig.resolve_config(
        {**TINY_TRAIN, "task": "repeat_copy", "init_from": str(copy)},
        {**TINY_TASK, "max_repeats": 2},
        dict(TINY_MODEL),
    )
    trainer = training.start(run, tmp_path / "repeat", quiet=True)
    log = (tmp_path / "repeat" / "train.log").read_text()
    assert "input_size 5 -> 6, output_size 4 -> 5" in log
    source = runs.load(copy)
    grown = trainer.model.eval()
    inputs = torch.rand(7, 3, 5)
    silent_count = torch.cat([inputs, torch.zeros(7, 3, 1)], -1)
    with torch.no_grad():
        expected, _ = source(inputs)
        got, _ = grown(silent_count)
    assert torch.allclose(got[..., :4], expected, atol=1e-6)
    count_weights = grown.state_dict()["cell.controller.0.weight_ih"][:, 5]
    assert torch.equal(count_weights, torch.zeros_like(count_weights))
    # A fresh model on the same seed does not compute the copy model's outputs.
    fresh = training.start(
        runconfig.resolve_config(
            {**TINY_TRAIN, "task": "repeat_copy"}, {**TINY_TASK, "max_repeats": 2}, TINY_MODEL
        ),
        tmp_path / "fresh",
        quiet=True,
    ).model.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(silent_count)[0][..., :4], expected, atol=1e-3)
    result = trainer.fit()
    assert all(math.isfinite(x) for x in result.losses)
    assert trainer.model.state_dict()["cell.controller.0.weight_ih"][:, 5].abs().sum() > 0


def test_init_from_refuses_another_model(tmp_path: Path) -> None:
    training.train(tiny_run(max_sequences=64), tmp_path / "copy", quiet=True)
    wider = runconfig.resolve_config(
        {**TINY_TRAIN, "init_from": str(tmp_path / "copy")},
        dict(TINY_TASK),
        {**TINY_MODEL, "controller_size": 20},
    )
    with pytest.raises(ckpt.RunError, match="controller_size is 16 there, 20 here"):
        training.start(wider, tmp_path / "wider", quiet=True)
    assert not (tmp_path / "wider").exists()  # refused before the folder was made
    fewer = runconfig.resolve_config(
        {**TINY_TRAIN, "init_from": str(tmp_path / "copy")},
        {**TINY_TASK, "bits": 3},
        dict(TINY_MODEL),
    )
    with pytest.raises(ckpt.RunError, match="can be added, not removed"):
        training.start(fewer, tmp_path / "fewer", quiet=True)
    nowhere = runconfig.resolve_config(
        {**TINY_TRAIN, "init_from": str(tmp_path / "absent")}, dict(TINY_TASK), dict(TINY_MODEL)
    )
    with pytest.raises(ckpt.RunError, match="neither a run folder nor a shipped ntm model"):
        training.start(nowhere, tmp_path / "nowhere", quiet=True)


def test_the_engine_is_each_model_s_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A compiled model, and building or loading other models beside it, leave each model
    on its own engine: the fused model never runs the compiled steps, the compiled one
    always does."""

    def compiled_step(*args: object) -> None:
        raise AssertionError("compiled step")

    monkeypatch.setattr(fused, "_COMPILED", {"default": (compiled_step, None)})
    training.train(tiny_run(max_sequences=32, engine="fused"), tmp_path / "a", quiet=True)
    compiled_model = ntm.NTM(5, 3, controller_size=8, memory_size=10, word_size=4)
    compiled_model.engine = "compiled"
    plain = ntm.NTM(5, 3, controller_size=8, memory_size=10, word_size=4, engine="fused")
    loaded = runs.load(tmp_path / "a")
    assert loaded.engine == "auto"  # the request: the selector runs native here, where it builds
    plain(torch.randn(3, 2, 5))
    loaded(torch.zeros(3, 2, 5))
    with pytest.raises(AssertionError, match="compiled step"):
        compiled_model(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match=r"NTM\.engine = 'turbo'"):
        plain.engine = "turbo"


def test_resume_before_the_first_checkpoint_starts_from_the_source(tmp_path: Path) -> None:
    """A run that stopped between writing its config and its first checkpoint begins again
    from its --init-from weights, not from a fresh initialisation."""
    training.train(tiny_run(max_sequences=64), tmp_path / "copy", quiet=True)
    run = tiny_run(init_from=str(tmp_path / "copy"), seed=9)
    training.start(run, tmp_path / "new", quiet=True)
    shutil.rmtree(tmp_path / "new" / "checkpoints")
    resumed = training.reopen(tmp_path / "new", quiet=True)
    source = runs.load(tmp_path / "copy").state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, source[key]), key
