"""Sparse Access Memory (Rae et al., 2016) as PyTorch modules: a step and a whole sequence.

Dimension legend: ``B`` batch, ``T`` time, ``I`` input size, ``O`` output size, ``R`` read
heads, ``K`` slots a read head attends to, ``S`` entries of the write weighting
(``R * K + 1``), ``N`` memory slots, ``M`` word size, ``L`` controller layers, ``C``
controller size, ``P`` interface size.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ntm.config import PLACEMENT, WRAPPER_ARGUMENTS, require, settings_signature
from ntm.engines.native.sam import Workspaces, native_sam_sequence
from ntm.models.common import InterfacedCell, SequenceModel
from ntm.models.paper import PAPER_SETTINGS
from ntm.models.sam import addressing as sam
from ntm.models.sam.config import SAMConfig
from ntm.registry import Recipe, TraceContents, register_model

#: How a :class:`SAM` may run a sequence: ``eager`` (the cell step by step under autograd)
#: or ``native`` (the recurrence in C, :mod:`ntm.engines.native.sam`).
ENGINES = ("eager", "native")

#: The tasks :meth:`SAM.recipe` has settings for: those of the paper's NTM comparisons.
RECIPE_TASKS = ("copy", "associative_recall")


class SAMState(NamedTuple):
    """Everything a SAM carries from one step to the next. The read weights are sparse: each
    head's ``K`` weights and the slots they sit on.

    At the start the memory, the reads, the read weights and the usage are zero (the memory
    as a fresh slot is after its erase, and as the DNC's starts), and the read slots are
    slots ``0..K-1`` (with zero weight, they only say where the zeros sit).

    Fields:
        memory: (B, N, M) the memory matrix.
        reads: (B, R, M) the last read vectors.
        read_weights: (B, R, K) the last read weights.
        read_indices: (B, R, K) int64, the slots those weights sit on.
        usage: (B, N) the step at which each slot was last accessed (0: never).
        steps: (B,) the steps taken so far (whole numbers, as floating point).
        controller_hidden: (L, B, C) LSTM hidden states.
        controller_cell: (L, B, C) LSTM cell states.
    """

    memory: Tensor
    reads: Tensor
    read_weights: Tensor
    read_indices: Tensor
    usage: Tensor
    steps: Tensor
    controller_hidden: Tensor
    controller_cell: Tensor


class SAMTrace(NamedTuple):
    """Per-step record of a SAM run, for plots (time-major); the weightings dense over all
    slots.

    Fields:
        read_weights: (T, B, R, N)
        write_weights: (T, B, 1, N) the write head's weighting :math:`w^W`.
        erase_weights: (T, B, 1, N) the one-hot of the slot erased before the write, the
            least recently used one.
        add: (T, B, 1, M) the add vector.
        usage: (T, B, N) the usage the step's least recently used slot was chosen from, as
            a fraction of the steps before it: 1 for a slot accessed at the previous step,
            0 for one never accessed.
        write_gate: (T, B) :math:`\\alpha`.
        interpolation_gate: (T, B) :math:`\\gamma`, the weight on the last read slots.
        reads: (T, B, R, M)
        memory: (T, B, N, M) the memory after each step's write.
    """

    read_weights: Tensor
    write_weights: Tensor
    erase_weights: Tensor
    add: Tensor
    usage: Tensor
    write_gate: Tensor
    interpolation_gate: Tensor
    reads: Tensor
    memory: Tensor

    def contents(self) -> TraceContents:
        """What this trace holds, for the pictures (:class:`ntm.registry.TraceContents`).

        SAM erases one slot and adds at others, which one NTM write head (erase and add at
        the same weighting) cannot say, so the write is declared as two heads: head 0 the
        write (:math:`w^W`, erase vector 0, add vector :math:`a`), head 1 the erase of the
        least recently used slot (its one-hot, erase vector 1, add vector 0). The NTM's
        write, all erases before all adds, then replays SAM's exactly. The gates panel holds
        :math:`1 - \\gamma` (the weight on the least recently used slot, the place of the
        DNC's allocation gate) and :math:`\\alpha` (the write gate)."""
        zeros, ones = torch.zeros_like(self.add), torch.ones_like(self.add)
        return TraceContents(
            self.read_weights,
            torch.cat([self.write_weights, self.erase_weights], 2),  # (T, B, 2, N)
            self.memory,
            torch.cat([zeros, ones], 2),  # (T, B, 2, M)
            torch.cat([self.add, zeros], 2),
            {
                "usage": self.usage,
                "gates": torch.stack([1.0 - self.interpolation_gate, self.write_gate], -1),
            },
        )


class _StepRecord(NamedTuple):
    """What a step computes that its state does not keep, for :class:`SAMTrace`."""

    interface: sam.Interface
    least_used: Tensor  # (B,)
    write_weights: Tensor  # (B, S)
    write_indices: Tensor  # (B, S)


class SAMCell(InterfacedCell):
    r"""One step of Sparse Access Memory (Rae et al., 2016).

    The controller, a stack of LSTM layers, sees the input and the previous reads,
    :math:`[x_t; r_{t-1}]`; each layer above the first also sees the layer below. From all
    layers' hidden states :math:`h_t` a linear layer makes the interface vector
    (:class:`ntm.models.sam.addressing.InterfaceLayout`). The memory then erases its least
    recently used slot and writes to it and to the slots read at the previous step; each
    read head reads the :math:`K` slots most similar to its key; the usage records the slots
    accessed (:mod:`ntm.models.sam.addressing`). The output logits are
    :math:`y_t = W [h_t; r_t] + b`, as the DNC's.

    Args:
        input_size: features per input step ``I``.
        output_size: output logits per step ``O``.
        controller_size, controller_layers, num_read_heads, memory_size, word_size, k,
        delta, interface_clip, output_clip, eps: as the fields of :class:`ntm.SAMConfig`,
            whose defaults they take.
        device, dtype: where and in which precision to create the parameters.

    Inputs: input, state
        - input: (B, I)
        - state: a :class:`SAMState`, or None for :meth:`initial_state`.

    Outputs: output, state
        - output: (B, O) logits (apply a sigmoid for bit probabilities).
        - state: the new :class:`SAMState`.
    """

    #: What ``help()`` and ``inspect.signature`` show: every setting of :class:`SAMConfig`.
    __signature__: ClassVar[inspect.Signature] = settings_signature(SAMConfig, *PLACEMENT)

    config: SAMConfig
    config_class: ClassVar[type[SAMConfig]] = SAMConfig

    @staticmethod
    def layout(config: SAMConfig) -> sam.InterfaceLayout:
        """The interface vector's layout for ``config``'s read heads and word size."""
        return sam.InterfaceLayout(config.num_read_heads, config.word_size)

    def initial_state(self, batch_size: int) -> SAMState:
        """The state at the start of every sequence, for ``batch_size`` sequences (see
        :class:`SAMState`)."""
        cfg = self.config
        self.require_batch_size(batch_size)
        ref = self.output_layer.weight
        b, r, k = batch_size, cfg.num_read_heads, cfg.k
        hidden = ref.new_zeros(cfg.controller_layers, b, cfg.controller_size)
        slots = torch.arange(k, device=ref.device).expand(b, r, k)
        return SAMState(
            memory=ref.new_zeros(b, cfg.memory_size, cfg.word_size),
            reads=ref.new_zeros(b, r, cfg.word_size),
            read_weights=ref.new_zeros(b, r, k),
            read_indices=slots,
            usage=ref.new_zeros(b, cfg.memory_size),
            steps=ref.new_zeros(b),
            controller_hidden=hidden,
            controller_cell=hidden,
        )

    def check_state(self, state: SAMState, batch_size: int) -> None:
        """Raise a ValueError unless ``state`` is a :class:`SAMState` for ``batch_size``."""
        cfg = self.config
        name = type(self).__name__
        b, r, n, m, k = batch_size, cfg.num_read_heads, cfg.memory_size, cfg.word_size, cfg.k
        shapes = {"memory": (b, n, m), "reads": (b, r, m), "read_weights": (b, r, k),
                  "usage": (b, n), "steps": (b,)}  # fmt: skip
        self.check_fields(state, SAMState, batch_size, shapes)
        slots = state.read_indices
        if (
            not isinstance(slots, Tensor)
            or slots.dtype != torch.int64
            or tuple(slots.shape) != (b, r, k)
        ):
            got = (
                f"{slots.dtype} {tuple(slots.shape)}"
                if isinstance(slots, Tensor)
                else type(slots).__name__
            )
            raise ValueError(
                f"{name}: state.read_indices must be int64 of shape {(b, r, k)}, got {got}"
            )
        if slots.device.type == "cpu" and bool(((slots < 0) | (slots >= n)).any()):
            raise ValueError(f"{name}: state.read_indices must be slots in 0..{n - 1}")

    def step(self, input: Tensor, state: SAMState) -> tuple[Tensor, SAMState, _StepRecord]:
        """:meth:`forward` on arguments already checked, with what a trace records."""
        cfg = self.config
        hidden, hiddens, cells, face = self.control(input, state)

        # Write: erase the least recently used slot, then add where the heads last read and
        # there.
        least_used = sam.least_recently_used(state.usage)  # (B,)
        write_weights, write_indices = sam.write_weights(
            state.read_weights,
            state.read_indices,
            least_used,
            face.write_gate,
            face.interpolation_gate,
        )  # (B, S) each
        memory = sam.write(state.memory, least_used, write_weights, write_indices, face.add)

        # Read: each head from the K slots nearest its key.
        read_indices = sam.nearest_slots(memory, face.read_keys, cfg.k, cfg.eps)  # (B, R, K)
        read_weights = sam.read_weights(
            memory, face.read_keys, face.read_strengths, read_indices, cfg.eps
        )
        reads = sam.read(memory, read_weights, read_indices)  # (B, R, M)

        steps = state.steps + 1.0
        usage = sam.usage(
            state.usage, steps, read_weights, read_indices, write_weights, write_indices, cfg.delta
        )
        output = self.read_out(hidden, reads)
        new_state = SAMState(
            memory=memory,
            reads=reads,
            read_weights=read_weights,
            read_indices=read_indices,
            usage=usage,
            steps=steps,
            controller_hidden=hiddens,
            controller_cell=cells,
        )
        return output, new_state, _StepRecord(face, least_used, write_weights, write_indices)


class SAM(SequenceModel[SAMConfig, SAMState]):
    """Sparse Access Memory over whole sequences: :class:`SAMCell` step by step.

    Args:
        input_size, output_size, controller_size, ..., eps: as for :class:`SAMCell`.
        batch_first: if True, inputs and outputs are (B, T, features), as in ``nn.LSTM``.
        engine: how a sequence runs. ``eager``: the cell step by step under autograd.
            ``native``: the whole sequence's recurrence in C, forward and backward one call
            each (:mod:`ntm.engines.native.sam`, built in seconds the first time): same
            outputs and gradients, a step's cost independent of ``memory_size`` but for
            the nearest-neighbour search, and no copy of the memory per step; the final
            state then carries no gradient, and a sequence from the zero state reuses the
            model's memory between calls. For float32 on the CPU; elsewhere, or without a
            C compiler, it runs as ``eager`` (:func:`ntm.engines.native.native_available`
            says why). A choice of this model alone, which may be changed between calls.
            :meth:`trace` always runs eager.
        device, dtype: where and in which precision to create the parameters.

    Inputs: inputs, state
        - inputs: (T, B, I), or (B, T, I) with ``batch_first=True``.
        - state: a :class:`SAMState`, or None to start from :meth:`initial_state`.

    Outputs: outputs, state
        - outputs: (T, B, O) logits, or (B, T, O) with ``batch_first=True``.
        - state: the :class:`SAMState` after the last step.
    """

    #: The setting that scales its width, and the step between widths (benchmarks/compare.py
    #: matches parameter counts with it).
    width_setting: ClassVar[tuple[str, int]] = ("controller_size", 1)

    #: What ``help()`` and ``inspect.signature`` show: every setting of :class:`SAMConfig`.
    __signature__: ClassVar[inspect.Signature] = settings_signature(SAMConfig, *WRAPPER_ARGUMENTS)

    def __init__(self, input_size: int, output_size: int, **options: Any) -> None:
        """As :class:`ntm.models.common.SequenceModel` (its options: ``batch_first``,
        ``engine``, ``device``, ``dtype`` and the settings), with the native engine's
        workspaces."""
        super().__init__(input_size, output_size, **options)
        #: The native engine's memories for sequences from the zero state, kept between calls.
        self.workspaces = Workspaces()

    cell_class: ClassVar[type[nn.Module]] = SAMCell
    config_class: ClassVar[type[SAMConfig]] = SAMConfig
    engines: ClassVar[tuple[str, ...]] = ENGINES
    output_weights: ClassVar[tuple[str, ...]] = (
        "cell.output_layer.weight",
        "cell.output_layer.bias",
    )

    @classmethod
    def recipe(cls, task: str, preset: str, train: Mapping[str, Any]) -> Recipe | None:
        """SAM for copy and associative recall (None for other tasks): the controller (size,
        layers) and read heads of the paper's NTM with an LSTM controller, one write head,
        128 x 20 memory and K = 8, so that it compares with the NTM and the DNC on equal
        terms; the paper preset takes that NTM's learning rate."""
        controller = train.get("controller", "lstm")
        require(controller == "lstm", "TrainConfig", "controller", controller,
                "lstm for --model sam (SAM's controller is an LSTM)")  # fmt: skip
        if task not in RECIPE_TASKS:
            return None
        setting = PAPER_SETTINGS[task]["lstm"]
        model = {
            "controller_size": setting.size,
            "controller_layers": setting.layers,
            "num_read_heads": setting.heads,
            "memory_size": 128,
            "word_size": 20,
            "k": 8,
        }
        why = "the paper's NTM's controller and memory, K = 8"
        if preset == "paper":
            return Recipe({"lr": setting.learning_rate}, model, why)
        # At 3e-3 the bare command's copy run on the native engine (seed 1) came to 0.27 wrong
        # bits and stopped at the floor rate after 307,200 sequences; at 1e-3 it met the
        # target at 32,768 (the NTM's recall recipe takes 1e-3 as well).
        return Recipe({"lr": 1e-3}, model, why + "; lr 1e-3, at which copy learns steadily")

    @classmethod
    def input_weights(cls, config: SAMConfig) -> tuple[str, ...]:
        """Every controller layer's input weights: each layer sees the input."""
        return tuple(f"cell.controller.{i}.weight_ih" for i in range(config.controller_layers))

    def _run(
        self, steps: Tensor, state: SAMState, trace: bool
    ) -> tuple[Tensor, SAMState, list[tuple[SAMState, SAMState, _StepRecord]]]:
        """The cell step by step over checked time-major ``steps``: outputs (T, B, O), the
        last state and, with ``trace``, each step's (state before, state after, record)."""
        outputs, records = [], []
        for x in steps:  # checked once in _start, not at every step
            y, new, record = self.cell.step(x, state)
            outputs.append(y)
            if trace:
                records.append((state, new, record))
            state = new
        return torch.stack(outputs), state, records

    def forward(self, inputs: Tensor, state: SAMState | None = None) -> tuple[Tensor, SAMState]:
        steps = self._time_major(inputs)
        if state is not None:
            self.cell.check_state(state, steps.shape[1])
        native = None
        if self.engine_for(steps.device, steps.dtype).engine == "native":
            # From the zero state (None) without making it: the engine's workspace holds it.
            native = native_sam_sequence(self.cell, steps, state, self.workspaces)
        if native is None:
            start = self.cell.initial_state(steps.shape[1]) if state is None else state
            outputs, state, _ = self._run(steps, start, trace=False)
        else:
            outputs, state = native[0], SAMState(*native[1])
        return (outputs.transpose(0, 1) if self.batch_first else outputs), state

    def trace(
        self, inputs: Tensor, state: SAMState | None = None
    ) -> tuple[Tensor, SAMState, SAMTrace]:
        """Like :meth:`forward`, and also every step's weightings (dense over all slots),
        erased slot, add vector, usage, gates, reads and memory (time-major)."""
        time_major, state = self._start(inputs, state)
        outputs, state, records = self._run(time_major, state, trace=True)
        if self.batch_first:
            outputs = outputs.transpose(0, 1)
        n = self.config.memory_size

        def dense_writes(record: _StepRecord) -> Tensor:  # (B, 1, N)
            weights, slots = record.write_weights.unsqueeze(1), record.write_indices.unsqueeze(1)
            return sam.densify(weights, slots, n)

        def erased(record: _StepRecord) -> Tensor:  # (B, 1, N)
            return nn.functional.one_hot(record.least_used, n).to(record.write_weights).unsqueeze(1)

        def usage(before: SAMState) -> Tensor:  # (B, N), in [0, 1]
            return before.usage / before.steps.clamp(min=1.0).unsqueeze(-1)

        record = SAMTrace(
            read_weights=torch.stack(
                [sam.densify(s.read_weights, s.read_indices, n) for _, s, _ in records]
            ),
            write_weights=torch.stack([dense_writes(r) for _, _, r in records]),
            erase_weights=torch.stack([erased(r) for _, _, r in records]),
            add=torch.stack([r.interface.add.unsqueeze(1) for _, _, r in records]),
            usage=torch.stack([usage(before) for before, _, _ in records]),
            write_gate=torch.stack([r.interface.write_gate for _, _, r in records]),
            interpolation_gate=torch.stack([r.interface.interpolation_gate for _, _, r in records]),
            reads=torch.stack([s.reads for _, s, _ in records]),
            memory=torch.stack([s.memory for _, s, _ in records]),
        )
        return outputs, state, record


register_model("sam", SAM)
