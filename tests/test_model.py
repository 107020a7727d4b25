"""The NTM modules: shapes, agreement of step and sequence APIs, gradients, configs."""

import pytest
import torch
from torch.autograd import gradcheck

import ntm
from ntm.config import PAPER_SETTINGS, NTMConfig, paper_lstm_config, paper_ntm_config

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
    assert trace.read_weights.shape == (4, 2, 2, 10)
    assert trace.write_weights.shape == (4, 2, 1, 10)
    assert trace.reads.shape == (4, 2, 2, 4)
    inputs = torch.randn(4, 2, 5)
    outputs, _, trace = model.trace(inputs)
    torch.testing.assert_close(outputs, model(inputs)[0])
    torch.testing.assert_close(trace.read_weights.sum(-1), torch.ones(4, 2, 2))


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
