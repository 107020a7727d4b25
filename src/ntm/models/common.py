"""What the models share: input checks, clipping, and a frame around a body.

The frame puts a model's body between an input layer and an output layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ntm.engines.select import compiling
from ntm.registry import Recipe


def check_tensor(owner: str, name: str, value: Tensor, shape: tuple[int | None, ...]) -> None:
    """Raise a ValueError unless ``value`` is a floating tensor of ``shape`` (None: any) and,
    on the CPU, finite. The values of a tensor on an accelerator are not read: that would
    wait for the device at every call; a non-finite input there shows as a non-finite output."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
    expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if value.dim() != len(shape) or any(
        s is not None and s != v for s, v in zip(shape, value.shape, strict=True)
    ):
        raise ValueError(f"{owner}: {name} has shape {tuple(value.shape)}, expected {expected}")
    if not value.is_floating_point():
        raise ValueError(f"{owner}: {name} must be a floating-point tensor, got {value.dtype}")
    # Under torch.compile the values are not read either: reading them would break its graph.
    if value.device.type == "cpu" and not compiling() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{owner}: {name} contains NaN or infinite values")


def clip_values(x: Tensor, bound: float) -> Tensor:
    return x.clamp(-bound, bound) if bound > 0 else x


def check_positions(owner: str, steps: int, max_positions: int, why: str) -> None:
    """Refuse a sequence of ``steps`` longer than ``max_positions``, saying ``why`` that
    bound holds."""
    if steps > max_positions:
        raise ValueError(
            f"{owner}: a sequence of {steps} steps is longer than max_positions = "
            f"{max_positions}{why}"
        )


class Framed(nn.Module):
    """A model body between a linear input layer (for a token task, its embedding) and a
    linear output layer, batch-first inside: ``forward`` maps inputs (T, B, I) to logits
    (T, B, O) through ``body`` ((B, T, width) -> (B, T, width)). The Transformer and Mamba
    are framed so."""

    output_weights: ClassVar[tuple[str, ...]] = ("output_layer.weight", "output_layer.bias")

    @classmethod
    def recipe(cls, task: str, preset: str, train: Mapping[str, Any]) -> Recipe | None:
        """How attention and state spaces are trained by their authors, on every task:
        AdamW with weight decay 0.1 (Zoology's for MQAR), a linear warm-up, and the rate
        decayed along half a cosine to the floor over the run's budget. The paper preset
        (the NTM paper's set-up) leaves it out."""
        if preset == "paper":
            return None
        return Recipe(
            {"optimizer": "adamw", "weight_decay": 0.1, "schedule": "cosine", "warmup": 2048},
            {},
            "attention and state spaces as their authors train them: AdamW, weight decay "
            "0.1, warm-up, cosine decay",
        )

    def __init__(self, input_size: int, output_size: int, width: int) -> None:
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.input_layer = nn.Linear(input_size, width)
        self.output_layer = nn.Linear(width, output_size)

    @classmethod
    def input_weights(cls, config: object) -> tuple[str, ...]:
        return ("input_layer.weight",)

    def body(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, inputs: Tensor) -> Tensor:
        """inputs (T, B, I) -> logits (T, B, O)."""
        check_tensor(type(self).__name__, "inputs", inputs, (None, None, self.input_size))
        x = self.body(self.input_layer(inputs.transpose(0, 1)))
        logits: Tensor = self.output_layer(x)
        return logits.transpose(0, 1)
