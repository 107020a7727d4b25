"""Convergence runs: minutes each, so marked slow (``pytest -m slow``)."""

from pathlib import Path

import pytest

from ntm.runs import config as runconfig
from ntm.runs.evaluation import evaluate_run
from ntm.training import trainer as training


@pytest.mark.slow
def test_fast_preset_solves_copy_and_generalises(tmp_path: Path) -> None:
    run = runconfig.resolve_config({"seed": 1}, {}, {})
    result = training.train(run, tmp_path / "copy", quiet=True)
    assert result.solved
    assert result.eval_bit_errors < 0.1
    rows = {r["setting"]: r for r in evaluate_run(tmp_path / "copy", size=200)}
    assert rows["length 30"]["bit_errors"] < 1.0
