"""Evaluation: a model's cost and bit errors on held-out sequences, and ``ntm eval``.

``ntm eval`` tabulates a run on seeded held-out sets, by default the paper's settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ntm import registry
from ntm.runs.load import load_run, logits_of
from ntm.tasks.contract import Batch, generalisation, ladder
from ntm.tasks.scoring import BITS, TOKENS, Scoring, scoring

#: Default seed of held-out sets drawn by ``ntm eval`` and ``ntm viz`` (never a training seed).
HELD_OUT_SEED = 2_000_003

#: Sequences per evaluation chunk on a GPU, and on a CPU, where the buffers of 256 sequences
#: outgrow the caches (copy's 512 held-out sequences on the native NTM: 0.26 against 0.50 s;
#: reverse_string's 512 with the xLSTM, sorted and cut as :func:`evaluate` does for a causal
#: model: 0.59 against 1.25 s).
CHUNK, CPU_CHUNK = 256, 64
#: On a CPU, a chunk's states are kept within this many bytes where the model declares the
#: size of one sequence's (:func:`ntm.registry.state_bytes`): a DNC of 1,024 slots (4 MiB
#: of links per sequence) evaluates two sequences at a time about twice as fast as 64, whose
#: links stream from memory at every step (``python benchmarks/held_out.py``; the L3 cache
#: of the machine measured: 32 MiB, shared by two processes).
CACHE_BYTES = 12 * 2**20


def chunk_for(model: nn.Module, device: torch.device) -> int:
    """Sequences per evaluation chunk of ``model`` on ``device``: :data:`CHUNK` on a GPU;
    on a CPU, :data:`CPU_CHUNK`, or fewer where that many sequences' states would outgrow
    :data:`CACHE_BYTES` (one at least)."""
    if device.type != "cpu":
        return CHUNK
    state = registry.state_bytes(model)
    if not state:
        return CPU_CHUNK
    return max(1, min(CPU_CHUNK, CACHE_BYTES // state))


def _chunks(mask: Tensor, chunk: int, causal: bool) -> list[tuple[Tensor | slice, int]]:
    """The sequences of each evaluation chunk (indices along the batch) and the steps it
    runs: for a model whose outputs depend only on the inputs up to their step
    (``causal``), the sequences in the order of their last scored step, each chunk cut
    after the last step it scores (a held-out set of lengths 1 to 40 pads every sequence
    to the longest: half its steps are padding); otherwise consecutive sequences, every
    step."""
    steps, total = mask.shape
    if not causal:
        return [(slice(start, start + chunk), steps) for start in range(0, total, chunk)]
    # One past each sequence's last scored step (0 for one with nothing scored; a chunk
    # runs one step at least).
    ends = (mask * torch.arange(1, steps + 1, device=mask.device)[:, None]).amax(0).cpu()
    order = torch.argsort(ends, stable=True)
    parts = [order[start : start + chunk] for start in range(0, total, chunk)]
    return [(part, max(int(ends[part].max()), 1)) for part in parts]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batch: Batch,
    chunk: int | None = None,
    inspect: Callable[[Tensor, Batch], None] | None = None,
    score: Scoring = BITS,
) -> tuple[float, float]:
    """Cost in bits and errors per sequence of ``model`` on ``batch``, in chunks, as
    ``score`` counts them (:func:`ntm.tasks.scoring`: wrong bits, or wrong tokens).

    Only the outputs that ``batch`` has targets for are scored (repeat copy without its end
    marker: the copy channels of a model that has one). ``inspect``, if given, sees each
    chunk's logits with that chunk of the batch. A causal model (:func:`ntm.registry.causal`)
    sees its sequences in chunks of like lengths, each cut after its last scored step; the
    padding it is spared changes none of the outputs scored (to rounding: a chunk's shape
    may change the last bits). ``chunk`` sequences at a time, by default :func:`chunk_for`
    the model and its device. A model asked to run compiled
    runs fused here, as :mod:`ntm.engines.select` decides without gradients: evaluation is
    rare and at its own batch sizes, which compiling would cost more (a graph per size, tens
    of seconds each) than it saves. The model's engine is never changed.
    """
    total = batch.inputs.shape[1]
    device = next(model.parameters()).device  # batches are drawn on the CPU
    if chunk is None:
        chunk = chunk_for(model, device)
    cost = errors = 0.0
    was_training = model.training
    model.eval()
    try:
        for which, steps in _chunks(batch.mask, chunk, registry.causal(model)):
            inputs = batch.inputs[:steps, which].to(device)
            targets = batch.targets[:steps, which].to(device)
            mask = batch.mask[:steps, which].to(device)
            logits = logits_of(model(inputs))[..., : targets.shape[-1]]
            size = inputs.shape[1]
            cost += score.cost(logits, targets, mask) * size
            errors += float(score.wrong(logits, targets, mask).sum())
            if inspect is not None:
                inspect(logits, Batch(inputs, targets, mask))
    finally:
        model.train(was_training)
    return cost / total, errors / total


class AllRight:
    """The sequences with no wrong bit or token, tallied over evaluation chunks."""

    def __init__(self, score: Scoring) -> None:
        self.score = score
        self.right = 0

    def __call__(self, logits: torch.Tensor, batch: Batch) -> None:
        wrong = self.score.wrong(logits, batch.targets, batch.mask)
        self.right += int((wrong == 0).sum())


class EndMarker:
    """Repeat copy's end marker, tallied over evaluation chunks: the wrong bits of the marker
    channel over the answering steps, and the sequences whose marker is right at every step
    (off while the copies run, on at the last step only)."""

    def __init__(self, channel: int) -> None:
        self.channel = channel
        self.wrong = 0
        self.right = 0

    def __call__(self, logits: torch.Tensor, batch: Batch) -> None:
        said = logits[..., self.channel] > 0
        meant = batch.targets[..., self.channel] > 0.5
        wrong = ((said != meant) & batch.mask).sum(0)  # (B,)
        self.wrong += int(wrong.sum())
        self.right += int((wrong == 0).sum())


def _all(inspectors: list[Callable[[Tensor, Batch], None]]) -> Callable[[Tensor, Batch], None]:
    """One inspector that calls each of ``inspectors``."""

    def inspect(logits: Tensor, part: Batch) -> None:
        for inspector in inspectors:
            inspector(logits, part)

    return inspect


def _describe(task: Any) -> str:
    """The settings of the held-out set ``task`` draws (not those of training batches)."""
    left_out = registry.batch_settings(task)
    return ", ".join(f"{k}={v}" for k, v in task.to_dict().items() if k not in left_out)


def evaluate_run(
    run_dir: Path,
    task_settings: dict[str, Any] | None = None,
    size: int = 1000,
    seed: int = HELD_OUT_SEED,
    checkpoint: str = "best",
    device: str = "cpu",
    climb: bool = False,
    model_settings: dict[str, Any] | None = None,
    memory_for_length: bool = False,
) -> list[dict[str, Any]]:
    """Rows of (setting, sequences, cost, bit errors[, optimal cost]) for a run folder's
    model (``checkpoint``: see :func:`ntm.runs.load.weights_file`) run on ``device``.

    Without ``task_settings``: the training distribution and the paper's generalisation
    settings for the task, or with ``climb`` (or for a task the paper does not have) its
    ladder beyond the training distribution (:func:`ntm.tasks.ladder`), after the settings
    inside it that the task names (``within_training``, rows marked ``within``: where in
    the training range a model begins to fail); with them, one row
    for the run's task so changed. Every row draws its own held-out set from ``seed``.
    ``model_settings`` changes settings of the model no weight depends on (an NTM's or a
    DNC's ``memory_size``: more slots than it trained with). With ``memory_for_length``, a
    model with a ``memory_size`` gets, for each row where that row's sequences have more
    steps than it has slots (those of ``model_settings``, else the trained number), as many
    slots as steps (in the row's ``memory_size``): a memory large enough for every length,
    as the Chomsky hierarchy's Tape-RNN gets a tape as long as its input.

    A token task's rows also give ``token_accuracy``, the share of its scored tokens that
    are right, and ``one_symbol``, the share that the best constant answer gets right (one
    symbol at every token: :func:`answer_shares`); where they climb its ladder, a last row
    (``summary``: true, setting :data:`LADDER_MEAN`) gives the means of the ladder's rows
    beyond training, the paper's score for the Chomsky hierarchy's tasks (per-token accuracy
    averaged over the test lengths).
    """
    if size < 1:
        raise ValueError(f"--size = {size}: expected an integer >= 1")
    run, model = load_run(
        run_dir, checkpoint=checkpoint, device=device, model_settings=model_settings
    )
    least: int | None = getattr(run.model, "memory_size", None)  # given, else trained
    if memory_for_length and least is None:
        raise ValueError(f"a memory for each length: model {run.train.model} has no memory_size")
    task = run.task
    settings: list[tuple[str, dict[str, Any]]]
    climbing = False
    if task_settings is None:
        # A task without the paper's settings shows its ladder.
        paper = [] if climb else generalisation(run.train.task)
        climbing = not paper
        within = [] if paper else registry.within_training(task)
        settings = [("training distribution", {}), *within, *(paper or ladder(task))]
    else:
        within, settings = [], [("custom", task_settings)]
    rows = []
    shares: dict[str, list[float]] = {}  # each token row's answer_shares
    for index, (label, changes) in enumerate(settings):
        variant = task.with_settings(**changes)
        batch = variant.sample(size, torch.Generator().manual_seed(seed))
        score = scoring(variant)
        inspectors: list[Callable[[Tensor, Batch], None]] = [right := AllRight(score)]
        marker = None
        if registry.end_marker(variant):
            inspectors.append(marker := EndMarker(variant.output_size - 1))

        evaluated = model
        slots = max(least or 0, batch.inputs.shape[0])
        if memory_for_length and slots != least:
            _, evaluated = load_run(
                run_dir, checkpoint=checkpoint, device=device,
                model_settings={**(model_settings or {}), "memory_size": slots},
            )  # fmt: skip
        cost, errors = evaluate(evaluated, batch, inspect=_all(inspectors), score=score)
        row: dict[str, Any] = {
            "setting": label,
            "task": _describe(variant),
            "sequences": size,
            "cost_bits": cost,
            "bit_errors": errors,
            "all_right": right.right / size,
        }
        if memory_for_length:
            row["memory_size"] = slots
        if 0 < index <= len(within):
            row["within"] = True
        if score.unit != "bits":
            row["errors_of"] = score.unit
        if score is TOKENS:
            row["token_accuracy"] = _share_right(errors * size, batch)
            shares[label] = answer_shares(batch)
            row["one_symbol"] = max(shares[label])  # the best constant answer's accuracy
        if marker is not None:
            row["end_marker_errors"] = marker.wrong / size
            row["end_marker_right"] = marker.right / size
        optimal = registry.optimal_cost(variant)
        if optimal is not None:
            row["optimal_cost_bits"] = float(optimal(batch))
        rows.append(row)
    climbed = rows[1 + len(within) :]
    if climbing and registry.tokens(task) and climbed:
        rows.append(_mean_over_ladder(climbed, [shares[r["setting"]] for r in climbed]))
    return rows


def answer_counts(batch: Batch) -> Tensor:
    """How many of ``batch``'s scored tokens each answer symbol is the right answer to, in
    the order of the task's output symbols: (O,) integers on the CPU."""
    meant = batch.targets.argmax(-1)[batch.mask]  # (scored tokens,)
    return torch.bincount(meant.cpu(), minlength=batch.targets.shape[-1])


def answer_shares(batch: Batch) -> list[float]:
    """The share of ``batch``'s scored tokens that each answer symbol is the right answer
    to, in the order of the task's output symbols. The largest is what a model that gives
    one symbol at every token gets right: the best constant answer, a floor that a uniform
    guess understates where one symbol fills most answers."""
    counts = answer_counts(batch).double()
    return (counts / max(int(counts.sum()), 1)).tolist()


def best_constant(shares: list[list[float]]) -> tuple[int, float]:
    """The one symbol that, given at every token of every setting, gets the most right, and
    that share: each symbol's :func:`answer_shares` averaged over the settings (``shares``,
    one list a setting), then the best. Not the mean of each setting's best, which would
    let the answer change from one setting to the next."""
    means = [sum(column) / len(shares) for column in zip(*shares, strict=True)]  # a symbol each
    best = max(range(len(means)), key=means.__getitem__)
    return best, means[best]


def _share_right(wrong: float, batch: Batch) -> float:
    """The share of ``batch``'s scored tokens that are right, given the wrong ones."""
    scored = int(batch.mask.sum())
    return 1.0 - round(wrong) / scored if scored else math.nan


#: The label of the row that averages the ladder's rows (a token task's ``--ladder``).
LADDER_MEAN = "mean over the ladder"


def _mean_over_ladder(climbed: list[dict[str, Any]], shares: list[list[float]]) -> dict[str, Any]:
    """One row of the means of the ladder's rows (the training distribution left out): the
    paper's score for the Chomsky hierarchy's tasks is the mean per-token accuracy over the
    test lengths (Delétang et al., 2023). Its ``sequences`` are those of all the rows; its
    ``one_symbol`` is that of one symbol given at every token of every row (the rows'
    :func:`answer_shares`, ``shares``, averaged), not the mean of each row's best."""

    def mean(key: str) -> float:
        return float(sum(r[key] for r in climbed)) / len(climbed)

    return {
        "setting": LADDER_MEAN,
        "task": f"the mean of the {len(climbed)} settings beyond the training distribution",
        "sequences": sum(r["sequences"] for r in climbed),
        "cost_bits": mean("cost_bits"),
        "bit_errors": mean("bit_errors"),
        "all_right": mean("all_right"),
        "errors_of": climbed[0]["errors_of"],
        "token_accuracy": mean("token_accuracy"),
        "one_symbol": best_constant(shares)[1],
        "summary": True,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`evaluate_run`'s rows."""
    optimal = any("optimal_cost_bits" in r for r in rows)
    marker = any("end_marker_errors" in r for r in rows)
    unit = "token" if any(r.get("errors_of") == "tokens" for r in rows) else "bit"
    right = any("all_right" in r for r in rows)
    accuracy = any("token_accuracy" in r for r in rows)
    constant = any("one_symbol" in r for r in rows)
    slots = any("memory_size" in r for r in rows)
    header = ["setting", "sequences", "cost (bits/seq)", f"{unit} errors/seq"]
    if right:
        header.append("all right")
    if accuracy:
        header.append("token accuracy")
    if constant:
        header.append("one symbol")  # the best constant answer's token accuracy
    if optimal:
        header.append("Bayes-optimal cost")
    if marker:
        header += ["end-marker errors/seq", "end marker right"]
    if slots:
        header.append("memory slots")
    lines = []
    for r in rows:
        cells = [
            r["setting"] + (" (inside training)" if r.get("within") else ""),
            f"{r['sequences']:,d}",
            f"{r['cost_bits']:.3f}",
            f"{r['bit_errors']:.3f}",
        ]
        if right:
            cells.append(f"{100 * r.get('all_right', float('nan')):.1f}%")
        if accuracy:
            cells.append(f"{100 * r.get('token_accuracy', float('nan')):.1f}%")
        if constant:
            cells.append(f"{100 * r.get('one_symbol', math.nan):.1f}%")
        if optimal:
            cells.append(f"{r.get('optimal_cost_bits', float('nan')):.3f}")
        if marker:
            cells += [
                f"{r.get('end_marker_errors', float('nan')):.3f}",
                f"{100 * r.get('end_marker_right', float('nan')):.1f}%",
            ]
        if slots:
            cells.append(f"{r['memory_size']:,d}" if "memory_size" in r else "")
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    out = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    for cells in lines:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    out.append("")
    out.extend(f"{r['setting']}: {r['task']}" for r in rows)
    return "\n".join(out)
