"""SAM's native engine (``ntm.engines.native.sam``): the same function as the eager path, with
the same gradients; its memory reused between batches without stale rows; a log that does
not grow with the number of slots; and its fallbacks."""

import copy
from typing import Any

import pytest
import torch

import ntm
from ntm.engines import native, select
from ntm.engines.native import sam as native_sam
from ntm.models.sam.model import SAM, SAMState

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")

SMALL = {"controller_size": 8, "memory_size": 6, "word_size": 4, "num_read_heads": 2, "k": 3}
#: The state's fields that carry a gradient into the sequence (the rest are slots and steps).
DIFFERENTIABLE = ("memory", "reads", "read_weights", "controller_hidden", "controller_cell")


def _run(
    model: SAM, engine: str, x: torch.Tensor, start: SAMState | None, weights: torch.Tensor
) -> tuple:
    """Outputs, final state and the gradients of inputs, initial state (where given) and
    parameters."""
    model.engine = engine
    x = x.detach().clone().requires_grad_(True)
    leaves = [x]
    if start is not None:
        start = SAMState(
            *(
                t.detach().clone().requires_grad_(name in DIFFERENTIABLE)
                for name, t in zip(SAMState._fields, start, strict=True)
            )
        )
        leaves += [getattr(start, name) for name in DIFFERENTIABLE]
    outputs, final = model(x, start)
    grads = torch.autograd.grad((outputs * weights).sum(), [*leaves, *model.parameters()])
    return outputs.detach(), [t.detach() for t in final], grads


def canonical(state: list[torch.Tensor]) -> list[torch.Tensor]:
    """A final state with each head's K slots in the order of their numbers: rows that tie
    (two slots written alike) may be ranked either way by two searches or two processors'
    rounding, which changes the order of the slots read and not what is read."""
    fields = dict(zip(SAMState._fields, state, strict=True))
    order = fields["read_indices"].argsort(-1)
    fields["read_indices"] = fields["read_indices"].gather(-1, order)
    fields["read_weights"] = fields["read_weights"].gather(-1, order)
    return list(fields.values())


def _agree(got: tuple, eager: tuple, tolerance: float = 1e-5) -> None:
    torch.testing.assert_close(got[0], eager[0], atol=tolerance, rtol=tolerance)
    for name, a, b in zip(SAMState._fields, canonical(got[1]), canonical(eager[1]), strict=True):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance, msg=f"final {name}")
    for a, b in zip(got[2], eager[2], strict=True):
        # Relative to the gradient's largest entry: entries near 0 carry rounding alone.
        torch.testing.assert_close(a, b, atol=tolerance * float(b.abs().max()), rtol=tolerance)


def _random_state(model: SAM, batch: int, seed: int) -> SAMState:
    """A valid state in mid-sequence: rows of every direction (no two alike, so that no
    nearest-neighbour ranking rests on rounding), read weights on distinct slots, usages
    apart and some slots never used."""
    cfg = model.config
    heads, slots, k, layers = cfg.num_read_heads, cfg.memory_size, cfg.k, cfg.controller_layers
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    indices = torch.stack(
        [torch.randperm(slots, generator=generator)[:k] for _ in range(batch * heads)]
    ).view(batch, heads, k)
    steps = torch.full((batch,), 9.0)
    usage = torch.randint(0, 10, (batch, slots), generator=generator).float()
    hidden = (layers, batch, cfg.controller_size)
    return SAMState(
        memory=normal(batch, slots, cfg.word_size),
        reads=normal(batch, heads, cfg.word_size),
        read_weights=torch.softmax(normal(batch, heads, k), -1),
        read_indices=indices,
        usage=usage,
        steps=steps,
        controller_hidden=torch.tanh(normal(*hidden)),
        controller_cell=normal(*hidden),
    )


@needs_native
@pytest.mark.parametrize(
    ("options", "steps", "start"),
    [
        ({}, 9, "mid-sequence"),
        ({"num_read_heads": 1, "k": 2}, 12, "mid-sequence"),  # all slots written and reused
        ({"num_read_heads": 3, "controller_layers": 2}, 7, "mid-sequence"),
        ({"k": 6}, 8, "mid-sequence"),  # K = N: every slot read
        ({"num_read_heads": 1, "k": 6, "memory_size": 6}, 10, "initial"),
        ({"memory_size": 20, "k": 4, "delta": 0.1}, 15, "mid-sequence"),
        ({"interface_clip": 0.5, "output_clip": 0.3}, 8, "mid-sequence"),
        ({"interface_clip": 0.0, "output_clip": 0.0}, 6, "mid-sequence"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_native_engine_matches_eager(
    options: dict[str, Any], steps: int, start: str, seed: int
) -> None:
    torch.manual_seed(seed)
    model = SAM(5, 3, **{**SMALL, **options})
    batch = 3
    state = model.initial_state(batch) if start == "initial" else _random_state(model, batch, seed)
    x, weights = torch.randn(steps, batch, 5), torch.randn(steps, batch, 3)
    eager = _run(model, "eager", x, state, weights)
    _agree(_run(model, "native", x, state, weights), eager)


def _least_used_among_read(model: SAM, x: torch.Tensor, start: SAMState) -> int:
    """How many steps of the eager run erase a slot some head read the step before."""
    _, _, trace = model.trace(x, start)
    read_before = torch.cat([torch.zeros_like(trace.read_weights[:1]), trace.read_weights[:-1]])
    erased = trace.erase_weights[:, :, 0]  # (T, B, N)
    return int(((read_before.sum(2) > 0) & (erased > 0)).any(-1).sum())


@needs_native
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_from_the_zero_state_and_where_the_erased_slot_was_read(seed: int) -> None:
    """From ``state=None`` (the workspace's zero state), with few slots: the least recently
    used slot is often one the heads read at the step before. A larger eps in the cosine
    ranks rows of one direction by their size, as zero memory's first writes make them,
    where float rounding would otherwise decide."""
    torch.manual_seed(seed)
    options = {**SMALL, "memory_size": 5, "k": 2, "eps": 1e-3}
    model = SAM(5, 3, **options)
    x, weights = torch.randn(10, 4, 5), torch.randn(10, 4, 3)
    assert _least_used_among_read(model, x, model.initial_state(4)) > 0
    eager = _run(model, "eager", x, None, weights)
    _agree(_run(model, "native", x, None, weights), eager)


@needs_native
def test_the_copy_model_matches_eager_on_a_copy_batch() -> None:
    """The copy task's recipe model (128 x 20 memory, K = 8, 100 LSTM units)."""
    torch.manual_seed(1)
    model = SAM(9, 8, controller_size=100, num_read_heads=1, k=8)
    batch = ntm.make_task("copy").sample(4, torch.Generator().manual_seed(2))
    weights = torch.randn(*batch.inputs.shape[:2], 8)
    start = _random_state(model, 4, 3)
    eager = _run(model, "eager", batch.inputs, start, weights)
    _agree(_run(model, "native", batch.inputs, start, weights), eager)


@needs_native
def test_consecutive_batches_are_fresh_ones() -> None:
    """As the trainer runs it (the final state dropped, a backward pass per batch), one
    workspace serves every batch, the rows the last one changed cleared: each batch's
    outputs and gradients are those of a new model's."""
    torch.manual_seed(0)
    options = {**SMALL, "memory_size": 40}
    model = SAM(5, 3, **options, engine="native")
    workspaces = []
    for steps in (9, 4, 12, 7):
        x, weights = torch.randn(steps, 3, 5), torch.randn(steps, 3, 3)
        logits = model(x)[0]
        grads = torch.autograd.grad((logits * weights).sum(), list(model.parameters()))
        workspaces.append(model.workspaces._kept[3][-1])
        fresh = SAM(5, 3, **options, engine="native")
        fresh.load_state_dict(model.state_dict())
        fresh_logits = fresh(x)[0]
        fresh_grads = torch.autograd.grad((fresh_logits * weights).sum(), list(fresh.parameters()))
        torch.testing.assert_close(logits, fresh_logits, atol=0, rtol=0)
        for a, b in zip(grads, fresh_grads, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert all(w is workspaces[0] for w in workspaces)
    assert workspaces[0].d_memory is not None and not workspaces[0].d_memory.any()


@needs_native
def test_a_loop_that_holds_the_last_final_state_takes_turns_with_two_workspaces() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL, engine="native")
    used = []
    for x in torch.randn(4, 5, 2, 5):
        logits, state = model(x)
        logits.sum().backward()
        used.append(model.workspaces._kept[2][-1])
        assert used[-1].memory.data_ptr() == state.memory.data_ptr()
    assert used[0] is used[2] and used[1] is used[3] and used[0] is not used[1]


@needs_native
def test_a_final_state_held_keeps_its_memory() -> None:
    """A final state the caller keeps is never cleared nor written by a later call, and a
    sequence continued from it is the whole sequence."""
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL, engine="native")
    x = torch.randn(10, 2, 5)
    whole, whole_state = model(x)
    with torch.no_grad():
        first, state = model(x[:4])
        kept = state.memory.clone()
        model(torch.randn(6, 2, 5))
        assert torch.equal(state.memory, kept)
        second, final = model(x[4:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(final.memory, whole_state.memory, atol=1e-6, rtol=1e-6)


@needs_native
def test_the_backward_pass_leaves_the_final_memory_as_it_was() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL, engine="native")
    outputs, state = model(torch.randn(8, 2, 5))
    before = state.memory.clone()
    outputs.sum().backward()
    assert torch.equal(state.memory, before)
    outputs, state = model(torch.randn(8, 2, 5))
    state.memory.add_(1.0)
    with pytest.raises(RuntimeError, match="changed in place"):
        outputs.sum().backward()


def _log_bytes(slots: int) -> int:
    """Bytes of the buffers a 20-step sequence's forward pass keeps for the backward pass,
    the workspace aside."""
    torch.manual_seed(0)
    model = SAM(5, 3, memory_size=slots, word_size=8, controller_size=8, k=4, engine="native")
    outputs, state = model(torch.randn(20, 2, 5))
    buffers = outputs.grad_fn.saved[1]
    kept = [t for name, t in buffers._asdict().items() if name not in ("memory", "norms",
            "usage", "heap", "place")]  # fmt: skip
    assert state.memory.shape == (2, slots, 8)
    return sum(t.numel() * t.element_size() for t in kept)


@needs_native
def test_what_a_step_keeps_does_not_grow_with_the_slots() -> None:
    """At N = 2**16 the forward pass keeps for the backward pass what it keeps at N = 64,
    far below one memory per step (T B N M floats)."""
    small, large = _log_bytes(64), _log_bytes(2**16)
    assert large == small
    assert large < 20 * 2 * 2**16 * 8 * 4 / 100


@needs_native
@pytest.mark.parametrize("steps", [1, 5])
def test_without_gradients_the_same_outputs_and_final_state(steps: int) -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL, engine="native")
    x = torch.randn(steps, 2, 5)
    with_grad, final = model(x)
    final = SAMState(*(t.clone() for t in final))
    with torch.no_grad():
        without, final_without = model(x)
    assert with_grad.requires_grad and not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach(), atol=0, rtol=0)
    for a, b in zip(final_without, final, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@needs_native
def test_batch_first_and_state_across_calls() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL, engine="native", batch_first=True)
    x = torch.randn(2, 9, 5)
    whole, _ = model(x)
    first, state = model(x[:, :4])
    second, _ = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-6, rtol=1e-6)
    model.engine = "eager"
    torch.testing.assert_close(model(x)[0], whole, atol=1e-5, rtol=1e-5)


@needs_native
def test_zero_memory_and_inputs_give_finite_gradients() -> None:
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL, engine="native")
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
    monkeypatch.setattr(native_sam, "_call", lambda name, *_: calls.append(name))
    torch.manual_seed(0)
    model = SAM(5, 3, **SMALL, dtype=torch.float64, engine="native")
    x = torch.randn(6, 2, 5, dtype=torch.float64)
    got, _ = model(x)
    model.engine = "eager"
    eager, _ = model(x)
    torch.testing.assert_close(got, eager, atol=0, rtol=0)
    model.float()
    model(x.float())
    assert calls == []


def test_auto_chooses_native_on_the_cpu_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, f32 = torch.device("cpu"), torch.float32
    monkeypatch.setattr(select, "native_available", lambda: None)
    assert select.select_engine(SAM.engines, "auto", cpu, f32) == ("native", None)
    monkeypatch.setattr(select, "native_available", lambda: "no C compiler")
    engine, why = select.select_engine(SAM.engines, "native", cpu, f32)
    assert engine == "eager"
    assert why is not None and "native: no C compiler" in why


def test_a_copy_of_the_model_has_no_workspace() -> None:
    model = SAM(5, 3, **SMALL)
    model.workspaces.fresh(2, model.config)
    assert len(copy.deepcopy(model).workspaces._kept) == 0 < len(model.workspaces._kept)
    assert list(model.state_dict()) == list(SAM(5, 3, **SMALL).state_dict())
