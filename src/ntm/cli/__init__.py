"""The ``ntm`` command line: ``train``, ``sweep``, ``eval`` and ``viz``.

The flags of ``ntm train`` are generated from :class:`ntm.runs.config.TrainConfig` and the
settings of every registered model and task (:mod:`ntm.registry`), so every setting has
exactly one default, where it is declared; ``--model-arg`` and ``--task-arg`` reach any
setting of the chosen model and task by name. Every
reading of a command line's words (which flags take a value, which a resumed run or a
sweep's runs are given, how a setting becomes a flag) is done here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ntm import registry
from ntm.config import check_value, from_dict, parse_bool
from ntm.engines import devices
from ntm.pictures.figures import draw_run
from ntm.pictures.viewer import draw_page
from ntm.runs import checkpoint as ckpt
from ntm.runs import pretrained
from ntm.runs.checkpoint import RunError
from ntm.runs.config import (
    RESUMABLE,
    RunConfig,
    TrainConfig,
    check_sections,
    describe_recipes,
    resolve_config,
)
from ntm.runs.evaluation import HELD_OUT_SEED, evaluate_run, format_table
from ntm.runs.load import CHECKPOINTS, read_run_config, weights_file
from ntm.sweeps import local as sweep
from ntm.sweeps import ray_backend as sweep_ray
from ntm.training import distributed, launch
from ntm.training import trainer as training

EXIT_USAGE = 2
#: Where ``ntm eval RUN --ladder`` keeps its rows in the run folder.
LADDER_FILE = "ladder.json"

#: Model settings that ``ntm train`` takes from the run, not from a flag of their own.
_MODEL_FIXED = {"input_size", "output_size", "controller"}


class UsageError(Exception):
    """A bad command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2, never a traceback. It
    takes options only as spelled in full: ``ntm train`` hands its options on to other
    processes (``--nproc``, sweeps), which must read them as it did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _arity(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Every option string of ``parser`` and whether it takes a value."""
    return {
        option: action.nargs != 0 for action in parser._actions for option in action.option_strings
    }


def _options(argv: Sequence[str], arity: Mapping[str, bool]) -> list[list[str]]:
    """``argv`` cut into its options, each with its value (``--x V``, ``--x=V``, a bare
    switch), and lone words; ``arity`` says which options take a value."""
    groups, i = [], 0
    while i < len(argv):
        word = argv[i]
        width = 2 if arity.get(word) and i + 1 < len(argv) else 1
        groups.append(list(argv[i : i + width]))
        i += width
    return groups


def _keep_options(
    argv: Sequence[str], arity: Mapping[str, bool], keep: Callable[[str], bool]
) -> list[str]:
    """The options of ``argv`` (with their values) whose name ``keep`` accepts."""
    return [
        word for group in _options(argv, arity) if keep(group[0].split("=")[0]) for word in group
    ]


def _field_specs(cls: type) -> list[tuple[str, Any, Any, Mapping[str, Any]]]:
    """(name, type, default, metadata: "help", perhaps "metavar") for each field of a config
    dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f.default, f.metadata) for f in dataclasses.fields(cls)]


#: The flags that are ``ntm train``'s own or its training settings': a model's or a task's
#: setting of the same name is reached by --model-arg or --task-arg only.
_TRAIN_NAMES = {f.name for f in dataclasses.fields(TrainConfig)} | {
    "config", "quiet", "run_dir", "resume", "nproc", "model_arg", "task_arg",
}  # fmt: skip


def _add_field(
    group: Any, dest: str, name: str, kind: Any, help_text: str, metavar: str | None = None
) -> None:
    if kind is bool:
        group.add_argument(
            _flag(name),
            dest=dest,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help_text,
        )
    else:
        group.add_argument(
            _flag(name),
            dest=dest,
            type=kind,
            default=argparse.SUPPRESS,
            metavar=metavar or kind.__name__.upper(),
            help=help_text,
        )


def _task_fields() -> dict[str, tuple[Any, list[str]]]:
    """Every task setting that has a flag: its type and the tasks that have it."""
    fields: dict[str, tuple[Any, list[str]]] = {}
    for task_name, cls in registry.tasks().items():
        for name, kind, _ in registry.settings_of(cls):
            if name not in _TRAIN_NAMES:
                fields.setdefault(name, (kind, []))[1].append(task_name)
    return fields


def _model_fields() -> dict[str, tuple[Any, list[str]]]:
    """Every model setting that has a flag: its type and the models that have it."""
    fields: dict[str, tuple[Any, list[str]]] = {}
    for kind_name, cls in registry.models().items():
        for name, kind, _ in registry.settings_of(cls):
            if name not in _MODEL_FIXED and name not in _TRAIN_NAMES:
                fields.setdefault(name, (kind, []))[1].append(kind_name)
    return fields


def _add_train_arguments(parser: argparse.ArgumentParser, *, single_run: bool = True) -> None:
    run = parser.add_argument_group("run")
    run.add_argument(
        "--config", type=Path, metavar="FILE.json", help="settings file (a run's config.json)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    if single_run:
        run.add_argument("--run-dir", type=Path, metavar="DIR", help="where the run is written")
        run.add_argument(
            "--resume",
            type=Path,
            metavar="RUN_DIR",
            help="continue a run from its last checkpoint",
        )
        run.add_argument(
            "--nproc",
            type=int,
            metavar="N",
            help="data-parallel over N processes on this machine, sharing each batch (default: "
            "2 when two cores are free, --threads is 1 and the batch is as large as the "
            "model needs to gain (NTM 16, DNC 8), else 1; $NTM_NPROC overrides). Across "
            "machines: torchrun ... -m "
            "ntm train",
        )
    train = parser.add_argument_group("training (defaults: the preset, then these)")
    for name, kind, default, metadata in _field_specs(TrainConfig):
        shown = "none" if default == "" else default
        described = f"{metadata.get('help', '')} (default: {shown})"
        _add_field(train, f"train.{name}", name, kind, described, metadata.get("metavar"))
    model = parser.add_argument_group(
        "model (defaults: the model's own for the task, where it has them, else its defaults)"
    )
    model.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the chosen model, by name (repeatable); the flags below are the "
        "registered models' settings",
    )
    count = len(registry.models())
    for name, (kind, owners) in _model_fields().items():
        scope = "" if len(owners) == count else f" [{', '.join(owners)} only]"
        _add_field(model, f"model.{name}", name, kind, f"model setting{scope}")
    task = parser.add_argument_group("task (defaults: the task's own; the paper's)")
    task.add_argument(
        "--task-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the chosen task, by name (repeatable)",
    )
    for name, (kind, owners) in _task_fields().items():
        _add_field(task, f"task.{name}", name, kind, f"task setting of: {', '.join(owners)}")


def _sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings the command line gives, by section; ``--model-arg`` and ``--task-arg``
    are read as settings of the model and task that the run trains."""
    sections: dict[str, dict[str, Any]] = {"train": {}, "model": {}, "task": {}}
    for dest, value in vars(args).items():
        section, _, name = dest.partition(".")
        if section in sections and name:
            sections[section][name] = value
    if args.model_arg or args.task_arg:
        if getattr(args, "resume", None) is not None:
            chosen = dataclasses.asdict(read_run_config(args.resume).train)
        else:
            base = _read_json(args.config) if args.config else {}
            chosen = {**dataclasses.asdict(TrainConfig()), **base.get("train", {})}
        chosen.update(sections["train"])
        model = registry.model_class(chosen["model"])
        task = registry.task_class(chosen["task"])
        sections["model"].update(_assignments("--model-arg", model, args.model_arg))
        sections["task"].update(_assignments("--task-arg", task, args.task_arg))
    return sections


def _check_scopes(sections: dict[str, dict[str, Any]], task: str, model: str) -> None:
    task_fields = _task_fields()
    for name in sections["task"]:
        owners = task_fields[name][1]
        if task not in owners:
            allowed = [n for n, (_, o) in task_fields.items() if task in o]
            raise UsageError(
                f"{_flag(name)} is not a setting of task {task}; "
                f"its settings are: {', '.join(_flag(n) for n in allowed)}"
            )
    model_fields = _model_fields()
    for name in sections["model"]:
        if model not in model_fields[name][1]:
            raise UsageError(f"{_flag(name)} does not apply to --model {model}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--config: file {str(path)!r} does not exist") from None
    except OSError as error:  # a folder, no permission
        raise UsageError(f"--config: cannot read {str(path)!r}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"--config: {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path} must hold a JSON object")
    try:
        check_sections(data)
    except ValueError as error:
        raise UsageError(f"--config {path}: {error}") from None
    return data


def _new_run(args: argparse.Namespace) -> RunConfig:
    """The configuration of the new run that these ``ntm train`` arguments describe: the
    preset's, then ``--config``'s, then the flags' settings; a setting given to a task or
    model that lacks it is named."""
    sections = _sections(args)
    base = _read_json(args.config) if args.config else {}
    probe = from_dict(TrainConfig, {**base.get("train", {}), **sections["train"]})
    _check_scopes(sections, probe.task, probe.model)
    return resolve_config(sections["train"], sections["task"], sections["model"], base)


def _planned(args: argparse.Namespace) -> TrainConfig:
    """The training settings that ``ntm train`` with these arguments will use."""
    if args.resume is not None:
        train = read_run_config(args.resume).train
        return dataclasses.replace(train, **_sections(args)["train"])
    return _new_run(args).train


def _train(args: argparse.Namespace) -> int:
    planned = _planned(args)
    device = devices.resolve(planned.device, distributed.local_rank())  # before any start
    nproc = args.nproc if args.nproc is not None else launch.default_processes(planned, device)
    if nproc != 1:
        launch.check_gpus(nproc, planned.device, device)
        rest = _keep_options(args.argv, _arity(_train_parser()), lambda name: name != "--nproc")
        return launch.launch(nproc, rest)
    world = distributed.join(device)
    try:
        return _train_in(args, world)
    finally:
        distributed.leave(world)


def _train_in(args: argparse.Namespace, world: distributed.World) -> int:
    sections = _sections(args)
    quiet = args.quiet or not world.main
    if args.resume is not None:
        if args.config is not None or sections["model"] or sections["task"] or args.run_dir:
            raise UsageError(
                "--resume continues a run as configured; only "
                f"{', '.join(_flag(n) for n in RESUMABLE)} may be given with it"
            )
        trainer = training.reopen(args.resume, sections["train"], quiet=quiet, world=world)
    else:
        run = _new_run(args)
        trainer = training.start(run, args.run_dir, quiet=quiet, world=world)
        count = sum(p.numel() for p in trainer.model.parameters())
        processes = f", {world.size} processes" if world.parallel else ""
        trainer.log(
            f"run folder {trainer.run_dir}: {run.train.task}, {run.train.model} "
            f"({count:,d} parameters), preset {run.train.preset}{processes}"
        )
    result = trainer.fit()
    if not quiet:
        verdict = {
            "target": "solved",
            "floor": "stopped at the floor learning rate without progress",
            "budget": "stopped at --max-sequences",
            "interrupted": "interrupted",
        }[result.reason]
        print(
            f"{verdict} after {result.sequences:,d} sequences in {result.seconds / 60:.1f} min: "
            f"held-out cost {result.eval_cost:.3f} bits, "
            f"{result.eval_bit_errors:.3f} bit errors per sequence\n"
            f"next: ntm eval {result.run_dir}   ntm viz {result.run_dir}"
        )
    return 130 if result.interrupted else 0


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


def _train_parser(prog: str = "ntm train") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog)
    _add_train_arguments(parser)
    return parser


def setting_flags(key: str, value: str) -> list[str]:
    """The ``ntm train`` flags that set ``key`` to ``value``: ``--key value``, or for a
    switch ``--key`` / ``--no-key`` (the value read as a boolean)."""
    flag = _flag(key)
    switches = {
        option
        for action in _train_parser()._actions
        if isinstance(action, argparse.BooleanOptionalAction)
        for option in action.option_strings
    }
    if flag in switches:
        on = parse_bool(value, f"--set {key}")
        return [flag if on else "--no-" + flag[2:]]
    return [flag, value]


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


def _assignments(flag: str, cls: type[Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (given to ``flag``) into settings of the registered model
    or task class ``cls``, each of the type it declares."""
    known = {name: kind for name, kind, _ in registry.settings_of(cls)}
    owner = cls.__qualname__
    settings: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            raise UsageError(
                f"{flag} {item!r}: expected KEY=VALUE with KEY one of "
                f"{', '.join(known) or '(none)'}"
            )
        kind = known[key]
        try:
            value: Any = parse_bool(raw, f"{flag} {item!r}") if kind is bool else kind(raw)
        except ValueError as error:
            if kind is bool:
                raise UsageError(str(error)) from None
            raise UsageError(f"{flag} {item!r}: {raw!r} is not a valid {kind.__name__}") from None
        settings[key] = check_value(owner, key, value, kind)
    return settings


def _run_dir(args: argparse.Namespace) -> Path:
    """The run folder that ``eval`` or ``viz`` reads: RUN_DIR, or a shipped model's."""
    if (args.run_dir is None) == (args.pretrained is None):
        raise UsageError("give a RUN_DIR or --pretrained TASK (one of them)")
    if args.pretrained is None and args.model is not None:
        raise UsageError("--model chooses among the shipped models: give it with --pretrained")
    if args.pretrained:
        return pretrained.path(args.pretrained, args.model or "ntm")
    return Path(args.run_dir)


def _eval(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args)
    _say_which_model(run_dir, args.checkpoint)
    settings = _task_args_for(run_dir, args.task_arg)
    if args.ladder and settings is not None:
        raise UsageError("--ladder climbs the task's own settings; leave out --task-arg")
    rows = evaluate_run(
        run_dir, settings, args.size, args.seed, args.checkpoint, args.device, args.ladder
    )
    if args.ladder and not args.pretrained:
        ckpt.write_text_atomic(run_dir / LADDER_FILE, json.dumps(rows, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0


def _say_which_model(run_dir: Path, checkpoint: str) -> None:
    """One line on standard error: which of the run's models ``eval`` or ``viz`` reads."""
    read_run_config(run_dir)  # a missing or broken run folder is named first
    path = weights_file(run_dir, checkpoint)
    if path.parent == run_dir:
        return  # a shipped model has one
    best = ckpt.read_best(run_dir) if path.parent.name == ckpt.BEST else None
    if best is not None:
        line = (
            f"the best model: {best['sequences']:,d} sequences, held-out cost "
            f"{best['eval_cost']:.3f} (--checkpoint latest for the newest)"
        )
    else:
        line = f"the latest model: {path.parent.name}"
    print(f"{run_dir}: {line}", file=sys.stderr)


def _task_args_for(run_dir: Path, assignments: Sequence[str]) -> dict[str, Any] | None:
    if not assignments:
        return None
    run = read_run_config(run_dir)
    return _assignments("--task-arg", registry.task_class(run.train.task), assignments)


def _viz(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args)
    out = args.out
    if out is None and args.pretrained:
        kind = "" if (args.model or "ntm") == "ntm" else f"-{args.model}"
        out = Path(f"pretrained-{args.pretrained}{kind}")  # never into the installed package
    _say_which_model(run_dir, args.checkpoint)
    settings = _task_args_for(run_dir, args.task_arg)
    paths = draw_run(run_dir, out, settings, args.seed, args.checkpoint, args.device)
    if args.html:
        try:
            paths.append(draw_page(run_dir, out, settings, args.seed, args.checkpoint, args.device))
        except ValueError as error:
            raise UsageError(str(error)) from None
    for path in paths:
        print(path)
    return 0


def _add_run_arguments(parser: argparse.ArgumentParser, seed_help: str) -> None:
    """The arguments ``eval`` and ``viz`` share: the run, task changes and a seed."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", nargs="?")
    parser.add_argument(
        "--pretrained",
        metavar="TASK",
        help="a model shipped with the package instead of a run folder ("
        + "; ".join(f"{m}: {', '.join(pretrained.available(m))}" for m in pretrained.models())
        + ")",
    )
    parser.add_argument(
        "--model",
        choices=pretrained.models(),
        help="with --pretrained: which model's shipped one (default: ntm)",
    )
    parser.add_argument(
        "--task-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="use the run's task with this setting changed (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help=seed_help)
    parser.add_argument(
        "--checkpoint",
        choices=CHECKPOINTS,
        default="best",
        help="the run's model with the lowest held-out cost (best; the latest where the run "
        "has none) or its newest (latest); default: best",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help=f"where to run the model: {devices.DEVICE_FORMS} (auto: a GPU where there is one)",
    )


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
        "(pip install 'ntm[ray]')",
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ntm",
        description="Neural Turing Machines (Graves et al., 2014): train, evaluate, draw.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser(
        "train",
        help="train a model on a task",
        description="Train a registered model (the NTM, the DNC, the LSTM baseline, or your "
        "own) on a registered task (the paper's five, or your own).",
        epilog=describe_recipes(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_arguments(train)
    train.set_defaults(func=_train)

    sweeper = commands.add_parser(
        "sweep",
        help="train many runs over seeds and settings, and summarise them",
        description=_SWEEP_DESCRIPTION,
    )
    _add_sweep_arguments(sweeper)
    sweeper.set_defaults(func=_sweep)

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a run on held-out sequences",
        description="Cost in bits and bit errors per sequence on seeded held-out sets: the "
        "training distribution and the paper's generalisation settings, or --task-arg.",
    )
    _add_run_arguments(evaluate, "seed of the held-out sets")
    evaluate.add_argument("--size", type=int, default=1000, help="sequences per setting")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument(
        "--ladder",
        action="store_true",
        help="the task's settings beyond training (lengths, items or pairs x2, x4, ...) "
        f"instead of the paper's; kept in the run folder as {LADDER_FILE}",
    )
    evaluate.set_defaults(func=_eval)

    viz = commands.add_parser(
        "viz",
        help="draw a run: sequence, attention, memory, learning curves",
        description="Write PNGs: one held-out sequence with inputs, targets, outputs and the "
        "heads' weightings over time; the memory at the end; the learning curves.",
    )
    _add_run_arguments(viz, "seed of the drawn sequence")
    viz.add_argument(
        "--out", type=Path, metavar="DIR", help="folder for the PNGs (default: RUN_DIR)"
    )
    viz.add_argument(
        "--html",
        action="store_true",
        help="also viewer.html: one self-contained page to move through the memory step by "
        "step (time slider, every head's weightings, hover for values; no server needed)",
    )
    viz.set_defaults(func=_viz)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except registry.RegistryError as error:  # a plug-in that cannot be loaded
        sys.stderr.write(f"ntm: error: {error}\n")
        return EXIT_USAGE
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(arguments)
    args.argv = arguments
    try:
        return int(args.func(args))
    except (UsageError, RunError, ValueError) as error:
        if os.environ.get("RANK", "0") == "0":  # one line, not one per training process
            sys.stderr.write(f"ntm {args.command}: error: {error}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before training began (training saves and exits 130)
        sys.stderr.write(f"ntm {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:  # `ntm eval RUN | head`: the reader left, nothing to report
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - keeps the exit flush quiet
        return 0
