"""The ``ntm`` command line."""

from __future__ import annotations

import argparse
import sys

import torch

from ntm.model import NTM
from ntm.tasks import bit_errors, cost_bits, make_task


def _demo(args: argparse.Namespace) -> int:
    task = make_task("copy")
    model = NTM(task.input_size, task.output_size)
    batch = task.sample(args.batch_size, torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    print(f"copy batch: inputs {tuple(batch.inputs.shape)}, targets {tuple(batch.targets.shape)}")
    print(f"untrained NTM, {sum(p.numel() for p in model.parameters()):,} parameters:")
    print(f"  cost {cost_bits(logits, batch.targets, batch.mask):.1f} bits per sequence")
    print(f"  {bit_errors(logits, batch.targets, batch.mask):.1f} bit errors per sequence")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ntm", description="Neural Turing Machines in PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run an untrained NTM on a copy batch")
    demo.add_argument("--batch-size", type=int, default=4)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))
