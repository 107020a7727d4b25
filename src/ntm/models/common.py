"""What the models share: input checks, clipping, cells over sequences, and a frame.

The NTM, the DNC and SAM are each a cell run over a sequence (:class:`SequenceModel`); the
frame puts a model's body between an input layer and an output layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from ntm.config import JSONConfig
from ntm.engines.select import AUTO, Engined, compiling
from ntm.registry import Recipe

C = TypeVar("C", bound=JSONConfig)
S = TypeVar("S")


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
    #: Each output depends only on the inputs up to its step (:func:`ntm.registry.causal`).
    causal: ClassVar[bool] = True

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


def stacked_lstm(input_size: int, size: int, layers: int, **factory: Any) -> nn.ModuleList:
    """LSTM layers of ``size`` units, each seeing ``input_size`` inputs and the layer below:
    the DNC's controller (the paper's Methods), and SAM's."""
    return nn.ModuleList(
        nn.LSTMCell(input_size + (size if i else 0), size, **factory) for i in range(layers)
    )


def run_stacked_lstm(
    layers: nn.ModuleList, x: Tensor, hidden: Tensor, cell: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of :func:`stacked_lstm`'s ``layers`` on ``x`` (B, X) from the states
    ``hidden`` and ``cell`` (L, B, C): every layer's output side by side (B, L*C), and the
    new hidden and cell states (L, B, C) each."""
    hiddens, cells = [], []
    below: list[Tensor] = []
    for i, layer in enumerate(layers):
        h, c = layer(torch.cat([x, *below], -1), (hidden[i], cell[i]))
        hiddens.append(h)
        cells.append(c)
        below = [h]
    return torch.cat(hiddens, -1), torch.stack(hiddens), torch.stack(cells)


class InterfacedCell(nn.Module):
    r"""What the DNC's and SAM's cells share around their memories: the controller, a stack
    of LSTM layers (:func:`stacked_lstm`) that sees the input and the previous reads,
    :math:`[x_t; r_{t-1}]`; a linear layer from all its layers' hidden states :math:`h_t` to
    the interface vector, clipped and activated by the cell's ``interface_layout``; and the
    output logits :math:`y_t = W [h_t; r_t] + b`, clipped, from those and the new reads.

    A subclass names its ``config_class`` (with the fields ``input_size``, ``output_size``,
    ``controller_size``, ``controller_layers``, ``num_read_heads``, ``word_size``,
    ``interface_clip`` and ``output_clip``), makes its interface layout in :meth:`layout`
    and writes ``initial_state``, ``check_state`` and ``step`` (a state with ``reads``,
    ``controller_hidden`` and ``controller_cell``): one step, as ``forward`` but on
    arguments already checked, with what a trace records.
    """

    config_class: ClassVar[type[Any]]

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.config = self.config_class.of(type(self).__name__, input_size, output_size, settings)
        cfg = self.config
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.interface_layout = self.layout(cfg)
        read_size = cfg.num_read_heads * cfg.word_size
        size = cfg.controller_size
        self.controller = stacked_lstm(
            cfg.input_size + read_size, size, cfg.controller_layers, **factory
        )
        hidden_size = cfg.controller_layers * size
        self.interface_layer = nn.Linear(hidden_size, self.interface_layout.size, **factory)
        self.output_layer = nn.Linear(hidden_size + read_size, cfg.output_size, **factory)
        self.reset_parameters()

    @staticmethod
    def layout(config: Any) -> Any:
        """The interface layout for ``config``: its ``size`` and ``activate(raw)``."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Re-initialise every parameter."""
        for module in (*self.controller, self.interface_layer, self.output_layer):
            module.reset_parameters()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())

    def initial_state(self, batch_size: int) -> Any:
        raise NotImplementedError

    def check_state(self, state: Any, batch_size: int) -> None:
        raise NotImplementedError

    def check_fields(
        self, state: Any, kind: type, batch_size: int, shapes: dict[str, tuple[int, ...]]
    ) -> None:
        """The ValueError of ``check_state`` unless ``state`` is a ``kind`` whose fields have
        the ``shapes`` given, and its controller's hidden and cell states (L, B, C) theirs."""
        cfg, name = self.config, type(self).__name__
        if not isinstance(state, kind):
            raise ValueError(f"{name}: state must be a {kind.__name__}, got {type(state).__name__}")
        layers = (cfg.controller_layers, batch_size, cfg.controller_size)
        controller = {"controller_hidden": layers, "controller_cell": layers}
        for field, shape in {**shapes, **controller}.items():
            check_tensor(name, f"state.{field}", getattr(state, field), shape)

    def step(self, input: Tensor, state: Any) -> tuple[Tensor, Any, Any]:
        raise NotImplementedError

    def require_batch_size(self, batch_size: int) -> None:
        """The ValueError of ``initial_state`` for a batch of fewer than one sequence."""
        if batch_size < 1:
            raise ValueError(
                f"{type(self).__name__}.initial_state: batch_size must be >= 1, got {batch_size}"
            )

    def forward(self, input: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        check_tensor(type(self).__name__, "input", input, (None, self.config.input_size))
        if state is None:
            state = self.initial_state(input.shape[0])
        else:
            self.check_state(state, input.shape[0])
        output, state, _ = self.step(input, state)
        return output, state

    def control(self, input: Tensor, state: Any) -> tuple[Tensor, Tensor, Tensor, Any]:
        """The controller's step from ``state``: all layers' hidden states side by side
        (B, L*C), the new hidden and cell states (L, B, C) each, and the interface."""
        chi = torch.cat([input, state.reads.flatten(1)], -1)  # (B, I + R*M)
        hidden, hiddens, cells = run_stacked_lstm(
            self.controller, chi, state.controller_hidden, state.controller_cell
        )
        raw = clip_values(self.interface_layer(hidden), self.config.interface_clip)  # (B, P)
        return hidden, hiddens, cells, self.interface_layout.activate(raw)

    def read_out(self, hidden: Tensor, reads: Tensor) -> Tensor:
        """The output logits (B, O) from the controller's ``hidden`` (B, L*C) and the new
        ``reads`` (B, R, M)."""
        output = self.output_layer(torch.cat([hidden, reads.flatten(1)], -1))
        return clip_values(output, self.config.output_clip)


class SequenceModel(Engined, nn.Module, Generic[C, S]):
    """A recurrent cell (``cell_class``, with settings ``config_class``) over whole
    sequences, run by one of its ``engines``: what the NTM, the DNC and SAM share. A
    subclass adds ``forward`` and ``trace``; its cell has ``config``, ``initial_state(B)``,
    ``check_state(state, B)`` and ``reset_parameters()``.

    Args:
        input_size, output_size, settings: the cell's (the fields of ``config_class``).
        batch_first: if True, inputs and outputs are (B, T, features), as in ``nn.LSTM``.
        engine: how a sequence runs (:mod:`ntm.engines.select`; ``auto`` by default).
        device, dtype: where and in which precision to create the parameters.
    """

    cell_class: ClassVar[type[nn.Module]]
    config_class: ClassVar[type[JSONConfig]]
    #: A recurrence: each output depends only on the inputs up to its step.
    causal: ClassVar[bool] = True

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        batch_first: bool = False,
        engine: str = AUTO,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        # An unknown setting is named as this model's, not its cell's.
        self.config_class.of(type(self).__name__, input_size, output_size, settings)
        self.cell: Any = self.cell_class(
            input_size, output_size, device=device, dtype=dtype, **settings
        )
        self.batch_first = batch_first
        self.engine = engine

    @classmethod
    def from_config(
        cls,
        config: C,
        *,
        batch_first: bool = False,
        engine: str = AUTO,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Any:
        """Build from a configuration."""
        return cls(
            **config.to_dict(), batch_first=batch_first, engine=engine, device=device, dtype=dtype
        )

    @property
    def config(self) -> C:
        config: C = self.cell.config
        return config

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}, engine={self.engine!r}"

    def initial_state(self, batch_size: int) -> S:
        state: S = self.cell.initial_state(batch_size)
        return state

    def reset_parameters(self) -> None:
        self.cell.reset_parameters()

    def _time_major(self, inputs: Tensor) -> Tensor:
        """Checked time-major inputs (T, B, I)."""
        size = self.cell.config.input_size
        check_tensor(type(self).__name__, "inputs", inputs, (None, None, size))
        steps = inputs.transpose(0, 1) if self.batch_first else inputs  # (T, B, I)
        if steps.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: inputs must have at least one time step")
        return steps

    def _start(self, inputs: Tensor, state: S | None) -> tuple[Tensor, S]:
        """Checked time-major inputs (T, B, I) and the state to start from."""
        steps = self._time_major(inputs)
        if state is None:
            return steps, self.initial_state(steps.shape[1])
        self.cell.check_state(state, steps.shape[1])
        return steps, state
