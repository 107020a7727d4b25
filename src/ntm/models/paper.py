"""The paper's tables 1-3: each task's heads, controller size, layers and learning rate."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperSetting:
    """One row of the paper's tables 1-3 for one model kind."""

    heads: int  # read heads, and as many write heads
    size: int  # hidden units per layer
    layers: int
    learning_rate: float
    parameters: int  # the count the paper reports


#: The paper's tables 1-3: task -> model kind -> setting.
PAPER_SETTINGS: dict[str, dict[str, PaperSetting]] = {
    "copy": {
        "feedforward": PaperSetting(1, 100, 1, 1e-4, 17_162),
        "lstm": PaperSetting(1, 100, 1, 1e-4, 67_561),
        "baseline": PaperSetting(0, 256, 3, 3e-5, 1_352_969),
    },
    "repeat_copy": {
        "feedforward": PaperSetting(1, 100, 1, 1e-4, 16_712),
        "lstm": PaperSetting(1, 100, 1, 1e-4, 66_111),
        "baseline": PaperSetting(0, 512, 3, 3e-5, 5_312_007),
    },
    "associative_recall": {
        "feedforward": PaperSetting(4, 256, 1, 1e-4, 146_845),
        "lstm": PaperSetting(1, 100, 1, 1e-4, 70_330),
        "baseline": PaperSetting(0, 256, 3, 1e-4, 1_344_518),
    },
    "ngrams": {
        "feedforward": PaperSetting(1, 100, 1, 3e-5, 14_656),
        "lstm": PaperSetting(1, 100, 1, 3e-5, 61_749),
        "baseline": PaperSetting(0, 128, 3, 1e-4, 331_905),
    },
    "priority_sort": {
        "feedforward": PaperSetting(8, 512, 1, 3e-5, 508_305),
        "lstm": PaperSetting(5, 100, 2, 3e-5, 269_038),
        "baseline": PaperSetting(0, 128, 3, 3e-5, 384_424),
    },
}
