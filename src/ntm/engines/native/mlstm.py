"""The mLSTM's matrix memory in its parallel form, stabilised, in C.

:func:`mlstm_parallel` computes what the ``xlstm`` package's ``parallel_stabilized_simple``
computes from queries, keys and values and the input and forget gates' pre-activations:
each step's read of the matrix memory, every earlier step's key and value weighted by its
input gate and the forget gates since, normalised. PyTorch builds each head's (T, T)
matrices as a dozen tensors, each a pass over memory; here (``mlstm_cell.c``) a row at a
time stays in the cache, forward and backward one call each, in memory that grows with T,
not T squared. Float32 on the CPU; tests compare its outputs and gradients with the
package's.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ntm.engines.native import _call, require_cpu_float32

#: Added to the normaliser before the division, as the package adds it.
EPS = 1e-6


class _Dims(ctypes.Structure):
    _fields_ = [*((name, ctypes.c_int) for name in ("B", "T", "NH", "DH")), ("eps", ctypes.c_float)]


class _Cell(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, gates: Tensor, heads: int) -> Tensor:
        batch, steps, width = q.shape
        inputs = [t.detach().contiguous() for t in (q, k, v, gates)]
        h = q.new_empty(batch, steps, heads, width // heads)
        sums = q.new_empty(batch, heads, steps)
        ctx.dims = _Dims(batch, steps, heads, width // heads, EPS)
        work = q.new_empty(2 * (steps + 1))
        _call("mlstm_cell_forward", ctx.dims, [*inputs, h, sums, work])
        ctx.save_for_backward(*inputs, sums)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, gates, sums = ctx.saved_tensors
        grads = [torch.empty_like(t) for t in (q, k, v, gates)]
        work = q.new_empty(5 * (q.shape[1] + 1))
        unused = q.new_empty(1)  # the forward pass's output, not read
        buffers = [q, k, v, gates, unused, sums, work, grad_h.contiguous(), *grads]
        _call("mlstm_cell_backward", ctx.dims, buffers)
        return (*grads, None)


def mlstm_parallel(q: Tensor, k: Tensor, v: Tensor, gates: Tensor, heads: int) -> Tensor:
    """The mLSTM's reads, (B, T, heads, H / heads), from queries, keys and values (B, T, H)
    (each head's H / heads columns side by side) and the gates' pre-activations (B, T,
    2 * heads: the input gates', then the forget gates'). Float32 on the CPU
    (:func:`ntm.engines.native.native_available`); anything else is a ValueError, as are
    shapes that do not fit."""
    for name, tensor in (("q", q), ("k", k), ("v", v), ("gates", gates)):
        require_cpu_float32("mlstm_parallel", name, tensor)
    if heads < 1:
        raise ValueError(f"mlstm_parallel: heads must be at least 1, got {heads}")
    if (
        q.dim() != 3
        or k.shape != q.shape
        or v.shape != q.shape
        or q.shape[-1] % heads
        or gates.shape != (*q.shape[:2], 2 * heads)
    ):
        raise ValueError(
            f"mlstm_parallel: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} and "
            f"gates {tuple(gates.shape)} do not fit {heads} heads: expected q, k and v "
            f"(B, T, H) with H a multiple of {heads}, gates (B, T, {2 * heads})"
        )
    h: Tensor = _Cell.apply(q, k, v, gates, heads)  # type: ignore[no-untyped-call]
    return h
