"""Sparse Access Memory: its pure functions (hand-worked cases, invariants, gradients), a
dense reference of a whole step written here with plain tensor operations, and its modules
(shapes, step and sequence agreement, settings, training from the command line)."""

import dataclasses
import inspect
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import ntm
from ntm.cli import main
from ntm.models.sam import addressing as sam
from ntm.models.sam.config import SAMConfig
from ntm.models.sam.model import SAM, SAMCell, SAMState, SAMTrace
from ntm.registry import model_class, trace_contents

B, R, K, N, M = 3, 2, 3, 7, 4
F64 = torch.float64
SMALL = {"controller_size": 8, "memory_size": 6, "word_size": 4, "num_read_heads": 2, "k": 3}
#: The tiny model of the whole-step gradcheck.
TINY = {
    "controller_size": 5,
    "controller_layers": 2,
    "num_read_heads": 2,
    "memory_size": 5,
    "word_size": 3,
    "k": 2,
}


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def normal(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=F64)


def unit(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, dtype=F64)


def simplex(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.softmax(2 * normal(*shape, generator=generator), -1)


def slots(*shape: int, generator: torch.Generator, size: int = N) -> torch.Tensor:
    """Distinct slots along the last dimension (as a nearest-neighbour search gives)."""
    flat = [
        torch.randperm(size, generator=generator)[: shape[-1]] for _ in range(math.prod(shape[:-1]))
    ]
    return torch.stack(flat).view(*shape)


def same(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-12) -> None:
    torch.testing.assert_close(
        actual, expected, rtol=0.0, atol=atol, msg=lambda message: f"{what}: {message}"
    )


# ------------------------------------------------------------ the dense reference, K = N


def cosine_softmax(
    memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor, eps: float
) -> torch.Tensor:
    """softmax over all N slots of strength x cosine similarity: (B, R, N)."""
    norms = (keys.pow(2).sum(-1, keepdim=True) + eps).sqrt() * (
        memory.pow(2).sum(-1) + eps
    ).sqrt().unsqueeze(1)
    return torch.softmax(strengths.unsqueeze(-1) * keys @ memory.transpose(1, 2) / norms, -1)


class Dense:
    """One SAM step with every slot in play (K = N), written apart from the library: the
    interface sliced by hand, weightings as dense (B, ., N) tensors."""

    def __init__(self, cell: SAMCell) -> None:
        self.cell = cell

    def initial(self, batch: int) -> dict[str, torch.Tensor]:
        cfg = self.cell.config
        zeros = torch.zeros
        return {
            "memory": zeros(batch, cfg.memory_size, cfg.word_size, dtype=F64),
            "reads": zeros(batch, cfg.num_read_heads, cfg.word_size, dtype=F64),
            "read_weights": zeros(batch, cfg.num_read_heads, cfg.memory_size, dtype=F64),
            "usage": zeros(batch, cfg.memory_size, dtype=F64),
            "step": torch.tensor(0.0, dtype=F64),
            "hidden": zeros(cfg.controller_layers, batch, cfg.controller_size, dtype=F64),
            "cell": zeros(cfg.controller_layers, batch, cfg.controller_size, dtype=F64),
        }

    def step(
        self, x: torch.Tensor, s: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        cell, cfg = self.cell, self.cell.config
        batch, r, m, n = x.shape[0], cfg.num_read_heads, cfg.word_size, cfg.memory_size
        below: list[torch.Tensor] = []
        hidden, cells = [], []
        for i, layer in enumerate(cell.controller):
            h, c = layer(
                torch.cat([x, s["reads"].reshape(batch, r * m), *below], 1),
                (s["hidden"][i], s["cell"][i]),
            )
            hidden.append(h)
            cells.append(c)
            below = [h]
        xi = cell.interface_layer(torch.cat(hidden, 1)).clamp(
            -cfg.interface_clip, cfg.interface_clip
        )
        keys = xi[:, : r * m].reshape(batch, r, m)
        strengths = 1 + torch.log1p(torch.exp(xi[:, r * m : r * m + r]))
        alpha = torch.sigmoid(xi[:, r * m + r : r * m + r + 1])  # (B, 1)
        gamma = torch.sigmoid(xi[:, r * m + r + 1 : r * m + r + 2])
        add = xi[:, r * m + r + 2 :]
        assert add.shape == (batch, m)

        lru = F.one_hot(s["usage"].argmin(-1), n).to(F64)  # (B, N), the first of equal minima
        write = alpha * (gamma * s["read_weights"].sum(1) + (1 - gamma) * lru)  # (B, N)
        memory = s["memory"] * (1 - lru).unsqueeze(-1)  # the LRU row set to 0
        memory = memory + write.unsqueeze(-1) * add.unsqueeze(1)
        read_weights = cosine_softmax(memory, keys, strengths, cfg.eps)  # (B, R, N)
        reads = read_weights @ memory
        step = s["step"] + 1
        accessed = write + read_weights.sum(1) > cfg.delta
        usage = torch.where(accessed, step, s["usage"])
        output = cell.output_layer(torch.cat([*hidden, reads.reshape(batch, r * m)], 1))
        output = output.clamp(-cfg.output_clip, cfg.output_clip)
        new = {
            "memory": memory,
            "reads": reads,
            "read_weights": read_weights,
            "usage": usage,
            "step": step,
            "hidden": torch.stack(hidden),
            "cell": torch.stack(cells),
        }
        seen = {"write": write, "lru": lru, "add": add, "alpha": alpha[:, 0], "gamma": gamma[:, 0]}
        return output, new, seen


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("heads", [1, 2])
def test_with_k_equal_to_n_a_step_is_the_dense_reference(layers: int, heads: int) -> None:
    torch.manual_seed(0)
    n = 6
    model = SAM(5, 3, controller_layers=layers, controller_size=8, num_read_heads=heads,
                memory_size=n, word_size=4, k=n, dtype=F64)  # fmt: skip
    inputs = torch.randn(9, 3, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    reference = Dense(model.cell)
    with torch.no_grad():
        outputs, final, trace = model.trace(inputs)
        state = reference.initial(3)
        for t in range(inputs.shape[0]):
            output, state, seen = reference.step(inputs[t], state)
            same(trace.write_weights[t, :, 0], seen["write"], f"step {t} write weights")
            same(trace.erase_weights[t, :, 0], seen["lru"], f"step {t} erased slot")
            same(trace.add[t, :, 0], seen["add"], f"step {t} add vector")
            same(trace.write_gate[t], seen["alpha"], f"step {t} write gate")
            same(trace.interpolation_gate[t], seen["gamma"], f"step {t} interpolation gate")
            same(trace.memory[t], state["memory"], f"step {t} memory")
            same(trace.read_weights[t], state["read_weights"], f"step {t} read weights")
            same(trace.reads[t], state["reads"], f"step {t} reads")
            same(outputs[t], output, f"step {t} outputs")
    same(final.usage, state["usage"], "usage")
    same(final.controller_hidden, state["hidden"], "controller")


def test_with_k_equal_to_n_a_step_from_a_random_state_is_the_dense_reference() -> None:
    torch.manual_seed(0)
    n = 5
    cell = SAMCell(4, 2, controller_size=6, num_read_heads=2, memory_size=n, word_size=3, k=n,
                   dtype=F64)  # fmt: skip
    generator = torch.Generator().manual_seed(3)
    state = random_state(cell, 2, generator)
    reference = Dense(cell)
    dense = {
        "memory": state.memory,
        "reads": state.reads,
        "read_weights": sam.densify(state.read_weights, state.read_indices, n),
        "usage": state.usage,
        "step": state.steps[0],
        "hidden": state.controller_hidden,
        "cell": state.controller_cell,
    }
    x = normal(2, 4, generator=generator)
    with torch.no_grad():
        output, new = cell(x, state)
        expected, after, _ = reference.step(x, dense)
    same(output, expected, "outputs")
    same(new.memory, after["memory"], "memory")
    same(sam.densify(new.read_weights, new.read_indices, n), after["read_weights"], "reads")
    same(new.usage, after["usage"], "usage")


# ------------------------------------------------------------- pure functions: by hand


def test_top_k_matches_torch_topk(gen: torch.Generator) -> None:
    scores = normal(4, 3, 20, generator=gen)  # distinct: no ties
    for k in (1, 5, 20):
        values, indices = torch.topk(scores, k)
        chosen = sam.top_k(scores, k)
        assert chosen.dtype == torch.int64
        assert torch.equal(chosen, indices), k
        same(scores.gather(-1, chosen), values, f"values of the top {k}")


def test_top_k_takes_equal_scores_in_index_order() -> None:
    scores = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0]])
    assert sam.top_k(scores, 3).tolist() == [[1, 3, 0]]
    assert sam.top_k(torch.zeros(2, 6), 4).tolist() == [[0, 1, 2, 3]] * 2


def test_nearest_slots_are_those_most_similar_to_the_key() -> None:
    memory = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [1.0, 1.0]]], dtype=F64)
    keys = torch.tensor([[[1.0, 0.1], [0.0, -1.0]]], dtype=F64)
    # Key 0: cosine 0.995 (slot 0), 0.77 (slot 3); key 1: 0.0 (slots 0, 2), -0.71, -1.
    assert sam.nearest_slots(memory, keys, 2, 1e-8).tolist() == [[[0, 3], [0, 2]]]


def test_least_recently_used_takes_the_lowest_index_of_equal_usages() -> None:
    usage = torch.tensor([[3.0, 1.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0], [5.0, 4.0, 4.0, 2.0]])
    assert sam.least_recently_used(usage).tolist() == [1, 0, 3]


def test_write_weights_and_write_by_hand() -> None:
    # One head read slots 2 (0.75) and 0 (0.25); slot 1 is the least recently used.
    weights, indices = sam.write_weights(
        torch.tensor([[[0.75, 0.25]]], dtype=F64),
        torch.tensor([[[2, 0]]]),
        torch.tensor([1]),
        torch.tensor([0.5], dtype=F64),  # alpha
        torch.tensor([0.8], dtype=F64),  # gamma
    )
    same(weights, torch.tensor([[0.3, 0.1, 0.1]], dtype=F64), "w^W = 0.5 (0.8 w^R + 0.2 I^U)")
    assert indices.tolist() == [[2, 0, 1]]
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]], dtype=F64)
    add = torch.tensor([[10.0, -10.0]], dtype=F64)
    written = sam.write(memory, torch.tensor([1]), weights, indices, add)
    expected = torch.tensor([[[2.0, 1.0], [1.0, -1.0], [8.0, 3.0], [7.0, 8.0]]], dtype=F64)
    same(written, expected, "row 1 erased, then w^W a^T added")
    # The least used slot among the read ones: erased first, then both entries added.
    both = sam.write(memory, torch.tensor([2]), weights, torch.tensor([[2, 0, 2]]), add)
    same(both[0, 2], torch.tensor([4.0, -4.0], dtype=F64), "erase before add")


def test_densify_adds_entries_on_one_slot() -> None:
    dense = sam.densify(torch.tensor([[[0.5, 0.25, 0.25]]]), torch.tensor([[[3, 0, 3]]]), 5)
    same(dense, torch.tensor([[[0.25, 0.0, 0.0, 0.75, 0.0]]]), "densify", atol=0.0)


def test_usage_and_the_least_recently_used_slot_over_a_hand_made_sequence() -> None:
    """Four slots, one head reading two: each step's least recently used slot, write and
    reads, and the usage they leave (the step of each slot's last access)."""
    delta = 0.005
    usage = torch.zeros(1, 4, dtype=F64)
    read_weights = torch.zeros(1, 1, 2, dtype=F64)
    read_indices = torch.tensor([[[0, 1]]])
    steps = [
        # (alpha, gamma, this step's reads (weights, slots), expected LRU, expected usage)
        (1.0, 0.0, ([1.0, 0.0], [2, 3]), 0, [1, 0, 1, 0]),  # write slot 0, read slot 2
        (1.0, 0.5, ([1.0, 0.0], [2, 1]), 1, [1, 2, 2, 0]),  # 0.5 on slot 2, 0.5 on slot 1
        (0.001, 0.5, ([1.0, 0.0], [0, 1]), 3, [3, 2, 2, 0]),  # a write below delta
        (1.0, 0.0, ([0.996, 0.004], [1, 0]), 3, [3, 4, 2, 4]),  # slot 3 still unused
        (1.0, 1.0, ([0.5, 0.5], [2, 0]), 2, [5, 5, 5, 4]),  # all on the last reads (1, 0)
    ]
    for t, (alpha, gamma, (weights, slots), lru, expected) in enumerate(steps, start=1):
        least_used = sam.least_recently_used(usage)
        assert least_used.tolist() == [lru], f"step {t}"
        write_weights, write_indices = sam.write_weights(
            read_weights, read_indices, least_used, tensor([alpha]), tensor([gamma])
        )
        read_weights, read_indices = tensor([[weights]]), torch.tensor([[slots]])
        usage = sam.usage(
            usage, tensor([t]), read_weights, read_indices, write_weights, write_indices, delta
        )
        same(usage, tensor([expected]), f"usage after step {t}", atol=0.0)


def tensor(values: list[object]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def test_interface_layout_size_and_order() -> None:
    layout = sam.InterfaceLayout(2, 3)
    assert layout.size == 2 * 3 + 2 + 3 + 2
    raw = torch.arange(2 * layout.size, dtype=F64).reshape(2, layout.size) / 10
    face = layout.activate(raw)
    same(face.read_keys, raw[:, :6].reshape(2, 2, 3), "keys")
    same(face.read_strengths, 1 + F.softplus(raw[:, 6:8]), "strengths")
    same(face.write_gate, torch.sigmoid(raw[:, 8]), "alpha")
    same(face.interpolation_gate, torch.sigmoid(raw[:, 9]), "gamma")
    same(face.add, raw[:, 10:], "add")


# ------------------------------------------------------------ pure functions: invariants


def test_weights_are_in_the_unit_interval_and_reads_sum_to_one(gen: torch.Generator) -> None:
    memory, keys = normal(B, N, M, generator=gen), normal(B, R, M, generator=gen)
    strengths = 1 + 10 * unit(B, R, generator=gen)
    indices = sam.nearest_slots(memory, keys, K, 1e-8)
    weights = sam.read_weights(memory, keys, strengths, indices, 1e-8)
    assert weights.shape == (B, R, K)
    assert ((weights >= 0) & (weights <= 1)).all()
    same(weights.sum(-1), torch.ones(B, R, dtype=F64), "read weights sum to 1")
    dense = sam.densify(weights, indices, N)
    assert ((dense > 0).sum(-1) == K).all()  # K slots per head, every other slot 0
    alpha, gamma = unit(B, generator=gen), unit(B, generator=gen)
    lru = sam.least_recently_used(unit(B, N, generator=gen))
    one = sam.write_weights(weights[:, :1], indices[:, :1], lru, alpha, gamma)
    write = sam.densify(one[0].unsqueeze(1), one[1].unsqueeze(1), N)
    assert ((write >= 0) & (write <= 1)).all() and (write.sum(-1) <= 1 + 1e-12).all()
    same(write.sum(-1)[:, 0], alpha, "one head: the write weighs alpha in all")
    two = sam.write_weights(weights, indices, lru, alpha, gamma)
    assert two[0].shape == two[1].shape == (B, R * K + 1)
    total = sam.densify(two[0].unsqueeze(1), two[1].unsqueeze(1), N).sum(-1)[:, 0]
    same(total, alpha * (gamma * R + 1 - gamma), "R heads: alpha (gamma R + 1 - gamma)")


def test_the_read_is_the_dense_read_of_the_densified_weights(gen: torch.Generator) -> None:
    memory = normal(B, N, M, generator=gen)
    weights, indices = simplex(B, R, K, generator=gen), slots(B, R, K, generator=gen)
    dense = sam.densify(weights, indices, N)
    same(sam.read(memory, weights, indices), dense @ memory, "sparse read", atol=1e-12)


#: name -> (function, inputs from a generator; the index arguments fixed): every pure
#: function with a gradient, for gradcheck and for the all-zero and in-place checks.
PURE: dict[str, tuple[Callable[..., object], Callable[[torch.Generator], tuple[torch.Tensor, ...]]]]
PURE = {
    "read_weights": (
        lambda memory, keys, strengths: sam.read_weights(
            memory, keys, strengths, slots(B, R, K, generator=torch.Generator()), 1e-8
        ),
        lambda g: (
            normal(B, N, M, generator=g),
            normal(B, R, M, generator=g),
            1 + unit(B, R, generator=g),
        ),
    ),
    "read": (
        lambda memory, weights: sam.read(
            memory, weights, slots(B, R, K, generator=torch.Generator())
        ),
        lambda g: (normal(B, N, M, generator=g), simplex(B, R, K, generator=g)),
    ),
    "densify": (
        lambda weights: sam.densify(weights, slots(B, R, K, generator=torch.Generator()), N),
        lambda g: (simplex(B, R, K, generator=g),),
    ),
    "write_weights": (
        lambda weights, alpha, gamma: sam.write_weights(
            weights,
            slots(B, R, K, generator=torch.Generator()),
            torch.tensor([0, 3, 6]),
            alpha,
            gamma,
        )[0],
        lambda g: (simplex(B, R, K, generator=g), unit(B, generator=g), unit(B, generator=g)),
    ),
    "write": (
        lambda memory, weights, add: sam.write(
            memory,
            torch.tensor([1, 0, 6]),
            weights,
            slots(B, R * K + 1, generator=torch.Generator()),
            add,
        ),
        lambda g: (
            normal(B, N, M, generator=g),
            unit(B, R * K + 1, generator=g),
            normal(B, M, generator=g),
        ),
    ),
    "activate": (
        sam.InterfaceLayout(R, M).activate,
        lambda g: (normal(B, sam.InterfaceLayout(R, M).size, generator=g),),
    ),
}


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


def outputs(result: object) -> tuple[torch.Tensor, ...]:
    if isinstance(result, torch.Tensor):
        return (result,)
    assert isinstance(result, tuple)
    return tuple(result)


# ------------------------------------------------------------------------------ modules


def random_state(cell: SAMCell, batch: int, generator: torch.Generator) -> SAMState:
    """A valid state unlike the initial one: memory and reads in play, distinct usages."""
    cfg = cell.config
    r, n, k = cfg.num_read_heads, cfg.memory_size, cfg.k
    layers = (cfg.controller_layers, batch, cfg.controller_size)
    usage = torch.stack([torch.randperm(n, generator=generator) for _ in range(batch)]).to(F64)
    return SAMState(
        memory=normal(batch, n, cfg.word_size, generator=generator),
        reads=normal(batch, r, cfg.word_size, generator=generator),
        read_weights=simplex(batch, r, k, generator=generator),
        read_indices=slots(batch, r, k, generator=generator, size=n),
        usage=usage,
        steps=torch.full((batch,), float(n), dtype=F64),
        controller_hidden=torch.tanh(normal(*layers, generator=generator)),
        controller_cell=normal(*layers, generator=generator),
    )


def test_initial_state_is_zeros_of_the_documented_shapes() -> None:
    cell = SAMCell(5, 3, controller_layers=2, **SMALL)
    state = cell.initial_state(7)
    assert isinstance(state, SAMState)
    shapes = {
        "memory": (7, 6, 4),
        "reads": (7, 2, 4),
        "read_weights": (7, 2, 3),
        "read_indices": (7, 2, 3),
        "usage": (7, 6),
        "steps": (7,),
        "controller_hidden": (2, 7, 8),
        "controller_cell": (2, 7, 8),
    }
    assert {name: tuple(value.shape) for name, value in state._asdict().items()} == shapes
    for name, value in state._asdict().items():
        if name != "read_indices":
            assert not value.any(), name
            assert value.dtype == torch.float32, name
    assert state.read_indices.dtype == torch.int64


@pytest.mark.parametrize("batch_first", [False, True])
def test_model_shapes(batch_first: bool) -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, batch_first=batch_first, **SMALL)
    inputs = torch.randn(2, 7, 5) if batch_first else torch.randn(7, 2, 5)
    logits, state = model(inputs)
    assert logits.shape == ((2, 7, 3) if batch_first else (7, 2, 3))
    assert state.memory.shape == (2, 6, 4)
    y, new = model.cell(torch.randn(2, 5), state)
    assert y.shape == (2, 3)
    assert all(a.shape == b.shape for a, b in zip(new, state, strict=True))


def test_batch_first_matches_time_major() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL)
    batch_first = SAM(5, 3, batch_first=True, **SMALL)
    batch_first.load_state_dict(model.state_dict())
    inputs = torch.randn(6, 3, 5)
    same(batch_first(inputs.transpose(0, 1))[0], model(inputs)[0].transpose(0, 1), "outputs")


def test_sequence_equals_stepping_the_cell() -> None:
    """The eager sequence; the native engine's agreement is tests/test_native_sam.py's."""
    torch.manual_seed(0)
    model = SAM(5, 3, controller_layers=2, engine="eager", **SMALL)
    inputs = torch.randn(9, 2, 5)
    logits, final = model(inputs)
    state = None
    for t in range(inputs.shape[0]):
        y, state = model.cell(inputs[t], state)
        same(logits[t], y, f"step {t} outputs", atol=1e-6)
    assert state is not None
    for name, a, b in zip(SAMState._fields, final, state, strict=True):
        assert torch.equal(a, b), f"final {name}"


def test_state_carries_across_calls() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL)
    inputs = torch.randn(8, 2, 5)
    whole, _ = model(inputs)
    first, state = model(inputs[:3])
    second, _ = model(inputs[3:], state)
    same(torch.cat([first, second]), whole, "outputs", atol=1e-6)


def test_trace_records_every_step_and_the_viewer_replays_its_writes() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, engine="eager", **SMALL)  # as the trace runs, to the bit
    inputs = torch.randn(12, 2, 5)
    logits, final, trace = model.trace(inputs)
    assert isinstance(trace, SAMTrace)
    expected_logits, expected_final = model(inputs)
    same(logits, expected_logits, "outputs", atol=0.0)
    for name, a, b in zip(SAMState._fields, final, expected_final, strict=True):
        assert torch.equal(a, b), f"final {name}"
    t, b, r, n, m = 12, 2, 2, 6, 4
    shapes = {
        "read_weights": (t, b, r, n),
        "write_weights": (t, b, 1, n),
        "erase_weights": (t, b, 1, n),
        "add": (t, b, 1, m),
        "usage": (t, b, n),
        "write_gate": (t, b),
        "interpolation_gate": (t, b),
        "reads": (t, b, r, m),
        "memory": (t, b, n, m),
    }
    assert {name: tuple(value.shape) for name, value in trace._asdict().items()} == shapes
    tol = 1e-6
    assert ((trace.read_weights >= 0) & (trace.read_weights <= 1)).all()
    same(trace.read_weights.sum(-1), torch.ones(t, b, r), "read weights", atol=tol)
    assert ((trace.read_weights > 0).sum(-1) <= 3).all()  # K = 3 slots a head
    assert ((trace.write_weights > 0).sum(-1) <= r * 3 + 1).all()
    same(trace.erase_weights.sum(-1), torch.ones(t, b, 1), "one slot erased", atol=0.0)
    assert ((trace.usage >= 0) & (trace.usage <= 1)).all()
    assert not trace.usage[0].any()  # nothing accessed before the first step
    # What the pictures read: the write as two heads, replayed by the NTM's erase-then-add.
    contents = trace_contents(trace)
    assert contents is not None
    assert contents.write_weights.shape == (t, b, 2, n)
    assert contents.erase is not None and contents.add is not None
    assert contents.erase.shape == contents.add.shape == (t, b, 2, m)
    assert set(contents.panels) == {"usage", "gates"}
    memory = model.initial_state(b).memory
    for step in range(t):
        memory = ntm.memory.write(
            memory, contents.write_weights[step], contents.erase[step], contents.add[step]
        )
        same(memory, trace.memory[step], f"replayed memory at step {step}", atol=1e-6)


def test_no_nan_in_values_or_gradients_from_an_all_zero_memory() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, controller_layers=2, **SMALL)
    logits, state = model(torch.zeros(6, 2, 5))  # zero inputs, zero memory, zero keys early on
    assert torch.isfinite(logits).all() and torch.isfinite(state.memory).all()
    (logits.sum() + state.memory.sum() + state.reads.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("start", ["initial", "random"])
def test_gradcheck_one_whole_step(start: str) -> None:
    """From the initial state only through the input: in an all-zero memory every slot is
    as near a key as any other, so a nudge to the memory or to the weights that write it
    changes which slots are read (a jump, not a slope)."""
    torch.manual_seed(0)
    cell = SAMCell(3, 2, **TINY, dtype=F64)
    generator = torch.Generator().manual_seed(1)
    state = cell.initial_state(2) if start == "initial" else random_state(cell, 2, generator)
    x = torch.randn(2, 3, generator=generator, dtype=F64, requires_grad=True)
    memory = state.memory.clone().requires_grad_()
    read_weights = state.read_weights.clone().requires_grad_()

    def step(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        given = state._replace(memory=rest[0], read_weights=rest[1]) if rest else state
        y, new = cell(x, given)
        dense = sam.densify(new.read_weights, new.read_indices, cell.config.memory_size)
        return torch.cat([y.flatten(), new.memory.flatten(), new.reads.flatten(), dense.flatten()])

    assert gradcheck(step, (x,) if start == "initial" else (x, memory, read_weights))


def test_config_round_trips_through_json() -> None:
    cfg = SAMConfig(input_size=4, num_read_heads=3, k=5, delta=0.01, interface_clip=0.0)
    assert SAMConfig.from_json(cfg.to_json()) == cfg
    assert SAM.from_config(cfg).config == cfg
    with pytest.raises(ValueError, match="SAMConfig: unknown key"):
        SAMConfig.from_json('{"sparse_reads": 3}')


def test_constructors_spell_out_their_settings() -> None:
    for cls in (SAMCell, SAM):
        parameters = inspect.signature(cls).parameters
        for field in dataclasses.fields(SAMConfig):
            assert parameters[field.name].default in (field.default, inspect.Parameter.empty)
    text = repr(SAM(5, 3, memory_size=12, k=4))
    assert "memory_size=12" in text and "k=4" in text
    assert "engine='auto'" in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"k": 0}, "k = 0"),
        ({"k": 9, "memory_size": 8}, r"k = 9: expected an integer in 1..memory_size = 8"),
        ({"delta": 1.0}, "delta = 1.0"),
        ({"delta": -0.1}, "delta = -0.1"),
        ({"num_read_heads": 0}, "num_read_heads = 0"),
        ({"memory_size": 0}, "memory_size = 0"),
        ({"word_size": 0}, "word_size = 0"),
        ({"interface_clip": -1.0}, "interface_clip = -1.0"),
        ({"eps": 0.0}, "eps = 0.0"),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SAM(5, 3, **overrides)  # type: ignore[arg-type]


def test_an_unknown_setting_is_named() -> None:
    with pytest.raises(TypeError, match=r"SAM: unknown setting.*'sparse_reads'"):
        SAM(5, 3, sparse_reads=4)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda s: s._replace(memory=s.memory[:1]), "state.memory"),
        (lambda s: s._replace(usage=s.usage.unsqueeze(0)), "state.usage"),
        (lambda s: s._replace(read_indices=s.read_indices.float()), "state.read_indices"),
        (lambda s: s._replace(read_indices=s.read_indices[..., :1]), "state.read_indices"),
        (lambda s: s._replace(read_indices=s.read_indices + 6), r"slots in 0\.\.5"),
        (lambda s: s._replace(steps=s.steps.fill_(math.nan)), "state.steps"),
        (tuple, "must be a SAMState"),
    ],
)
def test_bad_state_is_named(broken: Callable[[SAMState], object], message: str) -> None:
    cell = SAMCell(5, 3, **SMALL)
    with pytest.raises(ValueError, match=f"SAMCell: .*{message}"):
        cell(torch.zeros(2, 5), broken(cell.initial_state(2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SAMCell: "):
        SAM(5, 3, **SMALL)(torch.zeros(4, 2, 5), broken(cell.initial_state(2)))  # type: ignore[arg-type]


def test_bad_inputs_are_named() -> None:
    model = SAM(5, 3, **SMALL)
    with pytest.raises(ValueError, match=r"SAMCell: input has shape \(2, 4\), expected \(\*, 5\)"):
        model.cell(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="SAM: inputs has shape"):
        model(torch.zeros(3, 2, 4))
    with pytest.raises(ValueError, match="at least one time step"):
        model(torch.zeros(0, 2, 5))


def test_registered_exported_and_its_recipes() -> None:
    assert model_class("sam") is SAM is ntm.SAM
    assert (ntm.SAMCell, ntm.SAMConfig) == (SAMCell, SAMConfig)
    assert SAM.engines == ("eager", "native")
    for task in ("copy", "associative_recall"):
        recipe = SAM.recipe(task, "fast", {})
        assert recipe is not None
        assert dict(recipe.model) == {"controller_size": 100, "controller_layers": 1,
                                      "num_read_heads": 1, "memory_size": 128, "word_size": 20,
                                      "k": 8}  # fmt: skip
        paper = SAM.recipe(task, "paper", {})
        assert paper is not None and paper.train == {"lr": 1e-4}
    assert SAM.recipe("ngrams", "fast", {}) is None
    with pytest.raises(ValueError, match="controller"):
        SAM.recipe("copy", "fast", {"controller": "feedforward"})


def test_ntm_train_and_viz_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    flags = ["--task", "copy", "--model", "sam", "--max-sequences", "256", "--eval-every", "128",
             "--eval-size", "16", "--run-dir", str(run), "--quiet"]  # fmt: skip
    assert main(["train", *flags]) == 0
    config = (run / "config.json").read_text()
    assert '"k": 8' in config and '"memory_size": 128' in config
    assert main(["viz", str(run), "--html"]) == 0
    assert (run / "viewer.html").stat().st_size > 0
    capsys.readouterr()
