"""``ntm sweep --backend ray``: the local backend's results and resume on a Ray cluster,
ASHA's early stopping, and a lost worker survived.

The tests marked ``ray`` start their own Ray head on 127.0.0.1 with two CPUs (``ray start
--head --block``, stopped at the end); the default run leaves them out (``pytest -m ray``).
Without Ray installed the tests are skipped, unless ``NTM_RAY_TESTS=required`` (as in CI),
where a missing Ray fails them.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ntm import cli
from ntm.runs import checkpoint as ckpt
from ntm.sweeps import ray_backend as sweep_ray

from .conftest import tiny_flags

if os.environ.get("NTM_RAY_TESTS") != "required":
    pytest.importorskip("ray")

#: Polling of files written by other processes: a short pause between looks, and a bound
#: that only a broken run reaches.
POLL = 0.1
PATIENCE = 240.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A Ray head on 127.0.0.1 with two CPUs, with token authentication (the token in
    ``RAY_AUTH_TOKEN`` for the sweeps the tests start): its address."""
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex * 2)
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    head = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_for(lambda: _listening(port) or head.poll() is not None, "the Ray head")
        assert head.poll() is None, "ray start --head exited"
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(ready: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {PATIENCE:.0f} s for {what}"
        time.sleep(POLL)


def _sweep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ntm", "sweep", "--quiet", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _start_sweep(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ntm", "sweep", "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(run_dir: Path) -> int:
    metrics = run_dir / "metrics.csv"
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.is_file() else 0


def _trainer_of(run_dir: Path) -> int | None:
    """The pid of the ``ntm train`` process that trains ``run_dir`` (Linux: /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in argv and str(run_dir).encode() in argv:
            return int(entry.name)
    return None


def _parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid")))


def _comparable(out: Path) -> list[dict[str, object]]:
    """The summary without its minutes (the one thing that differs between two sweeps)."""
    rows = json.loads((out / "summary.json").read_text())
    return [{k: v for k, v in row.items() if k != "minutes_to_target"} for row in rows]


@pytest.mark.ray
def test_a_grid_on_ray_gives_the_local_summary(cluster: str, tmp_path: Path) -> None:
    grid = ["--seeds", "1-2", "--set", "memory_init=constant,random"]
    flags = tiny_flags(max_sequences=128, eval_every=32, target_bit_errors=4, seed=None)
    local = _sweep(*grid, "--jobs", "2", "--out", str(tmp_path / "local"), *flags)
    assert local.returncode == 0, local.stderr
    # Copied storage: each run trains in a folder of its worker's own and its folder comes
    # back to the sweep folder, as on a cluster without shared storage.
    out = tmp_path / "ray"
    on_ray = _sweep(
        *grid,
        *("--backend", "ray", "--address", cluster, "--storage", "copy", "--out", str(out)),
        *flags,
    )
    assert on_ray.returncode == 0, on_ray.stderr
    assert _comparable(out) == _comparable(tmp_path / "local")
    run_dirs = [path for path in out.glob("*/seed-*") if path.is_dir()]
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        assert (run_dir / "result.json").is_file()
        assert (run_dir / "checkpoints" / "best" / "model.safetensors").is_file()
        assert (run_dir.parent / f"{run_dir.name}.out").is_file()
    assert (out / "curves.png").stat().st_size > 0
    # The same command again: every run has ended, none starts.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/result.json")}
    again = _sweep(*grid, "--backend", "ray", "--address", cluster, "--out", str(out), *flags)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/result.json")} == stamps


@pytest.mark.ray
def test_a_run_whose_worker_is_killed_is_retried_from_its_checkpoint(
    cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    # Long enough (several seconds) that the run is still training when its worker dies.
    flags = tiny_flags(max_sequences=8192, eval_every=32, target_bit_errors=0, seed=None)
    driver = _start_sweep("--backend", "ray", "--address", cluster, "--out", str(out), *flags)
    run_dir = (out / "default" / "seed-1").resolve()
    _wait_for(lambda: _rows(run_dir) >= 2, "the run's second evaluation")
    trainer = _trainer_of(run_dir)
    assert trainer is not None
    os.kill(_parent_of(trainer), signal.SIGKILL)  # the Ray worker that runs the trial
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["retries"] == 1
    assert result["sequences"] == 8192 and result["stopped_at"] is None
    assert "resumed" in (run_dir / "train.log").read_text()
    summary = (out / "summary.md").read_text()
    assert "default seed 1: its worker was lost; retried 1 time" in summary


@pytest.mark.ray
def test_an_interrupted_ray_sweep_resumes(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["--backend", "ray", "--address", cluster, "--seeds", "1-2", "--out", str(out)]
    # Long enough that both runs still train when the driver is stopped, and on a constant
    # rate: a plateau schedule may end a run at its floor before its budget, as it ended seed
    # 2 at 13,984 sequences on one machine and not on another.
    flags = tiny_flags(max_sequences=16384, eval_every=32, target_bit_errors=0, seed=None,
                       schedule="constant")  # fmt: skip
    driver = _start_sweep(*args, *flags)
    runs = [(out / "default" / f"seed-{s}").resolve() for s in (1, 2)]
    _wait_for(lambda: all(_rows(r) >= 1 for r in runs), "both runs' first evaluation")
    driver.send_signal(signal.SIGINT)  # Ctrl-C on the driver
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 130, stderr
    for run_dir in runs:
        assert not (run_dir / "result.json").exists()
        assert (run_dir / "checkpoints" / "latest").is_file()
    again = _sweep(*args, *flags)
    assert again.returncode == 0, again.stderr
    for run_dir in runs:
        assert json.loads((run_dir / "result.json").read_text())["sequences"] == 16384
        assert "resumed" in (run_dir / "train.log").read_text()


@pytest.mark.ray
def test_asha_stops_the_run_of_a_hopeless_learning_rate(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # A budget far beyond the first rung: the stopped run's trainer is still training when
    # its worker is stopped.
    flags = tiny_flags(max_sequences=4096, eval_every=32, target_bit_errors=0, seed=None)
    # One seed, so both runs start from the same weights and their held-out costs differ
    # by what they learnt; one run at a time, so the good one reaches each rung first.
    grid = ["--seeds", "1", "--set", "lr=1e-2,1e-9", "--jobs", "1"]
    stop = ["--stop", "asha", "--stop-grace", "128", "--stop-factor", "2"]
    result = _sweep(
        "--backend", "ray", "--address", cluster, *grid, *stop, "--out", str(out), *flags
    )
    assert result.returncode == 0, result.stderr
    good = json.loads((out / "lr=1e-2" / "seed-1" / "result.json").read_text())
    hopeless = json.loads((out / "lr=1e-9" / "seed-1" / "result.json").read_text())
    assert good["stopped_at"] is None and good["sequences"] == 4096
    assert hopeless["stopped_at"] == 128
    assert 128 <= hopeless["sequences"] < 4096
    summary = (out / "summary.md").read_text()
    assert "lr=1e-9 seed 1: stopped early at 128 sequences" in summary


def _metrics(*sequences: int) -> bytes:
    """A ``metrics.csv`` with one row per evaluation at these sequences."""
    rows = [",".join(ckpt.METRICS_COLUMNS)]
    rows += [",".join([str(n)] + ["0"] * (len(ckpt.METRICS_COLUMNS) - 1)) for n in sequences]
    return ("\n".join(rows) + "\n").encode()


def test_a_run_folder_travels_without_its_lock_and_temporary_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    files = {
        "config.json": b"{}",
        "metrics.csv": _metrics(32),
        "checkpoints/latest": b"step-000000032\n",
        "checkpoints/step-000000032/model.safetensors": b"weights",
        "checkpoints/best/best.json": b"{}",
    }
    temporary = [".lock", "checkpoints/.step-000000064.x1/model.safetensors", ".config.json.tmp"]
    for name in [*files, *temporary]:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(files.get(name, b"half written"))
    copy = tmp_path / "copy" / "run"
    sweep_ray.unpack(sweep_ray.pack(run_dir), copy)
    assert {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()} == set(files)
    assert all((copy / name).read_bytes() == data for name, data in files.items())
    assert sweep_ray.sequences_in(copy) == 32
    # Unpacked again over an older copy: the new one replaces it whole.
    (run_dir / "metrics.csv").write_bytes(_metrics(32, 64))
    sweep_ray.unpack(sweep_ray.pack(run_dir), copy)
    assert sweep_ray.sequences_in(copy) == 64
    assert sorted(p.name for p in copy.parent.iterdir()) == ["run"]


def test_an_unreachable_cluster_is_one_line_before_any_run(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    result = _sweep("--backend", "ray", "--address", address, "--out", str(out), *tiny_flags())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"no Ray cluster at --address {address}" in result.stderr
    assert not list(out.glob("*/seed-*"))


def test_the_local_backend_does_not_import_ray(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    code = (
        "import sys; from ntm import cli; "
        f"code = cli.main(['sweep', '--quiet', '--out', {str(out)!r}, *{tiny_flags()!r}]); "
        "assert code == 0, code; assert 'ray' not in sys.modules, 'ray was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_ray_the_backend_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # every import of Ray fails, as uninstalled
    assert cli.main(["sweep", "--backend", "ray", "--out", str(tmp_path)]) == 2
    assert "--backend ray needs Ray: pip install 'torch-ntm[ray]'" in capsys.readouterr().err


def test_ray_flags_need_the_ray_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before Ray is needed: checked in this process (an ntm process each takes seconds).
    out = ["--out", str(tmp_path / "s")]
    assert cli.main(["sweep", "--stop", "asha", "--address", "auto", *out]) == 2
    assert "--address, --stop: for --backend ray only" in capsys.readouterr().err
    out = ["--backend", "ray", *out]
    for flags, said in [
        (["--stop-grace", "64"], "--stop-grace and --stop-factor are settings of --stop asha"),
        (["--stop", "asha", "--stop-grace", "0"], "--stop-grace must be a positive number"),
        (["--stop", "asha", "--stop-factor", "1"], "--stop-factor must be above 1, got 1.0"),
        (["--trial-cpus", "0"], "--trial-cpus must be positive, got 0.0"),
        (["--device", "cuda:1"], "use --device cuda, and Ray gives each run a GPU"),
    ]:
        assert cli.main(["sweep", *out, *flags]) == 2, flags
        assert said in capsys.readouterr().err
    # Refused by Ray's connection, in a process of its own (it imports Ray).
    result = _sweep(*out, "--address", "ray://head:10001")
    assert result.returncode == 2
    assert "Ray Client addresses are not supported" in result.stderr, result.stderr
