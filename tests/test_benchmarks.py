"""The benchmarks' records: what they keep, how they render, and that benchmarks/README.md
shows no table that is not rendered from one."""

import functools
import json
import re
from pathlib import Path

import pytest
import torch

import ntm
from ntm.engines.native.conv import causal_conv_silu
from ntm.models import mamba
from ntm.runs.config import resolve_config
from ntm.runs.evaluation import evaluate_run
from ntm.tasks.contract import Batch
from ntm.training import trainer as training

from .conftest import TINY_TRAIN, benchmark, tiny_flags

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- record: (\S+) -->\n.*?<!-- end of record -->", re.DOTALL)


def test_every_table_in_the_benchmarks_readme_is_rendered_from_a_record() -> None:
    text = (ROOT / "benchmarks" / "README.md").read_text()
    records = BLOCK.findall(text)
    assert records, "no record blocks"
    for name in records:
        record = json.loads((ROOT / name).read_text())
        assert (ROOT / "benchmarks" / f"{record['benchmark']}.py").is_file(), name
    outside = BLOCK.sub("", text)
    typed = [line for line in outside.splitlines() if line.startswith("|")]
    assert typed == [], f"tables typed by hand in benchmarks/README.md: {typed[:3]}"


def test_time_to_solve_reads_the_run_it_started(tmp_path: Path) -> None:
    bench = benchmark("time_to_solve")
    flags = ["--nproc", "1", *tiny_flags(max_sequences=64, target_bit_errors=0.0)]
    row = bench.run_seed(3, tmp_path, flags, cold=False)
    assert row["seed"] == 3 and row["sequences"] == 64 and row["processes"] == 1
    assert row["engine"] == "fused" and not row["solved"]
    assert 0 < row["training_seconds"] < row["seconds"]


def test_time_to_solve_renders_its_median() -> None:
    record = {"command": "python benchmarks/time_to_solve.py", "measured": "2026-12-05",
              "torch": "2.13.0", "rows": [
                  {"seed": s, "solved": s != 2, "sequences": 4096 * s, "seconds": 10.0 * s,
                   "training_seconds": 5.0 * s, "processes": 2, "engine": "native"}
                  for s in (1, 2, 3)]}  # fmt: skip
    lines = benchmark("time_to_solve").table(record)
    assert "| 2 | native | 2 | no | 8,192 | 10.0 | 20.0 |" in lines
    assert lines[-1] == "| median | | | 2/3 | 8,192 | 10.0 | 20.0 |"


def test_real_run_renders_the_ratio_to_both_plain_timings() -> None:
    record = {"command": "python benchmarks/real_run.py", "measured": "2026-12-05",
              "torch": "2.13.0", "rows": [
                  {"processes": 1, "sequences": 8192, "seconds": 8.0, "seq_per_s": 1024.0,
                   "plain_before": 128.0, "plain_after": 256.0},
                  {"model": "dnc", "processes": 1, "sequences": 4096, "seconds": 8.0,
                   "seq_per_s": 512.0, "plain_before": 128.0, "plain_after": 128.0}]}  # fmt: skip
    lines = benchmark("real_run").table(record)
    assert lines[-2] == "| ntm | 1 | 8,192 | 8.0 | 1024 | 128, 256 | 4.0 to 8.0 | 1.00 |"
    assert lines[-1] == "| dnc | 1 | 4,096 | 8.0 | 512 | 128, 128 | 4.0 to 4.0 | 0.50 |"


def test_real_run_needs_the_plain_ntm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = benchmark("real_run")
    monkeypatch.setattr("sys.argv", ["real_run.py", "--baseline", str(tmp_path / "none.py")])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    assert exit_.value.code == 2


def test_profile_step_keeps_every_part_and_renders_a_column_per_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = benchmark("profile_step")
    # Copy sequences of length 2, not up to 20: reading the profiler's events takes most of
    # the time, and their number grows with the sequence.
    copy = functools.partial(ntm.make_task, max_length=2)
    monkeypatch.setattr(bench.ntm, "make_task", copy)
    entry = bench.profile_engine("fused", batch_size=2, seconds=0.0)
    assert entry["updates"] == 1 and entry["seq_per_s"] > 0
    assert set(bench.PARTS) <= set(entry["ms_per_update"])
    assert entry["profiler"] and 0 < entry["profiler"][0]["share"] <= 1
    record = {"command": "python benchmarks/profile_step.py", "measured": "2026-12-05",
              "torch": "2.13.0", "batch": 2, "threads": 1,
              "engines": [entry, {**entry, "engine": "eager"}]}  # fmt: skip
    lines = bench.table(record)
    assert "| part | fused | eager |" in lines
    assert sum(line.startswith("| forward |") for line in lines) == 1


def test_memory_scaling_renders_each_point_why_each_series_stopped_and_the_targets() -> None:
    def point(n: int, batch: int, rate: float, mib: float) -> dict:
        return {"n": n, "batch": batch, "search": None, "sequences_per_second": rate,
                "peak_mib": mib}  # fmt: skip

    sam = [{**point(2**10, 8, 1000.0, 300.0), "search": "index"},
           {**point(2**20, 8, 300.0, 1800.0), "search": "index"}]  # fmt: skip
    record = {"command": "python benchmarks/memory_scaling.py", "measured": "2026-12-06",
              "torch": "2.13.0", "complete": False, "series": [
                  {"model": "sam", "batch": 8, "points": sam, "stopped": None},
                  {"model": "ntm", "batch": 32, "points": [point(2**15, 32, 2.0, 9000.0),
                                                           point(2**16, 8, 1.0, 5000.0)],
                   "stopped": "2^17 took 130 s"}]}  # fmt: skip
    lines = benchmark("memory_scaling").table(record)
    assert "| SAM, native, batch 8 | 2^20 | 8 | index | 300.0 | 3.33 | 1800 |" in lines
    assert "| NTM, dense, native, batch 32 then 8 | 2^16 | 8 |  | 1.0 | 1000.00 | 5000 |" in lines
    assert "- SAM, native, batch 8: still running." in lines
    assert "- NTM, dense, native, batch 32 then 8: 2^17 took 130 s." in lines
    assert "A partial record: only the points above were measured." in lines
    targets = lines[-3:]
    assert "not measured" in targets[0] and "not met" in targets[0]
    assert "0.30 of the rate" in targets[1] and targets[1].endswith("; met).")
    assert "1.76 GiB" in targets[2] and targets[2].endswith("; met).")


def test_held_out_measures_both_ways_to_the_same_errors_and_renders_their_ratio() -> None:
    bench = benchmark("held_out")
    row = bench.measure("reverse_string", "sam", turns=1)
    assert (row["sequences"], row["steps"]) == (512, 80)
    assert row["ratio"] == row["whole_seconds"] / row["cut_seconds"]
    record = {"command": "python benchmarks/held_out.py", "measured": "2026-12-07",
              "torch": "2.13.0", "rows": [{**row, "whole_seconds": 0.5, "cut_seconds": 0.25,
                                           "ratio": 2.0}]}  # fmt: skip
    assert bench.table(record)[-1] == "| reverse_string | sam | 512 x 80 | 0.50 | 0.25 | 2.0 |"
    chunks = bench.measure_chunks("reverse_string", length=3, sequences=5, turns=1)
    assert (chunks["fixed_chunk"], chunks["sized_chunk"], chunks["steps"]) == (64, 2, 6)
    record["chunks"] = [{**chunks, "fixed_seconds": 3.0, "sized_seconds": 1.5, "ratio": 2.0}]
    last = "| reverse_string | dnc, 1,024 slots | 5 x 6 | 64 | 3.0 | 2 | 1.5 | 2.0 |"
    assert bench.table(record)[-1] == last


def test_causal_conv_times_both_ways_and_leaves_the_models_as_they_were() -> None:
    pytest.importorskip("mambapy")
    pytest.importorskip("xlstm")
    bench = benchmark("causal_conv")
    for name in ("mamba", "xlstm"):
        row = bench.measure(name, batch=2, steps=5, turns=1)
        assert (row["model"], row["batch"], row["steps"]) == (name, 2, 5)
        assert row["ratio"] == row["before_seconds"] / row["after_seconds"]
    assert mamba.causal_conv_silu is causal_conv_silu
    record = {"command": "python benchmarks/causal_conv.py", "measured": "2026-12-07",
              "torch": "2.13.0", "rows": [{**row, "before_seconds": 0.06,
                                           "after_seconds": 0.05, "ratio": 1.2}]}  # fmt: skip
    assert bench.table(record)[-1] == "| xlstm | 2 | 5 | 0.0600 | 0.0500 | 1.20 |"


def test_answer_probe_tallies_what_the_model_says_and_what_was_meant() -> None:
    bench = benchmark("answer_probe")
    tally = bench.Tally(3)
    logits = torch.tensor([[[0.0, 0.0, 9.0], [9.0, 0.0, 0.0]], [[0.0, 9.0, 0.0], [0.0, 0.0, 9.0]]])
    targets = torch.nn.functional.one_hot(torch.tensor([[2, 1], [1, 1]]), 3).float()
    mask = torch.tensor([[True, True], [True, False]])  # the last token is not scored
    tally(logits, Batch(torch.zeros(2, 2, 1), targets, mask))
    assert tally.answered.tolist() == [1, 1, 1] and tally.expected.tolist() == [0, 2, 1]
    assert tally.right == 2


def test_answer_probe_agrees_with_the_ladder_and_says_it_in_words(tmp_path: Path) -> None:
    bench = benchmark("answer_probe")
    run = resolve_config({**TINY_TRAIN, "task": "binary_addition", "model": "lstm"}, {},
                         {"hidden_size": 8})  # fmt: skip
    training.train(run, tmp_path / "run", quiet=True)
    entry = bench.probe(tmp_path / "run", [41, 500], size=3)
    rows = {r["setting"]: r for r in evaluate_run(tmp_path / "run", size=3, climb=True)}
    for row in entry["lengths"]:
        assert row["token_accuracy"] == pytest.approx(
            rows[f"length {row['length']}"]["token_accuracy"]
        )
        for shares in (row["answered"], row["expected"]):
            assert list(shares) == ["0", "1", "$"] and sum(shares.values()) == pytest.approx(1)
        assert row["expected"]["$"] == pytest.approx(3 / row["tokens"])  # one end a sequence
    said = bench.sentence("lstm", {**entry, "lengths": [{**entry["lengths"][0],
                          "token_accuracy": 0.03, "answered": {"0": 0.02, "1": 0.03, "$": 0.95},
                          "expected": {"0": 0.5, "1": 0.497, "$": 0.003}}]})  # fmt: skip
    assert said == ("lstm: at length 41, 3% right, it answers `$` on 95% of the tokens (0.3%), "
                    "`1` on 3% (50%), `0` on 2% (50%)")  # fmt: skip
    with pytest.raises(ValueError, match="no rung of length 42"):
        bench.probe(tmp_path / "run", [42], size=3)
