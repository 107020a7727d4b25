"""Optimisers used by the paper's training set-up."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class GravesRMSprop(Optimizer):
    r"""Centred RMSProp with momentum in the form of Graves (2013), eqs. 38-41.

    .. math::
        n &\leftarrow \aleph n + (1 - \aleph) g^2 \\
        \bar g &\leftarrow \aleph \bar g + (1 - \aleph) g \\
        \Delta &\leftarrow \beth \Delta - \eta\, g / \sqrt{n - \bar g^2 + \epsilon} \\
        w &\leftarrow w + \Delta

    The NTM paper (§4.6) used decay :math:`\aleph = 0.95`, momentum :math:`\beth = 0.9` and
    :math:`\epsilon = 10^{-4}`. Unlike ``torch.optim.RMSprop(centered=True)``, epsilon sits
    inside the square root, which bounds every step by :math:`\eta / \sqrt{\epsilon}` times
    the gradient.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        decay: float = 0.95,
        momentum: float = 0.9,
        eps: float = 1e-4,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"GravesRMSprop: lr must be > 0, got {lr}")
        if not 0 <= decay < 1:
            raise ValueError(f"GravesRMSprop: decay must be in [0, 1), got {decay}")
        if not 0 <= momentum < 1:
            raise ValueError(f"GravesRMSprop: momentum must be in [0, 1), got {momentum}")
        if eps <= 0:
            raise ValueError(f"GravesRMSprop: eps must be > 0, got {eps}")
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update. When the attribute ``found_inf`` holds a tensor (as
        ``torch.amp.GradScaler`` sets it for the fused optimisers), a non-zero value leaves
        weights and state unchanged, decided on the device without a host sync."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Set on the optimiser by torch.amp.GradScaler when it checked the gradients.
        found_inf: Tensor | None = getattr(self, "found_inf", None)
        keep = None if found_inf is None else found_inf != 0  # once per step, not per weight
        for group in self.param_groups:
            decay, momentum = group["decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    state["grad_avg"] = torch.zeros_like(p)
                    state["delta"] = torch.zeros_like(p)
                square_avg = state["square_avg"].mul(decay).addcmul_(g, g, value=1 - decay)
                grad_avg = state["grad_avg"].mul(decay).add_(g, alpha=1 - decay)
                # n - gbar^2 is a variance, >= 0 up to rounding.
                variance = (square_avg - grad_avg * grad_avg).clamp_(min=0)
                delta = (
                    state["delta"]
                    .mul(momentum)
                    .addcdiv_(g, (variance + group["eps"]).sqrt_(), value=-group["lr"])
                )
                for old, new in ((state["square_avg"], square_avg), (state["grad_avg"], grad_avg),
                                 (state["delta"], delta), (p, p + delta)):  # fmt: skip
                    old.copy_(new if keep is None else torch.where(keep, old, new))
        return loss
