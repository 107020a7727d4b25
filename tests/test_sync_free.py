"""The trainer's sync-free step (the GPU's): checks and counters kept on the device.

A GPU runs it by default; here it is switched on for the CPU (``trainer.sync_free``), where
it must train exactly what the host-checked step trains, skip what that step skips, and roll
back as it does."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ntm.runs import checkpoint as ckpt
from ntm.training import distributed
from ntm.training import trainer as training
from ntm.training.optim import GravesRMSprop

from .conftest import TINY_MODEL, TINY_TASK, TINY_TRAIN, tiny_run

ROOT = Path(__file__).resolve().parents[1]


def _fit(run_dir: Path, sync_free: bool, **train: object) -> training.TrainResult:
    trainer = training.start(tiny_run(**train), run_dir, quiet=True)
    trainer.sync_free = sync_free
    return trainer.fit()


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    """The metrics rows, but for the seconds they took."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in ckpt.read_metrics(run_dir)]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(run_dir).model


@pytest.mark.parametrize(
    "setting", [{"optimizer": "adam"}, {"optimizer": "rmsprop"}, {"curriculum": True}], ids=str
)
def test_the_device_step_trains_what_the_host_step_trains(
    tmp_path: Path, setting: dict[str, object]
) -> None:
    settings = {"max_sequences": 128, "eval_every": 32, **setting}
    host = _fit(tmp_path / "host", False, **settings)
    device = _fit(tmp_path / "device", True, **settings)
    assert device.losses == host.losses and len(host.losses) == 8
    assert _metrics(tmp_path / "device") == _metrics(tmp_path / "host")
    a, b = _weights(tmp_path / "host"), _weights(tmp_path / "device")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_device_run_is_the_uninterrupted_one(tmp_path: Path) -> None:
    whole = _fit(tmp_path / "whole", True, max_sequences=128, eval_every=32)
    _fit(tmp_path / "split", True, max_sequences=64, eval_every=32)
    trainer = training.reopen(tmp_path / "split", {"max_sequences": 128}, quiet=True)
    trainer.sync_free = True
    rest = trainer.fit()
    assert rest.losses == whole.losses[4:]
    assert _metrics(tmp_path / "split") == _metrics(tmp_path / "whole")


def test_graves_rmsprop_skips_an_update_flagged_on_the_device() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = GravesRMSprop([w], lr=0.1)
    w.grad = torch.tensor([0.2, -0.4])
    opt.step()
    before = (w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()})
    w.grad = torch.tensor([float("nan"), 1.0])
    opt.found_inf = torch.tensor(1.0)  # type: ignore[attr-defined]
    opt.step()
    assert torch.equal(w.detach(), before[0])
    assert all(torch.equal(opt.state[w][k], v) for k, v in before[1].items())
    # Flag clear: the update is the one taken without a flag.
    twin = torch.nn.Parameter(w.detach().clone())
    plain = GravesRMSprop([twin], lr=0.1)
    plain.state[twin] = {k: v.clone() for k, v in opt.state[w].items()}
    w.grad = twin.grad = torch.tensor([0.3, 0.1])
    opt.found_inf = torch.tensor(0.0)  # type: ignore[attr-defined]
    opt.step()
    plain.step()
    assert torch.equal(w.detach(), twin.detach()) and not torch.equal(w.detach(), before[0])


def test_the_backend_on_cuda_keeps_host_values_off_the_gpu() -> None:
    assert distributed.backend(torch.device("cuda", 1)) == "cpu:gloo,cuda:nccl"
    assert distributed.backend(torch.device("cpu")) == "gloo"
    assert distributed.backend(None) == "gloo"


#: One rank of a two-process sync-free run: argv are the settings (JSON) and the folder.
WORKER = """
import json, sys
from pathlib import Path
import torch
from ntm.training import distributed
from ntm.training import trainer as training
from ntm.runs.config import resolve_config
train, task, model = json.loads(sys.argv[1])
torch.set_num_threads(1)
world = distributed.join(torch.device("cpu"))
trainer = training.start(resolve_config(train, task, model), Path(sys.argv[2]), quiet=True,
                         world=world)
trainer.sync_free = True
trainer.fit()
distributed.leave(world)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.processes
def test_two_sync_free_processes_learn_what_one_does(tmp_path: Path) -> None:
    settings = {**TINY_TRAIN, "max_sequences": 96, "eval_every": 16}
    _fit(tmp_path / "one", False, max_sequences=96, eval_every=16)
    argv = [json.dumps([settings, TINY_TASK, TINY_MODEL]), str(tmp_path / "two")]
    port = str(_free_port())
    workers = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}  # fmt: skip
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *argv], env=env, cwd=ROOT, stderr=subprocess.PIPE
            )
        )
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()
    keys = ("sequences", "train_cost", "train_bit_errors", "eval_cost", "eval_bit_errors")
    rows = [[tuple(r[k] for k in keys) for r in ckpt.read_metrics(tmp_path / name)]
            for name in ("one", "two")]  # fmt: skip
    assert len(rows[0]) == len(rows[1]) == 6
    for x, y in zip(*rows, strict=True):
        assert x[0] == y[0]
        torch.testing.assert_close(torch.tensor(x[1:]), torch.tensor(y[1:]), rtol=1e-5, atol=1e-5)
