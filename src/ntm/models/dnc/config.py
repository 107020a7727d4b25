"""The DNC's settings: one dataclass, the source of its defaults and checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ntm.config import JSONConfig, require, require_positive
from ntm.models.paper import PAPER_SETTINGS


@dataclass(frozen=True)
class DNCConfig(JSONConfig):
    """Everything needed to build an :class:`ntm.DNCCell` or :class:`ntm.DNC`.

    Defaults are the copy task's: the NTM's controller and memory sizes, so the two compare
    on equal terms.
    """

    input_size: int = 9  # copy: 8 data bits + 1 delimiter channel
    output_size: int = 8  # copy: the 8 data bits
    controller_size: int = 100  # hidden units per LSTM layer
    controller_layers: int = 1  # stacked LSTM layers, each seeing the input and the one below
    num_read_heads: int = 1  # R; one write head, as in the paper
    memory_size: int = 128  # N: slots, as the NTM's
    word_size: int = 20  # M: width of a slot (the paper's W), as the NTM's
    interface_clip: float = 20.0  # clip the interface vector to +-20 before activations (0: off)
    output_clip: float = 20.0  # clip output logits to +-20 (0: off)
    eps: float = 1e-8  # guard in cosine similarity
    link_sparsity: int = 0  # K: sparse links, K largest per row and column (0: dense; paper: 8)

    def __post_init__(self) -> None:
        name = type(self).__name__
        keys = ("input_size", "output_size", "controller_size", "controller_layers",
                "num_read_heads", "memory_size", "word_size")  # fmt: skip
        require_positive(name, **{key: getattr(self, key) for key in keys})
        for key in ("interface_clip", "output_clip"):
            value = getattr(self, key)
            require(math.isfinite(value) and value >= 0, name, key, value, "a number >= 0 (0: off)")
        require(0 < self.eps < 1, name, "eps", self.eps, "a number in (0, 1)")
        require(self.link_sparsity >= 0, name, "link_sparsity", self.link_sparsity,
                "an integer >= 0 (0: the dense link matrix)")  # fmt: skip


def task_dnc_config(task: str, input_size: int, output_size: int) -> DNCConfig:
    """The DNC for ``task``: the controller (size, layers) of the paper's NTM with an LSTM
    controller, as many read heads as that NTM has, and its 128 x 20 memory."""
    setting = PAPER_SETTINGS[task]["lstm"]
    return DNCConfig(
        input_size=input_size,
        output_size=output_size,
        controller_size=setting.size,
        controller_layers=setting.layers,
        num_read_heads=setting.heads,
    )
