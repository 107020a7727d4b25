"""Memory against attention and state spaces: every model on the same tasks, trainer and
targets, each trained until it converges, at its best learning rate, then three seeds, and
the length ladder.

Run: ``python benchmarks/compare.py`` (the tasks copy, associative_recall and mqar; every
registered model; the Transformer at its best encoding, RoPE or ALiBi, and with none). Stopped and
started again with the same command, it goes on where it stopped, on this machine or on
another: its runs live in ``--out`` (``runs-kept/compare``, committed), where sweeps skip
finished runs and resume the others from their checkpoints, and evaluations already
written are read. ``--jobs 2`` trains two cells at a time, one process of one thread each.
Interrupted (Ctrl-C, ``kill -INT``), it keeps each unfinished run's latest checkpoint and
best model only, ready to commit; killed outright, it leaves older checkpoints too, and a
document behind its record: ``--tidy`` prunes them and writes the document, training nothing.

For each task and model:

1. **Equal parameters.** The NTM's parameter count for the task (its recipe) is the
   reference; every other model gets the width (``d_model``, ``hidden_size`` or
   ``controller_size``) whose count is nearest to it, and a model more than 10% away is
   reported, not trained.
2. **Its learning rate**, by ``ntm sweep --seeds 1 --set lr=R1,R2,...`` (``--rates``, up to
   1e-2), each rate trained for the first ``--sweep-share`` of the cap (a fifth) on the
   schedule of a whole run (``--decay-sequences`` is the cap). The rate chosen is the one
   that met the target in the fewest sequences, or, where none did, the one with the
   lowest held-out cost at the end of its share. The Transformer's sweep covers RoPE and
   ALiBi as well (``--set position=rope,alibi``, :data:`SWEPT`): the chosen run fixes its
   encoding as it fixes its rate: its best encoding, shown beside NoPE, without training
   both to the cap. Its run then trains on **to
   convergence**: it stops when ``--patience`` evaluations pass without a new best
   held-out cost (``ntm train --stop-patience``), when it meets the task's target, or at
   the cap (``--budget 400000,mqar=1000000``); each run records which of these ended it.
   Every model trains with its own family's recipe (the NTM's and the DNC's, or for
   attention and state spaces AdamW, weight decay, warm-up and cosine decay); a run on a
   cosine schedule decays to the cap, its schedule's end, with no stop on a plateau (one at
   a high rate would cut its decay short), unless it meets the target first.
3. **Three seeds** at that rate (and the Transformer at that encoding; seed 1 is the sweep's
   run; ``ntm sweep --seeds 2,3``, each to convergence or the cap), after every cell has its
   first seed: one seed of every cell comes before more seeds of some. The cells of the NTM
   and the DNC come first and Mamba's, the slowest to train on a CPU, last.
4. **The ladder**: ``ntm eval RUN --ladder`` on each seed's best model: the training
   distribution and the task's settings beyond it (lengths, items or pairs x2, x4, ...),
   errors per sequence and the share of sequences entirely right; for a model with a
   memory of ``memory_size`` slots (the NTM, the DNC), the same again with
   ``--ladder-memory`` slots (``ntm eval --model-arg memory_size=N``): the memory is no
   learned parameter, as a Tape-RNN's tape is as long as its input.

Everything it measured goes into ``--record`` (``docs/comparison/records.json``), from which
:func:`render` writes ``docs/comparison.md`` (its prose: the templates
``docs/templates/comparison.md`` and ``docs/templates/comparison/``) and one plot per task of
the share of sequences entirely right against the test setting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import torch

import ntm
from ntm import registry
from ntm.cli.eval import ladder_file
from ntm.pictures import documents
from ntm.runs import checkpoint as ckpt
from ntm.runs.config import resolve_config
from ntm.runs.evaluation import HELD_OUT_SEED, LADDER_MEAN, answer_shares, best_constant
from ntm.runs.load import build_model, read_run_config
from ntm.sweeps.local import RESULT_FILE, outcome, setting_folder
from ntm.tasks.chomsky import CHOMSKY_TASKS, LEVELS
from ntm.training.schedule import has_learned

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answer_probe import probe, sentence
from common import header

ROOT = Path(__file__).resolve().parent.parent
#: The templates of ``docs/comparison.md``: its top, and the parts in ``comparison/``.
TEMPLATES = ROOT / "docs" / "templates"
#: Models compared in more than one setting: label -> (registered model, its settings).
#: The Transformers have two heads: their width is a multiple of twice the heads (an even
#: width per head), and steps of 4 land within 10% of the NTM's count where steps of 8 (four
#: heads) fall between.
VARIANTS = {
    "transformer": {
        # Its best encoding: RoPE or ALiBi, whichever the rate sweep over both chooses.
        "transformer": {"num_heads": 2},
        # No position encoding: the causal mask alone orders the tokens (NoPE).
        "transformer-nope": {"position": "none", "num_heads": 2},
    },
}
#: Settings that a label's sweep varies beside the rate (label -> setting -> values): the
#: run chosen by :func:`chosen_run` fixes them as it fixes the rate. No value may change the
#: parameter count (the width is matched with the first).
SWEPT = {"transformer": {"position": ["rope", "alibi"]}}
#: The models compared: every registered one (a plugin's too), by label: (registered model,
#: fixed model settings). Each scales its width by its own ``width_setting``.
MODELS = {
    label: (name, settings)
    for name in registry.models()
    for label, settings in VARIANTS.get(name, {name: {}}).items()
}
#: The models whose cells come first (memory, the question) and last (the slowest to train
#: on a CPU: Mamba in pure PyTorch), so that a sitting's time goes to the most cells.
FIRST, LAST = ("ntm", "dnc"), ("mamba",)
ORDER = sorted(
    MODELS, key=lambda label: (MODELS[label][0] not in FIRST) + (MODELS[label][0] in LAST)
)
TOLERANCE = 0.10  # the largest relative difference of parameters from the NTM's


def parameters(model: str, task: str, settings: dict[str, Any]) -> int:
    """The parameter count of ``model`` with ``settings`` on ``task`` (its recipe applied)."""
    run = resolve_config({"model": model, "task": task}, {}, settings)
    return sum(p.numel() for p in build_model(run).parameters())


def task_settings(task: str) -> dict[str, Any]:
    """The settings of ``task`` that its runs train on (its defaults, its recipe applied)."""
    settings: dict[str, Any] = resolve_config({"model": "ntm", "task": task}, {}, {}).to_dict()
    return dict(settings["task"])


def width_step(label: str) -> int:
    """The step between the widths of ``label`` that :func:`matched` tries: its model's
    ``width_setting`` step, or for fixed heads twice their number (an even width each)."""
    model, fixed = MODELS[label]
    width = registry.width_setting(registry.model_class(model))
    if "num_heads" in fixed:
        return 2 * int(fixed["num_heads"])
    return width[1] if width else 0


def matched(label: str, task: str) -> tuple[dict[str, Any], int, int]:
    """The model settings of ``label`` whose parameter count on ``task`` is nearest the
    NTM's: (settings, its count, the NTM's). The settings its sweep varies (:data:`SWEPT`)
    count at their first value and are left out of the settings."""
    reference = parameters("ntm", task, {})
    model, fixed = MODELS[label]
    first = {key: values[0] for key, values in SWEPT.get(label, {}).items()}
    width = registry.width_setting(registry.model_class(model))
    if width is None:
        return dict(fixed), parameters(model, task, {**fixed, **first}), reference
    name, step = width[0], width_step(label)
    best: tuple[float, dict[str, Any], int] | None = None
    width = step
    while True:
        settings = {**fixed, name: width}
        count = parameters(model, task, {**settings, **first})
        gap = abs(count - reference) / reference
        if best is None or gap < best[0]:
            best = (gap, settings, count)
        if count > reference:
            break
        width += step
    return best[1], best[2], reference


def _flags(
    task: str, model: str, settings: dict[str, Any], budget: int, patience: int, cap: int
) -> list[str]:
    """``ntm train``'s flags for a run of ``budget`` sequences, whose schedule spans
    ``cap`` (a sweep's run is the start of a run to the cap, and resumes as one)."""
    flags = ["--task", task, "--model", model, "--max-sequences", str(budget), "--quiet"]
    flags += ["--stop-patience", str(patience), "--decay-sequences", str(cap)]
    for key, value in settings.items():
        flags += ["--model-arg", f"{key}={value}"]
    return flags


def sweep(
    flags: list[str],
    out: Path,
    seeds: str,
    rates: list[str],
    axes: dict[str, list[str]] | None = None,
) -> None:
    """``ntm sweep`` with ``flags`` over ``rates``, the settings ``axes`` (setting ->
    values) and ``seeds`` into ``out``, a run at a time (resumes)."""
    command = [sys.executable, "-m", "ntm", "sweep", *flags, "--seeds", seeds]
    for key, values in (axes or {}).items():
        command += ["--set", f"{key}=" + ",".join(values)]
    command += ["--set", "lr=" + ",".join(rates), "--out", str(out), "--jobs", "1"]
    subprocess.run(command, check=True)


def _setting_values(folder: str, keys: list[str]) -> dict[str, str]:
    """The settings ``keys`` of a sweep's run folder, named as ``ntm sweep`` names it: each
    ``key=value``, in the order of its ``--set`` flags, joined by ``_``
    (``position=rope_lr=1e-3``). A ValueError names a folder that is not so named."""
    pattern = "_".join(f"{re.escape(key)}=(.+?)" for key in keys)
    found = re.fullmatch(pattern, folder)
    if found is None:
        raise ValueError(
            f"{folder!r}: not a sweep folder named {'_'.join(k + '=...' for k in keys)}"
        )
    return dict(zip(keys, found.groups(), strict=True))


def results(out: Path, swept_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """The finished runs of a sweep folder: their settings, seeds and outcomes; the rate as
    ``lr``, the other settings the sweep varied (``swept_keys``, set before the rate) under
    ``chose``."""
    keys = [*(swept_keys or []), "lr"]
    found = []
    for result in sorted(out.glob("*/seed-*/result.json")):
        row = json.loads(result.read_text())
        row["run_dir"] = str(result.parent)
        values = _setting_values(result.parent.parent.name, keys)
        row["lr"] = values.pop("lr")
        if values:
            row["chose"] = values
        row["seed"] = int(result.parent.name.removeprefix("seed-"))
        found.append(row)
    return found


def swept(out: Path, swept_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """The rate sweep's runs as they ended the sweep (kept in ``sweep.json``: the chosen
    run trains on afterwards, and its ``result.json`` then tells of its whole run), each
    run's folder under ``out`` (a checkout elsewhere, another machine)."""
    kept = out / "sweep.json"
    if kept.is_file():
        rows: list[dict[str, Any]] = json.loads(kept.read_text())
        for row in rows:  # kept with the path it had: the runs are under ``out`` wherever it is
            run_dir = Path(row["run_dir"])
            row["run_dir"] = str(out / run_dir.parent.name / run_dir.name)
        return rows
    rows = results(out, swept_keys)
    ckpt.write_text_atomic(kept, json.dumps(rows, indent=1) + "\n")
    return rows


def train_on(row: dict[str, Any], budget: int, patience: int) -> dict[str, Any]:
    """The sweep's chosen run, trained on to ``budget`` sequences where the sweep's share
    of the budget ended it (not its target or convergence), converged after ``patience``
    evaluations without a new best (0: never); its ``result.json`` updated."""
    run_dir = Path(row["run_dir"])
    result_file = run_dir / RESULT_FILE
    result = json.loads(result_file.read_text())
    if result.get("ended") == "budget" and result["sequences"] < budget:
        command = [sys.executable, "-m", "ntm", "train", "--resume", str(run_dir)]
        command += ["--max-sequences", str(budget), "--stop-patience", str(patience), "--quiet"]
        subprocess.run(command, check=True)
        result.update(outcome(run_dir, 0.0))  # the trainer records whether it met its target
        ckpt.write_text_atomic(result_file, json.dumps(result))
    return {**row, **result}


def learning(run_dir: Path) -> bool:
    """Whether a run has begun to learn (:func:`ntm.training.schedule.has_learned`, as its
    plateau schedule judges it): its best held-out cost below ``plateau_after`` (a half) of
    its first."""
    costs = [row["eval_cost"] for row in ckpt.read_metrics(run_dir)]
    plateau_after = read_run_config(run_dir).train.plateau_after
    return bool(costs) and has_learned(min(costs), costs[0], plateau_after)


def extend(row: dict[str, Any], cap: int, ceiling: int, patience: int) -> dict[str, Any]:
    """A run on a plateau schedule (``patience`` > 0) that reached the task's ``cap`` while
    still :func:`learning`, trained on until it converges, meets the target or reaches
    ``ceiling``; its ``result.json`` updated and marked with the ceiling (a run stopped on
    the way goes on from there), and ``learning`` recorded. A finished cell's run kept only
    its best model: ``ntm train --resume`` then trains it again from its start, and the
    ladders of its old model go. Any other run: its result as it is."""
    run_dir = Path(row["run_dir"])
    result_file = run_dir / RESULT_FILE
    result = json.loads(result_file.read_text())
    at_cap = result.get("ended") == "budget" and cap <= result["sequences"] < ceiling
    if not patience or not at_cap:
        return {**row, **result}
    if result.get("ceiling") != ceiling:  # not begun yet
        result["learning"] = learning(run_dir)
        if not result["learning"]:
            ckpt.write_text_atomic(result_file, json.dumps(result))
            return {**row, **result}
        result["ceiling"] = ceiling
        ckpt.write_text_atomic(result_file, json.dumps(result))
    for kept in run_dir.glob("ladder*.json"):
        kept.unlink()
    command = [sys.executable, "-m", "ntm", "train", "--resume", str(run_dir), "--quiet"]
    command += ["--max-sequences", str(ceiling), "--stop-patience", str(patience)]
    subprocess.run(command, check=True)
    result.update(outcome(run_dir, 0.0))
    ckpt.write_text_atomic(result_file, json.dumps(result))
    return {**row, **result}


def keep_best_only(folder: Path, used: set[Path]) -> None:
    """Remove the training checkpoints of a finished cell's runs, keeping the best models of
    the runs it ``used`` (``ntm eval`` reads them; the other rates' runs keep what they
    measured and their logs): a cell's folder is then a few hundred kB, small enough to
    commit, while an unfinished one keeps its checkpoints and resumes on another machine."""
    for result in folder.glob("*/*/seed-*/" + RESULT_FILE):
        checkpoints = result.parent / ckpt.CHECKPOINTS
        for step in checkpoints.glob("step-*"):
            shutil.rmtree(step)
        (checkpoints / ckpt.LATEST).unlink(missing_ok=True)
        if result.parent.resolve() not in used:
            shutil.rmtree(checkpoints, ignore_errors=True)


def keep_latest_only(out: Path) -> None:
    """Remove every run's older checkpoints under ``out``, keeping the one its ``latest``
    names (what ``--resume`` starts from) and its best model: after an interruption the
    unfinished cells are then small enough to commit, and resume on another machine."""
    for pointer in out.glob(f"**/{ckpt.CHECKPOINTS}/{ckpt.LATEST}"):
        latest = ckpt.latest_checkpoint(pointer.parent.parent)
        for step in pointer.parent.glob("*step-*"):  # staging folders (".step-...") too
            if step.is_dir() and step != latest:
                shutil.rmtree(step)


def tidy(out: Path, record: Path) -> int:
    """``--tidy``: :func:`keep_latest_only` on ``out``; the record's missing best constant
    answers (:func:`baselines`) and answer probes (:func:`explain`, which evaluates
    models) added to it; then the document (beside the record's folder) rendered again
    from ``record``."""
    keep_latest_only(out)
    if not record.is_file():
        print(f"--record {record}: no such file, so no document to write", file=sys.stderr)
        return 2
    data = json.loads(record.read_text())
    missing = [
        t for t in data["tasks"] if t in CHOMSKY_TASKS and t not in data.get("baselines", {})
    ]
    if missing:  # a record written before it held them
        data["baselines"] = {**data.get("baselines", {}), **baselines(data, missing)}
    if explain(data, out) or missing:
        ckpt.write_text_atomic(record, json.dumps(data, indent=2) + "\n")
    text = render(data, record.parent)
    ckpt.write_text_atomic(record.parent.parent / "comparison.md", text)
    print(f"pruned {out}; wrote {record.parent.parent / 'comparison.md'}")
    return 0


def baselines(record: dict[str, Any], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """For each of ``tasks`` (the Chomsky hierarchy's), the best constant answer: the one
    answer symbol that, given at every token, gets the largest share of the tokens right,
    averaged over the test lengths as the score is, on the held-out sequences the ladders
    draw (``record["size"]`` a length, the held-out seed). A uniform guess understates
    what a model gets for nothing where one symbol fills most answers: binary_addition's
    and stack_manipulation's end symbol ``$`` is one token a sequence, so 0 and 1 fill half
    the answers each, where a guess among the three gets a third."""
    found = {}
    for name in tasks:
        task = ntm.make_task(name, **record["task_settings"].get(name, {}))
        shares = []
        for _, changes in registry.ladder(task):
            variant = task.with_settings(**changes)
            batch = variant.sample(record["size"], torch.Generator().manual_seed(HELD_OUT_SEED))
            shares.append(answer_shares(batch))
        best, share = best_constant(shares)
        found[name] = {"symbol": task.output_vocabulary[best], "share": share}
    return found


def chosen_run(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep's run that met the target in the fewest sequences, else the one with the
    lowest final cost: its rate, and its other swept settings."""

    def key(row: dict[str, Any]) -> tuple[bool, float, float]:
        to_target = row["sequences_to_target"] or math.inf
        return (not row["solved"], to_target, row["final_eval_cost"])

    return min(rows, key=key)


def chosen_rate(rows: list[dict[str, Any]]) -> str:
    """The rate of :func:`chosen_run`."""
    return str(chosen_run(rows)["lr"])


#: What the ladder with more slots sets for a model with a ``search`` setting (SAM): the
#: exhaustive search it trained with on 128 slots. From 1,024 slots (its INDEX_FROM) its
#: default is an approximate index, which answers some reads with other slots than the
#: model learned to expect, so that row would measure the index, not the larger memory.
EXACT_SEARCH = {"search": "exact"}


def ladder(run_dir: Path, size: int, memory: int = 0) -> list[dict[str, Any]]:
    """``ntm eval RUN --ladder`` (kept in the run folder as ``ladder.json``); where
    ``memory`` is given, with that many slots instead of the trained number, more on a
    length whose sequences have more steps (``--memory-for-length``; kept as
    ``ladder.for_length=True,memory_size=N.json``), and for a model that searches its memory
    (:data:`EXACT_SEARCH`) searching it exhaustively. A ladder kept with ``memory`` slots on
    every length (``ladder.memory_size=N.json``) serves where every length fits them."""
    run = read_run_config(run_dir)
    search = EXACT_SEARCH if memory and has_setting(run.train.model, "search") else {}
    changed = {"for_length": True, "memory_size": memory, **search} if memory else None
    kept = run_dir / ladder_file(changed)
    within = registry.within_training(run.task)
    if memory and not kept.is_file():
        fixed = run_dir / ladder_file({"memory_size": memory, **search})
        _reuse(fixed, kept, size, within, memory)
    if not kept.is_file() or not _current(json.loads(kept.read_text()), size, within, memory):
        command = [sys.executable, "-m", "ntm", "eval", str(run_dir), "--ladder", "--json"]
        command += [f for key, value in search.items() for f in ("--model-arg", f"{key}={value}")]
        if memory:
            command += ["--model-arg", f"memory_size={memory}", "--memory-for-length"]
        subprocess.run([*command, "--size", str(size)], check=True, capture_output=True)
    rows: list[dict[str, Any]] = json.loads(kept.read_text())
    for row in rows:
        if not row.get("summary"):
            row.update(search)  # how it searched, for _needs
    return rows


def _reuse(
    fixed: Path, kept: Path, size: int, within: list[tuple[str, dict[str, Any]]], memory: int
) -> None:
    """Keep as ``kept`` the ladder ``fixed``, evaluated with ``memory`` slots on every
    setting, where every setting's held-out sequences (as ``ntm eval`` draws them) have
    ``memory`` steps at most: ``--memory-for-length`` would add none, so its rows are those.
    Each row gains the ``memory_size`` it was evaluated with."""
    if not fixed.is_file():
        return
    rows: list[dict[str, Any]] = json.loads(fixed.read_text())
    if not _current(rows, size, within, memory):
        return
    task = read_run_config(kept.parent).task
    settings = [*registry.within_training(task), *registry.ladder(task)]
    for _, changes in [("training distribution", {}), *settings]:
        held_out = task.with_settings(**changes).sample(
            size, torch.Generator().manual_seed(HELD_OUT_SEED)
        )
        if held_out.inputs.shape[0] > memory:
            return
    for row in rows:
        if not row.get("summary"):
            row["memory_size"] = memory
    ckpt.write_text_atomic(kept, json.dumps(rows, indent=2) + "\n")


def _current(
    rows: list[dict[str, Any]], size: int, within: list[tuple[str, dict[str, Any]]], memory: int
) -> bool:
    """Whether a kept ladder's ``rows`` can be used: evaluated on ``size`` sequences a
    setting (the mean's row counts them all), and (with the trained memory) showing the
    settings inside training."""
    sized = all(row["sequences"] == size for row in rows if not row.get("summary"))
    return sized and (bool(memory) or _has_within(rows, within))


def _has_within(rows: list[dict[str, Any]], within: list[tuple[str, dict[str, Any]]]) -> bool:
    """Whether a ladder's ``rows`` show the settings inside training (``within``) that its
    task's ladder shows first: one kept before they were shown is evaluated again."""
    return [r["setting"] for r in rows if r.get("within")] == [label for label, _ in within]


def has_setting(model: str, name: str) -> bool:
    """Whether a registered model has the setting ``name`` (``memory_size``: a memory of
    slots)."""
    return any(key == name for key, _, _ in registry.settings_of(registry.model_class(model)))


def cell_folder(out: Path, task: str, budget: int, label: str) -> Path:
    """The runs of one cell under ``out``: its sweep in ``rates``, its other seeds in
    ``seeds``."""
    return out / f"{task}-{budget}" / label


def compare_one(task: str, label: str, args: argparse.Namespace, seeds: int) -> dict[str, Any]:
    """Steps 1 to 4 for one task and model, with ``seeds`` seeds; its entry of the record."""
    settings, count, reference = matched(label, task)
    entry: dict[str, Any] = {"task": task, "model": label, "settings": settings,
                             "parameters": count, "ntm_parameters": reference}  # fmt: skip
    if abs(count - reference) / reference > TOLERANCE:
        entry["skipped"] = f"{count:,} parameters, the NTM {reference:,}: more than 10% apart"
        return entry
    model = MODELS[label][0]
    budget = args.budget[task]
    entry["budget"], entry["task_settings"] = budget, task_settings(task)
    short = max(1, round(budget * args.sweep_share))
    entry["sweep_sequences"] = short
    folder = cell_folder(args.out, task, budget, label)
    # A cosine schedule's length is its recipe's: it decays to its end, the cap, and a stop
    # on a plateau would cut its decay short (at a high rate, where a plateau says little).
    schedule = resolve_config({"model": model, "task": task}, {}, settings).train.schedule
    patience = 0 if schedule == "cosine" else args.patience
    entry["schedule"] = schedule
    flags = _flags(task, model, settings, short, patience, budget)
    sweep(flags, folder / "rates", "1", args.rates.split(","), SWEPT.get(label))  # settings, lr
    axes = SWEPT.get(label, {})
    rates = swept(folder / "rates", list(axes))
    chosen = chosen_run(rates)
    rate, chose = str(chosen["lr"]), chosen.get("chose", {})
    ceiling = max(budget, args.ceiling.get(task, budget))
    first = extend(train_on(chosen, budget, patience), budget, ceiling, patience)
    if seeds > 1:
        flags = _flags(task, model, settings, budget, patience, budget)
        fixed = {key: [value] for key, value in chose.items()}
        sweep(flags, folder / "seeds", f"2-{seeds}", [rate], fixed)
    others = results(folder / "seeds", list(axes))
    runs = [first, *(extend(run, budget, ceiling, patience) for run in others)]
    kept_fields = ("lr", "chose", "solved", "sequences_to_target", "final_eval_cost", "ended")
    entry["rates"] = [{k: r.get(k) for k in kept_fields if k in r} for r in rates]
    entry["lr"] = rate
    if chose:
        entry["chose"] = chose  # the swept settings the chosen run has, beside its rate
    entry["runs"] = []
    for run in sorted(runs, key=lambda r: r["seed"]):
        run_dir = Path(run["run_dir"])
        fields = ("seed", "solved", "sequences_to_target", "minutes_to_target", "sequences")
        kept = {k: run[k] for k in (*fields, "final_eval_cost")}
        # Why it ended: target, converged, floor, or budget (its cap).
        kept["ended"] = run.get("ended")
        for key in ("learning", "ceiling"):  # where it reached the cap on a plateau schedule
            if key in run:
                kept[key] = run[key]
        kept["engine"] = run.get("engine")  # what it trained on, for its minutes
        kept["ladder"] = ladder(run_dir, args.size)
        entry["ladder_memory"] = args.ladder_memory
        if args.ladder_memory and has_setting(model, "memory_size"):
            kept["ladder_memory"] = ladder(run_dir, args.size, args.ladder_memory)
        kept["minutes"] = ckpt.read_metrics(run_dir)[-1]["seconds"] / 60
        entry["runs"].append(kept)
    keep_best_only(folder, {Path(run["run_dir"]).resolve() for run in runs})
    return entry


def render(record: dict[str, Any], folder: Path) -> str:
    """The text of ``docs/comparison.md`` from ``record``, and its plots into ``folder``."""
    out = [_template("comparison.md", {**record, **_how(record)}), ""]
    reproduced = _reproduced()
    if CAP_PROBE.is_dir() and record["budgets"].get("parity_check", 0) > EARLY:
        values = {"cap": record["budgets"]["parity_check"], **_cap_probe(CAP_PROBE)}
        out += [_template("comparison/cap-probe.md", values), ""]
    out += _at_a_glance(record)
    for task in record["tasks"]:
        entries = [e for e in record["entries"] if e["task"] == task]
        given = ", ".join(f"{k} {v}" for k, v in record["task_settings"][task].items())
        values = {"task": task, "task_settings": given, "budget": record["budgets"][task]}
        ceiling = record.get("ceilings", {}).get(task)
        values["ceiling"] = (
            f", {ceiling:,} for a run on a plateau schedule still learning there" if ceiling else ""
        )
        out += [_template("comparison/task.md", values), ""]
        if _scored_by_tokens(entries):
            baseline = record.get("baselines", {}).get(task)
            out += [*_token_table(entries), "", *_token_findings(entries, baseline)]
            out += _answers(entries)
            picture = _plot(task, entries, folder, "token_accuracy", "tokens right")
            caption = (
                "share of tokens right at lengths inside training and at the test lengths"
                if _has_inside(entries)
                else "share of tokens right along the ladder"
            )
        else:
            out += [*_task_table(entries), "", *_findings(entries)]
            out += _against_reproduced(entries, reproduced)
            picture = _plot(task, entries, folder, "all_right", "sequences entirely right")
            caption = "share of sequences right along the ladder"
        if picture is not None:
            out += [f"![{task}: {caption}]({picture})", ""]
        if task == "mqar" and PROBE.is_file():
            probed = _probe(PROBE)
            out += [_template("comparison/mqar-probe.md", probed), ""]
            if probed["compared"]:
                out += [_template("comparison/mqar-probe-compared.md", probed), ""]
        skipped = [e for e in entries if "skipped" in e]
        out += [f"- {e['model']}: not trained ({e['skipped']})." for e in skipped]
        out += [""] if skipped else []
    out += _not_measured(record, reproduced)
    return "\n".join(out).rstrip() + "\n"


#: The test lengths at which a model below its task's best constant answer is probed.
PROBED = [41, 203, 500]


def explain(record: dict[str, Any], out: Path) -> bool:
    """Tally what seed 1 of each model below its task's best constant answer (the record's
    ``baselines``) answers at the lengths :data:`PROBED` (benchmarks/answer_probe.py, on
    the ladder's held-out sequences), into its run's ``answers``, where it has none and its
    run folder under ``out`` is there. Whether any entry gained one."""
    changed = False
    for entry in record["entries"]:
        baseline = record.get("baselines", {}).get(entry["task"])
        runs = entry.get("runs")
        if not runs or baseline is None or "answers" in runs[0] or runs[0]["seed"] != 1:
            continue
        if not _below(_accuracy(runs, "ladder", LADDER_MEAN), baseline):
            continue
        folder = cell_folder(out, entry["task"], entry["budget"], entry["model"]) / "rates"
        run_dir = folder / setting_folder([*entry.get("chose", {}).items(), ("lr", entry["lr"])])
        if not (run_dir / "seed-1").is_dir():
            continue
        try:
            runs[0]["answers"] = probe(run_dir / "seed-1", PROBED, record["size"])["lengths"]
        except (ValueError, OSError) as error:  # a finding is no reason to stop the runs
            print(f"{entry['task']} / {entry['model']}: not probed ({error})", file=sys.stderr)
            continue
        changed = True
    return changed


def _answers(entries: list[dict[str, Any]]) -> list[str]:
    """What the task's models below its best constant answer say (:func:`explain`), a
    finding each, or []."""
    told = [e for e in entries if e.get("runs") and "answers" in e["runs"][0]]
    if not told:
        return []
    probed = told[0]["runs"][0]["answers"]
    lengths = ", ".join(str(row["length"]) for row in probed)
    size = probed[0]["sequences"]
    head = (f"- What the models below the best constant answer say beyond training (seed 1, "
            f"{size} held-out sequences at each of the lengths {lengths}, "
            "`benchmarks/answer_probe.py`; in brackets, each symbol's share of the right "
            "answers):")  # fmt: skip
    each = (sentence(_name(e), {"lengths": e["runs"][0]["answers"]}) for e in told)
    return [head, *(f"  - {line}." for line in each), ""]


#: What benchmarks/mqar_probe.py found in the NTM's and the DNC's MQAR runs (its record).
PROBE = ROOT / "docs" / "comparison" / "mqar-probe.json"


def _rate(lr: float) -> str:
    """A learning rate as the sweep's folders and the tables write it: 1e-2, 3e-4."""
    return f"{lr:.0e}".replace("e-0", "e-")


def _probe(path: Path) -> dict[str, Any]:
    """The values of the MQAR probe's paragraph: its NTM runs (``first``, ``second``) and
    DNC runs (``dnc``, and ``delayed`` with the answer one step after its query), in the
    record's order, and where the record has them, the comparison's NTM and DNC
    (``compared_ntm``, ``compared_dnc``: the runs under ``runs-kept/compare``; ``compared``
    says whether there are both)."""
    record = json.loads(path.read_text())
    runs = record["runs"]
    compared = [run for run in runs if Path(run["run"]).parts[:2] == ("runs-kept", "compare")]
    ntm_runs = [run for run in runs if run["model"] == "ntm" and run not in compared]
    dnc_runs = [run for run in runs if run["model"] == "dnc" and run not in compared]
    named = {
        "first": ntm_runs[0],
        "second": ntm_runs[1],
        "dnc": next(run for run in dnc_runs if not run.get("answer_delay")),
        "delayed": next(run for run in dnc_runs if run.get("answer_delay")),
    }
    for model in ("ntm", "dnc"):
        found = [run for run in compared if run["model"] == model]
        if found:
            named[f"compared_{model}"] = found[0]
    first = named["first"]
    values: dict[str, Any] = {
        "command": record["command"],
        "size": record.get("size", 256),
        "pairs": first["pairs"],
        "tokens": 2 * first["pairs"],
        "uniform": first["uniform_over_values"],
    }
    values["compared"] = "compared_ntm" in named and "compared_dnc" in named
    for name, run in named.items():
        values[f"{name}_lr"] = _rate(run["train"]["lr"])
        values |= {
            f"{name}_sequences": run["sequences"],
            f"{name}_wrong": run["eval_wrong_tokens"],
            f"{name}_on_values": run["probability_on_pair_values"],
            f"{name}_on_right": run["probability_on_right_value"],
            f"{name}_slots": run["slots_written_during_pairs"],
            f"{name}_read": run["read_weight_on_the_value_slot"],
            f"{name}_read_key": run.get("read_weight_on_the_key_slot", math.nan),
        }
    return values


#: parity_check's LSTM and RoPE Transformer trained to 1,000,000 sequences, the runs the
#: Chomsky tasks' cap comes from; and the cap they are read at for comparison.
CAP_PROBE = ROOT / "runs-kept" / "cap-probe"
EARLY = 100_000


def _cap_probe(folder: Path) -> dict[str, Any]:
    """The values of the cap's paragraph from the runs in ``folder``: for the LSTM and the
    RoPE Transformer (``lstm``, ``rope``), the rate, the held-out cost at :data:`EARLY`
    sequences, where and why the run ended, and the share of tokens right at the training
    lengths and beyond them (the run's ``ntm eval --ladder``)."""
    values: dict[str, Any] = {"early": EARLY}
    for name, label, run in (
        ("lstm", "lstm", "parity_check-lstm"),
        ("rope", "transformer", "parity_check-transformer-rope"),
    ):
        run_dir = folder / run
        rows = ckpt.read_metrics(run_dir)
        early = [row for row in rows if row["sequences"] <= EARLY][-1]
        ended = ckpt.read_ended(run_dir) or {}
        ladder_rows = json.loads((run_dir / ladder_file(None)).read_text())
        config = json.loads((run_dir / "config.json").read_text())
        rate = _rate(config["train"]["lr"])
        settings = matched(label, "parity_check")[0]
        settings |= {key: config["model"][key] for key in SWEPT.get(label, {})}
        flags = [f"--model {MODELS[label][0]}"]
        flags += [f"--model-arg {k}={v}" for k, v in settings.items()]
        end = ENDED.get(ended.get("reason", ""), "unknown")
        last = int(rows[-1]["sequences"])
        values |= {
            f"{name}_flags": " ".join([*flags, f"--lr {rate}"]),
            f"{name}_early_at": int(early["sequences"]),
            f"{name}_early_cost": early["eval_cost"],
            f"{name}_sequences": last,
            f"{name}_ended": end,
            f"{name}_outcome": f"met the target at {last:,} sequences"
            if end == "target"
            else f"ended at {last:,} sequences ({end})",
            f"{name}_train": ladder_rows[0]["token_accuracy"],
            f"{name}_beyond": next(r for r in ladder_rows if r.get("summary"))["token_accuracy"],
        }
    return values


def _how(record: dict[str, Any]) -> dict[str, str]:
    """The phrases of the document's opening that depend on how its record was measured."""
    patience = record.get("patience")
    training = (
        "with its own family's recipe (the NTM's and the DNC's; AdamW, weight decay 0.1, "
        "warm-up and cosine decay for the Transformers, Mamba and the xLSTM), each run until "
        f"{patience} evaluations pass without a new best held-out cost (converged), it meets "
        "the target, or it reaches the task's cap of sequences (the tables say which ended "
        "each run); a run on a cosine schedule (the Transformers, Mamba, the xLSTM) decays "
        'to the cap, its schedule\'s end, unless it meets the target first ("cosine end"): '
        "a stop on a plateau would cut its decay short"
        + (
            "; a run on a plateau schedule still learning at the cap (its held-out cost below "
            "half its first) trains on until it converges or meets the target, up to the "
            'task\'s ceiling where it has one ("ceiling")'
            if record.get("ceilings")
            else ""
        )
        if patience
        else "with Adam, each run within the task's budget of sequences"
    )
    slots = record.get("ladder_memory")
    memory = (
        f"; the NTM, the DNC and SAM also with a memory of {slots:,} slots instead of the 128 "
        "they trained with, more on a length whose sequences have more steps (`ntm eval "
        "--model-arg memory_size=N --memory-for-length`; the memory is no learned parameter, "
        "as the paper's Tape-RNN gets a tape as long as its input), SAM searching it "
        "exhaustively as it did in training (`--model-arg search=exact`; from 1,024 slots "
        "its default is an approximate index, which answers some reads with other slots)"
        if slots
        else ""
    )
    share = record.get("sweep_share", 1.0)
    sweep = (
        f", each rate trained for the first {share:.0%} of the cap on the schedule of a whole "
        "run, the chosen rate's run then trained on"
        if share < 1
        else ""
    )
    progress = _progress(record) + _capped(record)
    return {"training": training, "memory": memory, "sweep": sweep, "progress": progress}


def _progress(record: dict[str, Any]) -> str:
    """A sentence on how far the command has come: cells with one seed, with all of them."""
    models = record.get("models")
    if not models:
        return ""
    total = len(models) * len(record["tasks"])
    counts = [len(e.get("runs", [])) for e in record["entries"] if "skipped" not in e]
    first = sum(count >= 1 for count in counts)
    every = sum(count >= record["seeds"] for count in counts)
    if every == total:
        return ""
    hours = _remaining_hours(record)
    rest = (
        f" At the seconds per sequence each model took so far, the runs still to train would "
        f"take about {hours:.1f} hours of one core ({hours / 2:.1f} with `--jobs 2`), the "
        "ladders' evaluations aside."
        if hours  # None before a run has trained, 0 when only skipped cells are left
        else ""
    )
    return (
        f" So far {first} of the {total} cells ({len(models)} models on {len(record['tasks'])} "
        f"tasks) have their first seed and {every} all {record['seeds']}; the command goes on "
        f"where it stopped, and a task below without a table is still to come.{rest}"
    )


def _remaining_hours(record: dict[str, Any]) -> float | None:
    """Hours of one core that the runs still missing would train for: each model at the
    seconds per sequence its runs took so far (the median; of all runs for a model not yet
    trained), each run for the share of its cap that the model's runs used (the median: a
    run on a plateau may stop before its cap; the whole cap for a model not yet trained),
    a cell not begun also for its sweep's other runs (:func:`_not_measured`'s count), and a
    run still to train on to its task's ceiling for the whole ceiling (at most what it will
    take). A cell that is under way counts as not begun. None before any run has trained."""
    per_sequence: dict[str, list[float]] = {}
    used: dict[str, list[float]] = {}
    for e in record["entries"]:
        for r in e.get("runs", []):
            per_sequence.setdefault(e["model"], []).append(r["minutes"] * 60 / r["sequences"])
            used.setdefault(e["model"], []).append(r["sequences"] / e["budget"])
    if not per_sequence:
        return None
    every = [value for values in per_sequence.values() for value in values]
    have = {(e["task"], e["model"]): e for e in record["entries"]}
    seconds = 0.0
    for task in record["tasks"]:
        for label in record["models"]:
            entry = have.get((task, label), {})
            done = len(entry.get("runs", []))
            if "skipped" in entry or done >= record["seeds"]:
                continue
            runs = (record["seeds"] - done) * statistics.median(used.get(label, [1.0]))
            if not done:  # the sweep's runs but the chosen one, which goes on as seed 1
                short = len(record["rates"].split(","))
                short *= math.prod(map(len, SWEPT.get(label, {}).values()))
                runs += (short - 1) * record.get("sweep_share", 1)
            rate = statistics.median(per_sequence.get(label, every))
            seconds += rate * record["budgets"][task] * runs
    # A run still to train on to its ceiling (from its start, a finished cell's run): at most
    # the whole ceiling.
    for e in record["entries"]:
        ceiling = record.get("ceilings", {}).get(e["task"], 0)
        short = 0 if _cosine(e) else sum(_short(run, ceiling) for run in e.get("runs", []))
        if short:
            seconds += statistics.median(per_sequence[e["model"]]) * ceiling * short
    return seconds / 3600


def _capped(record: dict[str, Any]) -> str:
    """A sentence on the runs that stopped at their cap, per model, where any did."""
    runs: dict[str, list[bool]] = {}
    for entry in record["entries"]:
        if _cosine(entry):
            continue  # its cap is its schedule's end
        for run in entry.get("runs", []):
            runs.setdefault(entry["model"], []).append(run.get("ended") == "budget")
    capped = sum(sum(ended) for ended in runs.values())
    if not capped:
        return ""
    total = sum(len(ended) for ended in runs.values())
    each = ", ".join(
        f"{model} {sum(ended)} of {len(ended)}" for model, ended in runs.items() if any(ended)
    )
    return (
        f" {capped} of the {total} runs on a plateau schedule measured so far stopped at "
        f"their cap{' or ceiling' if record.get('ceilings') else ''} before they converged or "
        f"met the target ({each}): a larger cap could move their rows."
    )


def _template(name: str, values: dict[str, Any]) -> str:
    """The template ``docs/templates/NAME`` filled with ``values``, without its last newline."""
    return documents.fill((TEMPLATES / name).read_text(), values).rstrip("\n")


#: The paper's tasks a full comparison would add, in the order they are costed.
MORE_TASKS = ("associative_recall", "repeat_copy", "priority_sort")


def _reproduced() -> dict[str, float]:
    """The NTM's median sequences to its target per task, from the reproduce runs of
    ``docs/results/reproduce.json`` (solved runs only)."""
    path = ROOT / "docs" / "results" / "reproduce.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    tasks = {row["task"] for row in rows}
    return {
        task: statistics.median(r["sequences"] for r in rows if r["task"] == task and r["solved"])
        for task in tasks
        if any(r["task"] == task and r["solved"] for r in rows)
    }


def _not_measured(record: dict[str, Any], needed: dict[str, float]) -> list[str]:
    """What the comparison leaves out, and what it would cost: each paper task not compared,
    or compared on a budget below what the NTM needs (``needed``: its median sequences to
    the target), at the seconds per sequence each model took here."""
    trained = [e for e in record["entries"] if e.get("runs")]
    per_sequence: dict[str, list[float]] = {}
    for e in trained:
        for r in e["runs"]:
            per_sequence.setdefault(e["model"], []).append(r["minutes"] * 60 / r["sequences"])
    if not per_sequence:
        return []  # no cost to say before a model has trained

    def runs(label: str) -> float:
        """Runs' worth of sequences per task: the sweep's runs not chosen train for their
        share of the cap (a Transformer's over both encodings), the chosen one and the
        seeds to it."""
        short = len(record["rates"].split(",")) * math.prod(map(len, SWEPT.get(label, {}).values()))
        return (short - 1) * record.get("sweep_share", 1) + record["seeds"]

    lines = []
    for task in MORE_TASKS:
        budget = needed.get(task)
        if budget is None or record["budgets"].get(task, 0) >= budget:
            continue
        hours = sum(statistics.median(v) * budget * runs(m) for m, v in per_sequence.items())
        hours /= 3600
        compared = (
            f"compared at {record['budgets'][task]:,} sequences per run"
            if task in record["tasks"]
            else "not compared"
        )
        values = {"task": task, "compared": compared, "needed": budget, "hours": hours}
        count = len(per_sequence)
        models = "model" if count == 1 else f"{count} models"
        values |= {"models": models, "seeds": record["seeds"]}
        lines.append(_template("comparison/not-measured-task.md", values))
    if not lines:
        return []
    return [_template("comparison/not-measured.md", {}), "", *lines, ""]


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _task_table(entries: list[dict[str, Any]]) -> list[str]:
    trained = [e for e in entries if e.get("runs")]
    if not trained:
        return ["Not measured yet."]
    settings = list(
        dict.fromkeys(row["setting"] for e in trained for row in e["runs"][0]["ladder"])
    )
    lines = [
        "| model | parameters | lr | solved | ended | sequences to target | minutes | "
        + " | ".join(f"{s}: errors, right" for s in settings)
        + " |",
        "|---|---:|---:|:---:|:---:|---:|---:|" + "---:|" * len(settings),
    ]
    for e in trained:
        runs = e["runs"]
        solved = sum(r["solved"] for r in runs)
        to_target = _median([r["sequences_to_target"] for r in runs if r["solved"]])
        cells = [
            _name(e),
            f"{e['parameters']:,}",
            e["lr"],
            f"{solved}/{len(runs)}",
            _ended(e),
            "–" if math.isnan(to_target) else f"{to_target:,.0f}",
            f"{_median([r['minutes'] for r in runs]):.1f}",
        ]
        lines.append("| " + " | ".join(cells + _ladder_cells(runs, "ladder", settings)) + " |")
        if all(r.get("ladder_memory") for r in runs):
            slots = f"{_name(e)}, {_slots(e)} slots"
            same = ["", "", "", "the same runs", "", ""]
            cells = _ladder_cells(runs, "ladder_memory", settings)
            lines.append("| " + " | ".join([slots, *same, *cells]) + " |")
    return lines


def _name(entry: dict[str, Any]) -> str:
    """An entry's model as the tables show it: its label, with the settings its sweep chose
    beside the rate (``transformer (alibi)``)."""
    chose = entry.get("chose")
    return entry["model"] + (f" ({', '.join(chose.values())})" if chose else "")


def _scored_by_tokens(entries: list[dict[str, Any]]) -> bool:
    """Whether the entries' ladders end with the mean over the test settings: a token task's
    (its score is the share of tokens right there, as the Chomsky hierarchy's paper's)."""
    return any(
        row["setting"] == LADDER_MEAN for e in entries for r in e.get("runs", [])
        for row in r["ladder"]
    )  # fmt: skip


def _accuracy(runs: list[dict[str, Any]], key: str, setting: str) -> float:
    """The median over ``runs`` of the share of tokens right at ``setting`` of ladder ``key``."""
    return _median([row["token_accuracy"] for r in runs for row in r.get(key, [])
                    if row["setting"] == setting])  # fmt: skip


def _share_over_seeds(runs: list[dict[str, Any]], key: str, setting: str) -> str:
    """The median over ``runs`` of the share of tokens right at ``setting`` of ladder
    ``key``, with the lowest and the highest run's beside it where they differ."""
    median = _percent(_accuracy(runs, key, setting))
    shares = [_accuracy([r], key, setting) for r in runs]
    shares = [s for s in shares if math.isfinite(s)]
    low, high = (_percent(min(shares)), _percent(max(shares))) if shares else ("", "")
    return median if low == high else f"{median} ({low}–{high})"


def _token_table(entries: list[dict[str, Any]]) -> list[str]:
    """A token task's table: tokens right on the training distribution, and the score, the
    mean share of tokens right over the test settings; for a model with a memory, also with
    the record's larger memory."""
    trained = [e for e in entries if e.get("runs")]
    if not trained:
        return ["Not measured yet."]
    lines = [
        "| model | parameters | lr | ended | sequences | minutes | tokens right, training "
        "lengths | score: tokens right beyond them | the same, more slots |",
        "|---|---:|---:|:---:|---:|---:|---:|---:|---:|",
    ]
    for e in trained:
        runs = e["runs"]
        more = (
            f"{_share_over_seeds(runs, 'ladder_memory', LADDER_MEAN)} ({_slots(e)} slots)"
            if all(r.get("ladder_memory") for r in runs)
            else "–"
        )
        cells = [
            _name(e),
            f"{e['parameters']:,}",
            e["lr"],
            _ended(e),
            f"{_median([r['sequences'] for r in runs]):,.0f}",
            f"{_median([r['minutes'] for r in runs]):.1f}",
            _share_over_seeds(runs, "ladder", TRAINING),
            _share_over_seeds(runs, "ladder", LADDER_MEAN),
            more,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({len(e["runs"]) for e in trained})
    plural = "" if seeds == [1] else "s"
    spread = "" if seeds == [1] else ", the lowest and the highest seed's share in brackets"
    lines += ["", f"Medians over {' or '.join(map(str, seeds))} seed{plural}{spread}."]
    return lines


def _at_a_glance(record: dict[str, Any]) -> list[str]:
    """The Chomsky hierarchy's tasks measured so far against the models, as the paper's
    Table 2 sets them out: each cell the score beyond the training lengths (median over the
    seeds), a memory model's also with more slots; the tasks by level, in the paper's
    order. Nothing before a task of the hierarchy has a trained entry."""
    trained = [e for e in record["entries"] if e.get("runs") and e["task"] in CHOMSKY_TASKS]
    if not trained:
        return []
    measured = [e["model"] for e in trained]
    models = [m for m in dict.fromkeys([*record.get("models", []), *measured]) if m in measured]
    slots = f"{trained[0].get('ladder_memory', 0):,}"
    lines = [
        "## The Chomsky hierarchy at a glance",
        "",
        "The score beyond the training lengths (the share of tokens right, averaged over the "
        "test lengths 41 to 500), the median over the seeds measured; for a model with a "
        f"memory, with the 128 slots it trained with / with {slots} slots. A cell in bold: the "
        "model met the target at the training lengths on every seed. Chance: a uniform guess "
        "among the task's answer symbols. One symbol: the best constant answer, the one "
        "symbol that given at every token gets the most tokens right (scored as the models "
        "are, on the same held-out sequences); a score in italics is below it. "
        "The sections below give each task's table; a task without a row is still to come.",
        "",
        "| level | task | chance | one symbol | " + " | ".join(models) + " |",
        "|---|---|---:|---:|" + "---:|" * len(models),
    ]
    for level, tasks in LEVELS.items():
        for task in tasks:
            entries = {e["model"]: e for e in trained if e["task"] == task}
            if not entries:
                continue
            chance = _percent(1 / _answer_symbols(next(iter(entries.values()))))
            baseline = record.get("baselines", {}).get(task)
            cells = [level, task, chance, _constant(baseline)]
            for model in models:
                entry = entries.get(model)
                cells.append("–" if entry is None else _glance_cell(entry, baseline))
            lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _below(score: float, baseline: dict[str, Any]) -> bool:
    """Whether a score is below a task's best constant answer (:func:`baselines`), compared
    as printed: a score shown as 50% is not below 50%."""
    return round(100 * score) < round(100 * baseline["share"])


def _constant(baseline: dict[str, Any] | None) -> str:
    """A task's best constant answer as a cell: its share, and the symbol (``"50% (1)"``)."""
    return "–" if baseline is None else f"{_percent(baseline['share'])} ({baseline['symbol']})"


def _answer_symbols(entry: dict[str, Any]) -> int:
    """How many symbols an entry's task answers with (a token task's output size)."""
    return int(ntm.make_task(entry["task"], **entry.get("task_settings", {})).output_size)


def _glance_cell(entry: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """One model's cell of :func:`_at_a_glance`: its score beyond training (with more slots
    after a slash), the settings its sweep chose, in bold where it met the target; the
    score in italics where it is below the task's best constant answer (as printed)."""
    runs = entry["runs"]
    score = _accuracy(runs, "ladder", LADDER_MEAN)
    text = _percent(score)
    if baseline and _below(score, baseline):
        text = f"*{text}*"
    if all(r.get("ladder_memory") for r in runs):
        text += f" / {_percent(_accuracy(runs, 'ladder_memory', LADDER_MEAN))}"
    if all(r.get("solved") for r in runs):
        text = f"**{text}**"
    chose = entry.get("chose")
    return text + (f" ({', '.join(chose.values())})" if chose else "")


def _token_findings(
    entries: list[dict[str, Any]], baseline: dict[str, Any] | None = None
) -> list[str]:
    """What a token task's table says: the best score beyond the training lengths, beside
    chance and (where given) the best constant answer (:func:`baselines`)."""
    trained = [e for e in entries if e.get("runs")]
    if not trained:
        return []
    scores = {_name(e): _accuracy(e["runs"], "ladder", LADDER_MEAN) for e in trained}
    best = max(scores, key=lambda model: (scores[model], model))
    rest = ", ".join(f"{m} {_percent(v)}" for m, v in scores.items() if m != best)
    answers = _answer_symbols(trained[0])
    lines = [f"- Best score beyond the training lengths: {best} ({_percent(scores[best])})"
             + (f"; {rest}." if rest else "."),
             f"- Chance: {_percent(1 / answers)} of the tokens right, a uniform guess among "
             f"the task's {answers} answer symbols"
             + (f"; the best constant answer, `{baseline['symbol']}` at every token: "
                f"{_percent(baseline['share'])}." if baseline else ".")]  # fmt: skip
    if baseline:
        below = [f"{m} ({_percent(v)})" for m, v in scores.items() if _below(v, baseline)]
        if below:
            lines.append(f"- Below the best constant answer beyond the training lengths: "
                         f"{', '.join(below)}.")  # fmt: skip
    more = [e for e in trained if any(r.get("ladder_memory") for r in e["runs"])]
    if more:
        each = (f"{_name(e)} {_percent(_accuracy(e['runs'], 'ladder_memory', LADDER_MEAN))}"
                for e in more)  # fmt: skip
        lines.append(f"- With {_slots(more[0])} slots: {', '.join(each)}.")
    fit = [_name(e) for e in trained if all(r.get("solved") for r in e["runs"])]
    short = [e for e in trained if not all(r.get("solved") for r in e["runs"])]
    if short:
        each = (f"{_name(e)} ({_percent(_accuracy(e['runs'], 'ladder', TRAINING))}{_inside(e)})"
                for e in short)  # fmt: skip
        lines.append(
            f"- Met the target at the training lengths: {', '.join(fit) or 'none'}. Did not "
            f"(tokens right there): {', '.join(each)}; their scores beyond them mix not "
            "fitting with not generalising."
        )
    return [*lines, ""]


def _has_inside(entries: list[dict[str, Any]]) -> bool:
    """Whether the entries' ladders show settings inside training (``within`` rows)."""
    return any(row.get("within") for e in entries for r in e.get("runs", []) for row in r["ladder"])


def _inside(entry: dict[str, Any]) -> str:
    """The share of tokens right at the shortest and the longest length inside training that
    the entry's ladder shows (``"; 100% at length 10, 82% at length 40"``), or ""."""
    inside = [row["setting"] for row in entry["runs"][0]["ladder"] if row.get("within")]
    if len(inside) < 2:
        return ""
    first, last = (_percent(_accuracy(entry["runs"], "ladder", s)) for s in (inside[0], inside[-1]))
    return f"; {first} at {inside[0]}, {last} at {inside[-1]}"


#: The ladder's first row: the training distribution.
TRAINING = "training distribution"


def _ladder_cells(runs: list[dict[str, Any]], key: str, settings: list[str]) -> list[str]:
    """Errors and sequences entirely right at each setting of the runs' ladder ``key``."""
    cells = []
    for setting in settings:
        rows = [row for r in runs for row in r[key] if row["setting"] == setting]
        errors = _median([row["bit_errors"] for row in rows])
        right = _median([row["all_right"] for row in rows])
        cells.append(f"{errors:.2f}, {100 * right:.0f}%")
    return cells


#: How the table names why a run ended (its record's ``ended``).
ENDED = {"target": "target", "converged": "converged", "floor": "converged", "budget": "cap"}


def _ended(entry: dict[str, Any]) -> str:
    """Why an entry's runs ended, counted: "converged 2, cap 1" (the floor of the plateau
    schedule counts as converged; a cosine schedule's runs that reach the cap reach their
    schedule's end, "cosine end"); "not recorded" for runs measured before runs recorded
    it."""
    words = {**ENDED, "budget": "cosine end"} if _cosine(entry) else ENDED
    said = [
        "ceiling"
        if r.get("ended") == "budget" and r.get("ceiling")
        else words.get(str(r.get("ended")), "")
        for r in entry["runs"]
    ]
    if not any(said):
        return "not recorded"
    counts = {word: said.count(word) for word in dict.fromkeys(said) if word}
    return ", ".join(f"{word} {n}" for word, n in counts.items())


def _cosine(entry: dict[str, Any]) -> bool:
    """Whether an entry's runs trained on a cosine schedule, to its end unless they met the
    target (no stop on a plateau)."""
    return entry.get("schedule") == "cosine"


def _slots(entry: dict[str, Any]) -> str:
    """The memory of an entry's second ladder, from its record's ladder settings."""
    return f"{entry.get('ladder_memory', 0):,}"


def _percent(share: float) -> str:
    """A share as a percentage: whole percents, tenths below one percent (0.2%, not 0%)."""
    return f"{100 * share:.1f}%" if 0 < share < 0.01 else f"{100 * share:.0f}%"


def _findings(entries: list[dict[str, Any]]) -> list[str]:
    """What the table says, read from it: who met the target, and on each setting of the
    ladder the model with the most sequences entirely right."""
    trained = [e for e in entries if e.get("runs")]
    if not trained:
        return []
    met = [f"{_name(e)} ({sum(r['solved'] for r in e['runs'])}/{len(e['runs'])})"
           for e in trained if any(r["solved"] for r in e["runs"])]  # fmt: skip
    missed = [_name(e) for e in trained if not any(r["solved"] for r in e["runs"])]
    lines = [
        f"- Met the target within the budget: {', '.join(met) or 'none'}"
        + (f"; not: {', '.join(missed)}." if missed else ".")
    ]
    settings = [row["setting"] for row in trained[0]["runs"][0]["ladder"]]
    for setting in settings:
        right = {
            _name(e): _median([row["all_right"] for r in e["runs"] for row in r["ladder"]
                                 if row["setting"] == setting])
            for e in trained
        }  # fmt: skip
        best = max(right, key=lambda model: (right[model], model))
        if not right[best] > 0:
            lines.append(f"- {setting}: no model gets a sequence entirely right.")
            continue
        rest = ", ".join(f"{m} {_percent(v)}" for m, v in right.items() if m != best)
        lines.append(
            f"- {setting}: most sequences entirely right, {best} ({_percent(right[best])})"
            + (f"; {rest}." if rest else ".")
        )
    return [*lines, ""]


def _against_reproduced(entries: list[dict[str, Any]], reproduced: dict[str, float]) -> list[str]:
    """Where the NTM did not meet a task's target here but the bare command's runs did
    (:func:`_reproduced`): a finding that says so, with the rate each trained at and the
    sweep's held-out costs at both, or []."""
    entry = next((e for e in entries if e["model"] == "ntm" and e.get("runs")), None)
    if entry is None or any(r["solved"] for r in entry["runs"]):
        return []
    task = entry["task"]
    if task not in reproduced:
        return []
    recipe = resolve_config({"model": "ntm", "task": task}, {}, {}).train.lr
    swept_at = {float(row["lr"]): row for row in entry.get("rates", [])}
    chosen = swept_at.get(float(entry["lr"]))
    there = swept_at.get(recipe)
    rate = there["lr"] if there else _rate(recipe)
    costs = (
        f" ({chosen['final_eval_cost']:.2f}, against {there['final_eval_cost']:.2f} at {rate})"
        if chosen and there
        else ""
    )
    return [
        f"- The NTM's bare command (`ntm train --task {task}`, at its recipe's rate {rate}) "
        f"met this target in {reproduced[task]:,.0f} sequences (the median of its solved "
        "runs, `docs/results/reproduce.json`); here the sweep chose "
        f"{entry['lr']} on the held-out cost where its share ended{costs}, and at "
        f"{entry['lr']} the NTM's runs ended without meeting it ({_ended(entry)}).",
        "",
    ]


def _plot(
    task: str, entries: list[dict[str, Any]], folder: Path, key: str, label: str
) -> str | None:
    """Each model's median ``key`` (a share) along the ladder, as ``folder/TASK-ladder.png``;
    a model with a memory also with more slots, dashed in its colour, beyond training."""
    trained = [e for e in entries if e.get("runs")]
    if not trained:
        return None
    figure, axes = plt.subplots(figsize=(8.5, 3.8))
    inside = 0
    for e in trained:
        settings = [row["setting"] for row in e["runs"][0]["ladder"]
                    if row["setting"] != LADDER_MEAN]  # fmt: skip
        for ladder_key in ("ladder", "ladder_memory"):
            if ladder_key not in e["runs"][0]:
                continue
            # The more slots' curve starts beyond training: its ladders kept from before the
            # lengths inside training were shown lack them, and are not evaluated again.
            right = [
                _median([row[key] for r in e["runs"] for row in r[ladder_key]
                         if row["setting"] == s and not (ladder_key != "ladder"
                                                         and row.get("within"))])
                for s in settings
            ]  # fmt: skip
            if ladder_key == "ladder":
                (line,) = axes.plot(range(len(settings)), right, marker="o", label=_name(e))
            else:
                more = f"{_name(e)}, {_slots(e)} slots"
                axes.plot(range(len(settings)), right, marker=".", linestyle="--",
                          color=line.get_color(), label=more)  # fmt: skip
        ticks = range(0, len(settings), max(1, len(settings) // 8))
        axes.set_xticks(list(ticks), [settings[i] for i in ticks], rotation=20, ha="right")
        inside = sum(1 for row in e["runs"][0]["ladder"] if row.get("within"))
    if inside:  # the training distribution and lengths inside it, then those beyond
        axes.axvline(inside + 0.5, color="grey", linestyle=":", linewidth=1)
    axes.set_ylabel(label)
    axes.set_ylim(-0.03, 1.03)
    where = "training, lengths inside it" if inside else "the training distribution"
    axes.set_title(f"{task}: {where}, then beyond", fontsize=10)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}-ladder.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"comparison/{path.name}"


#: The settings of a record that its entries were measured under: an entry of a record with
#: other values is measured again.
MEASURED_UNDER = ("size", "rates", "sweep_share", "patience", "ladder_memory")


def _finished(path: Path, record: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The entries of the record at ``path`` measured under the same rates, held-out size,
    patience and ladder memory as ``record`` and their task's budget, with the seeds they
    have so far: a later run of the command keeps them even where their run folders are gone
    (another machine), and adds seeds to those that have fewer than it wants."""
    if not path.is_file():
        return {}
    kept = json.loads(path.read_text())
    if any(kept.get(key) != record[key] for key in MEASURED_UNDER):
        return {}
    return {
        (e["task"], e["model"]): e
        for e in kept["entries"]
        if e.get("budget") == record["budgets"].get(e["task"])
        and e.get("task_settings") == record["task_settings"].get(e["task"])
    }


def _needs(entry: dict[str, Any] | None, seeds: int, ceiling: int = 0) -> bool:
    """Whether an entry must be measured (again): to have ``seeds`` seeds, or a run of it
    on a plateau schedule that stopped at the cap to be trained on to ``ceiling``
    (:func:`extend`), or because its
    ladders with the trained memory lack the lengths inside training that its task's ladder
    now shows first, or its ladders with more slots give no slots a length (they were kept
    before a length whose sequences need more got them) or searched a memory approximately
    (:data:`EXACT_SEARCH`): its runs are kept, so only those ladders are evaluated again, or
    taken as they are where every length fits."""
    if entry is None:
        return True
    if "skipped" in entry:
        return False
    within = registry.within_training(ntm.make_task(entry["task"], **entry["task_settings"]))
    runs = entry.get("runs", [])
    current = all(_has_within(run["ladder"], within) for run in runs)
    more = [row for run in runs for row in run.get("ladder_memory") or [] if not row.get("summary")]
    # A ladder with more slots, kept before a length needing still more got them.
    sized = all("memory_size" in row for row in more)
    # A ladder with more slots, kept before it searched a searching model's memory exactly.
    exact = not has_setting(MODELS[entry["model"]][0], "search") or all(
        all(row.get(key) == value for key, value in EXACT_SEARCH.items()) for row in more
    )
    short = not _cosine(entry) and any(_short(run, ceiling) for run in runs)
    return len(runs) < seeds or short or not (current and sized and exact)


def _short(run: dict[str, Any], ceiling: int) -> bool:
    """Whether a run on a plateau schedule stopped at the cap and is not yet judged as
    learning or not, or is learning and was given a ``ceiling`` it has not reached."""
    return run.get("ended") == "budget" and run.get("learning", True) and run["sequences"] < ceiling


def queue(
    cells: list[tuple[str, str]],
    done: dict[tuple[str, str], dict[str, Any]],
    seeds: int,
    ceilings: dict[str, int],
) -> list[tuple[str, str]]:
    """The cells (task, model) to measure with ``seeds`` seeds (:func:`_needs`), in their
    order, but those with no entry yet first: a cell's first seed comes before another
    cell's runs trained on to a ceiling or ladders evaluated again."""
    waiting = [cell for cell in cells if _needs(done.get(cell), seeds, ceilings[cell[0]])]
    return sorted(waiting, key=lambda cell: cell in done)


def budgets(text: str, tasks: list[str], otherwise: dict[str, int] | None = None) -> dict[str, int]:
    """``--budget``: ``N`` for every task, with ``TASK=N`` for the tasks that differ
    (``30000,mqar=100000``); a task without either takes its number in ``otherwise`` where
    that is given. A ValueError names the part that is wrong."""
    default: int | None = None
    given: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if text or otherwise is None):
        task, _, value = part.rpartition("=")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{part!r}: expected N or TASK=N with N an integer >= 1")
        if task:
            given[task] = int(value)
        else:
            default = int(value)
    unknown = sorted(set(given) - set(tasks))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not among --tasks ({', '.join(tasks)})")
    if default is None and otherwise is not None:
        return {t: given.get(t, otherwise[t]) for t in tasks}
    missing = [t for t in tasks if t not in given and default is None]
    if missing:
        raise ValueError(f"no budget for {', '.join(missing)}: give N for every task")
    return {t: given.get(t, default or 0) for t in tasks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="copy,associative_recall,mqar")
    parser.add_argument("--models", default=",".join(ORDER))
    parser.add_argument("--rates", default="3e-4,1e-3,3e-3,1e-2", help="the sweep's rates")
    parser.add_argument(
        "--patience",
        type=int,
        default=10,
        help="a run has converged after this many evaluations without a new best held-out "
        "cost (ntm train --stop-patience; default: %(default)s)",
    )
    parser.add_argument(
        "--ladder-memory",
        type=int,
        default=1024,
        help="slots of the NTM's and the DNC's memory on a second ladder (0: none; default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--sweep-share",
        type=float,
        default=0.2,
        help="the share of a run's cap that each rate of the sweep trains for; the chosen "
        "rate's run then trains on to the cap (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell")
    parser.add_argument(
        "--budget",
        default="400000,mqar=1000000",
        help="the cap of sequences per run, which convergence should end it before: N, and "
        "TASK=N where a task differs (default: %(default)s)",
    )
    parser.add_argument(
        "--ceiling",
        default="",
        help="the most sequences a run on a plateau schedule trains where it is still learning "
        "at the cap (its held-out cost below half its first): N, and TASK=N where a task "
        "differs (default: the cap, so none trains on)",
    )
    parser.add_argument("--size", type=int, default=500, help="held-out sequences per setting")
    parser.add_argument(
        "--jobs", type=int, default=1, help="cells trained at a time, one process each"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "runs-kept" / "compare",
        help="the runs' folder, committed: a finished cell keeps its best models, an "
        "unfinished one its checkpoints, so the command resumes on another machine",
    )
    parser.add_argument("--record", type=Path, default=ROOT / "docs/comparison/records.json")
    parser.add_argument(
        "--tidy",
        action="store_true",
        help="train nothing: keep each unfinished run's latest checkpoint and best model only, "
        "add to the record what it lacks (best constant answers, the answers of the models "
        "below them) and write the document again from it (what a comparison that was killed "
        "rather than interrupted leaves to do before a commit)",
    )
    args = parser.parse_args()
    if args.tidy:
        return tidy(args.out, args.record)
    tasks, labels = args.tasks.split(","), args.models.split(",")
    for label in labels:
        if label not in MODELS:
            parser.error(f"--models: {label!r} is not one of {', '.join(MODELS)}")
    for task in tasks:
        try:
            registry.task_class(task)
        except registry.RegistryError as error:
            parser.error(f"--tasks: {error}")
    if not 0 < args.sweep_share <= 1:
        parser.error(f"--sweep-share: {args.sweep_share} is not in (0, 1]")
    if args.jobs < 1:
        parser.error(f"--jobs: {args.jobs} is not >= 1")
    try:
        args.budget = budgets(args.budget, tasks)
    except ValueError as error:
        parser.error(f"--budget: {error}")
    try:
        args.ceiling = budgets(args.ceiling, tasks, args.budget)
    except ValueError as error:
        parser.error(f"--ceiling: {error}")
    for task, ceiling in args.ceiling.items():
        if ceiling < args.budget[task]:
            parser.error(f"--ceiling: {task}={ceiling} is below its cap, {args.budget[task]}")
    torch.set_num_threads(1)
    # Started in the background (nohup ... &), a process inherits SIGINT ignored, and so
    # would its runs: Python's own handler makes Ctrl-C or kill -INT stop the comparison
    # and, reset to the default in the runs it starts, each run, which saves as it stops.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    record: dict[str, Any] = {
        **header("compare"),
        "record": str(args.record.resolve().relative_to(ROOT))
        if args.record.resolve().is_relative_to(ROOT)
        else str(args.record),
        "budgets": args.budget,
        "ceilings": {t: c for t, c in args.ceiling.items() if c > args.budget[t]},
        "task_settings": {task: task_settings(task) for task in tasks},
        "seeds": args.seeds,
        "size": args.size,
        "rates": args.rates,
        "sweep_share": args.sweep_share,
        "patience": args.patience,
        "ladder_memory": args.ladder_memory,
        "tasks": tasks,
        "models": labels,
        "entries": [],
    }
    record["baselines"] = baselines(record, [t for t in tasks if t in CHOMSKY_TASKS])
    done = _finished(args.record, record)
    cells = [(task, label) for task in tasks for label in labels]
    # The cells train --jobs at a time, each run in one process of one thread.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.jobs > 1:
        os.environ.setdefault("NTM_NPROC", "1")
    text = ""
    # A cell that fails or is interrupted (Ctrl-C reaches its runs first) stops the others
    # from starting: a worker would otherwise take the next cell before the main thread knows.
    stopping = threading.Event()

    def measure(task: str, label: str, seeds: int) -> dict[str, Any] | None:
        if stopping.is_set():
            return None
        try:
            return compare_one(task, label, args, seeds)
        except BaseException:
            stopping.set()
            raise

    # One seed of every cell first, then the other seeds.
    for seeds in sorted({1, args.seeds}):
        waiting = queue(cells, done, seeds, args.ceiling)
        interrupted = False
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            started = {pool.submit(measure, *cell, seeds): cell for cell in waiting}
            try:
                for future in as_completed(started):
                    entry = future.result()
                    if entry is None:
                        continue
                    done[started[future]] = entry
                    task, label = started[future]
                    print(f"{task} / {label}: {seeds} seed{'s' if seeds > 1 else ''}", flush=True)
                    record["entries"] = [done[cell] for cell in cells if cell in done]
                    explain(record, args.out)
                    args.record.parent.mkdir(parents=True, exist_ok=True)
                    # Atomically: a sitting may end (and kill this process) at any moment.
                    ckpt.write_text_atomic(args.record, json.dumps(record, indent=2) + "\n")
                    text = render(record, args.record.parent)  # after each cell
                    ckpt.write_text_atomic(args.record.parent.parent / "comparison.md", text)
            except (KeyboardInterrupt, subprocess.CalledProcessError) as error:
                stopping.set()
                interrupted = isinstance(error, KeyboardInterrupt) or error.returncode == 130
                if not interrupted:
                    raise
        if interrupted:  # the pool has waited for its runs to stop and save
            keep_latest_only(args.out)
            print("interrupted: the same command goes on from here", file=sys.stderr)
            return 130
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
