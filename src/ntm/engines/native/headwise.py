"""The xLSTM's head-wise projections, a block-diagonal product, in C.

:func:`headwise_product` computes ``y[..., h, o] = sum_d weight[h, o, d] x[..., h, d]``: each
head's ``D`` inputs through its own ``(O, D)`` matrix, the ``xlstm`` package's
``LinearHeadwiseExpand`` without its bias. The mLSTM's queries, keys and values take blocks of
4 inputs: on the CPU PyTorch's batched product over 32 heads of such blocks, with the copies
its layout needs, costs about as much as a product a hundred times its size; here
(``headwise.c``) forward and backward are one pass each over the rows. Float32 on the CPU;
tests compare its outputs and gradients with PyTorch's.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ntm.engines.native import _call, require_cpu_float32


class _Dims(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("N", "H", "O", "D")]


class _Headwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        heads, outputs, size = weight.shape
        rows = x.numel() // (heads * size)
        inputs = [x.detach().contiguous(), weight.detach().contiguous()]
        y = x.new_empty(rows, heads, outputs)
        ctx.dims = _Dims(rows, heads, outputs, size)
        _call("headwise_forward", ctx.dims, [*inputs, y, weight.new_empty(weight.numel())])
        ctx.save_for_backward(*inputs)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        grads = (torch.empty_like(x), torch.empty_like(weight))
        spread = weight.new_empty(2 * weight.numel())
        _call("headwise_backward", ctx.dims, [x, weight, grad_y.contiguous(), *grads, spread])
        return grads


def headwise_product(x: Tensor, weight: Tensor) -> Tensor:
    """``x`` (..., H * D) through ``weight`` (H, O, D), head by head: (..., H * O). Float32
    on the CPU (:func:`ntm.engines.native.native_available`); anything else is a ValueError,
    as is a weight whose shape does not fit ``x``."""
    for name, tensor in (("x", x), ("weight", weight)):
        require_cpu_float32("headwise_product", name, tensor)
    if (
        weight.dim() != 3
        or weight.numel() == 0
        or x.dim() < 1
        or x.shape[-1] != weight.shape[0] * weight.shape[2]
    ):
        raise ValueError(
            f"headwise_product: x {tuple(x.shape)} and weight {tuple(weight.shape)} do not "
            "fit: expected x (..., H * D) and weight (H, O, D), each of H, O and D at least 1"
        )
    y: Tensor = _Headwise.apply(x, weight)  # type: ignore[no-untyped-call]
    return y.reshape(*x.shape[:-1], weight.shape[0] * weight.shape[1])


def reference(x: Tensor, weight: Tensor) -> Tensor:
    """What :func:`headwise_product` computes, with PyTorch's einsum (for tests)."""
    heads, _, size = weight.shape
    grouped = x.reshape(*x.shape[:-1], heads, size)
    return torch.einsum("...hd,hod->...ho", grouped, weight).flatten(-2)
