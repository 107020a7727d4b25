"""The Differentiable Neural Computer (Graves et al., 2016) as PyTorch modules.

Dimension legend: ``B`` batch, ``T`` time, ``I`` input size, ``O`` output size, ``R`` read
heads, ``N`` memory slots, ``M`` word size, ``L`` controller layers, ``C`` controller size,
``P`` interface size.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ntm.config import PLACEMENT, WRAPPER_ARGUMENTS, require, settings_signature
from ntm.engines.native.dnc import native_dnc_sequence
from ntm.models.common import InterfacedCell, SequenceModel
from ntm.models.dnc import addressing as dnc
from ntm.models.dnc.config import DNCConfig
from ntm.models.ntm.addressing import content_weights
from ntm.models.ntm.memory import read, write
from ntm.models.paper import PAPER_SETTINGS
from ntm.registry import Recipe, TraceContents, register_model

#: How a :class:`DNC` may run a sequence: ``eager`` (the cell step by step under autograd)
#: or ``native`` (the recurrence in C, :mod:`ntm.engines.native.dnc`).
ENGINES = ("eager", "native")


class DNCState(NamedTuple):
    """Everything a DNC carries from one step to the next; all zero at the start.

    Fields:
        memory: (B, N, M) the memory matrix.
        reads: (B, R, M) the last read vectors.
        read_weights: (B, R, N) the last read weightings.
        write_weights: (B, N) the last write weighting.
        usage: (B, N) how much each slot is in use, in [0, 1].
        precedence: (B, N) how much each slot was the last written.
        link: (B, N, N) the temporal link matrix, ``link[i, j]``: slot i written after j.
        controller_hidden: (L, B, C) LSTM hidden states.
        controller_cell: (L, B, C) LSTM cell states.
    """

    memory: Tensor
    reads: Tensor
    read_weights: Tensor
    write_weights: Tensor
    usage: Tensor
    precedence: Tensor
    link: Tensor
    controller_hidden: Tensor
    controller_cell: Tensor


class DNCTrace(NamedTuple):
    """Per-step record of a DNC run, for plots (time-major).

    Fields:
        read_weights: (T, B, R, N)
        write_weights: (T, B, N)
        usage: (T, B, N) the usage the step's allocation was computed from.
        allocation: (T, B, N) the allocation weighting.
        read_modes: (T, B, R, 3) backward, content, forward.
        allocation_gate: (T, B)
        write_gate: (T, B)
        free_gates: (T, B, R)
        reads: (T, B, R, M)
        memory: (T, B, N, M) the memory after each step's write.
        erase: (T, B, 1, M) the write head's erase vector.
        write_vector: (T, B, 1, M) the vector it adds.
    """

    read_weights: Tensor
    write_weights: Tensor
    usage: Tensor
    allocation: Tensor
    read_modes: Tensor
    allocation_gate: Tensor
    write_gate: Tensor
    free_gates: Tensor
    reads: Tensor
    memory: Tensor
    erase: Tensor
    write_vector: Tensor

    def contents(self) -> TraceContents:
        """What this trace holds, for the pictures (:class:`ntm.registry.TraceContents`):
        the one write head as a head axis, and the DNC's own panels."""
        return TraceContents(
            self.read_weights,
            self.write_weights.unsqueeze(2),  # (T, B, 1, N)
            self.memory,
            self.erase,
            self.write_vector,
            {
                "usage": self.usage,
                "allocation": self.allocation,
                "gates": torch.stack([self.allocation_gate, self.write_gate], -1),
                "read_modes": self.read_modes,
                "free_gates": self.free_gates,
            },
        )


class _StepRecord(NamedTuple):
    usage: Tensor
    allocation: Tensor
    interface: dnc.Interface


class _TracedStep(NamedTuple):
    """What :meth:`DNC.trace` keeps of a step: the state's weightings, reads and memory and
    the step's record. Not the state's (B, N, N) link matrix: kept at every step, it would
    make one trace of 1,000 steps with 1,024 slots hold 4 GiB a sequence."""

    read_weights: Tensor
    write_weights: Tensor
    reads: Tensor
    memory: Tensor
    record: _StepRecord


class DNCCell(InterfacedCell):
    r"""One step of a Differentiable Neural Computer (Graves et al., 2016, Methods).

    The controller, a stack of LSTM layers, sees the input and the previous reads,
    :math:`\chi_t = [x_t; r_{t-1}]`; each layer above the first also sees the layer below.
    From all layers' hidden states :math:`h_t` a linear layer makes the interface vector
    :math:`\xi_t` (:class:`ntm.models.dnc.addressing.InterfaceLayout`). The memory then
    frees and allocates slots, writes, updates the temporal links and reads
    (:mod:`ntm.models.dnc.addressing`). The output logits are :math:`y_t = W [h_t; r_t] + b`,
    the paper's :math:`W_y h_t + W_r r_t`.

    Args:
        input_size: features per input step ``I``.
        output_size: output logits per step ``O``.
        controller_size, controller_layers, num_read_heads, memory_size, word_size,
        interface_clip, output_clip, eps, link_sparsity: as the fields of
            :class:`ntm.DNCConfig`, whose defaults they take. ``link_sparsity`` K >= 1 makes
            the links the paper's sparse ones
            (:func:`ntm.models.dnc.addressing.sparse_link`; the same as the dense ones from
            K = N on).
        device, dtype: where and in which precision to create the parameters.

    Inputs: input, state
        - input: (B, I)
        - state: a :class:`DNCState`, or None for :meth:`initial_state`.

    Outputs: output, state
        - output: (B, O) logits (apply a sigmoid for bit probabilities).
        - state: the new :class:`DNCState`.
    """

    #: What ``help()`` and ``inspect.signature`` show: every setting of :class:`DNCConfig`.
    __signature__: ClassVar[inspect.Signature] = settings_signature(DNCConfig, *PLACEMENT)

    config: DNCConfig
    config_class: ClassVar[type[DNCConfig]] = DNCConfig

    @staticmethod
    def layout(config: DNCConfig) -> dnc.InterfaceLayout:
        """The interface vector's layout for ``config``'s read heads and word size."""
        return dnc.InterfaceLayout(config.num_read_heads, config.word_size)

    def initial_state(self, batch_size: int) -> DNCState:
        """The state at the start of every sequence, for ``batch_size`` sequences: zeros."""
        cfg = self.config
        self.require_batch_size(batch_size)
        ref = self.output_layer.weight
        b, r, n, m = batch_size, cfg.num_read_heads, cfg.memory_size, cfg.word_size
        hidden = ref.new_zeros(cfg.controller_layers, b, cfg.controller_size)
        return DNCState(
            memory=ref.new_zeros(b, n, m),
            reads=ref.new_zeros(b, r, m),
            read_weights=ref.new_zeros(b, r, n),
            write_weights=ref.new_zeros(b, n),
            usage=ref.new_zeros(b, n),
            precedence=ref.new_zeros(b, n),
            link=ref.new_zeros(b, n, n),
            controller_hidden=hidden,
            controller_cell=hidden,
        )

    def check_state(self, state: DNCState, batch_size: int) -> None:
        """Raise a ValueError unless ``state`` is a :class:`DNCState` for ``batch_size``."""
        cfg = self.config
        b, r, n, m = batch_size, cfg.num_read_heads, cfg.memory_size, cfg.word_size
        shapes = {"memory": (b, n, m), "reads": (b, r, m), "read_weights": (b, r, n),
                  "write_weights": (b, n), "usage": (b, n), "precedence": (b, n),
                  "link": (b, n, n)}  # fmt: skip
        self.check_fields(state, DNCState, batch_size, shapes)

    def step(self, input: Tensor, state: DNCState) -> tuple[Tensor, DNCState, _StepRecord]:
        """:meth:`forward` on arguments already checked, with what a trace records."""
        cfg = self.config
        hidden, hiddens, cells, face = self.control(input, state)

        # Allocation: free what the last reads asked to free, then find the unused slots.
        psi = dnc.retention(face.free_gates, state.read_weights)
        usage = dnc.usage(state.usage, state.write_weights, psi)
        allocation = dnc.allocation(usage)
        write_content = content_weights(
            state.memory, face.write_key, face.write_strength, cfg.eps
        ).squeeze(1)  # (B, N)
        write_weights = dnc.write_weighting(
            allocation, write_content, face.allocation_gate, face.write_gate
        )
        memory = write(state.memory, write_weights.unsqueeze(1), face.erase, face.write_vector)

        if 0 < cfg.link_sparsity < cfg.memory_size:
            link = dnc.sparse_link(state.link, state.precedence, write_weights, cfg.link_sparsity)
            forward, backward = dnc.directional_weights(link, state.read_weights)
        else:
            # The dense link matrix is most of the step's arithmetic: its backward by hand.
            link, forward, backward = dnc.link_and_directions(
                state.link, state.precedence, write_weights, state.read_weights
            )
        precedence = dnc.precedence(state.precedence, write_weights)
        read_content = content_weights(memory, face.read_keys, face.read_strengths, cfg.eps)
        read_weights = dnc.read_weighting(backward, read_content, forward, face.read_modes)
        reads = read(memory, read_weights)  # (B, R, M)

        output = self.read_out(hidden, reads)
        new_state = DNCState(
            memory=memory,
            reads=reads,
            read_weights=read_weights,
            write_weights=write_weights,
            usage=usage,
            precedence=precedence,
            link=link,
            controller_hidden=hiddens,
            controller_cell=cells,
        )
        return output, new_state, _StepRecord(usage, allocation, face)


#: The fast preset's DNC per task, beyond Adam at 3e-3 (docs/results.md).
FAST_DNC: dict[str, Recipe] = {
    "priority_sort": Recipe(
        train={"lr": 1e-3, "batch_size": 8},
        why="the NTM's recipe (3e-3 and batch 32 are untried on the DNC): 36.6 bits on the "
        "check after 24,576 sequences, where the NTM had about 120",
    ),
}


class DNC(SequenceModel[DNCConfig, DNCState]):
    """A Differentiable Neural Computer over whole sequences: :class:`DNCCell` step by step.

    Args:
        input_size, output_size, controller_size, ..., link_sparsity: as for :class:`DNCCell`.
        batch_first: if True, inputs and outputs are (B, T, features), as in ``nn.LSTM``.
        engine: how a sequence runs: ``auto`` (the default: native on a CPU in float32, else
            eager, as :mod:`ntm.engines.select` decides), or one of these. ``eager``: the cell
            step by step under autograd.
            ``native``: the whole sequence's recurrence in C, forward and backward one call
            each (:mod:`ntm.engines.native.dnc`, built in seconds the first time): same outputs and
            gradients, several times faster; the final state then carries no gradient. For
            float32 on the CPU; elsewhere, or without a C compiler, it runs as ``eager``
            (:func:`ntm.engines.native.native_available` says why), as does a sequence with sparse
            links whose initial links have more than ``link_sparsity`` non-zero entries in a
            row or a column (not a sparse DNC's state). A choice of this model alone,
            which may be changed between calls. :meth:`trace` always runs eager.
        device, dtype: where and in which precision to create the parameters.

    Inputs: inputs, state
        - inputs: (T, B, I), or (B, T, I) with ``batch_first=True``.
        - state: a :class:`DNCState`, or None to start from :meth:`initial_state`.

    Outputs: outputs, state
        - outputs: (T, B, O) logits, or (B, T, O) with ``batch_first=True``.
        - state: the :class:`DNCState` after the last step.
    """

    #: The setting that scales its width, and the step between widths (benchmarks/compare.py
    #: matches parameter counts with it).
    width_setting: ClassVar[tuple[str, int]] = ("controller_size", 1)

    #: What ``help()`` and ``inspect.signature`` show: every setting of :class:`DNCConfig`.
    __signature__: ClassVar[inspect.Signature] = settings_signature(DNCConfig, *WRAPPER_ARGUMENTS)

    cell_class: ClassVar[type[nn.Module]] = DNCCell
    config_class: ClassVar[type[DNCConfig]] = DNCConfig
    engines: ClassVar[tuple[str, ...]] = ENGINES
    #: The smallest batch at which two single-threaded processes train it faster than one on
    #: a 2-core machine, on its native engine: 1.06 times at batch 8, 1.81 at batch 32
    #: (benchmarks/README.md).
    two_processes_from_batch: ClassVar[int] = 8
    output_weights: ClassVar[tuple[str, ...]] = (
        "cell.output_layer.weight",
        "cell.output_layer.bias",
    )

    @classmethod
    def recipe(cls, task: str, preset: str, train: Mapping[str, Any]) -> Recipe | None:
        """The DNC for ``task``: the controller (size, layers) of the paper's NTM with an
        LSTM controller, as many read heads as that NTM has, one write head and its 128 x 20
        memory, so the two compare on equal terms; the paper preset takes that NTM's
        learning rate, the fast one :data:`FAST_DNC`'s settings."""
        controller = train.get("controller", "lstm")
        require(controller == "lstm", "TrainConfig", "controller", controller,
                "lstm for --model dnc (the DNC's controller is an LSTM)")  # fmt: skip
        if task not in PAPER_SETTINGS:
            return None
        setting = PAPER_SETTINGS[task]["lstm"]
        model = {
            "controller_size": setting.size,
            "controller_layers": setting.layers,
            "num_read_heads": setting.heads,
        }
        if preset == "paper":
            return Recipe({"lr": setting.learning_rate}, model, "the paper's NTM's table")
        fast = FAST_DNC.get(task, Recipe())
        return Recipe(fast.train, model, fast.why)

    def state_bytes(self) -> int:
        """The bytes of one sequence's state (:func:`ntm.registry.state_bytes`) where its
        parameters are: its link matrix with its memory, usage, precedence and weightings.
        The links are N x N (dense with 1,024 slots: 4 MiB, so that evaluation on a CPU
        takes a few sequences at a time), also where sparse links (0 < K < N) run eager,
        which keeps them in a dense matrix; the native engine keeps K values and columns a
        row."""
        c = self.config
        n = c.memory_size
        weight = next(self.parameters())
        native = self.engine_for(weight.device, weight.dtype).engine == "native"
        sparse = 0 < c.link_sparsity < n and native
        links = 2 * n * c.link_sparsity if sparse else n * n
        floats = links + n * c.word_size + (3 + c.num_read_heads) * n
        return floats * weight.element_size()

    @classmethod
    def input_weights(cls, config: DNCConfig) -> tuple[str, ...]:
        """Every controller layer's input weights: each layer sees the input."""
        return tuple(f"cell.controller.{i}.weight_ih" for i in range(config.controller_layers))

    def _run(
        self, steps: Tensor, state: DNCState, trace: bool
    ) -> tuple[Tensor, DNCState, list[_TracedStep]]:
        """The cell step by step over checked time-major ``steps``: outputs (T, B, O)."""
        outputs, records = [], []
        for x in steps:  # checked once in _start, not at every step
            y, state, record = self.cell.step(x, state)
            outputs.append(y)
            if trace:
                kept = (state.read_weights, state.write_weights, state.reads, state.memory)
                records.append(_TracedStep(*kept, record))
        return torch.stack(outputs), state, records

    def forward(self, inputs: Tensor, state: DNCState | None = None) -> tuple[Tensor, DNCState]:
        steps, state = self._start(inputs, state)
        engine = self.engine_for(steps.device, steps.dtype).engine
        # The native engine declines a sequence it cannot hold (an initial link matrix denser
        # than its sparsity): that one runs eager, the next step of the chain for the DNC.
        native = native_dnc_sequence(self.cell, steps, state) if engine == "native" else None
        if native is None:
            outputs, state, _ = self._run(steps, state, trace=False)
        else:
            outputs, state = native
        return (outputs.transpose(0, 1) if self.batch_first else outputs), state

    def trace(
        self, inputs: Tensor, state: DNCState | None = None
    ) -> tuple[Tensor, DNCState, DNCTrace]:
        """Like :meth:`forward`, and also every step's weightings, usage, allocation, gates,
        read modes, reads, memory and write vectors (time-major)."""
        time_major, state = self._start(inputs, state)
        outputs, state, records = self._run(time_major, state, trace=True)
        if self.batch_first:
            outputs = outputs.transpose(0, 1)
        steps = [r.record for r in records]
        record = DNCTrace(
            read_weights=torch.stack([r.read_weights for r in records]),
            write_weights=torch.stack([r.write_weights for r in records]),
            usage=torch.stack([r.usage for r in steps]),
            allocation=torch.stack([r.allocation for r in steps]),
            read_modes=torch.stack([r.interface.read_modes for r in steps]),
            allocation_gate=torch.stack([r.interface.allocation_gate for r in steps]),
            write_gate=torch.stack([r.interface.write_gate for r in steps]),
            free_gates=torch.stack([r.interface.free_gates for r in steps]),
            reads=torch.stack([r.reads for r in records]),
            memory=torch.stack([r.memory for r in records]),
            erase=torch.stack([r.interface.erase for r in steps]),
            write_vector=torch.stack([r.interface.write_vector for r in steps]),
        )
        return outputs, state, record


register_model("dnc", DNC)
