"""Wall-clock time and sequences until copy is solved, from the command a user types.

Run: ``python benchmarks/time_to_solve.py`` (seeds 1, 2 and 3; ``--seeds 1,2`` to choose;
``--json FILE`` keeps the rows as a record, which :func:`table` renders as Markdown and
``scripts/make_results.py`` puts into ``benchmarks/README.md``).

For each seed it runs ``python -m ntm train --task copy --seed S`` in a fresh process with
the given extra flags, and times it from start to exit, so start-up and any compilation
count. Solved means held-out bit errors below 0.1 per sequence on lengths 1 to 20. Each row
also gives the seconds the run itself counted as training (its ``metrics.csv``), the
processes it trained in and its engine (its ``train.log`` and ``config.json``).

``--cold`` gives each seed empty caches, as on a user's first run: a new Inductor cache
(``TORCHINDUCTOR_CACHE_DIR``) and a new cache for the native engine's library
(``NTM_CACHE_DIR``), so whatever the engine builds is built inside the timing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header


def run_seed(seed: int, root: Path, flags: list[str], cold: bool) -> dict[str, Any]:
    """Train copy with ``seed`` in a fresh process; its row of the record."""
    run_dir = root / f"copy-seed{seed}"
    command = [sys.executable, "-m", "ntm", "train", "--task", "copy", "--seed", str(seed)]
    command += ["--run-dir", str(run_dir), "--quiet", *flags]
    env = dict(os.environ)
    if cold:
        caches = Path(tempfile.mkdtemp(prefix="ntm-cold-caches-"))
        env["TORCHINDUCTOR_CACHE_DIR"] = str(caches / "inductor")
        env["NTM_CACHE_DIR"] = str(caches / "ntm")
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - start
    with (run_dir / "metrics.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    log = (run_dir / "train.log").read_text()
    found = re.search(r"preset \w+, (\d+) processes", log)
    config = json.loads((run_dir / "config.json").read_text())
    return {
        "seed": seed,
        "solved": float(last["eval_bit_errors"]) < 0.1,
        "sequences": int(float(last["sequences"])),
        "seconds": seconds,
        "training_seconds": float(last["seconds"]),
        "processes": int(found.group(1)) if found else 1,
        "engine": str(config.get("train", {}).get("engine", "?")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--runs", type=Path, help="keep the run folders here")
    parser.add_argument("--cold", action="store_true", help="empty caches for every seed")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows here")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="extra flags for ntm train")
    args = parser.parse_args()
    flags = args.flags[1:] if args.flags[:1] == ["--"] else args.flags
    root = args.runs or Path(tempfile.mkdtemp(prefix="ntm-time-to-solve-"))
    record: dict[str, Any] = {
        **header("time_to_solve"),
        "rows": [],
    }
    print(f"{'seed':>4} {'solved':>6} {'sequences':>10} {'seconds':>8} {'training':>8} "
          f"{'procs':>5} engine")  # fmt: skip
    for seed in [int(s) for s in args.seeds.split(",")]:
        row = run_seed(seed, root, flags, args.cold)
        record["rows"].append(row)
        print(f"{seed:>4} {row['solved']!s:>6} {row['sequences']:>10,d} {row['seconds']:>8.1f} "
              f"{row['training_seconds']:>8.1f} {row['processes']:>5} {row['engine']}",
              flush=True)  # fmt: skip
    median = statistics.median(row["seconds"] for row in record["rows"])
    print(f"median: {median:.1f} seconds (run folders in {root})")
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


def table(record: dict[str, Any]) -> list[str]:
    """A record of ``--json`` as a Markdown table, with the command and date it came from."""
    rows = record["rows"]
    lines = [
        f"{caption(record)}:",
        "",
        "| seed | engine | processes | solved | sequences | seconds training "
        "| seconds (process start to exit) |",
        "|---:|---|---:|:---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | {row['engine']} | {row['processes']} | "
            f"{'yes' if row['solved'] else 'no'} | {row['sequences']:,} | "
            f"{row['training_seconds']:.1f} | {row['seconds']:.1f} |"
        )
    solved = sum(row["solved"] for row in rows)
    lines.append(
        f"| median | | | {solved}/{len(rows)} | "
        f"{statistics.median(row['sequences'] for row in rows):,.0f} | "
        f"{statistics.median(row['training_seconds'] for row in rows):.1f} | "
        f"{statistics.median(row['seconds'] for row in rows):.1f} |"
    )
    return lines


if __name__ == "__main__":
    main()
