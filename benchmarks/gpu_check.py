"""The check to run on a machine with a GPU: correctness, throughput, and copy trained there.

Run: ``python benchmarks/gpu_check.py`` (about five minutes on one GPU; ``--out FILE``
chooses where the tables go, default ``gpu_check.md``; ``--device cpu --quick`` runs the
same script on the CPU, as a dry run of the script itself).

1. Correctness: for each of the five tasks' paper models (LSTM controller), a batch of the
   task run by the eager, fused and compiled engines on the device (compiled: replaying
   CUDA graphs), against the eager engine on the CPU; and the task's DNC on the device
   against the DNC on the CPU: largest differences of outputs and of every parameter's
   gradient (float32; they should be below 1e-4).
2. Throughput: training sequences per second (forward, backward, Adam) of the copy task's
   paper model for each engine at batch 32, 128, 512 and 2048 on the device, beside the
   CPU's native engine (one thread) at 32 and 128.
3. The trainer's updates per second (copy, fused, batch 32) with its non-finite checks and
   counters read on the host at every update, and kept on the device (the GPU's default).
4. Copy trained to its target by ``python -m ntm train --task copy --device DEVICE`` in a
   fresh process: solved or not, sequences, and seconds from process start to exit.

Prints each table as it is measured and writes them all to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import ntm
from ntm.engines import devices
from ntm.models.dnc.config import task_dnc_config
from ntm.models.ntm.config import paper_ntm_config
from ntm.runs.config import RunConfig, resolve_config
from ntm.training import trainer as training

TASKS = ("copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paper_model(task: ntm.tasks.Task, name: str, engine: str) -> torch.nn.Module:
    """The task's paper NTM (LSTM controller) on ``engine``; ``dnc``: the task's DNC."""
    if engine == "dnc":
        return ntm.DNC.from_config(task_dnc_config(name, task.input_size, task.output_size))
    config = paper_ntm_config(name, "lstm", task.input_size, task.output_size)
    return ntm.NTM.from_config(config, engine=engine)


def correctness(device: torch.device, batch_size: int, engines: list[str]) -> list[str]:
    rows = ["| task | engine | largest output difference | largest gradient difference |",
            "|---|---|---:|---:|"]  # fmt: skip
    for name in TASKS:
        task = ntm.make_task(name)
        batch = task.sample(batch_size, torch.Generator().manual_seed(0))
        for engine in [*engines, "dnc"]:
            torch.manual_seed(0)
            reference = paper_model(task, name, "dnc" if engine == "dnc" else "eager")
            out = reference(batch.inputs)[0]
            loss = ntm.tasks.loss_bits(
                out[..., : batch.targets.shape[-1]], batch.targets, batch.mask
            )
            expected = torch.autograd.grad(loss, list(reference.parameters()))
            model = paper_model(task, name, engine)
            model.load_state_dict(reference.state_dict())
            model.to(device)
            moved = batch.to(device)
            got = model(moved.inputs)[0]
            loss = ntm.tasks.loss_bits(
                got[..., : moved.targets.shape[-1]], moved.targets, moved.mask
            )
            grads = torch.autograd.grad(loss, list(model.parameters()))
            out_diff = (got.cpu() - out).abs().max().item()
            grad_diff = max(
                (g.cpu() - e).abs().max().item() for g, e in zip(grads, expected, strict=True)
            )
            rows.append(f"| {name} | {engine} | {out_diff:.2e} | {grad_diff:.2e} |")
            print(rows[-1], flush=True)
    return rows


def throughput(
    engine: str, device: torch.device, batch_size: int, seconds: float
) -> tuple[float, float]:
    """Sequences per second of training copy's paper model, and the warm-up's seconds
    (compilation included)."""
    task = ntm.make_task("copy")
    torch.manual_seed(0)
    model = paper_model(task, "copy", engine).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [task.sample(batch_size, generator).to(device) for _ in range(4)]

    def step(batch: ntm.Batch) -> None:
        logits, _ = model(batch.inputs)
        loss = ntm.tasks.loss_bits(logits, batch.targets, batch.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for batch in batches * 2:
        step(batch)
    synchronize(device)
    warm = time.perf_counter() - start
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(batches[count % len(batches)])
        count += 1
    synchronize(device)
    return count * batch_size / (time.perf_counter() - start), warm


def throughputs(
    device: torch.device, sizes: list[int], seconds: float, engines: list[str]
) -> list[str]:
    rows = ["| device | engine | batch | sequences/s | warm-up s (compilation included) |",
            "|---|---|---:|---:|---:|"]  # fmt: skip
    torch.set_num_threads(1)
    for size in (32, 128):
        rate, warm = throughput("native", torch.device("cpu"), size, seconds)
        rows.append(f"| cpu (1 thread) | native | {size} | {rate:.1f} | {warm:.1f} |")
        print(rows[-1], flush=True)
    for engine in engines:
        for size in sizes:
            rate, warm = throughput(engine, device, size, seconds)
            rows.append(f"| {device} | {engine} | {size} | {rate:.1f} | {warm:.1f} |")
            print(rows[-1], flush=True)
    return rows


def trainer_checks(device: torch.device, batch_size: int, updates: int) -> list[str]:
    """Updates per second of the trainer itself (copy, fused engine) with its checks read on
    the host at every update, and kept on the device until the next evaluation (the GPU's
    default): what the host syncs cost."""
    rows = ["| device | batch | update checks | updates/s |", "|---|---:|---|---:|"]
    settings = {"task": "copy", "device": str(device), "engine": "fused",
                "batch_size": batch_size, "max_sequences": batch_size * updates,
                "eval_every": batch_size * updates, "eval_size": 8,
                "target_bit_errors": 0.0}  # fmt: skip
    for sync_free in (False, True):
        rate = trainer_rate(resolve_config(settings, {}, {}), sync_free, device)
        checks = "on the device" if sync_free else "on the host"
        rows.append(f"| {device} | {batch_size} | {checks} | {rate:.1f} |")
        print(rows[-1], flush=True)
    return rows


def trainer_rate(run: RunConfig, sync_free: bool, device: torch.device) -> float:
    """Updates per second of ``run``'s trainer, after a warm-up of 10 updates."""
    updates = run.train.max_sequences // run.train.batch_size
    marks: list[float] = []

    def mark(t: training.Trainer) -> None:
        if t.progress.updates in (10, updates):
            synchronize(device)  # what the device still has queued counts
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as folder:
        trainer = training.start(run, Path(folder) / "run", quiet=True)
        trainer.sync_free = sync_free
        trainer.on_update = mark
        trainer.fit()
    return (updates - 10) / (marks[1] - marks[0])


def train_copy(device: torch.device, budget: int) -> list[str]:
    run_dir = Path(tempfile.mkdtemp(prefix="ntm-gpu-check-")) / "copy"
    command = [sys.executable, "-m", "ntm", "train", "--task", "copy", "--seed", "1",
               "--device", str(device), "--nproc", "1", "--run-dir", str(run_dir), "--quiet",
               "--max-sequences", str(budget)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, timeout=600)
    seconds = time.perf_counter() - start
    with (run_dir / "metrics.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    solved = float(last["eval_bit_errors"]) < 0.1
    rows = ["| device | solved | sequences | seconds (process start to exit) |",
            "|---|:---:|---:|---:|",
            f"| {device} | {'yes' if solved else 'no'} | {int(float(last['sequences'])):,d} | "
            f"{seconds:.1f} |"]  # fmt: skip
    print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    parser.add_argument("--seconds", type=float, default=3.0, help="time per throughput row")
    parser.add_argument("--quick", action="store_true", help="small sizes: a dry run")
    parser.add_argument(
        "--engines", default="eager,fused,compiled", help="on the device (and dnc: the DNC's)"
    )
    args = parser.parse_args()
    device = devices.resolve(args.device)
    engines = args.engines.split(",")
    sizes = [8, 32] if args.quick else [32, 128, 512, 2048]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    lines = [f"# GPU check: {name}, torch {torch.__version__}", ""]
    print(lines[0], flush=True)
    lines += ["## Correctness against the CPU's eager engine", ""]
    lines += [*correctness(device, 4 if args.quick else 16, engines), ""]
    lines += ["## Training throughput, copy's paper model", ""]
    lines += [*throughputs(device, sizes, 0.5 if args.quick else args.seconds, engines), ""]
    lines += ["## The trainer's update checks: host syncs against none", ""]
    lines += [*trainer_checks(device, 32, 30 if args.quick else 200), ""]
    lines += ["## Copy trained from a fresh process", ""]
    lines += [*train_copy(device, 4096 if args.quick else 200000), ""]
    args.out.write_text("\n".join(lines))
    print(f"tables written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
