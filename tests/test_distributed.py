"""Data-parallel training with torch.distributed (gloo, two processes on this machine).

The tests that start processes are marked ``processes``; the default run checks two
processes against one in ``test_contract``."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from ntm import cli
from ntm.runs import checkpoint as ckpt
from ntm.runs import config as runconfig
from ntm.runs.load import build_model
from ntm.tasks import concat, make_task
from ntm.training import data, evaluator, launch
from ntm.training import trainer as training
from ntm.training.distributed import World

from .conftest import tiny_flags, tiny_run


def _flags(**train: object) -> list[str]:
    return tiny_flags(**{"eval_every": 16, **train})


def _ntm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ntm", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _columns(run_dir: Path) -> list[tuple[float, ...]]:
    keys = ("sequences", "train_cost", "train_bit_errors", "eval_cost", "eval_bit_errors")
    return [tuple(row[k] for k in keys) for row in ckpt.read_metrics(run_dir)]


def _assert_same_curves(a: Path, b: Path) -> None:
    rows_a, rows_b = _columns(a), _columns(b)
    assert len(rows_a) == len(rows_b) > 0
    for x, y in zip(rows_a, rows_b, strict=True):
        assert x[0] == y[0]
        torch.testing.assert_close(torch.tensor(x[1:]), torch.tensor(y[1:]), rtol=1e-5, atol=1e-5)


def test_shares_cover_the_batch_once() -> None:
    for size in (1, 2, 7, 16, 33):
        for processes in range(1, size + 1):
            shares = [World(r, processes).share(size) for r in range(processes)]
            assert [s for share in shares for s in share] == list(range(size))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_shares_drawn_apart_are_the_batch_drawn_whole() -> None:
    task = make_task("copy", max_length=6)
    whole = data.draw_batch(task, 5, 11, range(8))
    parts = [data.draw_batch(task, 5, 11, World(r, 3).share(8)) for r in range(3)]
    for a, b in zip(concat(parts), whole, strict=True):
        assert torch.equal(a, b)
    other = data.draw_batch(task, 5, 12, range(8))
    assert other.inputs.shape != whole.inputs.shape or not torch.equal(other.inputs, whole.inputs)


@pytest.mark.processes
def test_resume_with_another_number_of_processes(tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    training.train(tiny_run(max_sequences=96, eval_every=16), whole, quiet=True)
    # Two processes begin, one continues, two finish.
    first = _ntm("train", *_flags(max_sequences=48), "--run-dir", str(split), "--nproc", "2")
    assert first.returncode == 0, first.stderr
    training.resume(split, {"max_sequences": 64}, quiet=True)
    last = _ntm("train", "--resume", str(split), "--max-sequences", "96", "--nproc", "2")
    assert last.returncode == 0, last.stderr
    _assert_same_curves(whole, split)


@pytest.mark.processes
def test_two_processes_start_from_the_same_weights(tmp_path: Path) -> None:
    """``--init-from`` in two processes: rank 0 reads the source, both train from it, and
    the curve is the one process's."""
    source, one, two = tmp_path / "source", tmp_path / "one", tmp_path / "two"
    training.train(tiny_run(max_sequences=64, seed=5), source, quiet=True)
    training.train(
        tiny_run(max_sequences=64, eval_every=16, init_from=str(source)), one, quiet=True
    )
    flags = _flags(max_sequences=64, init_from=str(source))
    result = _ntm("train", *flags, "--run-dir", str(two), "--nproc", "2")
    assert result.returncode == 0, result.stderr
    _assert_same_curves(one, two)
    fresh = tmp_path / "fresh"
    training.train(tiny_run(max_sequences=64, eval_every=16), fresh, quiet=True)
    assert _columns(fresh)[0] != _columns(one)[0]  # the source's weights made a difference


def test_bad_process_counts_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", *_flags(), "--run-dir", str(tmp_path / "r"), "--nproc", "0"]) == 2
    assert "--nproc must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--batch-size 2 cannot be shared among 3 processes"):
        training.Trainer(tiny_run(batch_size=2), tmp_path / "r", world=World(0, 3))


def _endless_two_process_run(run_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``ntm train --nproc 2`` with no end in sight, in its own process group (as a
    terminal's foreground job), returned once its first evaluation is written."""
    flags = [*_flags(max_sequences=10**6, target_bit_errors=0, eval_every=64), "--quiet"]
    command = [sys.executable, "-m", "ntm", "train", *flags, "--run-dir", str(run_dir)]
    with log.open("ab") as handle:
        launcher = subprocess.Popen(
            [*command, "--nproc", "2"], stderr=handle, start_new_session=True
        )
    while not ckpt.read_metrics(run_dir):
        assert launcher.poll() is None, log.read_text()
        time.sleep(0.2)
    return launcher


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The processes that ``pid`` started (Linux's /proc)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.processes
def test_ctrl_c_stops_every_process_with_a_checkpoint(tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    launcher = _endless_two_process_run(run_dir, log)
    os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C does: every process gets it
    assert launcher.wait() == 130
    assert "Traceback" not in log.read_text()
    assert ckpt.load_checkpoint(run_dir).trainer["progress"]["sequences"] >= 64
    assert "interrupted at" in (run_dir / ckpt.LOG_FILE).read_text()


@pytest.mark.processes
def test_killing_the_launcher_stops_its_processes(tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    launcher = _endless_two_process_run(run_dir, log)
    trainers = _children(launcher.pid)
    assert len(trainers) == 2
    launcher.kill()  # SIGKILL: the launcher cannot pass anything on
    launcher.wait()
    # Its processes get SIGTERM from the kernel, save and stop instead of training on.
    while any(_running(pid) for pid in trainers):
        time.sleep(0.2)
    assert "interrupted at" in (run_dir / ckpt.LOG_FILE).read_text()


def test_default_process_count(monkeypatch: pytest.MonkeyPatch) -> None:
    train, cpu = tiny_run().train, torch.device("cpu")
    monkeypatch.delenv("NTM_NPROC")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert launch.default_processes(train, cpu) == 2  # two idle cores
    assert launch.default_processes(train, torch.device("cuda", 0)) == 1  # one GPU: one process
    assert launch.default_processes(runconfig.TrainConfig(batch_size=1), cpu) == 1
    assert launch.default_processes(runconfig.TrainConfig(batch_size=8), cpu) == 1  # slower
    dnc_at_8 = runconfig.TrainConfig(model="dnc", batch_size=8)
    assert launch.default_processes(dnc_at_8, cpu) == 2  # a DNC gains at batch 8
    assert launch.default_processes(runconfig.TrainConfig(threads=2), cpu) == 1
    assert launch.default_processes(runconfig.TrainConfig(model="lstm"), cpu) == 1
    assert launch.default_processes(runconfig.TrainConfig(model="dnc"), cpu) == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert launch.default_processes(train, cpu) == 1  # one core busy
    monkeypatch.setenv("NTM_NPROC", "3")
    assert launch.default_processes(train, cpu) == 3
    monkeypatch.setenv("NTM_NPROC", "two")
    with pytest.raises(ValueError, match="NTM_NPROC='two' is not a number of processes"):
        launch.default_processes(train, cpu)
    monkeypatch.setenv("NTM_NPROC", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")  # a process that `--nproc` or torchrun started
    assert launch.default_processes(train, cpu) == 1


#: ``ntm train ARGS`` as one of the processes ``--nproc`` starts; it prints its exit code and
#: the names of its threads just before it leaves the process group and after it returns.
_TRAIN_THEN_LIST_THREADS = """
import json, os, sys
from pathlib import Path
from ntm import cli
from ntm.training import distributed


def threads():
    return sorted(Path(f"/proc/self/task/{t}/comm").read_text().strip()
                  for t in os.listdir("/proc/self/task"))

seen = {}
leave = distributed.leave

def leave_and_look(world):
    seen["before"] = threads()
    leave(world)

distributed.leave = leave_and_look
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "before": seen["before"], "after": threads()}))
"""


def _group_threads(names: list[str]) -> list[str]:
    return [name for name in names if "gloo" in name or "tcpstore" in name]


@pytest.mark.processes
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_no_thread_of_the_process_group_outlives_training(tmp_path: Path) -> None:
    """A gloo worker thread alive when Python shuts down aborts the process ("terminate
    called without an active exception") if it is releasing a collective's tensors at that
    moment; so when ``ntm train`` returns in a started process, the group's threads, there
    while it trained, are gone."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}  # fmt: skip
    flags = [*_flags(max_sequences=48), "--run-dir", str(tmp_path / "run")]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _TRAIN_THEN_LIST_THREADS, "train", *flags],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        report = json.loads(out.splitlines()[-1])
        assert report["code"] == 0
        assert _group_threads(report["before"]), report["before"]
        assert not _group_threads(report["after"]), report["after"]


@pytest.mark.processes
def test_nproc_from_the_environment_trains(tmp_path: Path) -> None:
    """``NTM_NPROC=2 ntm train``: the two processes it starts inherit the variable, and
    train rather than start processes of their own."""
    env = {**os.environ, "NTM_NPROC": "2"}
    flags = [*_flags(max_sequences=32), "--run-dir", str(tmp_path / "run")]
    result = subprocess.run(
        [sys.executable, "-m", "ntm", "train", *flags], env=env, check=False,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 processes" in (tmp_path / "run" / ckpt.LOG_FILE).read_text()


def test_gpu_processes_need_a_gpu_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gpu = torch.device("cuda", 0)
    launch.check_gpus(2, "cuda", gpu)
    launch.check_gpus(2, "auto", gpu)
    launch.check_gpus(4, "cpu", torch.device("cpu"))
    launch.check_gpus(1, "cuda:1", torch.device("cuda", 1))
    with pytest.raises(ValueError, match=r"--nproc 3 on --device cuda: one process per "
                       r"GPU, and this machine has 2 \(cuda:0, cuda:1\)"):  # fmt: skip
        launch.check_gpus(3, "cuda", gpu)
    with pytest.raises(ValueError, match="--device cuda:1 would put all 2 processes on one"):
        launch.check_gpus(2, "cuda:1", torch.device("cuda", 1))


@pytest.mark.processes
def test_two_processes_follow_one_schedule(tmp_path: Path) -> None:
    """The plateau schedule's decisions (made by rank 0) reach every process: two processes
    lower the rate where one does and learn what it learns."""
    one, two = tmp_path / "one", tmp_path / "two"
    schedule = {"schedule": "plateau", "lr_patience": 1, "lr_decay": 0.5, "plateau_after": 1.0}
    training.train(tiny_run(max_sequences=96, eval_every=16, **schedule), one, quiet=True)
    flags = _flags(max_sequences=96, **schedule)
    result = _ntm("train", *flags, "--run-dir", str(two), "--nproc", "2")
    assert result.returncode == 0, result.stderr
    _assert_same_curves(one, two)
    rates = [row["lr"] for row in ckpt.read_metrics(one)]
    assert len(set(rates)) > 1  # the schedule acted
    assert [row["lr"] for row in ckpt.read_metrics(two)] == rates


def _measure_share(rank: int, port: int, out: str) -> None:
    """Rank ``rank`` of two: its Evaluator's result and the held-out sequences it scored."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        run = tiny_run(eval_size=7)
        model = build_model(run)
        seen: list[int] = []
        scored = evaluator.evaluate

        def counting(model: torch.nn.Module, batch: object, **kwargs: object) -> object:
            seen.append(batch.inputs.shape[1])  # type: ignore[attr-defined]
            return scored(model, batch, **kwargs)  # type: ignore[arg-type]

        evaluator.evaluate = counting  # type: ignore[assignment]
        result = evaluator.Evaluator(run, Path(out), World(rank, 2)).measure(model, False)
        Path(out, f"rank{rank}.json").write_text(json.dumps({"result": result, "seen": seen}))
    finally:
        dist.destroy_process_group()


@pytest.mark.processes
def test_every_process_evaluates_its_share_and_all_get_the_whole_result(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_measure_share, args=(port, str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["seen"] for r in ranks] == [[3], [4]]  # 7 held-out sequences, shared
    torch.manual_seed(0)
    run = tiny_run(eval_size=7)
    whole = evaluator.Evaluator(run, tmp_path).measure(build_model(run), False)
    for r in ranks:
        torch.testing.assert_close(
            torch.tensor(r["result"]), torch.tensor(whole), rtol=1e-6, atol=0
        )
