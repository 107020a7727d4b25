"""The engine selector: one decision, one fallback chain, for every model."""

import inspect

import pytest
import torch

import ntm
from ntm import registry
from ntm.engines import select
from ntm.engines.select import AUTO, Choice, select_engine
from ntm.runs.evaluation import evaluate

CPU = torch.device("cpu")
GPU = torch.device("cuda")
NTM_ENGINES = ntm.NTM.engines
DNC_ENGINES = ntm.DNC.engines


@pytest.fixture
def native_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "native_available", lambda: None)
    monkeypatch.setattr(select, "compiled_available", lambda: None)


@pytest.mark.usefixtures("native_builds")
@pytest.mark.parametrize(
    ("engines", "requested", "device", "dtype", "expected"),
    [
        (NTM_ENGINES, AUTO, CPU, torch.float32, "native"),
        (NTM_ENGINES, AUTO, CPU, torch.float64, "fused"),
        (NTM_ENGINES, AUTO, GPU, torch.float32, "fused"),
        (DNC_ENGINES, AUTO, CPU, torch.float32, "native"),
        (DNC_ENGINES, AUTO, CPU, torch.float64, "eager"),
        (NTM_ENGINES, "native", GPU, torch.float32, "fused"),
        (DNC_ENGINES, "native", GPU, torch.float32, "eager"),
        (DNC_ENGINES, "compiled", CPU, torch.float32, "eager"),
        (NTM_ENGINES, "eager", CPU, torch.float32, "eager"),
        ((), AUTO, CPU, torch.float32, ""),
    ],
)
def test_one_chain_for_every_model(
    engines: tuple[str, ...],
    requested: str,
    device: torch.device,
    dtype: torch.dtype,
    expected: str,
) -> None:
    choice = select_engine(engines, requested, device, dtype)
    assert choice.engine == expected
    if requested != AUTO and engines:  # a reason exactly when it is not the one asked for
        assert (choice.reason is None) == (requested == expected), choice


def test_a_reason_names_each_engine_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "native_available", lambda: "no C compiler (cc)")
    choice = select_engine(NTM_ENGINES, "native", CPU, torch.float32)
    assert choice == Choice("fused", "native: no C compiler (cc)")
    choice = select_engine(DNC_ENGINES, "native", CPU, torch.float32)
    assert choice.engine == "eager"
    assert "native: no C compiler" in str(choice.reason)
    assert "fused: the model has eager, native" in str(choice.reason)


def test_compiled_runs_fused_without_gradients(native_builds: None) -> None:
    assert select_engine(NTM_ENGINES, "compiled", CPU, torch.float32).engine == "compiled"
    choice = select_engine(NTM_ENGINES, "compiled", CPU, torch.float32, grad=False)
    assert choice.engine == "fused"


@pytest.mark.parametrize("cls", [ntm.NTM, ntm.DNC])
def test_the_default_is_auto_and_the_fastest_engine_runs(cls: type) -> None:
    model = cls(9, 8)
    assert model.engine == AUTO
    assert inspect.signature(cls).parameters["engine"].default == AUTO
    expected = select_engine(cls.engines, AUTO, CPU, torch.float32).engine
    assert model.engine_for(CPU, torch.float32).engine == expected
    if ntm.native.native_available() is None:
        assert expected == "native"


@pytest.mark.parametrize("cls", [ntm.NTM, ntm.DNC])
def test_an_engine_the_model_lacks_is_refused_by_name(cls: type) -> None:
    with pytest.raises(ValueError, match="engine"):
        cls(9, 8, engine="warp")


def test_evaluation_leaves_the_engine_as_it_was() -> None:
    torch.manual_seed(0)
    model = ntm.NTM(9, 8, controller_size=8, memory_size=8, word_size=4, engine="compiled")
    batch = ntm.make_task("copy", max_length=3).sample(4, torch.Generator().manual_seed(0))
    seen: list[str] = []
    evaluate(model, batch, inspect=lambda *_: seen.append(model.engine))
    assert seen == ["compiled"]
    assert model.engine == "compiled"


def test_every_registered_model_is_asked_through_the_registry() -> None:
    for name, cls in registry.models().items():
        engines = registry.engines(cls)
        choice = select_engine(engines, AUTO, CPU, torch.float32)
        assert (choice.engine == "") == (not engines), name


def test_a_plugin_model_without_the_engine_runs_its_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class TwoWays(torch.nn.Module):
        engines = ("slow", "fast")

    choice = select_engine(registry.engines(TwoWays), "native", CPU, torch.float32)
    assert choice.engine == "slow"
    assert choice.reason is not None and "the model has slow, fast" in choice.reason


# Raised inside Dynamo (torch 2.13) as it traces a custom autograd function, not by this project.
@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")
@pytest.mark.parametrize("cls", [ntm.NTM, ntm.DNC])
def test_torch_compile_traces_the_model_whole(cls: type) -> None:
    """``torch.compile(model, fullgraph=True)`` refuses any graph break: the model runs its
    eager engine while traced, and its input check reads no value then. The ``eager``
    backend traces with Dynamo as every backend does, without Inductor's code generation."""
    torch.manual_seed(0)
    model = cls(5, 3, controller_size=8, memory_size=8, word_size=4)
    inputs = torch.rand(3, 2, 5)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    outputs, _ = compiled(inputs)
    expected, _ = model(inputs)
    torch.testing.assert_close(outputs, expected, rtol=1e-5, atol=1e-6)
