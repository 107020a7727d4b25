"""Training to convergence: warm-up, cosine decay, AdamW, and the stop when the held-out cost
no longer improves, recorded with the run."""

import json
import math
import signal
from pathlib import Path

import pytest
import torch

from ntm.engines.native import native_available
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import TrainConfig, resolve_config
from ntm.sweeps import local as sweep
from ntm.training import trainer as training
from ntm.training.schedule import PlateauSchedule, rate_shape

from .conftest import tiny_run


def test_warm_up_rises_linearly_and_cosine_ends_at_the_floor() -> None:
    train = TrainConfig(lr=1e-2, lr_floor=1e-4, warmup=320, batch_size=32, schedule="cosine",
                        max_sequences=10_000)  # fmt: skip
    shapes = [rate_shape(train, s) for s in range(0, 10_001, 32)]
    assert all(s > 0 for s in shapes)
    assert shapes[0] == pytest.approx(32 / 320, rel=1e-3)
    rising = shapes[: 320 // 32]
    assert rising == sorted(rising)
    falling = shapes[320 // 32 :]
    assert falling == sorted(falling, reverse=True)
    assert rate_shape(train, 10_000) == pytest.approx(1e-4 / 1e-2)
    middle = rate_shape(train, 5_000)
    assert middle == pytest.approx(0.01 + 0.99 * 0.5, rel=1e-6)
    flat = TrainConfig()
    assert {rate_shape(flat, s) for s in (0, 100, 10**6)} == {1.0}


def test_patience_ends_a_run_that_stopped_improving_and_only_after_it_learned() -> None:
    schedule = PlateauSchedule(TrainConfig(stop_patience=3, plateau_after=0.5))
    assert schedule.observe(100.0, 1e-3).best
    assert not any(schedule.observe(100.0, 1e-3).stop for _ in range(10))  # a flat start
    assert schedule.observe(40.0, 1e-3).best
    decisions = [schedule.observe(41.0, 1e-3) for _ in range(3)]
    assert [d.stop for d in decisions] == [False, False, True]
    assert decisions[-1].converged
    state = schedule.state_dict()
    again = PlateauSchedule(TrainConfig(stop_patience=3))
    again.load_state_dict(state)
    assert again.since_best == 3


def test_a_converged_run_says_so_and_a_capped_one_too(tmp_path: Path) -> None:
    converged = training.train(
        tiny_run(
            max_sequences=4096,
            eval_every=32,
            stop_patience=1,
            plateau_after=1.0,
            target_bit_errors=0.0,
        ),
        tmp_path / "c",
        quiet=True,
    )
    assert converged.reason == "converged"
    assert converged.sequences < 4096
    record = ckpt.read_ended(tmp_path / "c")
    assert record is not None and record["reason"] == "converged"
    assert record["sequences"] == converged.sequences
    assert "converged: no new best" in (tmp_path / "c" / ckpt.LOG_FILE).read_text()
    capped = training.train(
        tiny_run(max_sequences=64, target_bit_errors=0.0), tmp_path / "b", quiet=True
    )
    assert capped.reason == "budget"
    engine = "native" if native_available() else "fused"  # what auto chooses for the NTM
    assert ckpt.read_ended(tmp_path / "b") == {
        "reason": "budget",
        "sequences": 64,
        "seconds": pytest.approx(capped.seconds),
        "engine": engine,
    }
    outcome = sweep.outcome(tmp_path / "b", 0.0)
    assert outcome["ended"] == "budget" and outcome["engine"] == engine
    assert f"engine {engine}" in (tmp_path / "b" / ckpt.LOG_FILE).read_text()
    assert math.isfinite(outcome["minutes"])
    assert json.loads((tmp_path / "b" / ckpt.ENDED_FILE).read_text())["reason"] == "budget"


def _converged(run_dir: Path) -> training.TrainResult:
    run = tiny_run(max_sequences=4096, eval_every=32, stop_patience=1, plateau_after=1.0,
                   target_bit_errors=0.0)  # fmt: skip
    return training.train(run, run_dir, quiet=True)


def test_a_run_stopped_before_it_recorded_its_end_records_it_on_resume(tmp_path: Path) -> None:
    first = _converged(tmp_path / "c")
    assert first.reason == "converged"
    rows = ckpt.read_metrics(tmp_path / "c")
    (tmp_path / "c" / ckpt.ENDED_FILE).unlink()  # as if stopped after its final checkpoint
    again = training.resume(tmp_path / "c", quiet=True)
    assert (again.reason, again.sequences) == ("converged", first.sequences)
    assert ckpt.read_metrics(tmp_path / "c") == rows  # nothing trained
    record = ckpt.read_ended(tmp_path / "c")
    assert record is not None and record["reason"] == "converged"
    assert record["sequences"] == first.sequences
    assert "ended (converged) before it said so" in (tmp_path / "c" / ckpt.LOG_FILE).read_text()
    # With its end recorded, a resumed run trains again (here to its next plateau).
    more = training.resume(tmp_path / "c", quiet=True)
    assert more.sequences > first.sequences and more.reason == "converged"


def test_a_resumed_run_stopped_before_its_first_checkpoint_trains_again(tmp_path: Path) -> None:
    first = _converged(tmp_path / "c")
    more = {"stop_patience": 3}  # a resume that asks for more

    def crash(trainer: training.Trainer) -> None:
        raise RuntimeError("stopped")

    trainer = training.reopen(tmp_path / "c", more, quiet=True)
    trainer.on_update = crash
    with pytest.raises(RuntimeError, match="stopped"):
        trainer.fit()  # stopped before the new stretch's first checkpoint
    assert ckpt.read_ended(tmp_path / "c") is None  # it was training
    assert (tmp_path / "c" / ckpt.RESUMED_FILE).is_file()
    # Resumed again, it trains, though its latest checkpoint still says "converged".
    again = training.resume(tmp_path / "c", quiet=True)
    assert again.sequences > first.sequences
    assert not (tmp_path / "c" / ckpt.RESUMED_FILE).is_file()  # gone at its first checkpoint
    record = ckpt.read_ended(tmp_path / "c")
    assert record is not None and record["sequences"] == again.sequences


def test_a_signal_during_the_final_checkpoint_waits_for_the_end_s_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves = []
    save = training.Trainer.save

    def signalled_save(self: training.Trainer) -> None:
        saves.append(self.progress.ended)
        if self.progress.ended:  # the final checkpoint of a run that ended
            signal.raise_signal(signal.SIGINT)
        save(self)

    monkeypatch.setattr(training.Trainer, "save", signalled_save)
    result = _converged(tmp_path / "c")
    assert saves[-1] == "converged" and result.reason == "converged"
    record = ckpt.read_ended(tmp_path / "c")
    assert record is not None and record["reason"] == "converged"


def test_adamw_decays_the_weights_and_only_adamw_takes_weight_decay() -> None:
    run = tiny_run(optimizer="adamw", weight_decay=0.1)
    model = torch.nn.Linear(2, 2)
    optimizer = training.build_optimizer(run.train, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    with pytest.raises(ValueError, match=r"weight_decay = 0\.1: expected 0 with --optimizer adam"):
        TrainConfig(weight_decay=0.1)


@pytest.mark.parametrize("model", ["transformer", "mamba", "xlstm"])
def test_attention_and_state_spaces_train_as_their_authors_do(model: str) -> None:
    run = resolve_config({"task": "copy", "model": model}, {}, {})
    assert (run.train.optimizer, run.train.schedule) == ("adamw", "cosine")
    assert run.train.weight_decay == 0.1
    assert run.train.warmup > 0
    flagged = resolve_config({"task": "copy", "model": model, "optimizer": "adam",
                              "weight_decay": 0.0}, {}, {})  # fmt: skip
    assert flagged.train.optimizer == "adam"  # a flag still decides


def test_a_run_saved_before_the_schedule_kept_a_state_resumes(tmp_path: Path) -> None:
    """Trainer states as the oldest kept runs hold them: the optimiser, the loop's counters
    and the last evaluation, nothing of the schedule, the stage or the parts."""
    training.train(tiny_run(max_sequences=64), tmp_path / "run", quiet=True)
    path = ckpt.latest_checkpoint(tmp_path / "run") / ckpt.TRAINER_FILE
    state = torch.load(path, weights_only=True)
    # Its progress held the guard's and the curriculum's counters too.
    progress = {**state["progress"], **state["guard"], **state["curriculum"]}
    old = {"optimizer": state["optimizer"], "progress": progress, "last_eval": state["last_eval"]}
    torch.save(old, path)
    result = training.resume(tmp_path / "run", {"max_sequences": 128}, quiet=True)
    assert result.sequences == 128
    assert "resumed" in (tmp_path / "run" / ckpt.LOG_FILE).read_text()
