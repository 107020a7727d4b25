"""``ntm train``: train a registered model on a registered task, on one or several processes."""

from __future__ import annotations

import argparse

from ntm.cli.common import (
    UsageError,
    _arity,
    _flag,
    _keep_options,
    _new_run,
    _planned,
    _sections,
    _train_parser,
)
from ntm.engines import devices
from ntm.runs.config import (
    RESUMABLE,
)
from ntm.training import distributed, launch
from ntm.training import trainer as training


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
            "converged": "converged (no new best held-out cost in --stop-patience evaluations)",
            "budget": "stopped at --max-sequences",
            "interrupted": "interrupted",
        }[result.reason]
        print(
            f"{verdict} after {result.sequences:,d} sequences in {result.seconds / 60:.1f} min: "
            f"held-out cost {result.eval_cost:.3f} bits, "
            f"{result.eval_bit_errors:.3f} {result.errors} per sequence\n"
            f"next: ntm eval {result.run_dir}   ntm viz {result.run_dir}"
        )
    return 130 if result.interrupted else 0
