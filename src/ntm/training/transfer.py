"""Weight transfer for ``ntm train --init-from``: a new run from another model's weights.

The other model may have fewer input or output channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ntm import registry
from ntm.config import JSONConfig
from ntm.registry import model_class
from ntm.runs import checkpoint as ckpt
from ntm.runs import pretrained
from ntm.runs.config import RunConfig
from ntm.runs.load import load_run


def input_weights(model: str, config: JSONConfig) -> tuple[str, ...]:
    """The tensors of model ``model`` (a registered name) with settings ``config`` whose
    first columns are the input channels (its ``input_weights``; none declared: no input
    channels can be added)."""
    return registry.input_weights(model_class(model), config) or ()


def output_weights(model: str) -> tuple[str, ...]:
    """The tensors of model ``model`` whose rows are the output channels."""
    return registry.output_weights(model_class(model))


def init_source(name: str, model: str = "ntm") -> tuple[Path, str]:
    """The folder that ``--init-from NAME`` means (a run folder, else the shipped model
    ``model`` for task NAME) and how train.log names it."""
    folder = Path(name)
    if folder.is_dir():
        return folder, str(folder)
    shipped = pretrained.available(model) if model in pretrained.models() else []
    if name in shipped:
        return pretrained.path(name, model), f"the shipped {name} {model}"
    raise ckpt.RunError(
        f"--init-from {name!r} is neither a run folder nor a shipped {model} model "
        f"({', '.join(shipped) or 'none shipped'})"
    )


@dataclass
class InitSource:
    """The weights a run starts from (``--init-from``), read and checked by rank 0."""

    weights: dict[str, Tensor]
    input_size: int  # the source's input channels: this run's extra ones follow them
    line: str  # for train.log
    input_weights: tuple[str, ...]  # the tensors whose first columns are the input channels
    output_weights: tuple[str, ...]  # the tensors whose rows are the output channels


def read_init_source(run: RunConfig) -> InitSource:
    """The model that ``run.train.init_from`` names, checked against ``run.model``: the two
    must agree in every setting but their channel counts, and ``run`` may only add channels."""
    source, label = init_source(run.train.init_from, run.train.model)
    trained_run, trained = load_run(source, checkpoint="latest")
    old, config = trained_run.model.to_dict(), run.model.to_dict()
    where = f"--init-from {run.train.init_from}"
    if trained_run.train.model != run.train.model:
        raise ckpt.RunError(
            f"{where}: it holds a model {trained_run.train.model}, this run a {run.train.model}"
        )
    channels = ("input_size", "output_size")
    differ = [
        f"{f.name} is {old[f.name]!r} there, {config[f.name]!r} here"
        for f in dataclasses.fields(run.model)  # type: ignore[arg-type]
        if f.name not in channels and old[f.name] != config[f.name]
    ]
    can_grow = {
        "input_size": input_weights(run.train.model, run.model),
        "output_size": output_weights(run.train.model),
    }
    for name in channels:
        if config[name] > old[name] and not can_grow[name]:
            differ.append(
                f"{name} is {old[name]} there, {config[name]} here (model "
                f"{run.train.model} declares no {name.replace('_size', '')} weights to grow)"
            )
        if config[name] < old[name]:
            differ.append(
                f"{name} is {old[name]} there, {config[name]} here "
                "(channels can be added, not removed)"
            )
    if differ:
        raise ckpt.RunError(f"{where}: the models must match: {'; '.join(differ)}")
    grown = [
        f"{name} {old[name]} -> {config[name]}" for name in channels if old[name] != config[name]
    ]
    line = f"weights from {label} ({trained_run.train.task})"
    if grown:
        line += f": {', '.join(grown)}"
    return InitSource(
        trained.state_dict(),
        int(old["input_size"]),
        line,
        input_weights(run.train.model, run.model),
        output_weights(run.train.model),
    )


def transferred(weights: dict[str, Tensor], source: InitSource) -> dict[str, Tensor]:
    """``weights`` (a fresh model's state dict, not changed) with ``source``'s copied in.
    Added input channels get zero weights, so while they are silent the model computes what
    the source did; added output channels keep their fresh weights."""
    result = {k: v.detach().clone() for k, v in weights.items()}
    inputs = source.input_size
    for key, value in source.weights.items():
        slot = result[key]
        added = slot.shape[-1] - value.shape[-1] if key in source.input_weights else 0
        if added:
            slot[:, :inputs] = value[:, :inputs]
            slot[:, inputs : inputs + added] = 0.0
            slot[:, inputs + added :] = value[:, inputs:]
        elif key in source.output_weights:
            slot[: value.shape[0]] = value
        else:
            slot.copy_(value)
    return result
