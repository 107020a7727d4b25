"""Mamba's native engine: the selective scan in C (``mamba_scan.c``), a whole sequence per call.

:func:`selective_scan` computes what ``mambapy``'s parallel scan computes, without its skip
term ``D x``: from a zero state, ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t`` and
``y_t = C_t . h_t`` per channel. The forward pass is one call into the native library and
the backward pass another, which computes the states again a sequence at a time rather than
keep them all (see ``mamba_scan.c``). Everything around the scan (projections,
convolution, gates) stays in PyTorch.

It runs float32 on the CPU; tests compare its outputs and gradients with the parallel
scan's. Dimension legend: ``B`` batch, ``T`` time, ``E`` channels, ``N`` state size.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ntm.engines.native import _call, require_cpu_float32

#: The scan's arguments, in order, with their shapes' dimension names.
ARGUMENTS = (
    ("x", "BTE"),
    ("step", "BTE"),
    ("state_matrix", "EN"),
    ("input_matrix", "BTN"),
    ("output_matrix", "BTN"),
)


class _Dims(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("B", "T", "E", "N")]


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, *tensors: Tensor) -> Tensor:
        x, state_matrix = tensors[0], tensors[2]
        batch, steps, channels = x.shape
        size = state_matrix.shape[1]
        inputs = [t.detach().contiguous() for t in tensors]
        y = x.new_empty(batch, steps, channels)
        states = x.new_empty(2, channels, size)  # two states in turn
        dims = _Dims(batch, steps, channels, size)
        _call("mamba_scan_forward", dims, [*inputs, y, states])
        ctx.dims = dims
        ctx.save_for_backward(*inputs)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, ...]:
        inputs = ctx.saved_tensors
        x, state_matrix = inputs[0], inputs[2]
        grads = [torch.empty_like(t) for t in inputs]
        # workspaces: the carry, one sequence's states and their decays (T, E, N) each
        carry = x.new_empty(state_matrix.shape)
        sequence_states = x.new_empty(x.shape[1], *state_matrix.shape)
        decays = torch.empty_like(sequence_states)
        unused = x.new_empty(1)  # the forward pass's outputs and two states
        _call(
            "mamba_scan_backward",
            ctx.dims,
            [*inputs, unused, unused, grad_y.contiguous(), *grads, carry, sequence_states,
             decays],
        )  # fmt: skip
        return tuple(grads)


def selective_scan(
    x: Tensor, step: Tensor, state_matrix: Tensor, input_matrix: Tensor, output_matrix: Tensor
) -> Tensor:
    """The scan's outputs y (B, T, E) from its inputs ``x`` (B, T, E), the step sizes
    ``step`` (Δ, B x T x E, after the softplus), the state matrix's diagonal
    ``state_matrix`` (A, E x N, negative), and the input-dependent ``input_matrix`` (B) and
    ``output_matrix`` (C), each (B, T, N), from a zero state. Float32 on the CPU
    (:func:`ntm.engines.native.native_available`); anything else is a ValueError that
    names the argument, as is a shape that disagrees with the others'."""
    tensors = (x, step, state_matrix, input_matrix, output_matrix)
    sizes: dict[str, int] = {}
    for (name, dims), tensor in zip(ARGUMENTS, tensors, strict=True):
        require_cpu_float32("selective_scan", name, tensor)
        if tensor.dim() != len(dims) or any(
            sizes.setdefault(dim, size) != size
            for dim, size in zip(dims, tensor.shape, strict=True)
        ):
            expected = "(" + ", ".join(f"{d}={sizes[d]}" if d in sizes else d for d in dims) + ")"
            raise ValueError(
                f"selective_scan: {name} has shape {tuple(tensor.shape)}, expected {expected}"
            )
    y: Tensor = _Scan.apply(*tensors)  # type: ignore[no-untyped-call]
    return y
