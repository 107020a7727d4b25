"""Where a training step's time goes: data, forward, loss, backward, clipping, optimiser.

Run: ``python benchmarks/profile_step.py`` (``--engines native,compiled`` for both engines,
one after the other; ``--batch 8``, ``--threads 2``; ``--json FILE`` keeps the numbers as a
record, which :func:`table` renders as Markdown and ``scripts/make_results.py`` puts into
``benchmarks/README.md``).

Trains the copy task's paper model (as ``benchmarks/train_throughput.py`` does) on batches
drawn as ``ntm train`` draws them, one thread, and prints milliseconds per update in each
part of the step: drawing the batch, the forward pass, the loss, the backward pass,
gradient clipping and the Adam step. For the native engine the forward and backward rows
are split into the C recurrence and the rest (the PyTorch products of the input projection,
output layer and weight gradients, the buffers, the autograd wrapper). Then the operations
that took the most time by PyTorch's profiler, over 10 more updates.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

import ntm
import ntm.engines.native

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header

MODEL = {"controller_size": 100, "memory_size": 128, "word_size": 20}
PARTS = ("data", "forward", "loss", "backward", "clip", "optimizer")


def timed_native_calls(totals: dict[str, float]) -> Callable[[], None]:
    """Time every call into the native library under ``totals['C forward' / 'C backward']``;
    returns the function that undoes it."""
    original = ntm.engines.native._call

    def call(name: str, dims: Any, tensors: list[torch.Tensor]) -> None:
        start = time.perf_counter()
        original(name, dims, tensors)
        part = "C forward" if name == "ntm_forward" else "C backward"
        totals[part] += time.perf_counter() - start

    ntm.engines.native._call = call

    def undo() -> None:
        ntm.engines.native._call = original

    return undo


def profile_engine(engine: str, batch_size: int, seconds: float) -> dict[str, Any]:
    """Time the parts of ``engine``'s training step over ``seconds``, then profile 10 updates;
    the engine's entry of the record."""
    torch.manual_seed(0)
    task = ntm.make_task("copy")
    model = ntm.NTM(task.input_size, task.output_size, engine=engine, **MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    totals: dict[str, float] = defaultdict(float)
    undo = timed_native_calls(totals) if engine == "native" else None

    def step(clock: dict[str, float] | None) -> None:
        marks = [time.perf_counter()]
        batch = task.sample(batch_size, generator)
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
            for part, (a, b) in zip(PARTS, itertools.pairwise(marks), strict=True):
                clock[part] += b - a

    for _ in range(5 if engine != "compiled" else 20):
        step(None)  # warm up (and compile)
    totals.clear()
    updates, start = 0, time.perf_counter()
    while updates == 0 or time.perf_counter() - start < seconds:
        step(totals)
        updates += 1
    elapsed = time.perf_counter() - start
    if undo is not None:
        undo()
    parts: dict[str, float] = {}
    for part in PARTS:
        inside = totals.get(f"C {part}")
        if inside is not None:
            parts[f"{part}: C recurrence"] = inside / updates * 1e3
            parts[f"{part}: the rest"] = (totals[part] - inside) / updates * 1e3
        parts[part] = totals[part] / updates * 1e3
    parts["(loop)"] = (elapsed - sum(totals[p] for p in PARTS)) / updates * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            step(None)
    events = prof.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:6]
    return {
        "engine": engine,
        "updates": updates,
        "seq_per_s": updates * batch_size / elapsed,
        "ms_per_update": parts,
        "profiler": [
            {"op": e.key, "calls": e.count, "share": e.self_cpu_time_total / total} for e in top
        ],
        "profiler_table": events.table(sort_by="self_cpu_time_total", row_limit=12),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="native", help="comma-separated, of: "
                        + ", ".join(ntm.models.ntm.model.ENGINES))  # fmt: skip
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="time measured")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers here")
    args = parser.parse_args()
    engines = args.engines.split(",")
    for engine in engines:
        if engine not in ntm.models.ntm.model.ENGINES:
            parser.error(
                f"--engines: {engine!r} is not one of {', '.join(ntm.models.ntm.model.ENGINES)}"
            )
    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {
        **header("profile_step"),
        "batch": args.batch,
        "threads": args.threads,
        "engines": [],
    }
    for engine in engines:
        entry = profile_engine(engine, args.batch, args.seconds)
        record["engines"].append(entry)
        print(f"engine {engine}, batch {args.batch}, {args.threads} thread(s): "
              f"{entry['seq_per_s']:.1f} sequences/s over {entry['updates']} updates")  # fmt: skip
        print(f"{'part':<24} {'ms/update':>10}")
        for part, ms in entry["ms_per_update"].items():
            print(f"{part:<24} {ms:>10.2f}")
        print("\nPyTorch profiler, 10 updates, by self CPU time:")
        print(entry.pop("profiler_table"))
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def table(record: dict[str, Any]) -> list[str]:
    """A record of ``--json`` as a Markdown table of milliseconds per update (a column per
    engine), then the operations the profiler found heaviest, with the command and date."""
    engines = record["engines"]
    parts = list(dict.fromkeys(part for e in engines for part in e["ms_per_update"]))
    lines = [
        f"{caption(record)}, "
        f"milliseconds per update (batch {record['batch']}, {record['threads']} thread(s)):",
        "",
        "| part | " + " | ".join(e["engine"] for e in engines) + " |",
        "|---|" + "---:|" * len(engines),
    ]
    for part in parts:
        cells = [f"{e['ms_per_update'][part]:.2f}" if part in e["ms_per_update"] else ""
                 for e in engines]  # fmt: skip
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| sequences/s | " + " | ".join(f"{e['seq_per_s']:.0f}" for e in engines) + " |")
    lines += ["", "PyTorch's profiler over 10 updates, the heaviest operations by own CPU time:"]
    lines.append("")
    for e in engines:
        merged: dict[str, list[float]] = {}
        for op in e["profiler"]:
            # Inductor names each compiled graph by a hash: one entry for them all.
            name = "compiled graphs" if "CompiledFxGraph" in op["op"] else f"`{op['op']}`"
            share, calls = merged.get(name, [0.0, 0.0])
            merged[name] = [share + op["share"], calls + op["calls"]]
        heaviest = ", ".join(
            f"{name} {share:.0%} ({calls:,.0f} calls)"
            for name, (share, calls) in list(merged.items())[:4]
        )
        lines.append(f"- {e['engine']}: {heaviest}.")
    return lines


if __name__ == "__main__":
    sys.exit(main())
