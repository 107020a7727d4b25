"""Invariants, gradients and numerical safety of the addressing functions."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from ntm.models.ntm import addressing

B, H, N, M, S = 3, 2, 7, 5, 3


def simplex(
    *shape: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape, generator=generator, dtype=dtype), -1)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_content_weights_are_a_distribution(gen: torch.Generator) -> None:
    memory = torch.randn(B, N, M, generator=gen)
    key = torch.randn(B, H, M, generator=gen)
    strength = torch.rand(B, H, generator=gen) * 10
    w = addressing.content_weights(memory, key, strength)
    assert w.shape == (B, H, N)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H))


def content_weights_by_loop(
    memory: torch.Tensor, key: torch.Tensor, strength: torch.Tensor, eps: float
) -> torch.Tensor:
    """The paper's content addressing slot by slot in Python floats, with the eps convention
    that ``content_weights`` documents: inside each square root of the cosine's norms."""
    batch, heads, _ = key.shape
    slots = memory.shape[1]
    out = torch.empty(batch, heads, slots, dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            k = key[b, h].tolist()
            key_norm = math.sqrt(sum(x * x for x in k) + eps)
            scores = []
            for i in range(slots):
                row = memory[b, i].tolist()
                dot = sum(x * y for x, y in zip(k, row, strict=True))
                row_norm = math.sqrt(sum(y * y for y in row) + eps)
                scores.append(float(strength[b, h]) * dot / (key_norm * row_norm))
            top = max(scores)  # subtracted before exp: the softmax is unchanged, exp can't overflow
            exps = [math.exp(score - top) for score in scores]
            for i in range(slots):
                out[b, h, i] = exps[i] / sum(exps)
    return out


@pytest.mark.parametrize(
    ("shape", "eps"),
    [((1, 1, 4, 3), 1e-8), ((3, 2, 7, 5), 1e-8), ((2, 4, 6, 1), 1e-8), ((2, 3, 5, 4), 0.5)],
)
def test_content_weights_match_a_loop_over_slots(
    gen: torch.Generator, shape: tuple[int, int, int, int], eps: float
) -> None:
    batch, heads, slots, width = shape
    memory = torch.randn(batch, slots, width, generator=gen, dtype=torch.float64)
    memory[0, slots // 2] = 0.0  # an all-zero row: 0/0 without the eps
    memory[-1, 0] *= 1e-3  # a short row, where the eps goes matters most
    key = torch.randn(batch, heads, width, generator=gen, dtype=torch.float64)
    # From nearly uniform to nearly one-hot.
    strength = torch.rand(batch, heads, generator=gen, dtype=torch.float64) * 20
    strength[0, 0] = 0.01
    strength[-1, -1] = 60.0
    got = addressing.content_weights(memory, key, strength, eps=eps)
    expected = content_weights_by_loop(memory, key, strength, eps)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_content_weights_pick_the_matching_row(gen: torch.Generator) -> None:
    memory = torch.randn(B, N, M, generator=gen)
    key = memory[:, [4, 1]] * 3.0  # cosine ignores scale
    w = addressing.content_weights(memory, key, torch.full((B, H), 100.0))
    assert (w.argmax(-1) == torch.tensor([4, 1])).all()


def test_interpolate_gate_extremes(gen: torch.Generator) -> None:
    content, previous = simplex(B, H, N, generator=gen), simplex(B, H, N, generator=gen)
    torch.testing.assert_close(
        addressing.interpolate(content, previous, torch.ones(B, H, dtype=torch.float64)), content
    )
    torch.testing.assert_close(
        addressing.interpolate(content, previous, torch.zeros(B, H, dtype=torch.float64)), previous
    )


@pytest.mark.parametrize("offset", [-2, -1, 0, 1, 2])
def test_one_hot_shift_equals_roll(gen: torch.Generator, offset: int) -> None:
    k = 2
    w = simplex(B, H, N, generator=gen)
    shift_weights = torch.zeros(B, H, 2 * k + 1, dtype=torch.float64)
    shift_weights[..., offset + k] = 1.0
    torch.testing.assert_close(addressing.shift(w, shift_weights), torch.roll(w, offset, -1))


def test_shift_plus_one_moves_focus_forward() -> None:
    w = torch.zeros(1, 1, N)
    w[..., 3] = 1.0
    out = addressing.shift(w, torch.tensor([[[0.0, 0.0, 1.0]]]))
    assert out[0, 0].argmax() == 4


def test_shift_keeps_a_distribution(gen: torch.Generator) -> None:
    w = simplex(B, H, N, generator=gen)
    out = addressing.shift(w, simplex(B, H, S, generator=gen))
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(B, H, dtype=torch.float64))


def test_shift_rejects_bad_offsets(gen: torch.Generator) -> None:
    w = simplex(B, H, N, generator=gen)
    with pytest.raises(ValueError, match="odd size"):
        addressing.shift(w, simplex(B, H, 4, generator=gen))


def test_sharpen_gamma_one_changes_nothing(gen: torch.Generator) -> None:
    w = simplex(B, H, N, generator=gen)
    torch.testing.assert_close(
        addressing.sharpen(w, torch.ones(B, H, dtype=torch.float64), eps=0.0), w
    )


def test_sharpen_concentrates(gen: torch.Generator) -> None:
    w = simplex(B, H, N, generator=gen)
    out = addressing.sharpen(w, torch.full((B, H), 3.0, dtype=torch.float64))
    torch.testing.assert_close(out.sum(-1), torch.ones(B, H, dtype=torch.float64))
    assert (out.max(-1).values >= w.max(-1).values).all()


def test_address_is_a_distribution(gen: torch.Generator) -> None:
    w = addressing.address(
        torch.randn(B, N, M, generator=gen),
        simplex(B, H, N, generator=gen, dtype=torch.float32),
        torch.randn(B, H, M, generator=gen),
        torch.rand(B, H, generator=gen) * 5,
        torch.rand(B, H, generator=gen),
        simplex(B, H, S, generator=gen, dtype=torch.float32),
        1 + torch.rand(B, H, generator=gen) * 5,
    )
    assert w.shape == (B, H, N)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H))


def _inputs(gen: torch.Generator) -> dict[str, torch.Tensor]:
    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.double().requires_grad_()

    return {
        "memory": leaf(torch.randn(B, N, M, generator=gen)),
        "previous": leaf(simplex(B, H, N, generator=gen)),
        "key": leaf(torch.randn(B, H, M, generator=gen)),
        "strength": leaf(torch.rand(B, H, generator=gen) * 3),
        "gate": leaf(torch.rand(B, H, generator=gen)),
        "shift_weights": leaf(simplex(B, H, S, generator=gen)),
        "gamma": leaf(1 + torch.rand(B, H, generator=gen) * 3),
    }


def test_gradcheck_every_function(gen: torch.Generator) -> None:
    x = _inputs(gen)
    assert gradcheck(addressing.cosine_similarity, (x["memory"], x["key"]))
    assert gradcheck(addressing.content_weights, (x["memory"], x["key"], x["strength"]))
    content = simplex(B, H, N, generator=gen).requires_grad_()
    assert gradcheck(addressing.interpolate, (content, x["previous"], x["gate"]))
    assert gradcheck(addressing.shift, (x["previous"], x["shift_weights"]))
    assert gradcheck(addressing.sharpen, (x["previous"], x["gamma"]))
    assert gradcheck(
        addressing.address,
        tuple(
            x[k]
            for k in ("memory", "previous", "key", "strength", "gate", "shift_weights", "gamma")
        ),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "case",
    ["zero_rows", "zero_key", "one_hot_previous", "zero_previous", "huge_strength", "huge_gamma"],
)
def test_finite_values_and_gradients(gen: torch.Generator, case: str, dtype: torch.dtype) -> None:
    x = {k: v.detach().to(dtype) for k, v in _inputs(gen).items()}
    if case == "zero_rows":
        x["memory"][:, ::2] = 0.0
        x["memory"][0] = 0.0
    elif case == "zero_key":
        x["key"] = torch.zeros_like(x["key"])
    elif case == "one_hot_previous":
        x["previous"] = torch.zeros_like(x["previous"])
        x["previous"][..., 2] = 1.0
        x["gate"] = torch.zeros_like(x["gate"])
    elif case == "zero_previous":
        x["previous"] = torch.zeros_like(x["previous"])
        x["gate"] = torch.zeros_like(x["gate"])
    elif case == "huge_strength":
        x["strength"] = torch.full_like(x["strength"], 1e4)
    elif case == "huge_gamma":
        x["gamma"] = torch.full_like(x["gamma"], 50.0)
    for v in x.values():
        v.requires_grad_()
    w = addressing.address(**x)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, dtype=dtype))
    (w * torch.randn(w.shape, generator=gen, dtype=dtype)).sum().backward()
    for name, v in x.items():
        assert v.grad is not None and torch.isfinite(v.grad).all(), name


def test_functions_do_not_modify_inputs(gen: torch.Generator) -> None:
    x = {k: v.detach() for k, v in _inputs(gen).items()}
    copies = {k: v.clone() for k, v in x.items()}
    addressing.address(**x)
    for k, value in x.items():
        assert torch.equal(value, copies[k]), k
