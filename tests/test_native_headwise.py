"""The xLSTM's head-wise projections in C (``ntm.engines.native.headwise``) against an
einsum in float64, with their gradients: the mLSTM's blocks of 4 by 4 (the vector path for
an even number of heads, the plain one for an odd number) and other block shapes."""

import pytest
import torch

from ntm.engines import native
from ntm.engines.native.headwise import headwise_product, reference

from .conftest import matches_in_float64

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")


@needs_native
@pytest.mark.parametrize(
    ("rows", "heads", "outputs", "size"),
    [((4, 9), 32, 4, 4), ((7,), 3, 4, 4), ((2, 3, 5), 2, 4, 4), ((6,), 4, 3, 5), ((5,), 2, 8, 4),
     ((3,), 1, 1, 1), ((0,), 2, 4, 4)],
)  # fmt: skip
def test_the_native_headwise_product_is_einsums_with_its_gradients(
    rows: tuple[int, ...], heads: int, outputs: int, size: int
) -> None:
    generator = torch.Generator().manual_seed(heads * 100 + outputs * 10 + size)
    exact = [
        torch.randn(*rows, heads * size, generator=generator, dtype=torch.float64),
        torch.randn(heads, outputs, size, generator=generator, dtype=torch.float64),
    ]
    y = matches_in_float64(headwise_product, reference, exact, ("x", "weight"),
                           generator=generator)  # fmt: skip
    assert y.shape == (*rows, heads * outputs)


@needs_native
def test_the_native_headwise_product_refuses_what_it_cannot_run_by_name() -> None:
    x, weight = torch.randn(2, 8), torch.randn(2, 4, 4)
    with pytest.raises(ValueError, match=r"x must be float32 on the CPU, got torch\.float64"):
        headwise_product(x.double(), weight)
    with pytest.raises(ValueError, match=r"x \(2, 8\) and weight \(2, 4, 3\) do not fit"):
        headwise_product(x, torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match=r"weight \(8, 4\) do not fit"):
        headwise_product(x, torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"weight \(2, 0, 4\) do not fit"):
        headwise_product(x, torch.randn(2, 0, 4))
