"""``ntm sweep``: many runs over seeds and settings, and their summary.

The runs train on this machine or as trials on a Ray cluster.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ntm.cli.common import (
    UsageError,
    _add_train_arguments,
    _arity,
    _flag,
    _keep_options,
    _new_run,
    _Parser,
    _train_parser,
    setting_flags,
)
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import (
    RESUMABLE,
    RunConfig,
    TrainConfig,
)
from ntm.sweeps import local as sweep
from ntm.sweeps import ray_backend as sweep_ray

#: Options of ``ntm sweep`` that are not ``ntm train``'s (its own ``--quiet`` included: the
#: runs are always quiet).
_SWEEP_ONLY = (
    "--seeds",
    "--set",
    "--jobs",
    "--out",
    "--quiet",
    "--backend",
    "--address",
    "--trial-cpus",
    "--stop",
    "--stop-grace",
    "--stop-factor",
    "--storage",
)


#: Settings a sweep sets itself, never by ``--set``.
_SWEEP_OWN = ("seed", "run-dir", "resume")


def sweep_axes(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``--set KEY=V1,V2`` arguments: (setting name as its flag spells it, without the
    dashes in front: ``memory-init``; values), in order."""
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not choices:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        if key in _SWEEP_OWN:
            raise UsageError(f"--set {item!r}: {key} is set by the sweep itself")
        if any(key == k for k, _ in axes):
            raise UsageError(f"--set {key} is given twice")
        axes.append((key, choices))
    return axes


def _sweep(args: argparse.Namespace) -> int:
    seeds = sweep.parse_seeds(args.seeds)
    axes = sweep_axes(args.set or [])
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.backend != "ray":
        ray_only = {
            "--address": args.address is not None,
            "--trial-cpus": args.trial_cpus is not None,
            "--stop": args.stop != "none",
            "--stop-grace": args.stop_grace is not None,
            "--stop-factor": args.stop_factor is not None,
            "--storage": args.storage != "auto",
        }
        given = [flag for flag, set_ in ray_only.items() if set_]
        if given:
            raise UsageError(f"{', '.join(given)}: for --backend ray only")
    rest = args.argv[args.argv.index("sweep") + 1 :] if "sweep" in args.argv else args.argv
    shared = _keep_options(rest, _arity(_sweep_parser()), lambda name: name not in _SWEEP_ONLY)
    # A resumed run keeps its own swept settings; the shared ones it may change, it is given.
    resumable = {_flag(name) for name in RESUMABLE} - {_flag(key) for key, _ in axes}
    resume_flags = _keep_options(shared, _arity(_train_parser()), resumable.__contains__)

    def command(job: sweep.Job) -> list[str]:
        base = [sys.executable, "-m", "ntm", "train", "--quiet"]
        if (job.run_dir / ckpt.CONFIG_FILE).exists():
            return [*base, "--resume", str(job.run_dir), *resume_flags]
        return [*base, *shared, *job.flags, "--run-dir", str(job.run_dir)]

    out = args.out
    if out is None:
        probe = sweep.plan(Path(), axes, seeds, setting_flags)[0]
        task = _resolved_run(shared, probe.flags).train.task
        out = sweep.default_out(task, shared, axes, seeds)
    jobs = sweep.plan(out, axes, seeds, setting_flags)
    runs = [_resolved_run(shared, job.flags) for job in jobs]
    targets = {run.train.target_bit_errors for run in runs}
    if len(targets) != 1:
        raise UsageError("--set target_bit_errors: a sweep compares runs against one target")
    if args.backend == "ray":
        code = _ray_sweep(args, jobs, command, targets.pop(), out, runs[0].train)
    else:
        out.mkdir(parents=True, exist_ok=True)
        jobs_at_once = args.jobs or 1
        if not args.quiet:
            print(
                f"sweep folder {out}: {len(jobs)} runs, {jobs_at_once} at a time",
                file=sys.stderr,
            )
        code = sweep.run(jobs, command, targets.pop(), jobs_at_once, quiet=args.quiet)
    rows = sweep.summarize(jobs, out)
    curves = sweep.plot_curves(jobs, out)
    if not args.quiet:
        print(sweep.format_summary(rows))
        print(f"wrote {out / sweep.SUMMARY_FILE} and {curves}")
        if code == 130:
            print("interrupted: the same command resumes the sweep", file=sys.stderr)
    return code


def _ray_sweep(
    args: argparse.Namespace,
    jobs: list[sweep.Job],
    command: Callable[[sweep.Job], list[str]],
    target: float,
    out: Path,
    train: TrainConfig,
) -> int:
    """The sweep's runs as trials on Ray (:mod:`ntm.sweeps.ray_backend`), with the training settings
    of its first run (``train``); its settings are checked before the sweep folder is made."""
    cpus = 1.0 if args.trial_cpus is None else args.trial_cpus
    if not cpus > 0:
        raise UsageError(f"--trial-cpus must be positive, got {args.trial_cpus}")
    if args.stop != "asha" and (args.stop_grace is not None or args.stop_factor is not None):
        raise UsageError("--stop-grace and --stop-factor are settings of --stop asha")
    grace = 4 * train.eval_every if args.stop_grace is None else args.stop_grace
    factor = 3.0 if args.stop_factor is None else args.stop_factor
    if grace < 1:
        raise UsageError(f"--stop-grace must be a positive number of sequences, got {grace}")
    if not factor > 1:
        raise UsageError(f"--stop-factor must be above 1, got {factor}")
    if train.device.startswith("cuda:"):
        raise UsageError(
            f"--device {train.device} with --backend ray: use --device cuda, and Ray gives "
            "each run a GPU of its own"
        )
    options = sweep_ray.RayOptions(
        address=args.address,
        cpus=cpus,
        # A GPU for a run that asks for one; on "auto" a run trains on the CPU, as Ray
        # gives a task without a GPU none.
        gpus=1.0 if train.device == "cuda" else 0.0,
        stop=args.stop,
        grace=grace,
        factor=factor,
        max_sequences=train.max_sequences,
        storage=args.storage,
        jobs=args.jobs,
    )
    try:
        sweep_ray.load_ray()
    except sweep_ray.RayUnavailableError as error:
        raise UsageError(str(error)) from None
    out.mkdir(parents=True, exist_ok=True)
    if not args.quiet:
        where = f"the Ray cluster at {args.address}" if args.address else "a local Ray"
        stopping = f", ASHA from {grace:,d} sequences" if args.stop == "asha" else ""
        print(f"sweep folder {out}: {len(jobs)} runs on {where}{stopping}", file=sys.stderr)
    try:
        return sweep_ray.run(jobs, command, target, out, options, quiet=args.quiet)
    except sweep_ray.RayUnavailableError as error:
        raise UsageError(str(error)) from None


def _resolved_run(shared: Sequence[str], flags: Sequence[str]) -> RunConfig:
    """The run configuration that a sweep's ``ntm train`` would build from these flags; a
    bad flag or value is reported here, before any run starts."""
    return _new_run(_train_parser("ntm sweep").parse_args([*shared, *flags]))


_SWEEP_DESCRIPTION = (
    "Train one run per seed and per combination of --set values (every flag of ntm train "
    "applies to all), each in its own folder; the same command resumes an interrupted sweep. "
    "Writes summary.md, summary.json and curves.png."
)


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", default="1", help="seeds: 1-10, 1,4,7 or 1-3,8 (default: 1)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=V1,V2",
        help="a setting to vary, e.g. memory_init=constant,learned,random (repeatable: a grid)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        help="runs at a time (default: 1; with --backend ray, as many as the cluster holds)",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where the runs train: local processes (default), or trials on a Ray cluster "
        "(pip install 'torch-ntm[ray]')",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to run on: HOST:PORT of its head, or auto for the one running "
        "here (default: start a local Ray for the sweep)",
    )
    parser.add_argument(
        "--trial-cpus",
        type=float,
        metavar="N",
        help="CPUs per run on Ray, and its processes (default 1; a run with --device cuda "
        "takes a GPU and trains in one process; other runs train on the CPU)",
    )
    parser.add_argument(
        "--stop",
        choices=("none", "asha"),
        default="none",
        help="stop hopeless runs early (Ray): asha compares held-out costs at rungs of "
        "sequences (default: none)",
    )
    parser.add_argument(
        "--stop-grace",
        type=int,
        metavar="SEQUENCES",
        help="ASHA's first rung (default: 4 evaluations, 4 x --eval-every)",
    )
    parser.add_argument(
        "--stop-factor",
        type=float,
        metavar="ETA",
        help="ASHA's reduction factor: the best 1/ETA of the runs at a rung go on (default 3)",
    )
    parser.add_argument(
        "--storage",
        choices=("auto", "shared", "copy"),
        default="auto",
        help="Ray: shared (every node sees the sweep folder), copy (runs train on their "
        "node and their folders are copied back after each evaluation) or auto (shared "
        "where a run sees the folder; default)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="sweep folder (default: runs/sweep-TASK-HASH)"
    )
    _add_train_arguments(parser, single_run=False)


def _sweep_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ntm sweep")
    _add_sweep_arguments(parser)
    return parser
