"""What every benchmark's record opens with, the caption its rendered table opens with, and
the timing in turns that the benchmarks comparing two ways of one computation share."""

from __future__ import annotations

import contextlib
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch


def header(name: str) -> dict[str, Any]:
    """The start of benchmark ``name``'s record: which script, the command that ran it, the
    day and torch's version."""
    return {
        "benchmark": name,
        "command": f"python benchmarks/{name}.py " + shlex.join(sys.argv[1:]),
        "measured": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
    }


def caption(record: dict[str, Any]) -> str:
    """The command, day and torch version of ``record``, as a table's caption opens."""
    return f"`{record['command']}` ({record['measured']}, torch {record['torch']})"


def in_turns(
    ways: Sequence[str], once: Callable[[str], Any], turns: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """The median seconds of ``once(way)`` for each of ``ways``, and what each way's last
    call returned. Every turn calls each way once, so that a change in the machine's speed
    during the run falls on all of them; a first, untimed turn warms each up (allocations,
    the C library), then ``turns`` are timed."""
    times: dict[str, list[float]] = {way: [] for way in ways}
    results: dict[str, Any] = {}
    for turn in range(turns + 1):
        for way in ways:
            start = time.perf_counter()
            results[way] = once(way)
            if turn:
                times[way].append(time.perf_counter() - start)
    return {way: statistics.median(times[way]) for way in ways}, results


def keep(record: dict[str, Any], lines: list[str], path: Path | None) -> None:
    """Print a benchmark's rendered table (``lines``), and write its ``record`` to ``path``
    as JSON where one is given."""
    print("\n".join(lines))
    if path:
        path.write_text(json.dumps(record, indent=2) + "\n")


#: How a model is switched to one way of computing for a step: a context manager taking the
#: model and the way's name.
Switch = Callable[[torch.nn.Module, str], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def engine_switch(model: torch.nn.Module, way: str) -> Iterator[None]:
    """The model on the engine named ``way``."""
    model.engine = way  # type: ignore[assignment]
    yield


def step_times(
    model: torch.nn.Module, inputs: torch.Tensor, ways: Sequence[str], switch: Switch, turns: int
) -> dict[str, float]:
    """The median seconds of a training step (forward, backward of the outputs' mean
    square, an AdamW step) of ``model`` on ``inputs`` each of ``ways``, timed
    :func:`in_turns`; ``switch`` puts the model in each way for its step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(way: str) -> None:
        with switch(model, way):
            optimizer.zero_grad()
            model(inputs).square().mean().backward()
            optimizer.step()

    return in_turns(ways, step, turns)[0]
