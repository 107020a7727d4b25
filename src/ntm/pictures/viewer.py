"""``ntm viz --html``: one page to move through a model's memory, step by step.

The page is ``viewer.html`` (beside this module) with the data written into it: one file,
no server, no network, no script library (its drawing is its own, on canvases). It offers
several held-out sequences (two of the training distribution, then each of the task's
generalisation settings, such as copy at length 120), and for the chosen one a time slider
with play and step buttons and arrow keys; inputs, targets and outputs over time; each
head's weightings over time; at the current step the memory with every head's weighting
beside it and the slots a head weights above 0.1 outlined, each weighting as bars over the
slots, the NTM's erase and add vectors, the DNC's usage, allocation, gates and read modes.
Hovering over a cell shows its value, slot and step.

Any model whose ``trace(inputs)`` returns ``(logits, state, trace)`` with a trace that
declares what it holds (``trace.contents()``, an :class:`ntm.registry.TraceContents`: the
weightings, the memory, perhaps erase and add vectors and extra panels) gets a page, drawn
from that declaration. The memory at each step is not written out where it can be rebuilt:
with the memory before the first step (``initial_state``) and the erase and add vectors, the
page
replays the writes (a copy of length 120 then takes tens of kilobytes, not megabytes);
otherwise each step's memory is written in full.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ntm import registry
from ntm.models.dnc.addressing import READ_MODES
from ntm.models.ntm.memory import write
from ntm.pictures.figures import shown_slots
from ntm.runs.config import RunConfig
from ntm.runs.evaluation import HELD_OUT_SEED
from ntm.runs.load import load_run
from ntm.tasks.contract import Batch, generalisation
from ntm.tasks.scoring import scoring

PAGE = Path(__file__).with_name("viewer.html")
#: Where the page's data goes.
MARK = "/*NTM-DATA*/"
#: Steps a second while the page plays.
STEPS_PER_SECOND = 12
#: The DNC's write gates, in the order of the page's gates panel.
GATES = ("allocation gate", "write gate")
#: Held-out sequences of the training distribution on the page.
TRAINING_SEQUENCES = 2


def _array(values: Tensor | np.ndarray) -> dict[str, Any]:
    """An array for the page: its shape and its float32 values, little-endian, in base64."""
    array = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def offered(
    run: RunConfig, seed: int, settings: dict[str, Any] | None = None
) -> list[tuple[str, Batch]]:
    """The sequences the page offers, each (label, a batch of one): ``TRAINING_SEQUENCES``
    of the training distribution (with ``settings`` changed, where given), then one of each
    of the task's generalisation settings."""
    task = run.task.with_settings(**(settings or {}))
    found = [
        (f"held-out sequence {k + 1}", task.sample(1, torch.Generator().manual_seed(seed + k)))
        for k in range(TRAINING_SEQUENCES)
    ]
    for label, changed in generalisation(run.train.task) if not settings else []:
        variant = run.task.with_settings(**changed)
        found.append((label, variant.sample(1, torch.Generator().manual_seed(seed))))
    return found


def _replayable(
    model: Any, memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor
) -> Tensor | None:
    """The memory before the first step where the write weightings (T, B, W, N) and the
    erase and add vectors (T, B, W, M) rebuild every step's ``memory`` (T, B, N, M) from it
    (checked here, as the page will rebuild it); else None."""
    initial_state = registry.initial_state(model)
    if initial_state is None:
        return None
    start: Tensor = initial_state(1).memory.detach().cpu()
    rebuilt = start
    for t in range(weights.shape[0]):
        rebuilt = write(rebuilt, weights[t], erase[t], add[t])
        if not torch.allclose(rebuilt, memory[t], rtol=1e-4, atol=1e-5):
            return None
    return start[0]


@torch.no_grad()
def sequence_data(model: Any, run: RunConfig, label: str, batch: Batch) -> dict[str, Any]:
    """What the page shows of one sequence (``batch``, on the CPU, of one): arrays of its
    steps and a summary line."""
    tracer = registry.tracer(model)
    if tracer is None:
        raise ValueError(f"model {run.train.model!r} has no trace")
    logits, _, trace = tracer(batch.inputs.to(next(model.parameters()).device))
    contents = registry.trace_contents(trace)
    if contents is None:
        raise ValueError(
            f"--html: the trace of model {run.train.model!r} declares no contents() (which "
            "weightings, memory and panels it holds), so the page cannot draw it"
        )
    logits = logits.detach().cpu()[..., : batch.targets.shape[-1]]
    score = scoring(run.task)
    tokens = registry.tokens(run.task)
    probabilities = torch.softmax(logits, -1) if tokens else torch.sigmoid(logits)
    mask = batch.mask[:, 0, None].float()
    memory = contents.memory.detach().cpu()  # (T, B, N, M)
    weights = contents.write_weights.detach().cpu()  # (T, B, W, N)
    writes = weights[:, 0]  # (T, W, N)
    reads = contents.read_weights.detach().cpu()[:, 0]  # (T, R, N)
    arrays = {
        "inputs": _array(batch.inputs[:, 0].clamp(0, 1)),
        "targets": _array(batch.targets[:, 0] * mask),
        "outputs": _array(probabilities[:, 0] * mask),
        "read_weights": _array(reads),
        "write_weights": _array(writes),
    }
    start = None
    if contents.erase is not None and contents.add is not None:
        erase, add = contents.erase.detach().cpu(), contents.add.detach().cpu()
        start = _replayable(model, memory, weights, erase, add)
        if start is not None:
            arrays["initial_memory"] = _array(start)
            arrays["erase"], arrays["add"] = _array(erase[:, 0]), _array(add[:, 0])
    if start is None:
        arrays["memory"] = _array(memory[:, 0])
    for name, values in contents.panels.items():  # the extra panels the trace declares
        arrays[name] = _array(values.detach().cpu()[:, 0])
    wrong = float(score.wrong(logits, batch.targets, batch.mask).sum())
    unit = score.unit.removesuffix("s") if wrong == 1 else score.unit
    steps, slots, word = memory.shape[0], memory.shape[2], memory.shape[3]
    return {
        "label": f"{label} ({steps} steps)",
        "summary": f"{wrong:g} wrong {unit} in this sequence",
        "slots": slots,
        "word": word,
        # The slots the panels over time show: the band the heads attend to (as ntm viz).
        "shown": shown_slots(writes.numpy(), reads.numpy()).tolist(),
        "arrays": arrays,
    }


def page(payload: dict[str, Any]) -> str:
    """The page with ``payload`` written into it (safe inside its script element)."""
    text = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return PAGE.read_text(encoding="utf-8").replace(MARK, text, 1)


def draw_page(
    run_dir: Path,
    out: Path | None = None,
    task_settings: dict[str, Any] | None = None,
    seed: int = HELD_OUT_SEED,
    checkpoint: str = "best",
    device: str = "cpu",
    model_settings: dict[str, Any] | None = None,
) -> Path:
    """Write ``viewer.html`` of the run's model (``checkpoint``: see
    :func:`ntm.runs.load.weights_file`) into ``out`` (default: the run folder); returns its path.
    A model without a trace is refused by name."""
    run, model = load_run(
        run_dir, checkpoint=checkpoint, device=device, model_settings=model_settings
    )
    if registry.tracer(model) is None:
        raise ValueError(
            f"--html: the model {run.train.model!r} has no trace (a trace(inputs) method "
            "returning its weightings and memory per step), so there is no memory to show"
        )
    model.eval()
    data = [sequence_data(model, run, label, b) for label, b in offered(run, seed, task_settings)]
    payload = {
        "title": f"{run.train.task}, {run.train.model} ({run_dir.name})",
        "kind": run.train.model,
        "steps_per_second": STEPS_PER_SECOND,
        "gate_names": list(GATES),
        "read_modes": list(READ_MODES),
        "sequences": data,
    }
    out = out or run_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / "viewer.html"
    path.write_text(page(payload), encoding="utf-8")
    return path
