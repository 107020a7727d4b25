"""Starting the processes of a data-parallel run on this machine (``ntm train --nproc N``).

Each process gets the environment torchrun would give it (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and runs the same ``ntm`` command; see
:mod:`ntm.training.distributed` for what it does with them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import torch

from ntm import registry
from ntm.engines import devices
from ntm.registry import model_class
from ntm.runs.config import TrainConfig


def default_processes(train: TrainConfig, device: torch.device) -> int:
    """How many processes ``ntm train`` starts without ``--nproc``: 2 when two cores are
    free, each process has one thread and the batch has at least as many sequences as the
    model declares it needs to train faster in two processes (its
    ``two_processes_from_batch``: 16 for the NTM, 8 for the DNC, measured in
    benchmarks/README.md; a model that declares none trains in one); else 1. On a GPU one:
    a second process would need a second GPU (``--nproc N`` for N of them).
    ``$NTM_NPROC`` overrides."""
    if "WORLD_SIZE" in os.environ:  # one of the processes already started
        return 1
    chosen = os.environ.get("NTM_NPROC")
    if chosen is not None:
        try:
            return int(chosen)
        except ValueError:
            raise ValueError(f"NTM_NPROC={chosen!r} is not a number of processes") from None
    smallest = registry.two_processes_from_batch(model_class(train.model))
    if not smallest or device.type != "cpu":
        return 1
    if train.batch_size < smallest or train.threads != 1:
        return 1
    # sched_getaffinity is Linux's: elsewhere every core counts.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    free = (cores or 1) - os.getloadavg()[0]
    return 2 if free >= 1.5 else 1


def check_gpus(nproc: int, spec: str, device: torch.device) -> None:
    """Refuse a GPU run whose processes cannot each have a GPU of their own (process N
    trains on ``cuda:N``; nccl does not run two processes on one GPU)."""
    if device.type != "cuda" or nproc < 2:
        return
    if ":" in spec:
        raise ValueError(
            f"--device {spec} would put all {nproc} processes on one GPU: use --device cuda, "
            "which gives process N the GPU cuda:N"
        )
    count = torch.cuda.device_count()
    if nproc > count:
        raise ValueError(
            f"--nproc {nproc} on --device {spec}: one process per GPU, and this machine has "
            f"{count} ({', '.join(devices.available()[1:])})"
        )


def stop_with_parent() -> None:
    """In a started process (Linux): get SIGTERM when the launcher dies, even by SIGKILL,
    so no process trains on alone; SIGTERM makes it save a checkpoint and exit."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch(nproc: int, argv: Sequence[str]) -> int:
    """``python -m ntm ARGV`` in ``nproc`` processes on this machine, with the environment
    torchrun would give them; returns the exit code. Ctrl-C reaches every process, and each
    saves and exits; if one fails, the others are stopped."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    if "WORLD_SIZE" in os.environ:
        raise ValueError("--nproc starts processes itself; under torchrun leave it out")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    command = [sys.executable, "-m", "ntm", *argv]
    processes = [
        subprocess.Popen(
            command,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            preexec_fn=stop_with_parent,  # noqa: PLW1509 - one libc call, no locks taken
        )
        for r in range(nproc)
    ]

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    # Ctrl-C reaches the processes from the terminal; a SIGTERM sent here is passed on.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
    }
    try:
        failed = 0
        while any(process.poll() is None for process in processes):
            for process in processes:
                code = process.poll()
                if code not in (None, 0, 130) and not failed:
                    failed = code if code > 0 else 1
                    forward(signal.SIGTERM, None)
            time.sleep(0.2)
        codes = [process.returncode for process in processes]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failed or any(code not in (0, 130) for code in codes):
        return failed or next(code for code in codes if code not in (0, 130))
    return 130 if 130 in codes else 0
