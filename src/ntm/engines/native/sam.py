"""Sparse Access Memory's native engine: its recurrence in C, a whole sequence per call.

The recurrence is ``sam_sequence.c``'s, at a cost per step that does not grow with the
number of slots N apart from the nearest-neighbour search (``sam_search.h``).

As :mod:`ntm.engines.native.dnc` does for the DNC: the forward pass of a whole sequence is
one call into the native library, the backward pass another; the input's share of every
controller layer's gate inputs, the output layer and every weight gradient stay in PyTorch
as whole-sequence matrix products. It computes the same function as
:class:`ntm.models.sam.model.SAMCell` stepped in a loop, in float32 on the CPU; tests
compare its outputs, final state and gradients with the eager path's. The final state
carries no gradient.

What grows with N, and what does not:

- The memory (B, N, M) is held once, in a :class:`Workspace`, and changed in place. Each
  step logs what its write overwrites and what the backward pass needs: the old values of
  the ``S = R K + 1`` rows it writes, the write weights, the least recently used slot, the
  read slots and weights (``O(B K R M)`` a step). The backward pass walks the log back,
  restoring each step's memory from the next row by row, then writes the steps again. A
  sequence's training memory is ``O(B N M + T B K R M)``, not ``O(T B N M)``.
- The least recently used slot comes from a binary min-heap over (last access, slot):
  ``O(log N)`` an access.
- Nothing costs ``O(N)`` per batch: a model keeps its workspaces between calls
  (:class:`Workspaces`), and a sequence started from the zero state (``state=None``) reuses
  one, clearing only the rows, usages and heap places its last call changed (every one of
  them a logged slot), rather than a whole memory. The final state's ``memory`` and
  ``usage`` are the workspace's own tensors; a workspace is reused only when nothing else
  holds them (nor a backward pass still to come), else a new one is made. A state given by
  the caller is copied into a workspace of its own (``O(N)``, as the state is).
- The search (``sam_search.h``, :data:`SAMConfig.search`) is exhaustive below
  :data:`INDEX_FROM` slots: each step's K nearest slots per read head from a scan of the N
  rows (cosine similarity, blocked, the eager :func:`ntm.models.sam.addressing.top_k`'s
  order), ``O(N M)`` a step, exact. From :data:`INDEX_FROM` slots on, an inverted-file index
  per sequence (``sam_index.c``, :mod:`ntm.engines.native.sam_index`) takes its place,
  kept in the workspace and updated in place as the forward pass writes rows: a search
  scores the cells' centroids and scans the rows of the nearest cells (never the rows never
  written), approximate where cells go unprobed. Gradients flow through the read weights of
  the K slots it found, which the log keeps for the backward pass, as with the exact
  search. The backward pass searches nothing and leaves the memory as the forward pass
  left it (each restored row written again), so it leaves the index alone. A fresh
  workspace's indexes are cleared with its rows, in ``O(rows written)`` (and the cells,
  about ``sqrt(N)``); a state given by the caller fills a new index with its non-zero rows,
  each placed by the centroids (cheap for a memory written by a few sequences, ``O(N
  sqrt(N) M)`` for a memory full of rows). The index's cost a step grows about as
  ``sqrt(N)``: its writes and reads score the cells' centroids.

Dimension legend: ``T`` time, ``B`` batch, ``I`` input size, ``L`` controller layers,
``C`` controller size, ``G = 4C`` gate rows, ``R`` read heads, ``K`` slots per read head,
``S = R K + 1`` write entries, ``N`` slots, ``M`` word size, ``P`` interface size.
"""

from __future__ import annotations

import ctypes
import sys
import weakref
from collections import OrderedDict
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ntm.engines.fused import _clip_mask
from ntm.engines.native import _call, _library
from ntm.engines.native.dnc import (
    controller_gradients,
    controller_input_share,
    controller_weights,
    parameter_names,
    runs_natively,
)
from ntm.models.sam.addressing import InterfaceLayout
from ntm.models.sam.config import SAMConfig

#: Batch sizes a model keeps workspaces for, the most recently used: training's and
#: evaluation's.
KEPT_BATCH_SIZES = 2
#: Slots from which ``search="auto"`` uses the index: below, the exhaustive scan of the
#: memory costs less than the index's centroids and upkeep (``benchmarks/memory_scaling.py``
#: measures both in training).
INDEX_FROM = 1024
#: The most K the index answers (``sam_index.h``'s ``SAM_INDEX_MAX_K``).
INDEX_MAX_K = 1024

#: Workspaces kept per batch size: a loop ``outputs, _ = model(x)`` holds the last final
#: state (one workspace) while the next batch runs (on the other).
KEPT_PER_BATCH_SIZE = 2


class _Dims(ctypes.Structure):
    _fields_ = [
        *(
            (name, ctypes.c_int)
            for name in ("T", "B", "L", "C", "R", "N", "W", "K", "P", "fresh", "index")
        ),
        ("eps", ctypes.c_float),
        ("interface_clip", ctypes.c_float),
        ("delta", ctypes.c_float),
    ]


class _ForwardBuffers(NamedTuple):
    """What ``sam_forward`` reads and fills, in the order of its pointer array (the C side's
    enum); ``sam_backward`` takes them again, then its own."""

    pre_input: Tensor  # (T, L, B, G)
    read_weights_t: Tensor  # (L, R*M, G)
    below_weights_t: Tensor  # (L-1, C, G)
    recurrent_weights_t: Tensor  # (L, C, G)
    interface_weight_t: Tensor  # (L*C, P)
    interface_bias: Tensor  # (P,)
    reads: Tensor  # (T+1, B, R*M)
    hidden: Tensor  # (T+1, L, B, C)
    cells: Tensor  # (T+1, L, B, C)
    gates: Tensor  # (T, L, B, G)
    tanh_cells: Tensor  # (T, L, B, C)
    raw: Tensor  # (T, B, P): the interface vector before the clip
    steps: Tensor  # (B,)
    read_weights: Tensor  # (T+1, B, R, K)
    read_indices: Tensor  # (T+1, B, R, K), int64
    least_used: Tensor  # (T, B), int32
    write_weights: Tensor  # (T, B, S)
    old_rows: Tensor  # (T, B, S, M)
    old_norms: Tensor  # (T, B, S)
    memory: Tensor  # (B, N, M): the workspace's, in place
    norms: Tensor  # (B, N)
    usage: Tensor  # (B, N)
    heap: Tensor  # (B, N), int32
    place: Tensor  # (B, N), int32
    indexes: Tensor  # (B,), int64: each sequence's index (a C pointer), 0 until made


#: The log's buffers, those that grow with T (tests count their size).
LOG_FIELDS = ("read_weights", "read_indices", "least_used", "write_weights", "old_rows",
              "old_norms")  # fmt: skip


def uses_index(cfg: SAMConfig) -> bool:
    """Whether the native engine searches ``cfg``'s memory with the index (else exhaustively)."""
    if cfg.search == "auto":
        return cfg.memory_size >= INDEX_FROM and cfg.k <= INDEX_MAX_K
    return cfg.search == "index" and cfg.k <= INDEX_MAX_K


def _free_indexes(indexes: Tensor) -> None:
    """Free the indexes the C side made (``sam_index_new``) for a workspace gone."""
    library = _library()
    for pointer in indexes.tolist():
        if pointer:
            library.sam_index_free(ctypes.c_void_p(pointer))


def _shared_storage(tensor: Tensor) -> bool:
    """Whether another tensor (a view, say) shares ``tensor``'s storage; True where torch
    cannot say."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return count is None or int(count(tensor.untyped_storage()._cdata)) > 2  # with the one asked


class Workspace:
    """One batch's memory and what the engine keeps beside it, changed in place by the
    calls that use it: the memory (B, N, M), its rows' norms, the usages, each sequence's
    heap over them and each slot's place in it, each sequence's index where the search uses
    one (:func:`uses_index`), and the memory's gradient (made at the first backward pass).

    A fresh workspace holds the zero state: zero rows, usages 0, empty heaps (places -1).
    After a call from the zero state it keeps that call's log of slots (:meth:`reset` clears
    them); after one from a given state it is that call's alone."""

    def __init__(self, batch: int, cfg: SAMConfig, memory: Tensor | None = None) -> None:
        n, m = cfg.memory_size, cfg.word_size
        self.fresh = memory is None
        if memory is None:
            self.memory = torch.zeros(batch, n, m)
            self.usage = torch.zeros(batch, n)
            self.place = torch.full((batch, n), -1, dtype=torch.int32)
        else:
            self.memory = memory
            self.usage = torch.zeros(batch, n)
            self.place = torch.empty((batch, n), dtype=torch.int32)
        # sqrt(|row|^2 + eps) in float32, as the C side computes it; zero rows' without a
        # (B, N, M) temporary.
        if memory is None:
            self.norms = torch.full((batch, n), cfg.eps).sqrt_()
        else:
            self.norms = self.memory.pow(2).sum(-1).add_(cfg.eps).sqrt_()
        self.heap = torch.empty((batch, n), dtype=torch.int32)
        self.index = uses_index(cfg)
        # Made by the first call (with the index), freed with the workspace.
        self.indexes = torch.zeros(batch, dtype=torch.int64)
        weakref.finalize(self, _free_indexes, self.indexes)
        self.d_memory: Tensor | None = None
        self._alone = torch.empty(0)  # referenced as memory and usage are when free
        self.log: tuple[_Dims, Tensor, Tensor] | None = None  # the last call's dims, slots

    def free(self) -> bool:
        """Whether nothing but this workspace holds its memory and usage: no reference to
        either tensor but its own (``_alone``, never handed out, counts the same), and no
        other tensor on their storage."""
        alone = sys.getrefcount(self._alone)  # each asked straight from self, as this one
        memory, usage = sys.getrefcount(self.memory), sys.getrefcount(self.usage)
        return (
            memory == alone
            and usage == alone
            and not _shared_storage(self.memory)
            and not _shared_storage(self.usage)
        )

    def buffers(self) -> list[Tensor]:
        return [self.memory, self.norms, self.usage, self.heap, self.place, self.indexes]

    def reset(self) -> None:
        """Back to the zero state: clear the slots the last call changed, and the indexes."""
        if self.log is not None:
            dims, read_indices, least_used = self.log
            unused = torch.zeros(1)
            pointers = [unused] * len(_ForwardBuffers._fields)
            fields = _ForwardBuffers._fields
            pointers[fields.index("read_indices")] = read_indices
            pointers[fields.index("least_used")] = least_used
            pointers[fields.index("memory") :] = self.buffers()
            _call("sam_reset", dims, pointers)
            self.log = None


class Workspaces:
    """A model's workspaces for sequences from the zero state, by batch size: an execution
    resource of the model instance, like a buffer pool, never saved nor copied (a copy
    starts with none)."""

    def __init__(self) -> None:
        self._kept: OrderedDict[int, list[Workspace]] = OrderedDict()

    def __deepcopy__(self, memo: dict[int, Any]) -> Workspaces:
        return Workspaces()

    def __reduce__(self) -> tuple[type[Workspaces], tuple[()]]:
        return (Workspaces, ())

    def fresh(self, batch: int, cfg: SAMConfig) -> Workspace:
        """A workspace in the zero state for ``batch`` sequences: one kept, cleared, where
        nothing else holds it; else a new one (``O(N)``), kept in place of the oldest."""
        shape = (cfg.memory_size, cfg.word_size)
        kept = [w for w in self._kept.pop(batch, [])
                if tuple(w.memory.shape[1:]) == shape and w.index == uses_index(cfg)]  # fmt: skip
        free = next((w for w in kept if w.free()), None)
        if free is None:
            free = Workspace(batch, cfg)
        else:
            free.reset()
            kept.remove(free)
        self._kept[batch] = [*kept, free][-KEPT_PER_BATCH_SIZE:]  # the last used last
        while len(self._kept) > KEPT_BATCH_SIZES:
            self._kept.popitem(last=False)
        return free


def _dims(cfg: SAMConfig, steps: int, batch: int, workspace: Workspace) -> _Dims:
    layout = InterfaceLayout(cfg.num_read_heads, cfg.word_size)
    return _Dims(steps, batch, cfg.controller_layers, cfg.controller_size, cfg.num_read_heads,
                 cfg.memory_size, cfg.word_size, cfg.k, layout.size, int(workspace.fresh),
                 int(workspace.index), cfg.eps, cfg.interface_clip, cfg.delta)  # fmt: skip


def _forward(
    cfg: SAMConfig,
    inputs: Tensor,
    small: tuple[Tensor, ...],
    workspace: Workspace,
    params: tuple[Tensor, ...],
) -> tuple[Any, ...]:
    """The whole sequence forward, without autograd, from the state's small parts
    (``small``: reads, read weights, read slots, steps, hidden, cell) and the memory and
    usage in ``workspace``: logits (T, B, O), the final state, the buffers, the dimensions,
    the output layer's input and the mask of logits inside the output clip."""
    steps, batch, _ = inputs.shape
    layers, size = cfg.controller_layers, cfg.controller_size
    heads, k, word = cfg.num_read_heads, cfg.k, cfg.word_size
    params = tuple(p.detach() for p in params)
    interface_w, interface_b, out_w, out_b = params[4 * layers :]
    x = inputs.detach()
    reads, read_w, read_i, step_count, hidden, cell = (t.detach() for t in small)

    def empty(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.empty(shape, dtype=dtype)

    reads_seq = empty(steps + 1, batch, heads * word)
    reads_seq[0] = reads.reshape(batch, -1)
    hs, cs = empty(steps + 1, layers, batch, size), empty(steps + 1, layers, batch, size)
    hs[0], cs[0] = hidden, cell
    rw, ri = empty(steps + 1, batch, heads, k), empty(steps + 1, batch, heads, k, dtype=torch.int64)
    rw[0], ri[0] = read_w, read_i
    entries = heads * k + 1
    dims = _dims(cfg, steps, batch, workspace)
    buffers = _ForwardBuffers._make([
        controller_input_share(params, layers, x),
        *controller_weights(params, layers, x.shape[-1], heads * word, transposed=True),
        interface_w.t().contiguous(),
        interface_b.contiguous(),
        reads_seq, hs, cs,
        empty(steps, layers, batch, 4 * size),
        empty(steps, layers, batch, size),
        empty(steps, batch, interface_w.shape[0]),
        step_count.contiguous(),
        rw, ri,
        empty(steps, batch, dtype=torch.int32),
        empty(steps, batch, entries),
        empty(steps, batch, entries, word),
        empty(steps, batch, entries),
        *workspace.buffers(),
    ])  # fmt: skip
    _call("sam_forward", dims, buffers)
    if workspace.fresh:
        workspace.log = (dims, ri, buffers.least_used)

    hidden_seq = hs[1:].transpose(1, 2).reshape(steps, batch, layers * size)  # (T, B, L*C)
    out_in = torch.cat([hidden_seq, reads_seq[1:]], -1)
    logits = torch.matmul(out_in, out_w.t()) + out_b
    out_mask = _clip_mask(logits, cfg.output_clip)
    if cfg.output_clip > 0:
        logits = logits.clamp(-cfg.output_clip, cfg.output_clip)
    final = (
        workspace.memory,
        reads_seq[steps].reshape(batch, heads, word).clone(),
        rw[steps].clone(),
        ri[steps].clone(),
        workspace.usage,
        step_count + steps,
        hs[steps].clone(),
        cs[steps].clone(),
    )
    return logits, final, buffers, dims, out_in, out_mask


class _NativeSAM(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, cfg: SAMConfig, workspace: Workspace, inputs: Tensor, *tensors: Tensor
    ) -> tuple[Tensor, ...]:
        memory, small, params = tensors[0], tensors[1:7], tensors[7:]
        logits, final, buffers, dims, out_in, out_mask = _forward(
            cfg, inputs, small, workspace, params
        )
        ctx.cfg = cfg
        ctx.params = params
        ctx.dims = dims
        ctx.wants_memory = not workspace.fresh and memory.requires_grad
        # The memory held until the backward pass: the workspace is not reused before it.
        ctx.saved = (inputs.detach(), buffers, workspace, workspace.memory, out_in, out_mask)
        ctx.version = workspace.memory._version
        ctx.mark_non_differentiable(*final)
        # The final state has no gradient: no (B, N, M) of zeros made for it per batch.
        ctx.set_materialize_grads(False)
        return (logits, *final)

    @staticmethod
    def backward(ctx: Any, d_logits: Tensor | None, *_: Any) -> tuple[Tensor | None, ...]:
        if ctx.saved is None:
            raise RuntimeError(
                "SAM's native engine: backward through the same sequence a second time "
                "(its log is spent); run the sequence again, or use engine='eager'"
            )
        cfg: SAMConfig = ctx.cfg
        inputs, buffers, workspace, memory, out_in, out_mask = ctx.saved
        ctx.saved = None
        if memory._version != ctx.version:
            raise RuntimeError(
                "SAM's native engine: the final state's memory was changed in place before "
                "the backward pass, which restores the earlier memories from it"
            )
        steps, batch, size_in = inputs.shape
        layers, size = cfg.controller_layers, cfg.controller_size
        heads, word = cfg.num_read_heads, cfg.word_size
        params = tuple(p.detach() for p in ctx.params)
        interface_w, _, out_w, _ = params[4 * layers :]
        hidden_size = layers * size

        if d_logits is None:
            d_logits = out_in.new_zeros(steps, batch, out_w.shape[0])
        d_out_pre = d_logits if out_mask is None else d_logits * out_mask
        d_out_in = torch.matmul(d_out_pre, out_w)  # (T, B, L*C + R*M)
        d_hidden = d_out_in[..., :hidden_size].contiguous()
        d_reads_out = d_out_in[..., hidden_size:].contiguous()
        d_raw = inputs.new_empty(steps, batch, interface_w.shape[0])
        d_gates = inputs.new_empty(steps, layers, batch, 4 * size)
        if workspace.fresh:  # zero between calls: the C side clears the rows it touches
            if workspace.d_memory is None:
                workspace.d_memory = torch.zeros_like(workspace.memory)
            d_memory = workspace.d_memory
        else:
            d_memory = torch.zeros_like(workspace.memory)
        zeros = inputs.new_zeros
        carries = [
            d_memory,
            zeros(batch, heads * word),
            zeros(batch, heads, cfg.k),
            zeros(layers, batch, size),
            zeros(layers, batch, size),
        ]
        weights = controller_weights(params, layers, size_in, heads * word, transposed=False)
        _call("sam_backward", ctx.dims, [*buffers, *weights, interface_w.contiguous(), d_hidden,
                                         d_reads_out, d_raw, d_gates, *carries])  # fmt: skip
        grads, d_inputs = controller_gradients(
            params, layers, inputs, buffers.reads, buffers.hidden, d_gates
        )
        hidden_seq = buffers.hidden[1:].transpose(1, 2).reshape(steps, batch, hidden_size)
        flat_raw = d_raw.reshape(-1, d_raw.shape[-1])
        flat_out = d_out_pre.reshape(-1, d_out_pre.shape[-1])
        grads += [flat_raw.t() @ hidden_seq.reshape(-1, hidden_size), flat_raw.sum(0)]
        grads += [flat_out.t() @ out_in.reshape(-1, out_in.shape[-1]), flat_out.sum(0)]
        _, d_reads, d_read_w, d_h, d_c = carries
        return (None, None, d_inputs, d_memory if ctx.wants_memory else None,
                d_reads.reshape(batch, heads, word), d_read_w, None, None, d_h, d_c,
                *grads)  # fmt: skip


def _zero_state(cfg: SAMConfig, batch: int) -> tuple[Tensor, ...]:
    """The small parts of :meth:`ntm.models.sam.model.SAMCell.initial_state` (reads, read
    weights, read slots, steps, hidden, cell), without its memory and usage."""
    hidden = torch.zeros(cfg.controller_layers, batch, cfg.controller_size)
    return (
        torch.zeros(batch, cfg.num_read_heads, cfg.word_size),
        torch.zeros(batch, cfg.num_read_heads, cfg.k),
        torch.arange(cfg.k).expand(batch, cfg.num_read_heads, cfg.k).contiguous(),
        torch.zeros(batch),
        hidden,
        hidden.clone(),
    )


def native_sam_sequence(
    cell: Any, inputs: Tensor, state: Any | None, workspaces: Workspaces
) -> tuple[Tensor, tuple[Tensor, ...]] | None:
    """Run ``cell`` (a :class:`ntm.models.sam.model.SAMCell`) over ``inputs`` (T, B, I)
    natively from ``state`` (a checked :class:`ntm.models.sam.model.SAMState`, or None for
    the zero state, which takes a workspace from ``workspaces``): outputs (T, B, O) and the
    final state's fields, which carry no gradient; None where the native engine cannot run
    it (:func:`ntm.engines.native.dnc.runs_natively`)."""
    cfg: SAMConfig = cell.config
    params = [cell.get_parameter(name) for name in parameter_names(cfg.controller_layers)]
    floats = [] if state is None else [t for t in state if t.is_floating_point()]
    if not runs_natively(inputs, [*floats, *params]):
        return None
    batch = inputs.shape[1]
    if state is None:
        workspace = workspaces.fresh(batch, cfg)
        memory = workspace.memory
        small = _zero_state(cfg, batch)
    else:
        memory = state.memory
        copy = memory.detach().clone(memory_format=torch.contiguous_format)
        workspace = Workspace(batch, cfg, copy)
        workspace.usage.copy_(state.usage)
        small = (state.reads, state.read_weights, state.read_indices.contiguous(), state.steps,
                 state.controller_hidden, state.controller_cell)  # fmt: skip
    tensors = (memory, *small, *params)
    wanted = torch.is_grad_enabled() and any(
        t.requires_grad for t in (inputs, memory, *small, *params)
    )
    if wanted:
        outputs = _NativeSAM.apply(cfg, workspace, inputs, *tensors)  # type: ignore[no-untyped-call]
    else:
        logits, final, *_ = _forward(cfg, inputs, small, workspace, tuple(params))
        outputs = (logits, *final)
    return outputs[0], tuple(outputs[1:])
