"""Training throughput on the copy task's paper model, for every execution path, and of the
DNC with the same controller and memory beside it.

Run: ``python benchmarks/train_throughput.py`` (add ``--quick`` for batch 32 only;
``--json FILE`` keeps what it printed as a record, which :func:`table` renders as Markdown
and ``scripts/make_results.py`` puts into ``benchmarks/README.md``).

Each row: training sequences per second (forward, backward, Adam step) on copy batches with
lengths 1 to 20, the ratio to the eager engine with one process and one thread at the same
batch size, measured in this run, and the achieved floating-point rate as a fraction of a
matrix-multiply peak measured at the start with as many threads as the row uses cores.

The eager 1x1 row is measured first at every batch size, also when ``--engines`` or
``--layouts`` leave it out (it is then marked as a reference), so "x eager" always means
the same thing. A layout needing more cores (processes x threads) than this process may run
on is refused before anything is measured, with exit status 2: its numbers would measure
the machine's sharing, not the layout.

The engine ``dnc`` is a :class:`ntm.DNC` (one read head, one write head, the same LSTM
controller and 128 x 20 memory) on its eager engine, ``dnc-native`` the same on its native
engine (:mod:`ntm.engines.native.dnc`); their FLOP count adds the temporal link matrix's (N x N per
step), so "of peak" compares like with like.

The row ``naive`` is the plain eager batched NTM that the speed targets are set against
(``--baseline``, by default ``../shared/baselines/naive_ntm.py`` beside this repository:
the same model and task, one process and one thread, timed by its own ``train``), and the
column "x naive" divides by it.

Rows with ``procs`` 2 train data-parallel over gloo, as ``ntm train --nproc 2`` does: two
processes of ``threads`` threads share each batch and average their gradients
(``ntm.training.distributed.average_gradients``, one all-reduce per update); the rate is the whole
batch's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ntm
from ntm.training.distributed import SINGLE, World, average_gradients

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header

MODEL = {"controller_size": 100, "memory_size": 128, "word_size": 20}
#: The DNC's rows: their engine names here, and the DNC's engine each runs.
DNC_ENGINES = {"dnc": "eager", "dnc-native": "native"}
#: The row that "x eager" divides by: (engine, processes, threads).
REFERENCE = ("eager", 1, 1)


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


def dnc_flops_per_step(task: ntm.tasks.CopyTask) -> float:
    """Floating-point operations of one DNC sequence-step, forward and backward (about 3x
    forward)."""
    c, n, m = MODEL["controller_size"], MODEL["memory_size"], MODEL["word_size"]
    i, o, r = task.input_size, task.output_size, 1
    interface = ntm.models.dnc.addressing.InterfaceLayout(r, m).size
    forward = 2 * 4 * c * (i + r * m + c)  # LSTM controller
    forward += 2 * interface * c + 2 * o * (c + r * m)  # interface and output layers
    forward += 2 * (4 * n * m + 4 * n)  # two content weightings
    forward += 5 * n * m + 2 * n * m + 20 * n  # write, read, usage and allocation
    forward += 6 * n * n + 4 * r * n * n  # link update, forward and backward weightings
    return 3.0 * forward


def build_model(engine: str, task: ntm.tasks.CopyTask) -> torch.nn.Module:
    """The NTM on ``engine``, or for ``dnc`` and ``dnc-native`` the DNC (eager, native)."""
    if engine in DNC_ENGINES:
        return ntm.DNC(task.input_size, task.output_size, engine=DNC_ENGINES[engine], **MODEL)
    return ntm.NTM(task.input_size, task.output_size, engine=engine, **MODEL)


def make_step(
    model: torch.nn.Module, batches: list[ntm.Batch], world: World = SINGLE
) -> Callable[[], None]:
    """One training update per call, cycling through ``batches``; with several processes
    (``world``) the gradients are averaged over them before the update."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as ntm train
    count = 0

    def step() -> None:
        nonlocal count
        batch = batches[count % len(batches)]
        count += 1
        logits, _ = model(batch.inputs)
        loss = ntm.tasks.loss_bits(logits, batch.targets, batch.mask)
        optimizer.zero_grad()
        loss.backward()
        average_gradients(model.parameters(), world)
        optimizer.step()

    return step


def measure(step: Callable[[], None], seconds: float) -> float:
    """Mean seconds per call over repeats lasting about ``seconds`` in all: every pause
    counts (garbage collection, page faults), as it does in a training run and in the
    plain NTM's own timing."""
    step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        step()
        count += 1
    return (time.perf_counter() - start) / count


def _process_worker(
    rank: int,
    size: int,
    threads: int,
    engine: str,
    batches: list[ntm.Batch],
    seconds: float,
    port: int,
) -> None:
    """One data-parallel process: trains on its share of every batch; rank 0 reports the
    mean seconds per update through a file."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    task = ntm.make_task("copy")
    model = build_model(engine, task)
    share = World(rank, size)
    mine = []
    for batch in batches:
        part = share.share(batch.inputs.shape[1])
        mine.append(ntm.Batch(*(x[:, part.start : part.stop] for x in batch)))
    step = make_step(model, mine, share)
    if engine == "compiled":
        for _ in range(len(mine)):
            step()
    # Every process runs the same number of updates: rank 0 decides how many fit.
    count = torch.tensor([0])
    if rank == 0:
        start = time.perf_counter()
        step()
        count[0] = max(3, int(seconds / (time.perf_counter() - start)))
    else:
        step()
    dist.broadcast(count, 0)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(int(count[0])):
        step()  # the gradients' all-reduce keeps the processes in step
    dist.barrier()
    if rank == 0:
        seconds_each = (time.perf_counter() - start) / int(count[0])
        Path(os.environ["NTM_BENCH_OUT"]).write_text(str(seconds_each))
    dist.destroy_process_group()


def measure_processes(
    engine: str, batches: list[ntm.Batch], seconds: float, size: int, threads: int
) -> float:
    """Mean seconds per update of ``size`` data-parallel processes of ``threads`` threads."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "seconds"
        os.environ["NTM_BENCH_OUT"] = str(out)
        mp.spawn(_process_worker, args=(size, threads, engine, batches, seconds, port), nprocs=size)
        return float(out.read_text())


def measure_layout(
    engine: str, procs: int, threads: int, batches: list[ntm.Batch], seconds: float
) -> float:
    """Mean seconds per training update of one engine in one layout."""
    if procs > 1:
        return measure_processes(engine, batches, seconds, procs, threads)
    task = ntm.make_task("copy")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(engine, task)
    step = make_step(model, batches)
    if engine == "compiled":
        for _ in range(len(batches)):
            step()  # compile outside the timing; time_to_solve counts it
    return measure(step, seconds)


def default_baseline() -> str:
    path = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "naive_ntm.py"
    return str(path) if path.exists() else "none"


def measure_baseline(path: str, batch_size: int, seconds: float) -> float:
    """Seconds per training update of the plain NTM at ``path`` (its ``train(sequences,
    batch)`` returns the seconds it took), with one thread."""
    spec = importlib.util.spec_from_file_location("naive_ntm", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    warm = 2
    first = module.train(warm * batch_size, batch_size, threads=1)
    updates = max(warm, round(seconds / (first / warm)))
    return float(module.train(updates * batch_size, batch_size, threads=1)) / updates


def available_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 32 only")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement")
    parser.add_argument(
        "--engines",
        default="eager,fused,compiled,native,dnc,dnc-native",
        help="NTM engines (eager, fused, compiled, native) and the DNC's (dnc, dnc-native)",
    )
    parser.add_argument(
        "--baseline",
        default=default_baseline(),
        help="the plain NTM to compare with (a naive_ntm.py), or none",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows here")
    parser.add_argument(
        "--layouts",
        default="1x1,1x2,2x1",
        help="PROCESSESxTHREADS to measure: 1x1, 1x2 (one process, two threads), 2x1 (two "
        "single-threaded data-parallel processes)",
    )
    args = parser.parse_args()
    layouts = [tuple(int(n) for n in item.split("x")) for item in args.layouts.split(",")]
    batch_sizes = [32] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    engines = args.engines.split(",")
    cores = available_cores()
    too_big = [f"{p}x{t} needs {p * t}" for p, t in layouts if p * t > cores]
    if too_big:
        print(
            f"{parser.prog}: too few cores for --layouts: {', '.join(too_big)} "
            f"(processes x threads); {cores} available here",
            file=sys.stderr,
        )
        return 2
    asked = [(engine, procs, threads) for engine in engines for procs, threads in layouts]
    task = ntm.make_task("copy")
    peaks = {n: matmul_peak(n) for n in sorted({1} | {p * t for p, t in layouts})}
    measured = ", ".join(f"{peaks[n]:.1f} with {n} thread{'s' * (n > 1)}" for n in peaks)
    print(f"matmul peak in GFLOP/s: {measured}")
    print(f"model: LSTM controller {MODEL['controller_size']}, 1 read + 1 write head, 128 x 20")
    column = "x eager: against the eager engine, 1 process, 1 thread, at the same batch size"
    if REFERENCE not in asked:
        column += "; not asked for, so measured too (rows marked 'reference')"
    print(column)
    baseline = None if args.baseline == "none" else args.baseline
    if baseline:
        print(f"naive: {baseline}; x naive: against it at the same batch size")
    print(f"{'batch':>5} {'engine':>9} {'procs':>5} {'threads':>7} {'seq/s':>9} {'x eager':>8} "
          f"{'x naive':>8} {'GFLOP/s':>8} {'of peak':>8}")  # fmt: skip
    flops, dnc_flops = flops_per_step(task), dnc_flops_per_step(task)
    record: dict[str, Any] = {
        **header("train_throughput"),
        "matmul_peak_gflops": {str(n): peaks[n] for n in peaks},
        "rows": [],
    }
    for batch_size in batch_sizes:
        generator = torch.Generator().manual_seed(0)
        batches = [task.sample(batch_size, generator) for _ in range(8)]
        mean_steps = statistics.mean(b.inputs.shape[0] for b in batches)
        rows = [REFERENCE, *(row for row in asked if row != REFERENCE)]
        if baseline:
            rows.insert(1, ("naive", 1, 1))
        reference = naive = 0.0
        for engine, procs, threads in rows:
            if batch_size < procs:
                continue
            if engine == "naive":
                assert baseline is not None
                per_batch = measure_baseline(baseline, batch_size, args.seconds)
            else:
                per_batch = measure_layout(engine, procs, threads, batches, args.seconds)
            rate = batch_size / per_batch
            reference = reference or rate  # the reference row is measured first
            if engine == "naive":
                naive = rate
            per_step = dnc_flops if engine in DNC_ENGINES else flops
            gflops = per_step * mean_steps * batch_size / per_batch / 1e9
            note = "" if (engine, procs, threads) in asked or engine == "naive" else "  reference"
            against = f"{rate / naive:>7.2f}x" if naive else f"{'':>8}"
            record["rows"].append({
                "batch": batch_size, "engine": engine, "procs": procs, "threads": threads,
                "seq_per_s": rate, "x_eager": rate / reference,
                "x_naive": rate / naive if naive else None, "gflops": gflops,
                "of_peak": gflops / peaks[procs * threads], "reference": bool(note),
            })  # fmt: skip
            print(f"{batch_size:>5} {engine:>9} {procs:>5} {threads:>7} {rate:>9.1f} "
                  f"{rate / reference:>7.2f}x {against} {gflops:>8.2f} "
                  f"{gflops / peaks[procs * threads]:>7.1%}{note}", flush=True)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def table(record: dict[str, Any]) -> list[str]:
    """A record of ``--json`` as a Markdown table, with the command and date it came from."""
    naive = any(row["x_naive"] is not None for row in record["rows"])
    lines = [
        f"{caption(record)}:",
        "",
        "| batch | engine | procs | threads | seq/s | x eager |"
        + (" x naive |" if naive else "")
        + " GFLOP/s | of peak |",
        "|---:|---|---:|---:|---:|---:|" + ("---:|" if naive else "") + "---:|---:|",
    ]
    for row in record["rows"]:
        cells = [str(row["batch"]), row["engine"], str(row["procs"]), str(row["threads"]),
                 f"{row['seq_per_s']:.1f}", f"{row['x_eager']:.2f}"]  # fmt: skip
        if naive:
            cells.append("" if row["x_naive"] is None else f"{row['x_naive']:.2f}")
        cells += [f"{row['gflops']:.2f}", f"{row['of_peak']:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
