"""``ntm eval``: a run's cost and errors on seeded held-out sets, or up its task's ladder."""

from __future__ import annotations

import argparse
import json

from ntm.cli.common import UsageError, _run_dir, _say_which_model, _task_args_for
from ntm.runs import checkpoint as ckpt
from ntm.runs.evaluation import evaluate_run, format_table

#: Where ``ntm eval RUN --ladder`` keeps its rows in the run folder.
LADDER_FILE = "ladder.json"


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
