"""The causal depthwise convolution and SiLU of Mamba's and the xLSTM's blocks, in C.

:func:`causal_conv_silu` computes ``silu(conv1d(x))`` where ``conv1d`` is the blocks'
grouped convolution (one group a channel, ``K`` taps, padding ``K - 1``, the last ``K - 1``
outputs dropped: step t sees steps t - K + 1 to t), on the blocks' own (B, T, E) layout, so
without the two transposes around PyTorch's convolution. On the CPU PyTorch's backward pass
of that convolution costs more than the rest of a Mamba block's convolution branch; here
(``causal_conv.c``) forward and backward are one pass each over the batch. Float32 on the
CPU; tests compare its outputs and gradients with PyTorch's.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ntm.engines.native import _call, require_cpu_float32


class _Dims(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("B", "T", "E", "K")]


class _ConvSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, taps: Tensor, bias: Tensor) -> Tensor:
        batch, steps, channels = x.shape
        inputs = [x.detach().contiguous(), taps.detach().contiguous(), bias.detach().contiguous()]
        y = x.new_empty(batch, steps, channels)
        ctx.dims = _Dims(batch, steps, channels, taps.shape[0])
        _call("causal_conv_forward", ctx.dims, [*inputs, y])
        ctx.save_for_backward(*inputs)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, taps, bias = ctx.saved_tensors
        grads = (torch.empty_like(x), torch.empty_like(taps), torch.empty_like(bias))
        workspace = x.new_empty(x.shape[1], x.shape[2])
        _call("causal_conv_backward", ctx.dims,
              [x, taps, bias, grad_y.contiguous(), *grads, workspace])  # fmt: skip
        return grads


def causal_conv_silu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``silu`` of the causal depthwise convolution of ``x`` (B, T, E) with a grouped
    ``nn.Conv1d``'s ``weight`` (E, 1, K) and ``bias`` (E, or None): (B, T, E). Float32 on
    the CPU (:func:`ntm.engines.native.native_available`); anything else is a ValueError,
    as is a weight whose shape does not fit ``x``."""
    for name, tensor in (("x", x), ("weight", weight), ("bias", bias)):
        if tensor is not None:
            require_cpu_float32("causal_conv_silu", name, tensor)
    channels = x.shape[-1]
    if x.dim() != 3 or weight.dim() != 3 or weight.shape[:2] != (channels, 1):
        raise ValueError(
            f"causal_conv_silu: x {tuple(x.shape)} and weight {tuple(weight.shape)} do not "
            "fit: expected x (B, T, E) and weight (E, 1, K)"
        )
    if bias is None:
        bias = x.new_zeros(channels)  # no gradient is asked of it
    elif bias.shape != (channels,):
        raise ValueError(
            f"causal_conv_silu: bias has shape {tuple(bias.shape)}, expected ({channels},)"
        )
    taps = weight[:, 0, :].t()  # (K, E): its gradient flows back into weight
    y: Tensor = _ConvSiLU.apply(x, taps, bias)  # type: ignore[no-untyped-call]
    return y


def reference(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """What :func:`causal_conv_silu` computes, with PyTorch's convolution (for tests)."""
    steps, taps = x.shape[1], weight.shape[-1]
    out = F.conv1d(x.transpose(1, 2), weight, bias, padding=taps - 1, groups=x.shape[-1])
    return F.silu(out[..., :steps].transpose(1, 2))
