"""Sweeps: many training runs over seeds and settings, and their summary.

``ntm sweep --task copy --seeds 1-5 --set memory_init=constant,learned,random`` trains one
run per (setting, seed), each an ``ntm train`` process in its own folder under the sweep's
folder, up to ``--jobs`` at a time. Stopped and started again with the same command, it
skips the runs that finished and resumes the others from their checkpoints. Then it writes
``summary.md`` (and ``summary.json``): per setting, the median and quartiles of the
sequences and minutes to the target and of the final held-out cost, and ``curves.png``:
the median held-out learning curve per setting with its quartile band.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ntm.runs import checkpoint as ckpt

RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.md"
CURVES_FILE = "curves.png"


def parse_seeds(text: str) -> list[int]:
    """``1-10``, ``1,4,7`` or a mix (``1-3,8``): the seeds in order, each once."""
    seeds: list[int] = []
    for item in text.split(","):
        low, sep, high = item.strip().partition("-")
        try:
            values = range(int(low), int(high) + 1) if sep else [int(low)]
        except ValueError:
            raise ValueError(
                f"--seeds {text!r}: {item!r} is not a seed or a range like 1-10"
            ) from None
        if sep and not values:
            raise ValueError(f"--seeds {text!r}: the range {item!r} is empty")
        seeds += [s for s in values if s not in seeds]
    return seeds


@dataclass(frozen=True)
class Job:
    setting: str  # "key=value key2=value2", or "default" without --set
    seed: int
    flags: tuple[str, ...]  # ntm train flags of this run, beyond the sweep's shared ones
    run_dir: Path


#: The ``ntm train`` flags that set one setting to one value, e.g. ("lr", "1e-3") ->
#: ["--lr", "1e-3"] (the command line knows its flags: :func:`ntm.cli.setting_flags`).
SettingFlags = Callable[[str, str], list[str]]


def plan(
    out: Path, axes: list[tuple[str, list[str]]], seeds: list[int], flags_of: SettingFlags
) -> list[Job]:
    """One job per combination of the ``--set`` values (``axes``: setting, values) and per
    seed."""
    jobs = []
    keys = [key for key, _ in axes]
    for values in itertools.product(*(choices for _, choices in axes)):
        pairs = list(zip(keys, values, strict=True))
        setting = " ".join(f"{k}={v}" for k, v in pairs) or "default"
        folder = setting_folder(pairs)
        flags = [flag for k, v in pairs for flag in flags_of(k, v)]
        for seed in seeds:
            run_dir = out / folder / f"seed-{seed}"
            jobs.append(Job(setting, seed, (*flags, *flags_of("seed", str(seed))), run_dir))
    return jobs


def setting_folder(pairs: Sequence[tuple[str, str]]) -> str:
    """The folder of one combination of ``--set`` values (setting, value, in the order of
    the flags): ``position=rope_lr=1e-3``, or ``default`` without any."""
    return "_".join(f"{k}={v}" for k, v in pairs) or "default"


def default_out(task: str, shared: Sequence[str], axes: Any, seeds: list[int]) -> Path:
    """A folder named after the sweep's arguments: the same command finds it again."""
    key = json.dumps([list(shared), axes, seeds])
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return Path("runs") / f"sweep-{task}-{digest}"


def outcome(run_dir: Path, target: float) -> dict[str, Any]:
    """What a finished run reached, from its ``metrics.csv`` (``target``: the bit errors
    that count as solved in rows written before the trainer recorded ``target_met``)."""
    rows = ckpt.read_metrics(run_dir)

    def met(row: dict[str, float]) -> bool:
        if math.isfinite(row["target_met"]):  # recorded by the trainer, whatever the target
            return bool(row["target_met"])
        return bool(target) and row["eval_bit_errors"] < target

    solved_at = next((r for r in rows if met(r)), None)
    last = rows[-1] if rows else None
    ended = ckpt.read_ended(run_dir)
    return {
        # Why training ended (target, converged, floor, or budget: its cap); None: unknown.
        "ended": ended["reason"] if ended else None,
        # The engine it trained on ("": a model without engines); None: unknown.
        "engine": ended.get("engine") if ended else None,
        "minutes": last["seconds"] / 60 if last else 0.0,
        "solved": solved_at is not None,
        "sequences_to_target": solved_at["sequences"] if solved_at else None,
        "minutes_to_target": solved_at["seconds"] / 60 if solved_at else None,
        "sequences": last["sequences"] if last else 0,
        "final_eval_cost": last["eval_cost"] if last else math.nan,
        "final_eval_bit_errors": last["eval_bit_errors"] if last else math.nan,
    }


def output_file(run_dir: Path) -> Path:
    """Beside a run's folder: what its ``ntm train`` printed (``seed-1.out``)."""
    return run_dir.parent / f"{run_dir.name}.out"


def finish(job: Job, target: float, stopped_at: int | None = None, retries: int = 0) -> str:
    """Record a run that ended (trained to its end, or stopped early by the sweep at
    ``stopped_at`` sequences) in its ``result.json``, which later sweeps skip it by; the
    line that reports it."""
    result: dict[str, Any] = {"setting": job.setting, "seed": job.seed}
    result.update(outcome(job.run_dir, target))
    result.update(stopped_at=stopped_at, retries=retries)
    ckpt.write_text_atomic(job.run_dir / RESULT_FILE, json.dumps(result))
    if stopped_at is not None:
        said = f"stopped early at {stopped_at:,d} sequences"
    elif result["solved"]:
        said = f"solved after {result['sequences_to_target']:,d} sequences"
    else:
        said = f"not solved in {result['sequences']:,d} sequences"
    return f"{job.setting} seed {job.seed}: {said}" + (
        f" ({retries} {'retry' if retries == 1 else 'retries'})" if retries else ""
    )


def todo(jobs: list[Job]) -> list[Job]:
    """The jobs that have not ended: not started, or stopped before their end."""
    return [job for job in jobs if not (job.run_dir / RESULT_FILE).exists()]


def run(
    jobs: list[Job],
    command: Callable[[Job], list[str]],
    target: float,
    parallel: int = 1,
    quiet: bool = False,
) -> int:
    """Run the jobs not yet finished, ``parallel`` at a time, each as ``command(job)`` (the
    ``ntm train`` command that starts or resumes its run). Returns 0, or 130 when
    interrupted (the runs save checkpoints; the same command resumes them), or 1 when a run
    failed (its output is in :func:`output_file`)."""
    waiting = todo(jobs)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(waiting), unit="run", disable=quiet)
    running: list[tuple[Job, subprocess.Popen[bytes], Any]] = []
    failed = interrupted = False
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if parallel > 1:
        # Several runs at once share the cores already: one process each, unless the user
        # said otherwise (ntm train would see idle cores at the start and take two each).
        env.setdefault("NTM_NPROC", "1")
    try:
        with bar:
            while waiting or running:
                while waiting and len(running) < parallel and not (failed or interrupted):
                    job = waiting.pop(0)
                    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
                    log = output_file(job.run_dir).open("ab")
                    process = subprocess.Popen(
                        command(job), stdout=log, stderr=subprocess.STDOUT, env=env
                    )
                    running.append((job, process, log))
                if not running:
                    break
                time.sleep(0.2)
                for entry in list(running):
                    job, process, log = entry
                    code = process.poll()
                    if code is None:
                        continue
                    running.remove(entry)
                    log.close()
                    if code == 0:
                        bar.update(1)
                        bar.write(finish(job, target), file=sys.stderr)
                    elif code in (130, -2):
                        interrupted = True
                    else:
                        failed = True
                        bar.write(
                            f"{job.setting} seed {job.seed}: ntm train failed (exit {code}); "
                            f"see {output_file(job.run_dir)}",
                            file=sys.stderr,
                        )
    except KeyboardInterrupt:
        interrupted = True
        for job, process, log in running:
            # The runs got the same Ctrl-C and are saving their checkpoints; one that had
            # ended before it is recorded, so that the next sweep does not train it on.
            if process.wait() == 0:
                finish(job, target)
            log.close()
    if interrupted:
        return 130
    return 1 if failed else 0


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def summarize(jobs: list[Job], out: Path) -> list[dict[str, Any]]:
    """Per setting: runs, runs solved, and median [quartiles] of sequences and minutes to
    the target (over solved runs) and of the final held-out cost (over all runs). Written
    to ``summary.md`` and ``summary.json``."""
    rows = []
    for setting, group in itertools.groupby(jobs, key=lambda j: j.setting):
        results = []
        for job in group:
            path = job.run_dir / RESULT_FILE
            if path.exists():
                results.append(json.loads(path.read_text()))
        solved = [r for r in results if r["solved"]]
        row: dict[str, Any] = {"setting": setting, "runs": len(results), "solved": len(solved)}
        # Runs stopped early (--stop) and runs retried after a lost worker, by seed.
        row["stopped"] = {
            r["seed"]: r["stopped_at"] for r in results if r.get("stopped_at") is not None
        }
        row["retried"] = {r["seed"]: r["retries"] for r in results if r.get("retries")}
        for key in ("sequences_to_target", "minutes_to_target"):
            row[key] = _quartiles([r[key] for r in solved]) if solved else None
        costs = [r["final_eval_cost"] for r in results if math.isfinite(r["final_eval_cost"])]
        row["final_eval_cost"] = _quartiles(costs) if costs else None
        rows.append(row)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / SUMMARY_FILE).write_text(format_summary(rows))
    return rows


def _cell(q: tuple[float, float, float] | None, digits: int) -> str:
    if q is None:
        return "-"
    q1, q2, q3 = q
    return f"{q2:,.{digits}f} [{q1:,.{digits}f} - {q3:,.{digits}f}]"


def format_summary(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Median [first quartile - third quartile] over the seeds; sequences and minutes to "
        "the target over the runs that reached it.",
        "",
        "| setting | solved | sequences to target | minutes to target | final held-out cost |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['solved']}/{row['runs']} "
            f"| {_cell(row['sequences_to_target'], 0)} | {_cell(row['minutes_to_target'], 2)} "
            f"| {_cell(row['final_eval_cost'], 3)} |"
        )
    notes = []
    for row in rows:
        for seed, sequences in row.get("stopped", {}).items():
            notes.append(
                f"- {row['setting']} seed {seed}: stopped early at {sequences:,d} sequences"
            )
        for seed, retries in row.get("retried", {}).items():
            notes.append(
                f"- {row['setting']} seed {seed}: its worker was lost; retried {retries} "
                f"{'time' if retries == 1 else 'times'} from its last checkpoint"
            )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def plot_curves(jobs: list[Job], out: Path) -> Path:
    """Median held-out cost against sequences per setting, with the quartile band. A run
    that stopped early (solved) keeps its last value to the end of the plot."""
    # Loaded here: every ``ntm`` command imports this module, and matplotlib takes half a second.
    importlib.import_module("matplotlib").use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for setting, group in itertools.groupby(jobs, key=lambda j: j.setting):
        curves = [ckpt.read_metrics(job.run_dir) for job in group]
        curves = [c for c in curves if c]
        if not curves:
            continue
        grid = sorted({row["sequences"] for c in curves for row in c})
        columns = []
        for curve in curves:
            values, i = [], 0
            for x in grid:
                while i + 1 < len(curve) and curve[i + 1]["sequences"] <= x:
                    i += 1
                values.append(curve[i]["eval_cost"] if curve[i]["sequences"] <= x else math.nan)
            columns.append(values)
        medians, lows, highs = [], [], []
        for k in range(len(grid)):
            at = [c[k] for c in columns if math.isfinite(c[k])]
            q1, q2, q3 = _quartiles(at) if at else (math.nan,) * 3
            lows.append(q1)
            medians.append(q2)
            highs.append(q3)
        (line,) = axis.plot(grid, medians, label=f"{setting} ({len(curves)} seeds)")
        axis.fill_between(grid, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    axis.set_xlabel("training sequences")
    axis.set_ylabel("held-out cost (bits per sequence)")
    axis.set_yscale("symlog", linthresh=1.0)
    axis.set_title("median and quartiles over seeds")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = out / CURVES_FILE
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
