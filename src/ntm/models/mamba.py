"""Mamba, a selective state-space model (Gu & Dao, 2023), over the same time-major inputs.

``MambaModel(input_size, output_size, d_model=64, num_layers=2, d_state=16, expand=2,
d_conv=4)`` maps inputs (T, B, I) to logits (T, B, O): a linear input layer (for a token
task, an embedding), ``num_layers`` residual Mamba blocks (RMS norm, input projection to two
branches of ``expand * d_model`` channels, a causal depthwise convolution of width
``d_conv``, the input-dependent selective scan with a state of ``d_state`` per channel,
gating, output projection), a final RMS norm and a linear output layer.

The blocks are those of the ``mambapy`` package (``pip install "torch-ntm[mamba]"``):
Mamba in pure PyTorch, its selective scan a parallel (Blelloch) scan over time, so it trains
on the CPU; on a GPU where ``mamba-ssm`` is installed, the blocks run its fused CUDA scan instead.
Chosen over writing the blocks here because the package is the reference pure-PyTorch
Mamba (the one the ``transformers`` library adopted), small, and depends on torch alone.

Engines (:mod:`ntm.engines.select`): ``eager`` runs the package's blocks as they are;
``native`` runs the same blocks' weights through :func:`mixer`, the block written out here,
with the selective scan in C (:mod:`ntm.engines.native.mamba`), and the convolution and its
SiLU too (:mod:`ntm.engines.native.conv`): float32 on the CPU, where the parallel scan's
padded (B, T, E, N) temporaries cost most of a training step, and the convolution's backward
pass much of the rest. ``auto`` takes ``native`` where it runs.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ntm.config import require_positive
from ntm.engines.native.conv import causal_conv_silu
from ntm.engines.native.mamba import selective_scan
from ntm.engines.select import AUTO, Engined
from ntm.models.common import Framed
from ntm.registry import register_model

#: Whether ``mamba-ssm``'s CUDA kernels can be imported (used for inputs on a GPU).
HAVE_MAMBA_SSM = importlib.util.find_spec("mamba_ssm") is not None


def _mambapy() -> Any:
    """The ``mambapy.mamba`` module, or a clear error naming the extra that brings it."""
    try:
        return importlib.import_module("mambapy.mamba")
    except ImportError:
        raise ImportError(
            '--model mamba needs the package mambapy: pip install "torch-ntm[mamba]" '
            "(or pip install mambapy)"
        ) from None


def mixer(block: Any, x: Tensor) -> Tensor:
    """A ``mambapy`` Mamba block (``MambaBlock``) applied to ``x`` (B, T, D), with the
    selective scan and the convolution in C; the same function as the block's ``forward``.
    A block with inner layer norms, which :class:`MambaModel` never builds, is refused
    (ValueError).

    The input projection splits into the scanned branch u and the gate z (B, T, E each);
    u passes the causal depthwise convolution and SiLU, and sets the scan's step sizes
    Δ = softplus(dt_proj(·)) and its projections B and C (B, T, N); the scan's outputs plus
    the skip D u are gated by SiLU(z) and projected back to D."""
    config = block.config
    if config.inner_layernorms:
        raise ValueError("mixer: a Mamba block with inner layer norms runs eager only")
    inner, gate = block.in_proj(x).chunk(2, dim=-1)  # (B, T, E) each
    inner = causal_conv_silu(inner, block.conv1d.weight, block.conv1d.bias)
    raw_step, into_state, out_of_state = torch.split(
        block.x_proj(inner), [config.dt_rank, config.d_state, config.d_state], dim=-1
    )
    step = F.softplus(block.dt_proj(raw_step))  # (B, T, E): Δ
    state_matrix = -torch.exp(block.A_log)  # (E, N): A
    scanned = selective_scan(inner, step, state_matrix, into_state, out_of_state)
    return block.out_proj((scanned + block.D * inner) * F.silu(gate))  # type: ignore[no-any-return]


class MambaModel(Engined, Framed):
    """Mamba blocks between a linear input layer and a linear output layer: inputs (T, B, I)
    to logits (T, B, O). See the module's description for the settings and engines."""

    engines: ClassVar[tuple[str, ...]] = ("native", "eager")

    #: The setting that scales its width, and the step between widths (benchmarks/compare.py
    #: matches parameter counts with it).
    width_setting: ClassVar[tuple[str, int]] = ("d_model", 2)

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        d_model: int = 64,
        num_layers: int = 2,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        engine: str = AUTO,
    ) -> None:
        require_positive(type(self).__name__, input_size=input_size, output_size=output_size,
                         d_model=d_model, num_layers=num_layers, d_state=d_state,
                         expand=expand, d_conv=d_conv)  # fmt: skip
        mamba = _mambapy()
        super().__init__(input_size, output_size, d_model)
        self.backbone_config = mamba.MambaConfig(
            d_model=d_model,
            n_layers=num_layers,
            d_state=d_state,
            expand_factor=expand,
            d_conv=d_conv,
            use_cuda=HAVE_MAMBA_SSM,
        )
        self.backbone = mamba.Mamba(self.backbone_config)
        self.norm = mamba.RMSNorm(d_model)
        self.engine = engine

    def extra_repr(self) -> str:
        return f"engine={self.engine!r}"

    def body(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        if self.engine_for(x.device, x.dtype).engine == "native":
            for layer in self.backbone.layers:  # mambapy's residual blocks
                x = x + mixer(layer.mixer, layer.norm(x))
            return self.norm(x)  # type: ignore[no-any-return]
        # The CUDA scan of mamba-ssm for inputs on a GPU, the parallel scan in PyTorch else.
        self.backbone_config.use_cuda = HAVE_MAMBA_SSM and x.is_cuda
        out: Tensor = self.norm(self.backbone(x))
        return out


register_model("mamba", MambaModel)
