"""Run folders of the format ``ntm train`` writes today, kept as a fixture: they load,
evaluate to the numbers recorded when they were written, and resume to what an
uninterrupted run computes."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from ntm.runs import checkpoint as ckpt
from ntm.runs import evaluation
from ntm.runs.load import read_run_config
from ntm.training import trainer as training

FIXTURES = Path(__file__).parent / "fixtures"
#: A copy NTM trained for 64 sequences (``ntm train --task copy --max-sequences 64
#: --batch-size 16 --eval-every 32 --eval-size 16 --controller-size 12 --memory-size 12
#: --word-size 5 --bits 3 --max-length 4 --seed 5 --engine fused``), and what
#: ``ntm eval RUN --json --size 50`` printed for it when it was written.
COPY_RUN = FIXTURES / "copy-run"
COPY_EVAL = FIXTURES / "copy-run.eval.json"


@pytest.fixture
def copy_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "copy-run"
    shutil.copytree(COPY_RUN, run_dir)
    return run_dir


def test_a_kept_run_evaluates_to_its_recorded_numbers(copy_run: Path) -> None:
    rows = evaluation.evaluate_run(copy_run, size=50)
    recorded = json.loads(COPY_EVAL.read_text())
    # Every number it printed then, the same today to float rounding (another processor
    # rounds the same sums in another order); rows may have gained columns since.
    assert len(rows) == len(recorded)
    for row, old in zip(rows, recorded, strict=True):
        for key, value in old.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
            else:
                assert row[key] == value, key


def test_a_kept_run_resumes_to_the_uninterrupted_run(copy_run: Path, tmp_path: Path) -> None:
    training.resume(copy_run, {"max_sequences": 96}, quiet=True)
    whole = tmp_path / "whole"
    run = read_run_config(copy_run)
    longer = dataclasses.replace(run, train=dataclasses.replace(run.train, max_sequences=96))
    training.train(longer, whole, quiet=True)
    resumed, fresh = ckpt.load_checkpoint(copy_run), ckpt.load_checkpoint(whole)
    assert resumed.trainer["progress"]["sequences"] == 96
    # The kept checkpoint's first 64 sequences were computed on another processor, whose
    # rounding the fresh run does not share; resume on one machine is exact
    # (tests/test_contract.py).
    for name, tensor in fresh.model.items():
        torch.testing.assert_close(resumed.model[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
