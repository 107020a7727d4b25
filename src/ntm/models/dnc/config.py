"""The DNC's settings: one dataclass, the source of its defaults and checks."""

from __future__ import annotations

from dataclasses import dataclass

from ntm.config import AT_LEAST_ONE, OFF_OR_POSITIVE, SMALL_POSITIVE, Check, JSONConfig, setting
from ntm.models.paper import PAPER_SETTINGS


@dataclass(frozen=True)
class DNCConfig(JSONConfig):
    """Everything needed to build an :class:`ntm.DNCCell` or :class:`ntm.DNC`: each field is
    a keyword argument of both, declared here once with its default, its check and why.

    Defaults are the copy task's: the NTM's controller and memory sizes, so the two compare
    on equal terms.
    """

    input_size: int = setting(9, AT_LEAST_ONE)  # copy: 8 data bits + 1 delimiter channel
    output_size: int = setting(8, AT_LEAST_ONE)  # copy: the 8 data bits
    controller_size: int = setting(100, AT_LEAST_ONE)  # hidden units per LSTM layer
    # Stacked LSTM layers, each seeing the input and the one below.
    controller_layers: int = setting(1, AT_LEAST_ONE)
    num_read_heads: int = setting(1, AT_LEAST_ONE)  # R; one write head, as in the paper
    memory_size: int = setting(128, AT_LEAST_ONE)  # N: slots, as the NTM's
    word_size: int = setting(20, AT_LEAST_ONE)  # M: width of a slot (the paper's W)
    # Clip the interface vector to +-20 before activations (0: off).
    interface_clip: float = setting(20.0, OFF_OR_POSITIVE)
    output_clip: float = setting(20.0, OFF_OR_POSITIVE)  # clip output logits to +-20 (0: off)
    eps: float = setting(1e-8, SMALL_POSITIVE)  # guard in cosine similarity
    # K: sparse links, the K largest per row and column (0: dense; the paper's Methods: 8).
    link_sparsity: int = setting(
        0, Check(lambda v: v >= 0, "an integer >= 0 (0: the dense link matrix)")
    )


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
