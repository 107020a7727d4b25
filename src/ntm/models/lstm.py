"""The paper's LSTM baseline: its settings and its module."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ntm.config import (
    AT_LEAST_ONE,
    OFF_OR_POSITIVE,
    PLACEMENT,
    WRAPPER_ARGUMENTS,
    JSONConfig,
    setting,
    settings_signature,
)
from ntm.models.common import check_tensor, clip_values
from ntm.models.paper import PAPER_SETTINGS
from ntm.registry import Recipe, register_model


@dataclass(frozen=True)
class LSTMConfig(JSONConfig):
    """The paper's baseline: a stack of LSTM layers and a linear read-out. Each field is a
    keyword argument of :class:`LSTMBaseline`, declared here once."""

    input_size: int = setting(9, AT_LEAST_ONE)
    output_size: int = setting(8, AT_LEAST_ONE)
    hidden_size: int = setting(256, AT_LEAST_ONE)  # copy: 3 x 256 (paper table 1)
    num_layers: int = setting(3, AT_LEAST_ONE)
    output_clip: float = setting(20.0, OFF_OR_POSITIVE)  # clip output logits to +-20 (0: off)


def paper_lstm_config(task: str, input_size: int, output_size: int) -> LSTMConfig:
    """The paper's LSTM baseline for ``task``."""
    setting = PAPER_SETTINGS[task]["baseline"]
    return LSTMConfig(
        input_size=input_size,
        output_size=output_size,
        hidden_size=setting.size,
        num_layers=setting.layers,
    )


class LSTMBaseline(nn.Module):
    """The paper's baseline: stacked LSTM layers and a linear read-out, as logits.

    Same sequence interface as :class:`NTM`: ``forward(inputs (T, B, I), state=None) ->
    (outputs (T, B, O), (h, c))`` with ``h`` and ``c`` of shape (layers, B, hidden).
    """

    #: The setting that scales its width, and the step between widths (benchmarks/compare.py
    #: matches parameter counts with it).
    width_setting: ClassVar[tuple[str, int]] = ("hidden_size", 1)

    #: What ``help()`` and ``inspect.signature`` show: every setting of :class:`LSTMConfig`.
    __signature__: ClassVar[inspect.Signature] = settings_signature(
        LSTMConfig, WRAPPER_ARGUMENTS[0], *PLACEMENT
    )

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.config = LSTMConfig.of(type(self).__name__, input_size, output_size, settings)
        self.batch_first = batch_first
        cfg = self.config
        self.lstm = nn.LSTM(
            cfg.input_size,
            cfg.hidden_size,
            cfg.num_layers,
            batch_first=batch_first,
            device=device,
            dtype=dtype,
        )
        self.output_layer = nn.Linear(cfg.hidden_size, cfg.output_size, device=device, dtype=dtype)

    @classmethod
    def from_config(
        cls,
        config: LSTMConfig,
        *,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LSTMBaseline:
        """Build from a configuration."""
        return cls(**config.to_dict(), batch_first=batch_first, device=device, dtype=dtype)

    config_class: ClassVar[type[LSTMConfig]] = LSTMConfig
    output_weights: ClassVar[tuple[str, ...]] = ("output_layer.weight", "output_layer.bias")
    #: A recurrence: each output depends only on the inputs up to its step.
    causal: ClassVar[bool] = True

    @classmethod
    def recipe(cls, task: str, preset: str, train: Mapping[str, Any]) -> Recipe | None:
        """The paper's LSTM baseline for ``task`` (its size, layers and, in the paper
        preset, learning rate); the fast preset trains it as it trains the NTM."""
        if task not in PAPER_SETTINGS:
            return None
        setting = PAPER_SETTINGS[task]["baseline"]
        model = {"hidden_size": setting.size, "num_layers": setting.layers}
        return Recipe(
            {"lr": setting.learning_rate} if preset == "paper" else {},
            model,
            "the size and layers of the paper's baseline for the task",
        )

    @classmethod
    def input_weights(cls, config: LSTMConfig) -> tuple[str, ...]:
        return ("lstm.weight_ih_l0",)

    def extra_repr(self) -> str:
        return f"output_clip={self.config.output_clip}"

    def reset_parameters(self) -> None:
        self.lstm.reset_parameters()
        self.output_layer.reset_parameters()

    def forward(
        self, inputs: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        check_tensor(type(self).__name__, "inputs", inputs, (None, None, self.config.input_size))
        hidden, state = self.lstm(inputs, state)
        return clip_values(self.output_layer(hidden), self.config.output_clip), state


register_model("lstm", LSTMBaseline)
