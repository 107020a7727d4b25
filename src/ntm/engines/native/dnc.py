"""The DNC's native engine: its recurrence in C (``dnc_sequence.c``), a whole sequence per call.

As :mod:`ntm.engines.native` does for the NTM: the forward pass of a whole sequence is one call
into the native library, the backward pass another. Inside the C recurrence: the LSTM
controller (all but the input's share of its gate inputs), the interface vector's clip and
activations, retention, usage, allocation, content weighting, the write, the temporal links
and precedence, the read weightings and the reads. In PyTorch, as whole-sequence matrix
products: the input's share of every controller layer's gate inputs, the output layer, and
every weight gradient.

It computes the same function as :class:`ntm.DNCCell` stepped in a loop, in float32 on the
CPU; tests compare its outputs and gradients with the eager path's. Gradients flow into the
inputs, the initial state and every parameter; the final state carries none. The forward
pass keeps every step's state for the backward pass only when a gradient is wanted (without
one it keeps two states in turn, and one link matrix that each step updates in place), and
of the link matrices (``B * N * N`` floats a step)
only every :data:`LINK_EVERY`-th state's, from which the backward pass recomputes the rest.

With sparse links (``link_sparsity`` K, 0 < K < N;
:func:`ntm.models.dnc.addressing.sparse_link`) every state's links are lists of each row's K
kept entries (``B * N * K`` values and columns), all of them kept, and a step's links,
directions and backward cost O(N K) instead of O(N^2). The initial state's link matrix must
then have K non-zero entries or fewer in each row and column (as every sparse DNC's does);
with more, the sequence runs eager (the C side finds it when it reads them:
:class:`_TooDenseError`).

Dimension legend: ``T`` time, ``B`` batch, ``I`` input size, ``O`` output size, ``L``
controller layers, ``C`` controller size, ``G = 4C`` gate rows, ``R`` read heads, ``N``
slots, ``M`` word size, ``P`` interface size.
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ntm.engines.fused import _clip_mask
from ntm.engines.native import _call, _stacked, native_available
from ntm.models.dnc.addressing import InterfaceLayout
from ntm.models.dnc.config import DNCConfig

#: The LSTM weights of each controller layer, in the order the engine takes them.
_LAYER_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

#: The forward pass keeps the link matrices of every so many states for the backward pass,
#: which recomputes the others: a quarter of the memory that keeping all would take (B * N * N
#: floats a step), at about the same speed (copy's model, batch 32).
LINK_EVERY = 4


class _Dims(ctypes.Structure):
    _fields_ = [
        *(
            (name, ctypes.c_int)
            for name in ("T", "B", "L", "C", "R", "N", "M", "P", "keep", "link_every", "sparsity")
        ),
        ("part", ctypes.c_int * 10),
        ("eps", ctypes.c_float),
        ("interface_clip", ctypes.c_float),
    ]


class _ForwardBuffers(NamedTuple):
    """What ``dnc_forward`` reads and fills, in the order of its pointer array (the C
    side's enum); ``dnc_backward`` takes them again, then its own. "Per state": T + 1
    entries when the backward pass follows, else 2; "per step": T entries, else 1."""

    pre_input: Tensor  # (T, L, B, G): the input's share of the gate inputs, biases in
    read_weights_t: Tensor  # (L, R*M, G)
    below_weights_t: Tensor  # (L-1, C, G)
    recurrent_weights_t: Tensor  # (L, C, G)
    interface_weight_t: Tensor  # (L*C, P)
    interface_bias: Tensor  # (P,)
    memories: Tensor  # per state (B, M, N)
    reads: Tensor  # (T+1, B, R*M)
    read_weights: Tensor  # per state (B, R, N)
    write_weights: Tensor  # per state (B, N)
    usage: Tensor  # per state (B, N)
    precedence: Tensor  # per state (B, N)
    links: Tensor  # (T+1,) or (2,) int64: the address of each state's links (B, N, N)
    norms: Tensor  # per state (B, N)
    hidden: Tensor  # (T+1, L, B, C)
    cells: Tensor  # per state (L, B, C)
    gates: Tensor  # per step (L, B, G)
    tanh_cells: Tensor  # per step (L, B, C)
    raw: Tensor  # per step (B, P): the interface vector before the clip
    order: Tensor  # per step (B, N), int32: the slots by ascending usage
    allocation: Tensor  # per step (B, N)
    write_cosine: Tensor  # per step (B, N)
    write_content: Tensor  # per step (B, N)
    read_cosine: Tensor  # per step (B, R, N)
    read_content: Tensor  # per step (B, R, N)
    forward: Tensor  # per step (B, R, N)
    backward: Tensor  # per step (B, R, N)
    link_cols: Tensor  # sparse links: per state (B, N, K), int32; else one unused float each
    link_values: Tensor  # per state (B, N, K)
    link_counts: Tensor  # per state (B, N), int32
    link_from: Tensor  # per step (B, N, K), int32


def parameter_names(layers: int) -> list[str]:
    """A :class:`ntm.DNCCell`'s parameters in the order the engine takes them."""
    names = [f"controller.{i}.{name}" for i in range(layers) for name in _LAYER_WEIGHTS]
    return [*names, "interface_layer.weight", "interface_layer.bias",
            "output_layer.weight", "output_layer.bias"]  # fmt: skip


def runs_natively(inputs: Tensor, tensors: list[Tensor]) -> bool:
    """Whether the native engine can run this sequence: inputs, state and parameters all
    float32 on the CPU, and the library built."""
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (inputs, *tensors))
        and native_available() is None
    )


def controller_input_share(params: tuple[Tensor, ...], layers: int, inputs: Tensor) -> Tensor:
    """The input's share of every controller layer's gate inputs, biases in, for all steps
    at once: (T, L, B, G). ``params`` in :func:`parameter_names`' order, detached."""
    size_in = inputs.shape[-1]
    controller = [params[4 * i : 4 * i + 4] for i in range(layers)]
    return torch.stack(
        [
            torch.matmul(inputs, w_ih[:, :size_in].t()) + (b_ih + b_hh)
            for w_ih, _, b_ih, b_hh in controller
        ],
        1,
    )


def controller_weights(
    params: tuple[Tensor, ...], layers: int, size_in: int, read_size: int, transposed: bool
) -> list[Tensor]:
    """The controller's weights the C recurrence takes: of the last reads (L, G, R*M), of
    the layer below (L-1, G, C) and recurrent (L, G, C); ``transposed`` for the forward
    pass's (L, R*M, G), (L-1, C, G), (L, C, G)."""
    controller = [params[4 * i : 4 * i + 4] for i in range(layers)]
    read_end = size_in + read_size

    def turn(w: Tensor) -> Tensor:
        return w.t() if transposed else w

    return [
        torch.stack([turn(w_ih[:, size_in:read_end]) for w_ih, *_ in controller]).contiguous(),
        _stacked([turn(w_ih[:, read_end:]) for w_ih, *_ in controller[1:]], params[0]),
        torch.stack([turn(w_hh) for _, w_hh, *_ in controller]).contiguous(),
    ]


def controller_gradients(
    params: tuple[Tensor, ...],
    layers: int,
    inputs: Tensor,
    reads: Tensor,
    hidden: Tensor,
    d_gates: Tensor,
) -> tuple[list[Tensor], Tensor]:
    """Every controller layer's weight gradients (in :func:`parameter_names`' order) and the
    inputs' gradient, from the gate inputs' gradients d_gates (T, L, B, G), the inputs
    (T, B, I), the reads (T+1, B, R*M) and the hidden states (T+1, L, B, C)."""

    def flat(x: Tensor) -> Tensor:
        return x.reshape(-1, x.shape[-1])

    size_in = inputs.shape[-1]
    grads: list[Tensor] = []
    d_inputs = inputs.new_zeros(inputs.shape)
    for i in range(layers):
        d_gates_i = d_gates[:, i]  # (T, B, G)
        below = [hidden[1:, i - 1]] if i else []
        layer_in = torch.cat([inputs, reads[:-1], *below], -1)
        d_bias = flat(d_gates_i).sum(0)
        grads += [
            flat(d_gates_i).t() @ flat(layer_in),
            flat(d_gates_i).t() @ flat(hidden[:-1, i]),
            d_bias,
            d_bias.clone(),
        ]
        d_inputs += torch.matmul(d_gates_i, params[4 * i][:, :size_in])
    return grads, d_inputs


def link_sparsity(cfg: DNCConfig) -> int:
    """K of the sparse links the engine keeps as lists, or 0 for dense ones: from K = N on,
    the sparse links are the dense ones."""
    return cfg.link_sparsity if cfg.link_sparsity < cfg.memory_size else 0


#: ``dnc_forward``'s status where the initial links are too dense for sparse links' lists.
TOO_DENSE = 3


class _TooDenseError(Exception):
    """The initial state's links have more non-zero entries in a row or a column than the
    sparse links' lists hold: the sequence is for the eager path."""


def _dims(cfg: DNCConfig, steps: int, batch: int, keep: bool) -> _Dims:
    layout = InterfaceLayout(cfg.num_read_heads, cfg.word_size)
    starts = [sum(layout.sizes[:i]) for i in range(len(layout.sizes))]
    return _Dims(steps, batch, cfg.controller_layers, cfg.controller_size, cfg.num_read_heads,
                 cfg.memory_size, cfg.word_size, layout.size, int(keep), LINK_EVERY,
                 link_sparsity(cfg), (ctypes.c_int * 10)(*starts), cfg.eps,
                 cfg.interface_clip)  # fmt: skip


def _addresses(tensors: list[Tensor]) -> Tensor:
    """The tensors' addresses, for a C array of pointers (the caller keeps them alive)."""
    return torch.tensor([t.data_ptr() for t in tensors] or [0], dtype=torch.int64)


def _forward(
    cfg: DNCConfig,
    inputs: Tensor,
    state: tuple[Tensor, ...],
    params: tuple[Tensor, ...],
    keep: bool,
) -> tuple[Any, ...]:
    """The whole sequence forward, without autograd: logits (T, B, O), the final state, the
    buffers, the link matrices they point to, the dimensions, the output layer's input
    (T, B, L*C + R*M) and the mask of logits inside the output clip."""
    steps, batch, size_in = inputs.shape
    layers, size = cfg.controller_layers, cfg.controller_size
    heads, slots, word = cfg.num_read_heads, cfg.memory_size, cfg.word_size
    params = tuple(p.detach() for p in params)
    interface_w, interface_b, out_w, out_b = params[4 * layers :]
    x = inputs.detach()
    pre_input = controller_input_share(params, layers, x)
    states, kept = (steps + 1, steps) if keep else (2, 1)

    def empty(*shape: int) -> Tensor:
        return x.new_empty(shape)

    memory, reads, read_w, write_w, usage, precedence, link, hidden, cell = (
        t.detach() for t in state
    )
    mems = empty(states, batch, word, slots)
    mems[0] = memory.transpose(1, 2)
    reads_seq = empty(steps + 1, batch, heads * word)
    reads_seq[0] = reads.reshape(batch, -1)
    per_state = [empty(states, *t.shape) for t in (read_w, write_w, usage, precedence)]
    for buffer, start in zip(per_state, (read_w, write_w, usage, precedence), strict=True):
        buffer[0] = start
    sparsity = link_sparsity(cfg)
    sparse = [empty(1) for _ in range(4)]  # the sparse links' lists: unused when dense
    if sparsity:  # the initial links, read, and the final ones, written; lists between
        links = {0: link.contiguous(), states - 1: empty(*link.shape)}
        turns: list[Tensor] = []
        link_list = list(links.values())
        sparse = [
            torch.empty((states, batch, slots, sparsity), dtype=torch.int32),
            empty(states, batch, slots, sparsity),
            torch.empty((states, batch, slots), dtype=torch.int32),
            torch.empty((kept, batch, slots, sparsity), dtype=torch.int32),
        ]
    elif keep:  # one tensor per kept state, two for the others in turn (see dnc_sequence.c)
        links = {s: link.clone(memory_format=torch.contiguous_format) if s == 0
                 else empty(*link.shape) for s in range(0, states, LINK_EVERY)}  # fmt: skip
        turns = [empty(*link.shape) for _ in range(2)]
        link_list = [links.get(s, turns[s % 2]) for s in range(states)]
    else:  # one tensor for both states: each step updates the links in place
        links, turns = {0: link.clone(memory_format=torch.contiguous_format)}, []
        link_list = [links[0], links[0]]
    link_table = _addresses(link_list)
    hs = empty(steps + 1, layers, batch, size)
    hs[0] = hidden
    cs = empty(states, layers, batch, size)
    cs[0] = cell
    weights_t = [
        *controller_weights(params, layers, size_in, heads * word, transposed=True),
        interface_w.t().contiguous(),
        interface_b.contiguous(),
    ]
    per_step = [
        empty(kept, layers, batch, 4 * size),
        empty(kept, layers, batch, size),
        empty(kept, batch, interface_w.shape[0]),
        torch.empty((kept, batch, slots), dtype=torch.int32),
        *(empty(kept, batch, slots) for _ in range(3)),
        *(empty(kept, batch, heads, slots) for _ in range(4)),
    ]
    buffers = _ForwardBuffers._make([pre_input, *weights_t, mems, reads_seq, *per_state,
                                     link_table, empty(states, batch, slots), hs, cs,
                                     *per_step, *sparse])  # fmt: skip
    dims = _dims(cfg, steps, batch, keep)
    if _call("dnc_forward", dims, buffers, accept=(TOO_DENSE,)):
        raise _TooDenseError

    hidden_seq = hs[1:].transpose(1, 2).reshape(steps, batch, layers * size)  # (T, B, L*C)
    out_in = torch.cat([hidden_seq, reads_seq[1:]], -1)
    logits = torch.matmul(out_in, out_w.t()) + out_b
    out_mask = _clip_mask(logits, cfg.output_clip)
    if cfg.output_clip > 0:
        logits = logits.clamp(-cfg.output_clip, cfg.output_clip)
    last = steps if keep else steps % 2
    final = (
        mems[last].transpose(1, 2).contiguous(),
        reads_seq[steps].reshape(batch, heads, word).clone(),
        *(buffer[last].clone() for buffer in per_state),
        # made for it: the sparse links' final matrix, or without keep the one updated in place
        link_list[-1] if sparsity or not keep else link_list[last].clone(),
        hs[steps].clone(),
        cs[last].clone(),
    )
    return logits, final, buffers, [*links.values(), *turns], dims, out_in, out_mask


class _NativeDNC(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, cfg: DNCConfig, inputs: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        state, params = tensors[:9], tensors[9:]
        logits, final, buffers, links, dims, out_in, out_mask = _forward(
            cfg, inputs, state, params, keep=True
        )
        ctx.cfg = cfg
        ctx.params = params
        ctx.dims = dims
        ctx.saved = (inputs.detach(), buffers, links, out_in, out_mask)
        ctx.mark_non_differentiable(*final)
        return (logits, *final)

    @staticmethod
    def backward(ctx: Any, d_logits: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        cfg: DNCConfig = ctx.cfg
        inputs, buffers, _, out_in, out_mask = ctx.saved
        steps, batch, size_in = inputs.shape
        layers, size = cfg.controller_layers, cfg.controller_size
        heads, slots, word = cfg.num_read_heads, cfg.memory_size, cfg.word_size
        params = tuple(p.detach() for p in ctx.params)
        interface_w, _, out_w, _ = params[4 * layers :]
        hidden_size = layers * size

        d_out_pre = d_logits if out_mask is None else d_logits * out_mask
        d_out_in = torch.matmul(d_out_pre, out_w)  # (T, B, L*C + R*M)
        d_hidden = d_out_in[..., :hidden_size].contiguous()
        d_reads_out = d_out_in[..., hidden_size:].contiguous()
        d_raw = inputs.new_empty(steps, batch, interface_w.shape[0])
        d_gates = inputs.new_empty(steps, layers, batch, 4 * size)
        zeros = inputs.new_zeros
        carries = [
            zeros(batch, word, slots),
            zeros(batch, heads * word),
            zeros(batch, heads, slots),
            *(zeros(batch, slots) for _ in range(3)),
            zeros(batch, slots, slots),
            zeros(layers, batch, size),
            zeros(layers, batch, size),
        ]
        weights = [
            *controller_weights(params, layers, size_in, heads * word, transposed=False),
            interface_w.contiguous(),
        ]
        dense = ctx.dims.sparsity == 0  # sparse links recompute none
        between = [
            inputs.new_empty(batch, slots, slots) for _ in range(ctx.dims.link_every - 1) if dense
        ]
        _call("dnc_backward", ctx.dims, [*buffers, *weights, d_hidden, d_reads_out, d_raw,
                                         d_gates, _addresses(between), *carries])  # fmt: skip

        def flat(x: Tensor) -> Tensor:
            return x.reshape(-1, x.shape[-1])

        hs, reads_seq = buffers.hidden, buffers.reads
        grads, d_inputs = controller_gradients(params, layers, inputs, reads_seq, hs, d_gates)
        hidden_seq = hs[1:].transpose(1, 2).reshape(steps, batch, hidden_size)
        grads += [flat(d_raw).t() @ flat(hidden_seq), flat(d_raw).sum(0)]
        grads += [flat(d_out_pre).t() @ flat(out_in), flat(d_out_pre).sum(0)]
        d_memory, d_reads, *rest = carries
        return (None, d_inputs, d_memory.transpose(1, 2), d_reads.reshape(batch, heads, word),
                *rest, *grads)  # fmt: skip


def native_dnc_sequence(cell: Any, inputs: Tensor, state: Any) -> tuple[Tensor, Any] | None:
    """Run ``cell`` (an :class:`ntm.DNCCell`) over ``inputs`` (T, B, I) from ``state`` (a
    :class:`ntm.DNCState`) natively: outputs (T, B, O) and the final state (which carries
    no gradient); None where the native engine cannot run it (:func:`runs_natively`; with
    sparse links, initial links too dense for them)."""
    params = [cell.get_parameter(name) for name in parameter_names(cell.config.controller_layers)]
    if not runs_natively(inputs, [*state, *params]):
        return None
    wanted = torch.is_grad_enabled() and any(t.requires_grad for t in (inputs, *state, *params))
    try:
        if wanted:
            outputs = _NativeDNC.apply(cell.config, inputs, *state, *params)  # type: ignore[no-untyped-call]
        else:
            logits, final, *_ = _forward(cell.config, inputs, tuple(state), tuple(params), False)
            outputs = (logits, *final)
    except _TooDenseError:
        return None
    return outputs[0], type(state)(*outputs[1:])
