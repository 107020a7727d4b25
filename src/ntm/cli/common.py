"""What the commands share: a parser with one-line errors, and flags made from settings.

Also how ``eval`` and ``viz`` find the run folder they read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ntm import registry
from ntm.config import check_value, from_dict, parse_bool
from ntm.engines import devices
from ntm.runs import checkpoint as ckpt
from ntm.runs import pretrained
from ntm.runs.config import (
    RunConfig,
    TrainConfig,
    check_sections,
    resolve_config,
)
from ntm.runs.evaluation import HELD_OUT_SEED
from ntm.runs.load import CHECKPOINTS, read_run_config, weights_file

EXIT_USAGE = 2


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
        if vars(args).get("resume") is not None:
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
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="use the run's model with this setting changed, one no weight depends on "
        "(repeatable), e.g. memory_size=1024: an NTM or a DNC given more slots than it "
        "trained with",
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


def _run_dir(args: argparse.Namespace) -> Path:
    """The run folder that ``eval`` or ``viz`` reads: RUN_DIR, or a shipped model's."""
    if (args.run_dir is None) == (args.pretrained is None):
        raise UsageError("give a RUN_DIR or --pretrained TASK (one of them)")
    if args.pretrained is None and args.model is not None:
        raise UsageError("--model chooses among the shipped models: give it with --pretrained")
    if args.pretrained:
        return pretrained.path(args.pretrained, args.model or "ntm")
    return Path(args.run_dir)


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


def _model_args_for(run_dir: Path, assignments: Sequence[str]) -> dict[str, Any] | None:
    """``--model-arg`` settings for the run's model, read as the types it declares."""
    if not assignments:
        return None
    run = read_run_config(run_dir)
    return _assignments("--model-arg", registry.model_class(run.train.model), assignments)


def _task_args_for(run_dir: Path, assignments: Sequence[str]) -> dict[str, Any] | None:
    if not assignments:
        return None
    run = read_run_config(run_dir)
    return _assignments("--task-arg", registry.task_class(run.train.task), assignments)
