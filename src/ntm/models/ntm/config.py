"""The NTM's settings: one dataclass, the source of its defaults and checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ntm.config import (
    AT_LEAST_ONE,
    AT_LEAST_ZERO,
    OFF_OR_POSITIVE,
    SMALL_POSITIVE,
    JSONConfig,
    one_of,
    require,
    setting,
)
from ntm.models.paper import PAPER_SETTINGS

CONTROLLERS = ("lstm", "feedforward")
MEMORY_INITS = ("constant", "learned", "random")


@dataclass(frozen=True)
class NTMConfig(JSONConfig):
    """Everything needed to build an :class:`ntm.NTMCell` or :class:`ntm.NTM`: each field is
    a keyword argument of both, declared here once with its default, its check and why.

    Defaults are the copy task's paper model with Collier & Beel's training-friendly
    initialisation.
    """

    input_size: int = setting(9, AT_LEAST_ONE)  # copy: 8 data bits + 1 delimiter channel
    output_size: int = setting(8, AT_LEAST_ONE)  # copy: the 8 data bits
    controller: str = setting("lstm", one_of(*CONTROLLERS))  # "lstm" or "feedforward" (§4)
    controller_size: int = setting(100, AT_LEAST_ONE)  # units per layer (paper tables 1-3)
    controller_layers: int = setting(1, AT_LEAST_ONE)  # stacked controller layers
    num_read_heads: int = setting(1, AT_LEAST_ONE)  # R
    num_write_heads: int = setting(1, AT_LEAST_ONE)  # W
    memory_size: int = setting(128, AT_LEAST_ONE)  # N: slots; 128 in every paper experiment
    word_size: int = setting(20, AT_LEAST_ONE)  # M: width of a slot; 20 in the paper
    shift_range: int = setting(1, AT_LEAST_ZERO)  # K: shifts -K..K, 2K + 1 offsets
    # Collier & Beel: 1e-6 everywhere trains fastest.
    memory_init: str = setting("constant", one_of(*MEMORY_INITS))
    learn_initial_reads: bool = True  # initial read vectors as tanh(parameter)
    learn_initial_weights: bool = True  # initial head weightings as softmax(parameter)
    # Clip head parameters to +-20 before activations (0: off).
    head_clip: float = setting(20.0, OFF_OR_POSITIVE)
    output_clip: float = setting(20.0, OFF_OR_POSITIVE)  # clip output logits to +-20 (0: off)
    eps: float = setting(1e-8, SMALL_POSITIVE)  # guard in cosine similarity and sharpening

    def check(self) -> None:
        require(
            2 * self.shift_range + 1 <= self.memory_size,
            type(self).__name__,
            "shift_range",
            self.shift_range,
            f"an integer K >= 0 with 2K + 1 <= memory_size = {self.memory_size}",
        )


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
