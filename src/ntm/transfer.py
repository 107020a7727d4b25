"""Weight transfer for ``ntm train --init-from``: a new run from another model's weights.

The other model may have fewer input or output channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ntm import checkpoint as ckpt
from ntm import pretrained
from ntm.config import DNCConfig
from ntm.layout import CONTROLLER_LAYER_WEIGHTS
from ntm.runconfig import ModelConfig, RunConfig
from ntm.runs import load_run

#: Tensors whose columns are the input channels (followed, in an NTM, by the previous reads):
#: the first controller layer's input weights, and the LSTM baseline's first layer's.
_INPUT_WEIGHTS = (
    *(f"cell.controller.0.{weights[0]}" for weights in CONTROLLER_LAYER_WEIGHTS.values()),
    "lstm.weight_ih_l0",
)


def input_weights(config: ModelConfig) -> tuple[str, ...]:
    """The tensors of a model of ``config`` whose first columns are the input channels: in a
    DNC every controller layer's input weights (each layer sees the input), else
    :data:`_INPUT_WEIGHTS`."""
    if isinstance(config, DNCConfig):
        return tuple(f"cell.controller.{i}.weight_ih" for i in range(config.controller_layers))
    return _INPUT_WEIGHTS


#: Tensors whose rows are the output channels.
_OUTPUT_TENSORS = (
    "cell.output_layer.weight",
    "cell.output_layer.bias",
    "output_layer.weight",
    "output_layer.bias",
)


def init_source(name: str, model: str = "ntm") -> tuple[Path, str]:
    """The folder that ``--init-from NAME`` means (a run folder, else a shipped model of kind
    ``model``) and how train.log names it."""
    folder = Path(name)
    if folder.is_dir():
        return folder, str(folder)
    kind = model if model in pretrained.MODELS else "ntm"
    shipped = pretrained.available(kind)
    if name in shipped:
        label = f"the shipped {name} model" if kind == "ntm" else f"the shipped {name} {kind}"
        return pretrained.path(name, kind), label
    raise ckpt.RunError(
        f"--init-from {name!r} is neither a run folder nor a shipped {kind} model "
        f"({', '.join(shipped) or 'none shipped'})"
    )


@dataclass
class InitSource:
    """The weights a run starts from (``--init-from``), read and checked by rank 0."""

    weights: dict[str, Tensor]
    input_size: int  # the source's input channels: this run's extra ones follow them
    line: str  # for train.log
    input_weights: tuple[str, ...]  # the tensors whose first columns are the input channels


def read_init_source(run: RunConfig) -> InitSource:
    """The model that ``run.train.init_from`` names, checked against ``run.model``: the two
    must agree in every setting but their channel counts, and ``run`` may only add channels."""
    source, label = init_source(run.train.init_from, run.train.model)
    trained_run, trained = load_run(source, checkpoint="latest")
    old, config = trained_run.model, run.model
    where = f"--init-from {run.train.init_from}"
    if type(old) is not type(config):
        raise ckpt.RunError(
            f"{where}: it holds a {type(old).__name__}, this run a {type(config).__name__}"
        )
    channels = ("input_size", "output_size")
    differ = [
        f"{f.name} is {getattr(old, f.name)!r} there, {getattr(config, f.name)!r} here"
        for f in dataclasses.fields(config)
        if f.name not in channels and getattr(old, f.name) != getattr(config, f.name)
    ]
    for name in channels:
        if getattr(config, name) < getattr(old, name):
            differ.append(
                f"{name} is {getattr(old, name)} there, {getattr(config, name)} here "
                "(channels can be added, not removed)"
            )
    if differ:
        raise ckpt.RunError(f"{where}: the models must match: {'; '.join(differ)}")
    grown = [
        f"{name} {getattr(old, name)} -> {getattr(config, name)}"
        for name in channels
        if getattr(old, name) != getattr(config, name)
    ]
    line = f"weights from {label} ({trained_run.train.task})"
    if grown:
        line += f": {', '.join(grown)}"
    return InitSource(trained.state_dict(), old.input_size, line, input_weights(config))


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
        elif key in _OUTPUT_TENSORS:
            slot[: value.shape[0]] = value
        else:
            slot.copy_(value)
    return result
