"""The bare commands, task by seed: solved or not, sequences and minutes to the target.

Run: ``python benchmarks/reproduce.py`` (copy, repeat copy and associative recall, seeds 1,
2 and 3); ``--tasks ngrams --seeds 1`` to choose; extra flags after ``--`` go to every
``ntm train``.

For each task and seed it runs ``python -m ntm train --task T --seed S`` in a fresh
process, with nothing else but the run folder (``--runs DIR/T-seed-S``, by default under
``runs/reproduce``), and times it from start to exit, so start-up and compilation count.
A run folder that exists but did not finish is continued with a bare ``ntm train --resume``
(its minutes then add up over the processes); a finished one is read, not run again. The
target is each task's own (``ntm train --help``); solved means the trainer recorded it met.
Prints a markdown table, and writes it to ``DIR/reproduce.md`` and ``DIR/reproduce.json``.
``--read-only`` trains nothing and tabulates the runs as they stand, a run not yet finished
as "unfinished" (its latest evaluation; medians leave it out).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ntm.runs import checkpoint as ckpt

TABLE_HEADER = [
    "| task | seed | engine | processes | solved | sequences | minutes to target (training) | "
    "minutes (process start to exit) | final held-out cost | ended by |",
    "|---|---:|---|---:|:---:|---:|---:|---:|---:|---|",
]


def run_one(task: str, seed: int, root: Path, flags: list[str]) -> dict[str, Any]:
    """Train (or continue) one run to its end; what it reached."""
    run_dir = root / f"{task}-seed-{seed}"
    result_file = run_dir / "reproduce.json"
    if result_file.is_file():
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result
    earlier = json.loads(result_file.with_suffix(".partial").read_text()) if (
        result_file.with_suffix(".partial").is_file()
    ) else 0.0  # fmt: skip
    base = [sys.executable, "-m", "ntm", "train", "--quiet", *flags]
    if (run_dir / ckpt.CONFIG_FILE).is_file():
        command = [*base, "--resume", str(run_dir)]
    else:
        command = [*base, "--task", task, "--seed", str(seed), "--run-dir", str(run_dir)]
    start = time.perf_counter()
    code = subprocess.run(command, check=False).returncode
    wall = earlier + time.perf_counter() - start
    if code != 0:  # interrupted or failed: keep the time spent, continue next time
        run_dir.mkdir(parents=True, exist_ok=True)
        result_file.with_suffix(".partial").write_text(json.dumps(wall))
        raise SystemExit(f"{' '.join(command)} exited with {code}; run the same command again")
    return record(task, seed, run_dir, wall, finished=True)


def record(task: str, seed: int, run_dir: Path, wall: float, finished: bool) -> dict[str, Any]:
    """What a run reached, from its folder; a finished one's is written to its
    ``reproduce.json`` (one not finished: ``ended_by`` "unfinished", its latest evaluation)."""
    rows = ckpt.read_metrics(run_dir)
    met = next((r for r in rows if r["target_met"] == 1), None)
    log = (run_dir / ckpt.LOG_FILE).read_text()
    ended = "target" if met else "floor" if "at the floor learning rate" in log else "budget"
    result = {
        "task": task,
        "seed": seed,
        "engine": engine(run_dir),
        "processes": processes(log),
        "solved": met is not None,
        "sequences": int((met or rows[-1])["sequences"]),
        "training_minutes": (met or rows[-1])["seconds"] / 60,
        "wall_minutes": wall / 60,
        "final_eval_cost": rows[-1]["eval_cost"],
        "ended_by": ended if finished else "unfinished",
    }
    if finished:
        (run_dir / "reproduce.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def processes(log: str) -> int:
    """How many processes a run trained in: ``ntm train`` chooses by the cores free at its
    start, and ``train.log`` says."""
    found = re.search(r"preset \w+, (\d+) processes", log)
    return int(found.group(1)) if found else 1


def engine(run_dir: Path) -> str:
    """The engine a run trained on, from its ``config.json``."""
    config = json.loads((run_dir / ckpt.CONFIG_FILE).read_text())
    return str(config.get("train", {}).get("engine", "?"))


def recorded(task: str, seed: int, root: Path) -> dict[str, Any] | None:
    """A run's result as it stands, without training (None: no evaluation yet)."""
    run_dir = root / f"{task}-seed-{seed}"
    result_file = run_dir / "reproduce.json"
    if result_file.is_file():
        result: dict[str, Any] = json.loads(result_file.read_text())
        result.setdefault("processes", processes((run_dir / ckpt.LOG_FILE).read_text()))
        result.setdefault("engine", engine(run_dir))
        return result
    if not (run_dir / ckpt.METRICS_FILE).is_file() or not ckpt.read_metrics(run_dir):
        return None
    partial = run_dir / "reproduce.partial"  # minutes of the processes that were stopped
    wall = json.loads(partial.read_text()) if partial.is_file() else 0.0
    return record(task, seed, run_dir, wall, finished=False)


def table(results: list[dict[str, Any]]) -> str:
    lines = list(TABLE_HEADER)
    for r in results:
        lines.append(
            f"| {r['task']} | {r['seed']} | {r.get('engine', '?')} | {r.get('processes', '?')} | "
            f"{'yes' if r['solved'] else 'no'} | "
            f"{r['sequences']:,d} | {r['training_minutes']:.1f} | {r['wall_minutes']:.1f} | "
            f"{r['final_eval_cost']:.3f} | {r['ended_by']} |"
        )
    for task in dict.fromkeys(r["task"] for r in results):
        mine = [r for r in results if r["task"] == task]
        ended = [r for r in mine if r["ended_by"] != "unfinished"]  # the medians' runs
        solved = f"{sum(r['solved'] for r in mine)}/{len(mine)}"
        if not ended:
            lines.append(f"| {task} | median | | | {solved} | | | | | |")
            continue
        wall = statistics.median(r["wall_minutes"] for r in ended)
        sequences = statistics.median(r["sequences"] for r in ended)
        lines.append(f"| {task} | median | | | {solved} | {sequences:,.0f} | | {wall:.1f} | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="copy,repeat_copy,associative_recall")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"))
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="train nothing: the table of the runs as they stand (unfinished ones included)",
    )
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="extra flags for ntm train")
    args = parser.parse_args()
    if args.flags[:1] not in ([], ["--"]):
        parser.error(f"unexpected {' '.join(args.flags)!r}: flags for ntm train go after --")
    flags = args.flags[1:]
    args.runs.mkdir(parents=True, exist_ok=True)
    results = []
    for task in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if args.read_only:
                found = recorded(task, seed, args.runs)
                results += [found] if found is not None else []
                continue
            results.append(run_one(task, seed, args.runs, flags))
            print(table(results[-1:]).splitlines()[len(TABLE_HEADER)], flush=True)
    text = table(results)
    print(text)
    (args.runs / "reproduce.md").write_text(text)
    (args.runs / "reproduce.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
