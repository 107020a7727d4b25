"""The Neural Turing Machine as PyTorch modules: a step and a whole sequence.

:class:`NTMCell` is one step, :class:`NTM` a whole sequence.

Dimension legend: ``B`` batch, ``T`` time, ``I`` input size, ``O`` output size,
``R`` read heads, ``W`` write heads, ``N`` memory slots, ``M`` word size,
``S`` shift offsets (``2K + 1``), ``L`` controller layers, ``C`` controller size.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ntm.config import PLACEMENT, WRAPPER_ARGUMENTS, settings_signature
from ntm.engines.fused import fused_sequence
from ntm.engines.native import native_sequence
from ntm.models.common import SequenceModel, check_tensor, clip_values
from ntm.models.ntm.addressing import address
from ntm.models.ntm.config import NTMConfig, paper_ntm_config
from ntm.models.ntm.layout import CONTROLLER_LAYER_WEIGHTS, HeadLayout, WriteVectors
from ntm.models.ntm.memory import read, write
from ntm.models.paper import PAPER_SETTINGS
from ntm.registry import Recipe, TraceContents, register_model

#: How an :class:`NTM` runs a sequence: ``eager`` (autograd through every step), ``fused``
#: (one autograd node with a hand-written backward, :mod:`ntm.engines.fused`), ``compiled`` (the
#: fused path with its steps compiled by ``torch.compile``) or ``native`` (the fused path's
#: recurrence in C, :mod:`ntm.engines.native`).
ENGINES = ("eager", "fused", "compiled", "native")


#: Value of every memory cell under the ``constant`` initialisation (Collier & Beel).
CONSTANT_MEMORY_VALUE = 1e-6


#: Initial logit of slot 0 for learned initial weightings: softmax puts ~99% of the weight there.
INITIAL_FOCUS_LOGIT = 10.0


class NTMState(NamedTuple):
    """Everything an NTM carries from one step to the next.

    Fields:
        memory: (B, N, M) the memory matrix.
        reads: (B, R, M) the last read vectors.
        read_weights: (B, R, N) the last read weightings.
        write_weights: (B, W, N) the last write weightings.
        controller_hidden: (L, B, C) LSTM hidden state; (0, B, C) for a feed-forward controller.
        controller_cell: (L, B, C) LSTM cell state; (0, B, C) for a feed-forward controller.
    """

    memory: Tensor
    reads: Tensor
    read_weights: Tensor
    write_weights: Tensor
    controller_hidden: Tensor
    controller_cell: Tensor


class NTMTrace(NamedTuple):
    """Per-step record of an NTM run, for plots.

    Fields:
        read_weights: (T, B, R, N)
        write_weights: (T, B, W, N)
        reads: (T, B, R, M)
        memory: (T, B, N, M) the memory after each step's write.
        erase: (T, B, W, M) each write head's erase vector.
        add: (T, B, W, M) each write head's add vector.
    """

    read_weights: Tensor
    write_weights: Tensor
    reads: Tensor
    memory: Tensor
    erase: Tensor
    add: Tensor

    def contents(self) -> TraceContents:
        """What this trace holds, for the pictures (:class:`ntm.registry.TraceContents`)."""
        return TraceContents(
            self.read_weights, self.write_weights, self.memory, self.erase, self.add
        )


class NTMCell(nn.Module):
    r"""One step of a Neural Turing Machine (Graves et al., 2014).

    At each step the controller sees the input and the previous read vectors,
    :math:`h_t = \mathrm{controller}([x_t; r_{t-1}])`. A linear layer on
    :math:`[h_t; r_{t-1}]` gives every head its parameters; the write heads address the
    memory and write (erase, then add); the read heads address the written memory and
    read. The output logits are :math:`y_t = W [h_t; r_t] + b`.

    Each head's addressing: content (key, strength), interpolation (gate), circular
    shift (shift weights), sharpening (gamma), see :mod:`ntm.models.ntm.addressing`.

    Args:
        input_size: features per input step ``I``.
        output_size: output logits per step ``O``.
        controller, controller_size, controller_layers, num_read_heads, num_write_heads,
        memory_size, word_size, shift_range, memory_init, learn_initial_reads,
        learn_initial_weights, head_clip, output_clip, eps: as the fields of
            :class:`ntm.NTMConfig`, whose defaults they take.
        device, dtype: where and in which precision to create the parameters.

    Inputs: input, state
        - input: (B, I)
        - state: an :class:`NTMState`, or None for :meth:`initial_state`.

    Outputs: output, state
        - output: (B, O) logits (apply a sigmoid for bit probabilities).
        - state: the new :class:`NTMState`.
    """

    #: What ``help()`` and ``inspect.signature`` show: every setting of :class:`NTMConfig`.
    __signature__: ClassVar[inspect.Signature] = settings_signature(NTMConfig, *PLACEMENT)

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
        self.config = NTMConfig.of(type(self).__name__, input_size, output_size, settings)
        cfg = self.config
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        read_size = cfg.num_read_heads * cfg.word_size
        controller_input = cfg.input_size + read_size
        if cfg.controller == "lstm":
            self.controller = nn.ModuleList(
                nn.LSTMCell(
                    controller_input if i == 0 else cfg.controller_size,
                    cfg.controller_size,
                    **factory,
                )
                for i in range(cfg.controller_layers)
            )
            # Learned initial controller state, (L, C) each.
            self.initial_hidden = nn.Parameter(
                torch.empty(cfg.controller_layers, cfg.controller_size, **factory)
            )
            self.initial_cell = nn.Parameter(
                torch.empty(cfg.controller_layers, cfg.controller_size, **factory)
            )
        else:
            self.controller = nn.ModuleList(
                nn.Linear(
                    controller_input if i == 0 else cfg.controller_size,
                    cfg.controller_size,
                    **factory,
                )
                for i in range(cfg.controller_layers)
            )
        self.layout = HeadLayout(cfg.word_size, cfg.shift_range)
        self.head_layer = nn.Linear(
            cfg.controller_size + read_size,
            cfg.num_read_heads * self.layout.read_size
            + cfg.num_write_heads * self.layout.write_size,
            **factory,
        )
        self.output_layer = nn.Linear(cfg.controller_size + read_size, cfg.output_size, **factory)
        memory_shape = (cfg.memory_size, cfg.word_size)
        if cfg.memory_init == "learned":
            self.initial_memory = nn.Parameter(torch.empty(memory_shape, **factory))
        else:
            self.register_buffer("initial_memory", torch.empty(memory_shape, **factory))
        if cfg.learn_initial_reads:
            self.initial_reads = nn.Parameter(
                torch.empty(cfg.num_read_heads, cfg.word_size, **factory)
            )
        if cfg.learn_initial_weights:
            self.initial_read_logits = nn.Parameter(
                torch.empty(cfg.num_read_heads, cfg.memory_size, **factory)
            )
            self.initial_write_logits = nn.Parameter(
                torch.empty(cfg.num_write_heads, cfg.memory_size, **factory)
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every parameter (and the ``random`` initial memory)."""
        cfg = self.config
        for module in (*self.controller, self.head_layer, self.output_layer):
            module.reset_parameters()
        with torch.no_grad():
            if cfg.controller == "lstm":
                self.initial_hidden.zero_()
                self.initial_cell.zero_()
            if cfg.memory_init == "random":
                # Fixed, not trained: a random memory drawn once (Collier & Beel's third scheme).
                bound = 1.0 / (cfg.memory_size + cfg.word_size) ** 0.5
                self.initial_memory.uniform_(-bound, bound)
            else:
                self.initial_memory.fill_(CONSTANT_MEMORY_VALUE)
            if cfg.learn_initial_reads:
                self.initial_reads.zero_()
            if cfg.learn_initial_weights:
                # Start focused on slot 0: from a uniform weighting over a uniform memory
                # every slot would stay alike and the symmetry would never break.
                for logits in (self.initial_read_logits, self.initial_write_logits):
                    logits.zero_()
                    logits[:, 0] = INITIAL_FOCUS_LOGIT

    def initial_state(self, batch_size: int) -> NTMState:
        """The state at the start of every sequence, for ``batch_size`` sequences."""
        cfg = self.config
        if batch_size < 1:
            raise ValueError(
                f"{type(self).__name__}.initial_state: batch_size must be >= 1, got {batch_size}"
            )
        ref = self.output_layer.weight
        memory = self.initial_memory.unsqueeze(0).expand(batch_size, -1, -1)  # (B, N, M)
        if cfg.learn_initial_reads:
            reads = torch.tanh(self.initial_reads).unsqueeze(0).expand(batch_size, -1, -1)
        else:
            reads = ref.new_zeros(batch_size, cfg.num_read_heads, cfg.word_size)
        if cfg.learn_initial_weights:
            read_weights = (
                torch.softmax(self.initial_read_logits, -1).unsqueeze(0).expand(batch_size, -1, -1)
            )
            write_weights = (
                torch.softmax(self.initial_write_logits, -1).unsqueeze(0).expand(batch_size, -1, -1)
            )
        else:
            # All weight on slot 0: a definite start for location-based addressing.
            read_weights = ref.new_zeros(batch_size, cfg.num_read_heads, cfg.memory_size)
            read_weights[..., 0] = 1.0
            write_weights = ref.new_zeros(batch_size, cfg.num_write_heads, cfg.memory_size)
            write_weights[..., 0] = 1.0
        if cfg.controller == "lstm":
            hidden = self.initial_hidden.unsqueeze(1).expand(-1, batch_size, -1)  # (L, B, C)
            cell = self.initial_cell.unsqueeze(1).expand(-1, batch_size, -1)
        else:
            hidden = ref.new_zeros(0, batch_size, cfg.controller_size)
            cell = hidden
        return NTMState(memory, reads, read_weights, write_weights, hidden, cell)

    def check_state(self, state: NTMState, batch_size: int) -> None:
        cfg = self.config
        name = type(self).__name__
        if not isinstance(state, NTMState):
            raise ValueError(f"{name}: state must be an NTMState, got {type(state).__name__}")
        layers = cfg.controller_layers if cfg.controller == "lstm" else 0
        expected: dict[str, tuple[int, ...]] = {
            "memory": (batch_size, cfg.memory_size, cfg.word_size),
            "reads": (batch_size, cfg.num_read_heads, cfg.word_size),
            "read_weights": (batch_size, cfg.num_read_heads, cfg.memory_size),
            "write_weights": (batch_size, cfg.num_write_heads, cfg.memory_size),
            "controller_hidden": (layers, batch_size, cfg.controller_size),
            "controller_cell": (layers, batch_size, cfg.controller_size),
        }
        for field, shape in expected.items():
            check_tensor(name, f"state.{field}", state._asdict()[field], shape)

    def _controller_step(self, x: Tensor, state: NTMState) -> tuple[Tensor, Tensor, Tensor]:
        """Run the controller layers. Returns output (B, C), hidden and cell (L, B, C)."""
        if self.config.controller == "feedforward":
            for layer in self.controller:
                x = torch.tanh(layer(x))
            return x, state.controller_hidden, state.controller_cell
        hiddens, cells = [], []
        for i, layer in enumerate(self.controller):
            x, c = layer(x, (state.controller_hidden[i], state.controller_cell[i]))
            hiddens.append(x)
            cells.append(c)
        return x, torch.stack(hiddens), torch.stack(cells)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())

    def forward(self, input: Tensor, state: NTMState | None = None) -> tuple[Tensor, NTMState]:
        check_tensor(type(self).__name__, "input", input, (None, self.config.input_size))
        if state is None:
            state = self.initial_state(input.shape[0])
        else:
            self.check_state(state, input.shape[0])
        return self._step(input, state)

    def _step(
        self, input: Tensor, state: NTMState, written: list[WriteVectors] | None = None
    ) -> tuple[Tensor, NTMState]:
        """:meth:`forward` on arguments already checked; the step's erase and add vectors are
        appended to ``written`` where it is given."""
        cfg = self.config
        batch_size = input.shape[0]
        previous_reads = state.reads.flatten(1)  # (B, R*M)
        h, hidden, cell = self._controller_step(torch.cat([input, previous_reads], -1), state)
        raw = clip_values(self.head_layer(torch.cat([h, previous_reads], -1)), cfg.head_clip)
        layout = self.layout
        read_raw, write_raw = torch.split(
            raw,
            [cfg.num_read_heads * layout.read_size, cfg.num_write_heads * layout.write_size],
            -1,
        )
        readers = layout.activate(read_raw.view(batch_size, cfg.num_read_heads, layout.read_size))
        write_raw = write_raw.view(batch_size, cfg.num_write_heads, layout.write_size)
        writers = layout.activate(write_raw)

        write_weights = address(state.memory, state.write_weights, *writers, eps=cfg.eps)
        vectors = layout.write_vectors(write_raw)
        if written is not None:
            written.append(vectors)
        memory = write(state.memory, write_weights, *vectors)

        read_weights = address(memory, state.read_weights, *readers, eps=cfg.eps)
        reads = read(memory, read_weights)  # (B, R, M)
        output = clip_values(
            self.output_layer(torch.cat([h, reads.flatten(1)], -1)), cfg.output_clip
        )
        return output, NTMState(memory, reads, read_weights, write_weights, hidden, cell)


#: The fast preset's NTM per task, beyond Adam at 3e-3 and the paper's controller and heads
#: (docs/results.md).
FAST_NTM: dict[str, Recipe] = {
    "repeat_copy": Recipe(
        train={"withhold_end_marker": True},
        why="from scratch the end marker keeps the NTM from finding its memory; without it "
        "the copies are learned in about 45,000 sequences, and the marker after them",
    ),
    "associative_recall": Recipe(
        train={"lr": 1e-3},
        why="at 3e-3 recall stalls near 3 bit errors per sequence; at 1e-3 it learns",
    ),
    "ngrams": Recipe(
        model={"memory_init": "random"},
        why="a fixed random memory lets content addressing tell the slots apart: 134.8 bits "
        "on the check after 73,728 sequences, where a constant memory had 159.5 (with 256 "
        "slots, one run diverged at 45,000 sequences)",
    ),
    "priority_sort": Recipe(
        train={"lr": 1e-3, "batch_size": 8},
        model={"memory_init": "random"},
        why="at 3e-3 it does not start; at batch 32 the schedule stopped it at 32.6 bits after "
        "a million sequences, where batch 8 (four times the updates) reached 20 bits at "
        "200,704; with a constant memory every slot looks alike to content addressing, which "
        "priority sort needs from the start",
    ),
}


class NTM(SequenceModel[NTMConfig, NTMState]):
    """A Neural Turing Machine over whole sequences: :class:`NTMCell` applied step by step.

    Args:
        input_size, output_size, controller, ..., eps: as for :class:`NTMCell`.
        batch_first: if True, inputs and outputs are (B, T, features), as in ``nn.LSTM``.
        engine: how a sequence runs: ``auto`` (the default: the fastest that runs here, as
            :mod:`ntm.engines.select` decides, native on a CPU in float32), or one of these.
            ``eager``: the cell step by step under autograd.
            ``fused``: the whole sequence as one autograd node with a hand-written backward
            (:mod:`ntm.engines.fused`): same outputs and gradients, several times faster on a CPU;
            the final state then carries no gradient. ``compiled``: ``fused`` with its steps
            compiled by ``torch.compile`` (a minute or two the first time). ``native``:
            ``fused`` with the recurrence in C (:mod:`ntm.engines.native`, built in seconds
            the first time), for float32 on the CPU; elsewhere, or without a C compiler, it runs as
            ``fused`` (the selector's chain). A choice of this model alone, which may be changed
            between calls; ``engine_for(device, dtype)`` says which engine runs and why.
        device, dtype: where and in which precision to create the parameters.

    Inputs: inputs, state
        - inputs: (T, B, I), or (B, T, I) with ``batch_first=True``.
        - state: an :class:`NTMState`, or None to start from :meth:`initial_state`.

    Outputs: outputs, state
        - outputs: (T, B, O) logits, or (B, T, O) with ``batch_first=True``.
        - state: the :class:`NTMState` after the last step.
    """

    #: What ``help()`` and ``inspect.signature`` show: every setting of :class:`NTMConfig`.
    __signature__: ClassVar[inspect.Signature] = settings_signature(NTMConfig, *WRAPPER_ARGUMENTS)

    cell_class: ClassVar[type[nn.Module]] = NTMCell
    config_class: ClassVar[type[NTMConfig]] = NTMConfig
    engines: ClassVar[tuple[str, ...]] = ENGINES
    #: The smallest batch at which two single-threaded processes train it faster than one on
    #: a 2-core machine: native engine, 1.15 times at batch 16, 0.70 at batch 8
    #: (benchmarks/train_throughput.py --layouts 1x1,2x1, 2026-12-04).
    two_processes_from_batch: ClassVar[int] = 16

    @classmethod
    def recipe(cls, task: str, preset: str, train: Mapping[str, Any]) -> Recipe | None:
        """The NTM for ``task``: the paper's controller and heads (tables 1-3); the paper
        preset adds its learning rate and learned initial memory, the fast one
        :data:`FAST_NTM`'s settings."""
        if task not in PAPER_SETTINGS:
            return None
        controller = str(train.get("controller", "lstm"))
        setting = PAPER_SETTINGS[task][controller]
        if preset == "paper":
            model = paper_ntm_config(task, controller, 1, 1).to_dict()
            del model["input_size"], model["output_size"]
            return Recipe({"lr": setting.learning_rate}, model, "the paper's table")
        fast = FAST_NTM.get(task, Recipe())
        model = {
            "controller": controller,
            "controller_size": setting.size,
            "controller_layers": setting.layers,
            "num_read_heads": setting.heads,
            "num_write_heads": setting.heads,
            **fast.model,
        }
        return Recipe(fast.train, model, fast.why)

    @classmethod
    def adapt_weights(
        cls, tensors: dict[str, Tensor], trained: NTMConfig, wanted: NTMConfig
    ) -> dict[str, Tensor]:
        """Trained weights made to fit a model that differs from ``trained`` only in its
        memory size: no weight learns what N is, but the initial memory and the initial
        weightings have a row or a column per slot. With more slots, the first N keep their
        trained values; a new slot's initial memory row is the mean of the trained rows (a
        ``constant`` memory: the constant; a ``random`` one: a fixed draw of the same
        range) and its initial weighting logit the smallest
        trained one, so the heads start where they learned to. With fewer slots, the first
        ones are kept. Any other difference is left to the strict load, which names it."""
        changed = {
            key
            for key, value in wanted.to_dict().items()
            if value != trained.to_dict()[key] and key != "memory_size"
        }
        if changed or wanted.memory_size == trained.memory_size:
            return tensors
        size = wanted.memory_size
        adapted = dict(tensors)
        memory = tensors.get("cell.initial_memory")
        if memory is not None:  # (N, M)
            rows = max(0, size - len(memory))
            extra = memory.mean(0, keepdim=True).expand(rows, -1)
            if trained.memory_init == "random":  # rows as different as the trained ones
                bound = float(memory.abs().max())
                generator = torch.Generator().manual_seed(0)
                extra = (torch.rand(rows, memory.shape[1], generator=generator) * 2 - 1) * bound
            adapted["cell.initial_memory"] = torch.cat([memory[:size], extra.to(memory)])
        for name in ("cell.initial_read_logits", "cell.initial_write_logits"):
            logits = tensors.get(name)
            if logits is not None:  # (heads, N)
                lowest = logits.min(-1, keepdim=True).values
                extra = lowest.expand(-1, max(0, size - logits.shape[-1]))
                adapted[name] = torch.cat([logits[:, :size], extra], -1)
        return adapted

    @classmethod
    def input_weights(cls, config: NTMConfig) -> tuple[str, ...]:
        """The tensors whose first columns are the input channels (then the last reads)."""
        return (f"cell.controller.0.{CONTROLLER_LAYER_WEIGHTS[config.controller][0]}",)

    output_weights: ClassVar[tuple[str, ...]] = (
        "cell.output_layer.weight",
        "cell.output_layer.bias",
    )

    def _run(
        self, steps: Tensor, state: NTMState, trace: bool
    ) -> tuple[Tensor, NTMState, list[tuple[NTMState, WriteVectors]]]:
        """The cell step by step over checked time-major ``steps`` (see :meth:`_start`)."""
        outputs, states = [], []
        written: list[WriteVectors] | None = [] if trace else None
        for x in steps:  # checked once in _start, not at every step
            y, state = self.cell._step(x, state, written)
            outputs.append(y)
            if written is not None:
                states.append((state, written[-1]))
        out = torch.stack(outputs)  # (T, B, O)
        return (out.transpose(0, 1) if self.batch_first else out), state, states

    def forward(self, inputs: Tensor, state: NTMState | None = None) -> tuple[Tensor, NTMState]:
        steps, state = self._start(inputs, state)
        engine = self.engine_for(steps.device, steps.dtype).engine
        if engine == "eager":
            outputs, state, _ = self._run(steps, state, trace=False)
            return outputs, state
        # The native engine declines a sequence it cannot hold (a shift range past its
        # bound): that one runs fused, the next step of the chain.
        native = native_sequence(self.cell, steps, state) if engine == "native" else None
        if native is None:
            outputs, state = fused_sequence(self.cell, steps, state, engine == "compiled")
        else:
            outputs, state = native
        return (outputs.transpose(0, 1) if self.batch_first else outputs), state

    def trace(
        self, inputs: Tensor, state: NTMState | None = None
    ) -> tuple[Tensor, NTMState, NTMTrace]:
        """Like :meth:`forward`, and also every step's weightings, reads, memory and write
        vectors (time-major)."""
        time_major, state = self._start(inputs, state)
        outputs, state, steps = self._run(time_major, state, trace=True)
        record = NTMTrace(
            read_weights=torch.stack([s.read_weights for s, _ in steps]),
            write_weights=torch.stack([s.write_weights for s, _ in steps]),
            reads=torch.stack([s.reads for s, _ in steps]),
            memory=torch.stack([s.memory for s, _ in steps]),
            erase=torch.stack([v.erase for _, v in steps]),
            add=torch.stack([v.add for _, v in steps]),
        )
        return outputs, state, record


register_model("ntm", NTM)
