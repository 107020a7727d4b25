"""The causal depthwise convolution and SiLU in C (``ntm.engines.native.conv``) against
PyTorch's grouped convolution in float64, with its gradients."""

import pytest
import torch

from ntm.engines import native
from ntm.engines.native.conv import causal_conv_silu, reference

from .conftest import matches_in_float64

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")


@needs_native
@pytest.mark.parametrize(
    ("shape", "with_bias"),
    [((3, 17, 10, 4), True), ((2, 1, 5, 4), True), ((1, 3, 7, 6), False), ((4, 9, 3, 1), True)],
)
def test_the_native_convolution_is_pytorchs_with_its_gradients(
    shape: tuple[int, int, int, int], with_bias: bool
) -> None:
    batch, steps, channels, taps = shape  # a kernel may be longer than the sequence
    generator = torch.Generator().manual_seed(sum(shape))
    exact = [
        torch.randn(batch, steps, channels, generator=generator, dtype=torch.float64),
        torch.randn(channels, 1, taps, generator=generator, dtype=torch.float64),
        torch.randn(channels, generator=generator, dtype=torch.float64),
    ][: 3 if with_bias else 2]
    bias, names = ([], ("x", "weight", "bias")) if with_bias else ([None], ("x", "weight"))
    matches_in_float64(lambda *t: causal_conv_silu(*t, *bias), lambda *t: reference(*t, *bias),
                       exact, names, rtol=1e-5, generator=generator)  # fmt: skip


@needs_native
def test_the_native_convolution_refuses_what_it_cannot_run_by_name() -> None:
    x, weight = torch.randn(2, 5, 3), torch.randn(3, 1, 4)
    with pytest.raises(ValueError, match=r"x must be float32 on the CPU, got torch\.float64"):
        causal_conv_silu(x.double(), weight, None)
    with pytest.raises(ValueError, match=r"weight \(4, 1, 4\) do not fit"):
        causal_conv_silu(x, torch.randn(4, 1, 4), None)
    with pytest.raises(ValueError, match=r"bias has shape \(2,\), expected \(3,\)"):
        causal_conv_silu(x, weight, torch.randn(2))
