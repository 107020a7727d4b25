"""Training cost and memory against the number of slots N: the dense native NTM, the DNC
(dense, and with a sparse link matrix) and Sparse Access Memory (issue: memory that scales).

Run: ``python benchmarks/memory_scaling.py --record benchmarks/records/memory-scaling.json
--plot benchmarks/records/memory-scaling.png`` (``--from-record FILE --plot PNG`` draws a
record again, measuring nothing). For each series (a model and a batch size)
and N = 2**7, 2**8, ... up to ``--largest``, one point: a fresh process builds the model
(the copy task's: 100 LSTM units, one read head, words of 20, N slots) on its native
engine, with one thread, and times training updates (forward, backward, Adam step) on copy
batches of lengths 1 to 20, after one update unmeasured: sequences per second, and the
process's peak resident memory (``VmHWM``, the interpreter and torch included) at its end.

A series stops, with the reason recorded, after a point that took more than
``--point-seconds`` (two minutes) to measure, where its next point is predicted (from its
last two) to take over ``--predict-seconds`` or to need more than ``--max-gib`` (16 GiB),
or where a point fails. A series at batch 32 whose next point would need too much memory
goes on at batch 8 (each point records its batch). The series:

- ``ntm``: :class:`ntm.NTM`, dense addressing (every step reads and writes all N rows).
- ``dnc``: :class:`ntm.DNC`, dense (its temporal link matrix is N x N).
- ``dnc-sparse``: the DNC with ``link_sparsity=8`` (the link matrix's rows kept sparse).
- ``sam``: :class:`ntm.SAM` (search ``auto``: exhaustive below
  :data:`ntm.engines.native.sam.INDEX_FROM` slots, the index from there), at batch 32 and
  at batch 8.
- ``sam-exact``: SAM with the exhaustive search at every N, where the index's threshold
  was chosen from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import ntm
from ntm.engines.native import sam as native_sam

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header

#: The copy task's model settings every series shares.
MODEL = {"controller_size": 100, "num_read_heads": 1, "word_size": 20}
#: Series: (name, batch size, what it is).
SERIES = (
    ("sam", 32, "SAM, native"),
    ("sam", 8, "SAM, native"),
    ("ntm", 32, "NTM, dense, native"),
    ("sam-exact", 32, "SAM, native, exhaustive search"),
    ("dnc-sparse", 32, "DNC, link_sparsity=8, native"),
    ("dnc", 32, "DNC, dense link matrix, native"),
)
#: The batch a batch-32 series goes on at where memory runs short.
SMALL_BATCH = 8
GIB = 2**30


def build(model: str, slots: int) -> torch.nn.Module:
    """Series ``model``'s network with ``slots`` memory slots, on its native engine."""
    task = ntm.make_task("copy")
    sizes = (task.input_size, task.output_size)
    if model == "ntm":
        return ntm.NTM(*sizes, memory_size=slots, engine="native", **MODEL)
    if model in ("dnc", "dnc-sparse"):
        sparsity = 8 if model == "dnc-sparse" else 0
        return ntm.DNC(*sizes, memory_size=slots, link_sparsity=sparsity, engine="native", **MODEL)
    search = "exact" if model == "sam-exact" else "auto"
    return ntm.SAM(*sizes, memory_size=slots, search=search, engine="native", **MODEL)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def point(model: str, slots: int, batch: int, seconds: float) -> dict[str, Any]:
    """One point, in this process (a fresh one: :func:`measure` runs it so): seconds per
    training update, sequences per second and peak resident memory."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    start_kib = _status_kib("VmRSS")
    network = build(model, slots)
    engine = network.engine_for(torch.device("cpu"), torch.float32).engine  # type: ignore[operator]
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    task = ntm.make_task("copy")
    generator = torch.Generator().manual_seed(0)
    batches = [task.sample(batch, generator) for _ in range(8)]

    def update(data: ntm.Batch) -> None:
        logits, _ = network(data.inputs)
        loss = ntm.tasks.loss_bits(logits, data.targets, data.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    update(batches[0])  # unmeasured: workspaces and buffers made
    count, began = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - began < seconds:
        update(batches[(count + 1) % len(batches)])
        count += 1
    spent = (time.perf_counter() - began) / count
    return {
        "engine": engine,
        "search": ("index" if native_sam.uses_index(network.config) else "exact")
        if model.startswith("sam")
        else None,
        "seconds_per_update": spent,
        "sequences_per_second": batch / spent,
        "peak_mib": _status_kib("VmHWM") / 1024,
        "start_mib": start_kib / 1024,
        "updates": count,
    }


def measure(model: str, slots: int, batch: int, seconds: float, limit: float) -> dict[str, Any]:
    """:func:`point` in a fresh process (its own peak memory), its wall time added."""
    command = [sys.executable, __file__, "--point", model, str(slots), str(batch),
               "--seconds", str(seconds)]  # fmt: skip
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {limit:.0f} s", "wall_seconds": limit}
    wall = time.perf_counter() - began
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"error": why, "wall_seconds": wall}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


def _growth(points: list[dict[str, Any]], field: str, base: str | None = None) -> float:
    """How much ``field`` (less ``base``) grew from the series' last point but one to its last
    at the same batch: at least 2, N's own growth."""
    same = [p for p in points if p["batch"] == points[-1]["batch"]]
    if len(same) < 2:
        return 2.0
    last, before = (p[field] - (p[base] if base else 0.0) for p in same[-2:])
    return max(2.0, last / before) if before > 0 else 2.0


def run_series(
    model: str, batch: int, sizes: list[int], args: argparse.Namespace, record: dict[str, Any]
) -> None:
    """Measure one series into ``record`` (written after each point), stopping as the module
    docstring says."""
    points: list[dict[str, Any]] = []
    entry = {"model": model, "batch": batch, "points": points, "stopped": None}
    record["series"].append(entry)
    for slots in sizes:
        if points:
            last = points[-1]
            extra = last["peak_mib"] - last["start_mib"]
            need = (last["start_mib"] + extra * _growth(points, "peak_mib", "start_mib")) / 1024
            time_next = last["wall_seconds"] * _growth(points, "wall_seconds")
            if need > args.max_gib and batch > SMALL_BATCH and last["batch"] > SMALL_BATCH:
                batch = SMALL_BATCH  # a quarter of the batch: about a quarter of the memory
                need /= 32 / SMALL_BATCH
            if need > args.max_gib:
                entry["stopped"] = f"2^{slots.bit_length() - 1} would need about {need:.0f} GiB"
                break
            if last["wall_seconds"] > args.point_seconds:
                entry["stopped"] = (f"2^{last['n'].bit_length() - 1} took "
                                    f"{last['wall_seconds']:.0f} s")  # fmt: skip
                break
            if time_next > args.predict_seconds:
                entry["stopped"] = (f"2^{slots.bit_length() - 1} would take about "
                                    f"{time_next:.0f} s")  # fmt: skip
                break
        result = measure(model, slots, batch, args.seconds, args.predict_seconds * 2)
        if "error" in result:
            entry["stopped"] = f"2^{slots.bit_length() - 1} failed: {result['error']}"
            break
        points.append({"n": slots, "batch": batch, **result})
        rate, mib, wall = (result[f] for f in ("sequences_per_second", "peak_mib", "wall_seconds"))
        print(f"{model} batch {batch} N {slots}: {rate:.1f} seq/s, {mib:.0f} MiB, {wall:.0f} s",
              flush=True)  # fmt: skip
        if args.record:
            args.record.write_text(json.dumps(record, indent=1) + "\n")
    else:
        entry["stopped"] = "the largest N asked for"


def _label(entry: dict[str, Any]) -> str:
    """The series' model and batch (both, where it went on at a smaller one)."""
    names = {name: what for name, _, what in SERIES}
    batches = sorted({entry["batch"], *(p["batch"] for p in entry["points"])}, reverse=True)
    return f"{names[entry['model']]}, batch {' then '.join(map(str, batches))}"


def _rate(record: dict[str, Any], model: str, batch: int, slots: int) -> float | None:
    """Sequences per second of ``model``'s point at ``slots`` measured at ``batch``."""
    for entry in record["series"]:
        for p in entry["points"]:
            if entry["model"] == model and p["batch"] == batch and p["n"] == slots:
                return float(p["sequences_per_second"])
    return None


def _peak(record: dict[str, Any], model: str, batch: int, slots: int) -> float | None:
    for entry in record["series"]:
        for p in entry["points"]:
            if entry["model"] == model and p["batch"] == batch and p["n"] == slots:
                return float(p["peak_mib"]) / 1024
    return None


def targets(record: dict[str, Any]) -> list[str]:
    """The issue's targets, each with what the record measured ("not measured" where a
    point is missing)."""

    def ratio(a: float | None, b: float | None) -> str:
        return "not measured" if a is None or b is None else f"{a / b:.0f}x"

    sam, dense = _rate(record, "sam", 32, 2**15), _rate(record, "ntm", 32, 2**15)
    large, small = _rate(record, "sam", 8, 2**20), _rate(record, "sam", 8, 2**10)
    peak = _peak(record, "sam", 8, 2**20)
    share = "not measured" if large is None or small is None else f"{large / small:.2f}"
    gib = "not measured" if peak is None else f"{peak:.2f} GiB"
    met = {
        "speed": sam is not None and dense is not None and sam >= 100 * dense,
        "flat": large is not None and small is not None and large >= small / 4,
        "memory": peak is not None and peak < 4,
    }
    mark = {True: "met", False: "not met"}
    return [
        f"- SAM at N = 2^15 (batch 32) against the dense native NTM there: {ratio(sam, dense)} "
        f"its sequences per second (target: at least 100x; {mark[met['speed']]}).",
        f"- SAM at N = 2^20 (batch 8) against itself at N = 2^10 (batch 8): {share} of the "
        f"rate (target: at least 0.25; {mark[met['flat']]}).",
        f"- SAM's peak resident memory at N = 2^20, batch 8: {gib} (target: below 4 GiB; "
        f"{mark[met['memory']]}).",
    ]


def table(record: dict[str, Any]) -> list[str]:
    """The record as a Markdown table, with the command and date it came from, why each
    series stopped, and the issue's targets."""
    lines = [f"{caption(record)}:", "",
             "| series | N | batch | search | sequences/s | ms/sequence | peak MiB |",
             "|" + " --- |" * 7]  # fmt: skip
    for entry in record["series"]:
        for p in entry["points"]:
            rate = p["sequences_per_second"]
            lines.append(f"| {_label(entry)} | 2^{p['n'].bit_length() - 1} | {p['batch']} "
                         f"| {p['search'] or ''} | {rate:.1f} | {1000 / rate:.2f} "
                         f"| {p['peak_mib']:.0f} |")  # fmt: skip
    lines += ["", "Where each series stopped:", ""]
    lines += [f"- {_label(e)}: {e['stopped'] or 'still running'}." for e in record["series"]]
    if not record.get("complete"):
        lines += ["", "A partial record: only the points above were measured."]
    return [*lines, "", "The issue's targets:", "", *targets(record)]


def plot(record: dict[str, Any], path: Path) -> None:
    """Seconds per sequence against N, log-log, a line per series."""
    import matplotlib as mpl  # noqa: PLC0415 (only where a picture is asked for)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for entry in record["series"]:
        if not entry["points"]:
            continue
        n = [p["n"] for p in entry["points"]]
        cost = [1 / p["sequences_per_second"] for p in entry["points"]]
        axes.plot(n, cost, marker="o", markersize=3, label=_label(entry))
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("memory slots N")
    axes.set_ylabel("seconds per training sequence (1 thread)")
    axes.set_title("Training cost against memory size (copy, lengths 1-20)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", nargs=3, metavar=("MODEL", "N", "BATCH"),
                        help="measure one point here and print it (JSON)")  # fmt: skip
    parser.add_argument("--series", default=",".join(sorted({s[0] for s in SERIES})),
                        help="series to measure, commas")  # fmt: skip
    parser.add_argument("--smallest", type=int, default=7, help="log2 of the smallest N")
    parser.add_argument("--largest", type=int, default=20, help="log2 of the largest N")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed per point, at least")
    parser.add_argument("--point-seconds", type=float, default=120.0)
    parser.add_argument("--predict-seconds", type=float, default=240.0)
    parser.add_argument("--max-gib", type=float, default=16.0)
    parser.add_argument("--record", type=Path, help="write the record (JSON) here")
    parser.add_argument("--plot", type=Path, help="draw the cost against N here (PNG)")
    parser.add_argument("--from-record", type=Path, help="measure nothing: draw and print it")
    args = parser.parse_args()
    if args.from_record:
        kept = json.loads(args.from_record.read_text())
        if args.plot:
            plot(kept, args.plot)
        print("\n".join(table(kept)))
        return
    if args.point:
        model, slots, batch = args.point[0], int(args.point[1]), int(args.point[2])
        print(json.dumps(point(model, slots, batch, args.seconds)))
        return
    wanted = args.series.split(",")
    sizes = [2**s for s in range(args.smallest, args.largest + 1)]
    record: dict[str, Any] = {**header("memory_scaling"), "model": MODEL, "threads": 1,
                              "index_from": native_sam.INDEX_FROM, "series": [],
                              "complete": False}  # fmt: skip
    for model, batch, _ in SERIES:
        if model in wanted:
            run_series(model, batch, sizes, args, record)
    record["complete"] = True
    if args.record:
        args.record.write_text(json.dumps(record, indent=1) + "\n")
    if args.plot:
        plot(record, args.plot)
    print("\n".join(table(record)))


if __name__ == "__main__":
    main()
