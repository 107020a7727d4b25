"""Which device a command runs on: ``--device auto|cpu|cuda|cuda:N``.

``auto`` is CUDA where a GPU is available (the first one, or the process's own under
``--nproc``/torchrun), else the CPU. A device that is not there is refused with one line that
names it and what is available.
"""

from __future__ import annotations

import re

import torch

#: What ``--device`` accepts.
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


class DeviceError(ValueError):
    """A device that is malformed or not available here."""


def available() -> list[str]:
    """The devices a run may use here: ``cpu``, then ``cuda:0``, ``cuda:1``, ..."""
    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def is_form(spec: str) -> bool:
    """Whether ``spec`` is one of :data:`DEVICE_FORMS`."""
    return _PATTERN.fullmatch(spec) is not None


def check_form(spec: str) -> None:
    """Refuse a ``--device`` value of no known form (before anything is started)."""
    if not is_form(spec):
        raise DeviceError(f"--device {spec!r}: expected {DEVICE_FORMS}")


def resolve(spec: str, local_rank: int = 0) -> torch.device:
    """The device of ``spec``; ``local_rank``: this process's place on its machine, which
    picks its GPU for ``auto`` and ``cuda`` when several processes train (one per GPU)."""
    check_form(spec)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(spec.split(":")[1]) if ":" in spec else local_rank
    if index >= count:
        here = ", ".join(available())
        raise DeviceError(f"--device {spec}: no such device here (available: {here})")
    return torch.device("cuda", index)
