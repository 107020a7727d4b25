"""The equations of the Differentiable Neural Computer's memory, as pure functions.

Dynamic memory allocation and temporal links (Graves et al., 2016, Nature 538, Methods), and
the layout of the DNC's interface vector.

Pure functions: tensors in, tensors out, no state, inputs never modified in place. Content
weighting and erase/add writing are :mod:`ntm.models.ntm.addressing`'s and
:mod:`ntm.models.ntm.memory`'s.

Dimension legend used in every docstring of this module:

- ``B``: batch size
- ``R``: number of read heads (the DNC has one write head)
- ``N``: number of memory slots (rows)
- ``M``: word size (columns; the paper's ``W``)
- ``P``: size of the interface vector, ``R * M + 3 * M + 5 * R + 3``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Read modes in the order of the last dimension of :func:`read_weighting`'s ``modes``.
READ_MODES = ("backward", "content", "forward")


def retention(free_gates: Tensor, read_weights: Tensor) -> Tensor:
    r"""Memory retention: how much of each slot the read heads leave allocated.

    .. math:: \psi_t = \prod_{i=1}^{R} \big(1 - f_t^i\, w_{t-1}^{r,i}\big)

    Shape:
        free_gates (B, R), read_weights (B, R, N) -> (B, N)
    """
    return (1.0 - free_gates.unsqueeze(-1) * read_weights).prod(dim=1)


def usage(usage: Tensor, write_weights: Tensor, retention: Tensor) -> Tensor:
    r"""Usage after the last write and the frees:
    :math:`u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} \circ w^w_{t-1}) \circ \psi_t`.

    Computed as :math:`u_{t-1} + (1 - u_{t-1}) \circ w^w_{t-1}`, as DeepMind's code does: the
    same value, but exactly 1 for a slot written in full (``w = 1``), where the paper's order
    of operations leaves ``1 - 1.1e-16`` and so a sliver of allocation weight on a full slot.

    Shape:
        usage (B, N), write_weights (B, N), retention (B, N) -> (B, N)
    """
    return (usage + (1.0 - usage) * write_weights) * retention


def allocation(usage: Tensor) -> Tensor:
    r"""Allocation weighting: the least used slots first.

    With :math:`\phi` the slot indices sorted by ascending usage,

    .. math:: a[\phi_j] = (1 - u[\phi_j]) \prod_{i<j} u[\phi_i]

    The gradient flows through the usages, not through the order (the paper ignores the
    sort's discontinuities). Slots of equal usage are taken in index order.

    Shape:
        usage (B, N) -> (B, N)
    """
    order = torch.argsort(usage.detach(), dim=-1, stable=True)  # phi: (B, N)
    sorted_usage = usage.gather(-1, order)
    ones = torch.ones_like(sorted_usage[..., :1])
    before = torch.cumprod(torch.cat([ones, sorted_usage[..., :-1]], dim=-1), dim=-1)
    sorted_allocation = (1.0 - sorted_usage) * before  # (B, N) in sorted order
    return torch.zeros_like(usage).scatter(-1, order, sorted_allocation)


def write_weighting(
    allocation: Tensor, content: Tensor, allocation_gate: Tensor, write_gate: Tensor
) -> Tensor:
    r"""The write head's weighting: :math:`w^w = g^w \big(g^a a + (1 - g^a) c^w\big)`.

    Shape:
        allocation (B, N), content (B, N), allocation_gate (B,), write_gate (B,) -> (B, N)
    """
    gate = allocation_gate.unsqueeze(-1)
    return write_gate.unsqueeze(-1) * (gate * allocation + (1.0 - gate) * content)


def precedence(precedence: Tensor, write_weights: Tensor) -> Tensor:
    r"""Precedence: how much each slot was the last written,
    :math:`p_t = (1 - \sum_i w^w_t[i])\, p_{t-1} + w^w_t`.

    Shape:
        precedence (B, N), write_weights (B, N) -> (B, N)
    """
    return (1.0 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights


def link(link: Tensor, precedence: Tensor, write_weights: Tensor) -> Tensor:
    r"""Temporal link matrix: ``L[i, j]`` is how much slot ``i`` was written after slot ``j``.

    .. math:: L_t[i, j] = (1 - w^w_t[i] - w^w_t[j])\, L_{t-1}[i, j] + w^w_t[i]\, p_{t-1}[j],
              \qquad L_t[i, i] = 0

    ``precedence`` is the previous step's, :math:`p_{t-1}`.

    Shape:
        link (B, N, N), precedence (B, N), write_weights (B, N) -> (B, N, N)
    """
    rows = write_weights.unsqueeze(-1)  # w[i]: (B, N, 1)
    columns = write_weights.unsqueeze(-2)  # w[j]: (B, 1, N)
    updated = (1.0 - rows - columns) * link + rows * precedence.unsqueeze(-2)
    off_diagonal = 1.0 - torch.eye(link.shape[-1], dtype=link.dtype, device=link.device)
    return updated * off_diagonal


_dense_link = link  # for sparse_link, whose argument of that name hides this function


def largest_mask(values: Tensor, count: int, dim: int = -1) -> Tensor:
    """1 at each of the ``count`` largest entries of ``values`` along ``dim``, 0 elsewhere
    (all 1 when ``count`` is the size of ``dim`` or more). Equal values are taken in index
    order, the lower index first. A mask, so no gradient: it flows through what it keeps.

    Shape:
        values (..., N, ...) -> the same shape and dtype, no gradient
    """
    size = values.shape[dim]
    if count >= size:
        return torch.ones_like(values)
    order = torch.argsort(values.detach(), dim=dim, descending=True, stable=True)
    chosen = order.narrow(dim, 0, count)
    ones = torch.ones_like(chosen, dtype=values.dtype)
    return torch.zeros_like(values).scatter(dim, chosen, ones)


def keep_largest(weights: Tensor, count: int) -> Tensor:
    """``weights`` with all but each row's ``count`` largest entries set to 0
    (:func:`largest_mask`): the gradient reaches the entries kept.

    Shape:
        weights (..., N) -> (..., N)
    """
    return weights * largest_mask(weights, count)


def sparse_link(link: Tensor, precedence: Tensor, write_weights: Tensor, sparsity: int) -> Tensor:
    r"""The sparse temporal link matrix of the paper's Methods ("sparse link matrix"), with
    ``sparsity`` :math:`K` (8 in the paper):

    1. :math:`\hat w = ` the write weighting with its :math:`K` largest entries kept, the others
       0, and :math:`\hat p` the previous precedence likewise (:func:`keep_largest`);
    2. :math:`\hat L = ` :func:`link` of ``link``, :math:`\hat p` and :math:`\hat w`;
    3. an entry of :math:`\hat L` is kept if it is among the :math:`K` largest of its row and
       among the :math:`K` largest of its column (equal values: the lower index first), the
       others set to 0. Each row and each column then holds :math:`K` entries or fewer.

    No gradient through the choices (masks), through the kept values as :func:`link`'s. The
    precedence itself stays :func:`precedence` of the full write weighting: the Methods
    sparsify the write weighting and the precedence where they enter the link update and
    leave the precedence's own recurrence (O(N) either way) as it was; that is the reading
    taken here. With :math:`K \ge N` nothing is dropped: exactly :func:`link`.

    For a link matrix of :math:`K` non-zeros or fewer per row and column the update touches
    :math:`K` rows and :math:`K` columns, so the native engine does it in O(N K) a step
    (:mod:`ntm.engines.native.dnc`); here it runs on the dense matrix, with masks.

    Shape:
        link (B, N, N), precedence (B, N), write_weights (B, N) -> (B, N, N)
    """
    updated = _dense_link(
        link, keep_largest(precedence, sparsity), keep_largest(write_weights, sparsity)
    )
    kept = largest_mask(updated, sparsity, dim=-1) * largest_mask(updated, sparsity, dim=-2)
    return updated * kept


def directional_weights(link: Tensor, read_weights: Tensor) -> tuple[Tensor, Tensor]:
    r"""Forward and backward weightings: one step along the links from each read weighting,
    :math:`f^i = L\, w^{r,i}` and :math:`b^i = L^\top w^{r,i}`.

    Shape:
        link (B, N, N), read_weights (B, R, N) -> (forward (B, R, N), backward (B, R, N))
    """
    forward = torch.matmul(read_weights, link.transpose(1, 2))  # sum_j L[i, j] w[j]
    backward = torch.matmul(read_weights, link)  # sum_j L[j, i] w[j]
    return forward, backward


def read_weighting(backward: Tensor, content: Tensor, forward: Tensor, modes: Tensor) -> Tensor:
    r"""Read weighting: the read modes' mixture,
    :math:`w^{r,i} = \pi^i[1]\, b^i + \pi^i[2]\, c^{r,i} + \pi^i[3]\, f^i`.

    Shape:
        backward (B, R, N), content (B, R, N), forward (B, R, N), modes (B, R, 3) with the
        modes in the order of :data:`READ_MODES` -> (B, R, N)
    """
    return modes[..., 0:1] * backward + modes[..., 1:2] * content + modes[..., 2:3] * forward


def oneplus(x: Tensor) -> Tensor:
    r""":math:`\mathrm{oneplus}(x) = 1 + \log(1 + e^x)`, in :math:`[1, \infty)`."""
    return 1.0 + F.softplus(x)


class Interface(NamedTuple):
    """The interface vector's parts after their activations.

    Fields:
        read_keys: (B, R, M)
        read_strengths: (B, R), >= 1 (oneplus)
        write_key: (B, 1, M)
        write_strength: (B, 1), >= 1 (oneplus)
        erase: (B, 1, M), in (0, 1)
        write_vector: (B, 1, M)
        free_gates: (B, R), in (0, 1)
        allocation_gate: (B,), in (0, 1)
        write_gate: (B,), in (0, 1)
        read_modes: (B, R, 3), each a distribution over :data:`READ_MODES`
    """

    read_keys: Tensor
    read_strengths: Tensor
    write_key: Tensor
    write_strength: Tensor
    erase: Tensor
    write_vector: Tensor
    free_gates: Tensor
    allocation_gate: Tensor
    write_gate: Tensor
    read_modes: Tensor


@dataclass(frozen=True)
class InterfaceLayout:
    """Where each part of the interface vector lives, for ``num_read_heads`` read heads and
    words of ``word_size``, in the paper's order::

        read keys (R*M) | read strengths (R) | write key (M) | write strength |
        erase (M) | write vector (M) | free gates (R) | allocation gate | write gate |
        read modes (R*3)
    """

    num_read_heads: int
    word_size: int

    @property
    def sizes(self) -> tuple[int, ...]:
        """The size of each part, in order."""
        r, m = self.num_read_heads, self.word_size
        return (r * m, r, m, 1, m, m, r, 1, 1, 3 * r)

    @property
    def size(self) -> int:
        """P: ``R * M + 3 * M + 5 * R + 3``."""
        return sum(self.sizes)

    def activate(self, raw: Tensor) -> Interface:
        """The activated parts of raw interface vectors (B, P)."""
        r, m = self.num_read_heads, self.word_size
        parts = torch.split(raw, list(self.sizes), dim=-1)
        keys, strengths, write_key, write_strength, erase, vector, free, alloc, gate, modes = parts
        return Interface(
            read_keys=keys.view(*keys.shape[:-1], r, m),
            read_strengths=oneplus(strengths),
            write_key=write_key.unsqueeze(1),
            write_strength=oneplus(write_strength),
            erase=torch.sigmoid(erase).unsqueeze(1),
            write_vector=vector.unsqueeze(1),
            free_gates=torch.sigmoid(free),
            allocation_gate=torch.sigmoid(alloc).squeeze(-1),
            write_gate=torch.sigmoid(gate).squeeze(-1),
            read_modes=torch.softmax(modes.view(*modes.shape[:-1], r, 3), dim=-1),
        )


class _LinkAndDirections(torch.autograd.Function):
    """:func:`link` then :func:`directional_weights`, with a hand-written backward: the
    (B, N, N) link matrix is most of a DNC step's arithmetic, and autograd's generic backward
    of the two makes about three times as many passes over it as this one."""

    @staticmethod
    def forward(
        ctx: Any, link: Tensor, precedence: Tensor, write_weights: Tensor, read_weights: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        rows = write_weights.unsqueeze(-1)  # (B, N, 1)
        updated = (1.0 - rows - write_weights.unsqueeze(-2)).mul_(link)
        updated.baddbmm_(rows, precedence.unsqueeze(-2))  # + w[i] p[j]
        updated.diagonal(dim1=-2, dim2=-1).zero_()
        forward = torch.matmul(read_weights, updated.transpose(1, 2))
        backward = torch.matmul(read_weights, updated)
        ctx.save_for_backward(link, precedence, write_weights, read_weights, updated)
        return updated, forward, backward

    @staticmethod
    def backward(
        ctx: Any, d_link: Tensor | None, d_forward: Tensor | None, d_backward: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        link, precedence, write_weights, read_weights, updated = ctx.saved_tensors
        d_forward = torch.zeros_like(read_weights) if d_forward is None else d_forward
        d_backward = torch.zeros_like(read_weights) if d_backward is None else d_backward
        # The reads' share of the new link's gradient, in one product: (B, N, 2R) @ (B, 2R, N).
        left = torch.cat([d_forward, read_weights], 1).transpose(1, 2)
        right = torch.cat([read_weights, d_backward], 1)
        grad = torch.bmm(left, right) if d_link is None else torch.baddbmm(d_link, left, right)
        grad.diagonal(dim1=-2, dim2=-1).zero_()  # the diagonal is 0 whatever the inputs
        d_read = torch.matmul(d_forward, updated) + torch.matmul(
            d_backward, updated.transpose(1, 2)
        )
        rows = write_weights.unsqueeze(-1)
        grad_times_link = grad * link
        d_write = (
            torch.matmul(grad, precedence.unsqueeze(-1)).squeeze(-1)
            - grad_times_link.sum(-1)
            - grad_times_link.sum(-2)
        )
        d_precedence = torch.matmul(write_weights.unsqueeze(-2), grad).squeeze(-2)
        d_old = (1.0 - rows - write_weights.unsqueeze(-2)).mul_(grad)
        return d_old, d_precedence, d_write, d_read


def link_and_directions(
    link: Tensor, precedence: Tensor, write_weights: Tensor, read_weights: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`link`, then :func:`directional_weights` of the new links: the same values and
    gradients, computed in fewer passes over the link matrix.

    Shape:
        link (B, N, N), precedence (B, N), write_weights (B, N), read_weights (B, R, N)
        -> (link (B, N, N), forward (B, R, N), backward (B, R, N))
    """
    result: tuple[Tensor, Tensor, Tensor] = _LinkAndDirections.apply(  # type: ignore[no-untyped-call]
        link, precedence, write_weights, read_weights
    )
    return result
