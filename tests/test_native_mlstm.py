"""The mLSTM's parallel form in C (``ntm.engines.native.mlstm``) against the ``xlstm``
package's ``parallel_stabilized_simple`` in float64, with the gradients of queries, keys,
values and both gates: with input gates far below zero (the normaliser is exp(-m), every
row), far above (it is the row's sum), and between."""

import importlib

import pytest
import torch

from ntm.engines import native
from ntm.engines.native.mlstm import mlstm_parallel

from .conftest import matches_in_float64

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")


def package_form(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gates: torch.Tensor,
                 heads: int) -> torch.Tensor:  # fmt: skip
    """The package's parallel form on the (B, T, H) layout: (B, T, heads, H / heads)."""
    backends = importlib.import_module("xlstm.blocks.mlstm.backends")
    batch, steps, width = q.shape

    def by_head(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, steps, heads, width // heads).transpose(1, 2)

    g = gates.transpose(1, 2).unsqueeze(-1)
    h = backends.parallel_stabilized_simple(by_head(q), by_head(k), by_head(v), g[:, :heads],
                                            g[:, heads:])  # fmt: skip
    return h.transpose(1, 2)


@needs_native
@pytest.mark.parametrize(
    ("shape", "input_gates"),
    [((2, 7, 2, 4), 0.0), ((3, 42, 4, 32), 0.0), ((1, 1, 1, 3), 0.0), ((2, 13, 3, 5), -20.0),
     ((2, 13, 3, 5), 5.0)],
)  # fmt: skip
def test_the_native_mlstm_is_the_packages_parallel_form_with_its_gradients(
    shape: tuple[int, int, int, int], input_gates: float
) -> None:
    pytest.importorskip("xlstm")
    batch, steps, heads, size = shape
    generator = torch.Generator().manual_seed(sum(shape))
    exact = [torch.randn(batch, steps, heads * size, generator=generator, dtype=torch.float64)
             for _ in range(3)]  # fmt: skip
    gates = 2 * torch.randn(batch, steps, 2 * heads, generator=generator, dtype=torch.float64)
    gates[..., :heads] += input_gates
    matches_in_float64(lambda *t: mlstm_parallel(*t, heads), lambda *t: package_form(*t, heads),
                       [*exact, gates], ("q", "k", "v", "gates"), gradient_rtol=1e-3,
                       generator=generator)  # fmt: skip


@needs_native
def test_the_native_mlstm_refuses_what_it_cannot_run_by_name() -> None:
    q, gates = torch.randn(2, 5, 8), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"k must be float32 on the CPU, got torch\.float64"):
        mlstm_parallel(q, q.double(), q, gates, 2)
    with pytest.raises(ValueError, match=r"gates \(2, 5, 4\) do not fit 3 heads"):
        mlstm_parallel(q, q, q, gates, 3)
    with pytest.raises(ValueError, match=r"gates \(2, 5, 3\) do not fit 2 heads"):
        mlstm_parallel(q, q, q, gates[..., :3], 2)
    with pytest.raises(ValueError, match=r"heads must be at least 1, got 0"):
        mlstm_parallel(q, q, q, gates, 0)
