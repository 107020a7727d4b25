"""Write ``docs/results.md`` and its figures from its templates and the runs' records.

Run: ``python scripts/make_results.py`` (``--no-draw``: the documents only, the figures as
they are; ``--draw-tasks copy,...``: those tasks' figures only); it also writes the README's
results table (the summary's), the presets' recipes in ``docs/guide.md``, the sweep table of
``docs/sweeps.md`` and the record tables of ``benchmarks/README.md``. ``tests/test_docs.py``
fails when a document disagrees with what this script makes of the templates and the records.

Inputs:

- The templates: ``docs/templates/results.md``, the report's top (the summary, the
  unattended runs), and ``docs/templates/results/TASK.md``, one section per task (the
  paper's result, the command that reproduces the shipped model, how it was trained, the
  findings, the DNC, the runs not shipped, the figures). Their prose types no measured
  number: a placeholder names the record and field that hold it,
  ``<<eval:copy-ntm-ff:length 50:bit_errors:.3f>>``, or a value this script computes,
  ``<<table:s>>`` (:func:`fill`).
- The shipped models, ``src/ntm/runs/pretrained/ntm/TASK/``: config, weights, ``metrics.csv`` and
  ``eval.json`` (the output of ``ntm eval --pretrained TASK --json``).
- The LSTM baselines' records, ``docs/results/runs/TASK-lstm/``: ``config.json``,
  ``metrics.csv`` and ``eval.json`` (their weights are megabytes and are not shipped).
- The records the templates name in ``docs/results/runs/`` (config, metrics, log; no
  weights), and those ``SHIPPED`` draws beside a shipped model (one that is absent is left
  out of the figures, with a line saying so).
- ``docs/results/reproduce.json``: the rows ``benchmarks/reproduce.py`` writes, one per task
  and seed (``runs/reproduce/TASK-seed-S/reproduce.json``), gathered in one list; the DNC's
  and the LSTM's in ``reproduce-dnc.json`` and ``reproduce-lstm.json``.

To ship a bare run of ``ntm train --task T --seed S`` (its run folder ``RUN``):

1. Ship it: ``python scripts/ship_model.py RUN T`` (its best checkpoint, with ``check.json``
   for ``tests/test_pretrained.py`` and ``eval.json``).
2. Copy ``config.json``, ``metrics.csv`` and ``train.log`` of ``RUN`` to
   ``docs/results/runs/T-ntm/``.
3. In ``docs/templates/results/T.md``: the command in ``Reproduce:``; ``Shipped model: `ntm
   train --task T --seed S`, unattended; its `config.json` is the recipe. Training:
   <<training:s>>. [Record](results/runs/T-ntm/).``; findings that hold for the new model;
   the hand-made model as a line of ``Not shipped:`` where it teaches something (its
   records stay in ``docs/results/runs/``). In ``SHIPPED["T"]``: no ``stages``; ``compare``
   empty, or the hand-made model's kept run to draw it beside the new one (ngrams).
4. Run this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass
from math import inf
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import torch

from ntm.models.ntm.model import NTM
from ntm.pictures import documents
from ntm.pictures.figures import draw_run
from ntm.runs import checkpoint as ckpt
from ntm.runs import pretrained
from ntm.runs.config import recipes_markdown
from ntm.runs.evaluation import HELD_OUT_SEED
from ntm.runs.load import load_run, read_run_config
from ntm.sweeps.local import format_summary
from ntm.training.data import held_out_batch

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
TEMPLATES = DOCS / "templates"
FIGURES = DOCS / "results"
RECORDS = FIGURES / "runs"
KEPT = REPO / "runs-kept"
REPRODUCE = FIGURES / "reproduce.json"
#: The DNC's bare commands, as ``benchmarks/reproduce.py --runs runs/reproduce-dnc -- --model
#: dnc`` writes them (its ``reproduce.json``, copied here).
REPRODUCE_DNC = FIGURES / "reproduce-dnc.json"
#: The LSTM's bare commands within a budget, as ``benchmarks/reproduce.py --runs
#: runs/reproduce-lstm --tasks copy,associative_recall -- --model lstm --max-sequences
#: 100000`` writes them.
REPRODUCE_LSTM = FIGURES / "reproduce-lstm.json"
TASKS = ("copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort")
ORDINALS = ("first", "second", "third", "fourth", "fifth")
#: A picture the report shows: its path from ``docs/``.
PICTURE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


@dataclass(frozen=True)
class Shipped:
    """What the figures draw beside a task's shipped model, besides the DNC and the LSTM."""

    stages: tuple[str, ...] = ()  # hand-made in stages: the records of those before it
    compare: tuple[tuple[str, str], ...] = ()  # (label, runs-kept/ folder) in its own figure
    curves: tuple[tuple[str, str], ...] = ()  # (label, record) drawn beside it, from 0


#: Per task, what its figures draw beside its shipped model (none where it has no entry).
SHIPPED = {
    "repeat_copy": Shipped(stages=("repeat_copy-ntm-stage1",)),
    "ngrams": Shipped(
        stages=("ngrams-ntm-stage1", "ngrams-ntm-stage2"),
        compare=(
            ("NTM after the first stage (200 steps)", "ngrams-ntm"),
            ("NTM after the second stage (400 steps)", "ngrams-ntm-len400"),
        ),
    ),
    "priority_sort": Shipped(
        curves=(
            ("NTM, `ntm train --task priority_sort --seed 1` (batch 8)", "priority_sort-ntm-bare"),
            ("NTM, the same at batch 32", "priority_sort-ntm-batch32"),
        ),
    ),
}
#: Per kind of reference: how many arguments name its row between the record and the field.
WHERE = {"eval": 1, "at": 1, "last": 0, "met": 0, "best": 0, "reproduce": 1, "reproduce-dnc": 1}


def fill(text: str, values: dict[str, Any] | None = None) -> str:
    """``text`` with each placeholder ``<<REF:FORMAT>>`` (or ``<<REF OP REF:FORMAT>>``) filled
    (:func:`ntm.pictures.documents.fill`). A REF among ``values`` names a value this script
    computed; any other names a value in a record:

    - ``eval:RECORD:SETTING:FIELD``: the row of ``RECORD/eval.json`` for that setting;
    - ``last:RECORD:FIELD``, ``at:RECORD:SEQUENCES:FIELD``, ``met:RECORD:FIELD``,
      ``best:RECORD:FIELD``: the row of ``RECORD/metrics.csv`` that is the last, the one at
      that many sequences, the first with the target met, the one of the lowest held-out cost
      (the trainer's best model); a column of ``ckpt.METRICS_COLUMNS``;
    - ``reproduce:TASK:SEED:FIELD``: the row of ``docs/results/reproduce.json``;
      ``reproduce-dnc:TASK:SEED:FIELD``: of ``docs/results/reproduce-dnc.json``.

    RECORD: a folder of ``docs/results/runs/``, or ``ntm/TASK`` or ``dnc/TASK`` for a shipped
    model. A placeholder that names no single row, field or number raises ValueError naming
    it; so does a ``<<`` left unclosed.

    The values the templates name: ``held_out_seed``, ``summary_table``,
    ``reproduce_table``, ``reproduce_dnc_table`` and ``medians_table`` (the report's top,
    :func:`report`); ``table``, ``unattended``, ``training`` and ``dnc_status`` (a task's
    section, :func:`section`)."""
    computed = values or {}

    def lookup(ref: str) -> Any:
        if ref in computed:
            return computed[ref]
        if ":" not in ref:
            known = ", ".join(sorted(computed)) or "none"
            raise LookupError(f"no value named {ref!r} (computed here: {known})")
        return record_value(ref)

    return documents.fill(text, lookup)


def record_value(ref: str) -> Any:
    """The value ``ref`` names in a record (:func:`fill`)."""
    kind, name, *where, field = ref.split(":")
    if kind not in WHERE:
        raise LookupError(f"{kind!r} is no kind of record ({', '.join(WHERE)})")
    if len(where) != WHERE[kind]:
        raise ValueError(f"{kind} takes {WHERE[kind]} argument(s) between record and field")
    if kind in ("reproduce", "reproduce-dnc"):
        rows = json.loads((REPRODUCE if kind == "reproduce" else REPRODUCE_DNC).read_text())
        found: list[dict[str, Any]] = [
            r for r in rows if [r["task"], str(r["seed"])] == [name, *where]
        ]
    else:
        model, _, task = name.partition("/")
        folder = pretrained.path(task, model) if task else RECORDS / name
        if kind == "eval":
            rows = json.loads((folder / "eval.json").read_text())
            found = [r for r in rows if [r["setting"]] == where]
        else:
            metrics = ckpt.read_metrics(folder)
            found = {
                "last": metrics[-1:],
                "at": [r for r in metrics if [f"{r['sequences']:.0f}"] == where],
                "met": [r for r in metrics if r["target_met"] == 1][:1],
                "best": sorted(metrics, key=lambda r: r["eval_cost"])[:1],
            }[kind]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows match, not 1")
    value = found[0][field]
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{field} is not recorded")
    return value


#: The targets, as :func:`met` judges them.
TARGETS = {
    "copy": "bit errors at lengths 1-20 / 20 / 50: 0 / 0 / at most 1",
    "repeat_copy": "0 bit errors",
    "associative_recall": "0 bit errors; cost under 1 bit at 12 items",
    "ngrams": "cost at most 1 bit above optimal, below the LSTM",
    "priority_sort": "cost at most 20 bits, below the LSTM",
}
#: Per task and evaluation setting: (the paper's result, the target); others are "–".
SETTINGS = {
    "copy": {
        "training distribution": ("~0", "0"),
        "length 20": ("–", "0"),
        "length 30": ("nearly perfect", "–"),
        "length 50": ("nearly perfect", "at most 1"),
        "length 120": ("a few errors", "–"),
    },
    "repeat_copy": {
        "training distribution": ("~0", "0"),
        "L=10, R=20": ("end marker wrong past 11 repeats", "–"),
        "L=20, R=10": ("almost perfect", "–"),
    },
    "associative_recall": {
        "training distribution": ("~0", "0"),
        "12 items": ("feed-forward: nearly perfect", "cost under 1"),
        "15 items": ("feed-forward: under 1 bit", "–"),
    },
    "ngrams": {"training distribution": ("~133.5 to 134", "+1 at most, below the LSTM")},
    "priority_sort": {"training distribution": ("~18 to 20", "at most 20, below the LSTM")},
}
#: A picture of the shipped model beyond the training distribution, where it shows how the
#: model fails: the task settings it changes, drawn into ``FIGURES/TASK-beyond``.
BEYOND = {"repeat_copy": {"min_length": 5, "max_length": 5, "min_repeats": 14, "max_repeats": 14}}
#: The same of the shipped DNC, drawn into ``FIGURES/TASK-dnc-beyond``.
DNC_BEYOND = {"copy": {"min_length": 120, "max_length": 120}}


def _skipped(path: Path) -> None:
    print(f"skipped: {path.relative_to(REPO)} is absent", file=sys.stderr)


def _record(name: str) -> Path | None:
    """The record ``docs/results/runs/NAME`` if it is there (else a line says so)."""
    folder = RECORDS / name
    if (folder / ckpt.CONFIG_FILE).is_file():
        return folder
    _skipped(folder)
    return None


def _read_eval(folder: Path) -> list[dict[str, Any]]:
    path = folder / "eval.json"
    return json.loads(path.read_text()) if path.is_file() else []  # type: ignore[no-any-return]


def _row(rows: list[dict[str, Any]], setting: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["setting"] == setting), None)


def met(task: str, ntm: list[dict[str, Any]], lstm: list[dict[str, Any]]) -> bool:
    """Whether the NTM's evaluation meets the task's target (``TARGETS``). Bit errors count as
    0 when under 0.0005 (0.000 shown)."""
    train = _row(ntm, "training distribution")
    if train is None:
        return False
    if task == "copy":
        errors = {n: (_row(ntm, f"length {n}") or {}).get("bit_errors", inf) for n in (20, 50)}
        return max(train["bit_errors"], errors[20]) < 5e-4 and errors[50] <= 1
    if task == "repeat_copy":
        return bool(train["bit_errors"] < 5e-4)
    if task == "associative_recall":
        return (
            train["bit_errors"] < 5e-4 and (_row(ntm, "12 items") or {}).get("cost_bits", inf) < 1
        )
    baseline = _row(lstm, "training distribution")
    below = baseline is not None and train["cost_bits"] < baseline["cost_bits"]
    if task == "ngrams":
        return below and train["cost_bits"] - train["optimal_cost_bits"] <= 1
    return below and train["cost_bits"] <= 20


def _number(value: float) -> str:
    """Three decimals below 10, one above (a cost of 1049.1 bits needs no more)."""
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def deciding(task: str, rows: list[dict[str, Any]]) -> str:
    """The numbers of ``rows`` (an evaluation) that the target is judged on (``TARGETS``)."""
    train = _row(rows, "training distribution")
    if train is None:
        return "not evaluated"
    if task == "copy":
        errors = [train] + [_row(rows, f"length {n}") or {} for n in (20, 50)]
        return " / ".join(_number(r.get("bit_errors", inf)) for r in errors)
    if task == "repeat_copy":
        return _number(train["bit_errors"])
    if task == "associative_recall":
        twelve = (_row(rows, "12 items") or {}).get("cost_bits", inf)
        return f"{_number(train['bit_errors'])}; {_number(twelve)} at 12 items"
    if task == "ngrams":
        return _number(train["cost_bits"] - train["optimal_cost_bits"]) + " above optimal"
    return _number(train["cost_bits"])


def _cell(task: str, row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    cost, errors = _number(row["cost_bits"]), _number(row["bit_errors"])
    if task == "ngrams":
        return f"{cost}, +{_number(row['cost_bits'] - row['optimal_cost_bits'])}"
    if task == "priority_sort":
        return f"{cost} ({errors})"
    if "end_marker_right" in row:
        return f"{errors} ({cost}), {100 * row['end_marker_right']:.0f}%"
    return f"{errors} ({cost})"


def _task_table(
    task: str, ntm: list[dict[str, Any]], dnc: list[dict[str, Any]], lstm: list[dict[str, Any]]
) -> list[str]:
    """One row per evaluation setting: the paper, the NTM, the DNC, the LSTM, the target."""
    settings = dict.fromkeys(r["setting"] for r in [*ntm, *dnc, *lstm])
    lines = ["| setting | paper | NTM | DNC | LSTM | target |", "|---|---|---|---|---|---|"]
    for setting in settings:
        paper, target = SETTINGS[task].get(setting, ("–", "–"))
        models = [_cell(task, _row(rows, setting)) for rows in (ntm, dnc, lstm)]
        lines.append("| " + " | ".join([setting, paper, *models, target]) + " |")
    return lines


def _dnc_folder(task: str) -> Path | None:
    """The DNC of ``task``: the shipped one, else its record, else None."""
    if task in pretrained.available("dnc"):
        return pretrained.path(task, model="dnc")
    folder = RECORDS / f"{task}-dnc"
    return folder if (folder / ckpt.CONFIG_FILE).is_file() else None


def _reproduce_table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows of ``benchmarks/reproduce.py`` (task x seed), in the columns a reader needs."""
    lines = [
        "| task | seed | engine | processes | solved | sequences | minutes | ended by |",
        "|---|---:|---|---:|:---:|---:|---:|---|",
    ]
    for r in rows:
        solved = "yes" if r["solved"] else "no"
        minutes = f"{r['wall_minutes']:.1f}"
        if r["ended_by"] == "unfinished":  # its processes' wall time is not yet summed
            minutes = f"{r['training_minutes']:.1f} training so far"
        lines.append(
            f"| {r['task']} | {r['seed']} | {r.get('engine', 'compiled')} | "
            f"{r.get('processes', '?')} | {solved} | "
            f"{r['sequences']:,d} | {minutes} | {r['ended_by']} |"
        )
    return lines


def _medians(
    ntm_rows: list[dict[str, Any]],
    dnc_rows: list[dict[str, Any]],
    lstm_rows: list[dict[str, Any]],
) -> list[str]:
    """Per task, the NTM's, the DNC's and the LSTM's bare commands side by side: seeds
    solved, the median sequences and minutes of the solved ones, and the LSTM's median
    held-out cost where its budget ended (on its 512-sequence check)."""
    lines = [
        "| task | NTM solved | NTM sequences | NTM minutes | DNC solved | DNC sequences | "
        "DNC minutes | LSTM solved | LSTM cost at its end |",
        "|---|:---:|---:|---:|:---:|---:|---:|:---:|---:|",
    ]
    for task in dict.fromkeys(r["task"] for r in dnc_rows):
        cells = [task]
        for rows in (ntm_rows, dnc_rows):
            mine = [r for r in rows if r["task"] == task]
            solved = [r for r in mine if r["solved"]]
            cells.append(f"{len(solved)}/{len(mine)}" if mine else "–")
            if solved:
                cells.append(f"{statistics.median(r['sequences'] for r in solved):,.0f}")
                cells.append(f"{statistics.median(r['wall_minutes'] for r in solved):.1f}")
            else:
                cells += ["–", "–"]
        lstm = [r for r in lstm_rows if r["task"] == task and r["ended_by"] != "unfinished"]
        if lstm:
            cost = statistics.median(r["final_eval_cost"] for r in lstm)
            cells += [f"{sum(r['solved'] for r in lstm)}/{len(lstm)}", f"{cost:.1f}"]
        else:
            cells += ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _unattended(rows: list[dict[str, Any]] | None) -> str:
    """Whether a task's bare command is measured to reach the target unattended (``rows``:
    its rows of the reproduce table; None: the table is not measured), and how fast."""
    if not rows:
        return "not measured unattended yet"
    going = [r for r in rows if r["ended_by"] == "unfinished"]
    if going:
        return "unattended: " + "; ".join(
            f"seed {r['seed']} in progress, {r['final_eval_cost']:.1f} bits of held-out cost at "
            f"{r['sequences']:,d} sequences, continued with `ntm train --resume`"
            for r in going
        )
    solved = [r for r in rows if r["solved"]]
    if not solved:
        why = {"floor": "stopped by its schedule at the floor learning rate", "budget": "ran out"}
        return "unattended: not solved: " + "; ".join(
            f"seed {r['seed']} {why.get(r['ended_by'], r['ended_by'])} at {r['sequences']:,d} "
            f"sequences, {r['final_eval_cost']:.1f} bits of held-out cost"
            for r in rows
        )
    sequences = statistics.median(r["sequences"] for r in solved)
    minutes = statistics.median(r["wall_minutes"] for r in solved)
    return (
        f"unattended: solved by {len(solved)} of {len(rows)} seeds, in a median {sequences:,.0f} "
        f"sequences and {minutes:.1f} min"
    )


def _curve_runs(task: str, entry: Shipped) -> dict[str, tuple[Path, int]]:
    """The learning curves of the NTM (its stages, each from where the one before ended, an
    earlier one named with its task settings that differ from the shipped model's) and of the
    LSTM: label: (folder, first sequence)."""
    shipped = pretrained.path(task)
    stages = [folder for folder in map(_record, entry.stages) if folder is not None]
    settings = read_run_config(shipped).task.to_dict()
    runs = {}
    start = 0
    for number, folder in enumerate([*stages, shipped], 1):
        label = "NTM"
        if stages:
            ordinal = ORDINALS[number - 1] if number <= len(ORDINALS) else f"{number}th"
            label = f"NTM, {ordinal} stage"
            if folder != shipped:
                run_task = read_run_config(folder).task
                items = run_task.to_dict().items()
                changed = [f"{k}={v}" for k, v in items if settings.get(k) != v]
                label += f" ({', '.join([run_task.name, *changed])})"
        runs[label] = (folder, start)
        start += int(ckpt.read_metrics(folder)[-1]["sequences"])
    for label, name in entry.curves:
        record = _record(name)
        if record is not None:
            runs[label] = (record, 0)
    dnc = _dnc_folder(task)
    if dnc is not None:
        runs["DNC"] = (dnc, 0)
    lstm = _record(f"{task}-lstm")
    if lstm is not None:
        runs["LSTM"] = (lstm, 0)
    return runs


def _training(runs: dict[str, tuple[Path, int]], others: tuple[str, ...] = ()) -> str:
    """Sequences and minutes of training of the NTM (summed over its stages), the DNC and the
    LSTM; the curves labelled ``others`` are drawn beside them, not counted."""
    parts = []
    for model in ("NTM", "DNC", "LSTM"):
        rows = [
            ckpt.read_metrics(folder)[-1]
            for label, (folder, _) in runs.items()
            if label.startswith(model) and label not in others
        ]
        if not rows:
            continue
        sequences = sum(int(r["sequences"]) for r in rows)
        minutes = sum(r["seconds"] for r in rows) / 60
        stages = f" in {len(rows)} stages" if len(rows) > 1 else ""
        parts.append(f"{model} {sequences:,d} sequences, {minutes:.1f} min{stages}")
    return "; ".join(parts)


def _curves(task: str, runs: dict[str, tuple[Path, int]]) -> None:
    """Held-out cost against training sequences, into ``FIGURES/TASK-curves.png``."""
    figure, axis = plt.subplots(figsize=(7, 4))
    costs = []
    for label, (folder, start) in runs.items():
        rows = ckpt.read_metrics(folder)
        costs += [r["eval_cost"] for r in rows]
        axis.plot(
            [start + r["sequences"] for r in rows], [r["eval_cost"] for r in rows], label=label
        )
    axis.set_xlabel("training sequences")
    axis.set_ylabel("held-out cost (bits per sequence)")
    if task == "ngrams":  # the floor: the Bayes-optimal cost of the same check set
        run = read_run_config(pretrained.path(task))
        optimal = run.task.optimal_cost(held_out_batch(run))
        axis.axhline(optimal, color="black", linestyle="--", linewidth=1, label="Bayes-optimal")
    if min(costs) < max(costs) / 10:  # spans decades (copy falls to ~0): log beyond 1 bit
        axis.set_yscale("symlog", linthresh=1.0)
    _save(figure, axis, f"{task}: held-out cost during training", f"{task}-curves.png")


def _priority_figure(folder: Path) -> None:
    """Write location against priority (the paper's figure 17): for each input vector of one
    held-out sequence, the slot where each write head put most of its weight."""
    run, model = load_run(folder)
    assert isinstance(model, NTM)
    batch = run.task.sample(1, torch.Generator().manual_seed(HELD_OUT_SEED))
    with torch.no_grad():
        _, _, trace = model.trace(batch.inputs)
    count = run.task.num_inputs
    priorities = batch.inputs[:count, 0, run.task.bits].numpy()  # the priority channel
    peaks = trace.write_weights[:count, 0].argmax(-1).numpy()  # (count, heads)
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for head in range(peaks.shape[1]):
        axis.scatter(priorities, peaks[:, head], label=f"write head {head}", s=18)
    axis.set_xlabel("priority of the input vector")
    axis.set_ylabel("write location (slot of the largest weight)")
    title = "priority sort: write location against priority"
    _save(figure, axis, title, "priority_sort-write-vs-priority.png", "small")


def _ngrams_excess_figure(folder: Path, others: dict[str, Path]) -> None:
    """Cost above the Bayes-optimal estimator's at each step, averaged over the 1,000
    held-out sequences ``ntm eval`` draws, for the model in ``folder``, for the runs in
    ``others`` (label: run folder, evaluated on the same sequences whatever they trained on)
    and, when the model has fewer slots than the sequence has steps, for the optimal
    estimator that keeps only as many last transitions as it has slots (what a tape holds)."""
    run = read_run_config(folder)
    task, slots = run.task, run.model.memory_size
    batch = task.sample(1000, torch.Generator().manual_seed(HELD_OUT_SEED))
    targets = batch.targets[..., 0].double()
    curves = {}
    if slots < task.length:
        curves[f"Bayes-optimal on the last {slots} steps only"] = torch.logit(
            task.optimal_predictions(batch.inputs, window=slots)[..., 0].double()
        )
    for name, source in {"NTM": folder, **others}.items():
        model = load_run(source)[1]
        with torch.no_grad():
            curves[name] = model(batch.inputs)[0][..., 0].double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    optimal_logits = torch.logit(task.optimal_predictions(batch.inputs)[..., 0].double())
    optimal = bce(optimal_logits, targets, reduction="none")
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for name, logits in curves.items():
        per_step = (bce(logits, targets, reduction="none") - optimal).mean(1) / math.log(2)
        excess = float(per_step.sum())
        axis.plot(range(1, len(per_step) + 1), per_step, label=f"{name}: {excess:.2f} bits")
    xlabel = "step of the sequence"
    if slots < task.length:
        axis.axvline(slots, color="grey", linestyle=":", linewidth=1)
        xlabel += f" (dotted: {slots}, the number of memory slots)"
    axis.axhline(0, color="black", linewidth=1)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("bits above Bayes-optimal")
    title = "ngrams: cost above the optimal estimator's, step by step"
    _save(figure, axis, title, "ngrams-excess.png", "small")


def _save(figure: Any, axis: Any, title: str, name: str, legend_size: str | None = None) -> None:
    """Finish a report figure (title, grid, legend) and write it as ``FIGURES/name``."""
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=legend_size)
    figure.tight_layout()
    figure.savefig(FIGURES / name, dpi=110)
    plt.close(figure)


def _beyond(folder: Path, name: str, settings: dict[str, int]) -> None:
    """The model of ``folder`` on one sequence of its task with ``settings`` changed, drawn
    into ``FIGURES/name/sequence.png``."""
    for path in draw_run(folder, FIGURES / name, settings, seed=HELD_OUT_SEED):
        if path.name != "sequence.png":  # the others repeat the first pictures
            path.unlink()


def _draw(task: str, runs: dict[str, tuple[Path, int]], dnc: Path | None) -> None:
    """The figures of the report's section on ``task``, into ``FIGURES``."""
    shipped = pretrained.path(task)
    _curves(task, runs)
    draw_run(shipped, FIGURES / task, seed=HELD_OUT_SEED)
    if task in BEYOND:
        _beyond(shipped, f"{task}-beyond", BEYOND[task])
    if dnc is not None and dnc.parent != RECORDS:
        draw_run(dnc, FIGURES / f"{task}-dnc", seed=HELD_OUT_SEED)
        if task in DNC_BEYOND:
            _beyond(dnc, f"{task}-dnc-beyond", DNC_BEYOND[task])
    if task == "priority_sort":
        _priority_figure(shipped)
    if task == "ngrams":
        others = {}
        for label, name in SHIPPED[task].compare:
            if (KEPT / name / ckpt.CONFIG_FILE).is_file():
                others[label] = KEPT / name
            else:
                _skipped(KEPT / name)
        _ngrams_excess_figure(shipped, others)


def section(task: str, reproduced: list[dict[str, Any]], draw: bool) -> str:
    """The report's section on ``task``: its template filled (``draw``: its figures drawn
    too)."""
    entry = SHIPPED.get(task, Shipped())
    dnc = _dnc_folder(task)
    ntm, lstm = _read_eval(pretrained.path(task)), _read_eval(RECORDS / f"{task}-lstm")
    runs = _curve_runs(task, entry)
    if draw:
        _draw(task, runs, dnc)
    status = "not run" if dnc is None else "not shipped" if dnc.parent == RECORDS else "shipped"
    values = {
        "table": "\n".join(_task_table(task, ntm, _read_eval(dnc) if dnc else [], lstm)),
        "unattended": _unattended([r for r in reproduced if r["task"] == task]),
        "training": _training(runs, tuple(label for label, _ in entry.curves)),
        "dnc_status": status,
    }
    return fill((TEMPLATES / "results" / f"{task}.md").read_text(), values)


def summary_table() -> list[str]:
    """The table of each task's deciding numbers for the NTM, the DNC and the LSTM against
    its target, from their eval records: the summary of ``docs/results.md`` and the
    README's results table."""
    out = [
        "| task | target | NTM | DNC | LSTM | NTM met | DNC met |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        ntm = _read_eval(pretrained.path(task))
        lstm = _read_eval(RECORDS / f"{task}-lstm")
        dnc_folder = _dnc_folder(task)
        dnc = _read_eval(dnc_folder) if dnc_folder is not None else []
        verdicts = ["yes" if met(task, rows, lstm) else "no" for rows in (ntm, dnc)]
        if not dnc:
            verdicts[1] = "not run"
        numbers = [deciding(task, rows) if rows else "–" for rows in (ntm, dnc, lstm)]
        out.append("| " + " | ".join([task, TARGETS[task], *numbers, *verdicts]) + " |")
    return out


#: Where the README holds the results table, between these two lines.
README_TABLE = (
    "<!-- results table: python scripts/make_results.py -->",
    "<!-- end of results table -->",
)
#: Where ``docs/guide.md`` holds each task's preset settings and their reasons (the models'
#: and tasks' own, as ``ntm train --help`` shows them).
GUIDE_RECIPES = ("<!-- recipes: python scripts/make_results.py -->", "<!-- end of recipes -->")


#: The memory-initialisation sweep's summary (its ``summary.json``), and where
#: ``docs/sweeps.md`` holds its table.
SWEEP_RECORD = DOCS / "sweeps" / "memory-init-summary.json"
SWEEP_TABLE = (
    "<!-- sweep summary: python scripts/make_results.py -->",
    "<!-- end of sweep summary -->",
)


def sweeps_with_table(text: str) -> str:
    """``docs/sweeps.md``'s ``text`` with its sweep's summary table, from the record."""
    lines = format_summary(json.loads(SWEEP_RECORD.read_text())).rstrip("\n").splitlines()
    return documents.between(text, SWEEP_TABLE, lines)


#: A table in ``benchmarks/README.md`` rendered from a benchmark's record: the record's path
#: (from the repository) in the first line, the table up to the second.
BENCHMARK_BLOCK = ("<!-- record: {} -->", "<!-- end of record -->")


def _benchmark(name: str) -> ModuleType:
    """The benchmark script ``benchmarks/NAME.py``, imported."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def benchmarks_with_tables(text: str) -> str:
    """``benchmarks/README.md``'s ``text`` with each record's table rendered from it by its
    benchmark's ``table``."""

    def table(record: str) -> list[str]:
        found = json.loads((REPO / record).read_text())
        return _benchmark(found["benchmark"]).table(found)  # type: ignore[no-any-return]

    return documents.each_between(text, *BENCHMARK_BLOCK, table)


def readme_with_table(text: str) -> str:
    """The README ``text`` with :func:`summary_table` between the :data:`README_TABLE`
    lines."""
    return documents.between(text, README_TABLE, summary_table())


def guide_with_recipes(text: str) -> str:
    """``docs/guide.md``'s ``text`` with the presets' recipes between the
    :data:`GUIDE_RECIPES` lines."""
    return documents.between(text, GUIDE_RECIPES, recipes_markdown())


def report(draw: bool | frozenset[str] = True) -> str:
    """The text of ``docs/results.md``, from its templates and the records; ``draw``: write
    its figures too (a set of tasks: theirs only). A picture it shows that is not drawn
    raises FileNotFoundError."""
    if draw:
        FIGURES.mkdir(parents=True, exist_ok=True)
    reproduced = json.loads(REPRODUCE.read_text())
    dnc_rows = json.loads(REPRODUCE_DNC.read_text())
    lstm_rows = json.loads(REPRODUCE_LSTM.read_text())
    values = {
        "held_out_seed": HELD_OUT_SEED,
        "summary_table": "\n".join(summary_table()),
        "reproduce_table": "\n".join(_reproduce_table(reproduced)),
        "reproduce_dnc_table": "\n".join(_reproduce_table(dnc_rows)),
        "medians_table": "\n".join(_medians(reproduced, dnc_rows, lstm_rows)),
    }
    parts = [fill((TEMPLATES / "results.md").read_text(), values)]
    parts += [
        section(task, reproduced, draw if isinstance(draw, bool) else task in draw)
        for task in TASKS
    ]
    text = "\n".join(part.rstrip("\n") + "\n" for part in parts)
    missing = [path for path in PICTURE.findall(text) if not (DOCS / path).is_file()]
    if missing:
        raise FileNotFoundError(f"docs/results.md shows pictures not drawn: {missing}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-draw", action="store_true", help="write the documents, not the figures"
    )
    parser.add_argument(
        "--draw-tasks",
        metavar="TASK,...",
        help="draw the figures of these tasks only (the documents are written whole)",
    )
    args = parser.parse_args()
    draw: bool | frozenset[str] = not args.no_draw
    if args.draw_tasks and draw:
        draw = frozenset(args.draw_tasks.split(","))
        unknown = sorted(draw - set(TASKS))
        if unknown:
            parser.error(f"--draw-tasks: {', '.join(unknown)}: not among {', '.join(TASKS)}")
    (DOCS / "results.md").write_text(report(draw=draw))
    readme = REPO / "README.md"
    readme.write_text(readme_with_table(readme.read_text()))
    guide = DOCS / "guide.md"
    guide.write_text(guide_with_recipes(guide.read_text()))
    sweeps = DOCS / "sweeps.md"
    sweeps.write_text(sweeps_with_table(sweeps.read_text()))
    benchmarks = REPO / "benchmarks" / "README.md"
    benchmarks.write_text(benchmarks_with_tables(benchmarks.read_text()))
    print(
        f"wrote {DOCS / 'results.md'} and the tables of {readme}, {guide}, {sweeps}, {benchmarks}"
    )


if __name__ == "__main__":
    main()
