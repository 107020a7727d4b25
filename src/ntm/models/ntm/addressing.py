"""Differentiable memory addressing of the Neural Turing Machine (Graves et al., 2014, §3.3).

Pure functions: tensors in, tensors out, no state, inputs never modified in place.

Dimension legend used in every docstring of this module:

- ``B``: batch size
- ``H``: number of heads
- ``N``: number of memory slots (rows)
- ``M``: word size (columns)
- ``S``: number of shift offsets, ``2K + 1`` for a shift range ``K``
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Default guard against division by zero and ``log(0)``.
EPS = 1e-8


def cosine_similarity(memory: Tensor, key: Tensor, eps: float = EPS) -> Tensor:
    r"""Cosine similarity between every key and every memory row.

    .. math:: K(k, M(i)) = \frac{k \cdot M(i)}{\sqrt{\lVert k\rVert^2 + \epsilon}
              \sqrt{\lVert M(i)\rVert^2 + \epsilon}}

    The ``eps`` inside the square roots keeps value and gradient finite for all-zero
    keys and all-zero rows (where the plain formula is 0/0).

    Shape:
        memory (B, N, M), key (B, H, M) -> (B, H, N)
    """
    dots = torch.matmul(key, memory.transpose(1, 2))  # (B, H, N)
    key_norm = torch.sqrt(key.pow(2).sum(-1) + eps)  # (B, H)
    row_norm = torch.sqrt(memory.pow(2).sum(-1) + eps)  # (B, N)
    return dots / (key_norm.unsqueeze(-1) * row_norm.unsqueeze(1))


def content_weights(memory: Tensor, key: Tensor, strength: Tensor, eps: float = EPS) -> Tensor:
    r"""Content addressing: a softmax over slots of strength times cosine similarity.

    .. math:: w^c(i) = \operatorname{softmax}_i\big(\beta\, K(k, M(i))\big)

    Shape:
        memory (B, N, M), key (B, H, M), strength (B, H) -> (B, H, N)
    """
    similarity = cosine_similarity(memory, key, eps)  # (B, H, N)
    return torch.softmax(strength.unsqueeze(-1) * similarity, dim=-1)


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    r"""Interpolation gate: :math:`w^g = g\, w^c + (1 - g)\, w_{t-1}`.

    Shape:
        content (B, H, N), previous (B, H, N), gate (B, H) -> (B, H, N)
    """
    gate = gate.unsqueeze(-1)  # (B, H, 1)
    return gate * content + (1.0 - gate) * previous


def shift(weights: Tensor, shift_weights: Tensor) -> Tensor:
    r"""Circular convolution of a weighting with a distribution over shift offsets (eq. 8).

    .. math:: \tilde w(i) = \sum_{o=-K}^{K} s(o)\, w\big((i - o) \bmod N\big)

    ``shift_weights[..., j]`` is the probability of offset ``j - K``; offset +1 moves the
    focus from slot ``i`` to slot ``i + 1`` (as ``torch.roll(weights, 1, -1)`` does).

    Shape:
        weights (B, H, N), shift_weights (B, H, S) with ``S = 2K + 1 <= N`` -> (B, H, N)
    """
    num_slots = weights.shape[-1]
    num_offsets = shift_weights.shape[-1]
    if num_offsets % 2 != 1 or num_offsets > num_slots:
        raise ValueError(
            f"shift: shift_weights must have an odd size S = 2K + 1 <= N = {num_slots}, "
            f"got S = {num_offsets}"
        )
    k = num_offsets // 2
    if k == 0:
        return weights * shift_weights
    # Pad circularly so that window i holds w(i - K) .. w(i + K).
    padded = torch.cat([weights[..., num_slots - k :], weights, weights[..., :k]], dim=-1)
    windows = padded.unfold(-1, num_offsets, 1)  # (B, H, N, S)
    # windows[..., i, t] = w(i - K + t) pairs with offset o = K - t: flip the offsets.
    flipped = shift_weights.flip(-1).unsqueeze(-1)  # (B, H, S, 1)
    return torch.matmul(windows, flipped).squeeze(-1)


def sharpen(weights: Tensor, gamma: Tensor, eps: float = EPS) -> Tensor:
    r"""Sharpening: :math:`w(i) = \tilde w(i)^\gamma / \sum_j \tilde w(j)^\gamma`.

    Computed as ``softmax(gamma * log(w + eps))``: identical up to ``eps``, but it never
    forms ``0 ** gamma`` (whose gradient with respect to gamma is ``0 * log 0``), never
    divides by a sum that underflowed to zero, and stays exact for gamma in the thousands.

    Shape:
        weights (B, H, N), gamma (B, H) with gamma >= 1 -> (B, H, N)
    """
    return torch.softmax(gamma.unsqueeze(-1) * torch.log(weights + eps), dim=-1)


def address(
    memory: Tensor,
    previous: Tensor,
    key: Tensor,
    strength: Tensor,
    gate: Tensor,
    shift_weights: Tensor,
    gamma: Tensor,
    eps: float = EPS,
) -> Tensor:
    """The four addressing steps in order: content, interpolation, shift, sharpening.

    Shape:
        memory (B, N, M), previous (B, H, N), key (B, H, M), strength (B, H),
        gate (B, H), shift_weights (B, H, S), gamma (B, H) -> (B, H, N)
    """
    content = content_weights(memory, key, strength, eps)
    gated = interpolate(content, previous, gate)
    shifted = shift(gated, shift_weights)
    return sharpen(shifted, gamma, eps)
