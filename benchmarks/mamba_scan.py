"""Mamba's training speed on its engines: the selective scan in C (``native``) against
``mambapy``'s parallel scan in PyTorch (``eager``), on the CPU.

Run: ``python benchmarks/mamba_scan.py`` (``--json FILE`` keeps what it printed as a
record, which :func:`table` renders as Markdown and ``scripts/make_results.py`` puts into
``benchmarks/README.md``).

Each row: one shape of training batch, the model the comparison trains on reverse_string
(``d_model`` 62, two blocks, a state of 16 per channel), in one thread. Both engines train
the same model on the same batches, in turns (eager, native, eager, ...), so that a change
in the machine's speed during the run falls on both; each figure is the median over its
turns of the seconds of a training step (forward, backward, AdamW step). The ratio is
eager's time over native's, measured in this run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, engine_switch, header, keep, step_times
from ntm.models.mamba import MambaModel

ENGINES = ("eager", "native")


def measure(batch: int, steps: int, turns: int, width: int) -> dict[str, Any]:
    """Seconds per training step on each engine at one batch shape (T = ``steps``)."""
    torch.manual_seed(0)
    model = MambaModel(3, 2, d_model=width)
    inputs = torch.randn(steps, batch, 3)
    median = step_times(model, inputs, ENGINES, engine_switch, turns)
    return {
        "batch": batch,
        "steps": steps,
        "d_model": width,
        **{f"{engine}_seconds": median[engine] for engine in ENGINES},
        "ratio": median["eager"] / median["native"],
    }


def table(record: dict[str, Any]) -> list[str]:
    """The record as a Markdown table, with the command and date it came from."""
    lines = [f"{caption(record)}:", "",
             "| batch | steps | d_model | eager s/step | native s/step | native x eager |",
             "|" + " --- |" * 6]  # fmt: skip
    for row in record["rows"]:
        lines.append(f"| {row['batch']} | {row['steps']} | {row['d_model']} "
                     f"| {row['eager_seconds']:.3f} | {row['native_seconds']:.3f} "
                     f"| {row['ratio']:.1f} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="32x81,32x21,8x201",
                        help="batch x steps of each row, commas: %(default)s")  # fmt: skip
    parser.add_argument("--turns", type=int, default=10, help="timed steps per engine")
    parser.add_argument("--d-model", type=int, default=62)
    parser.add_argument("--json", type=Path, help="keep the rows here as a record")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = header("mamba_scan")
    record["rows"] = []
    for shape in args.shapes.split(","):
        batch, steps = (int(part) for part in shape.split("x"))
        record["rows"].append(measure(batch, steps, args.turns, args.d_model))
        print("\n".join(table(record)[-1:]), flush=True)
    keep(record, table(record), args.json)


if __name__ == "__main__":
    main()
