"""The ``ntm`` command line: ``train``, ``sweep``, ``eval`` and ``viz``.

One module per command (:mod:`ntm.cli.train`, :mod:`ntm.cli.sweep`, :mod:`ntm.cli.eval`,
:mod:`ntm.cli.viz`), and what they share in :mod:`ntm.cli.common`. The flags of ``ntm
train`` are generated from :class:`ntm.runs.config.TrainConfig` and the settings of every
registered model and task (:mod:`ntm.registry`), so every setting has exactly one default,
where it is declared; ``--model-arg`` and ``--task-arg`` reach any
setting of the chosen model and task by name. Every
reading of a command line's words (which flags take a value, which a resumed run or a
sweep's runs are given, how a setting becomes a flag) is done here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ntm import registry
from ntm.cli.common import (
    EXIT_USAGE,
    UsageError,
    _add_run_arguments,
    _add_train_arguments,
    _Parser,
    setting_flags,
)
from ntm.cli.eval import LADDER_FILE, _eval, ladder_file
from ntm.cli.sweep import _SWEEP_DESCRIPTION, _add_sweep_arguments, _sweep, sweep_axes
from ntm.cli.train import _train
from ntm.cli.viz import _viz
from ntm.runs.checkpoint import RunError
from ntm.runs.config import describe_recipes

__all__ = ["UsageError", "build_parser", "main", "setting_flags", "sweep_axes"]


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
        "instead of the paper's, after the lengths inside training a Chomsky task shows "
        f"first; kept in the run folder as {LADDER_FILE}",
    )
    evaluate.add_argument(
        "--memory-for-length",
        action="store_true",
        help="give a model with a memory_size as many slots as a setting's sequences have "
        "steps where it has fewer (its trained number, or --model-arg memory_size=N); with "
        f"--ladder kept as {ladder_file({'for_length': True})} (or with the memory_size)",
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
