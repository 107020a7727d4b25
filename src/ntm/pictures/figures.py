"""``ntm viz``: pictures of a run that a person reads at a glance (no display needed)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from ntm import registry
from ntm.models.dnc.addressing import READ_MODES
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import TrainConfig
from ntm.runs.evaluation import HELD_OUT_SEED
from ntm.runs.load import load_run, logits_of

#: Weight above which a memory slot counts as used, for cropping the attention plots.
USED_WEIGHT = 0.01
#: Unused slots drawn on each side of the used band, so its edges are visible.
SLOT_MARGIN = 2


def shown_slots(*weights: np.ndarray) -> np.ndarray:
    """The slots to draw, in order: the shortest run of slots, read around the memory as a
    circle (slot N - 1 next to slot 0), that holds every slot a head attends to noticeably,
    with a margin of ``SLOT_MARGIN`` on each side.

    Heads shift around the memory circularly, so a band of attention can run from slot N - 1
    on to slot 0; it is then returned in that order (say 125, 126, 127, 0, 1). A band that does
    not cross slot 0 is a plain range whose margin stops at the memory's ends.

    Args:
        weights: arrays (..., N) of attention weights over the same N slots.

    Returns:
        (K,) slot indices, K <= N; every slot 0 .. N - 1 when nothing (or nearly everything)
        is attended.
    """
    count = weights[0].shape[-1]
    used = np.zeros(count, dtype=bool)
    for w in weights:
        used |= (w > USED_WEIGHT).any(axis=tuple(range(w.ndim - 1)))
    index = np.flatnonzero(used)
    if index.size == 0:
        return np.arange(count)
    # The band is the circle less its longest unused stretch. The stretch from the last used
    # slot round to the first wins ties, so a band that fits without crossing slot 0 does so.
    gaps = np.diff(index, append=index[0] + count)  # gaps[i]: from index[i] to the next used
    if gaps[-1] == gaps.max():
        start = max(int(index[0]) - SLOT_MARGIN, 0)
        return np.arange(start, min(int(index[-1]) + SLOT_MARGIN + 1, count))
    widest = int(np.argmax(gaps))
    first, last = int(index[widest + 1]), int(index[widest])
    length = (last - first) % count + 1 + 2 * SLOT_MARGIN
    if length >= count:
        return np.arange(count)
    return np.mod(np.arange(first - SLOT_MARGIN, first - SLOT_MARGIN + length), count)


def slot_ticks(slots: np.ndarray, most: int = 8) -> tuple[np.ndarray, list[str]]:
    """Tick rows and labels for a panel whose rows are ``slots``: the rows whose slot index is
    a multiple of a round step (1, 2, 5, 10, 20, 50, ...), at most ``most`` of them, labelled
    with their true slot index.

    Args:
        slots: (K,) slot index of each row, as ``shown_slots`` returns.

    Returns:
        (rows, labels): the row positions (L,) and their labels, L <= ``most``.
    """
    steps = (base * 10**power for power in itertools.count() for base in (1, 2, 5))
    rows = next(r for r in (np.flatnonzero(slots % s == 0) for s in steps) if len(r) <= most)
    return rows, [str(int(slots[r])) for r in rows]


def _panel(ax: Any, data: np.ndarray, title: str, ylabel: str, cmap: str = "gray_r") -> None:
    ax.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=9)


def _height(rows: int) -> int:
    """A panel's height in rows' worth: at most 32, so a spread-out weighting stays readable."""
    return min(max(rows, 4), 32)


def sequence_figure(batch: Any, probabilities: np.ndarray, trace: Any | None, title: str) -> Any:
    """Inputs, targets and outputs of one sequence; then each head's weighting over time, on
    the slots ``shown_slots`` picks, labelled with their true indices.

    Args:
        batch: a ``Batch`` whose sequence 0 is drawn.
        probabilities: (T, O) the model's P(bit = 1) for that sequence.
        trace: the run's trace (one that declares its ``contents()``), or None for a model
            without memory. The panels it offers are drawn too (a DNC's usage, write gates
            and read modes).
        title: the figure's title.

    Returns:
        The matplotlib figure; the caller saves and closes it.
    """
    inputs = batch.inputs[:, 0].numpy().T  # (I, T)
    targets = (batch.targets[:, 0] * batch.mask[:, 0, None]).numpy().T  # (O, T)
    outputs = (probabilities * batch.mask[:, 0, None].numpy()).T  # (O, T)
    panels: list[tuple[np.ndarray, str, str]] = [
        (np.clip(inputs, 0, 1), "inputs", "channel"),
        (targets, "targets (scored steps)", "channel"),
        (outputs, "outputs: P(bit = 1) on scored steps", "channel"),
    ]
    row_names: dict[str, list[str]] = {}  # panels whose rows are named, not numbered
    slots = np.arange(0)
    contents = None if trace is None else registry.trace_contents(trace)
    if contents is not None:
        writes = contents.write_weights[:, 0].numpy()  # (T, W, N)
        reads = contents.read_weights[:, 0].numpy()  # (T, R, N)
        slots = shown_slots(writes, reads)  # (K,)
        for h in range(min(writes.shape[1], 4)):
            panels.append((writes[:, h, slots].T, f"write weighting, head {h}", "slot"))
        for h in range(min(reads.shape[1], 4)):
            panels.append((reads[:, h, slots].T, f"read weighting, head {h}", "slot"))
        extra = contents.panels  # the ones this figure knows, where the trace offers them
        if "usage" in extra:
            usage = extra["usage"][:, 0].numpy()  # (T, N)
            panels.append((usage[:, slots].T, "usage (before the step's write)", "slot"))
        if "gates" in extra:
            panels.append((extra["gates"][:, 0].numpy().T, "write gates", "gates"))
            row_names["gates"] = ["allocation", "write"]
        if "read_modes" in extra:
            modes = extra["read_modes"][:, 0].numpy()  # (T, R, 3)
            for h in range(min(modes.shape[1], 4)):
                panels.append((modes[:, h].T, f"read modes, head {h}", "modes"))
            row_names["modes"] = list(READ_MODES)
    heights = [_height(p[0].shape[0]) for p in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(
            max(6.0, inputs.shape[1] * 0.12 + 2),
            1.0 + sum(heights) * 0.1 + len(panels) * 0.5,
        ),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    # A label per 2.5 rows of height at most, so the labels of a short band do not crowd.
    rows, labels = slot_ticks(slots, most=max(2, _height(len(slots)) * 2 // 5))
    for ax, (data, name, ylabel) in zip(axes[:, 0], panels, strict=True):
        cmap = "gray_r" if ylabel == "channel" else "viridis"
        _panel(ax, data, name, ylabel, cmap)
        if ylabel == "slot":
            ax.set_yticks(rows, labels)
        elif ylabel in row_names:
            ax.set_yticks(range(len(row_names[ylabel])), row_names[ylabel], fontsize=7)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def draw_sequence(
    path: Path, batch: Any, probabilities: np.ndarray, trace: Any | None, title: str
) -> None:
    """Save ``sequence_figure`` to ``path``."""
    fig = sequence_figure(batch, probabilities, trace, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_memory(path: Path, memory: np.ndarray, title: str) -> None:
    """The memory matrix at the end of the sequence: one column per slot."""
    fig, ax = plt.subplots(figsize=(12, 3.2))
    bound = float(np.abs(memory).max()) or 1.0
    image = ax.imshow(
        memory.T, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-bound, vmax=bound
    )
    ax.set_xlabel("slot")
    ax.set_ylabel("word element")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def changes(rows: list[dict[str, float]], column: str) -> list[tuple[float, float, float]]:
    """(sequences, before, after) wherever ``column`` of ``metrics.csv`` changes from one
    evaluation to the next (a row holds the value in force up to it; NaN: not recorded)."""
    found = []
    for before, after in itertools.pairwise(rows):
        old, new = before.get(column, math.nan), after.get(column, math.nan)
        if math.isfinite(old) and math.isfinite(new) and old != new:
            found.append((before["sequences"], old, new))
    return found


def draw_learning_curves(
    path: Path, rows: list[dict[str, float]], train: TrainConfig, title: str
) -> None:
    """Cost and bit errors per sequence against training sequences, from metrics.csv, with
    the run's targets, a dotted line where the learning rate changed and a dashed one where
    the end marker came in."""
    fig, (cost_ax, error_ax) = plt.subplots(1, 2, figsize=(11, 4))
    if rows:
        seen = [r["sequences"] for r in rows]
        cost_ax.plot(seen, [r["train_cost"] for r in rows], label="training batches")
        cost_ax.plot(seen, [r["eval_cost"] for r in rows], label="held-out set")
        error_ax.plot(seen, [r["train_bit_errors"] for r in rows], label="training batches")
        error_ax.plot(seen, [r["eval_bit_errors"] for r in rows], label="held-out set")
    if train.target_bit_errors > 0:
        target = train.target_bit_errors
        error_ax.axhline(target, color="gray", linestyle="--", label=f"target {target:g}")
    if train.target_cost > 0:
        target = train.target_cost
        cost_ax.axhline(target, color="gray", linestyle="--", label=f"target {target:g}")
    for ax in (cost_ax, error_ax):
        for k, (at, old, new) in enumerate(changes(rows, "lr")):
            label = "learning rate lowered" if new < old else "learning rate raised"
            ax.axvline(at, color="tab:red", linestyle=":", linewidth=1,
                       label=label if k == 0 else None)  # fmt: skip
        for at, _, _ in changes(rows, "stage"):
            ax.axvline(at, color="tab:green", linestyle="--", linewidth=1,
                       label="end marker from here")  # fmt: skip
    for ax, name in ((cost_ax, "cost (bits per sequence)"), (error_ax, "bit errors per sequence")):
        ax.set_xlabel("training sequences")
        ax.set_ylabel(name)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def run_one(model: Any, inputs: torch.Tensor) -> tuple[np.ndarray, Any | None, np.ndarray | None]:
    """The model on ``inputs`` (T, 1, I): P(bit = 1) per step (T, O), its trace where it
    declares its contents (on the CPU), and the memory after the last step."""
    memory: np.ndarray | None = None
    trace: Any | None = None
    tracer = registry.tracer(model)
    if tracer is None:  # a model without a trace: its outputs only
        logits = logits_of(model(inputs))
    else:
        logits, state, steps = tracer(inputs)
        memory = state.memory[0].cpu().numpy()
        if registry.trace_contents(steps) is not None:
            trace = type(steps)(*(t.cpu() for t in steps))
    return torch.sigmoid(logits[:, 0]).cpu().numpy(), trace, memory


def draw_run(
    run_dir: Path,
    out: Path | None = None,
    task_settings: dict[str, Any] | None = None,
    seed: int = HELD_OUT_SEED,
    checkpoint: str = "best",
    device: str = "cpu",
    model_settings: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``sequence.png``, ``memory.png`` (NTM and DNC) of the run's model (``checkpoint``:
    see :func:`ntm.runs.load.weights_file`), run on ``device``, and ``learning_curves.png``."""
    run, model = load_run(
        run_dir, checkpoint=checkpoint, device=device, model_settings=model_settings
    )
    on = next(model.parameters()).device
    out = out or run_dir
    out.mkdir(parents=True, exist_ok=True)
    task = run.task.with_settings(**(task_settings or {}))
    batch = task.sample(1, torch.Generator().manual_seed(seed))
    name = f"{run.train.task}, {run.train.model} ({run_dir.name})"
    paths = []
    probabilities, trace, memory = run_one(model, batch.inputs.to(on))
    sequence = out / "sequence.png"
    draw_sequence(sequence, batch, probabilities, trace, f"{name}: one held-out sequence")
    paths.append(sequence)
    if memory is not None:
        picture = out / "memory.png"
        draw_memory(picture, memory, f"{name}: memory after the sequence")
        paths.append(picture)
    curves = out / "learning_curves.png"
    draw_learning_curves(curves, ckpt.read_metrics(run_dir), run.train, f"{name}: learning curves")
    paths.append(curves)
    return paths
