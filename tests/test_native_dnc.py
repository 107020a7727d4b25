"""The DNC's native engine (``ntm.engines.native.dnc``): the same function as the eager path, with
the same gradients, and its fallbacks."""

from typing import Any

import pytest
import torch

import ntm
from ntm.engines import native, select
from ntm.engines.native import dnc as native_dnc
from ntm.models.dnc import addressing as dnc
from ntm.models.dnc.model import DNC, DNCState

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")

SMALL = {"controller_size": 8, "memory_size": 6, "word_size": 4}
#: Long enough for links kept and recomputed (native_dnc.LINK_EVERY) several times over.
LONG = 2 * native_dnc.LINK_EVERY + 3


def _run(model: DNC, engine: str, x: torch.Tensor, start: DNCState, weights: torch.Tensor) -> tuple:
    """Outputs, final state and the gradients of inputs, initial state and parameters."""
    model.engine = engine
    start = DNCState(*(t.detach().clone().requires_grad_(True) for t in start))
    x = x.detach().clone().requires_grad_(True)
    outputs, final = model(x, start)
    leaves = [x, *start, *model.parameters()]
    grads = torch.autograd.grad((outputs * weights).sum(), leaves)
    return outputs.detach(), [t.detach() for t in final], grads


def _agree(got: tuple, eager: tuple, tolerance: float = 1e-5) -> None:
    torch.testing.assert_close(got[0], eager[0], atol=tolerance, rtol=tolerance)
    for name, a, b in zip(DNCState._fields, got[1], eager[1], strict=True):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance, msg=f"final {name}")
    for a, b in zip(got[2], eager[2], strict=True):
        # Relative to the gradient's largest entry: entries near 0 carry rounding alone.
        torch.testing.assert_close(a, b, atol=tolerance * float(b.abs().max()), rtol=tolerance)


def _random_state(model: DNC, batch: int, seed: int) -> DNCState:
    """A valid state in mid-sequence: memory, links and weightings all in play, and usages
    apart. (From the initial state an untrained DNC's usages of the slots it has not
    written stay equal to within rounding, where the allocation's order of slots is
    decided by rounding alone, eager or native.)"""
    cfg = model.config
    heads, slots, layers = cfg.num_read_heads, cfg.memory_size, cfg.controller_layers
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    def weighting(*shape: int) -> torch.Tensor:
        total = torch.rand(*shape[:-1], 1, generator=generator)
        return torch.softmax(2 * normal(*shape), -1) * total

    link, precedence = torch.zeros(batch, slots, slots), torch.zeros(batch, slots)
    for _ in range(4):
        write_weights = weighting(batch, slots)
        link = dnc.link(link, precedence, write_weights)
        precedence = dnc.precedence(precedence, write_weights)
    hidden = (layers, batch, cfg.controller_size)
    return DNCState(
        memory=normal(batch, slots, cfg.word_size),
        reads=normal(batch, heads, cfg.word_size),
        read_weights=weighting(batch, heads, slots),
        write_weights=weighting(batch, slots),
        usage=torch.rand(batch, slots, generator=generator),
        precedence=precedence,
        link=link,
        controller_hidden=torch.tanh(normal(*hidden)),
        controller_cell=normal(*hidden),
    )


@needs_native
@pytest.mark.parametrize(
    ("options", "steps", "start"),
    [
        ({}, 7, "initial"),
        ({"num_read_heads": 2}, LONG, "initial"),
        ({"num_read_heads": 4, "controller_layers": 2}, 9, "initial"),
        ({"num_read_heads": 2, "controller_layers": 2}, LONG, "mid-sequence"),
        ({"num_read_heads": 3}, 9, "mid-sequence"),  # a head count without its own loop
        ({"num_read_heads": 5, "controller_layers": 2}, LONG, "initial"),
        ({"num_read_heads": 1, "memory_size": 3, "word_size": 2}, 1, "mid-sequence"),
        ({"interface_clip": 0.5, "output_clip": 0.3}, 8, "mid-sequence"),
        ({"interface_clip": 0.0, "output_clip": 0.0}, 6, "initial"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_native_engine_matches_eager(
    options: dict[str, Any], steps: int, start: str, seed: int
) -> None:
    torch.manual_seed(seed)
    model = DNC(5, 3, **{**SMALL, **options})
    batch = 3
    state = model.initial_state(batch) if start == "initial" else _random_state(model, batch, seed)
    x, weights = torch.randn(steps, batch, 5), torch.randn(steps, batch, 3)
    eager = _run(model, "eager", x, state, weights)
    _agree(_run(model, "native", x, state, weights), eager)


@needs_native
def test_the_copy_model_matches_eager_on_a_copy_batch() -> None:
    """The copy task's model (128 x 20 memory, 100 LSTM units) on a batch of the task."""
    torch.manual_seed(1)
    model = DNC(9, 8)
    batch = ntm.make_task("copy").sample(4, torch.Generator().manual_seed(2))
    weights = torch.randn(*batch.inputs.shape[:2], 8)
    start = _random_state(model, 4, 3)
    eager = _run(model, "eager", batch.inputs, start, weights)
    _agree(_run(model, "native", batch.inputs, start, weights), eager)


@needs_native
def test_tied_usages_are_allocated_in_slot_order() -> None:
    """Slots of equal usage (free ones, full ones) are taken in index order, as the eager
    path's stable sort takes them."""
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, num_read_heads=2)
    start = _random_state(model, 3, 0)
    tied = torch.tensor([[0.0, 1.0, 0.0, 0.5, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                         [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]])  # fmt: skip
    start = start._replace(usage=tied, write_weights=torch.zeros(3, 6))
    x, weights = torch.randn(4, 3, 5), torch.randn(4, 3, 3)
    eager = _run(model, "eager", x, start, weights)
    _agree(_run(model, "native", x, start, weights), eager)


@needs_native
@pytest.mark.parametrize("grad", [True, False])
def test_a_state_s_tensors_may_have_any_strides(grad: bool) -> None:
    """The links (and the rest) of a state whose tensors are not contiguous are read by
    value, with or without gradients."""
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, num_read_heads=2)
    start = _random_state(model, 2, 3)
    strided = DNCState(*(t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in start))
    assert not strided.link.is_contiguous()
    x = torch.randn(4, 2, 5)
    with torch.set_grad_enabled(grad):
        for engine in ("native", "eager"):
            model.engine = engine
            outputs, final = model(x, strided)
            if engine == "native":
                native = (outputs, final)
    torch.testing.assert_close(native[0], outputs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(native[1].link, final.link, atol=1e-5, rtol=1e-5)


@needs_native
@pytest.mark.parametrize("slots", [6, 300])
def test_usages_are_sorted_as_the_stable_sort_sorts_them(slots: int) -> None:
    """Below 256 slots the engine counts each slot's place, from there it sorts by radix:
    both give the stable sort's order, equal usages (here half the slots, unused) in slot
    order, a negative zero with the zeros."""
    torch.manual_seed(0)
    model = DNC(5, 3, **{**SMALL, "memory_size": slots})
    start = _random_state(model, 2, 0)
    generator = torch.Generator().manual_seed(1)
    usage = torch.rand(2, slots, generator=generator)
    usage[torch.rand(2, slots, generator=generator) < 0.5] = 0.0
    write_weights = torch.zeros(2, slots)
    usage[:, 3] = write_weights[:, 3] = -0.0  # stays -0 through the usage's update
    start = start._replace(usage=usage, write_weights=write_weights)
    x, weights = torch.randn(3, 2, 5), torch.randn(3, 2, 3)
    _agree(_run(model, "native", x, start, weights), _run(model, "eager", x, start, weights))


@needs_native
@pytest.mark.parametrize("part", ["interface", "output"])
def test_gradients_at_and_beyond_the_clip_bounds_are_eagers(part: str) -> None:
    """A value exactly at the clip bound passes its gradient (``clamp``'s rule), one beyond
    it passes none: the layer's weights zero, its biases at and beyond the bound."""
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, interface_clip=0.5, output_clip=0.25)
    layer = model.cell.interface_layer if part == "interface" else model.cell.output_layer
    bound = 0.5 if part == "interface" else 0.25
    with torch.no_grad():
        layer.weight.zero_()
        scale = torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5]).repeat(layer.bias.numel())
        layer.bias.copy_(bound * scale[: layer.bias.numel()])
    x, weights = torch.randn(5, 2, 5), torch.randn(5, 2, 3)
    start = model.initial_state(2)
    eager = _run(model, "eager", x, start, weights)
    got = _run(model, "native", x, start, weights)
    _agree(got, eager)
    bias_grad = dict(zip([n for n, _ in model.named_parameters()], got[2][10:], strict=True))
    at_bound = bias_grad[f"cell.{part}_layer.bias"]
    assert (at_bound[2::5] == 0).all() and (at_bound[3::5] == 0).all()  # beyond: none
    assert at_bound[0::5].any() and at_bound[1::5].any()  # at the bound: passed on


@needs_native
@pytest.mark.parametrize("steps", [1, 4, 5])
def test_without_gradients_the_same_outputs_and_final_state(steps: int) -> None:
    """Without a gradient wanted, the engine keeps two states in turn instead of all."""
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, engine="native")
    x = torch.randn(steps, 2, 5)
    with_grad, final = model(x)
    with torch.no_grad():
        without, final_without = model(x)
    assert with_grad.requires_grad and not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach(), atol=0, rtol=0)
    for a, b in zip(final_without, final, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # From a given state, whose links it updates in a copy of its own, not in the caller's.
    with torch.no_grad():
        start = model(x, final)[1]  # two calls: links, even after one step each
    kept = start.link.clone()
    assert kept.abs().sum() > 0
    again, after = model(x, start)
    with torch.no_grad():
        again_without, after_without = model(x, start)
    torch.testing.assert_close(start.link, kept, atol=0, rtol=0)
    torch.testing.assert_close(again_without, again.detach(), atol=0, rtol=0)
    torch.testing.assert_close(after_without.link, after.link, atol=0, rtol=0)


@needs_native
def test_batch_first_and_state_across_calls() -> None:
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, engine="native", batch_first=True)
    x = torch.randn(2, 9, 5)
    whole, _ = model(x)
    first, state = model(x[:, :4])
    second, _ = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-6, rtol=1e-6)
    model.engine = "eager"
    torch.testing.assert_close(model(x)[0], whole, atol=1e-5, rtol=1e-5)


@needs_native
def test_zero_memory_and_inputs_give_finite_gradients() -> None:
    """All-zero memory rows and keys: the eps in the cosine keeps everything finite."""
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, engine="native")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    outputs, _ = model(torch.zeros(6, 2, 5))
    outputs.sum().backward()
    assert torch.isfinite(outputs).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_other_dtypes_and_the_eager_engine_run_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """float64, or engine eager: the native library is never called."""
    calls: list[str] = []
    monkeypatch.setattr(native_dnc, "_call", lambda name, *_: calls.append(name))
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, dtype=torch.float64, engine="native")
    x = torch.randn(6, 2, 5, dtype=torch.float64)
    got, _ = model(x)
    model.engine = "eager"
    eager, _ = model(x)
    torch.testing.assert_close(got, eager, atol=0, rtol=0)
    model.float()
    model(x.float())
    assert calls == []


def test_the_engine_is_a_setting_of_the_model_alone() -> None:
    eager = DNC(5, 3, **SMALL, engine="eager")
    native_model = DNC(5, 3, **SMALL, engine="native")
    assert DNC(5, 3, **SMALL).engine == "auto"
    assert eager.engine == "eager" and "engine='native'" in repr(native_model)
    assert DNC.from_config(eager.config, engine="native").engine == "native"
    assert list(eager.state_dict()) == list(native_model.state_dict())  # checkpoints as before
    with pytest.raises(ValueError, match="engine = 'warp'"):
        DNC(5, 3, engine="warp")


def test_training_chooses_the_native_engine_or_says_why_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu, f32 = torch.device("cpu"), torch.float32
    monkeypatch.setattr(select, "native_available", lambda: None)
    assert select.select_engine(DNC.engines, "native", cpu, f32) == ("native", None)
    monkeypatch.setattr(select, "native_available", lambda: "no C compiler")
    engine, why = select.select_engine(DNC.engines, "native", cpu, f32)
    assert engine == "eager"
    assert why is not None and "native: no C compiler" in why
    assert select.select_engine(DNC.engines, "eager", cpu, f32) == ("eager", None)
    assert select.select_engine(DNC.engines, "fused", cpu, f32)[0] == "eager"


@needs_native
def test_a_call_with_the_wrong_number_of_buffers_is_refused() -> None:
    count = len(native_dnc._ForwardBuffers._fields)
    dims = native_dnc._dims(DNC(5, 3, **SMALL).config, 1, 1, keep=True)
    with pytest.raises(RuntimeError, match=f"dnc_forward takes {count} buffers, got {count - 1}"):
        native._call("dnc_forward", dims, [torch.zeros(1)] * (count - 1))
