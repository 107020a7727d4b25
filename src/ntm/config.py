"""Model configurations: the one source of defaults, round-tripping through JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, fields
from typing import Any, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound="JSONConfig")

CONTROLLERS = ("lstm", "feedforward")
MEMORY_INITS = ("constant", "learned", "random")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_value(owner: str, name: str, value: Any, expected: Any) -> Any:
    """Return ``value`` converted to ``expected`` (int, float, str, bool) or raise ValueError."""
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - only the four kinds above are used in configs
        return value
    raise ValueError(
        f"{owner}.{name}: expected {expected.__name__}, got {value!r} ({type(value).__name__})"
    )


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build the dataclass ``cls`` from ``data``, strictly: unknown keys and wrong types fail."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    types = _field_types(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected some of: {', '.join(names)}"
        )
    values = {k: check_value(cls.__name__, k, v, types[k]) for k, v in data.items()}
    return cls(**values)


#: How a boolean setting may be written on a command line or in ``KEY=VALUE``.
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def parse_bool(text: str, where: str) -> bool:
    """``text`` as a boolean (true/yes/on/1 or false/no/off/0, any case); a ValueError that
    names ``where`` and the value otherwise."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(
        f"{where}: {text!r} is not a boolean; expected one of "
        f"{', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}"
    )


def require(condition: bool, owner: str, name: str, value: Any, expected: str) -> None:
    """Raise a ValueError naming the setting, its value and what was expected."""
    if not condition:
        raise ValueError(f"{owner}.{name} = {value!r}: expected {expected}")


def require_positive(owner: str, **values: int) -> None:
    """:func:`require` each of ``values`` (setting name: value) to be an integer >= 1."""
    for name, value in values.items():
        require(value >= 1, owner, name, value, "an integer >= 1")


class JSONConfig:
    """Round trips of a configuration dataclass through a dict and JSON, strictly checked."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return from_dict(cls, data)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return from_dict(cls, json.loads(text))


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


@dataclass(frozen=True)
class LSTMConfig(JSONConfig):
    """The paper's baseline: a stack of LSTM layers and a linear read-out."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 256  # copy: 3 x 256 (paper table 1)
    num_layers: int = 3
    output_clip: float = 20.0  # clip output logits to +-20 (0: off)

    def __post_init__(self) -> None:
        name = type(self).__name__
        keys = ("input_size", "output_size", "hidden_size", "num_layers")
        require_positive(name, **{key: getattr(self, key) for key in keys})
        require(
            math.isfinite(self.output_clip) and self.output_clip >= 0,
            name,
            "output_clip",
            self.output_clip,
            "a number >= 0 (0: off)",
        )


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


def paper_lstm_config(task: str, input_size: int, output_size: int) -> LSTMConfig:
    """The paper's LSTM baseline for ``task``."""
    setting = PAPER_SETTINGS[task]["baseline"]
    return LSTMConfig(
        input_size=input_size,
        output_size=output_size,
        hidden_size=setting.size,
        num_layers=setting.layers,
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
