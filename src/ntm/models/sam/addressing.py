"""The equations of Sparse Access Memory's reads, writes and usage, as pure functions.

Rae et al., "Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes",
NeurIPS 2016 (section numbers below are that paper's). Each read head attends to the
:math:`K` slots nearest its key and to no other; the one write head writes to the slots the
heads read at the previous step and to the least recently accessed slot, which it first
erases. A weighting is kept sparse: its :math:`K` (or :math:`S`) non-zero values and the
slots they sit on; :func:`densify` spreads one over all slots, for pictures and tests.

Pure functions: tensors in, tensors out, no state, inputs never modified in place. Cosine
similarity is :func:`ntm.models.ntm.addressing.cosine_similarity`.

Dimension legend used in every docstring of this module:

- ``B``: batch size
- ``R``: number of read heads (SAM has one write head)
- ``K``: slots each read head attends to
- ``S``: non-zero entries of the write weighting, ``R * K + 1`` (some may share a slot)
- ``N``: number of memory slots (rows)
- ``M``: word size (columns; the paper's ``W``)
- ``P``: size of the interface vector, ``R * M + R + M + 2``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ntm.models.dnc.addressing import oneplus
from ntm.models.ntm.addressing import cosine_similarity


def top_k(scores: Tensor, k: int) -> Tensor:
    """The indices of the ``k`` largest ``scores`` along the last dimension, largest first;
    equal scores are taken in index order, the lower index first. Indices only: no gradient.

    Exact, over every slot: the eager version's stand-in for the approximate nearest-neighbour
    index of §3.5, which a later engine may put in its place.

    Shape:
        scores (..., N) -> (..., K), int64
    """
    order = torch.argsort(scores.detach(), dim=-1, descending=True, stable=True)
    return order[..., :k]


def nearest_slots(memory: Tensor, keys: Tensor, k: int, eps: float) -> Tensor:
    r"""The ``k`` slots most similar to each key (§3.1): :func:`top_k` of the cosine
    similarity :math:`K(q, M(i))` over all slots. Memory rows of equal similarity (an all-zero
    memory, say) go in index order. No gradient: the weights of :func:`read_weights` carry it.

    Shape:
        memory (B, N, M), keys (B, R, M) -> (B, R, K), int64
    """
    with torch.no_grad():
        return top_k(cosine_similarity(memory, keys, eps), k)


def gather_rows(memory: Tensor, indices: Tensor) -> Tensor:
    """The memory rows at ``indices``, one set per head.

    Shape:
        memory (B, N, M), indices (B, H, K) -> (B, H, K, M)
    """
    b, h, k = indices.shape
    rows = memory.gather(1, indices.reshape(b, h * k, 1).expand(-1, -1, memory.shape[-1]))
    return rows.view(b, h, k, memory.shape[-1])


def read_weights(
    memory: Tensor, keys: Tensor, strengths: Tensor, indices: Tensor, eps: float
) -> Tensor:
    r"""Sparse read weights (§3.1): a softmax of strength times cosine similarity over the
    :math:`K` slots :math:`s_1, \dots, s_K` of ``indices`` only; every other slot weighs 0.

    .. math:: \tilde w^R_t(s_j) = \frac{\exp\big(\beta_t\, K(q_t, M_t(s_j))\big)}
              {\sum_{l=1}^{K} \exp\big(\beta_t\, K(q_t, M_t(s_l))\big)}

    Shape:
        memory (B, N, M), keys (B, R, M), strengths (B, R), indices (B, R, K) -> (B, R, K),
        the weights of the slots ``indices`` names
    """
    rows = gather_rows(memory, indices)  # (B, R, K, M)
    dots = (rows * keys.unsqueeze(-2)).sum(-1)  # (B, R, K)
    key_norm = torch.sqrt(keys.pow(2).sum(-1, keepdim=True) + eps)  # (B, R, 1)
    row_norm = torch.sqrt(rows.pow(2).sum(-1) + eps)  # (B, R, K)
    similarity = dots / (key_norm * row_norm)
    return torch.softmax(strengths.unsqueeze(-1) * similarity, dim=-1)


def read(memory: Tensor, weights: Tensor, indices: Tensor) -> Tensor:
    r"""Sparse read (§3.1): :math:`r_t = \sum_{j=1}^{K} \tilde w^R_t(s_j)\, M_t(s_j)`, a
    weighted sum of :math:`K` rows per head.

    Shape:
        memory (B, N, M), weights (B, R, K), indices (B, R, K) -> (B, R, M)
    """
    return (weights.unsqueeze(-1) * gather_rows(memory, indices)).sum(-2)


def densify(weights: Tensor, indices: Tensor, size: int) -> Tensor:
    """A sparse weighting spread over all ``size`` slots: 0 where it has no entry, the sum of
    its entries where several sit on one slot.

    Shape:
        weights (B, H, K), indices (B, H, K) -> (B, H, N)
    """
    dense = weights.new_zeros(*weights.shape[:-1], size)
    return dense.scatter_add(-1, indices, weights)


def least_recently_used(usage: Tensor) -> Tensor:
    r"""The least recently accessed slot (§3.2), :math:`\arg\min_i U_{t-1}(i)`; of slots
    accessed equally long ago (or never), the lowest index.

    Shape:
        usage (B, N) -> (B,), int64
    """
    return usage.argmin(dim=-1)  # torch.argmin returns the first of equal minima


def write_weights(
    read_weights: Tensor,
    read_indices: Tensor,
    least_used: Tensor,
    write_gate: Tensor,
    interpolation_gate: Tensor,
) -> tuple[Tensor, Tensor]:
    r"""Sparse write weights (§3.2), the previous step's read slots and the least recently
    used one, interpolated and gated:

    .. math:: w^W_t = \alpha_t \big(\gamma_t\, w^R_{t-1} + (1 - \gamma_t)\, I^U_t\big)

    with :math:`w^R_{t-1}` the previous read weights summed over the heads (so with several
    heads a slot two heads read may weigh up to :math:`\alpha \gamma R`) and :math:`I^U_t` the
    one-hot of ``least_used``. Returned as :math:`S = RK + 1` entries and their slots; entries
    on one slot add up (:func:`densify`).

    Shape:
        read_weights (B, R, K), read_indices (B, R, K), least_used (B,), write_gate (B,),
        interpolation_gate (B,) -> (weights (B, S), indices (B, S))
    """
    alpha, gamma = write_gate.unsqueeze(-1), interpolation_gate.unsqueeze(-1)  # (B, 1)
    weights = torch.cat([gamma * read_weights.flatten(1), 1.0 - gamma], -1) * alpha
    indices = torch.cat([read_indices.flatten(1), least_used.unsqueeze(-1)], -1)
    return weights, indices


def write(
    memory: Tensor, least_used: Tensor, weights: Tensor, indices: Tensor, add: Tensor
) -> Tensor:
    r"""Sparse write (§3.2, the form of §2's :math:`M_t = (1 - R_t) \odot M_{t-1} + A_t`):
    the least recently used slot erased in full, :math:`R_t = I^U_t \mathbf{1}^\top`, then
    the add matrix :math:`A_t = w^W_t a_t^\top` added. At most :math:`S` rows change.

    .. math:: M_t = (1 - I^U_t \mathbf{1}^\top) \odot M_{t-1} + w^W_t\, a_t^\top

    Shape:
        memory (B, N, M), least_used (B,), weights (B, S), indices (B, S), add (B, M)
        -> (B, N, M)
    """
    width = memory.shape[-1]
    erased = memory.scatter(1, least_used.view(-1, 1, 1).expand(-1, 1, width), 0.0)
    rows = weights.unsqueeze(-1) * add.unsqueeze(1)  # (B, S, M)
    return erased.scatter_add(1, indices.unsqueeze(-1).expand(-1, -1, width), rows)


def usage(
    usage: Tensor,
    step: Tensor,
    read_weights: Tensor,
    read_indices: Tensor,
    write_weights: Tensor,
    write_indices: Tensor,
    delta: float,
) -> Tensor:
    r"""Usage as the step of the last access (§3.2): a slot is accessed at step :math:`t`
    when its write weight and its read weights (all heads) add up to more than
    :math:`\delta`,

    .. math:: U_t(i) = \begin{cases} t & w^W_t(i) + \sum_h w^{R,h}_t(i) > \delta \\
              U_{t-1}(i) & \text{otherwise} \end{cases}

    (the paper's time since the last access is :math:`t - U_t(i)`). No gradient: a record of
    the past, not a function the loss depends on smoothly.

    Shape:
        usage (B, N), step (B,), read_weights (B, R, K), read_indices (B, R, K),
        write_weights (B, S), write_indices (B, S) -> (B, N)
    """
    size = usage.shape[-1]
    with torch.no_grad():
        reads = densify(read_weights, read_indices, size).sum(1)  # (B, N)
        writes = densify(write_weights.unsqueeze(1), write_indices.unsqueeze(1), size)[:, 0]
        return torch.where(reads + writes > delta, step.unsqueeze(-1).to(usage.dtype), usage)


class Interface(NamedTuple):
    r"""The interface vector's parts after their activations (§3.3).

    Fields:
        read_keys: (B, R, M), the keys :math:`q`.
        read_strengths: (B, R), :math:`\beta \ge 1` (oneplus).
        write_gate: (B,), :math:`\alpha` in (0, 1).
        interpolation_gate: (B,), :math:`\gamma` in (0, 1): the weight on the last read
            slots, against the least recently used one.
        add: (B, M), the add vector :math:`a`.
    """

    read_keys: Tensor
    read_strengths: Tensor
    write_gate: Tensor
    interpolation_gate: Tensor
    add: Tensor


@dataclass(frozen=True)
class InterfaceLayout:
    """Where each part of the interface vector lives, for ``num_read_heads`` read heads and
    words of ``word_size``::

        read keys (R*M) | read strengths (R) | write gate | interpolation gate | add (M)
    """

    num_read_heads: int
    word_size: int

    @property
    def sizes(self) -> tuple[int, ...]:
        """The size of each part, in order."""
        r, m = self.num_read_heads, self.word_size
        return (r * m, r, 1, 1, m)

    @property
    def size(self) -> int:
        """P: ``R * M + R + M + 2``."""
        return sum(self.sizes)

    def activate(self, raw: Tensor) -> Interface:
        """The activated parts of raw interface vectors (B, P)."""
        keys, strengths, alpha, gamma, add = torch.split(raw, list(self.sizes), dim=-1)
        return Interface(
            read_keys=keys.reshape(*keys.shape[:-1], self.num_read_heads, self.word_size),
            read_strengths=oneplus(strengths),
            write_gate=torch.sigmoid(alpha).squeeze(-1),
            interpolation_gate=torch.sigmoid(gamma).squeeze(-1),
            add=add,
        )
