"""The native engine (``ntm.engines.native``): the same function as the eager path, its fallbacks,
and its build."""

from pathlib import Path

import pytest
import torch

import ntm
from ntm.engines import native, select

NATIVE = native.native_available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")

SMALL = {"controller_size": 8, "memory_size": 10, "word_size": 4}


def _run(model: ntm.NTM, engine: str, x: torch.Tensor, weights: torch.Tensor) -> tuple:
    """Outputs, final state and the gradients of inputs, initial state and parameters."""
    model.engine = engine
    state = model.initial_state(x.shape[1])
    start = type(state)(*(t.detach().clone().requires_grad_(True) for t in state))
    x = x.detach().clone().requires_grad_(True)
    outputs, final = model(x, start)
    leaves = [x, *(t for t in start if t.numel()), *model.parameters()]
    grads = torch.autograd.grad((outputs * weights).sum(), leaves, allow_unused=True)
    return outputs.detach(), [t.detach() for t in final], grads


@needs_native
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"controller": "feedforward"},
        {"num_read_heads": 2, "num_write_heads": 3, "controller_layers": 2, "shift_range": 2},
        {"controller": "feedforward", "controller_layers": 2, "num_read_heads": 3},
        {"memory_init": "random", "learn_initial_reads": True, "learn_initial_weights": True},
        {"head_clip": 0.5, "output_clip": 0.3},
        {"memory_size": 5, "shift_range": 2},  # shifts that reach every slot
    ],
)
def test_native_engine_matches_eager(options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **{**SMALL, **options})
    x, weights = torch.randn(9, 4, 5), torch.randn(9, 4, 3)
    eager = _run(model, "eager", x, weights)
    got = _run(model, "native", x, weights)
    torch.testing.assert_close(got[0], eager[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(got[1], eager[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(got[2], eager[2], strict=True):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@needs_native
def test_the_copy_model_matches_eager_on_a_copy_batch() -> None:
    """The paper's copy model on a batch of the task, where the weightings become sharp."""
    torch.manual_seed(1)
    model = ntm.NTM(9, 8)
    batch = ntm.make_task("copy").sample(16, torch.Generator().manual_seed(2))
    weights = torch.randn(batch.inputs.shape[0], 16, 8)
    eager = _run(model, "eager", batch.inputs, weights)
    got = _run(model, "native", batch.inputs, weights)
    torch.testing.assert_close(got[0], eager[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(got[2], eager[2], strict=True):
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_other_dtypes_run_fused(monkeypatch: pytest.MonkeyPatch) -> None:
    """float64 is not the native library's: the model runs the fused path instead."""
    calls = []
    monkeypatch.setattr(native._NativeSequence, "apply", lambda *a: calls.append(a))
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **SMALL, dtype=torch.float64)
    x = torch.randn(6, 2, 5, dtype=torch.float64)
    model.engine = "eager"
    eager, _ = model(x)
    model.engine = "native"
    got, _ = model(x)
    assert calls == []
    torch.testing.assert_close(got, eager)


def test_without_a_compiler_training_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, f32 = torch.device("cpu"), torch.float32
    monkeypatch.setattr(select, "native_available", lambda: "no C compiler")
    choice = select.select_engine(ntm.NTM.engines, "native", cpu, f32)
    assert choice == ("fused", "native: no C compiler")
    monkeypatch.setattr(select, "native_available", lambda: None)
    assert select.select_engine(ntm.NTM.engines, "native", cpu, f32) == ("native", None)


def test_a_missing_compiler_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NTM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="no-such-cc"):
        native._build()
    assert list(tmp_path.iterdir()) == []  # nothing half-built left behind


@pytest.mark.models  # builds the C library twice: about 12 s of the default run
@needs_native
def test_the_library_is_built_once_per_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NTM_CACHE_DIR", str(tmp_path))
    built = native._build()
    assert built.parent == tmp_path
    assert native._build() == built  # the cached file, not a second build
    assert [p.name for p in tmp_path.iterdir()] == [built.name]
    changed = tmp_path / "changed.c"
    changed.write_text(native.SOURCE.read_text() + "\n/* another version */\n")
    monkeypatch.setattr(native, "SOURCE", changed)
    assert native._build() != built


@pytest.mark.skipif(NATIVE is not None, reason=f"native engine unavailable: {NATIVE}")
def test_a_call_with_the_wrong_number_of_buffers_is_refused() -> None:
    """The C side reads a fixed number of pointers: one more or one fewer would read past
    the array or leave a buffer unset, so Python refuses such a call before it is made."""
    dims = native._Dims(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1e-6, 0.0)
    with pytest.raises(RuntimeError, match=r"ntm_forward takes 25 buffers, got 24"):
        native._call("ntm_forward", dims, [torch.zeros(1)] * 24)
    assert len(native._ForwardBuffers._fields) == 25


@needs_native
def test_without_gradients_the_sequence_runs_in_windows_of_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An evaluation keeps a window of memories, not all of them: the windows chain the
    state, so outputs and final state are the single pass's."""
    torch.manual_seed(0)
    model = ntm.NTM(5, 3, **SMALL)
    x = torch.randn(23, 4, 5)
    with torch.no_grad():
        whole, whole_final = model(x)
        calls = []
        apply = native._NativeSequence.apply
        monkeypatch.setattr(native, "window_steps", lambda cfg, batch: 5)
        monkeypatch.setattr(
            native._NativeSequence, "apply", lambda *a: calls.append(a[1].shape[0]) or apply(*a)
        )
        parts, parts_final = model(x)
    assert calls == [5, 5, 5, 5, 3]
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=1e-6)
    for a, b in zip(parts_final, whole_final, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    calls.clear()
    model(x)[0].sum().backward()  # with gradients: one pass, which the backward needs
    assert calls == [23]
    # The window's size: its memories within WINDOW_BYTES.
    monkeypatch.undo()
    cfg = ntm.NTM(5, 3, memory_size=1024, word_size=20).config
    steps = native.window_steps(cfg, 64)
    assert steps * 64 * 1024 * 20 * 4 <= native.WINDOW_BYTES < (steps + 1) * 64 * 1024 * 20 * 4
