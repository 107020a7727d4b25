"""``ntm sweep``: a grid of runs over seeds and settings, resumable, summarised.

The grid starts an ``ntm`` process per run (marked ``processes``); the default run's sweep is
``test_sweep_ray.py::test_the_local_backend_does_not_import_ray``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ntm import cli
from ntm.sweeps import local as sweep

from .conftest import tiny_flags


def _flags() -> list[str]:
    return tiny_flags(max_sequences=64, eval_every=16, target_bit_errors=7, seed=None)


def _sweep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ntm", "sweep", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_seeds_and_settings_parse() -> None:
    assert sweep.parse_seeds("1-3,8,2") == [1, 2, 3, 8]
    with pytest.raises(ValueError, match="'x' is not a seed or a range"):
        sweep.parse_seeds("1,x")
    with pytest.raises(ValueError, match="the range '5-2' is empty"):
        sweep.parse_seeds("5-2")
    assert cli.sweep_axes(["memory_init=constant,learned"]) == [
        ("memory-init", ["constant", "learned"])
    ]
    with pytest.raises(cli.UsageError, match="expected KEY=VALUE"):
        cli.sweep_axes(["lr"])
    with pytest.raises(cli.UsageError, match="seed is set by the sweep itself"):
        cli.sweep_axes(["seed=1,2"])
    assert cli.setting_flags("memory-init", "learned") == ["--memory-init", "learned"]
    assert cli.setting_flags("curriculum", "False") == ["--no-curriculum"]
    assert cli.setting_flags("curriculum", "yes") == ["--curriculum"]
    with pytest.raises(ValueError, match="'maybe' is not a boolean"):
        cli.setting_flags("curriculum", "maybe")


@pytest.mark.processes
def test_a_tiny_grid_runs_resumes_and_is_summarised(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["--seeds", "1-2", "--set", "memory_init=constant,random", "--jobs", "2"]
    first = _sweep(*args, "--out", str(out), *_flags())
    assert first.returncode == 0, first.stderr
    rows = json.loads((out / "summary.json").read_text())
    assert [r["setting"] for r in rows] == ["memory-init=constant", "memory-init=random"]
    for row in rows:
        assert row["runs"] == 2
        assert row["solved"] == 2  # the target of 7 bit errors is met at the first evaluation
        low, median, high = row["sequences_to_target"]
        assert 16 <= low <= median <= high <= 64
    configs = sorted(out.glob("*/seed-*/config.json"))
    assert len(configs) == 4
    assert {json.loads(p.read_text())["model"]["memory_init"] for p in configs} == {
        "constant",
        "random",
    }
    assert (out / "curves.png").stat().st_size > 0
    assert "| memory-init=random | 2/2 |" in (out / "summary.md").read_text()
    # The same command again: every run is finished, none is started.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/result.json")}
    again = _sweep(*args, "--out", str(out), *_flags())
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/result.json")} == stamps


def test_bad_sweep_flags_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "s"), *_flags()]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "--set", "no_such_setting=1,2", *out])
    assert exit_info.value.code == 2
    assert "no-such-setting" in capsys.readouterr().err
    assert cli.main(["sweep", "--seeds", "3-1", *out]) == 2
    assert "--seeds '3-1': the range '3-1' is empty" in capsys.readouterr().err


def test_a_run_that_ended_before_a_ctrl_c_is_recorded_as_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches the sweep and its runs at once; a run that had already ended (exit 0)
    gets its result.json, so the next sweep does not resume it and train it past its end;
    one the Ctrl-C stopped (exit 130) is left to resume."""
    ended = sweep.Job("lr=1e-3", 1, (), tmp_path / "a" / "seed-1")
    stopped = sweep.Job("lr=1e-2", 1, (), tmp_path / "b" / "seed-1")
    codes = {ended: 0, stopped: 130}
    finished: list[sweep.Job] = []
    monkeypatch.setattr(sweep, "finish", lambda job, target: finished.append(job) or "")

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep.time, "sleep", ctrl_c)
    command = [sys.executable, "-c", "import sys; sys.exit({})"]
    code = sweep.run(
        [ended, stopped],
        lambda job: [*command[:2], command[2].format(codes[job])],
        target=0.0,
        parallel=2,
        quiet=True,
    )
    assert code == 130
    assert finished == [ended]
