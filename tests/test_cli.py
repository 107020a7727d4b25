"""The command line as a user meets it: train, eval, viz, and every kind of bad input."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ntm import cli
from ntm.cli import main
from ntm.cli.common import _assignments
from ntm.engines import fused
from ntm.runs import checkpoint as ckpt
from ntm.runs import load as runs
from ntm.tasks import make_task

TINY = [
    "--max-sequences", "64", "--batch-size", "16", "--eval-every", "32", "--eval-size", "8",
    "--controller-size", "12", "--memory-size", "12", "--word-size", "5",
    "--bits", "3", "--max-length", "4", "--quiet", "--engine", "fused",
]  # fmt: skip


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    assert run_cli("train", "--task", "copy", "--run-dir", str(run_dir), *TINY) == 0
    return run_dir


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_train_eval_viz(trained: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = ckpt.read_metrics(trained)
    assert [r["sequences"] for r in rows] == [32, 64]
    capsys.readouterr()
    assert run_cli("eval", str(trained), "--size", "20") == 0
    table = capsys.readouterr().out
    for label in ("training distribution", "length 20", "length 30", "length 50", "length 120"):
        assert label in table
    assert (
        run_cli("eval", str(trained), "--size", "10", "--json", "--task-arg", "max_length=7") == 0
    )
    rows_json = json.loads(capsys.readouterr().out)
    assert rows_json[0]["setting"] == "custom"
    assert "max_length=7" in rows_json[0]["task"]
    out = tmp_path / "pictures"
    assert run_cli("viz", str(trained), "--out", str(out)) == 0
    for name in ("sequence.png", "memory.png", "learning_curves.png"):
        assert is_png(out / name), name


#: A few updates, uncompiled, of the model a run would have; SMALL: of a small NTM. Enough to
#: train and evaluate any task.
FEW = ["--max-sequences", "8", "--batch-size", "4", "--eval-every", "8", "--eval-size", "4"]
FEW += ["--quiet", "--engine", "fused"]
SMALL = [*FEW, "--controller-size", "8", "--memory-size", "24", "--word-size", "4"]


@pytest.mark.parametrize("task", ["repeat_copy", "associative_recall", "ngrams", "priority_sort"])
def test_every_task_trains_and_evaluates(task: str, tmp_path: Path) -> None:
    assert run_cli("train", "--task", task, "--run-dir", str(tmp_path / task), *SMALL) == 0
    assert run_cli("eval", str(tmp_path / task), "--size", "4") == 0


def test_repeat_copy_eval_reports_the_end_marker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "repeat"
    assert run_cli("train", "--task", "repeat_copy", "--run-dir", str(run_dir), *SMALL) == 0
    capsys.readouterr()
    assert run_cli("eval", str(run_dir), "--size", "6", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["setting"] for r in rows] == ["training distribution", "L=10, R=20", "L=20, R=10"]
    for row in rows:
        assert 0 <= row["end_marker_errors"] <= row["bit_errors"]
        assert 0 <= row["end_marker_right"] <= 1
    assert run_cli("eval", str(run_dir), "--size", "6") == 0
    assert "end marker right" in capsys.readouterr().out
    plain = tmp_path / "plain"
    flags = ["--task", "repeat_copy", "--no-end-marker", "--run-dir", str(plain), *SMALL]
    assert run_cli("train", *flags) == 0
    capsys.readouterr()
    assert run_cli("eval", str(plain), "--size", "6", "--json") == 0
    assert all("end_marker_errors" not in r for r in json.loads(capsys.readouterr().out))


def test_lstm_baseline_from_the_command_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "lstm"
    args = ["--model", "lstm", "--hidden-size", "8", "--num-layers", "1", "--max-sequences", "16"]
    args += ["--eval-every", "16", "--eval-size", "4", "--quiet", "--run-dir", str(run_dir)]
    assert run_cli("train", *args) == 0
    assert run_cli("viz", str(run_dir)) == 0
    assert (run_dir / "sequence.png").is_file()
    assert not (run_dir / "memory.png").exists()


def test_resume_continues(trained: Path) -> None:
    assert run_cli("train", "--resume", str(trained), "--max-sequences", "96", "--quiet") == 0
    assert [r["sequences"] for r in ckpt.read_metrics(trained)] == [32, 64, 96]


def test_config_file(tmp_path: Path, trained: Path) -> None:
    config = json.loads((trained / "config.json").read_text())
    config["train"]["max_sequences"] = 16
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(config))
    run_dir = tmp_path / "from-file"
    assert run_cli("train", "--config", str(path), "--run-dir", str(run_dir), "--quiet") == 0
    written = json.loads((run_dir / "config.json").read_text())
    assert written["model"]["memory_size"] == 12
    assert written["train"]["max_sequences"] == 16


BAD_INPUTS = [
    (["train", "--task", "kopy"], "task = 'kopy': expected one of copy, repeat_copy"),
    (["train", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["train", "--batch-size", "x"], "invalid int value: 'x'"),
    (["train", "--batch-size", "0"], "batch_size = 0: expected an integer >= 1"),
    (["train", "--max-length", "-3"], "max_length = -3"),
    (["train", "--min-length", "-1"], "min_length = -1: expected an integer >= 1"),
    (["train", "--num-read-heads", "0"], "num_read_heads = 0: expected an integer >= 1"),
    (["train", "--lr", "-1"], "lr = -1.0: expected a finite number > 0"),
    (["train", "--lr", "nan"], "lr = nan"),
    (["train", "--min-items", "3"], "--min-items is not a setting of task copy"),
    (["train", "--hidden-size", "3"], "--hidden-size does not apply to --model ntm"),
    (["train", "--config", "/nonexistent.json"], "does not exist"),
    (["train", "--config", "."], "--config: cannot read '.': Is a directory"),
    (["eval", "/nonexistent-run"], "does not exist"),
    (["viz", "/nonexistent-run"], "does not exist"),
    (
        ["eval", "--pretrained", "repeat_copy", "--task-arg", "end_marker=maybe"],
        "'maybe' is not a boolean",
    ),
    (["sweep", "--set", "curriculum=maybe"], "'maybe' is not a boolean"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = run_cli(*argv)
    except SystemExit as exit_info:  # argparse's own errors exit from inside
        code = int(exit_info.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_bad_run_folders(tmp_path: Path, trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("eval", str(empty)) == 2
    assert "is not a run folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert run_cli("eval", str(broken)) == 2
    assert "not valid JSON" in capsys.readouterr().err
    runs.weights_file(trained).write_bytes(b"garbage")  # the model eval reads: the best
    assert run_cli("eval", str(trained)) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    assert run_cli("eval", str(trained), "--task-arg", "colour=red") == 2
    assert "--task-arg 'colour=red'" in capsys.readouterr().err
    assert run_cli("train", "--resume", str(trained), "--batch-size", "3") == 2
    assert "batch_size cannot change in a resumed run" in capsys.readouterr().err
    assert run_cli("train", "--run-dir", str(trained), *TINY) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_init_from_a_shipped_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Repeat copy from the shipped copy model (the paper's model sizes, a few updates)."""
    flags = [*FEW, "--task", "repeat_copy", "--init-from", "copy"]
    assert run_cli("train", "--run-dir", str(tmp_path / "r"), *flags) == 0
    log = (tmp_path / "r" / "train.log").read_text()
    assert "weights from the shipped copy ntm (copy): input_size 9 -> 10, output_size 8 -> 9" in log
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["init_from"] == "copy"
    assert run_cli("train", "--run-dir", str(tmp_path / "s"), *flags, "--word-size", "8") == 2
    assert "word_size is 20 there, 8 here" in capsys.readouterr().err


def test_python_dash_m_and_console_script() -> None:
    for command in ([sys.executable, "-m", "ntm", "--help"], ["ntm", "train", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert "usage: ntm" in result.stdout


def test_booleans_are_read_one_way() -> None:
    task = make_task("repeat_copy")
    for word, value in (("no", False), ("OFF", False), ("0", False), ("Yes", True), ("1", True)):
        read = _assignments("--task-arg", type(task), [f"end_marker={word}"])
        assert read == {"end_marker": value}, word
    with pytest.raises(cli.UsageError, match="'maybe' is not a boolean"):
        _assignments("--task-arg", type(task), ["end_marker=maybe"])


def test_a_run_folder_trains_in_one_process_at_a_time(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = ckpt.RunLock.acquire(trained, create=False)
    try:
        assert run_cli("train", "--resume", str(trained), "--max-sequences", "96") == 2
        err = capsys.readouterr().err
        assert f"is in use by process {os.getpid()} on " in err
        assert len(err.strip().splitlines()) == 1
        fresh = trained.with_name("fresh")
        other = ckpt.RunLock.acquire(fresh, create=True)
        try:
            assert run_cli("train", "--run-dir", str(fresh), *TINY) == 2
            assert "is in use by process" in capsys.readouterr().err
        finally:
            other.release()
    finally:
        lock.release()
    assert not (trained / ckpt.LOCK_FILE).exists()
    assert run_cli("train", "--resume", str(trained), "--max-sequences", "96") == 0
    assert not (trained / ckpt.LOCK_FILE).exists()  # let go when training ends


def test_a_lock_left_by_a_killed_process_is_stale(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hold = (
        "import sys; from pathlib import Path; from ntm.runs.checkpoint import RunLock; "
        "lock = RunLock.acquire(Path(sys.argv[1]), create=False); print('held', flush=True); "
        "sys.stdin.read()"
    )  # holds the lock until it is killed, however long the resume below takes
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(trained)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert run_cli("train", "--resume", str(trained), "--max-sequences", "96") == 2
        assert f"in use by process {holder.pid} on " in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert (trained / ckpt.LOCK_FILE).exists()  # left behind by the killed holder
    assert run_cli("train", "--resume", str(trained), "--max-sequences", "96") == 0
    assert [r["sequences"] for r in ckpt.read_metrics(trained)] == [32, 64, 96]


def test_progress_shows_the_target_not_an_invented_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that stops at its target has no total and no ETA; it shows the held-out bit
    errors against the target. A run without a target, at a constant learning rate (no
    plateau can end it), shows its budget as the total."""
    loud = [f for f in TINY if f != "--quiet"]
    assert run_cli("train", "--task", "copy", "--run-dir", str(tmp_path / "a"), *loud) == 0
    err = capsys.readouterr().err
    assert "held-out bit errors" in err
    assert "(target < 0.1)" in err
    assert "%|" not in err
    assert not re.search(r"\d\d:\d\d<", err)  # tqdm's "elapsed<remaining"
    flags = [*loud, "--target-bit-errors", "0", "--schedule", "constant"]
    assert run_cli("train", "--task", "copy", "--run-dir", str(tmp_path / "b"), *flags) == 0
    err = capsys.readouterr().err
    assert "100%|" in err
    assert "target <" not in err


def test_compiled_engine_falls_back_where_dynamo_lacks_its_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a torch whose Dynamo lacks the setting the compiled steps raise, training says so
    in one line and runs fused."""
    monkeypatch.setattr(fused, "RECOMPILE_LIMIT", "no_such_setting")
    monkeypatch.setattr(fused, "_COMPILED", {})
    flags = [*TINY[: TINY.index("--engine")], "--engine", "compiled"]
    assert run_cli("train", "--task", "copy", "--run-dir", str(tmp_path / "r"), *flags) == 0
    log = (tmp_path / "r" / "train.log").read_text()
    assert "engine fused: compiled: torch " in log
    assert "no torch._dynamo.config.no_such_setting" in log
