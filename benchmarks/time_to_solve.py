"""Wall-clock time and sequences until copy is solved, from the command a user types.

Run: ``python benchmarks/time_to_solve.py`` (seeds 1, 2 and 3; ``--seeds 1,2`` to choose).

For each seed it runs ``python -m ntm train --task copy --seed S`` in a fresh process with
the given extra flags, and times it from start to exit, so start-up and any compilation
count. Solved means held-out bit errors below 0.1 per sequence on lengths 1 to 20.

``--cold`` gives each seed empty caches, as on a user's first run: a new Inductor cache
(``TORCHINDUCTOR_CACHE_DIR``) and a new cache for the native engine's library
(``NTM_CACHE_DIR``), so whatever the engine builds is built inside the timing.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--runs", type=Path, help="keep the run folders here")
    parser.add_argument("--cold", action="store_true", help="empty caches for every seed")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="extra flags for ntm train")
    args = parser.parse_args()
    flags = args.flags[1:] if args.flags[:1] == ["--"] else args.flags
    root = args.runs or Path(tempfile.mkdtemp(prefix="ntm-time-to-solve-"))
    print(f"{'seed':>4} {'solved':>6} {'sequences':>10} {'seconds':>8} {'minutes':>8}")
    minutes = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        run_dir = root / f"copy-seed{seed}"
        command = [sys.executable, "-m", "ntm", "train", "--task", "copy", "--seed", str(seed)]
        command += ["--run-dir", str(run_dir), "--quiet", *flags]
        env = dict(os.environ)
        if args.cold:
            caches = Path(tempfile.mkdtemp(prefix="ntm-cold-caches-"))
            env["TORCHINDUCTOR_CACHE_DIR"] = str(caches / "inductor")
            env["NTM_CACHE_DIR"] = str(caches / "ntm")
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        seconds = time.perf_counter() - start
        with (run_dir / "metrics.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        last = rows[-1]
        solved = float(last["eval_bit_errors"]) < 0.1
        minutes.append(seconds / 60)
        print(f"{seed:>4} {solved!s:>6} {int(float(last['sequences'])):>10,d} {seconds:>8.1f} "
              f"{seconds / 60:>8.2f}", flush=True)  # fmt: skip
    print(f"median: {statistics.median(minutes):.2f} minutes (run folders in {root})")


if __name__ == "__main__":
    main()
