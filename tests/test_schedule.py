"""The learning-rate schedule, the best checkpoint, each task's target, and repeat copy's
end marker withheld until the copies are right."""

import importlib.util
import math
from pathlib import Path

import pytest

import ntm
from ntm.cli import main
from ntm.pictures.figures import changes
from ntm.runs import checkpoint as ckpt
from ntm.runs import config as runconfig
from ntm.runs import load as runs
from ntm.runs.evaluation import evaluate
from ntm.training import data
from ntm.training import trainer as training
from ntm.training.schedule import has_learned

from .conftest import TINY_MODEL, TINY_TRAIN, tiny_run


def lr_of(trainer: training.Trainer) -> float:
    return float(trainer.optimizer.param_groups[0]["lr"])


def test_a_plateau_lowers_the_rate_and_the_floor_ends_the_run(run_dir: Path) -> None:
    run = tiny_run(
        schedule="plateau", lr=0.004, lr_patience=2, lr_decay=0.5, lr_floor=0.0015,
        plateau_after=1.0,
    )  # fmt: skip
    trainer = training.start(run, run_dir, quiet=True)
    follow = trainer._follow_schedule
    assert not follow(10.0)  # the first result is the best so far
    assert (trainer.schedule.best_cost, lr_of(trainer)) == (10.0, 0.004)
    assert not follow(10.0)
    assert not follow(9.995)  # better by less than IMPROVEMENT: no new best
    assert lr_of(trainer) == 0.002  # two evaluations without a new best
    assert trainer.schedule.stale_evals == 0
    assert not follow(10.5)
    assert not follow(9.0)  # a new best resets the patience
    assert trainer.schedule.stale_evals == 0
    assert not follow(9.5)
    assert not follow(9.5)
    assert lr_of(trainer) == 0.0015  # 0.001 would be below the floor
    assert not follow(9.5)
    assert follow(9.5)  # at the floor, a plateau ends the run
    log = (run_dir / ckpt.LOG_FILE).read_text()
    assert "plateau: learning rate 0.004 -> 0.002" in log
    assert "plateau: learning rate 0.002 -> 0.0015" in log
    assert "at the floor learning rate 0.0015: stopping" in log
    trainer.close()


def test_a_flat_start_is_no_plateau(run_dir: Path) -> None:
    """Before the held-out cost has fallen below ``plateau_after`` of its first value the
    network has not found its memory yet: the rate stays, however long that takes."""
    run = tiny_run(schedule="plateau", lr_patience=1, plateau_after=0.5)
    trainer = training.start(run, run_dir, quiet=True)
    for cost in (10.0, 9.0, 9.0, 9.0, 8.0, 8.0, 8.0, 6.0, 6.0):
        assert not trainer._follow_schedule(cost)
    assert lr_of(trainer) == 3e-3
    assert not trainer._follow_schedule(4.0)  # halved: learned; a new best
    assert not trainer._follow_schedule(4.0)  # the first evaluation without one
    assert lr_of(trainer) == 3e-3 * 0.3
    trainer.close()


def test_a_constant_schedule_never_changes_the_rate(run_dir: Path) -> None:
    trainer = training.start(tiny_run(schedule="constant", lr_patience=1), run_dir, quiet=True)
    for cost in (5.0, 6.0, 7.0, 8.0):
        assert not trainer._follow_schedule(cost)
    assert lr_of(trainer) == TINY_TRAIN.get("lr", 3e-3)
    trainer.close()


def test_the_run_ends_at_the_floor(run_dir: Path) -> None:
    run = tiny_run(
        schedule="plateau", lr_patience=1, lr_decay=0.1, lr_floor=1e-9, lr=1e-9, plateau_after=1.0
    )
    result = training.train(run, run_dir, quiet=True)  # 1e-9: nothing improves
    assert result.reason == "floor"
    assert not result.solved
    assert result.sequences < 192


def test_the_best_checkpoint_is_the_best_one(run_dir: Path) -> None:
    result = training.train(tiny_run(eval_every=16, lr=0.03, seed=3), run_dir, quiet=True)
    rows = ckpt.read_metrics(run_dir)
    lowest = min(rows, key=lambda r: r["eval_cost"])
    best = ckpt.read_best(run_dir)
    assert best is not None
    assert best["sequences"] == lowest["sequences"]
    assert best["eval_cost"] == lowest["eval_cost"]
    assert best["sequences"] < result.sequences  # else this test shows nothing
    run = runs.read_run_config(run_dir)
    held_out = data.held_out_batch(run)
    cost, _ = evaluate(runs.load(run_dir), held_out)
    assert cost == lowest["eval_cost"]
    latest, _ = evaluate(runs.load(run_dir, checkpoint="latest"), held_out)
    assert latest == rows[-1]["eval_cost"] != cost
    with pytest.raises(ValueError, match="checkpoint = 'first'"):
        runs.load(run_dir, checkpoint="first")


def test_the_model_that_met_the_target_is_kept_as_the_best(run_dir: Path) -> None:
    trainer = training.start(tiny_run(schedule="constant"), run_dir, quiet=True)
    trainer.evaluator.last = (5.0, 0.0)
    assert not trainer._follow_schedule(5.0)
    assert ckpt.read_best(run_dir)["eval_cost"] == 5.0  # type: ignore[index]
    trainer.progress.sequences = 64
    trainer.evaluator.last = (5.5, 0.0)
    assert not trainer._follow_schedule(5.5)  # no better: the best stays
    assert ckpt.read_best(run_dir)["sequences"] == 0  # type: ignore[index]
    trainer.progress.sequences = 128
    assert not trainer._follow_schedule(5.5, met=True)  # no better, but it met the target
    assert ckpt.read_best(run_dir) == {"sequences": 128, "eval_cost": 5.5, "eval_bit_errors": 0.0}
    trainer.close()


def test_ntm_eval_reads_the_best_model(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    training.train(tiny_run(eval_every=16, lr=0.03, seed=3), run_dir, quiet=True)
    best = ckpt.read_best(run_dir)
    assert best is not None
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--size", "8", "--json"]) == 0
    out = capsys.readouterr()
    assert f"the best model: {best['sequences']:,d} sequences" in out.err
    assert main(["eval", str(run_dir), "--size", "8", "--json", "--checkpoint", "latest"]) == 0
    assert "the latest model: step-000000000192" in capsys.readouterr().err


def test_shipping_takes_the_best_model(run_dir: Path, tmp_path: Path) -> None:
    path = Path(__file__).resolve().parent.parent / "scripts" / "ship_model.py"
    spec = importlib.util.spec_from_file_location("ship_model", path)
    assert spec is not None and spec.loader is not None
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    training.train(tiny_run(eval_every=16, lr=0.03, seed=3), run_dir, quiet=True)
    best = runs.weights_file(run_dir)
    assert best != runs.weights_file(run_dir, "latest")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ship, "ROOT", tmp_path / "pretrained")
        patch.setattr(ship, "evaluate_run", lambda folder: [])  # the paper's settings: slow
        patch.setattr("sys.argv", ["ship_model.py", str(run_dir), "copy"])
        ship.main()
    shipped = tmp_path / "pretrained" / "ntm" / "copy" / ckpt.MODEL_FILE
    assert shipped.read_bytes() == best.read_bytes()


def test_resume_mid_plateau_continues_exactly(tmp_path: Path) -> None:
    run = {"schedule": "plateau", "lr_patience": 1, "lr_decay": 0.5, "eval_every": 16,
           "plateau_after": 1.0}  # fmt: skip
    whole = training.train(tiny_run(**run), tmp_path / "whole", quiet=True)
    part = training.train(tiny_run(**run, max_sequences=96), tmp_path / "part", quiet=True)
    rest = training.resume(tmp_path / "part", {"max_sequences": 192}, quiet=True)
    assert part.losses + rest.losses == whole.losses
    rates = [r["lr"] for r in ckpt.read_metrics(tmp_path / "whole")]
    assert len(set(rates)) > 1  # the schedule lowered the rate: this test tests it
    assert [r["lr"] for r in ckpt.read_metrics(tmp_path / "part")] == rates
    assert ckpt.read_best(tmp_path / "part") == ckpt.read_best(tmp_path / "whole")


def test_each_task_has_its_target() -> None:
    for task, words in {
        "copy": ["held-out bit errors < 0.1"],
        "associative_recall": ["held-out bit errors < 0.1"],
        "ngrams": ["held-out cost < Bayes-optimal + 1 bits"],
        "priority_sort": ["held-out cost < 20 bits"],
    }.items():
        for model in ("ntm", "lstm"):
            run = runconfig.resolve_config({"task": task, "model": model}, {}, {})
            assert run.train.targets() == words, (task, model)
            assert run.train.schedule == "plateau"
    with pytest.raises(ValueError, match="copy has no optimal_cost"):
        runconfig.TrainConfig(task="copy", target_excess=1.0)
    with pytest.raises(ValueError, match="copy has no end_marker setting"):
        runconfig.TrainConfig(task="copy", withhold_end_marker=True)


def test_ngrams_stops_within_its_excess_over_the_optimum(run_dir: Path) -> None:
    run = runconfig.resolve_config(
        {**TINY_TRAIN, "task": "ngrams", "target_excess": 1000.0, "max_sequences": 64},
        {"length": 12},
        dict(TINY_MODEL),
    )
    result = training.train(run, run_dir, quiet=True)
    assert result.solved
    assert result.sequences == 64
    log = (run_dir / ckpt.LOG_FILE).read_text()
    assert "target: held-out cost < Bayes-optimal + 1000 bits" in log
    assert "optimal)" in log  # each evaluation shows the cost above the optimum


REPEAT = {"bits": 3, "max_length": 3, "max_repeats": 2}


def repeat_run(**train: object) -> runconfig.RunConfig:
    settings = {**TINY_TRAIN, "task": "repeat_copy", "eval_every": 32, **train}
    return runconfig.resolve_config(settings, dict(REPEAT), dict(TINY_MODEL))


def test_repeat_copy_withholds_the_marker_until_the_copies_are_right(run_dir: Path) -> None:
    # A generous target: the copies count as right at the first evaluation, and the run is
    # solved at the second, the first with the marker.
    run = repeat_run(target_bit_errors=100.0, max_sequences=128)
    assert run.train.withhold_end_marker  # the fast preset's recipe
    trainer = training.start(run, run_dir, quiet=True)
    assert trainer.stage.stage == 0
    batch, _ = trainer._training_batch(8)
    assert batch.targets.shape[-1] == run.task.output_size - 1  # no marker to learn yet
    assert trainer.fit().solved
    # Stage 0 was judged on held-out sequences without the marker, as it trained.
    assert trainer.evaluator.withheld is not None
    assert trainer.evaluator.withheld.targets.shape[-1] == run.task.output_size - 1
    assert [(r["sequences"], r["stage"]) for r in ckpt.read_metrics(run_dir)] == [(32, 0), (64, 1)]
    assert ckpt.load_checkpoint(run_dir).trainer["stage"] == 1
    log = (run_dir / ckpt.LOG_FILE).read_text()
    assert "end marker withheld until the copies are right" in log
    assert "the end marker from here on" in log
    plain = runconfig.resolve_config(
        {**TINY_TRAIN, "task": "repeat_copy"}, {**REPEAT, "end_marker": False}, dict(TINY_MODEL)
    )
    assert plain.train.withhold_end_marker
    without = training.start(plain, run_dir.with_name("plain"), quiet=True)
    assert without.stage.stage == 1  # no marker to withhold
    without.close()
    resumed = training.reopen(run_dir, quiet=True)
    batch, _ = resumed._training_batch(8)
    resumed.close()
    assert float(batch.targets[..., -1].sum()) > 0  # the marker is a target now


def test_the_optimiser_starts_afresh_with_the_marker(tmp_path: Path) -> None:
    def last_state(copies_right: float, name: str) -> training.Trainer:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(training, "COPIES_RIGHT", copies_right)
            run = repeat_run(target_bit_errors=0.0, max_sequences=32, lr=0.01)
            trainer = training.start(run, tmp_path / name, quiet=True)
            trainer.set_learning_rate(0.005)  # as a plateau would have lowered it
            trainer.fit()
        return trainer

    kept = last_state(0.0, "kept")  # the copies never right: no switch
    assert kept.stage.stage == 0 and kept.optimizer.state
    fresh = last_state(math.inf, "fresh")  # right at the evaluation after the last update
    assert fresh.stage.stage == 1
    assert not fresh.optimizer.state  # no moments from the copies' stage
    assert lr_of(fresh) == 0.01  # the run's own rate
    assert (
        "the optimiser afresh at learning rate 0.01"
        in (tmp_path / "fresh" / ckpt.LOG_FILE).read_text()
    )


def test_resume_across_the_marker_stage_is_exact(tmp_path: Path) -> None:
    run = {"target_bit_errors": 0.0, "max_sequences": 128}
    whole = repeat_run(**run)
    # The copies never count as right with a target of 0 unless COPIES_RIGHT says so.
    assert training.COPIES_RIGHT > 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "COPIES_RIGHT", math.inf)  # right at the first evaluation
        one = training.train(whole, tmp_path / "whole", quiet=True)
        part = training.train(repeat_run(**{**run, "max_sequences": 48}), tmp_path / "part",
                              quiet=True)  # fmt: skip
        rest = training.resume(tmp_path / "part", {"max_sequences": 128}, quiet=True)
    assert part.losses + rest.losses == one.losses
    stages = {r["sequences"]: r["stage"] for r in ckpt.read_metrics(tmp_path / "whole")}
    assert stages == {32: 0, 64: 1, 96: 1, 128: 1}
    resumed = {r["sequences"]: r["stage"] for r in ckpt.read_metrics(tmp_path / "part")}
    assert resumed == {**stages, 48: 1}  # 48: the report when the first part stopped


def test_learning_curves_mark_the_changes(run_dir: Path) -> None:
    run = {"schedule": "plateau", "lr_patience": 1, "lr_decay": 0.5, "eval_every": 16,
           "plateau_after": 1.0}  # fmt: skip
    training.train(tiny_run(**run), run_dir, quiet=True)
    rows = ckpt.read_metrics(run_dir)
    marks = changes(rows, "lr")
    assert marks
    assert all(new == max(old / 2, 3e-5) for _, old, new in marks)  # 3e-5: the floor
    assert changes([{"sequences": 1, "lr": math.nan}, {"sequences": 2, "lr": 1.0}], "lr") == []


def test_the_fast_preset_s_recipes_are_the_defaults_and_in_the_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def model(task: str, preset: str = "fast", kind: str = "ntm") -> dict[str, object]:
        run = runconfig.resolve_config({"task": task, "preset": preset, "model": kind}, {}, {})
        return dict(vars(run.model))

    assert model("ngrams")["memory_init"] == "random"
    assert model("priority_sort")["memory_init"] == "random"
    assert model("ngrams", preset="paper")["memory_init"] == "learned"  # the paper's
    assert model("copy")["memory_init"] == "constant"
    assert "memory_init" not in model("ngrams", kind="lstm")
    # A flag still wins over the recipe.
    flagged = runconfig.resolve_config({"task": "ngrams"}, {}, {"memory_init": "constant"})
    assert flagged.model.memory_init == "constant"  # type: ignore[union-attr]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    recipes = [(task, ntm.registry.task_class(task).target) for task in ("ngrams", "priority_sort")]
    recipes += list(ntm.models.ntm.model.FAST_NTM.items()) + list(
        ntm.models.dnc.model.FAST_DNC.items()
    )
    for task, recipe in recipes:
        for key in [*recipe.train, *recipe.model]:
            assert f"--{key.replace('_', '-')}" in text.split(f"{task}:", 1)[1]
        assert " ".join(recipe.why.split()) in text


def test_a_run_has_learned_once_its_best_cost_is_below_a_share_of_its_first() -> None:
    assert has_learned(4.0, 10.0, 0.5) and has_learned(5.0, 10.0, 0.5)
    assert not has_learned(5.1, 10.0, 0.5)
    assert has_learned(math.nan, 10.0, 0.5)  # as the schedule took a NaN cost before
