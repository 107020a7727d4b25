"""The DNC's sparse link matrix (``link_sparsity``, the paper's Methods): the pure functions
by hand and against a slow reference, the setting, and the native engine against eager."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ntm.cli import main
from ntm.engines.native import dnc as native_dnc
from ntm.models.dnc import addressing as dnc
from ntm.models.dnc.config import DNCConfig
from ntm.models.dnc.model import DNC, DNCCell, DNCState

from .test_native_dnc import SMALL, _agree, _run, needs_native


def _largest_reference(values: list[float], count: int) -> set[int]:
    """The indices of the ``count`` largest values, equal values in index order."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return set(order[:count])


def _sparse_link_reference(
    link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor, k: int
) -> torch.Tensor:
    """The sparse link update in plain loops over one sequence's (N, N) matrix."""
    n = len(precedence)
    w_kept = _largest_reference(write_weights.tolist(), k)
    p_kept = _largest_reference(precedence.tolist(), k)
    w = [float(write_weights[i]) if i in w_kept else 0.0 for i in range(n)]
    p = [float(precedence[j]) if j in p_kept else 0.0 for j in range(n)]
    updated = [
        [0.0 if i == j else (1 - w[i] - w[j]) * float(link[i, j]) + w[i] * p[j] for j in range(n)]
        for i in range(n)
    ]
    rows = [_largest_reference(updated[i], k) for i in range(n)]
    columns = [_largest_reference([updated[i][j] for i in range(n)], k) for j in range(n)]
    return torch.tensor(
        [
            [updated[i][j] if j in rows[i] and i in columns[j] else 0.0 for j in range(n)]
            for i in range(n)
        ],
        dtype=link.dtype,
    )


def _weighting(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Non-negative weightings summing to at most 1, as the write weighting is."""
    total = torch.rand(*shape[:-1], 1, generator=generator, dtype=torch.float64)
    logits = 3 * torch.randn(*shape, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, -1) * total


def _sparse_history(
    batch: int, slots: int, k: int, steps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Links and precedence after ``steps`` sparse updates from zero."""
    generator = torch.Generator().manual_seed(seed)
    link = torch.zeros(batch, slots, slots, dtype=torch.float64)
    precedence = torch.zeros(batch, slots, dtype=torch.float64)
    for _ in range(steps):
        write_weights = _weighting(generator, batch, slots)
        link = dnc.sparse_link(link, precedence, write_weights, k)
        precedence = dnc.precedence(precedence, write_weights)
    return link, precedence


def test_largest_mask_by_hand() -> None:
    values = torch.tensor([[0.1, 0.5, 0.5, 0.2], [0.0, 0.0, 0.0, 0.0], [-1.0, 0.0, -2.0, 3.0]])
    expected = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1]], dtype=values.dtype)
    assert torch.equal(dnc.largest_mask(values, 2), expected)
    assert torch.equal(dnc.largest_mask(values, 1)[0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert torch.equal(dnc.largest_mask(values, 4), torch.ones_like(values))
    assert torch.equal(dnc.largest_mask(values, 9), torch.ones_like(values))
    columns = dnc.largest_mask(values, 1, dim=-2)  # ties down a column: the upper row
    assert torch.equal(columns, torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1.0]]))


def test_keep_largest_passes_the_gradient_of_what_it_keeps() -> None:
    weights = torch.tensor([0.3, 0.1, 0.3, 0.2], requires_grad=True)
    kept = dnc.keep_largest(weights, 2)
    assert torch.equal(kept.detach(), torch.tensor([0.3, 0.0, 0.3, 0.0]))
    (kept * torch.arange(1.0, 5.0)).sum().backward()
    assert weights.grad is not None
    assert torch.equal(weights.grad, torch.tensor([1.0, 0.0, 3.0, 0.0]))


def test_sparse_link_by_hand() -> None:
    """K = 1, three slots: w keeps slot 2, p slot 0 (ties: slot 0 before slot 1)."""
    link = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.25, 0.0]]])
    precedence = torch.tensor([[0.5, 0.5, 0.0]])
    write_weights = torch.tensor([[0.1, 0.0, 0.5]])
    # Sparse w = (0, 0, 0.5), p = (0.5, 0, 0). Before the thresholding:
    # row 0: 0; row 1: (1 - 0 - 0) 0.5 = 0.5 at (1, 0); row 2: (1 - 0.5) 0.25 = 0.125 at
    # (2, 1) and 0.5 * 0.5 = 0.25 at (2, 0). Row 2 keeps (2, 0); column 0 keeps (1, 0) over
    # (2, 0): (2, 0) goes too, and (2, 1), not its row's largest, with it.
    got = dnc.sparse_link(link, precedence, write_weights, 1)
    assert torch.equal(got, torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]]))
    got = dnc.sparse_link(link, precedence, write_weights, 2)
    # K = 2: w keeps slots 2 and 0, p slots 0 and 1; every row and column has two or fewer.
    assert torch.allclose(got, dnc.link(link, precedence.clone(), write_weights))


@pytest.mark.parametrize(("slots", "k"), [(5, 1), (6, 2), (7, 3), (9, 8)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_link_matches_a_slow_reference(slots: int, k: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed + 10)
    link, precedence = _sparse_history(3, slots, k, seed + 1, seed)  # seed 0: zeros, all ties
    write_weights = _weighting(generator, 3, slots)
    got = dnc.sparse_link(link, precedence, write_weights, k)
    for b in range(3):
        expected = _sparse_link_reference(link[b], precedence[b], write_weights[b], k)
        torch.testing.assert_close(got[b], expected, atol=1e-15, rtol=0)
    assert ((got != 0).sum(-1) <= k).all() and ((got != 0).sum(-2) <= k).all()
    assert (got.diagonal(dim1=-2, dim2=-1) == 0).all()


@pytest.mark.parametrize("k", [6, 7, 50])
def test_sparse_link_from_k_equal_n_on_is_the_dense_link(k: int) -> None:
    generator = torch.Generator().manual_seed(0)
    link = torch.rand(2, 6, 6, generator=generator, dtype=torch.float64)  # not sparse at all
    precedence = _weighting(generator, 2, 6)
    write_weights = _weighting(generator, 2, 6)
    got = dnc.sparse_link(link, precedence, write_weights, k)
    assert torch.equal(got, dnc.link(link, precedence, write_weights))


def test_sparse_link_gradcheck() -> None:
    """On positive inputs, all apart: the numerical differences then change no choice (a 0
    raised by them would)."""
    generator = torch.Generator().manual_seed(4)
    link = 0.5 * torch.rand(2, 6, 6, generator=generator, dtype=torch.float64)
    precedence = _weighting(generator, 2, 6)
    write_weights = _weighting(generator, 2, 6)
    inputs = [t.clone().requires_grad_(True) for t in (link, precedence, write_weights)]
    assert torch.autograd.gradcheck(lambda *x: dnc.sparse_link(*x, 2), inputs)


def test_the_setting_is_checked_and_round_trips() -> None:
    cfg = DNCConfig(link_sparsity=8)
    assert DNCConfig.from_json(cfg.to_json()) == cfg
    assert DNC.from_config(cfg).config.link_sparsity == 8
    assert "link_sparsity=8" in repr(DNCCell(5, 3, link_sparsity=8))
    with pytest.raises(ValueError, match=r"DNCConfig.link_sparsity = -1: expected an integer >= 0"):
        DNC(5, 3, link_sparsity=-1)
    with pytest.raises(ValueError, match="expected int"):
        DNCConfig.from_dict({"link_sparsity": 1.5})


def test_the_cell_keeps_its_links_sparse() -> None:
    torch.manual_seed(0)
    cell = DNCCell(5, 3, controller_size=8, memory_size=10, word_size=4, link_sparsity=2)
    state = cell.initial_state(3)
    for _ in range(8):
        _, state = cell(torch.randn(3, 5), state)
    nonzero = state.link != 0
    assert nonzero.any() and (nonzero.sum(-1) <= 2).all() and (nonzero.sum(-2) <= 2).all()
    dense = DNCCell(5, 3, controller_size=8, memory_size=10, word_size=4, link_sparsity=10)
    dense.load_state_dict(cell.state_dict())
    free = DNCCell(5, 3, controller_size=8, memory_size=10, word_size=4)
    free.load_state_dict(cell.state_dict())
    x = torch.randn(3, 5)
    torch.testing.assert_close(dense(x, state)[0], free(x, state)[0], atol=0, rtol=0)


def _mid_sequence(model: DNC, batch: int, seed: int) -> DNCState:
    """A state in mid-sequence: memory, weightings and sparse links all in play."""
    cfg = model.config
    heads, slots, layers = cfg.num_read_heads, cfg.memory_size, cfg.controller_layers
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    link, precedence = _sparse_history(batch, slots, cfg.link_sparsity, 5, seed)
    hidden = (layers, batch, cfg.controller_size)
    return DNCState(
        memory=normal(batch, slots, cfg.word_size),
        reads=normal(batch, heads, cfg.word_size),
        read_weights=_weighting(generator, batch, heads, slots).float(),
        write_weights=_weighting(generator, batch, slots).float(),
        usage=torch.rand(batch, slots, generator=generator),
        precedence=precedence.float(),
        link=link.float(),
        controller_hidden=torch.tanh(normal(*hidden)),
        controller_cell=normal(*hidden),
    )


@needs_native
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize(
    ("options", "steps", "start"),
    [
        ({}, 7, "initial"),
        ({"num_read_heads": 2}, 11, "mid-sequence"),
        ({"num_read_heads": 3, "controller_layers": 2}, 9, "initial"),
        ({"num_read_heads": 4, "memory_size": 9}, 10, "mid-sequence"),
        ({"memory_size": 3, "word_size": 2}, 5, "mid-sequence"),  # K >= N for K = 3
    ],
)
def test_native_sparse_links_match_eager(
    k: int, options: dict[str, Any], steps: int, start: str
) -> None:
    torch.manual_seed(k)
    model = DNC(5, 3, **{**SMALL, **options, "link_sparsity": k})
    batch = 3
    state = model.initial_state(batch) if start == "initial" else _mid_sequence(model, batch, k)
    x, weights = torch.randn(steps, batch, 5), torch.randn(steps, batch, 3)
    eager = _run(model, "eager", x, state, weights)
    got = _run(model, "native", x, state, weights)
    _agree(got, eager)
    assert got[1][DNCState._fields.index("link")].any()
    if start == "mid-sequence":  # (from zeros, K = 1 keeps the diagonal's 0 alone at first)
        assert got[2][1 + DNCState._fields.index("link")].any()  # the initial links' gradient


@needs_native
def test_the_sparse_copy_model_matches_eager() -> None:
    """The copy task's model, 128 slots, with the paper's K = 8, on the sparse path."""
    torch.manual_seed(1)
    model = DNC(9, 8, link_sparsity=8)
    x, weights = torch.rand(12, 4, 9).round(), torch.randn(12, 4, 8)
    start = _mid_sequence(model, 4, 3)
    _agree(_run(model, "native", x, start, weights), _run(model, "eager", x, start, weights))


@needs_native
@pytest.mark.parametrize("steps", [1, 4])
def test_native_sparse_links_without_gradients(steps: int) -> None:
    """Without a gradient wanted, two states in turn: the same outputs and final state."""
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, link_sparsity=2, engine="native")
    x = torch.randn(steps, 2, 5)
    with_grad, final = model(x)
    with torch.no_grad():
        without, final_without = model(x)
    torch.testing.assert_close(without, with_grad.detach(), atol=0, rtol=0)
    for a, b in zip(final_without, final, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    _, state = model(x[:1])  # the final links come back as a state's: sparse enough
    nonzero = state.link != 0
    assert (nonzero.sum(-1) <= 2).all() and (nonzero.sum(-2) <= 2).all()
    if steps > 1:  # and the sequence goes on from them as it would have
        torch.testing.assert_close(model(x[1:], state)[0], with_grad[1:], atol=1e-6, rtol=1e-6)


def test_links_too_dense_for_the_lists_run_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """A state whose links have more than K non-zero entries in a row (a dense DNC's, say):
    the native engine finds it as it reads them and leaves the sequence to eager."""
    statuses: list[int] = []
    call = native_dnc._call

    def recorded(*args: Any, **options: Any) -> int:
        statuses.append(call(*args, **options))
        return statuses[-1]

    monkeypatch.setattr(native_dnc, "_call", recorded)
    torch.manual_seed(0)
    model = DNC(5, 3, **SMALL, link_sparsity=2, engine="native")
    x, state = torch.randn(4, 2, 5), model.initial_state(2)
    column = torch.zeros(2, 6, 6)
    column[:, 1:4, 0] = 0.2  # three in column 0, one a row
    for link in (torch.rand(2, 6, 6) * (1 - torch.eye(6)), column):
        got, _ = model(x, state._replace(link=link))
        model.engine = "eager"
        torch.testing.assert_close(got, model(x, state._replace(link=link))[0], atol=0, rtol=0)
        model.engine = "native"
    assert statuses == [native_dnc.TOO_DENSE] * 2


def test_the_command_line_takes_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["--max-sequences", "8", "--batch-size", "4", "--eval-every", "8", "--eval-size", "4",
             "--quiet", "--model", "dnc", "--controller-size", "8", "--memory-size", "12",
             "--word-size", "4"]  # fmt: skip
    run_dir = tmp_path / "sparse"
    args = ["train", "--run-dir", str(run_dir), *small, "--model-arg", "link_sparsity=3"]
    assert main(args) == 0
    assert json.loads((run_dir / "config.json").read_text())["model"]["link_sparsity"] == 3
    bad = ["train", "--run-dir", str(tmp_path / "bad"), *small, "--model-arg", "link_sparsity=-2"]
    assert main(bad) == 2
    assert "DNCConfig.link_sparsity = -2: expected an integer >= 0" in capsys.readouterr().err
