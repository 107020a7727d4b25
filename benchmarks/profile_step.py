"""Where a training step's time goes: data, forward, loss, backward, clipping, optimiser.

Run: ``python benchmarks/profile_step.py`` (``--engine compiled`` for the compiled engine,
``--batch 8``, ``--threads 2``).

Trains the copy task's paper model (as ``benchmarks/train_throughput.py`` does) on batches
drawn as ``ntm train`` draws them, one thread, and prints milliseconds per update in each
part of the step: drawing the batch, the forward pass, the loss, the backward pass,
gradient clipping and the Adam step. For the native engine the forward and backward rows
are split into the C recurrence and the rest (the PyTorch products of the input projection,
output layer and weight gradients, the buffers, the autograd wrapper). Then the operations
that took the most time by PyTorch's profiler, over a few more updates.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

import ntm
import ntm.native

MODEL = {"controller_size": 100, "memory_size": 128, "word_size": 20}


def timed_native_calls(totals: dict[str, float]) -> Callable[[], None]:
    """Time every call into the native library under ``totals['C forward' / 'C backward']``;
    returns the function that undoes it."""
    original = ntm.native._call

    def call(name: str, dims: Any, tensors: list[torch.Tensor]) -> None:
        start = time.perf_counter()
        original(name, dims, tensors)
        part = "C forward" if name == "ntm_forward" else "C backward"
        totals[part] += time.perf_counter() - start

    ntm.native._call = call

    def undo() -> None:
        ntm.native._call = original

    return undo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="native", choices=ntm.model.ENGINES)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="time measured")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    task = ntm.make_task("copy")
    model = ntm.NTM(task.input_size, task.output_size, engine=args.engine, **MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    totals: dict[str, float] = defaultdict(float)
    undo = timed_native_calls(totals) if args.engine == "native" else None

    def step(clock: dict[str, float] | None) -> None:
        marks = [time.perf_counter()]
        batch = task.sample(args.batch, generator)
        marks.append(time.perf_counter())
        logits, _ = model(batch.inputs)
        marks.append(time.perf_counter())
        loss = ntm.tasks.loss_bits(logits, batch.targets, batch.mask)
        marks.append(time.perf_counter())
        optimizer.zero_grad()
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if clock is not None:
            parts = ("data", "forward", "loss", "backward", "clip", "optimizer")
            for part, (a, b) in zip(parts, itertools.pairwise(marks), strict=True):
                clock[part] += b - a

    for _ in range(5 if args.engine != "compiled" else 20):
        step(None)  # warm up (and compile)
    totals.clear()
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        step(totals)
        updates += 1
    elapsed = time.perf_counter() - start
    if undo is not None:
        undo()
    for part in ("forward", "backward"):
        inside = totals.pop(f"C {part}", None)
        if inside is not None:
            totals[f"{part}: C recurrence"] = inside
            totals[f"{part}: the rest"] = totals.pop(part) - inside
    print(f"engine {args.engine}, batch {args.batch}, {args.threads} thread(s): "
          f"{updates * args.batch / elapsed:.1f} sequences/s over {updates} updates")  # fmt: skip
    print(f"{'part':<24} {'ms/update':>10} {'share':>7}")
    for part, seconds in totals.items():
        print(f"{part:<24} {seconds / updates * 1e3:>10.2f} {seconds / elapsed:>7.1%}")
    rest = elapsed - sum(totals.values())
    print(f"{'(loop)':<24} {rest / updates * 1e3:>10.2f} {rest / elapsed:>7.1%}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            step(None)
    print("\nPyTorch profiler, 10 updates, by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
