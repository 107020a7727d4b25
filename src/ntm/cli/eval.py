"""``ntm eval``: a run's cost and errors on seeded held-out sets, or up its task's ladder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ntm.cli.common import (
    UsageError,
    _model_args_for,
    _run_dir,
    _say_which_model,
    _task_args_for,
)
from ntm.runs import checkpoint as ckpt
from ntm.runs.evaluation import evaluate_run, format_table

#: Where ``ntm eval RUN --ladder`` keeps its rows in the run folder.
LADDER_FILE = "ladder.json"


def ladder_file(model_settings: dict[str, Any] | None) -> str:
    """Where ``ntm eval RUN --ladder`` keeps its rows: ``ladder.json``, or with the model's
    settings changed, ``ladder.KEY=VALUE.json`` (``ladder.memory_size=1024.json``)."""
    if not model_settings:
        return LADDER_FILE
    changed = ",".join(f"{key}={value}" for key, value in sorted(model_settings.items()))
    return f"{Path(LADDER_FILE).stem}.{changed}.json"


def _eval(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args)
    _say_which_model(run_dir, args.checkpoint)
    settings = _task_args_for(run_dir, args.task_arg)
    model_settings = _model_args_for(run_dir, args.model_arg)
    if args.ladder and settings is not None:
        raise UsageError("--ladder climbs the task's own settings; leave out --task-arg")
    rows = evaluate_run(
        run_dir,
        settings,
        args.size,
        args.seed,
        args.checkpoint,
        args.device,
        args.ladder,
        model_settings,
        args.memory_for_length,
    )
    if args.ladder and not args.pretrained:
        kept = ladder_file(
            {**(model_settings or {}), "for_length": True}
            if args.memory_for_length
            else model_settings
        )
        ckpt.write_text_atomic(run_dir / kept, json.dumps(rows, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0
