"""Data-parallel training across processes, with PyTorch's own ``torch.distributed``.

``torchrun --nproc-per-node N -m ntm train ...`` (or ``ntm train --nproc N``) starts N
processes; each reads its place from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), joins the process group
(gloo on the CPU, nccl on CUDA) and trains one replica of the model, starting from rank 0's
weights (:func:`broadcast`) and averaging gradients after each backward pass
(:func:`average_gradients`). Every process draws its own share of each batch (see
:func:`ntm.training.data.draw_batch`); only rank 0 reads and writes the run folder, and the
others receive the run's state from it.

A process leaves with :func:`leave`, which frees the process group and so joins its
worker threads while Python is whole. A gloo worker thread still alive when the
interpreter shuts down aborts the process ("terminate called without an active
exception") if it is dropping a finished collective's tensors at that moment: it needs
the GIL, which shutdown no longer hands out.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that reads and writes the run folder."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def share(self, total: int) -> range:
        """The slots of a global batch of ``total`` sequences that this process draws and
        trains on: a contiguous block, sizes differing by at most one."""
        return range(self.rank * total // self.size, (self.rank + 1) * total // self.size)


SINGLE = World()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def local_rank() -> int:
    """This process's place among the training processes on its machine (torchrun's
    ``LOCAL_RANK``; 0 for a single process): which GPU it trains on."""
    return _env_int("LOCAL_RANK", 0)


def join(device: torch.device | None = None) -> World:
    """This process's :class:`World` from torchrun's environment, joining the process group
    when there is more than one process. Without torchrun: a single process."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return SINGLE
    world = World(_env_int("RANK", 0), size)
    if not dist.is_initialized():
        # Imported after the group exists, torch._dynamo (which torch.optim imports when
        # the first optimiser is built) keeps references to it that outlive
        # destroy_process_group(), and with them its threads (see the module's notes).
        importlib.import_module("torch._dynamo")
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(device)  # nccl and the object collectives use this GPU
        dist.init_process_group(backend(device))
    return world


def backend(device: torch.device | None) -> str:
    """The process group's backend for training on ``device``: gloo on the CPU; on CUDA,
    nccl for the gradients and the step's flags, with gloo beside it for the host's values
    (counters, the stop request, rank 0's state), which then never pass through the GPU."""
    if device is not None and device.type == "cuda":
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def leave(world: World) -> None:
    """Leave the process group joined by :func:`join` (nothing for a single process), and
    end its threads: once this returns, no thread of torch.distributed is left running."""
    if world.parallel and dist.is_initialized():
        dist.destroy_process_group()  # the last reference: its destructor joins the threads


def broadcast(tensors: Iterable[torch.Tensor], world: World) -> None:
    """Overwrite ``tensors`` in place with rank 0's (a replica's weights and buffers)."""
    if not world.parallel:
        return
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def average_gradients(parameters: Iterable[torch.Tensor], world: World) -> None:
    """Replace every gradient by its mean over the processes, in one collective call.

    Every process has gradients for the same parameters (the same model ran the same
    code), so the flattened buffers line up."""
    if not world.parallel:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    sizes = [g.numel() for g in grads]
    for grad, mean in zip(grads, torch.split(flat, sizes), strict=True):
        grad.copy_(mean.view_as(grad))


def all_sum(values: list[float], world: World) -> list[float]:
    """Each value summed over all processes (float64, one collective call)."""
    if not world.parallel:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def any_on_device(flag: torch.Tensor, world: World) -> torch.Tensor:
    """Whether ``flag`` (a boolean scalar) is set on any process, computed where it lies:
    on a GPU the collective is queued like a kernel, with no host sync."""
    if not world.parallel:
        return flag
    count = flag.to(torch.int32)
    dist.all_reduce(count)
    return count > 0


def from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every process (any picklable object: configs, state dicts).

    Objects travel between the processes of one training job, never from a file."""
    if not world.parallel:
        return value
    box = [value if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
