"""benchmarks/reproduce.py's table of the bare commands, read from run folders."""

from pathlib import Path

from ntm.training import trainer as training

from .conftest import benchmark, tiny_run


def test_the_table_reads_finished_and_unfinished_runs(tmp_path: Path) -> None:
    bench = benchmark("reproduce")
    assert bench.recorded("copy", 1, tmp_path) is None  # never started
    solved = training.train(tiny_run(target_bit_errors=100.0), tmp_path / "copy-seed-1", quiet=True)
    assert solved.solved
    training.train(tiny_run(target_bit_errors=0.0, max_sequences=128), tmp_path / "copy-seed-2",
                   quiet=True)  # fmt: skip
    (tmp_path / "copy-seed-2" / "reproduce.partial").write_text("120.0")  # two minutes so far
    ongoing = bench.recorded("copy", 2, tmp_path)
    assert ongoing["ended_by"] == "unfinished" and not ongoing["solved"]
    assert ongoing["sequences"] == 128 and ongoing["wall_minutes"] == 2.0
    assert not (tmp_path / "copy-seed-2" / "reproduce.json").exists()  # it may go on
    done = bench.record("copy", 1, tmp_path / "copy-seed-1", 60.0, finished=True)
    assert done["solved"] and done["ended_by"] == "target" and done["sequences"] == 64
    assert bench.recorded("copy", 1, tmp_path) == done  # now read from its reproduce.json
    text = bench.table([done, ongoing])
    assert "| copy | median | | | 1/2 | 64 | | 1.0 | | |" in text  # the unfinished run left out
    assert "| copy | 2 | fused | 1 | no | 128 |" in text  # the engine, from its config.json
