"""Mamba's native engine (``ntm.engines.native.mamba``): the selective scan in C against the
recurrence written out in float64, and the model on it against ``mambapy``'s own blocks."""

import pytest
import torch
import torch.nn.functional as F

from ntm.engines import native
from ntm.engines.native.mamba import selective_scan

from .conftest import matches_in_float64

pytest.importorskip("mambapy")
from ntm.models.mamba import MambaModel

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")


def _recurrence(*tensors: torch.Tensor) -> torch.Tensor:
    """h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t from zero, y_t = C_t . h_t, step by step."""
    x, step, state_matrix, input_matrix, output_matrix = tensors
    state = x.new_zeros(x.shape[0], *state_matrix.shape)  # (B, E, N)
    outputs = []
    for t in range(x.shape[1]):
        decay = torch.exp(step[:, t, :, None] * state_matrix)
        drive = (step[:, t] * x[:, t])[:, :, None] * input_matrix[:, t, None, :]
        state = decay * state + drive
        outputs.append((state * output_matrix[:, t, None, :]).sum(-1))
    return torch.stack(outputs, 1)


def _inputs(batch: int, steps: int, channels: int, size: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 1000 + steps * 10 + size)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    return [
        normal(batch, steps, channels),
        F.softplus(normal(batch, steps, channels)),  # Δ > 0
        -3 * torch.rand(channels, size, generator=generator, dtype=torch.float64),  # A < 0
        normal(batch, steps, size),
        normal(batch, steps, size),
    ]


@needs_native
@pytest.mark.parametrize("shape", [(3, 17, 10, 16), (2, 1, 5, 4), (1, 9, 7, 13)])
def test_the_native_scan_is_the_recurrence_with_its_gradients(shape: tuple) -> None:
    exact = _inputs(*shape)
    y = matches_in_float64(selective_scan, _recurrence, exact, ("x", "delta", "A", "B", "C"))
    with torch.no_grad():
        assert torch.equal(selective_scan(*(t.float() for t in exact)), y)


@needs_native
def test_the_native_scan_refuses_what_it_cannot_run_by_name() -> None:
    x, step, state_matrix, input_matrix, output_matrix = (t.float() for t in _inputs(2, 5, 3, 4))
    with pytest.raises(ValueError, match="state_matrix must be float32 on the CPU"):
        selective_scan(x, step, state_matrix.double(), input_matrix, output_matrix)
    with pytest.raises(ValueError, match=r"x must be float32 on the CPU, got torch.int64"):
        selective_scan(x.long(), step, state_matrix, input_matrix, output_matrix)
    with pytest.raises(
        ValueError, match=r"input_matrix has shape \(2, 4, 4\), expected \(B=2, T=5, N=4\)"
    ):
        selective_scan(x, step, state_matrix, input_matrix[:, :4], output_matrix)
    with pytest.raises(ValueError, match=r"state_matrix has shape \(4, 4\), expected \(E=3, N\)"):
        selective_scan(x, step, state_matrix[:1].expand(4, 4), input_matrix, output_matrix)
    # A gradient of its gradient is refused, not silently wrong.
    leaves = [t.requires_grad_() for t in (x, step, state_matrix, input_matrix, output_matrix)]
    (grad_x,) = torch.autograd.grad(selective_scan(*leaves).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        grad_x.sum().backward()


@needs_native
def test_mamba_runs_natively_on_the_cpu_in_float32_and_eager_in_float64() -> None:
    model = MambaModel(3, 2, d_model=8, d_state=4)
    assert model.engine == "auto"
    assert model.engine_for(torch.device("cpu"), torch.float32).engine == "native"
    choice = model.engine_for(torch.device("cpu"), torch.float64)
    assert choice.engine == "eager"
    assert choice.reason is not None and "float32" in choice.reason
    assert "engine='auto'" in repr(model)


def _run(model: MambaModel, engine: str, inputs: torch.Tensor) -> tuple:
    model.engine = engine
    model.zero_grad()
    outputs = model(inputs)
    (outputs.square().sum()).backward()
    return outputs.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@needs_native
@pytest.mark.parametrize("layers", [1, 2])
def test_mamba_on_the_native_scan_computes_mambapys_blocks_with_their_gradients(
    layers: int,
) -> None:
    torch.manual_seed(layers)
    model = MambaModel(5, 3, d_model=12, num_layers=layers, d_state=6, d_conv=3)
    inputs = torch.randn(19, 4, 5)
    outputs, grads = _run(model, "native", inputs)
    expected, expected_grads = _run(model, "eager", inputs)
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=1e-4)
    assert expected_grads.keys() == grads.keys()
    for name, want in expected_grads.items():
        scale = want.abs().max().item()
        torch.testing.assert_close(
            grads[name], want, atol=1e-5 * max(scale, 1e-3), rtol=1e-3, msg=name
        )
    model.engine = "native"
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), outputs)
