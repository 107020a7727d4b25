"""The Differentiable Neural Computer: its pure functions (hand-worked cases, invariants,
gradients) and its modules (shapes, step and sequence agreement, a step from the paper)."""

import dataclasses
import gc
import inspect
import itertools
import math
import weakref
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from ntm.models.dnc import addressing as dnc
from ntm.models.dnc.config import DNCConfig, task_dnc_config
from ntm.models.dnc.model import DNC, DNCCell, DNCState, DNCTrace

B, R, N, M = 3, 2, 6, 4
F64 = torch.float64
SMALL = {"controller_size": 8, "memory_size": 6, "word_size": 4, "num_read_heads": 2}
#: The tiny model of the whole-step gradcheck.
TINY = {
    "controller_size": 5,
    "controller_layers": 2,
    "num_read_heads": 2,
    "memory_size": 4,
    "word_size": 3,
}


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def simplex(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.softmax(2 * torch.randn(*shape, generator=generator, dtype=F64), -1)


def weighting(*shape: int, generator: torch.Generator) -> torch.Tensor:
    """A valid write or read weighting: entries in [0, 1] summing to at most 1."""
    total = torch.rand(*shape[:-1], 1, generator=generator, dtype=F64)
    return simplex(*shape, generator=generator) * total


def unit(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, dtype=F64)


def one_hot(index: int, slots: int = N) -> torch.Tensor:
    """A (1, slots) weighting with all weight on ``index``."""
    return F.one_hot(torch.tensor([index]), slots).to(F64)


def same(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-12) -> None:
    torch.testing.assert_close(
        actual, expected, rtol=0.0, atol=atol, msg=lambda message: f"{what}: {message}"
    )


def tensor(values: list[object]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# ---------------------------------------------------------------- pure functions: by hand


def test_retention_by_hand() -> None:
    free_gates = tensor([[0.5, 1.0]])
    read_weights = tensor([[[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]]])
    # psi[i] = (1 - 0.5 w1[i]) (1 - 1.0 w2[i])
    same(dnc.retention(free_gates, read_weights), tensor([[0.9, 0.3, 0.5]]), "retention")


def test_usage_by_hand() -> None:
    previous, write_weights = tensor([[0.5, 0.0, 1.0]]), tensor([[0.5, 1.0, 0.0]])
    psi = tensor([[1.0, 0.5, 1.0]])
    # u + w - u w = [0.75, 1, 1], then times psi.
    same(dnc.usage(previous, write_weights, psi), tensor([[0.75, 0.5, 1.0]]), "usage")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_slot_written_in_full_is_used_exactly_in_full(dtype: torch.dtype) -> None:
    # u + w - u w rounds to just below 1 for about a fifth of these usages (1.3 - 0.3 < 1);
    # u + (1 - u) w is exactly 1 for all of them, so a full slot keeps no allocation weight.
    previous = torch.linspace(0.0, 1.0, 1001, dtype=dtype).unsqueeze(0)
    full = torch.ones_like(previous)
    assert (previous + full - previous * full != 1).any()  # the paper's order falls short
    used = dnc.usage(previous, full, torch.ones_like(previous))
    assert torch.equal(used, torch.ones_like(previous))
    assert torch.equal(dnc.allocation(used), torch.zeros_like(used))


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # order 1 (0.2), 0 (0.5), 2 (1.0): a = [0.5 * 0.2, 0.8, 0 * 0.2 * 0.5]
        ([0.5, 0.2, 1.0], [0.1, 0.8, 0.0]),
        # order 2, 0, 1, 3: 0.9, 0.7 * 0.1, 0.4 * 0.1 * 0.3, 0.1 * 0.1 * 0.3 * 0.6
        ([0.3, 0.6, 0.1, 0.9], [0.07, 0.012, 0.9, 0.0018]),
        ([0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]),  # ties go in index order
        ([0.4, 0.0, 0.7, 0.0], [0.0, 1.0, 0.0, 0.0]),  # the first free slot takes it all
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]),  # nothing left to allocate
        ([0.5, 0.5], [0.5, 0.25]),
    ],
)
def test_allocation_by_hand(usage: list[float], expected: list[float]) -> None:
    same(dnc.allocation(tensor([usage])), tensor([expected]), f"allocation of {usage}")


def allocation_by_loop(usage: torch.Tensor) -> torch.Tensor:
    """The paper's allocation in Python floats, one batch row at a time."""
    out = torch.zeros_like(usage)
    for b, row in enumerate(usage.tolist()):
        free = 1.0
        for slot in sorted(range(len(row)), key=lambda i: row[i]):
            out[b, slot] = (1.0 - row[slot]) * free
            free *= row[slot]
    return out


def test_allocation_matches_a_loop_and_its_invariants(gen: torch.Generator) -> None:
    usage = unit(5, 9, generator=gen)
    usage[0, 3] = 0.0
    usage[1] = usage[1].round(decimals=1)  # ties
    a = dnc.allocation(usage)
    same(a, allocation_by_loop(usage), "allocation")
    assert ((a >= 0) & (a <= 1)).all()
    # What is not allocated is the chance that every slot is in use: 1 - sum a = prod u.
    same(a.sum(-1), 1.0 - usage.prod(-1), "sum of allocation")


def test_write_weighting_and_precedence_by_hand() -> None:
    allocation, content = tensor([[0.1, 0.8, 0.1]]), tensor([[0.5, 0.25, 0.25]])
    half = tensor([0.5])
    # 0.5 (0.5 a + 0.5 c)
    expected = tensor([[0.15, 0.2625, 0.0875]])
    same(dnc.write_weighting(allocation, content, half, half), expected, "write weighting")
    same(dnc.write_weighting(allocation, content, tensor([1.0]), tensor([1.0])), allocation, "a")
    same(dnc.write_weighting(allocation, content, tensor([0.0]), tensor([1.0])), content, "c")
    same(dnc.write_weighting(allocation, content, half, tensor([0.0])), 0 * content, "off")
    # (1 - 0.75) p + w
    p = dnc.precedence(tensor([[0.5, 0.5, 0.0]]), tensor([[0.0, 0.5, 0.25]]))
    same(p, tensor([[0.125, 0.625, 0.25]]), "precedence")


def test_links_and_directions_by_hand() -> None:
    """Write slot 0, then slot 2, then slot 1: the links record 0 -> 2 -> 1."""
    link, precedence = torch.zeros(1, N, N, dtype=F64), torch.zeros(1, N, dtype=F64)
    for slot in (0, 2, 1):
        write_weights = one_hot(slot)
        link = dnc.link(link, precedence, write_weights)
        precedence = dnc.precedence(precedence, write_weights)
        same(precedence, write_weights, "precedence after a one-hot write")
    expected = torch.zeros(1, N, N, dtype=F64)
    expected[0, 2, 0] = 1.0  # slot 2 written after slot 0
    expected[0, 1, 2] = 1.0  # slot 1 written after slot 2
    same(link, expected, "links")
    reads = torch.cat([one_hot(0), one_hot(2), one_hot(1)]).unsqueeze(0)  # (1, 3, N)
    forward, backward = dnc.directional_weights(link, reads)
    # From 0 forward is 2, from 2 forward is 1, from 1 (the last written) forward is nothing.
    same(forward, torch.cat([one_hot(2), one_hot(1), 0 * one_hot(0)]).unsqueeze(0), "forward")
    same(backward, torch.cat([0 * one_hot(0), one_hot(0), one_hot(2)]).unsqueeze(0), "backward")


def test_two_writes_link_the_second_slot_to_the_first() -> None:
    link = torch.zeros(1, N, N, dtype=F64)
    first = dnc.link(link, torch.zeros(1, N, dtype=F64), one_hot(0))
    same(first, link, "no links after the first write")
    second = dnc.link(first, one_hot(0), one_hot(1))
    assert second[0, 1, 0] == 1.0
    assert second.sum() == 1.0
    forward, _ = dnc.directional_weights(second, one_hot(0).unsqueeze(1))
    _, backward = dnc.directional_weights(second, one_hot(1).unsqueeze(1))
    same(forward[0, 0], one_hot(1)[0], "forward from slot 0")
    same(backward[0, 0], one_hot(0)[0], "backward from slot 1")


@pytest.mark.parametrize(("mode", "index"), [("backward", 0), ("content", 1), ("forward", 2)])
def test_read_weighting_with_one_hot_modes_returns_that_component(
    gen: torch.Generator, mode: str, index: int
) -> None:
    components = [simplex(B, R, N, generator=gen) for _ in dnc.READ_MODES]
    modes = F.one_hot(torch.full((B, R), index), 3).to(F64)
    assert dnc.READ_MODES[index] == mode
    same(dnc.read_weighting(*components, modes), components[index], mode)


def test_oneplus() -> None:
    same(dnc.oneplus(tensor([0.0])), tensor([1.0 + math.log(2.0)]), "oneplus(0)")
    x = torch.linspace(-50, 50, 101, dtype=F64)
    y = dnc.oneplus(x)
    assert (y >= 1).all()
    assert (y.diff() >= 0).all()
    assert (y[30:].diff() > 0).all()  # below -20, 1 + e^x rounds to 1
    same(y[-1], tensor(51.0), "oneplus of a large x", atol=1e-9)


# ----------------------------------------------------------- pure functions: invariants


def test_shapes_and_ranges_of_one_memory_step(gen: torch.Generator) -> None:
    """Every function on valid inputs (weightings summing to at most 1, gates and usages in
    [0, 1]) returns the documented shape, with values that are again valid inputs."""
    free_gates = unit(B, R, generator=gen)
    read_weights = weighting(B, R, N, generator=gen)
    previous_writes = weighting(B, N, generator=gen)
    psi = dnc.retention(free_gates, read_weights)
    assert psi.shape == (B, N)
    assert ((psi >= 0) & (psi <= 1)).all()
    u = dnc.usage(unit(B, N, generator=gen), previous_writes, psi)
    assert u.shape == (B, N)
    assert ((u >= 0) & (u <= 1 + 1e-12)).all()
    a = dnc.allocation(u)
    assert a.shape == (B, N)
    assert ((a >= 0) & (a <= 1)).all() and (a.sum(-1) <= 1 + 1e-12).all()
    gates = unit(2, B, generator=gen)
    w = dnc.write_weighting(a, simplex(B, N, generator=gen), gates[0], gates[1])
    assert w.shape == (B, N)
    assert (w >= 0).all() and (w.sum(-1) <= 1 + 1e-12).all()
    p = dnc.precedence(weighting(B, N, generator=gen), w)
    assert p.shape == (B, N)
    assert (p >= 0).all() and (p.sum(-1) <= 1 + 1e-12).all()
    forward, backward = dnc.directional_weights(torch.zeros(B, N, N, dtype=F64), read_weights)
    assert forward.shape == backward.shape == (B, R, N)
    modes = simplex(B, R, 3, generator=gen)
    r = dnc.read_weighting(backward, simplex(B, R, N, generator=gen), forward, modes)
    assert r.shape == (B, R, N)


def test_retention_without_freeing_keeps_everything(gen: torch.Generator) -> None:
    psi = dnc.retention(torch.zeros(B, R, dtype=F64), weighting(B, R, N, generator=gen))
    same(psi, torch.ones(B, N, dtype=F64), "retention with zero free gates")


def test_usage_stays_in_the_unit_interval(gen: torch.Generator) -> None:
    for _ in range(5):
        u = dnc.usage(*(unit(B, N, generator=gen) for _ in range(3)))
        assert ((u >= 0) & (u <= 1 + 1e-12)).all()
    corners = torch.tensor([0.0, 1.0], dtype=F64)
    grid = torch.cartesian_prod(corners, corners, corners)  # every corner of the unit cube
    u = dnc.usage(grid[:, :1], grid[:, 1:2], grid[:, 2:])
    assert ((u >= 0) & (u <= 1 + 1e-12)).all()


def run_links(
    steps: int, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(link, precedence, write weights, read weights) before each of ``steps`` steps that
    start from zero and write valid weightings."""
    link, precedence = torch.zeros(B, N, N, dtype=F64), torch.zeros(B, N, dtype=F64)
    history = []
    for _ in range(steps):
        write_weights = weighting(B, N, generator=generator)
        history.append((link, precedence, write_weights, weighting(B, R, N, generator=generator)))
        link = dnc.link(link, precedence, write_weights)
        precedence = dnc.precedence(precedence, write_weights)
    history.append((link, precedence, write_weights, weighting(B, R, N, generator=generator)))
    return history


def test_links_stay_valid_over_many_steps(gen: torch.Generator) -> None:
    for link, precedence, _, read_weights in run_links(8, gen)[1:]:
        assert link.shape == (B, N, N)
        same(link.diagonal(dim1=-2, dim2=-1), torch.zeros(B, N, dtype=F64), "diagonal")
        assert ((link >= 0) & (link <= 1 + 1e-12)).all()
        assert (link.sum(-1) <= 1 + 1e-12).all(), "a row sums to more than 1"
        assert (link.sum(-2) <= 1 + 1e-12).all(), "a column sums to more than 1"
        assert (precedence >= 0).all() and (precedence.sum(-1) <= 1 + 1e-12).all()
        # So one step along the links from a valid weighting is again one.
        for direction in dnc.directional_weights(link, read_weights):
            assert (direction >= 0).all() and (direction.sum(-1) <= 1 + 1e-12).all()


@pytest.mark.parametrize(("read_heads", "word_size"), [(1, 1), (1, 20), (2, 3), (4, 16)])
def test_interface_layout_size_and_order(read_heads: int, word_size: int) -> None:
    layout = dnc.InterfaceLayout(read_heads, word_size)
    r, m = read_heads, word_size
    assert layout.size == r * m + 3 * m + 5 * r + 3
    raw = torch.arange(2 * layout.size, dtype=F64).reshape(2, layout.size)
    face = layout.activate(raw)
    # The paper's order: read keys, read strengths, write key, write strength, erase,
    # write vector, free gates, allocation gate, write gate, read modes.
    starts = [0, *itertools.accumulate(layout.sizes)][:-1]
    offsets = dict(zip(face._fields, starts, strict=True))
    same(face.read_keys, raw[:, : r * m].reshape(2, r, m), "read keys")
    write_key = raw[:, offsets["write_key"] : offsets["write_key"] + m]
    same(face.write_key, write_key.unsqueeze(1), "write key")
    vector = raw[:, offsets["write_vector"] : offsets["write_vector"] + m]
    same(face.write_vector, vector.unsqueeze(1), "write vector")
    same(face.write_gate, torch.sigmoid(raw[:, offsets["write_gate"]]), "write gate")
    shapes = {
        "read_keys": (2, r, m),
        "read_strengths": (2, r),
        "write_key": (2, 1, m),
        "write_strength": (2, 1),
        "erase": (2, 1, m),
        "write_vector": (2, 1, m),
        "free_gates": (2, r),
        "allocation_gate": (2,),
        "write_gate": (2,),
        "read_modes": (2, r, 3),
    }
    assert {name: tuple(value.shape) for name, value in face._asdict().items()} == shapes


def test_interface_activations_ranges(gen: torch.Generator) -> None:
    layout = dnc.InterfaceLayout(3, 5)
    face = layout.activate(8 * torch.randn(50, layout.size, generator=gen, dtype=F64))
    assert (face.read_strengths >= 1).all() and (face.write_strength >= 1).all()
    for gate in (face.erase, face.free_gates, face.allocation_gate, face.write_gate):
        assert ((gate > 0) & (gate < 1)).all()
    assert (face.read_modes > 0).all()
    same(face.read_modes.sum(-1), torch.ones(50, 3, dtype=F64), "read modes")


def test_link_and_directions_agree_with_link_then_directional_weights(
    gen: torch.Generator,
) -> None:
    for link, precedence, write_weights, read_weights in run_links(5, gen):
        fused = dnc.link_and_directions(link, precedence, write_weights, read_weights)
        new = dnc.link(link, precedence, write_weights)
        for name, a, b in zip(
            ("link", "forward", "backward"),
            fused,
            (new, *dnc.directional_weights(new, read_weights)),
            strict=True,
        ):
            same(a, b, name, atol=1e-14)


def link_inputs(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Arbitrary inputs of :func:`dnc.link` (the algebra holds beyond valid weightings)."""
    return tuple(
        torch.randn(*shape, generator=generator, dtype=F64).requires_grad_()
        for shape in ((B, N, N), (B, N), (B, N), (B, R, N))
    )


def by_functions(*inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    link_, precedence, write_weights, read_weights = inputs
    new = dnc.link(link_, precedence, write_weights)
    return (new, *dnc.directional_weights(new, read_weights))


#: Losses on (link, forward, backward); some leave an output unused, so its gradient
#: reaches the custom backward as None (or zeros).
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "all": lambda link, f, b: (link * link.detach().cos()).sum() + f.pow(2).sum() - b.sin().sum(),
    "forward only": lambda link, f, b: f.pow(2).sum(),
    "backward only": lambda link, f, b: (b * torch.arange(N)).sum(),
    "link only": lambda link, f, b: link.pow(3).sum(),
    "directions only": lambda link, f, b: (f * b).sum(),
}


@pytest.mark.parametrize("loss", LOSSES)
def test_link_and_directions_gradients_agree(gen: torch.Generator, loss: str) -> None:
    inputs = link_inputs(gen)
    expected = torch.autograd.grad(LOSSES[loss](*by_functions(*inputs)), inputs, allow_unused=True)
    got = torch.autograd.grad(
        LOSSES[loss](*dnc.link_and_directions(*inputs)), inputs, allow_unused=True
    )
    for name, a, b in zip(("link", "precedence", "write", "read"), got, expected, strict=True):
        # The pure path leaves read weights out of the graph when only the link is used.
        zeros = torch.zeros_like(inputs[0 if name == "link" else 3])
        same(zeros if a is None else a, zeros if b is None else b, f"d {name}", atol=1e-12)


def test_link_and_directions_needs_no_gradient_for_constant_inputs(
    gen: torch.Generator,
) -> None:
    link_, precedence, write_weights, read_weights = (x.detach() for x in link_inputs(gen))
    write_weights.requires_grad_()
    _, forward, _ = dnc.link_and_directions(link_, precedence, write_weights, read_weights)
    (got,) = torch.autograd.grad(forward.sum(), write_weights)
    _, forward, _ = by_functions(link_, precedence, write_weights, read_weights)
    (expected,) = torch.autograd.grad(forward.sum(), write_weights)
    same(got, expected, "d write weights")


def distinct_usage(generator: torch.Generator) -> torch.Tensor:
    """Usages in (0.05, 0.95) at least 0.9 / (2N) apart: no tie within gradcheck's step."""
    perm = torch.stack([torch.randperm(N, generator=generator) for _ in range(B)])
    return (0.05 + 0.9 * (perm.to(F64) + 0.5) / N).requires_grad_()


#: name -> (function, inputs from a generator): every pure function, for gradcheck and for
#: the checks that no input is changed in place and that all-zero inputs stay finite.
PURE: dict[str, tuple[Callable[..., object], Callable[[torch.Generator], tuple[torch.Tensor, ...]]]]
PURE = {
    "retention": (
        dnc.retention,
        lambda g: (unit(B, R, generator=g), weighting(B, R, N, generator=g)),
    ),
    "usage": (dnc.usage, lambda g: tuple(unit(B, N, generator=g) for _ in range(3))),
    "allocation": (dnc.allocation, lambda g: (distinct_usage(g),)),
    "write_weighting": (
        dnc.write_weighting,
        lambda g: (
            weighting(B, N, generator=g),
            simplex(B, N, generator=g),
            unit(B, generator=g),
            unit(B, generator=g),
        ),
    ),
    "precedence": (
        dnc.precedence,
        lambda g: (weighting(B, N, generator=g), weighting(B, N, generator=g)),
    ),
    "link": (dnc.link, lambda g: link_inputs(g)[:3]),
    "directional_weights": (
        dnc.directional_weights,
        lambda g: (unit(B, N, N, generator=g), weighting(B, R, N, generator=g)),
    ),
    "read_weighting": (
        dnc.read_weighting,
        lambda g: (
            *(weighting(B, R, N, generator=g) for _ in range(3)),
            simplex(B, R, 3, generator=g),
        ),
    ),
    "oneplus": (dnc.oneplus, lambda g: (torch.randn(B, N, generator=g, dtype=F64),)),
    "activate": (
        dnc.InterfaceLayout(R, M).activate,
        lambda g: (torch.randn(B, dnc.InterfaceLayout(R, M).size, generator=g, dtype=F64),),
    ),
    "link_and_directions": (dnc.link_and_directions, link_inputs),
}


def outputs(result: object) -> tuple[torch.Tensor, ...]:
    if isinstance(result, torch.Tensor):
        return (result,)
    assert isinstance(result, tuple)
    return tuple(result)


@pytest.mark.parametrize("name", PURE)
def test_gradcheck(gen: torch.Generator, name: str) -> None:
    function, make = PURE[name]
    inputs = tuple(x.detach().requires_grad_() for x in make(gen))
    assert gradcheck(lambda *xs: outputs(function(*xs)), inputs)


@pytest.mark.parametrize("name", PURE)
def test_inputs_are_not_changed_in_place(gen: torch.Generator, name: str) -> None:
    function, make = PURE[name]
    inputs = tuple(x.detach() for x in make(gen))
    copies = [x.clone() for x in inputs]
    function(*inputs)
    for i, (x, copy) in enumerate(zip(inputs, copies, strict=True)):
        assert torch.equal(x, copy), f"{name} changed input {i}"


@pytest.mark.parametrize("name", PURE)
def test_all_zero_inputs_give_finite_values_and_gradients(gen: torch.Generator, name: str) -> None:
    function, make = PURE[name]
    inputs = tuple(torch.zeros_like(x).requires_grad_() for x in make(gen))
    results = outputs(function(*inputs))
    assert all(torch.isfinite(y).all() for y in results)
    total = sum((y * (1 + torch.rand_like(y))).sum() for y in results)
    for x, grad in zip(inputs, torch.autograd.grad(total, inputs, allow_unused=True), strict=True):
        assert grad is None or torch.isfinite(grad).all(), (name, x.shape)


# ------------------------------------------------------------------------------ modules


def test_initial_state_is_zeros_of_the_documented_shapes() -> None:
    cell = DNCCell(5, 3, controller_layers=2, **SMALL)
    state = cell.initial_state(7)
    assert isinstance(state, DNCState)
    r, n, m, c = 2, 6, 4, 8
    shapes = {
        "memory": (7, n, m),
        "reads": (7, r, m),
        "read_weights": (7, r, n),
        "write_weights": (7, n),
        "usage": (7, n),
        "precedence": (7, n),
        "link": (7, n, n),
        "controller_hidden": (2, 7, c),
        "controller_cell": (2, 7, c),
    }
    assert {name: tuple(value.shape) for name, value in state._asdict().items()} == shapes
    for name, value in state._asdict().items():
        assert not value.any(), name
        assert value.dtype == torch.float32, name


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_model_shapes(batch_first: bool, layers: int) -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, controller_layers=layers, batch_first=batch_first, **SMALL)
    inputs = torch.randn(2, 7, 5) if batch_first else torch.randn(7, 2, 5)
    outputs_, state = model(inputs)
    assert outputs_.shape == ((2, 7, 3) if batch_first else (7, 2, 3))
    assert state.memory.shape == (2, 6, 4)
    assert state.controller_hidden.shape == state.controller_cell.shape == (layers, 2, 8)
    y, new = model.cell(torch.randn(2, 5), state)
    assert y.shape == (2, 3)
    assert all(a.shape == b.shape for a, b in zip(new, state, strict=True))


def test_batch_first_matches_time_major() -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL)
    batch_first = DNC(5, 3, batch_first=True, **SMALL)
    batch_first.load_state_dict(model.state_dict())
    inputs = torch.randn(6, 3, 5)
    same(batch_first(inputs.transpose(0, 1))[0], model(inputs)[0].transpose(0, 1), "outputs")


def test_sequence_equals_stepping_the_cell() -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, controller_layers=2, **SMALL)
    inputs = torch.randn(7, 2, 5)
    outputs_, final = model(inputs)
    state = None
    for t in range(inputs.shape[0]):
        y, state = model.cell(inputs[t], state)
        same(outputs_[t], y, f"step {t} outputs", atol=1e-6)
    assert state is not None
    for name, a, b in zip(DNCState._fields, final, state, strict=True):
        same(a, b, f"final {name}", atol=1e-6)


def test_state_carries_across_calls() -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL)
    inputs = torch.randn(8, 2, 5)
    whole, _ = model(inputs)
    first, state = model(inputs[:3])
    second, _ = model(inputs[3:], state)
    same(torch.cat([first, second]), whole, "outputs", atol=1e-6)


def test_trace_records_every_step_and_its_invariants() -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, engine="eager", **SMALL)  # the trace runs eager: the same operations
    inputs = torch.randn(7, 2, 5)
    outputs_, final, trace = model.trace(inputs)
    assert isinstance(trace, DNCTrace)
    expected_outputs, expected_final = model(inputs)
    same(outputs_, expected_outputs, "outputs", atol=0.0)
    for name, a, b in zip(DNCState._fields, final, expected_final, strict=True):
        same(a, b, f"final {name}", atol=0.0)
    t, b, r, n, m = 7, 2, 2, 6, 4
    shapes = {
        "read_weights": (t, b, r, n),
        "write_weights": (t, b, n),
        "usage": (t, b, n),
        "allocation": (t, b, n),
        "read_modes": (t, b, r, 3),
        "allocation_gate": (t, b),
        "write_gate": (t, b),
        "free_gates": (t, b, r),
        "reads": (t, b, r, m),
        "memory": (t, b, n, m),
        "erase": (t, b, 1, m),
        "write_vector": (t, b, 1, m),
    }
    assert {name: tuple(value.shape) for name, value in trace._asdict().items()} == shapes
    same(trace.read_weights[-1], final.read_weights, "last read weights", atol=0.0)
    same(trace.memory[-1], final.memory, "last memory", atol=0.0)
    same(trace.usage[-1], final.usage, "last usage", atol=0.0)
    tol = 1e-6
    for name in ("read_weights", "write_weights", "allocation"):
        weights = getattr(trace, name)
        assert (weights >= 0).all() and (weights.sum(-1) <= 1 + tol).all(), name
    assert ((trace.usage >= 0) & (trace.usage <= 1 + tol)).all()
    same(trace.read_modes.sum(-1), torch.ones(t, b, r), "read modes", atol=tol)
    for name in ("allocation_gate", "write_gate", "free_gates"):
        gate = getattr(trace, name)
        assert ((gate >= 0) & (gate <= 1)).all(), name


def random_state(cell: DNCCell, batch: int, generator: torch.Generator) -> DNCState:
    """A valid state unlike the initial one: memory, links and weightings all in play, and
    usages distinct (no tie for the allocation's sort)."""
    cfg = cell.config
    r, n = cfg.num_read_heads, cfg.memory_size
    link, precedence = torch.zeros(batch, n, n, dtype=F64), torch.zeros(batch, n, dtype=F64)
    for _ in range(4):
        write_weights = weighting(batch, n, generator=generator)
        link = dnc.link(link, precedence, write_weights)
        precedence = dnc.precedence(precedence, write_weights)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=F64)

    layers = (cfg.controller_layers, batch, cfg.controller_size)
    return DNCState(
        memory=normal(batch, n, cfg.word_size),
        reads=normal(batch, r, cfg.word_size),
        read_weights=weighting(batch, r, n, generator=generator),
        write_weights=weighting(batch, n, generator=generator),
        usage=unit(batch, n, generator=generator),
        precedence=precedence,
        link=link,
        controller_hidden=torch.tanh(normal(*layers)),
        controller_cell=normal(*layers),
    )


def cosine_softmax(
    memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor, eps: float
) -> torch.Tensor:
    norms = (keys.pow(2).sum(-1, keepdim=True) + eps).sqrt() * (
        memory.pow(2).sum(-1) + eps
    ).sqrt().unsqueeze(1)
    return torch.softmax(strengths.unsqueeze(-1) * keys @ memory.transpose(1, 2) / norms, -1)


def reference_step(
    cell: DNCCell, x: torch.Tensor, state: DNCState
) -> tuple[torch.Tensor, DNCState]:
    """One DNC step as /work/shared/reference/paper-notes.md lists it, written apart from
    ``DNCCell``: the interface sliced by hand in the paper's order, the links by
    :func:`dnc.link` and :func:`dnc.directional_weights`."""
    cfg = cell.config
    batch, r, m = x.shape[0], cfg.num_read_heads, cfg.word_size
    layer_input = torch.cat([x, state.reads.reshape(batch, r * m)], 1)
    hidden, cells = [], []
    for i, layer in enumerate(cell.controller):
        below = hidden[-1:]
        h, c = layer(
            torch.cat([layer_input, *below], 1),
            (state.controller_hidden[i], state.controller_cell[i]),
        )
        hidden.append(h)
        cells.append(c)
    xi = cell.interface_layer(torch.cat(hidden, 1)).clamp(-cfg.interface_clip, cfg.interface_clip)
    parts, start = {}, 0
    for name, size in [
        ("read_keys", r * m),
        ("read_strengths", r),
        ("write_key", m),
        ("write_strength", 1),
        ("erase", m),
        ("write_vector", m),
        ("free_gates", r),
        ("allocation_gate", 1),
        ("write_gate", 1),
        ("read_modes", 3 * r),
    ]:
        parts[name] = xi[:, start : start + size]
        start += size
    assert start == xi.shape[1]

    def oneplus(v: torch.Tensor) -> torch.Tensor:
        return 1 + torch.log1p(torch.exp(v))

    psi = (1 - torch.sigmoid(parts["free_gates"]).unsqueeze(-1) * state.read_weights).prod(1)
    usage = (state.usage + state.write_weights - state.usage * state.write_weights) * psi
    allocation = allocation_by_loop(usage.detach())
    write_content = cosine_softmax(
        state.memory,
        parts["write_key"].unsqueeze(1),
        oneplus(parts["write_strength"]),
        cfg.eps,
    )[:, 0]
    allocation_gate = torch.sigmoid(parts["allocation_gate"])
    write_weights = torch.sigmoid(parts["write_gate"]) * (
        allocation_gate * allocation + (1 - allocation_gate) * write_content
    )
    erase = torch.sigmoid(parts["erase"])
    memory = state.memory * (1 - write_weights.unsqueeze(-1) * erase.unsqueeze(1))
    memory = memory + write_weights.unsqueeze(-1) * parts["write_vector"].unsqueeze(1)
    link = dnc.link(state.link, state.precedence, write_weights)
    precedence = (1 - write_weights.sum(-1, keepdim=True)) * state.precedence + write_weights
    forward, backward = dnc.directional_weights(link, state.read_weights)
    read_content = cosine_softmax(
        memory,
        parts["read_keys"].reshape(batch, r, m),
        oneplus(parts["read_strengths"]),
        cfg.eps,
    )
    modes = torch.softmax(parts["read_modes"].reshape(batch, r, 3), -1)
    read_weights = (
        modes[..., :1] * backward + modes[..., 1:2] * read_content + modes[..., 2:] * forward
    )
    reads = read_weights @ memory
    output = cell.output_layer(torch.cat([*hidden, reads.reshape(batch, r * m)], 1))
    output = output.clamp(-cfg.output_clip, cfg.output_clip)
    new = DNCState(
        memory,
        reads,
        read_weights,
        write_weights,
        usage,
        precedence,
        link,
        torch.stack(hidden),
        torch.stack(cells),
    )
    return output, new


@pytest.mark.parametrize("layers", [1, 2])
def test_trace_matches_a_reference_step_from_the_paper(layers: int) -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, controller_layers=layers, **SMALL, dtype=F64)
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(6, 3, 5, generator=generator, dtype=F64)
    for start in (None, random_state(model.cell, 3, generator)):
        with torch.no_grad():
            outputs_, final, trace = model.trace(inputs, start)
            state = model.initial_state(3) if start is None else start
            for t in range(inputs.shape[0]):
                output, state = reference_step(model.cell, inputs[t], state)
                same(trace.write_weights[t], state.write_weights, f"step {t} write weights")
                same(trace.read_weights[t], state.read_weights, f"step {t} read weights")
                same(outputs_[t], output, f"step {t} outputs")
        for name, a, b in zip(DNCState._fields, final, state, strict=True):
            same(a, b, f"final {name}")


def test_gradients_are_finite_and_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, controller_layers=2, **SMALL)
    outputs_, state = model(torch.randn(6, 2, 5))
    (outputs_.sum() + state.memory.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("start", ["initial", "random"])
def test_gradcheck_one_whole_step(start: str) -> None:
    torch.manual_seed(0)
    cell = DNCCell(3, 2, **TINY, dtype=F64)
    generator = torch.Generator().manual_seed(1)
    state = cell.initial_state(2) if start == "initial" else random_state(cell, 2, generator)
    x = torch.randn(2, 3, generator=generator, dtype=F64, requires_grad=True)
    memory = state.memory.clone().requires_grad_()

    def step(x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        y, new = cell(x, state._replace(memory=memory))
        return torch.cat([y.flatten(), *(value.flatten() for value in new[:7])])

    assert gradcheck(step, (x, memory))


def test_the_second_controller_layer_sees_the_first() -> None:
    torch.manual_seed(0)
    cell = DNCCell(5, 3, controller_layers=2, **SMALL)
    assert [layer.input_size for layer in cell.controller] == [5 + 2 * 4, 5 + 2 * 4 + 8]
    assert cell.interface_layer.in_features == 2 * 8
    x = torch.randn(2, 5)
    _, state = cell(x)
    with torch.no_grad():
        cell.controller[0].bias_ih.add_(1.0)
    _, changed = cell(x)
    assert not torch.allclose(changed.controller_hidden[1], state.controller_hidden[1])


def test_config_round_trips_through_json() -> None:
    cfg = DNCConfig(input_size=4, num_read_heads=3, controller_layers=2, interface_clip=0.0)
    assert DNCConfig.from_json(cfg.to_json()) == cfg
    assert DNC.from_config(cfg).config == cfg
    with pytest.raises(ValueError, match="DNCConfig: unknown key"):
        DNCConfig.from_json('{"memory_slots": 3}')
    with pytest.raises(ValueError, match="expected int"):
        DNCConfig.from_dict({"memory_size": "128"})


def test_task_config_takes_the_paper_ntm_controller() -> None:
    copy = task_dnc_config("copy", 9, 8)
    assert (copy.controller_size, copy.controller_layers, copy.num_read_heads) == (100, 1, 1)
    assert (copy.memory_size, copy.word_size) == (128, 20)
    sort = task_dnc_config("priority_sort", 9, 8)
    assert (sort.controller_layers, sort.num_read_heads) == (2, 5)


def test_constructors_spell_out_their_settings() -> None:
    for cls in (DNCCell, DNC):
        parameters = inspect.signature(cls).parameters
        for field in dataclasses.fields(DNCConfig):
            assert parameters[field.name].default in (field.default, inspect.Parameter.empty)
    text = repr(DNC(5, 3, memory_size=12))
    assert "memory_size=12" in text
    assert "batch_first=False" in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_read_heads": 0}, "num_read_heads = 0"),
        ({"controller_layers": 0}, "controller_layers = 0"),
        ({"memory_size": -1}, "memory_size = -1"),
        ({"interface_clip": -1.0}, "interface_clip = -1.0"),
        ({"output_clip": math.inf}, "output_clip = inf"),
        ({"eps": 0.0}, "eps = 0.0"),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DNC(5, 3, **overrides)  # type: ignore[arg-type]


def test_bad_inputs_are_named() -> None:
    cell = DNCCell(5, 3, **SMALL)
    model = DNC(5, 3, **SMALL)
    with pytest.raises(ValueError, match=r"DNCCell: input has shape \(2, 4\), expected \(\*, 5\)"):
        cell(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="DNC: inputs has shape"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="DNC: inputs has shape"):
        model(torch.zeros(3, 2, 4))
    with pytest.raises(ValueError, match="NaN"):
        cell(torch.tensor([[math.nan, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((2, 1, 5), math.inf))
    with pytest.raises(ValueError, match="floating-point"):
        cell(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one time step"):
        model(torch.zeros(0, 2, 5))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        cell.initial_state(0)


@pytest.mark.parametrize(
    "broken",
    [
        lambda s: s._replace(memory=s.memory[:1]),  # batch of 1, not 2
        lambda s: s._replace(link=s.link[..., :-1]),
        lambda s: s._replace(usage=s.usage.unsqueeze(0)),
        lambda s: s._replace(controller_hidden=s.controller_hidden[0]),
        lambda s: s._replace(read_weights=s.read_weights.transpose(1, 2)),
        lambda s: s._replace(precedence=s.precedence.fill_(math.nan)),
        tuple,
    ],
)
def test_bad_state_is_named(broken: Callable[[DNCState], object]) -> None:
    cell = DNCCell(5, 3, **SMALL)
    model = DNC(5, 3, **SMALL)
    with pytest.raises(ValueError, match="DNCCell: state"):
        cell(torch.zeros(2, 5), broken(cell.initial_state(2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="DNCCell: state"):
        model(torch.zeros(4, 2, 5), broken(cell.initial_state(2)))  # type: ignore[arg-type]


def test_a_trace_keeps_no_step_s_link_matrix() -> None:
    """Kept at every step, the (B, N, N) links would make a long trace with many slots hold
    gigabytes: while it runs, a trace holds only the links of the step it is at (and of the
    state that step started from)."""
    model = DNC(5, 3, engine="eager", **SMALL)
    step = model.cell.step
    links: list[weakref.ref[torch.Tensor]] = []
    alive: list[int] = []

    def watched(x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, DNCState, object]:
        y, state, record = step(x, state)
        links.append(weakref.ref(state.link))
        gc.collect()
        alive.append(sum(ref() is not None for ref in links))
        return y, state, record

    model.cell.step = watched  # type: ignore[method-assign]
    with torch.no_grad():
        _, _, trace = model.trace(torch.randn(7, 2, 5))
    assert len(alive) == 7 and max(alive) <= 2, alive
    assert trace.read_weights.shape[0] == 7
