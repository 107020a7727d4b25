"""The NTM modules: shapes, agreement of step and sequence APIs, gradients, configs."""

import dataclasses
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import ntm
from ntm.models.lstm import LSTMConfig, paper_lstm_config
from ntm.models.ntm.config import NTMConfig, paper_ntm_config
from ntm.models.paper import PAPER_SETTINGS

SMALL = {"controller_size": 16, "memory_size": 10, "word_size": 4}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_copy_paper_parameter_counts_within_3_percent(controller: str) -> None:
    task = ntm.make_task("copy")
    model = ntm.NTM.from_config(
        paper_ntm_config("copy", controller, task.input_size, task.output_size)
    )
    paper = PAPER_SETTINGS["copy"][controller].parameters
    assert abs(count(model) / paper - 1) < 0.03, (count(model), paper)


def test_copy_baseline_parameter_count_within_3_percent() -> None:
    task = ntm.make_task("copy")
    model = ntm.LSTMBaseline.from_config(
        paper_lstm_config("copy", task.input_size, task.output_size)
    )
    paper = PAPER_SETTINGS["copy"]["baseline"].parameters
    assert abs(count(model) / paper - 1) < 0.03


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@pytest.mark.parametrize("memory_init", ["constant", "learned", "random"])
@pytest.mark.parametrize("heads", [(1, 1), (2, 3)])
def test_cell_shapes_and_finiteness(
    controller: str, memory_init: str, heads: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    cell = ntm.NTMCell(
        5,
        3,
        controller=controller,
        memory_init=memory_init,
        num_read_heads=heads[0],
        num_write_heads=heads[1],
        controller_layers=2,
        **SMALL,
    )
    x = torch.randn(4, 5)
    y, state = cell(x)
    assert y.shape == (4, 3)
    assert state.memory.shape == (4, 10, 4)
    assert state.reads.shape == (4, heads[0], 4)
    assert state.read_weights.shape == (4, heads[0], 10)
    assert state.write_weights.shape == (4, heads[1], 10)
    torch.testing.assert_close(state.read_weights.sum(-1), torch.ones(4, heads[0]))
    y.sum().backward()
    for name, p in cell.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_sequence_equals_stepping_the_cell() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **SMALL)
    inputs = torch.randn(7, 2, 5)
    outputs, final = model(inputs)
    state = None
    for t in range(7):
        y, state = model.cell(inputs[t], state)
        torch.testing.assert_close(outputs[t], y)
    assert state is not None
    torch.testing.assert_close(final.memory, state.memory)


def test_batch_first_matches_time_major() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **SMALL)
    bf = ntm.NTM(5, 3, batch_first=True, **SMALL)
    bf.load_state_dict(model.state_dict())
    inputs = torch.randn(6, 3, 5)
    torch.testing.assert_close(bf(inputs.transpose(0, 1))[0], model(inputs)[0].transpose(0, 1))


def test_permuting_the_batch_permutes_the_outputs() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **SMALL)
    inputs = torch.randn(6, 5, 5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(model(inputs[:, perm])[0], model(inputs)[0][:, perm])


def test_state_carries_across_calls() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **SMALL)
    inputs = torch.randn(8, 2, 5)
    whole, _ = model(inputs)
    first, state = model(inputs[:3])
    second, _ = model(inputs[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)


def test_trace_records_every_step() -> None:
    model = ntm.NTM(5, 3, num_read_heads=2, **SMALL)
    outputs, _, trace = model.trace(torch.randn(4, 2, 5))
    assert outputs.shape == (4, 2, 3)
    assert trace.read_weights.shape == (4, 2, 2, 10)
    assert trace.write_weights.shape == (4, 2, 1, 10)
    assert trace.reads.shape == (4, 2, 2, 4)
    torch.testing.assert_close(trace.read_weights.sum(-1), torch.ones(4, 2, 2))
    assert trace.memory.shape == (4, 2, 10, 4)
    assert trace.erase.shape == trace.add.shape == (4, 2, 1, 4)
    # Each step's memory is the last one's, erased and added to by the write weighting.
    w = trace.write_weights[1:, :, 0].unsqueeze(-1)  # (T-1, B, N, 1)
    erase, add = trace.erase[1:, :, 0].unsqueeze(-2), trace.add[1:, :, 0].unsqueeze(-2)
    expected = trace.memory[:-1] * (1 - w * erase) + w * add
    torch.testing.assert_close(trace.memory[1:], expected)


#: Settings under which an independent path is compared with the module's step.
VARIANTS = [
    {"controller": "lstm"},
    {"controller": "feedforward"},
    {"num_read_heads": 2, "num_write_heads": 3, "controller_layers": 2, "shift_range": 2},
    {"controller": "feedforward", "controller_layers": 2, "head_clip": 0.5, "output_clip": 0.3},
]


def same(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-12) -> None:
    """``actual`` equals ``expected`` to ``atol`` (no relative slack), naming ``what``."""
    torch.testing.assert_close(
        actual, expected, rtol=0.0, atol=atol, msg=lambda message: f"{what}: {message}"
    )


def random_state(cell: ntm.NTMCell, batch: int, generator: torch.Generator) -> ntm.NTMState:
    """A state unlike the initial one (no weight piled on slot 0, no constant memory), so
    that every addressing step has something to do from the first step on."""
    cfg = cell.config
    layers = cfg.controller_layers if cfg.controller == "lstm" else 0

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    return ntm.NTMState(
        memory=normal(batch, cfg.memory_size, cfg.word_size),
        reads=torch.tanh(normal(batch, cfg.num_read_heads, cfg.word_size)),
        read_weights=torch.softmax(normal(batch, cfg.num_read_heads, cfg.memory_size), -1),
        write_weights=torch.softmax(normal(batch, cfg.num_write_heads, cfg.memory_size), -1),
        controller_hidden=normal(layers, batch, cfg.controller_size),
        controller_cell=normal(layers, batch, cfg.controller_size),
    )


@pytest.mark.parametrize("options", VARIANTS)
def test_eager_and_fused_forward_agree_in_float64(options: dict[str, object]) -> None:
    """The fused engine is a second, hand-written implementation of the step: the two must
    compute the same outputs and the same final state, to rounding."""
    torch.manual_seed(0)
    settings = {**SMALL, **options, "dtype": torch.float64}
    eager = ntm.NTM(5, 3, **settings)
    fused = ntm.NTM(5, 3, engine="fused", **settings)
    fused.load_state_dict(eager.state_dict())
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(9, 3, 5, generator=generator, dtype=torch.float64)
    for start in (None, random_state(eager.cell, 3, generator)):
        with torch.no_grad():
            eager_out, eager_state = eager(inputs, start)
            fused_out, fused_state = fused(inputs, start)
        same(fused_out, eager_out, "outputs", atol=1e-10)
        for name, a, b in zip(eager_state._fields, fused_state, eager_state, strict=True):
            same(a, b, f"final {name}", atol=1e-10)


def reference_step(
    cell: ntm.NTMCell, x: torch.Tensor, state: ntm.NTMState
) -> tuple[torch.Tensor, ntm.NTMState]:
    """One NTM step from the paper's equations, written apart from ``NTMCell``: only the
    cell's layers and the pure functions of ``ntm.models.ntm.addressing`` and
    ``ntm.models.ntm.memory``."""
    cfg = cell.config
    batch, word, offsets = x.shape[0], cfg.word_size, 2 * cfg.shift_range + 1
    previous_reads = state.reads.reshape(batch, cfg.num_read_heads * word)
    # Controller on the input and the last reads.
    h = torch.cat([x, previous_reads], 1)
    hidden, cells = [], []
    for i, layer in enumerate(cell.controller):
        if cfg.controller == "lstm":
            h, c = layer(h, (state.controller_hidden[i], state.controller_cell[i]))
            hidden.append(h)
            cells.append(c)
        else:
            h = torch.tanh(layer(h))
    if cfg.controller == "lstm":
        controller_hidden, controller_cell = torch.stack(hidden), torch.stack(cells)
    else:
        controller_hidden, controller_cell = state.controller_hidden, state.controller_cell
    raw = cell.head_layer(torch.cat([h, previous_reads], 1))
    if cfg.head_clip > 0:
        raw = raw.clamp(-cfg.head_clip, cfg.head_clip)

    # Every read head's raw parameters, then every write head's; within a head: key (M),
    # strength, gate, gamma, shift weights (S), and for a write head erase (M), add (M).
    read_part = (word + 3 + offsets) * cfg.num_read_heads
    read_raw = raw[:, :read_part].reshape(batch, cfg.num_read_heads, -1)
    write_raw = raw[:, read_part:].reshape(batch, cfg.num_write_heads, -1)

    def addressed(memory: torch.Tensor, previous: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return ntm.models.ntm.addressing.address(
            memory,
            previous,
            p[..., :word],  # key
            F.softplus(p[..., word]),  # strength > 0
            torch.sigmoid(p[..., word + 1]),  # gate in (0, 1)
            torch.softmax(p[..., word + 3 : word + 3 + offsets], -1),  # shift weights
            1 + F.softplus(p[..., word + 2]),  # gamma >= 1
            eps=cfg.eps,
        )

    # Write first (erase, then add), then read the written memory.
    write_weights = addressed(state.memory, state.write_weights, write_raw)
    erase = torch.sigmoid(write_raw[..., word + 3 + offsets : 2 * word + 3 + offsets])
    add = torch.tanh(write_raw[..., 2 * word + 3 + offsets :])
    memory = ntm.models.ntm.memory.write(state.memory, write_weights, erase, add)
    read_weights = addressed(memory, state.read_weights, read_raw)
    reads = ntm.models.ntm.memory.read(memory, read_weights)
    output = cell.output_layer(torch.cat([h, reads.reshape(batch, -1)], 1))
    if cfg.output_clip > 0:
        output = output.clamp(-cfg.output_clip, cfg.output_clip)
    new = ntm.NTMState(
        memory, reads, read_weights, write_weights, controller_hidden, controller_cell
    )
    return output, new


@pytest.mark.parametrize("options", VARIANTS)
def test_trace_matches_a_reference_step_from_the_paper(options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **SMALL, **options, dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(8, 3, 5, generator=generator, dtype=torch.float64)
    start = random_state(model.cell, 3, generator)
    with torch.no_grad():
        outputs, final, trace = model.trace(inputs, start)
        state = start
        for t in range(inputs.shape[0]):
            output, state = reference_step(model.cell, inputs[t], state)
            same(trace.write_weights[t], state.write_weights, f"step {t} write weights")
            same(trace.read_weights[t], state.read_weights, f"step {t} read weights")
            same(trace.reads[t], state.reads, f"step {t} reads")
            same(outputs[t], output, f"step {t} outputs")
    for name, a, b in zip(state._fields, final, state, strict=True):
        same(a, b, f"final {name}")


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_gradcheck_one_whole_step(controller: str) -> None:
    torch.manual_seed(0)
    cell = ntm.NTMCell(
        3,
        2,
        controller=controller,
        controller_size=4,
        memory_size=5,
        word_size=3,
        dtype=torch.float64,
    )
    state = cell.initial_state(2)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)

    def step(x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        y, new = cell(x, state._replace(memory=memory))
        return torch.cat([y.flatten(), new.memory.flatten(), new.reads.flatten()])

    assert gradcheck(step, (x, memory))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, memory_init="learned", **SMALL)
    model(torch.randn(6, 2, 5))[0].sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_outputs_are_clipped_logits() -> None:
    model = ntm.NTM(5, 3, output_clip=0.5, **SMALL)
    out, _ = model(torch.randn(4, 2, 5) * 100)
    assert out.abs().max() <= 0.5


def test_config_round_trips_through_json() -> None:
    cfg = NTMConfig(
        controller="feedforward", num_read_heads=3, memory_init="learned", head_clip=0.0
    )
    assert NTMConfig.from_json(cfg.to_json()) == cfg
    model = ntm.NTM.from_config(cfg)
    assert model.config == cfg
    lstm = LSTMConfig(input_size=4, hidden_size=12, num_layers=2, output_clip=0.0)
    assert LSTMConfig.from_json(lstm.to_json()) == lstm
    assert ntm.LSTMBaseline.from_config(lstm).config == lstm
    with pytest.raises(ValueError, match="LSTMConfig: unknown key"):
        LSTMConfig.from_json('{"hidden": 3}')


def test_constructors_spell_out_their_settings() -> None:
    """Every NTMConfig field but the sizes is a keyword of NTMCell and NTM, with the
    config's default; printing a model shows them."""
    for cls in (ntm.NTMCell, ntm.NTM):
        parameters = inspect.signature(cls).parameters
        for field in dataclasses.fields(NTMConfig):
            assert parameters[field.name].default in (field.default, inspect.Parameter.empty)
        assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), cls
    text = repr(ntm.NTM(5, 3, memory_size=12, engine="fused"))
    assert "memory_size=12" in text
    assert "engine='fused'" in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_read_heads": 0}, "num_read_heads = 0"),
        ({"controller": "gru"}, "controller = 'gru'"),
        ({"shift_range": 70}, "shift_range = 70"),
        ({"memory_init": "zeros"}, "memory_init"),
        ({"word_size": -1}, "word_size = -1"),
    ],
)
def test_bad_config_values_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NTMConfig(**overrides)  # type: ignore[arg-type]


def test_config_from_dict_rejects_unknown_keys_and_types() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        NTMConfig.from_dict({"memory_slots": 3})
    with pytest.raises(ValueError, match="expected int"):
        NTMConfig.from_dict({"memory_size": "128"})


def test_wrong_input_shape_is_named() -> None:
    cell = ntm.NTMCell(5, 3, **SMALL)
    with pytest.raises(ValueError, match=r"NTMCell: input has shape \(2, 4\), expected \(\*, 5\)"):
        cell(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NTM: inputs has shape"):
        ntm.NTM(5, 3, **SMALL)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="floating-point"):
        cell(torch.zeros(2, 5, dtype=torch.long))


def test_baseline_sequence_interface() -> None:
    model = ntm.LSTMBaseline(5, 3, hidden_size=8, num_layers=2)
    out, (h, c) = model(torch.randn(7, 2, 5))
    assert out.shape == (7, 2, 3)
    assert h.shape == c.shape == (2, 2, 8)
    _, state = model(torch.randn(3, 2, 5))
    assert model(torch.randn(4, 2, 5), state)[0].shape == (4, 2, 3)
