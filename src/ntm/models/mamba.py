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
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, ClassVar

from torch import Tensor

from ntm.config import require_positive
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


class MambaModel(Framed):
    """Mamba blocks between a linear input layer and a linear output layer: inputs (T, B, I)
    to logits (T, B, O). See the module's description for the settings."""

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

    def body(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        # The CUDA scan of mamba-ssm for inputs on a GPU, the parallel scan in PyTorch else.
        self.backbone_config.use_cuda = HAVE_MAMBA_SSM and x.is_cuda
        out: Tensor = self.norm(self.backbone(x))
        return out


register_model("mamba", MambaModel)
