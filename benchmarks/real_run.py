"""A real ``ntm train`` against the plain NTM, back to back: what the training loop keeps of
the engine's speed.

Run: ``python benchmarks/real_run.py`` (one and two processes; ``--nproc 1`` for one;
``--models ntm,dnc`` trains the DNC too, on its default engine, beside the NTM; ``--json
FILE`` keeps the rows as a record, which :func:`table` renders as Markdown and
``scripts/make_results.py`` puts into ``benchmarks/README.md``).

For each process count it times the plain NTM (``--baseline``, by default
``../shared/baselines/naive_ntm.py``: one process, one thread, batch 32), then runs
``python -m ntm train --task copy --seed 1 --nproc P --target-bit-errors 0 --schedule
constant --max-sequences N`` in a fresh process (held-out evaluations, checkpoints, batches
drawn per sequence seed and gradient clipping included), then the plain NTM again. The
run's rate is its sequences over the seconds its ``metrics.csv`` counts as training; the
plain NTM's is measured before and after, as this machine's speed drifts from one minute to
the next.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header
from train_throughput import default_baseline, measure_baseline

BATCH = 32


def train(processes: int, sequences: int, root: Path, model: str = "ntm") -> tuple[int, float]:
    """Run ``ntm train`` of ``model`` in a fresh process; the sequences it trained and its
    training seconds."""
    run_dir = root / f"copy-{model}-{processes}"
    command = [sys.executable, "-m", "ntm", "train", "--task", "copy", "--seed", "1"]
    command += ["--model", model]
    command += ["--nproc", str(processes), "--target-bit-errors", "0", "--schedule", "constant"]
    command += ["--max-sequences", str(sequences), "--run-dir", str(run_dir), "--quiet"]
    subprocess.run(command, check=True)
    with (run_dir / "metrics.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    return int(float(last["sequences"])), float(last["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--max-sequences", type=int, default=32768)
    parser.add_argument("--seconds", type=float, default=4.0, help="plain NTM timing")
    parser.add_argument("--baseline", default=default_baseline(), help="a naive_ntm.py")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows here")
    parser.add_argument("--models", default="ntm", help="models trained, comma-separated")
    args = parser.parse_args()
    if args.baseline == "none" or not Path(args.baseline).is_file():
        parser.error(f"--baseline {args.baseline}: no such file (a naive_ntm.py is needed)")
    record: dict[str, Any] = {
        **header("real_run"),
        "rows": [],
    }
    root = Path(tempfile.mkdtemp(prefix="ntm-real-run-"))
    print(f"{'model':>5} {'procs':>5} {'sequences':>10} {'seconds':>8} {'seq/s':>8} "
          f"{'plain before':>13} {'plain after':>12}")  # fmt: skip
    for processes in [int(n) for n in args.nproc.split(",")]:
        for model in args.models.split(","):
            before = BATCH / measure_baseline(args.baseline, BATCH, args.seconds)
            sequences, seconds = train(processes, args.max_sequences, root, model)
            after = BATCH / measure_baseline(args.baseline, BATCH, args.seconds)
            row = {"model": model, "processes": processes, "sequences": sequences,
                   "seconds": seconds, "seq_per_s": sequences / seconds,
                   "plain_before": before, "plain_after": after}  # fmt: skip
            record["rows"].append(row)
            rate = row["seq_per_s"]
            print(f"{model:>5} {processes:>5} {sequences:>10,d} {seconds:>8.1f} {rate:>8.1f} "
                  f"{before:>13.1f} {after:>12.1f}", flush=True)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def table(record: dict[str, Any]) -> list[str]:
    """A record of ``--json`` as a Markdown table, with the command and date it came from."""
    lines = [
        f"{caption(record)}:",
        "",
        "| model | processes | sequences | seconds training | `ntm train` seq/s "
        "| plain NTM seq/s, before and after | x plain NTM | x the NTM's run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ntm_rate = {
        r["processes"]: r["seq_per_s"] for r in record["rows"] if r.get("model", "ntm") == "ntm"
    }
    for row in record["rows"]:
        low, high = sorted((row["plain_before"], row["plain_after"]))
        reference = ntm_rate.get(row["processes"])
        versus = f"{row['seq_per_s'] / reference:.2f}" if reference else ""
        lines.append(
            f"| {row.get('model', 'ntm')} | {row['processes']} | {row['sequences']:,} | "
            f"{row['seconds']:.1f} | {row['seq_per_s']:.0f} | {row['plain_before']:.0f}, "
            f"{row['plain_after']:.0f} | {row['seq_per_s'] / high:.1f} to "
            f"{row['seq_per_s'] / low:.1f} | {versus} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
