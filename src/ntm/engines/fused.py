"""A fused NTM sequence: one autograd node for a whole sequence, with a hand-written backward.

Eager PyTorch spends most of an NTM step on per-operation overhead: a step is a few hundred
tiny operations forward and backward, each recorded by autograd. Here the forward pass runs
without autograd and keeps only what the backward pass needs; the backward pass walks the
sequence in reverse with the derivatives written out, and the weight gradients of the
controller, head and output layers are formed after the loop as one matrix product over
all time steps. It computes the same function as :class:`ntm.NTMCell` stepped in a loop;
tests compare outputs and gradients with the eager path.

Gradients flow into the inputs, the initial state and every parameter; the final state is
returned without gradient (training never needs it).

Dimension legend: ``T`` time, ``B`` batch, ``I`` input size, ``O`` output size,
``R``/``W`` read/write heads, ``H`` heads of either kind, ``N`` slots, ``M`` word size,
``S`` shift offsets, ``L`` controller layers, ``C`` controller size, ``P`` head parameters.

Inside the fused path the memory is held transposed, (B, M, N): with the slots innermost,
every pass over the memory runs along 128 contiguous slots (whole vector registers) rather
than along words of 20, which measured 1.5x faster compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ntm.models.ntm.config import NTMConfig
from ntm.models.ntm.layout import (
    CONTROLLER_LAYER_WEIGHTS,
    HeadLayout,
    HeadParameters,
    WriteVectors,
    cell_weight_names,
    softmax_backward,
)


@dataclass(frozen=True)
class _Spec:
    config: NTMConfig
    layout: HeadLayout
    broadcast: bool  # small batched products as multiply-and-sum (for compiled steps)
    graphs: bool = False  # compiled steps replayed as CUDA graphs (see _step_functions)

    @property
    def lstm(self) -> bool:
        return self.config.controller == "lstm"


def _bmm(a: Tensor, b: Tensor, broadcast: bool) -> Tensor:
    """Batched ``a @ b`` over tiny matrices. Compiled, a multiply-and-sum fuses into one loop,
    where a library call per product costs more than the arithmetic."""
    if broadcast:
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)
    return torch.matmul(a, b)


def _clip_mask(x: Tensor, bound: float) -> Tensor | None:
    return (x.abs() <= bound).to(x.dtype) if bound > 0 else None


def _rolled(weights: Tensor, k: int, sign: int) -> Tensor:
    """Stack of ``roll(weights, sign * (j - k))`` for j in 0..2k: (B, H, S, N)."""
    return torch.stack([torch.roll(weights, sign * (j - k), -1) for j in range(2 * k + 1)], -2)


def _address_forward(
    memory: Tensor, previous: Tensor, params: HeadParameters, eps: float, broadcast: bool
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The addressing of ``ntm.models.ntm.addressing.address`` with a head's activated
    parameters."""
    key, strength, gate, shift_weights, gamma = params
    key_norm = torch.sqrt(key.pow(2).sum(-1) + eps)  # (B, H)
    row_norm = torch.sqrt(memory.pow(2).sum(1) + eps)  # (B, N)
    cosine = _bmm(key, memory, broadcast) / (key_norm.unsqueeze(-1) * row_norm.unsqueeze(1))
    content = torch.softmax(strength.unsqueeze(-1) * cosine, -1)
    g = gate.unsqueeze(-1)
    gated = g * content + (1.0 - g) * previous
    k = shift_weights.shape[-1] // 2
    shifted = _bmm(shift_weights.unsqueeze(-2), _rolled(gated, k, 1), broadcast).squeeze(-2)
    log_shifted = torch.log(shifted + eps)
    weights = torch.softmax(gamma.unsqueeze(-1) * log_shifted, -1)
    saved = (key_norm, row_norm, cosine, content, previous, gated, shifted, log_shifted, weights)
    return weights, saved


def _address_backward(
    grad: Tensor,
    memory: Tensor,
    params: HeadParameters,
    saved: tuple[Tensor, ...],
    eps: float,
    broadcast: bool,
) -> tuple[Tensor, Tensor, HeadParameters]:
    """Gradients of the addressing: memory (B, M, N), previous weights (B, H, N), and the
    head's addressing parameters."""
    key, strength, gate, shift_weights, gamma = params
    (key_norm, row_norm, cosine, content, previous, gated, shifted, log_shifted,
     weights) = saved  # fmt: skip
    k = shift_weights.shape[-1] // 2
    # Sharpening: w = softmax(gamma * log(w~ + eps)).
    d_logits = softmax_backward(grad, weights)
    d_gamma = (d_logits * log_shifted).sum(-1)
    d_shifted = d_logits * gamma.unsqueeze(-1) / (shifted + eps)
    # Shift: w~(i) = sum_j s_j w_g(i - (j - K)).
    d_gated = _bmm(shift_weights.unsqueeze(-2), _rolled(d_shifted, k, -1), broadcast).squeeze(-2)
    d_shift = _bmm(_rolled(gated, k, 1), d_shifted.unsqueeze(-1), broadcast).squeeze(-1)
    # Interpolation.
    g = gate.unsqueeze(-1)
    d_content = g * d_gated
    d_previous = (1.0 - g) * d_gated
    d_gate = (d_gated * (content - previous)).sum(-1)
    # Content: softmax(strength * cosine).
    d_scores = softmax_backward(d_content, content)
    d_strength = (d_scores * cosine).sum(-1)
    d_cosine = d_scores * strength.unsqueeze(-1)
    denominator = key_norm.unsqueeze(-1) * row_norm.unsqueeze(1)  # (B, H, N)
    d_dots = d_cosine / denominator
    d_cos_cos = d_cosine * cosine
    d_key_norm = -d_cos_cos.sum(-1) / key_norm  # (B, H)
    d_row_norm = -d_cos_cos.sum(1) / row_norm  # (B, N)
    d_key = _bmm(d_dots, memory.transpose(1, 2), broadcast)
    d_key = d_key + (d_key_norm / key_norm).unsqueeze(-1) * key
    d_memory = _bmm(key.transpose(1, 2), d_dots, broadcast)  # (B, M, N)
    d_memory = d_memory + (d_row_norm / row_norm).unsqueeze(1) * memory
    return d_memory, d_previous, HeadParameters(d_key, d_strength, d_gate, d_shift, d_gamma)


def _exclusive_products(keep: Tensor) -> Tensor:
    """For each head h, the product of ``keep`` over all other heads: (B, W, M, N)."""
    ones = torch.ones_like(keep[:, :1])
    before = torch.cumprod(torch.cat([ones, keep[:, :-1]], 1), 1)
    after = torch.cumprod(torch.cat([ones, keep.flip(1)[:, :-1]], 1), 1).flip(1)
    return before * after


class _StepSaved(NamedTuple):
    """What one step's forward pass keeps for its backward pass."""

    prev_reads: Tensor  # (B, R*M): the reads the controller saw
    layers: tuple[tuple[Tensor, ...], ...]  # per layer: its input first (LSTM: then h, c, gates)
    head_mask: Tensor | None
    read_raw: Tensor
    write_raw: Tensor
    read_params: Any
    write_params: Any
    read_saved: tuple[Tensor, ...]
    write_saved: tuple[Tensor, ...]
    write_weights: Tensor  # (B, W, N)
    read_weights: Tensor  # (B, R, N)
    erase: Tensor
    add: Tensor


def _forward_step(
    spec: _Spec,
    ctrl: tuple[tuple[Tensor, ...], ...],
    head_w: Tensor,
    head_b: Tensor,
    read_w: Tensor,
    pre_input: Tensor,
    memory: Tensor,
    reads: Tensor,
    read_weights: Tensor,
    write_weights: Tensor,
    h: tuple[Tensor, ...],
    c: tuple[Tensor, ...],
) -> tuple[Any, ...]:
    """One NTM step without autograd. Returns the new state, the controller output and
    what the backward step needs."""
    cfg = spec.config
    batch = memory.shape[0]
    m, eps, pr = cfg.word_size, cfg.eps, spec.layout.read_size
    prev_reads = reads.reshape(batch, cfg.num_read_heads * m)
    layer_saved: list[tuple[Tensor, ...]] = []
    new_h, new_c = [], []
    x = prev_reads
    for i, layer in enumerate(ctrl):
        if i == 0:
            pre = pre_input + torch.matmul(x, read_w.t())
        else:
            bias = layer[2] + layer[3] if spec.lstm else layer[1]
            pre = torch.addmm(bias, x, layer[0].t())
        if spec.lstm:
            gates = pre + torch.matmul(h[i], layer[1].t())
            gi, gf, gg, go = gates.chunk(4, 1)
            gi, gf, go = torch.sigmoid(gi), torch.sigmoid(gf), torch.sigmoid(go)
            gg = torch.tanh(gg)
            c_new = gf * c[i] + gi * gg
            tanh_c = torch.tanh(c_new)
            h_new = go * tanh_c
            layer_saved.append((x, h[i], c[i], gi, gf, gg, go, tanh_c))
            new_h.append(h_new)
            new_c.append(c_new)
            x = h_new
        else:
            x_new = torch.tanh(pre)
            layer_saved.append((x, x_new))
            x = x_new
    top = x
    raw = torch.addmm(head_b, torch.cat([top, prev_reads], -1), head_w.t())
    head_mask = _clip_mask(raw, cfg.head_clip)
    if cfg.head_clip > 0:
        raw = raw.clamp(-cfg.head_clip, cfg.head_clip)
    read_raw, write_raw = torch.split(
        raw, [cfg.num_read_heads * pr, raw.shape[1] - cfg.num_read_heads * pr], -1
    )
    read_raw = read_raw.reshape(batch, cfg.num_read_heads, pr)
    write_raw = write_raw.reshape(batch, cfg.num_write_heads, spec.layout.write_size)
    read_params, write_params = spec.layout.activate(read_raw), spec.layout.activate(write_raw)
    write_weights, write_saved = _address_forward(
        memory, write_weights, write_params, eps, spec.broadcast
    )
    erase, add = spec.layout.write_vectors(write_raw)
    keep = 1.0 - write_weights.unsqueeze(-2) * erase.unsqueeze(-1)  # (B, W, M, N)
    kept = keep[:, 0] if keep.shape[1] == 1 else keep.prod(1)
    new_memory = memory * kept + _bmm(add.transpose(1, 2), write_weights, spec.broadcast)
    read_weights, read_saved = _address_forward(
        new_memory, read_weights, read_params, eps, spec.broadcast
    )
    reads = _bmm(read_weights, new_memory.transpose(1, 2), spec.broadcast)
    saved = _StepSaved(prev_reads, tuple(layer_saved), head_mask, read_raw, write_raw,
                       read_params, write_params, read_saved, write_saved, write_weights,
                       read_weights, erase, add)  # fmt: skip
    state = (new_memory, reads, read_weights, write_weights, tuple(new_h), tuple(new_c))
    return state, top, saved


def _backward_step(
    spec: _Spec,
    ctrl: tuple[tuple[Tensor, ...], ...],
    head_w: Tensor,
    read_w: Tensor,
    saved: _StepSaved,
    memory_old: Tensor,
    memory_new: Tensor,
    d_top_out: Tensor,
    d_reads_out: Tensor,
    d_memory: Tensor,
    d_reads_next: Tensor,
    d_read_w_next: Tensor,
    d_write_w_next: Tensor,
    d_h: tuple[Tensor, ...],
    d_c: tuple[Tensor, ...],
) -> tuple[Any, ...]:
    """Gradients through one step, given those flowing back from later steps."""
    cfg = spec.config
    batch = memory_old.shape[0]
    m, eps = cfg.word_size, cfg.eps
    size = cfg.controller_size
    (_, layer_saved, head_mask, read_raw, write_raw, read_params, write_params, read_saved,
     write_saved, write_w, read_weights, erase, add) = saved  # fmt: skip
    # Read: r = w_r M_t.
    d_reads = d_reads_out + d_reads_next
    d_read_w = _bmm(d_reads, memory_new, spec.broadcast) + d_read_w_next
    d_memory = d_memory + _bmm(d_reads.transpose(1, 2), read_weights, spec.broadcast)
    d_mem_addr, d_read_w_prev, d_read_params = _address_backward(
        d_read_w, memory_new, read_params, read_saved, eps, spec.broadcast
    )
    d_read_raw = spec.layout.backward(read_raw, read_params, d_read_params)
    d_memory = d_memory + d_mem_addr
    # Write: M_t = M_{t-1} * prod(1 - w e) + sum w^T a.
    keep = 1.0 - write_w.unsqueeze(-2) * erase.unsqueeze(-1)  # (B, W, M, N)
    d_keep = (d_memory * memory_old).unsqueeze(1)  # (B, 1, M, N)
    if cfg.num_write_heads == 1:
        kept = keep[:, 0]
    else:
        kept = keep.prod(1)
        d_keep = d_keep * _exclusive_products(keep)
    d_write_w = _bmm(add, d_memory, spec.broadcast)  # (B, W, N)
    d_write_w = d_write_w - (d_keep * erase.unsqueeze(-1)).sum(-2) + d_write_w_next
    d_erase = -(d_keep * write_w.unsqueeze(-2)).sum(-1)  # (B, W, M)
    d_add = _bmm(write_w, d_memory.transpose(1, 2), spec.broadcast)  # (B, W, M)
    d_memory = d_memory * kept
    d_mem_addr, d_write_w_prev, d_write_params = _address_backward(
        d_write_w, memory_old, write_params, write_saved, eps, spec.broadcast
    )
    d_memory = d_memory + d_mem_addr
    d_write_raw = spec.layout.backward(
        write_raw,
        write_params,
        d_write_params,
        WriteVectors(erase, add),
        WriteVectors(d_erase, d_add),
    )
    d_raw = torch.cat([d_read_raw.reshape(batch, -1), d_write_raw.reshape(batch, -1)], -1)
    if head_mask is not None:
        d_raw = d_raw * head_mask
    d_head_in = torch.matmul(d_raw, head_w)  # (B, C + R*M)
    d_prev_reads = d_head_in[:, size:]
    # Controller, top layer first.
    d_x = d_top_out + d_head_in[:, :size]
    new_d_h, new_d_c = list(d_h), list(d_c)
    d_gates_per_layer = []
    for i in reversed(range(len(ctrl))):
        if spec.lstm:
            _, _, c_prev, gi, gf, gg, go, tanh_c = layer_saved[i]
            d_hi = d_x + d_h[i]
            d_ci = d_c[i] + d_hi * go * (1.0 - tanh_c * tanh_c)
            d_gates = torch.cat(
                [
                    d_ci * gg * gi * (1.0 - gi),
                    d_ci * c_prev * gf * (1.0 - gf),
                    d_ci * gi * (1.0 - gg * gg),
                    d_hi * tanh_c * go * (1.0 - go),
                ],
                -1,
            )
            new_d_c[i] = d_ci * gf
            new_d_h[i] = torch.matmul(d_gates, ctrl[i][1])
        else:
            x_new = layer_saved[i][1]
            d_gates = d_x * (1.0 - x_new * x_new)
        d_gates_per_layer.append(d_gates)
        if i > 0:
            d_x = torch.matmul(d_gates, ctrl[i][0])
        else:
            d_prev_reads = d_prev_reads + torch.matmul(d_gates, read_w)
    carries = (
        d_memory,
        d_prev_reads.reshape(batch, cfg.num_read_heads, m),
        d_read_w_prev,
        d_write_w_prev,
        tuple(new_d_h),
        tuple(new_d_c),
    )
    return carries, d_raw, tuple(d_gates_per_layer[::-1])


def _forward_steps(
    spec: _Spec,
    ctrl: tuple[tuple[Tensor, ...], ...],
    head_w: Tensor,
    head_b: Tensor,
    read_w: Tensor,
    pre_inputs: Tensor,
    state: tuple[Any, ...],
) -> tuple[Any, ...]:
    """``len(pre_inputs)`` steps in a row: the final state, and per step (memory, reads,
    controller output, saved). Compiled, a chunk of steps is one call instead of several."""
    per_step = []
    for t in range(pre_inputs.shape[0]):
        state, top, saved = _forward_step(spec, ctrl, head_w, head_b, read_w, pre_inputs[t], *state)
        per_step.append((state[0], state[1], top, saved))
    return state, tuple(per_step)


def _backward_steps(
    spec: _Spec,
    ctrl: tuple[tuple[Tensor, ...], ...],
    head_w: Tensor,
    read_w: Tensor,
    saved: tuple[_StepSaved, ...],
    memories: tuple[Tensor, ...],
    d_top_out: Tensor,
    d_reads_out: Tensor,
    carries: tuple[Any, ...],
) -> tuple[Any, ...]:
    """The backward steps of a chunk of ``len(saved)`` steps, last step first; ``memories``
    holds the chunk's ``len(saved) + 1`` memories. Returns the carries into the step before
    the chunk and, per step in time order, (head-parameter gradient, controller gates)."""
    per_step = []
    for j in reversed(range(len(saved))):
        carries, d_raw, d_gates = _backward_step(
            spec, ctrl, head_w, read_w, saved[j], memories[j], memories[j + 1],
            d_top_out[j], d_reads_out[j], *carries,
        )  # fmt: skip
        per_step.append((d_raw, d_gates))
    return carries, tuple(per_step[::-1])


#: Steps per call of the step functions. Compiled, each call has a fixed cost (guards,
#: wrapper, allocation of its outputs) that a chunk of steps pays once; 4 measured best of
#: 1, 2, 4 and 8 (8 compiles much longer for no further gain). Sequences are cut into
#: chunks of this many steps and single steps for the rest.
CHUNK = 4

#: The step functions compiled with ``torch.compile``, made at first use and shared by
#: every model that runs compiled (a cache: no model's choice affects another's).
_COMPILED: dict[str, Any] = {}

#: Sequences begun on CUDA graphs so far. The graphs' memory is one for the process (as
#: torch's generations are), so a sequence's backward pass must come before the next
#: sequence's forward pass; torch does not always notice when it does not.
_GRAPH_SEQUENCES = [0]

#: The Dynamo setting the compiled steps raise: each model and batch size is a new graph,
#: and the default limit of 8 is soon reached.
RECOMPILE_LIMIT = "recompile_limit"


def _chunks(steps: int, chunk: int) -> list[tuple[int, int]]:
    """(start, stop) of the chunks covering ``range(steps)``: full chunks, then single steps.
    Two shapes per batch size, so a compiled step function builds two graphs at most."""
    full = steps - steps % chunk
    singles = [(t, t + 1) for t in range(full, steps)]
    return [(t, t + chunk) for t in range(0, full, chunk)] + singles


def _step_functions(spec: _Spec) -> tuple[Any, Any]:
    """The forward and backward step functions: plain, or compiled with ``torch.compile``.

    The compiled steps see fixed shapes and no autograd, so each batch size compiles one
    forward and one backward graph, whatever the sequence lengths; Inductor's cache on disk
    makes later processes start faster. With ``spec.graphs`` (on CUDA) they compile in
    ``reduce-overhead`` mode: each call replays a captured CUDA graph, one launch where the
    step has hundreds of kernels. A sequence's calls are one generation of graphs (see
    :class:`_FusedSequence`), so outputs kept for the backward pass stay valid.
    """
    if not spec.broadcast:
        return _forward_steps, _backward_steps
    mode = "reduce-overhead" if spec.graphs else "default"
    if mode not in _COMPILED:
        setattr(torch._dynamo.config, RECOMPILE_LIMIT, 64)
        _COMPILED[mode] = tuple(
            torch.compile(steps, dynamic=False, fullgraph=True, mode=mode)
            for steps in (_forward_steps, _backward_steps)
        )
    return _COMPILED[mode]  # type: ignore[no-any-return]


def compiled_available() -> str | None:
    """None when the compiled steps work here; otherwise why not (no C++ compiler, or a
    torch whose Dynamo lacks the setting they need)."""
    if "available" not in _COMPILED:
        _COMPILED["available"] = _compile_problem()
    return _COMPILED["available"]  # type: ignore[no-any-return]


def _compile_problem() -> str | None:
    # A setting of torch's, present in the releases the compiled steps were written for.
    if not hasattr(torch._dynamo.config, RECOMPILE_LIMIT):
        return f"torch {torch.__version__} has no torch._dynamo.config.{RECOMPILE_LIMIT}"
    try:
        probe = torch.compile(lambda x: torch.tanh(x) * 2.0 + 1.0, fullgraph=True)
        probe(torch.ones(3))
    except Exception as error:  # any failure of the compiler stack means: do without
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


def _split_params(spec: _Spec, params: tuple[Tensor, ...]) -> tuple[Any, ...]:
    """The weights in :func:`ntm.models.ntm.layout.cell_weight_names`'s order, grouped for
    the steps."""
    per_layer = len(CONTROLLER_LAYER_WEIGHTS[spec.config.controller])
    layers = spec.config.controller_layers
    params = tuple(p.detach() for p in params)  # plain tensors: the steps run without autograd
    ctrl = tuple(tuple(params[i * per_layer : (i + 1) * per_layer]) for i in range(layers))
    head_w, head_b, out_w, out_b = params[layers * per_layer :]
    first_w = ctrl[0][0]
    input_w, read_w = first_w[:, : spec.config.input_size], first_w[:, spec.config.input_size :]
    return ctrl, head_w, head_b, out_w, out_b, input_w, read_w


def input_projection(
    spec: _Spec, ctrl: tuple[tuple[Tensor, ...], ...], input_w: Tensor, inputs: Tensor
) -> Tensor:
    """The first controller layer's inputs' part of its gate inputs, biases included, over
    all steps at once: (T, B, 4C or C)."""
    first_bias = ctrl[0][2] + ctrl[0][3] if spec.lstm else ctrl[0][1]
    return torch.matmul(inputs.detach(), input_w.t()) + first_bias


def output_layer(
    cfg: NTMConfig, top_seq: Tensor, reads_all: Tensor, out_w: Tensor, out_b: Tensor
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The output layer over all steps at once: logits (T, B, O), its input (T, B, C + R*M)
    and the mask of logits inside the output clip (None without one)."""
    out_in = torch.cat([top_seq, reads_all], -1)
    logits = torch.matmul(out_in, out_w.t()) + out_b
    out_mask = _clip_mask(logits, cfg.output_clip)
    if cfg.output_clip > 0:
        logits = logits.clamp(-cfg.output_clip, cfg.output_clip)
    return logits, out_in, out_mask


def output_backward(
    cfg: NTMConfig, d_logits: Tensor, out_mask: Tensor | None, out_w: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The output layer's backward: the gradient of its pre-clip logits (T, B, O), and those
    of the controller outputs (T, B, C) and the reads (T, B, R*M) that fed it."""
    d_out_pre = d_logits if out_mask is None else d_logits * out_mask
    d_out_in = torch.matmul(d_out_pre, out_w)  # (T, B, C + R*M)
    size = cfg.controller_size
    return d_out_pre, d_out_in[..., :size], d_out_in[..., size:]


def weight_gradients(
    spec: _Spec,
    input_w: Tensor,
    inputs: Tensor,
    prev_reads: Tensor,
    layer_inputs: list[Tensor],
    hidden_prev: list[Tensor],
    d_gates: list[Tensor],
    d_raw: Tensor,
    top_seq: Tensor,
    d_out_pre: Tensor,
    out_in: Tensor,
) -> tuple[list[Tensor | None], Tensor]:
    """Every weight's gradient, one matrix product over all time steps per matrix, in
    :func:`ntm.models.ntm.layout.cell_weight_names`'s order, and the inputs' gradient (T, B, I).

    Per step (all (T, B, ...)): ``prev_reads`` the reads each step started from, the inputs
    of controller layers 1.. (``layer_inputs``), each LSTM layer's previous hidden state
    (``hidden_prev``, empty for a feedforward controller), the gradients of each layer's
    gate inputs (``d_gates``) and of the head parameters (``d_raw``), the controller's
    output, and the output layer's pre-clip gradient and input."""

    def flat(x: Tensor) -> Tensor:
        return x.reshape(-1, x.shape[-1])

    grads: list[Tensor | None] = []
    d_inputs = torch.matmul(d_gates[0], input_w)
    for i, d_gates_i in enumerate(d_gates):
        d_gates_all = flat(d_gates_i)  # (T*B, 4C or C)
        layer_in = torch.cat([inputs, prev_reads], -1) if i == 0 else layer_inputs[i - 1]
        d_weight = d_gates_all.t() @ flat(layer_in)
        d_bias = d_gates_all.sum(0)
        if spec.lstm:
            grads += [d_weight, d_gates_all.t() @ flat(hidden_prev[i]), d_bias, d_bias.clone()]
        else:
            grads += [d_weight, d_bias]
    d_raw_all = flat(d_raw)  # (T*B, P)
    head_in = torch.cat([top_seq, prev_reads], -1)
    grads += [d_raw_all.t() @ flat(head_in), d_raw_all.sum(0)]
    grads += [flat(d_out_pre).t() @ flat(out_in), flat(d_out_pre).sum(0)]
    return grads, d_inputs


class _FusedSequence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        spec: _Spec,
        inputs: Tensor,
        memory: Tensor,
        reads: Tensor,
        read_weights: Tensor,
        write_weights: Tensor,
        hidden: Tensor,
        cell: Tensor,
        *params: Tensor,
    ) -> tuple[Tensor, ...]:
        cfg = spec.config
        steps, batch, _ = inputs.shape
        ctrl, head_w, head_b, out_w, out_b, input_w, read_w = _split_params(spec, params)
        pre_input = input_projection(spec, ctrl, input_w, inputs)
        forward_steps, _ = _step_functions(spec)
        if spec.graphs:
            # A new generation of CUDA graphs: the last sequence's outputs may be reused.
            # Within this sequence (forward, then backward) each call's outputs stay valid.
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
            _GRAPH_SEQUENCES[0] += 1
        ctx.sequence = _GRAPH_SEQUENCES[0]
        # Detached: plain tensors in, as the steps run without autograd.
        state = (memory.detach().transpose(1, 2).contiguous(), reads.detach(),
                 read_weights.detach(), write_weights.detach(),
                 tuple(hidden.detach().unbind(0)), tuple(cell.detach().unbind(0)))  # fmt: skip
        memories, reads_seq, tops, saved_steps = [state[0]], [], [], []
        for start, stop in _chunks(steps, CHUNK):
            state, per_step = forward_steps(
                spec, ctrl, head_w, head_b, read_w, pre_input[start:stop], state
            )
            for memory_t, reads_t, top, saved in per_step:
                memories.append(memory_t)
                reads_seq.append(reads_t)
                tops.append(top)
                saved_steps.append(saved)
        top_seq = torch.stack(tops)  # (T, B, C)
        reads_all = torch.stack(reads_seq).reshape(steps, batch, -1)  # (T, B, R*M)
        logits, out_in, out_mask = output_layer(cfg, top_seq, reads_all, out_w, out_b)

        ctx.spec = spec
        ctx.params = params
        ctx.saved = (inputs, memories, top_seq, out_in, out_mask, saved_steps)
        memory, reads, read_weights, write_weights, h, c = state
        if spec.lstm:
            hidden, cell = torch.stack(h), torch.stack(c)
        else:
            hidden, cell = hidden.clone(), cell.clone()
        final: tuple[Tensor, ...] = (memory.transpose(1, 2).contiguous(), reads, read_weights,
                                     write_weights, hidden, cell)  # fmt: skip
        if spec.graphs:  # leaves the sequence: out of the graphs' memory, reused next time
            final = tuple(t.clone() for t in final)
        ctx.mark_non_differentiable(*final)
        return (logits, *final)

    @staticmethod
    def backward(ctx: Any, d_logits: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        spec: _Spec = ctx.spec
        if spec.graphs and ctx.sequence != _GRAPH_SEQUENCES[0]:
            raise RuntimeError(
                "the compiled engine on CUDA replays CUDA graphs, which reuse their memory "
                "at each new sequence: this sequence's backward pass came after another "
                "sequence's forward pass, whose graphs overwrote what it saved. Call "
                "backward before the next forward, or use engine='fused'"
            )
        cfg = spec.config
        inputs, memories, top_seq, out_in, out_mask, saved_steps = ctx.saved
        ctrl, head_w, _, out_w, _, input_w, read_w = _split_params(spec, ctx.params)
        steps, batch, _ = inputs.shape
        size = cfg.controller_size
        num_read = cfg.num_read_heads

        d_out_pre, d_top_out, d_reads_out = output_backward(cfg, d_logits, out_mask, out_w)
        d_reads_out = d_reads_out.reshape(steps, batch, num_read, cfg.word_size)
        zeros = d_logits.new_zeros(batch, size)
        carries = (
            torch.zeros_like(memories[0]),
            torch.zeros_like(d_reads_out[0]),
            torch.zeros_like(saved_steps[0].read_weights),
            torch.zeros_like(saved_steps[0].write_weights),
            tuple(zeros for _ in ctrl) if spec.lstm else (),
            tuple(zeros for _ in ctrl) if spec.lstm else (),
        )
        _, backward_steps = _step_functions(spec)
        d_raw_seq: list[Tensor] = []
        d_gates_seq: list[tuple[Tensor, ...]] = []
        for start, stop in reversed(_chunks(steps, CHUNK)):
            carries, per_step = backward_steps(
                spec, ctrl, head_w, read_w, tuple(saved_steps[start:stop]),
                tuple(memories[start : stop + 1]), d_top_out[start:stop],
                d_reads_out[start:stop], carries,
            )  # fmt: skip
            for d_raw, d_gates in reversed(per_step):
                d_raw_seq.append(d_raw)
                d_gates_seq.append(d_gates)
        d_raw_seq.reverse()
        d_gates_seq.reverse()

        prev_reads = torch.stack([saved.prev_reads for saved in saved_steps])  # (T, B, R*M)
        layer_inputs = [torch.stack([saved.layers[i][0] for saved in saved_steps])
                        for i in range(1, len(ctrl))]  # fmt: skip
        hidden_prev = (
            [torch.stack([saved.layers[i][1] for saved in saved_steps]) for i in range(len(ctrl))]
            if spec.lstm
            else []
        )
        d_gates = [torch.stack([g[i] for g in d_gates_seq]) for i in range(len(ctrl))]
        grads, d_inputs = weight_gradients(
            spec, input_w, inputs, prev_reads, layer_inputs, hidden_prev, d_gates,
            torch.stack(d_raw_seq), top_seq, d_out_pre, out_in,
        )  # fmt: skip
        d_memory, d_reads, d_read_w, d_write_w, d_h, d_c = carries
        d_hidden = torch.stack(d_h) if spec.lstm else None
        d_cell = torch.stack(d_c) if spec.lstm else None
        d_memory = d_memory.transpose(1, 2)
        if spec.graphs:  # the initial state's gradients outlive the graphs' memory
            d_memory, d_reads, d_read_w, d_write_w = (
                t.clone() for t in (d_memory, d_reads, d_read_w, d_write_w)
            )
        return (None, d_inputs, d_memory, d_reads, d_read_w, d_write_w, d_hidden, d_cell, *grads)


def cell_spec(cell: Any, compiled: bool, graphs: bool = False) -> tuple[_Spec, list[Tensor]]:
    """The spec of ``cell`` (an :class:`ntm.NTMCell`) and its weights in the fused order;
    ``graphs``: compiled steps replayed as CUDA graphs."""
    cfg = cell.config
    spec = _Spec(cfg, HeadLayout(cfg.word_size, cfg.shift_range), broadcast=compiled,
                 graphs=compiled and graphs)  # fmt: skip
    names = cell_weight_names(cfg.controller, cfg.controller_layers)
    return spec, [cell.get_parameter(name) for name in names]


def fused_sequence(
    cell: Any, inputs: Tensor, state: Any, compiled: bool = False
) -> tuple[Tensor, Any]:
    """Run ``cell`` (an :class:`ntm.NTMCell`) over ``inputs`` (T, B, I) in one fused node;
    ``compiled``: with the step functions compiled by ``torch.compile``, and on CUDA
    replayed as CUDA graphs (the backward pass of a sequence must then come before the next
    sequence's forward pass, as in training; a RuntimeError says so if it does not).

    Returns outputs (T, B, O) and the final :class:`ntm.NTMState` (without gradient).
    """
    spec, params = cell_spec(cell, compiled, graphs=inputs.is_cuda)
    outputs = _FusedSequence.apply(spec, inputs, *state, *params)  # type: ignore[no-untyped-call]
    return outputs[0], type(state)(*outputs[1:])
