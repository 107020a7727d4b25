"""Reading from and writing to the memory matrix (Graves et al., 2014, §3.1 and §3.2).

Pure functions: tensors in, tensors out, no state, inputs never modified in place.

Dimension legend: ``B`` batch, ``H`` heads, ``N`` memory slots, ``M`` word size.
"""

from __future__ import annotations

import torch
from torch import Tensor


def read(memory: Tensor, weights: Tensor) -> Tensor:
    r"""Read vectors, one per head: :math:`r = \sum_i w(i)\, M(i)`.

    Shape:
        memory (B, N, M), weights (B, H, N) -> (B, H, M)
    """
    return torch.matmul(weights, memory)


def write(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    r"""Erase then add, for every write head at once.

    .. math::
        \tilde M(i) = M(i) \prod_h \big(1 - w_h(i)\, e_h\big), \qquad
        M'(i) = \tilde M(i) + \sum_h w_h(i)\, a_h

    All heads erase before any head adds, so the order of the heads does not matter.

    Shape:
        memory (B, N, M), weights (B, H, N), erase (B, H, M), add (B, H, M) -> (B, N, M)
    """
    keep = 1.0 - weights.unsqueeze(-1) * erase.unsqueeze(-2)  # (B, H, N, M)
    kept = keep[:, 0] if keep.shape[1] == 1 else keep.prod(dim=1)  # (B, N, M)
    added = torch.matmul(weights.transpose(1, 2), add)  # (B, N, M)
    return memory * kept + added
