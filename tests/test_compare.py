"""benchmarks/compare.py: equal parameters, the rate it chooses, and what it renders."""

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ntm
from ntm import registry
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import resolve_config
from ntm.runs.evaluation import LADDER_MEAN
from ntm.training import trainer as training

from .conftest import TINY_TRAIN, benchmark


@pytest.mark.parametrize(
    ("label", "task"),
    [
        ("lstm", "copy"),
        ("transformer", "copy"),
        ("mamba", "copy"),
        ("transformer-nope", "reverse_string"),
        ("transformer", "mqar"),
    ],
)
def test_every_model_gets_the_width_nearest_the_ntms_parameters(label: str, task: str) -> None:
    bench = benchmark("compare")
    settings, count, reference = bench.matched(label, task)
    assert abs(count - reference) / reference <= bench.TOLERANCE
    width = registry.width_setting(registry.model_class(bench.MODELS[label][0]))
    assert width is not None
    name, step = width[0], bench.width_step(label)
    for other in (settings[name] - step, settings[name] + step):
        model = bench.MODELS[label][0]
        nearer = abs(bench.parameters(model, task, {**settings, name: other}) - reference)
        assert nearer >= abs(count - reference)


def test_the_memory_models_cells_come_first_and_the_slowest_last() -> None:
    order = benchmark("compare").ORDER
    assert order[:2] == ["ntm", "dnc"] and order[-1] == "mamba"
    assert {"transformer", "transformer-nope", "sam"} <= set(order)


def _cell_args(out: Path, budget: int, rates: str, size: int) -> argparse.Namespace:
    """compare.py's arguments for one reverse_string cell: half the cap a sweep's share."""
    return argparse.Namespace(
        budget={"reverse_string": budget}, ceiling={"reverse_string": budget}, sweep_share=0.5,
        rates=rates, patience=10, out=out, size=size, ladder_memory=0,
    )  # fmt: skip


@pytest.mark.processes
def test_a_cell_sweeps_rates_on_a_share_then_trains_the_chosen_run_to_the_cap(
    tmp_path: Path,
) -> None:
    bench = benchmark("compare")
    args = _cell_args(tmp_path, budget=128, rates="1e-3,1e-2", size=4)
    entry = bench.compare_one("reverse_string", "ntm", args, 2)
    assert entry["sweep_sequences"] == 64 and entry["schedule"] == "plateau"
    assert sorted(r["lr"] for r in entry["rates"]) == ["1e-2", "1e-3"]
    rates = tmp_path / "reverse_string-128" / "ntm" / "rates"
    swept = json.loads((rates / "sweep.json").read_text())
    assert [r["sequences"] for r in swept] == [64, 64]  # as the sweep ended them
    assert [r["seed"] for r in entry["runs"]] == [1, 2]
    assert [r["sequences"] for r in entry["runs"]] == [128, 128]  # the chosen one trained on
    first = rates / f"lr={entry['lr']}" / "seed-1"
    assert json.loads((first / "result.json").read_text())["sequences"] == 128
    assert len(entry["runs"][0]["ladder"]) > 1
    # Finished: the checkpoints are gone, the best models of the runs used are kept and
    # still evaluate; the other rate's run keeps what it measured.
    used = {first, tmp_path / "reverse_string-128" / "ntm" / "seeds" / first.parent.name / "seed-2"}
    for run in tmp_path.glob("*/*/*/*/seed-*/"):
        assert not list((run / "checkpoints").glob("step-*"))
        best = run / "checkpoints" / "best" / "model.safetensors"
        assert best.is_file() == (run in used), run
        assert (run / "result.json").is_file() and (run / "metrics.csv").is_file()
    result = subprocess.run(
        [sys.executable, "-m", "ntm", "eval", str(first), "--size", "4", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout)
    # Run again, it trains nothing: the same entry from what the runs kept.
    again = bench.compare_one("reverse_string", "ntm", args, 2)
    assert again["runs"] == entry["runs"]


@pytest.mark.processes
def test_a_transformer_cell_chooses_its_encoding_as_it_chooses_its_rate(tmp_path: Path) -> None:
    """The Transformer's sweep covers RoPE and ALiBi; the chosen run's encoding trains on,
    and its seeds keep it."""
    bench = benchmark("compare")
    args = _cell_args(tmp_path, budget=64, rates="1e-3", size=2)
    entry = bench.compare_one("reverse_string", "transformer", args, 2)
    swept = [(r["chose"]["position"], r["lr"]) for r in entry["rates"]]
    assert sorted(swept) == [("alibi", "1e-3"), ("rope", "1e-3")]
    chose = entry["chose"]["position"]
    assert chose in ("rope", "alibi") and entry["lr"] == "1e-3"
    assert "position" not in entry["settings"]  # not fixed: swept
    folder = tmp_path / "reverse_string-64" / "transformer"
    for run in (folder / "rates" / f"position={chose}_lr=1e-3" / "seed-1",
                folder / "seeds" / f"position={chose}_lr=1e-3" / "seed-2"):  # fmt: skip
        config = json.loads((run / "config.json").read_text())
        assert config["model"]["position"] == chose and config["model"]["num_heads"] == 2
        # Its cosine schedule decays to the cap: no stop on a plateau.
        assert config["train"]["schedule"] == "cosine" and config["train"]["stop_patience"] == 0
    assert entry["schedule"] == "cosine"
    assert [r["sequences"] for r in entry["runs"]] == [64, 64]
    assert bench._name(entry) == f"transformer ({chose})"


def test_a_sweep_folder_s_settings_are_read_back() -> None:
    values = benchmark("compare")._setting_values
    assert values("lr=1e-3", ["lr"]) == {"lr": "1e-3"}
    assert values("position=rope_lr=3e-4", ["position", "lr"]) == {"position": "rope", "lr": "3e-4"}
    assert values("controller=feed_forward_lr=1e-2", ["controller", "lr"]) == {
        "controller": "feed_forward", "lr": "1e-2",
    }  # fmt: skip
    with pytest.raises(ValueError, match=re.escape("'default': not a sweep folder named lr=...")):
        values("default", ["lr"])


def test_the_rate_that_met_the_target_soonest_is_chosen() -> None:
    choose = benchmark("compare").chosen_rate
    rows = [
        {"lr": "1e-3", "solved": True, "sequences_to_target": 8192, "final_eval_cost": 0.5},
        {"lr": "3e-3", "solved": True, "sequences_to_target": 4096, "final_eval_cost": 0.9},
        {"lr": "1e-2", "solved": False, "sequences_to_target": None, "final_eval_cost": 0.1},
    ]
    assert choose(rows) == "3e-3"
    unsolved = [{**row, "solved": False, "sequences_to_target": None} for row in rows]
    assert choose(unsolved) == "1e-2"  # none met it: the lowest final cost


def test_the_record_renders_a_table_and_a_plot_per_task(tmp_path: Path) -> None:
    bench = benchmark("compare")

    def ladder(right: float) -> list[dict]:
        return [
            {"setting": "training distribution", "bit_errors": 0.0, "all_right": 1.0},
            {"setting": "length 40 (x2)", "bit_errors": 3.0, "all_right": right},
        ]

    runs = [
        {"seed": s, "solved": True, "sequences_to_target": 4096 * s, "minutes": 1.0 * s,
         "sequences": 4096 * s,
         "ladder": ladder(0.25 * s)}
        for s in (1, 2, 3)
    ]  # fmt: skip
    record = {
        "record": "docs/comparison/records.json", "command": "python benchmarks/compare.py",
        "measured": "2026-12-05", "torch": "2.13.0", "budgets": {"copy": 50_000}, "seeds": 3,
        "rates": "1e-3",
        "size": 100, "tasks": ["copy"], "task_settings": {"copy": {"bits": 8, "max_length": 20}},
        "entries": [
            {"task": "copy", "model": "ntm", "parameters": 1000, "lr": "1e-3", "runs": runs},
            {"task": "copy", "model": "mamba", "parameters": 1300,
             "skipped": "1,300 parameters, the NTM 1,000: more than 10% apart"},
        ],
    }  # fmt: skip
    text = bench.render(record, tmp_path)
    row = "| ntm | 1,000 | 1e-3 | 3/3 | not recorded | 8,192 | 2.0 | 0.00, 100% | 3.00, 50% |"
    assert row in text
    assert "- mamba: not trained (1,300 parameters" in text
    assert "Task: bits 8, max_length 20; cap: 50,000 sequences per run." in text
    assert (tmp_path / "copy-ladder.png").stat().st_size > 0
    assert bench._median([None, math.nan, 2.0]) == 2.0
    assert [bench._percent(v) for v in (0.0, 0.004, 0.5)] == ["0%", "0.4%", "50%"]


def test_what_is_not_measured_is_said_with_its_cost() -> None:
    bench = benchmark("compare")
    runs = [{"minutes": 1.0, "sequences": 6000}, {"minutes": 3.0, "sequences": 6000}]
    record = {
        "rates": "1e-3,3e-3", "sweep_share": 0.5, "seeds": 2,
        "tasks": ["copy", "associative_recall"],
        "budgets": {"copy": 6000, "associative_recall": 6000},
        "entries": [{"task": "copy", "model": "ntm", "runs": runs}],
    }  # fmt: skip
    needed = {"copy": 5000, "associative_recall": 36_000, "priority_sort": 72_000}
    text = "\n".join(bench._not_measured(record, needed))
    assert "copy:" not in text  # its budget covers what the NTM needs
    # 0.02 s per sequence (the median of 0.01 and 0.03); half of a run for the rate not
    # chosen, one for the rate chosen, one for seed 2: 2.5 runs of 36,000 -> 0.5 h.
    assert (
        "- associative_recall: compared at 6,000 sequences per run; the NTM's reproduce runs "
        "needed 36,000 sequences" in text
    )
    assert (
        "At that budget, a rate sweep and 2 seeds of the model measured so far would take "
        "about 0.5 hours of one core in all (0.2 with" in text
    )
    two = [*record["entries"], {"task": "copy", "model": "lstm", "runs": runs}]
    assert "2 seeds of the 2 models measured so far would take about 1.0 hours" in "\n".join(
        bench._not_measured({**record, "entries": two}, needed)
    )
    # The Transformer's sweep covers two encodings: 3 short runs not chosen, 1.5 + 2 runs.
    transformer = [{"task": "copy", "model": "transformer", "runs": runs}]
    assert "about 0.7 hours" in "\n".join(
        bench._not_measured({**record, "entries": transformer}, needed)
    )
    assert "- priority_sort: not compared; the NTM's reproduce runs needed 72,000" in text
    assert "about 1.0 hours" in text
    assert bench._not_measured({**record, "budgets": {"associative_recall": 10**6}}, {}) == []
    assert bench._not_measured({**record, "entries": []}, needed) == []  # nothing measured


def test_a_budget_per_task_and_a_clear_error_for_a_wrong_one() -> None:
    budgets = benchmark("compare").budgets
    tasks = ["copy", "mqar"]
    assert budgets("30000,mqar=100000", tasks) == {"copy": 30_000, "mqar": 100_000}
    assert budgets("copy=5,mqar=6", tasks) == {"copy": 5, "mqar": 6}
    with pytest.raises(ValueError, match="no budget for copy: give N for every task"):
        budgets("mqar=6", tasks)
    with pytest.raises(ValueError, match="recall: not among --tasks"):
        budgets("5,recall=6", tasks)
    with pytest.raises(ValueError, match="'mqar=0': expected N or TASK=N"):
        budgets("5,mqar=0", tasks)


def test_entries_are_kept_only_for_the_same_budget_and_task_settings(tmp_path: Path) -> None:
    bench = benchmark("compare")
    runs = [{"seed": s, "ladder": []} for s in (1, 2, 3)]
    base = {"seeds": 3, "size": 100, "rates": "1e-3", "patience": 10, "ladder_memory": 0}
    base["sweep_share"] = 0.2
    entry = {"task": "copy", "model": "ntm", "budget": 5, "task_settings": {"bits": 8}}
    lstm = {**entry, "model": "lstm", "runs": runs[:1]}
    kept = {**base, "entries": [{**entry, "runs": runs}, lstm]}
    path = tmp_path / "records.json"
    path.write_text(json.dumps(kept))
    record = {**base, "budgets": {"copy": 5}, "task_settings": {"copy": {"bits": 8}}}
    found = bench._finished(path, record)
    assert list(found) == [("copy", "ntm"), ("copy", "lstm")]
    # lstm has one seed: enough for the first pass over the cells, not for the second
    assert not bench._needs(found["copy", "lstm"], 1)
    assert bench._needs(found["copy", "lstm"], 3)
    assert not bench._needs(found["copy", "ntm"], 3)
    assert bench._needs(None, 1)
    assert bench._finished(path, {**record, "budgets": {"copy": 6}}) == {}
    assert bench._finished(path, {**record, "task_settings": {"copy": {"bits": 4}}}) == {}
    assert bench._finished(path, {**record, "patience": 4}) == {}
    assert bench._finished(path, {**record, "sweep_share": 1.0}) == {}


def test_a_ladder_without_the_lengths_inside_training_is_evaluated_again() -> None:
    bench = benchmark("compare")
    settings = {"min_length": 1, "max_length": 25}
    entry = {"task": "reverse_string", "model": "ntm", "task_settings": settings}
    beyond = [{"setting": "training distribution"}, {"setting": "length 26"}]
    inside = [{"setting": f"length {n}", "within": True} for n in (6, 13, 19, 25)]
    assert bench._needs({**entry, "runs": [{"ladder": beyond}]}, 1)
    assert not bench._needs({**entry, "runs": [{"ladder": [beyond[0], *inside, beyond[1]]}]}, 1)


def test_a_kept_ladder_is_read_unless_it_lacks_the_lengths_inside_training_or_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = benchmark("compare")
    task = ntm.make_task("parity_check", max_length=12)
    monkeypatch.setattr(bench, "read_run_config", lambda run_dir: argparse.Namespace(task=task))
    inside = [{"setting": f"length {n}", "within": True, "sequences": 2} for n in (3, 6, 9, 12)]
    whole = [
        {"setting": "training distribution", "sequences": 2},
        *inside,
        {"setting": "length 13", "sequences": 2},
        {"setting": "mean over the ladder", "sequences": 2, "summary": True},
    ]
    evaluated = []

    def evaluate(command: list[str], **kwargs: object) -> None:  # what ntm eval --ladder writes
        evaluated.append(command)
        (tmp_path / "ladder.json").write_text(json.dumps(whole))

    monkeypatch.setattr(bench.subprocess, "run", evaluate)
    (tmp_path / "ladder.json").write_text(json.dumps([whole[0], whole[-1]]))
    assert bench.ladder(tmp_path, 2) == whole  # evaluated again: it lacked lengths 3 to 12
    assert len(evaluated) == 1 and evaluated[0][3:6] == ["eval", str(tmp_path), "--ladder"]
    assert bench.ladder(tmp_path, 2) == whole and len(evaluated) == 1  # complete: read
    assert bench.ladder(tmp_path, 3) == whole and len(evaluated) == 2  # of 2 sequences, not 3


def test_docs_comparison_says_what_its_record_says(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    record = root / "docs" / "comparison" / "records.json"
    if not record.is_file():
        pytest.skip("no comparison measured yet")
    text = benchmark("compare").render(json.loads(record.read_text()), tmp_path)
    assert (root / "docs" / "comparison.md").read_text() == text


def test_every_registered_model_is_compared_without_a_table_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """compare.py takes the registered models, a plugin's too, each by its width setting."""

    class Wide(ntm.LSTMBaseline):
        pass

    monkeypatch.setitem(registry._MODELS, "wide_compare_test", Wide)
    bench = benchmark("compare")
    assert bench.MODELS["wide_compare_test"] == ("wide_compare_test", {})
    assert {"ntm", "lstm", "dnc", "transformer", "mamba", "xlstm"} <= set(bench.MODELS)
    settings, count, reference = bench.matched("wide_compare_test", "copy")
    assert abs(count - reference) / reference <= bench.TOLERANCE
    assert "hidden_size" in settings


def test_a_token_task_is_scored_by_tokens_right_beyond_the_training_lengths(
    tmp_path: Path,
) -> None:
    bench = benchmark("compare")

    def rows(train: float, beyond: float) -> list[dict]:
        common = {"sequences": 10, "cost_bits": 1.0, "bit_errors": 1.0, "all_right": 0.0}
        return [
            {**common, "setting": "training distribution", "token_accuracy": train},
            {**common, "setting": "length 41", "token_accuracy": beyond},
            {**common, "setting": "length 68", "token_accuracy": beyond},
            {**common, "setting": bench.LADDER_MEAN, "token_accuracy": beyond, "summary": True},
        ]

    run = {
        "seed": 1,
        "solved": False,
        "sequences_to_target": None,
        "minutes_to_target": None,
        "sequences": 4096,
        "final_eval_cost": 1.0,
        "minutes": 1.5,
        "ended": "converged",
    }
    memory = {**run, "solved": True, "ladder": rows(1.0, 0.9), "ladder_memory": rows(1.0, 0.99)}
    entry = {
        "task": "reverse_string",
        "model": "ntm",
        "parameters": 1000,
        "ntm_parameters": 1000,
        "lr": "1e-3",
        "budget": 50,
        "ladder_memory": 512,
        "runs": [memory],
    }
    inside = [{"setting": f"length {n}", "within": True, "sequences": 10, "cost_bits": 1.0,
               "bit_errors": 1.0, "all_right": 0.0, "token_accuracy": a}
              for n, a in ((10, 1.0), (20, 0.9), (40, 0.8))]  # fmt: skip
    ladder = rows(0.95, 0.5)
    capped = {**run, "ended": "budget", "ladder": [ladder[0], *inside, *ladder[1:]]}
    record = {
        "record": "records.json",
        "command": "python benchmarks/compare.py",
        "measured": "2026-12-06",
        "torch": "2.13.0",
        "seeds": 1,
        "size": 10,
        "rates": "1e-3",
        "tasks": ["reverse_string"],
        "budgets": {"reverse_string": 50},
        "task_settings": {"reverse_string": {}},
        "entries": [entry, {**entry, "model": "lstm", "ladder_memory": 0, "runs": [capped]}],
    }
    text = bench.render(record, tmp_path)
    assert (
        "| ntm | 1,000 | 1e-3 | converged 1 | 4,096 | 1.5 | 100% | 90% | 99% (512 slots) |" in text
    )
    assert "| lstm | 1,000 | 1e-3 | cap 1 | 4,096 | 1.5 | 95% | 50% | – |" in text
    assert "- Best score beyond the training lengths: ntm (90%); lstm 50%." in text
    chance = "- Chance: 50% of the tokens right, a uniform guess among the task's 2 answer symbols."
    assert chance in text
    # At a glance, as the paper's Table 2: the task's row under its level, a memory model's
    # score with more slots after a slash, in bold where it met the target.
    glance = text.index("## The Chomsky hierarchy at a glance")
    assert glance < text.index("## reverse_string")
    assert "| level | task | chance | one symbol | ntm | lstm |" in text
    row = "| deterministic context-free | reverse_string | 50% | – | **90% / 99%** | 50% |"
    assert row in text  # a record without the best constant answers shows none
    assert "- With 512 slots: ntm 99%." in text
    assert (
        "- Met the target at the training lengths: ntm. Did not (tokens right there): lstm "
        "(95%; 100% at length 10, 80% at length 40); their scores beyond them mix not "
        "fitting with not generalising." in text
    )
    assert (tmp_path / "reverse_string-ladder.png").is_file()
    given = {**record, "baselines": {"reverse_string": {"symbol": "1", "share": 0.52}}}
    text = bench.render(given, tmp_path)
    assert (
        "| deterministic context-free | reverse_string | 50% | 52% (1) | **90% / 99%** | *50%* |"
        in text
    )
    assert f"{chance[:-1]}; the best constant answer, `1` at every token: 52%." in text
    assert "- Below the best constant answer beyond the training lengths: lstm (50%)." in text

    seeds = [{**memory, "seed": s, "ladder": rows(1.0, b), "ladder_memory": rows(1.0, m)}
             for s, b, m in ((1, 0.9, 0.99), (2, 0.6, 0.95), (3, 0.7, 0.97))]  # fmt: skip
    text = bench.render({**record, "seeds": 3, "entries": [{**entry, "runs": seeds}]}, tmp_path)
    assert (
        "| ntm | 1,000 | 1e-3 | converged 3 | 4,096 | 1.5 | 100% | 70% (60%–90%) "
        "| 97% (95%–99%) (512 slots) |" in text
    )
    assert "Medians over 3 seeds, the lowest and the highest seed's share in brackets." in text


def test_the_opening_says_how_far_the_command_has_come() -> None:
    progress = benchmark("compare")._progress
    record = {
        "models": ["ntm", "lstm"],
        "tasks": ["copy", "mqar"],
        "seeds": 3,
        "budgets": {"copy": 1000, "mqar": 2000},
        "rates": "1e-3,1e-2",
        "sweep_share": 0.5,
    }
    runs = [{"seed": 1, "minutes": 1.0, "sequences": 600}]  # 0.1 s a sequence, 0.6 of its cap
    record["entries"] = [{"task": "copy", "model": "ntm", "budget": 1000, "runs": runs}]
    said = progress(record)
    assert "So far 1 of the 4 cells (2 models on 2 tasks) have their first seed and 0 all 3" in said
    # Still to train, at 0.1 s a sequence: copy's NTM 2 seeds at 0.6 of its cap (1.2 caps);
    # the LSTM (no run yet: every run to its cap) 3 seeds and the half run of its sweep's
    # rate not chosen (the chosen one goes on as seed 1: 3.5 caps); MQAR's NTM 1.8 + 0.5
    # caps of 2,000 and its LSTM 3.5: 120 + 350 + 460 + 700 s.
    assert benchmark("compare")._remaining_hours(record) == pytest.approx(1630 / 3600)
    assert "would take about 0.5 hours of one core (0.2 with `--jobs 2`)" in said
    # A run that stopped at the cap, still to train on to copy's ceiling of 3,000: 300 s more
    # (from its start: the whole ceiling at most); once judged as not learning, nothing.
    short = {**runs[0], "ended": "budget", "sequences": 1000, "minutes": 100 / 60}
    longer = {**record, "ceilings": {"copy": 3000},
              "entries": [{**record["entries"][0], "runs": [short]}]}  # fmt: skip
    # 0.1 s a sequence, each run now the whole cap: copy's NTM 2 runs, its LSTM 3.5, MQAR's
    # 3.5 each (of 2,000).
    stays = 200 + 350 + 700 + 700
    assert benchmark("compare")._remaining_hours(longer) == pytest.approx((stays + 300) / 3600)
    longer["entries"][0]["runs"][0]["learning"] = False
    assert benchmark("compare")._remaining_hours(longer) == pytest.approx(stays / 3600)
    done = [{"task": t, "model": m, "budget": 1000, "runs": runs * 3}
            for t in ("copy", "mqar") for m in ("ntm", "lstm")]  # fmt: skip
    assert progress({**record, "entries": done}) == ""  # all measured: nothing to say
    assert benchmark("compare")._remaining_hours({**record, "entries": done}) == 0
    skipped = [*done[:3], {"task": "mqar", "model": "lstm", "skipped": "too many parameters"}]
    assert "hours" not in progress({**record, "entries": skipped})  # nothing left to train
    capped = [{"task": "copy", "model": "a", "runs": [{"ended": "budget"}, {"ended": "target"}]},
              {"task": "mqar", "model": "a", "runs": [{"ended": "budget"}]},
              {"task": "copy", "model": "b", "runs": [{"ended": "converged"}]}]  # fmt: skip
    assert benchmark("compare")._capped({**record, "entries": capped}) == (
        " 2 of the 4 runs on a plateau schedule measured so far stopped at their cap before "
        "they converged or met the target (a 2 of 3): a larger cap could move their rows."
    )
    assert benchmark("compare")._capped({**record, "entries": capped[2:]}) == ""
    # A cosine schedule's runs decay to the cap, their schedule's end: not cut short.
    cosine = [{**entry, "schedule": "cosine"} for entry in capped]
    assert benchmark("compare")._capped({**record, "entries": cosine}) == ""
    assert benchmark("compare")._ended(cosine[0]) == "cosine end 1, target 1"
    assert benchmark("compare")._ended(capped[0]) == "cap 1, target 1"
    assert progress({k: v for k, v in record.items() if k != "models"}) == ""


def test_an_interrupted_cell_stops_the_cells_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = benchmark("compare")
    called = []

    run = tmp_path / "copy-5" / "ntm" / "rates" / "lr=1e-3" / "seed-1"

    def interrupted(task: str, label: str, args: argparse.Namespace, seeds: int) -> None:
        called.append(label)
        model = torch.nn.Linear(2, 2)
        for sequences in (32, 64):  # the trainer keeps the newest two
            ckpt.save_checkpoint(run, sequences, model, {"sequences": sequences})
        ckpt.save_best(run, model, {"sequences": 32})
        raise subprocess.CalledProcessError(130, ["ntm", "sweep"])

    monkeypatch.setattr(bench, "compare_one", interrupted)
    command = ["compare.py", "--tasks", "copy", "--models", "ntm,lstm,dnc", "--budget", "5"]
    command += ["--record", str(tmp_path / "c" / "records.json"), "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", command)
    assert bench.main() == 130
    assert called == ["ntm"]  # the workers took no cell after it
    assert not (tmp_path / "c" / "records.json").exists()
    # The unfinished run keeps the checkpoint it resumes from, and its best model.
    kept = sorted(p.name for p in (run / ckpt.CHECKPOINTS).iterdir())
    assert kept == [ckpt.BEST, ckpt.LATEST, "step-000000000064"]
    assert ckpt.load_checkpoint(run).trainer["sequences"] == 64


def test_tidy_prunes_a_killed_comparison_and_writes_its_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = benchmark("compare")
    run = tmp_path / "runs" / "copy-5" / "ntm" / "rates" / "lr=1e-3" / "seed-1"
    model = torch.nn.Linear(2, 2)
    for sequences in (32, 64):
        ckpt.save_checkpoint(run, sequences, model, {"sequences": sequences})
    ckpt.save_best(run, model, {"sequences": 32})
    folder = tmp_path / "docs" / "comparison"
    folder.mkdir(parents=True)
    record = {**_OPENING, "budgets": {}, "tasks": [], "entries": []}
    (folder / "records.json").write_text(json.dumps(record))
    command = ["compare.py", "--tidy", "--out", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", [*command, "--record", str(folder / "records.json")])
    assert bench.main() == 0
    kept = sorted(p.name for p in (run / ckpt.CHECKPOINTS).iterdir())
    assert kept == [ckpt.BEST, ckpt.LATEST, "step-000000000064"]
    assert (tmp_path / "docs" / "comparison.md").read_text() == bench.render(record, folder)
    # A record kept before it held the Chomsky tasks' best constant answers gains them.
    chomsky = {**record, "tasks": ["parity_check"], "task_settings": {"parity_check": {}},
               "budgets": {"parity_check": 5}, "size": 5}  # fmt: skip
    (folder / "records.json").write_text(json.dumps(chomsky))
    assert bench.main() == 0
    kept_record = json.loads((folder / "records.json").read_text())
    assert kept_record["baselines"] == bench.baselines(chomsky, ["parity_check"])
    # Without a record there is nothing to write, and it says so.
    monkeypatch.setattr(sys, "argv", [*command, "--record", str(tmp_path / "none.json")])
    assert bench.main() == 2


#: What the document's opening needs of a record.
_OPENING = {"record": "r.json", "command": "compare.py", "measured": "2026-12-07",
            "torch": "2.13.0", "rates": "1e-3", "seeds": 3, "size": 100}  # fmt: skip


def test_the_cap_s_paragraph_reads_the_probe_runs_it_names() -> None:
    bench = benchmark("compare")
    values = bench._cap_probe(bench.CAP_PROBE)
    for label, name, run in (("lstm", "lstm", "lstm"), ("transformer", "rope", "transformer-rope")):
        run_dir = bench.CAP_PROBE / f"parity_check-{run}"
        config = json.loads((run_dir / "config.json").read_text())
        # The flags the paragraph shows are the run's: its model, matched width and rate.
        flags = values[f"{name}_flags"].split()
        assert flags[1] == config["train"]["model"] == bench.MODELS[label][0]
        for key, value in bench.matched(label, "parity_check")[0].items():
            assert config["model"][key] == value
            assert f"{key}={value}" in flags
        assert float(flags[-1]) == config["train"]["lr"]
        rows = ckpt.read_metrics(run_dir)
        assert values[f"{name}_sequences"] == rows[-1]["sequences"]
        assert 0 <= values[f"{name}_beyond"] <= 1
    assert values["lstm_ended"] == "target" and values["rope_ended"] == "cap"
    # Only a cap above the probe's early reading has the paragraph.
    record = {"budgets": {"parity_check": 100_000}, "tasks": [], "entries": []}
    assert "comes from parity_check" not in bench.render({**record, **_OPENING}, Path("/x"))
    record["budgets"]["parity_check"] = 1_000_000
    assert "comes from parity_check" in bench.render({**record, **_OPENING}, Path("/x"))


def test_a_ladder_with_more_slots_adds_slots_where_a_length_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory models' second ladder runs with --memory-for-length; one kept from before,
    with the same slots on every length, serves where every length's sequences fit them."""
    bench = benchmark("compare")
    task = ntm.make_task("parity_check", max_length=12)  # its longest rung: 500 + 1 steps
    run = argparse.Namespace(task=task, train=argparse.Namespace(model="ntm"))
    monkeypatch.setattr(bench, "read_run_config", lambda run_dir: run)
    rows = [{"setting": "training distribution", "sequences": 2},
            {"setting": "length 13", "sequences": 2},
            {"setting": "mean over the ladder", "sequences": 2, "summary": True}]  # fmt: skip
    (tmp_path / "ladder.memory_size=512.json").write_text(json.dumps(rows))
    evaluated = []

    def evaluate(command: list[str], **kwargs: object) -> None:
        evaluated.append(command)
        sized = [{**r, "memory_size": 128} for r in rows]
        (tmp_path / "ladder.for_length=True,memory_size=128.json").write_text(json.dumps(sized))

    monkeypatch.setattr(bench.subprocess, "run", evaluate)
    kept = bench.ladder(tmp_path, 2, 512)  # every length fits 512 slots: taken as it is
    assert evaluated == [] and [r.get("memory_size") for r in kept] == [512, 512, None]
    assert (tmp_path / "ladder.for_length=True,memory_size=512.json").is_file()
    (tmp_path / "ladder.memory_size=128.json").write_text(json.dumps(rows))
    bench.ladder(tmp_path, 2, 128)  # the longest lengths need more than 128: evaluated
    assert evaluated[0][-5:] == ["--model-arg", "memory_size=128", "--memory-for-length",
                                 "--size", "2"]  # fmt: skip

    entry = {"task": "parity_check", "model": "ntm", "task_settings": {"max_length": 12}}
    inside = [{"setting": f"length {n}", "within": True} for n in (3, 6, 9, 12)]
    run = {"ladder": [rows[0], *inside], "ladder_memory": rows}
    assert bench._needs({**entry, "runs": [run]}, 1)  # its second ladder gives no slots
    run["ladder_memory"] = kept
    assert not bench._needs({**entry, "runs": [run]}, 1)


def test_the_ladder_with_more_slots_searches_sam_s_memory_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAM trained searching its 128 slots exhaustively; from 1,024 slots its default search
    is an approximate index, so its second ladder asks for the exhaustive one, is kept apart
    from a ladder that did not, and a record's SAM entry without it is evaluated again."""
    bench = benchmark("compare")
    task = ntm.make_task("parity_check", max_length=12)
    run = argparse.Namespace(task=task, train=argparse.Namespace(model="sam"))
    monkeypatch.setattr(bench, "read_run_config", lambda run_dir: run)
    rows = [{"setting": "training distribution", "sequences": 2, "memory_size": 1024},
            {"setting": "mean over the ladder", "sequences": 2, "summary": True}]  # fmt: skip
    indexed = [{**r, "memory_size": 1024} for r in rows[:1]] + rows[1:]
    (tmp_path / "ladder.for_length=True,memory_size=1024.json").write_text(json.dumps(indexed))
    evaluated = []
    exact = tmp_path / "ladder.for_length=True,memory_size=1024,search=exact.json"

    def evaluate(command: list[str], **kwargs: object) -> None:
        evaluated.append(command)
        exact.write_text(json.dumps(rows))

    monkeypatch.setattr(bench.subprocess, "run", evaluate)
    kept = bench.ladder(tmp_path, 2, 1024)
    assert len(evaluated) == 1, "the ladder kept without the exact search is not taken"
    asked = ["--model-arg", "search=exact", "--model-arg", "memory_size=1024"]
    assert evaluated[0][-7:] == [*asked, "--memory-for-length", "--size", "2"]
    assert [r.get("search") for r in kept] == ["exact", None]
    bench.ladder(tmp_path, 2, 1024)
    assert len(evaluated) == 1, "the exact ladder, once kept, is taken"
    # The trained memory's ladder changes nothing: the search is the one it trained with.
    (tmp_path / "ladder.json").write_text(json.dumps(rows))
    monkeypatch.setattr(bench, "_current", lambda *args: True)
    assert "search" not in bench.ladder(tmp_path, 2)[0]

    entry = {"task": "parity_check", "model": "sam", "task_settings": {"max_length": 12}}
    inside = [{"setting": f"length {n}", "within": True} for n in (3, 6, 9, 12)]
    searched = {"ladder": [rows[0], *inside], "ladder_memory": kept}
    assert not bench._needs({**entry, "runs": [searched]}, 1)
    assert bench._needs({**entry, "runs": [{**searched, "ladder_memory": indexed}]}, 1)
    ntm_entry = {**entry, "model": "ntm"}  # no search setting: its rows need none
    assert not bench._needs({**ntm_entry, "runs": [{**searched, "ladder_memory": indexed}]}, 1)


def test_a_model_below_the_best_constant_answer_is_asked_what_it_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = benchmark("compare")
    run_dir = tmp_path / "binary_addition-64" / "transformer" / "rates"
    run_dir = run_dir / "position=alibi_lr=1e-3" / "seed-1"  # as ntm sweep names it
    run = resolve_config({**TINY_TRAIN, "task": "binary_addition", "model": "transformer"},
                         {}, {"d_model": 16})  # fmt: skip
    training.train(run, run_dir, quiet=True)

    def entry(model: str, score: float, **more: object) -> dict:
        summary = {"setting": LADDER_MEAN, "summary": True, "token_accuracy": score}
        return {"task": "binary_addition", "model": model, "budget": 64, "lr": "1e-3",
                "runs": [{"seed": 1, "ladder": [summary]}], **more}  # fmt: skip

    below = entry("transformer", 0.3, chose={"position": "alibi"})
    above, gone = entry("lstm", 0.6), entry("mamba", 0.1)  # mamba: no run folder here
    broken = entry("xlstm", 0.1)  # a run folder without a model in it
    (tmp_path / "binary_addition-64" / "xlstm" / "rates" / "lr=1e-3" / "seed-1").mkdir(parents=True)
    record = {"size": 3, "baselines": {"binary_addition": {"symbol": "1", "share": 0.5}},
              "entries": [below, above, gone, broken]}  # fmt: skip
    assert bench.explain(record, tmp_path)
    assert "xlstm: not probed (" in capsys.readouterr().err
    assert "answers" not in broken["runs"][0]
    answers = below["runs"][0]["answers"]
    assert [row["length"] for row in answers] == bench.PROBED
    assert all(row["sequences"] == 3 for row in answers)
    assert "answers" not in above["runs"][0] and "answers" not in gone["runs"][0]
    assert not bench.explain(record, tmp_path)  # nothing left to ask
    lines = bench._answers(record["entries"])
    assert lines[0].startswith(
        "- What the models below the best constant answer say beyond training (seed 1, 3 "
    )
    assert lines[1].startswith("  - transformer (alibi): at length 41, ")
    assert len(lines) == 3 and lines[-1] == ""
    assert bench._answers([above]) == []


def test_the_best_constant_answer_is_the_symbol_that_fills_most_answers() -> None:
    baselines = benchmark("compare").baselines
    record = {"size": 20, "task_settings": {"binary_addition": {}, "bucket_sort": {}}}
    found = baselines(record, ["binary_addition", "bucket_sort"])
    # binary_addition's end symbol is one token of an answer half as long as its question
    # or longer: a bit answers about half the tokens; bucket_sort's five symbols a fifth.
    assert found["binary_addition"]["symbol"] in ("0", "1")
    assert 0.45 < found["binary_addition"]["share"] < 0.55
    assert found["bucket_sort"]["symbol"] in list("01234")
    assert 0.2 <= found["bucket_sort"]["share"] < 0.25
    assert baselines(record, ["bucket_sort"]) == {"bucket_sort": found["bucket_sort"]}


def test_a_run_still_learning_at_the_cap_trains_on_to_the_ceiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run on a plateau schedule that reached the cap goes on to the task's ceiling only
    while it is learning; the ceiling is written first, so a run stopped on the way goes on
    without being judged again; a cosine run, or one that ended otherwise, stays as it is."""
    bench = benchmark("compare")
    run_dir = tmp_path / "lr=1e-2" / "seed-1"
    run_dir.mkdir(parents=True)
    capped = {"ended": "budget", "sequences": 100, "solved": False}
    (run_dir / "result.json").write_text(json.dumps(capped))
    (run_dir / "ladder.json").write_text("[]")  # of the model that stopped at the cap
    row = {"run_dir": str(run_dir), "lr": "1e-2", "seed": 1}
    commands: list[list[str]] = []

    def train(command: list[str], **kwargs: object) -> None:
        assert json.loads((run_dir / "result.json").read_text())["ceiling"] == 400
        commands.append(command)

    monkeypatch.setattr(bench.subprocess, "run", train)
    ending = {"ended": "converged", "sequences": 250, "solved": False}
    monkeypatch.setattr(bench, "outcome", lambda run_dir, target: ending)
    judged = []
    monkeypatch.setattr(bench, "learning", lambda run_dir: judged.append(run_dir) or False)
    assert bench.extend(row, 100, 400, 10)["learning"] is False
    assert commands == [] and json.loads((run_dir / "result.json").read_text())["learning"] is False

    (run_dir / "result.json").write_text(json.dumps(capped))
    monkeypatch.setattr(bench, "learning", lambda run_dir: True)
    done = bench.extend(row, 100, 400, 10)
    assert commands[0][-7:] == ["--resume", str(run_dir), "--quiet", "--max-sequences", "400",
                                "--stop-patience", "10"]  # fmt: skip
    assert done["ended"] == "converged" and done["learning"] and done["ceiling"] == 400
    assert not (run_dir / "ladder.json").exists()

    # Stopped on the way: it goes on, whatever a judgement of its fresh start would say.
    (run_dir / "result.json").write_text(json.dumps({**capped, "ceiling": 400, "learning": True}))
    monkeypatch.setattr(bench, "learning", lambda run_dir: pytest.fail("judged again"))
    bench.extend(row, 100, 400, 10)
    assert len(commands) == 2
    for result, patience in ((capped, 0), ({**capped, "ended": "target"}, 10),
                             ({**capped, "sequences": 400, "ceiling": 400}, 10)):  # fmt: skip
        (run_dir / "result.json").write_text(json.dumps(result))
        assert bench.extend(row, 100, 400, patience)["ended"] == result["ended"]
    assert len(commands) == 2

    entry = {"task": "copy", "model": "ntm", "task_settings": {}, "schedule": "plateau"}
    run = {"ladder": [], "ended": "budget", "sequences": 100}
    monkeypatch.setattr(bench.registry, "within_training", lambda task: [])
    assert bench._needs({**entry, "runs": [run]}, 1, 400)  # not judged yet
    assert not bench._needs({**entry, "runs": [{**run, "learning": False}]}, 1, 400)
    assert not bench._needs({**entry, "runs": [run]}, 1, 100)  # no ceiling above the cap
    reached = {**run, "learning": True, "sequences": 400, "ceiling": 400}
    assert not bench._needs({**entry, "runs": [reached]}, 1, 400)
    assert not bench._needs({**entry, "schedule": "cosine", "runs": [run]}, 1, 400)
    assert bench._ended({**entry, "runs": [reached, run]}) == "ceiling 1, cap 1"


def test_the_ceiling_is_parsed_as_the_budget_is() -> None:
    bench = benchmark("compare")
    caps = {"copy": 100, "mqar": 200}
    assert bench.budgets("", ["copy", "mqar"], caps) == caps
    assert bench.budgets("copy=400", ["copy", "mqar"], caps) == {"copy": 400, "mqar": 200}
    assert bench.budgets("300", ["copy", "mqar"], caps) == {"copy": 300, "mqar": 300}
    with pytest.raises(ValueError, match="no budget for mqar"):
        bench.budgets("copy=400", ["copy", "mqar"])
    result = subprocess.run(
        [sys.executable, str(Path(bench.__file__)), "--tasks", "copy", "--budget", "100",
         "--ceiling", "copy=50"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "--ceiling: copy=50 is below its cap, 100" in result.stderr


def test_the_document_gives_each_task_its_ceiling() -> None:
    bench = benchmark("compare")
    record = {"budgets": {"copy": 100, "mqar": 100}, "ceilings": {"copy": 400}, "patience": 10,
              "tasks": ["copy", "mqar"], "task_settings": {"copy": {}, "mqar": {}},
              "entries": [], **_OPENING}  # fmt: skip
    text = bench.render(record, Path("/x"))
    assert "cap: 100 sequences per run, 400 for a run on a plateau schedule still learning" in text
    assert text.count("sequences per run.") == 1  # mqar's: no ceiling
    assert 'up to the task\'s ceiling where it has one ("ceiling")' in text
    assert "ceiling" not in bench.render({**record, "ceilings": {}}, Path("/x"))


def test_a_cell_s_first_seed_comes_before_another_cell_is_measured_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = benchmark("compare")
    cells = [("copy", "ntm"), ("copy", "lstm"), ("mqar", "ntm"), ("mqar", "lstm")]
    again = {"runs": ["capped"]}  # to be trained on to a ceiling
    done = {("copy", "ntm"): {"runs": []}, ("copy", "lstm"): again, ("mqar", "lstm"): again}
    monkeypatch.setattr(bench, "_needs", lambda entry, seeds, ceiling: entry is not done[cells[0]])
    order = bench.queue(cells, done, 1, {"copy": 400, "mqar": 400})
    assert order == [("mqar", "ntm"), ("copy", "lstm"), ("mqar", "lstm")]


def test_the_ntm_s_bare_command_is_named_where_it_met_a_target_the_ntm_here_did_not() -> None:
    bench = benchmark("compare")
    rates = [{"lr": lr, "final_eval_cost": cost, "solved": False}
             for lr, cost in (("1e-3", 15.12), ("1e-2", 10.39))]  # fmt: skip
    run = {"solved": False, "ended": "converged", "sequences": 499_712}
    ntm_entry = {"task": "associative_recall", "model": "ntm", "lr": "1e-2", "rates": rates,
                 "schedule": "plateau", "runs": [run]}  # fmt: skip
    said = bench._against_reproduced([ntm_entry], {"associative_recall": 120_832.0})
    assert said[0] == (
        "- The NTM's bare command (`ntm train --task associative_recall`, at its recipe's rate "
        "1e-3) met this target in 120,832 sequences (the median of its solved runs, "
        "`docs/results/reproduce.json`); here the sweep chose 1e-2 on the held-out cost where "
        "its share ended (10.39, against 15.12 at 1e-3), and at 1e-2 the NTM's runs ended "
        "without meeting it (converged 1)."
    )
    assert bench._against_reproduced([ntm_entry], {}) == []  # no reproduce runs
    solved = {**ntm_entry, "runs": [{**run, "solved": True}]}
    assert bench._against_reproduced([solved], {"associative_recall": 1.0}) == []
    unswept = {**ntm_entry, "rates": rates[1:]}  # its recipe's rate not among the sweep's
    assert "(10.39" not in bench._against_reproduced([unswept], {"associative_recall": 1.0})[0]


@pytest.mark.parametrize(
    ("costs", "learned"), [([10.0, 8.0, 6.0], False), ([10.0, 6.0, 5.0], True)]
)
def test_a_run_is_learning_once_its_held_out_cost_is_below_half_its_first(
    tmp_path: Path, costs: list[float], learned: bool
) -> None:
    """As the run's plateau schedule judges it (its plateau_after, a half by default), from
    its metrics: 6 of a first 10 is not yet learning, 5 is."""
    bench = benchmark("compare")
    run_dir = tmp_path / "run"
    training.train(resolve_config(dict(TINY_TRAIN), {}, {}), run_dir, quiet=True)
    rows = ckpt.read_metrics(run_dir)[:1] * len(costs)
    header = list(rows[0])
    lines = [",".join(header)]
    lines += [",".join(str(cost if k == "eval_cost" else row[k]) for k in header)
              for row, cost in zip(rows, costs, strict=True)]  # fmt: skip
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    assert [row["eval_cost"] for row in ckpt.read_metrics(run_dir)] == costs
    assert bench.learning(run_dir) is learned


def test_a_kept_sweep_names_its_runs_where_the_folder_is_now(tmp_path: Path) -> None:
    """sweep.json keeps each run's folder as it was written, from another checkout perhaps:
    its runs are read from the folder the sweep is in now."""
    bench = benchmark("compare")
    out = tmp_path / "copy-400000" / "ntm" / "rates"
    out.mkdir(parents=True)
    kept = [
        {
            "lr": "1e-2",
            "run_dir": "/elsewhere/runs-kept/compare/copy-400000/ntm/rates/lr=1e-2/seed-1",
        }
    ]
    (out / "sweep.json").write_text(json.dumps(kept))
    assert bench.swept(out)[0]["run_dir"] == str(out / "lr=1e-2" / "seed-1")


def test_the_mqar_probe_paragraph_reads_the_comparison_s_runs_where_the_record_has_them(
    tmp_path: Path,
) -> None:
    bench = benchmark("compare")
    fields = {"pairs": 4, "uniform_over_values": 0.25, "sequences": 100, "eval_wrong_tokens": 1.0,
              "probability_on_pair_values": 0.9, "probability_on_right_value": 0.3,
              "slots_written_during_pairs": 8.0, "read_weight_on_the_value_slot": 0.1}  # fmt: skip

    def run(path: str, model: str, lr: float, delay: int = 0) -> dict:
        return {**fields, "run": path, "model": model, "answer_delay": delay,
                "train": {"lr": lr}}  # fmt: skip

    runs = [run("runs-kept/mqar-ntm", "ntm", 3e-3), run("runs-kept/mqar-ntm-2", "ntm", 1e-3),
            run("runs-kept/mqar-dnc", "dnc", 3e-3),
            run("runs-kept/mqar-dnc-1", "dnc", 3e-3, 1)]  # fmt: skip
    record = {"command": "probe", "runs": runs}
    (tmp_path / "probe.json").write_text(json.dumps(record))
    assert not bench._probe(tmp_path / "probe.json")["compared"]
    cell = "runs-kept/compare/mqar-1000000"
    record["runs"] += [run(f"{cell}/ntm/rates/lr=1e-2/seed-1", "ntm", 1e-2),
                       run(f"{cell}/dnc/rates/lr=3e-3/seed-1", "dnc", 3e-3)]  # fmt: skip
    (tmp_path / "probe.json").write_text(json.dumps(record))
    values = bench._probe(tmp_path / "probe.json")
    assert values["compared"] and values["compared_ntm_lr"] == "1e-2"
    assert values["first_lr"] == "3e-3" and values["second_lr"] == "1e-3"  # the first two NTMs
    text = bench._template("comparison/mqar-probe-compared.md", values)
    assert "its NTM (rate 1e-2, its sweep's choice, trained to 100 sequences" in text
