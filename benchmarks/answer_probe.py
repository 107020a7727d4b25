"""What a token model answers beyond its training lengths: the share of its scored tokens
it gives each answer symbol, beside the share each symbol has among the right answers.

A score under chance (a uniform guess among the answer symbols) means a model is wrong
more often than a guess; this shows what it says instead (binary_addition's Mamba, for
one, answers the end symbol ``$`` where the answers go on).

Run: ``python benchmarks/answer_probe.py LABEL=RUN_DIR [LABEL=RUN_DIR ...] --lengths
41,203,500 --record FILE``, each RUN_DIR a run of a token task with a ladder (the Chomsky
hierarchy's tasks) and LABEL the name its model has in the rendered tables. Each length is
the ladder's rung of that length, drawn as ``ntm eval RUN --ladder`` draws it (its
held-out seed, ``--size`` sequences), and the model is the run's best, as there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ntm import registry
from ntm.runs.evaluation import HELD_OUT_SEED, answer_counts, evaluate
from ntm.runs.load import load_run
from ntm.tasks.contract import Batch
from ntm.tasks.scoring import scoring

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header, keep


class Tally:
    """The scored tokens, over evaluation chunks: how often the model answered each symbol,
    how often each was the right answer, and how many it got right."""

    def __init__(self, symbols: int) -> None:
        self.answered = torch.zeros(symbols, dtype=torch.long)
        self.expected = torch.zeros(symbols, dtype=torch.long)
        self.right = 0

    def __call__(self, logits: Tensor, batch: Batch) -> None:
        said = logits.argmax(-1)[batch.mask]
        meant = batch.targets.argmax(-1)[batch.mask]
        self.answered += torch.bincount(said.cpu(), minlength=self.answered.numel())
        self.expected += answer_counts(batch)
        self.right += int((said == meant).sum())


def probe(run_dir: Path, lengths: list[int], size: int) -> dict[str, Any]:
    """The tallies of the module's description for one run, at each of ``lengths``. A
    ValueError says why a run cannot be probed (not a token task, a length not on its
    ladder, no run there)."""
    run, model = load_run(run_dir)
    task = run.task
    if not registry.tokens(task):
        raise ValueError(f"{run_dir}: task {run.train.task} is not a token task")
    rungs = dict(registry.ladder(task))
    symbols = list(task.output_vocabulary)
    rows = []
    for length in lengths:
        label = f"length {length}"
        if label not in rungs:
            raise ValueError(f"{run_dir}: its ladder has no rung of {label} (--lengths)")
        variant = task.with_settings(**rungs[label])
        batch = variant.sample(size, torch.Generator().manual_seed(HELD_OUT_SEED))
        tally = Tally(len(symbols))
        evaluate(model, batch, inspect=tally, score=scoring(variant))
        scored = max(int(tally.expected.sum()), 1)  # a rung with no scored token: shares of 0
        rows.append({
            "length": length,
            "sequences": size,
            "tokens": scored,
            "token_accuracy": tally.right / scored,
            "answered": dict(zip(symbols, (int(n) / scored for n in tally.answered), strict=True)),
            "expected": dict(zip(symbols, (int(n) / scored for n in tally.expected), strict=True)),
        })  # fmt: skip
    return {"run": str(run_dir), "task": run.train.task, "seed": run.train.seed, "lengths": rows}


def sentence(label: str, entry: dict[str, Any]) -> str:
    """One run's tallies in words: at each length, its share right and what it answers,
    each symbol's share of the right answers in brackets (``"mamba: at length 500, 3%
    right, it answers `$` on 95% of the tokens (0.3%), `1` on 3% (50%), `0` on 2% (50%)"``)."""

    def share(value: float) -> str:
        return f"{100 * value:.1f}%" if 0 < value < 0.01 else f"{100 * value:.0f}%"

    parts = []
    for row in entry["lengths"]:
        said = sorted(row["answered"].items(), key=lambda item: -item[1])
        each = ", ".join(
            f"`{symbol}` on {share(value)}{' of the tokens' if not i else ''} "
            f"({share(row['expected'][symbol])})"
            for i, (symbol, value) in enumerate(said)
        )
        parts.append(
            f"at length {row['length']}, {share(row['token_accuracy'])} right, it answers {each}"
        )
    return f"{label}: " + "; ".join(parts)


def table(record: dict[str, Any]) -> list[str]:
    lines = [f"What each model answers beyond training: {caption(record)}; in brackets, each "
             "symbol's share of the right answers.", ""]  # fmt: skip
    return [*lines, *(f"- {sentence(e['label'], e)}." for e in record["runs"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--lengths", default="41,203,500",
                        help="ladder rungs to probe (default: 41,203,500)")  # fmt: skip
    parser.add_argument("--size", type=int, default=100, help="sequences a length")
    parser.add_argument("--record", type=Path, help="write the record (JSON) here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lengths = [int(part) for part in args.lengths.split(",")]
    record = header("answer_probe")
    record["runs"] = []
    for given in args.runs:
        label, _, folder = given.partition("=")
        if not label:
            parser.error(f"{given}: expected LABEL=RUN_DIR")
        try:
            record["runs"].append({"label": label, **probe(Path(folder), lengths, args.size)})
        except ValueError as error:
            parser.error(str(error))
    keep(record, table(record), args.record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
