"""How a task's outputs are scored: bits, or tokens.

Cost and wrong bits for bit tasks, cross-entropy and wrong tokens for token tasks.

Dimension legend: ``T`` time, ``B`` batch, ``O`` target channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch.nn.functional as F
from torch import Tensor

from ntm import registry

LN2 = math.log(2.0)


def _masked_bce(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy in nats, summed over channels and masked steps. Shape: scalar."""
    losses = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return (losses.sum(-1) * mask.to(logits.dtype)).sum()


def cost_bits(logits: Tensor, targets: Tensor, mask: Tensor) -> float:
    """Cost in bits per sequence: masked BCE in base 2, summed over each sequence, averaged.

    Shape: logits (T, B, O), targets (T, B, O), mask (T, B) -> float
    """
    return float(_masked_bce(logits.detach(), targets, mask)) / LN2 / logits.shape[1]


def loss_bits(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Differentiable version of :func:`cost_bits`: a scalar tensor in bits per sequence."""
    return _masked_bce(logits, targets, mask) / (LN2 * logits.shape[1])


def bit_errors(logits: Tensor, targets: Tensor, mask: Tensor) -> float:
    """Wrong bits per sequence after thresholding the output probabilities at 0.5.

    Shape: logits (T, B, O), targets (T, B, O), mask (T, B) -> float
    """
    return float(wrong_bits(logits, targets, mask)) / logits.shape[1]


def wrong_bits(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The wrong bits of the whole batch, as a tensor on the logits' device (a running
    count that needs no host sync); :func:`bit_errors` per sequence.

    Shape: logits (T, B, O), targets (T, B, O), mask (T, B) -> scalar
    """
    return wrong_bits_each(logits, targets, mask).sum()


def wrong_bits_each(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The wrong bits of each sequence. Shape: (T, B, O), (T, B, O), (T, B) -> (B,)"""
    wrong = ((logits > 0) != (targets > 0.5)).sum(-1)  # (T, B)
    return (wrong * mask).sum(0)


def loss_tokens(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy in bits per sequence of one-hot ``targets`` under the softmax of
    ``logits``, summed over the masked steps, averaged over the batch: a scalar tensor.

    Shape: logits (T, B, V), targets (T, B, V) one-hot, mask (T, B) -> scalar
    """
    nats = -(targets.to(logits.dtype) * F.log_softmax(logits, -1)).sum(-1)  # (T, B)
    return (nats * mask.to(logits.dtype)).sum() / (LN2 * logits.shape[1])


def wrong_tokens_each(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The wrong tokens of each sequence (the most likely token is not the target's).

    Shape: logits (T, B, V), targets (T, B, V) one-hot, mask (T, B) -> (B,)
    """
    return ((logits.argmax(-1) != targets.argmax(-1)) & mask).sum(0)


def cost_tokens(logits: Tensor, targets: Tensor, mask: Tensor) -> float:
    """:func:`loss_tokens` as a number, without its graph."""
    return float(loss_tokens(logits.detach(), targets, mask))


class Scoring(NamedTuple):
    """How a task's outputs are scored: ``loss`` (differentiable, bits per sequence),
    ``cost`` (the same as a float) and ``wrong`` (the wrong units of each sequence, (B,));
    ``unit``: what is counted."""

    loss: Callable[[Tensor, Tensor, Tensor], Tensor]
    cost: Callable[[Tensor, Tensor, Tensor], float]
    wrong: Callable[[Tensor, Tensor, Tensor], Tensor]
    unit: str


def errors_named(unit: str) -> str:
    """What a log line calls the errors counted in ``unit``: "bit errors" (as the NTM's
    papers say) or "wrong tokens"."""
    return "bit errors" if unit == "bits" else f"wrong {unit}"


BITS = Scoring(loss_bits, cost_bits, wrong_bits_each, "bits")


TOKENS = Scoring(loss_tokens, cost_tokens, wrong_tokens_each, "tokens")


def scoring(task: Any) -> Scoring:
    """:data:`TOKENS` for a task that declares ``tokens = True`` (one-hot token inputs and
    targets, a vocabulary-sized output, cross-entropy); :data:`BITS` otherwise (independent
    bits, binary cross-entropy, wrong bits at threshold 0.5)."""
    return TOKENS if registry.tokens(task) else BITS
