"""xLSTM (Beck et al., 2024), exponential gating and a matrix memory, over the same inputs.

``XLSTMModel(input_size, output_size, d_model=64, num_layers=2, num_heads=4, conv_width=4,
slstm_at="", max_positions=2048)`` maps inputs (T, B, I) to logits (T, B, O): a linear
input layer (for a token task, an embedding), ``num_layers`` residual xLSTM blocks, the
stack's final layer norm and a linear output layer. A block is an mLSTM block (up-projection
by 2, a causal convolution of width ``conv_width`` (2 or more), a matrix memory of
``num_heads`` heads with exponential input and sigmoid forget gates, read by queries;
computed in its parallel form) unless its index is listed in ``slstm_at`` (``"1"``,
``"0,2"``): then an sLSTM block (scalar memory with exponential gating and recurrent
head-wise connections, stepped in PyTorch on the CPU) followed by a gated feed-forward
layer. The default, mLSTM blocks only, is the paper's xLSTM[1:0], its variant for
associative recall.

The blocks are those of the ``xlstm`` package of the paper's authors (``pip install
"torch-ntm[xlstm]"``), chosen over writing them here because it is the reference
implementation and its mLSTM's parallel form and sLSTM's "vanilla" step run in plain
PyTorch on the CPU (its CUDA kernels are not used). The parallel form builds a causal mask
of ``max_positions`` steps once; a longer sequence is refused.

Engines (:mod:`ntm.engines.select`): ``eager`` runs the package's blocks as they are;
``native`` runs the mLSTM blocks' weights through :func:`mlstm_layer`, the package's layer
written out here with its causal convolution and SiLU in C (:mod:`ntm.engines.native.conv`;
PyTorch's backward pass of that convolution is slow on the CPU) and its head-wise
projections and its cell's parallel form in C too (:mod:`ntm.engines.native.headwise`,
:mod:`ntm.engines.native.mlstm`; :func:`mlstm_cell`): float32 on the CPU, the same function
to rounding.
``auto`` takes ``native`` where it runs; sLSTM blocks run as the package has them on either
engine, and so does the step-by-step form below.

The package's parallel form holds about a dozen (B, heads, T, T) tensors per block: at
evaluation lengths in the thousands, tens of gigabytes. Without gradients, where they would
pass :data:`PARALLEL_BYTES`, the blocks run step by step in their recurrent form instead, on
either engine (the package's ``step``: the same function, to rounding), in memory that does
not grow with T.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ntm.config import require, require_positive
from ntm.engines.native.conv import causal_conv_silu
from ntm.engines.native.headwise import headwise_product
from ntm.engines.native.mlstm import mlstm_parallel
from ntm.engines.select import AUTO, Engined
from ntm.models.common import Framed, check_positions
from ntm.registry import register_model

#: Without gradients, a sequence whose parallel form would hold more than this many bytes
#: (about a dozen float32 (B, heads, T, T) tensors) runs step by step instead.
PARALLEL_BYTES = 2**30

#: The up-projections' widths are rounded up to a multiple of this (the package's default,
#: 64, would make the parameter count jump by half between neighbouring widths, so no width
#: matches another model's count within 10%).
ROUND_TO = 8


def _xlstm() -> Any:
    """The ``xlstm`` package, or a clear error naming the extra that brings it."""
    try:
        return importlib.import_module("xlstm")
    except ImportError:
        raise ImportError(
            '--model xlstm needs the package xlstm: pip install "torch-ntm[xlstm]" '
            "(or pip install xlstm)"
        ) from None


def _blocks(owner: str, slstm_at: str, num_layers: int) -> list[int]:
    """The block indices listed in ``slstm_at`` ("" or comma-separated integers)."""
    expected = f'"" or block indices from 0 to {num_layers - 1}, comma-separated, such as "1"'
    try:
        at = sorted({int(part) for part in slstm_at.split(",") if part.strip()})
    except ValueError:
        at = [-1]
    require(all(0 <= i < num_layers for i in at), owner, "slstm_at", slstm_at, expected)
    return at


def headwise(projection: Any, x: Tensor) -> Tensor:
    """An ``xlstm`` head-wise projection (``LinearHeadwiseExpand``) applied to ``x``
    (..., heads * D): each head's D inputs through its own (O, D) matrix, in C
    (:func:`ntm.engines.native.headwise.headwise_product`); the same function as its
    ``forward`` (an einsum whose batched products and copies cost more on the CPU)."""
    out = headwise_product(x, projection.weight)
    return out if projection.bias is None else out + projection.bias


def mlstm_cell(cell: Any, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """An ``xlstm`` mLSTM cell (``mLSTMCell``) applied to queries, keys and values (B, T, H):
    the same function as its ``forward``, with its input and forget gates' projections as one
    product (not two products to 4 outputs each, whose input gradients are then summed) and
    its head-wise norm as a layer norm over each head (PyTorch's group norm over (B * T, H)
    took more than a millisecond a call, forward and backward each, in a profile of a
    training step), and its parallel form in C (:func:`ntm.engines.native.mlstm.mlstm_parallel`:
    the package's builds each head's (T, T) matrices as a dozen tensors)."""
    batch, steps, _ = q.shape
    heads = cell.config.num_heads
    weight = torch.cat([cell.igate.weight, cell.fgate.weight])
    bias = torch.cat([cell.igate.bias, cell.fgate.bias])
    gates = F.linear(torch.cat([q, k, v], dim=-1), weight, bias)  # (B, T, 2 * heads)
    h = mlstm_parallel(q, k, v, gates, heads)  # (B, T, heads, H / heads)
    norm = cell.outnorm
    size = h.shape[-1]
    scale: Tensor = norm.weight_proxy
    h = F.layer_norm(h, (size,), eps=norm.eps) * scale.view(heads, size)
    if norm.bias is not None:
        h = h + norm.bias.view(heads, size)
    return h.reshape(batch, steps, -1)


def mlstm_layer(layer: Any, x: Tensor) -> Tensor:
    """An ``xlstm`` mLSTM layer (``mLSTMLayer``) applied to ``x`` (B, T, D), with its
    causal convolution and SiLU in C, its head-wise projections as :func:`headwise` and its
    cell as :func:`mlstm_cell`; the same function as the layer's ``forward``.

    The up-projection splits into the mLSTM branch and the output gate z; the branch's
    convolution with SiLU gives the queries' and keys' input and the learnable skip, the
    branch itself the values'; the cell's output plus the skip, gated by SiLU(z), is
    projected back to D."""
    branch, gate = torch.split(layer.proj_up(x), layer.config._inner_embedding_dim, dim=-1)
    conv = layer.conv1d.conv
    convolved = causal_conv_silu(branch, conv.weight, conv.bias)
    q = headwise(layer.q_proj, convolved)
    k = headwise(layer.k_proj, convolved)
    v = headwise(layer.v_proj, branch)
    cell = mlstm_cell(layer.mlstm_cell, q, k, v)
    out = (cell + layer.learnable_skip * convolved) * layer.ogate_act_fn(gate)
    return layer.dropout(layer.proj_down(out))  # type: ignore[no-any-return]


class XLSTMModel(Engined, Framed):
    """xLSTM blocks between a linear input layer and a linear output layer: inputs (T, B, I)
    to logits (T, B, O). See the module's description for the settings and engines."""

    engines: ClassVar[tuple[str, ...]] = ("native", "eager")

    #: The setting that scales its width, and the step between widths (benchmarks/compare.py
    #: matches parameter counts with it).
    width_setting: ClassVar[tuple[str, int]] = ("d_model", 8)  # a multiple of 2 x its 4 heads

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        d_model: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        conv_width: int = 4,
        slstm_at: str = "",
        max_positions: int = 2048,
        engine: str = AUTO,
    ) -> None:
        owner = type(self).__name__
        require_positive(owner, input_size=input_size, output_size=output_size,
                         d_model=d_model, num_layers=num_layers, num_heads=num_heads,
                         conv_width=conv_width, max_positions=max_positions)  # fmt: skip
        require(
            d_model % (2 * num_heads) == 0 and d_model % 4 == 0,
            owner,
            "d_model",
            d_model,
            f"a multiple of 4 and of 2 * num_heads = {2 * num_heads}",
        )
        # The package's causal convolution drops its last conv_width - 1 outputs, which
        # for a width of 1 is all of them.
        require(conv_width >= 2, owner, "conv_width", conv_width, "at least 2")
        at = _blocks(owner, slstm_at, num_layers)
        xl = _xlstm()
        super().__init__(input_size, output_size, d_model)
        self.max_positions = max_positions
        self.num_heads = num_heads
        mlstm = xl.mLSTMBlockConfig(
            mlstm=xl.mLSTMLayerConfig(
                conv1d_kernel_size=conv_width,
                qkv_proj_blocksize=4,
                num_heads=num_heads,
                round_proj_up_to_multiple_of=ROUND_TO,
            )
        )
        slstm = xl.sLSTMBlockConfig(
            slstm=xl.sLSTMLayerConfig(
                backend="vanilla", num_heads=num_heads, conv1d_kernel_size=conv_width
            ),
            feedforward=xl.FeedForwardConfig(
                proj_factor=4 / 3, act_fn="gelu", round_proj_up_to_multiple_of=ROUND_TO
            ),
        )
        self.backbone = xl.xLSTMBlockStack(
            xl.xLSTMBlockStackConfig(
                mlstm_block=mlstm,
                slstm_block=slstm if at else None,
                context_length=max_positions,
                num_blocks=num_layers,
                embedding_dim=d_model,
                slstm_at=at,
            )
        )
        self.backbone.reset_parameters()
        self._mlstm = {i for i in range(num_layers) if i not in at}  # the mLSTM blocks
        self.engine = engine

    def extra_repr(self) -> str:
        return f"engine={self.engine!r}"

    def body(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        check_positions(type(self).__name__, x.shape[1], self.max_positions,
                        "; build the model with a larger max_positions "
                        "(--model-arg max_positions=N)")  # fmt: skip
        batch, steps = x.shape[:2]
        if not torch.is_grad_enabled() and 48 * batch * self.num_heads * steps**2 > PARALLEL_BYTES:
            return self.stepped(x)
        if self.engine_for(x.device, x.dtype).engine == "native":
            for i, block in enumerate(self.backbone.blocks):
                if i in self._mlstm:  # an mLSTM block: no feed-forward layer
                    x = x + mlstm_layer(block.xlstm, block.xlstm_norm(x))
                else:
                    x = block(x)
            return self.backbone.post_blocks_norm(x)  # type: ignore[no-any-return]
        out: Tensor = self.backbone(x)
        return out

    def stepped(self, x: Tensor) -> Tensor:
        """The blocks' recurrent form, one step at a time: (B, T, d_model) -> (B, T, d_model)."""
        state = None
        outputs = []
        for t in range(x.shape[1]):
            out, state = self.backbone.step(x[:, t : t + 1], state)
            outputs.append(out)
        return torch.cat(outputs, 1)


register_model("xlstm", XLSTMModel)
