"""A trained model given more memory slots than it trained with (``--model-arg
memory_size=N`` at evaluation): no weight depends on N."""

import json
from pathlib import Path

import pytest
import torch

import ntm
from ntm.cli import main
from ntm.models.ntm.config import NTMConfig
from ntm.runs.evaluation import evaluate_run
from ntm.runs.load import load_run, read_run_config

from .conftest import TINY_MODEL, tiny_flags


@pytest.mark.parametrize("memory_init", ["constant", "learned", "random"])
@pytest.mark.parametrize("size", [12, 40])
def test_the_ntm_keeps_its_slots_and_adds_quiet_ones(memory_init: str, size: int) -> None:
    torch.manual_seed(0)
    trained = NTMConfig(input_size=5, output_size=3, memory_size=20, word_size=4,
                        controller_size=8, memory_init=memory_init)  # fmt: skip
    model = ntm.NTM.from_config(trained)
    with torch.no_grad():
        for logits in (model.cell.initial_read_logits, model.cell.initial_write_logits):
            logits.normal_()
    wanted = NTMConfig(**{**trained.to_dict(), "memory_size": size})
    adapted = ntm.NTM.adapt_weights(model.state_dict(), trained, wanted)
    bigger = ntm.NTM.from_config(wanted)
    bigger.load_state_dict(adapted, strict=True)
    kept = min(size, 20)
    old, new = model.cell.initial_memory, bigger.cell.initial_memory
    torch.testing.assert_close(new[:kept], old[:kept])
    if size > 20 and memory_init != "random":
        torch.testing.assert_close(new[20:], old.mean(0).expand(size - 20, -1))
    read = bigger.cell.initial_read_logits
    torch.testing.assert_close(read[:, :kept], model.cell.initial_read_logits[:, :kept])
    if size > 20:
        assert (read[:, 20:] == model.cell.initial_read_logits.min(-1, keepdim=True).values).all()
    outputs, _ = bigger(torch.rand(6, 2, 5))
    assert torch.isfinite(outputs).all()


def test_another_change_is_left_to_the_strict_load() -> None:
    trained = NTMConfig(input_size=5, output_size=3)
    wanted = NTMConfig(input_size=5, output_size=3, memory_size=64, word_size=8)
    tensors = ntm.NTM.from_config(trained).state_dict()
    assert ntm.NTM.adapt_weights(tensors, trained, wanted) is tensors


def test_eval_gives_the_shipped_models_more_slots(capsys: pytest.CaptureFixture[str]) -> None:
    for model in ("ntm", "dnc"):
        folder = ntm.pretrained.path("copy", model)
        run, loaded = load_run(folder, model_settings={"memory_size": 256})
        assert run.model.memory_size == 256
        assert loaded.config.memory_size == 256
    flags = ["--size", "4", "--task-arg", "max_length=30", "--json"]
    assert main(["eval", "--pretrained", "copy", "--model-arg", "memory_size=256", *flags]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["sequences"] == 4
    assert main(["eval", "--pretrained", "copy", "--model-arg", "word_size=7", *flags]) == 2
    said = capsys.readouterr().err
    assert "model settings word_size=7: the trained weights depend on them" in said


def test_a_memory_sized_to_each_length_climbs_the_ladder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--memory-for-length: each rung's model has as many slots as its sequences have steps
    where it has fewer (the trained or the given number), and scores as that model does."""
    run_dir = tmp_path / "run"
    train = tiny_flags(max_sequences=32, eval_every=32)
    assert main(["train", "--run-dir", str(run_dir), "--quiet", "--nproc", "1", *train]) == 0
    rows = evaluate_run(run_dir, size=3, climb=True, memory_for_length=True)
    ladder = [r for r in rows if not r.get("summary")]
    assert ladder[0]["memory_size"] == TINY_MODEL["memory_size"]  # 16: more than 2 x 5 + 2
    run = read_run_config(run_dir)
    for row in ladder[1:]:
        steps = run.task.with_settings(**_lengths(row)).sample(3, torch.Generator()).inputs
        assert row["memory_size"] == max(16, steps.shape[0])
    top = ladder[-1]
    alone = evaluate_run(
        run_dir, _lengths(top), size=3, model_settings={"memory_size": top["memory_size"]}
    )
    assert alone[0]["cost_bits"] == pytest.approx(top["cost_bits"], rel=1e-6)
    assert alone[0]["bit_errors"] == top["bit_errors"]
    capsys.readouterr()
    flags = ["eval", str(run_dir), "--ladder", "--memory-for-length", "--size", "2"]
    assert main(flags) == 0
    assert "memory slots" in capsys.readouterr().out
    assert (run_dir / "ladder.for_length=True.json").is_file()
    assert main([*flags, "--model-arg", "memory_size=32", "--json"]) == 0
    given = json.loads(capsys.readouterr().out)
    slots = [r["memory_size"] for r in given if not r.get("summary")]
    assert slots[:2] == [32, 32] and min(slots) == 32 < max(slots)  # raised on the longest
    assert (run_dir / "ladder.for_length=True,memory_size=32.json").is_file()
    lstm = tmp_path / "lstm"
    main(["train", "--run-dir", str(lstm), "--quiet", "--nproc", "1", "--model", "lstm",
          "--task", "copy", "--max-sequences", "16", "--eval-every", "16"])  # fmt: skip
    with pytest.raises(ValueError, match="model lstm has no memory_size"):
        evaluate_run(lstm, size=2, memory_for_length=True)


def _lengths(row: dict[str, object]) -> dict[str, int]:
    """A ladder row's task settings (``min_length=6, max_length=6, bits=4``) that are lengths."""
    settings = dict(part.split("=") for part in str(row["task"]).split(", "))
    return {k: int(v) for k, v in settings.items() if k.endswith("length")}
