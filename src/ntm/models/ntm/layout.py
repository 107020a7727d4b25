"""Where each number lives: head parameters, their activations, and the weights' order.

Every execution path (eager, fused, compiled) reads a head's raw parameters and an NTM's
weights through this module.

A head's raw parameters, the slice of the head layer's output that belongs to it, are laid
out as (``M`` word size, ``S = 2K + 1`` shift offsets)::

    key (M) | strength | gate | gamma | shift weights (S) | erase (M) | add (M)

read heads stopping after the shift weights. Their activations: the key as it is, strength
:math:`\\beta = \\mathrm{softplus}` (> 0), gate :math:`g = \\sigma` (in (0, 1)), sharpening
:math:`\\gamma = 1 + \\mathrm{softplus}` (>= 1), shift weights :math:`s = \\mathrm{softmax}`,
erase :math:`e = \\sigma`, add :math:`a = \\tanh`.

Dimension legend: ``B`` batch, ``H`` heads, ``M`` word size, ``S`` shift offsets,
``P`` raw parameters of a head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: The weights of one controller layer, in the order every execution path uses.
CONTROLLER_LAYER_WEIGHTS = {
    "lstm": ("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
    "feedforward": ("weight", "bias"),
}
#: The weights after the controller's: head layer, then output layer.
OUTPUT_WEIGHTS = (
    "head_layer.weight",
    "head_layer.bias",
    "output_layer.weight",
    "output_layer.bias",
)


def softmax_backward(grad: Tensor, probs: Tensor) -> Tensor:
    """The gradient of a softmax's input from ``grad`` of its output ``probs`` (last dim)."""
    return probs * (grad - (grad * probs).sum(-1, keepdim=True))


def cell_weight_names(controller: str, layers: int) -> list[str]:
    """Names (within an :class:`ntm.NTMCell`) of its weights in the fused path's order:
    each controller layer's, then the head layer's and the output layer's."""
    names = [
        f"controller.{i}.{weight}"
        for i in range(layers)
        for weight in CONTROLLER_LAYER_WEIGHTS[controller]
    ]
    return names + list(OUTPUT_WEIGHTS)


class HeadParameters(NamedTuple):
    """A head's activated addressing parameters, the arguments of
    :func:`ntm.models.ntm.addressing.address` after memory and previous weights.

    Fields (shapes for H heads):
        key: (B, H, M)
        strength: (B, H), > 0
        gate: (B, H), in (0, 1)
        shift_weights: (B, H, S), a distribution over shifts -K..K
        gamma: (B, H), >= 1
    """

    key: Tensor
    strength: Tensor
    gate: Tensor
    shift_weights: Tensor
    gamma: Tensor


class WriteVectors(NamedTuple):
    """A write head's erase (B, W, M), in (0, 1), and add (B, W, M), in (-1, 1), vectors."""

    erase: Tensor
    add: Tensor


@dataclass(frozen=True)
class HeadLayout:
    """The raw-parameter layout of the heads of an NTM with word size ``word_size`` and
    shifts ``-shift_range..shift_range``."""

    word_size: int
    shift_range: int

    @property
    def read_size(self) -> int:
        """P of a read head: key, strength, gate, gamma, shift weights."""
        return self.word_size + 3 + 2 * self.shift_range + 1

    @property
    def write_size(self) -> int:
        """P of a write head: a read head's, then erase and add."""
        return self.read_size + 2 * self.word_size

    def activate(self, raw: Tensor) -> HeadParameters:
        """The addressing parameters of raw head parameters (B, H, P), read or write heads."""
        m, p = self.word_size, self.read_size
        return HeadParameters(
            key=raw[..., :m],
            strength=F.softplus(raw[..., m]),
            gate=torch.sigmoid(raw[..., m + 1]),
            shift_weights=torch.softmax(raw[..., m + 3 : p], dim=-1),
            gamma=1.0 + F.softplus(raw[..., m + 2]),
        )

    def write_vectors(self, raw: Tensor) -> WriteVectors:
        """The erase and add vectors of raw write-head parameters (B, W, P)."""
        m, p = self.word_size, self.read_size
        return WriteVectors(torch.sigmoid(raw[..., p : p + m]), torch.tanh(raw[..., p + m :]))

    def backward(
        self,
        raw: Tensor,
        params: HeadParameters,
        grads: HeadParameters,
        vectors: WriteVectors | None = None,
        d_vectors: WriteVectors | None = None,
    ) -> Tensor:
        """The gradient of raw parameters (B, H, P) from the gradients of their activations:
        ``grads`` of the addressing parameters ``params``, and for write heads ``d_vectors``
        of the erase and add ``vectors``."""
        m, p = self.word_size, self.read_size
        d_raw = torch.empty_like(raw)
        d_raw[..., :m] = grads.key
        d_raw[..., m] = grads.strength * torch.sigmoid(raw[..., m])
        d_raw[..., m + 1] = grads.gate * params.gate * (1.0 - params.gate)
        d_raw[..., m + 2] = grads.gamma * torch.sigmoid(raw[..., m + 2])
        d_raw[..., m + 3 : p] = softmax_backward(grads.shift_weights, params.shift_weights)
        if raw.shape[-1] == self.write_size:
            if vectors is None or d_vectors is None:
                raise ValueError("HeadLayout.backward: a write head needs its erase and add")
            erase, add = vectors
            d_raw[..., p : p + m] = d_vectors.erase * erase * (1.0 - erase)
            d_raw[..., p + m :] = d_vectors.add * (1.0 - add * add)
        return d_raw
