"""The NTM's settings: one dataclass, the source of its defaults and checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ntm.config import JSONConfig, require, require_positive
from ntm.models.paper import PAPER_SETTINGS

CONTROLLERS = ("lstm", "feedforward")


MEMORY_INITS = ("constant", "learned", "random")


@dataclass(frozen=True)
class NTMConfig(JSONConfig):
    """Everything needed to build an :class:`ntm.NTMCell` or :class:`ntm.NTM`.

    Defaults are the copy task's paper model with Collier & Beel's training-friendly
    initialisation.
    """

    input_size: int = 9  # copy: 8 data bits + 1 delimiter channel
    output_size: int = 8  # copy: the 8 data bits
    controller: str = "lstm"  # "lstm" or "feedforward" (paper §4)
    controller_size: int = 100  # hidden units per controller layer (paper tables 1-3)
    controller_layers: int = 1  # stacked controller layers
    num_read_heads: int = 1
    num_write_heads: int = 1
    memory_size: int = 128  # N: slots; 128 in every experiment of the paper
    word_size: int = 20  # M: width of a slot; 20 in every experiment of the paper
    shift_range: int = 1  # K: shifts -K..K, 2K + 1 offsets
    memory_init: str = "constant"  # Collier & Beel: 1e-6 everywhere trains fastest
    learn_initial_reads: bool = True  # initial read vectors as tanh(parameter)
    learn_initial_weights: bool = True  # initial head weightings as softmax(parameter)
    head_clip: float = 20.0  # clip head parameters to +-20 before activations (0: off)
    output_clip: float = 20.0  # clip output logits to +-20 (0: off)
    eps: float = 1e-8  # guard in cosine similarity and sharpening

    def __post_init__(self) -> None:
        name = type(self).__name__
        keys = ("input_size", "output_size", "controller_size", "memory_size", "word_size")
        require_positive(name, **{key: getattr(self, key) for key in keys})
        require(
            self.controller_layers >= 1,
            name,
            "controller_layers",
            self.controller_layers,
            "an integer >= 1",
        )
        require(
            self.num_read_heads >= 1, name, "num_read_heads", self.num_read_heads, "an integer >= 1"
        )
        require(
            self.num_write_heads >= 1,
            name,
            "num_write_heads",
            self.num_write_heads,
            "an integer >= 1",
        )
        require(
            self.shift_range >= 0 and 2 * self.shift_range + 1 <= self.memory_size,
            name,
            "shift_range",
            self.shift_range,
            f"an integer K >= 0 with 2K + 1 <= memory_size = {self.memory_size}",
        )
        require(
            self.controller in CONTROLLERS,
            name,
            "controller",
            self.controller,
            f"one of {', '.join(CONTROLLERS)}",
        )
        require(
            self.memory_init in MEMORY_INITS,
            name,
            "memory_init",
            self.memory_init,
            f"one of {', '.join(MEMORY_INITS)}",
        )
        for key in ("head_clip", "output_clip"):
            value = getattr(self, key)
            require(math.isfinite(value) and value >= 0, name, key, value, "a number >= 0 (0: off)")
        require(0 < self.eps < 1, name, "eps", self.eps, "a number in (0, 1)")


def paper_ntm_config(
    task: str, controller: str, input_size: int, output_size: int, **overrides: Any
) -> NTMConfig:
    """The paper's NTM for ``task``: its controller, head counts and a learned initial memory.

    The paper resets memory to learned bias values; read vectors and weightings start
    from constants (zero reads, all weight on slot 0).
    """
    setting = PAPER_SETTINGS[task][controller]
    options: dict[str, Any] = {
        "input_size": input_size,
        "output_size": output_size,
        "controller": controller,
        "controller_size": setting.size,
        "controller_layers": setting.layers,
        "num_read_heads": setting.heads,
        "num_write_heads": setting.heads,
        "memory_init": "learned",
        "learn_initial_reads": False,
        "learn_initial_weights": False,
    }
    options.update(overrides)
    return NTMConfig(**options)
