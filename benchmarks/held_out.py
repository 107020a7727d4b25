"""The held-out evaluation's speed for causal models: chunks of like lengths cut after their
last scored step, against every chunk run over the longest sequence's steps.

Run: ``python benchmarks/held_out.py`` (``--json FILE`` keeps what it printed as a record,
which :func:`table` renders as Markdown and ``scripts/make_results.py`` puts into
``benchmarks/README.md``).

Each row: one model as ``ntm train --task TASK --model M`` builds it (untrained: the time
does not depend on the weights), evaluated on that run's held-out set as the trainer
evaluates it at every ``--eval-every``, in one thread. ``whole`` is the same model behind a
wrapper that declares nothing, so :func:`ntm.runs.evaluation.evaluate` runs every step of
every chunk. The two take turns (whole, cut, whole, ...), so that a change in the machine's
speed during the run falls on both; each figure is the median of its turns. The ratio is
whole's time over cut's, measured in this run. Both report the same errors and, to
rounding, the same cost (checked here on every row, and in ``tests/test_evaluation.py``).

Then the chunks' size for a model whose state is large: the DNC with 1,024 slots (``ntm
eval --model-arg memory_size=1024``, as the comparison's ladders evaluate it), untrained,
on ``--chunk-sequences`` sequences of one length (``--chunk-length``, a rung of the
ladder), evaluated :data:`~ntm.runs.evaluation.CPU_CHUNK` sequences at a time and
:func:`~ntm.runs.evaluation.chunk_for`'s number at a time, in turns; the ratio is the
first's time over the second's.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header, in_turns, keep
from ntm.runs.config import resolve_config
from ntm.runs.evaluation import CPU_CHUNK, chunk_for, evaluate
from ntm.runs.load import build_model
from ntm.tasks.scoring import scoring
from ntm.training.data import held_out_batch


class Whole(nn.Module):
    """A model behind a wrapper that declares nothing: evaluated over every step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor) -> Any:
        return self.model(inputs)


def _same(one: tuple[float, float], other: tuple[float, float]) -> bool:
    """Two evaluations' (cost, errors): the same errors, and the same cost to rounding."""
    return one[1] == other[1] and math.isclose(one[0], other[0], rel_tol=1e-5)


def measure(task: str, model_name: str, turns: int) -> dict[str, Any]:
    """Seconds of one held-out evaluation of ``model_name`` on ``task``, cut and whole."""
    run = resolve_config({"task": task, "model": model_name}, {}, {})
    torch.manual_seed(0)
    model = build_model(run)
    batch = held_out_batch(run)
    score = scoring(run.task)
    ways = {"whole": Whole(model), "cut": model}
    median, results = in_turns(
        list(ways), lambda way: evaluate(ways[way], batch, score=score), turns
    )
    if not _same(results["cut"], results["whole"]):
        raise AssertionError(f"{model_name}: {results['cut']} cut, {results['whole']} whole")
    steps, sequences = batch.mask.shape
    return {
        "task": task,
        "model": model_name,
        "sequences": sequences,
        "steps": steps,
        **{f"{way}_seconds": median[way] for way in ways},
        "ratio": median["whole"] / median["cut"],
    }


def measure_chunks(task: str, length: int, sequences: int, turns: int) -> dict[str, Any]:
    """Seconds of evaluating a DNC of 1,024 slots on ``sequences`` of ``length``, in chunks
    of :data:`CPU_CHUNK` sequences and of :func:`chunk_for`'s number."""
    run = resolve_config({"task": task, "model": "dnc"}, {}, {"memory_size": 1024})
    torch.manual_seed(0)
    model = build_model(run)
    variant = run.task.with_settings(min_length=length, max_length=length)
    batch = variant.sample(sequences, torch.Generator().manual_seed(0))
    score = scoring(variant)
    sizes = {"fixed": CPU_CHUNK, "sized": chunk_for(model, torch.device("cpu"))}
    median, results = in_turns(
        list(sizes), lambda way: evaluate(model, batch, chunk=sizes[way], score=score), turns
    )
    if not _same(results["fixed"], results["sized"]):
        raise AssertionError(f"chunks of {sizes}: {results}")
    return {
        "task": task,
        "memory_size": 1024,
        "length": length,
        "sequences": sequences,
        "steps": batch.inputs.shape[0],
        **{f"{way}_chunk": sizes[way] for way in sizes},
        **{f"{way}_seconds": median[way] for way in sizes},
        "ratio": median["fixed"] / median["sized"],
    }


def table(record: dict[str, Any]) -> list[str]:
    """The record as a Markdown table, with the command and date it came from."""
    lines = [f"{caption(record)}:", "",
             "| task | model | held-out sequences x steps | whole s | cut s | cut x whole |",
             "|" + " --- |" * 6]  # fmt: skip
    for row in record["rows"]:
        lines.append(f"| {row['task']} | {row['model']} | {row['sequences']} x {row['steps']} "
                     f"| {row['whole_seconds']:.2f} | {row['cut_seconds']:.2f} "
                     f"| {row['ratio']:.1f} |")  # fmt: skip
    if record.get("chunks"):
        lines += ["", "| task | model | sequences x steps | chunk | s | chunk | s | ratio |",
                  "|" + " --- |" * 8]  # fmt: skip
        for row in record["chunks"]:
            lines.append(f"| {row['task']} | dnc, {row['memory_size']:,d} slots "
                         f"| {row['sequences']} x {row['steps']} "
                         f"| {row['fixed_chunk']} | {row['fixed_seconds']:.1f} "
                         f"| {row['sized_chunk']} | {row['sized_seconds']:.1f} "
                         f"| {row['ratio']:.1f} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reverse_string")
    parser.add_argument("--models", default="ntm,dnc,sam,lstm,transformer,mamba,xlstm",
                        help="commas: %(default)s")  # fmt: skip
    parser.add_argument("--turns", type=int, default=5, help="timed evaluations per way")
    parser.add_argument(
        "--chunk-length",
        type=int,
        default=150,
        help="the length of the sequences the chunks' sizes are timed on",
    )
    parser.add_argument("--chunk-sequences", type=int, default=100, help="(the ladder's)")
    parser.add_argument("--chunk-turns", type=int, default=2)
    parser.add_argument("--json", type=Path, help="keep the rows here as a record")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = header("held_out")
    record["rows"] = []
    for model_name in args.models.split(","):
        record["rows"].append(measure(args.task, model_name, args.turns))
        print("\n".join(table(record)[-1:]), flush=True)
    if args.chunk_turns:
        record["chunks"] = [
            measure_chunks(args.task, args.chunk_length, args.chunk_sequences, args.chunk_turns)
        ]
    keep(record, table(record), args.json)


if __name__ == "__main__":
    main()
