"""Training throughput on the copy task's paper model, for every execution path.

Run: ``python benchmarks/train_throughput.py`` (add ``--quick`` for batch 32 only).

Each row: training sequences per second (forward, backward, Adam step) on copy batches with
lengths 1 to 20, the ratio to the plain eager path at the same batch size with one thread,
measured in this run, and the achieved floating-point rate as a fraction of a
matrix-multiply peak measured at the start with the same number of threads.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import ntm
from ntm import fused

MODEL = {"controller_size": 100, "memory_size": 128, "word_size": 20}


def matmul_peak(threads: int, size: int = 512, seconds: float = 1.5) -> float:
    """GFLOP/s of a square float32 matrix product: the machine's practical peak."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def flops_per_step(task: ntm.tasks.CopyTask) -> float:
    """Floating-point operations of one sequence-step, forward and backward (about 3x forward)."""
    c, n, m = MODEL["controller_size"], MODEL["memory_size"], MODEL["word_size"]
    i, o, s = task.input_size, task.output_size, 3
    head_params = (m + 3 + s) + (3 * m + 3 + s)
    forward = 2 * 4 * c * (i + m + c)  # LSTM controller
    forward += 2 * head_params * (c + m) + 2 * o * (c + m)  # head and output layers
    forward += 2 * (4 * n * m + 12 * n)  # two addressings: norms, dots, softmaxes, shift, sharpen
    forward += 5 * n * m + 2 * n * m  # erase-and-add write, read
    return 3.0 * forward


def make_step(model: torch.nn.Module, batches: list[ntm.Batch]) -> Callable[[], None]:
    """One training update per call, cycling through ``batches``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    count = 0

    def step() -> None:
        nonlocal count
        batch = batches[count % len(batches)]
        count += 1
        logits, _ = model(batch.inputs)
        loss = ntm.tasks.loss_bits(logits, batch.targets, batch.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def measure(step: Callable[[], None], seconds: float) -> float:
    """Median seconds per call over repeats lasting about ``seconds`` in all."""
    step()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 32 only")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement")
    parser.add_argument("--engines", default="eager,fused,compiled")
    args = parser.parse_args()
    batch_sizes = [32] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    engines = args.engines.split(",")
    task = ntm.make_task("copy")
    peaks = {threads: matmul_peak(threads) for threads in (1, 2)}
    print(f"matmul peak: {peaks[1]:.1f} GFLOP/s with 1 thread, {peaks[2]:.1f} with 2 threads")
    print(f"model: LSTM controller {MODEL['controller_size']}, 1 read + 1 write head, 128 x 20")
    print(f"{'batch':>5} {'engine':>9} {'threads':>7} {'seq/s':>9} {'x eager':>8} {'GFLOP/s':>8} "
          f"{'of peak':>8}")  # fmt: skip
    flops = flops_per_step(task)
    for batch_size in batch_sizes:
        generator = torch.Generator().manual_seed(0)
        batches = [task.sample(batch_size, generator) for _ in range(8)]
        mean_steps = statistics.mean(b.inputs.shape[0] for b in batches)
        baseline = None
        for engine in engines:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                torch.manual_seed(0)
                model = ntm.NTM(task.input_size, task.output_size, fused=engine != "eager", **MODEL)
                fused.use_compiled(engine == "compiled")
                step = make_step(model, batches)
                if engine == "compiled":
                    for _ in range(len(batches)):
                        step()  # compile outside the timing; time_to_solve counts it
                per_batch = measure(step, args.seconds)
                rate = batch_size / per_batch
                if baseline is None:
                    baseline = rate
                gflops = flops * mean_steps * batch_size / per_batch / 1e9
                ratio = rate / baseline
                print(f"{batch_size:>5} {engine:>9} {threads:>7} {rate:>9.1f} {ratio:>7.2f}x "
                      f"{gflops:>8.2f} {gflops / peaks[threads]:>7.1%}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
