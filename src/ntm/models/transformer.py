"""A decoder-only causal Transformer over the same time-major inputs as the NTM.

``TransformerModel(input_size, output_size, d_model=64, num_layers=2, num_heads=4,
ff_size=256, position="rope")`` maps inputs (T, B, I) to logits (T, B, O): a linear input
layer (for a token task, whose inputs are one-hot, an embedding), pre-norm blocks of causal
self-attention and a GELU feed-forward layer, a final layer norm and a linear output layer.
Step ``t`` sees steps ``0..t`` only, as a recurrent model does.

``position`` is the position encoding, on which length generalisation hinges:

- ``rope``: rotary embeddings of queries and keys (Su et al., 2021), base 10,000;
- ``alibi``: a linear penalty on attention to distant steps, one slope per head (Press et
  al., 2022);
- ``sinusoidal``: the fixed absolute encoding of Vaswani et al. (2017), added to the inputs;
- ``learned``: a learned absolute embedding of each position up to ``max_positions`` (a longer
  sequence is refused);
- ``none``: no encoding; the causal mask alone tells positions apart (Kazemnejad et al.,
  2023).

Why written here on ``torch.nn`` rather than taken from a package such as x-transformers:
each encoding is a few lines on top of ``torch.nn.functional.scaled_dot_product_attention``
(PyTorch's fused attention on the CPU and the GPU), the model is small enough to read in one
sitting and to test against a plain attention formula, and the library gains no dependency
for its core comparison.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ntm.config import require, require_positive
from ntm.models.common import Framed, check_positions
from ntm.registry import register_model

#: The position encodings a :class:`TransformerModel` takes.
POSITIONS = ("rope", "alibi", "sinusoidal", "learned", "none")


def sinusoidal(steps: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The fixed absolute encoding of positions ``0..steps-1``. Shape: (steps, width)."""
    position = torch.arange(steps, device=device, dtype=torch.float64).unsqueeze(1)
    rate = torch.exp(
        torch.arange(0, width, 2, device=device, dtype=torch.float64) * (-math.log(1e4) / width)
    )
    table = torch.zeros(steps, width, device=device, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table.to(dtype)


def rotate(x: Tensor, base: float = 1e4) -> Tensor:
    """Rotary position embedding of queries or keys ``x`` (B, H, T, D): each pair of channels
    ``(i, i + D/2)`` of step ``t`` turned by the angle ``t * base ** (-2i / D)``."""
    steps, width = x.shape[-2], x.shape[-1]
    half = width // 2
    rate = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angle = torch.arange(steps, device=x.device, dtype=torch.float32).unsqueeze(1) * rate
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half : 2 * half]
    turned = torch.cat([first * cos - second * sin, first * sin + second * cos], -1)
    return torch.cat([turned, x[..., 2 * half :]], -1)


def alibi_slopes(heads: int) -> Tensor:
    """ALiBi's slope per head: the geometric sequence ``2 ** (-8 h / heads)``, h = 1..heads."""
    return torch.tensor([2.0 ** (-8.0 * h / heads) for h in range(1, heads + 1)])


def alibi_bias(slopes: Tensor, steps: int, dtype: torch.dtype) -> Tensor:
    """The causal attention bias of ALiBi: ``-slope * (t - s)`` for s <= t, ``-inf`` after.
    Shape: (heads, steps, steps)."""
    position = torch.arange(steps, device=slopes.device)
    distance = (position.unsqueeze(1) - position.unsqueeze(0)).to(dtype)  # t - s
    bias = -slopes.to(dtype).view(-1, 1, 1) * distance
    return bias.masked_fill(distance < 0, float("-inf"))


class Block(nn.Module):
    """One pre-norm block: causal self-attention, then a feed-forward layer, each added to
    its input."""

    def __init__(self, width: int, heads: int, ff_size: int, position: str) -> None:
        super().__init__()
        self.heads, self.position = heads, position
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, ff_size), nn.GELU(), nn.Linear(ff_size, width))
        if position == "alibi":
            self.slopes: Tensor
            self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, width) -> (B, T, width)."""
        batch, steps, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, steps, 3, self.heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if self.position == "rope":
            q, k = rotate(q), rotate(k)
        if self.position == "alibi":
            bias = alibi_bias(self.slopes, steps, q.dtype)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, steps, width))
        out: Tensor = x + self.ff(self.norm2(x))
        return out


class TransformerModel(Framed):
    """A decoder-only causal Transformer: inputs (T, B, I) to logits (T, B, O). See the
    module's description for the settings."""

    #: The setting that scales its width, and the step between widths (benchmarks/compare.py
    #: matches parameter counts with it).
    width_setting: ClassVar[tuple[str, int]] = ("d_model", 8)

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        d_model: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        ff_size: int = 256,
        position: str = "rope",
        max_positions: int = 2048,
    ) -> None:
        owner = type(self).__name__
        require_positive(owner, input_size=input_size, output_size=output_size,
                         d_model=d_model, num_layers=num_layers, num_heads=num_heads,
                         ff_size=ff_size, max_positions=max_positions)  # fmt: skip
        require(position in POSITIONS, owner, "position", position, f"one of {POSITIONS}")
        require(
            d_model % num_heads == 0 and (d_model // num_heads) % 2 == 0,
            owner,
            "d_model",
            d_model,
            f"a multiple of 2 * num_heads = {2 * num_heads} (an even width per head)",
        )
        super().__init__(input_size, output_size, d_model)
        self.position, self.max_positions = position, max_positions
        if position == "learned":
            self.positions = nn.Embedding(max_positions, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, num_heads, ff_size, position) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def body(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        steps = x.shape[1]
        if self.position == "learned":
            check_positions(type(self).__name__, steps, self.max_positions,
                            ", the positions it has learned")  # fmt: skip
            x = x + self.positions.weight[:steps]
        elif self.position == "sinusoidal":
            x = x + sinusoidal(steps, x.shape[-1], x.device, x.dtype)
        for block in self.blocks:
            x = block(x)
        out: Tensor = self.norm(x)
        return out


register_model("transformer", TransformerModel)
