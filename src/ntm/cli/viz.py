"""``ntm viz``: pictures of a run, and the browser viewer of its memory."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from ntm.cli.common import (
    UsageError,
    _model_args_for,
    _run_dir,
    _say_which_model,
    _task_args_for,
)


def _viz(args: argparse.Namespace) -> int:
    # Loaded here, not above: matplotlib takes half a second that other commands need not wait.
    draw_run = importlib.import_module("ntm.pictures.figures").draw_run
    draw_page = importlib.import_module("ntm.pictures.viewer").draw_page
    run_dir = _run_dir(args)
    out = args.out
    if out is None and args.pretrained:
        kind = "" if (args.model or "ntm") == "ntm" else f"-{args.model}"
        out = Path(f"pretrained-{args.pretrained}{kind}")  # never into the installed package
    _say_which_model(run_dir, args.checkpoint)
    settings = _task_args_for(run_dir, args.task_arg)
    model = _model_args_for(run_dir, args.model_arg)
    paths = draw_run(run_dir, out, settings, args.seed, args.checkpoint, args.device, model)
    if args.html:
        try:
            where = (args.seed, args.checkpoint, args.device, model)
            paths.append(draw_page(run_dir, out, settings, *where))
        except ValueError as error:
            raise UsageError(str(error)) from None
    for path in paths:
        print(path)
    return 0
