"""Mamba's and the xLSTM's training speed with their causal convolution and SiLU in C
(``ntm.engines.native.conv``) against PyTorch's grouped convolution, on the CPU.

Run: ``python benchmarks/causal_conv.py`` (``--json FILE`` keeps what it printed as a
record, which :func:`table` renders as Markdown and ``scripts/make_results.py`` puts into
``benchmarks/README.md``).

Each row: one model as the comparison trains it on odds_first (``benchmarks/compare.py``:
parameters matched to the NTM's, batches of 32, 42 steps the mean length), in one thread,
a training step (forward, backward, AdamW step) on each of two ways in turns, so that a
change in the machine's speed during the run falls on both; each figure is the median over
its turns. Mamba: its native engine with PyTorch's convolution and SiLU (``before``)
against the same engine with them in C (``after``). The xLSTM: the package's mLSTM layers
as they are (its ``eager`` engine, ``before``) against :func:`ntm.models.xlstm.mlstm_layer`
(its ``native`` engine, ``after``: the convolution and SiLU in C, the head-wise projections
and the cell's parallel form in C too, its two gate projections as one product and its
head-wise norm as a layer norm). The ratio is before's time over after's, measured in this
run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Switch, caption, engine_switch, header, keep, step_times
from ntm.engines.native.conv import reference
from ntm.models import mamba
from ntm.models.xlstm import XLSTMModel

WAYS = ("before", "after")


@contextlib.contextmanager
def _mamba_way(model: torch.nn.Module, way: str) -> Iterator[None]:
    """Mamba's native engine, its convolution in PyTorch (before) or in C (after)."""
    native = mamba.causal_conv_silu
    if way == "before":
        mamba.causal_conv_silu = reference  # what its mixer called before the C convolution
    try:
        yield
    finally:
        mamba.causal_conv_silu = native


def _xlstm_way(model: torch.nn.Module, way: str) -> contextlib.AbstractContextManager[None]:
    """The xLSTM's eager engine (before) or its native one (after)."""
    return engine_switch(model, "eager" if way == "before" else "native")


#: Each model as the comparison builds it on odds_first (3 inputs, 2 outputs), and how it
#: switches between the two ways.
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], Switch]] = {
    "mamba": (lambda: mamba.MambaModel(3, 2, d_model=62), _mamba_way),
    "xlstm": (lambda: XLSTMModel(3, 2, d_model=64), _xlstm_way),
}


def measure(name: str, batch: int, steps: int, turns: int) -> dict[str, Any]:
    """Seconds per training step each way for model ``name`` at one batch shape."""
    torch.manual_seed(0)
    build, switch = MODELS[name]
    model = build()
    inputs = torch.randn(steps, batch, 3)
    median = step_times(model, inputs, WAYS, switch, turns)
    return {
        "model": name,
        "batch": batch,
        "steps": steps,
        **{f"{way}_seconds": median[way] for way in WAYS},
        "ratio": median["before"] / median["after"],
    }


def table(record: dict[str, Any]) -> list[str]:
    """The record as a Markdown table, with the command and date it came from."""
    lines = [f"{caption(record)}:", "",
             "| model | batch | steps | before s/step | after s/step | after x before |",
             "|" + " --- |" * 6]  # fmt: skip
    for row in record["rows"]:
        lines.append(f"| {row['model']} | {row['batch']} | {row['steps']} "
                     f"| {row['before_seconds']:.4f} | {row['after_seconds']:.4f} "
                     f"| {row['ratio']:.2f} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mamba,xlstm", help="commas: %(default)s")
    parser.add_argument("--shapes", default="32x42,32x81",
                        help="batch x steps of each row, commas: %(default)s")  # fmt: skip
    parser.add_argument("--turns", type=int, default=30, help="timed steps each way")
    parser.add_argument("--json", type=Path, help="keep the rows here as a record")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = header("causal_conv")
    record["rows"] = []
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"--models: {name!r} is not one of {', '.join(MODELS)}")
        for shape in args.shapes.split(","):
            batch, steps = (int(part) for part in shape.split("x"))
            record["rows"].append(measure(name, batch, steps, args.turns))
            print("\n".join(table(record)[-1:]), flush=True)
    keep(record, table(record), args.json)


if __name__ == "__main__":
    main()
