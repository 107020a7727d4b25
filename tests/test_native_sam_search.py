"""SAM's native engine with its nearest-neighbour index (``SAMConfig.search``): every cell
probed, the same function as the exhaustive search; at N = 4096, training runs and reads
find mostly the true top K; the index cleared in time proportional to the rows written."""

import ctypes
from typing import Any

import pytest
import torch

import ntm
from ntm.engines import native
from ntm.engines.native import sam as native_sam
from ntm.models.sam.model import SAM, SAMState
from tests.test_native_sam import SMALL, _random_state, _run, canonical

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")


def _pair(**options: Any) -> tuple[SAM, SAM]:
    """Two models with the same parameters, one searching exhaustively, one with the index."""
    exact = SAM(5, 3, **options, search="exact")
    index = SAM(5, 3, **options, search="index")
    index.load_state_dict(exact.state_dict())
    return exact, index


def _same(got: tuple, exact: tuple) -> None:
    """The same slots read, and the same numbers to rounding."""
    torch.testing.assert_close(got[0], exact[0], atol=1e-6, rtol=1e-6)
    for name, a, b in zip(SAMState._fields, canonical(got[1]), canonical(exact[1]), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=f"final {name}")
    for a, b in zip(got[2], exact[2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6 * float(b.abs().max()), rtol=1e-6)


@needs_native
@pytest.mark.parametrize(
    ("options", "steps"),
    [
        ({"memory_size": 40, "k": 4}, 12),
        ({"memory_size": 200, "num_read_heads": 3, "k": 5, "controller_layers": 2}, 9),
        ({"memory_size": 6, "num_read_heads": 1, "k": 2}, 12),  # all slots written and reused
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_cell_probed_the_index_reads_what_the_scan_reads(
    options: dict[str, Any], steps: int, seed: int
) -> None:
    """At these N the index probes every cell (``sam_index_default_probes``); from a state
    given (the index filled from its memory) and from the zero state (the workspace's index,
    cleared between batches), outputs, final state and gradients are the exhaustive
    engine's."""
    torch.manual_seed(seed)
    exact, index = _pair(**{**SMALL, **options})
    x, weights = torch.randn(steps, 3, 5), torch.randn(steps, 3, 3)
    state = _random_state(exact, 3, seed)
    _same(_run(index, "native", x, state, weights), _run(exact, "native", x, state, weights))
    # Rows of one direction ranked by their size, not by rounding (a larger eps).
    exact, index = _pair(**{**SMALL, **options, "eps": 1e-3})
    for steps_now in (steps, steps // 2, steps):
        x = torch.randn(steps_now, 3, 5)
        weights = torch.randn(steps_now, 3, 3)
        _same(_run(index, "native", x, None, weights), _run(exact, "native", x, None, weights))
    assert index.workspaces._kept[3][-1].index and not exact.workspaces._kept[3][-1].index


@needs_native
def test_at_4096_slots_training_runs_and_reads_find_the_true_top_k() -> None:
    """Training steps on copy batches run with finite losses and gradients; then, step by
    step from a state of random rows (the index filled from them, 64 cells of which 32
    probed), the slots each head reads are mostly those the exact search (the eager
    engine's) reads, and the weights carry gradients."""
    torch.manual_seed(0)
    options = {"controller_size": 32, "memory_size": 4096, "num_read_heads": 2, "k": 8}
    model = SAM(9, 8, **options, search="index", engine="native")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = ntm.make_task("copy").sample(4, generator)
        outputs, _ = model(batch.inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            outputs[-batch.targets.shape[0] :], batch.targets
        )
        optimizer.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
    assert model.workspaces._kept[4][-1].index

    state = _random_state(model, 4, 0)
    found = []
    for x in torch.randn(6, 1, 4, 9):
        model.engine = "native"
        got, final = model(x, state)
        model.engine = "eager"
        with torch.no_grad():
            _, true = model(x, state)
        hits = (final.read_indices[..., :, None] == true.read_indices[..., None, :]).any(-1)
        found.append(hits.float().mean())
        state = final
    assert float(torch.stack(found).mean()) > 0.8
    assert got.requires_grad


@needs_native
def test_the_index_is_cleared_in_proportion_to_the_rows_written() -> None:
    """A workspace reused for a new batch clears each sequence's index by the rows its last
    call wrote (at most S per step), not by N."""
    torch.manual_seed(0)
    steps, heads, k = 6, 2, 3
    model = SAM(5, 3, **{**SMALL, "memory_size": 2**14}, search="index", engine="native")
    model(torch.randn(steps, 2, 5))
    workspace = model.workspaces._kept[2][-1]
    library = native._library()
    for name in ("sam_index_rows", "sam_index_reset_work"):
        getattr(library, name).argtypes = [ctypes.c_void_p]
    library.sam_index_reset_work.restype = ctypes.c_int64
    indexes = [ctypes.c_void_p(p) for p in workspace.indexes.tolist()]
    written = [library.sam_index_rows(p) for p in indexes]
    assert all(0 < rows <= steps * (heads * k + 1) for rows in written)
    workspace.reset()
    assert [library.sam_index_rows(p) for p in indexes] == [0, 0]
    assert [library.sam_index_reset_work(p) for p in indexes] == written


def test_auto_searches_exhaustively_below_the_threshold() -> None:
    config = SAM(5, 3, **SMALL).config
    assert config.search == "auto"
    assert not native_sam.uses_index(config)
    big = SAM(5, 3, **{**SMALL, "memory_size": native_sam.INDEX_FROM}).config
    assert native_sam.uses_index(big)
    assert not native_sam.uses_index(
        SAM(5, 3, **{**SMALL, "memory_size": 2**11}, search="exact").config
    )
    with pytest.raises(ValueError, match="search"):
        SAM(5, 3, search="faiss")
