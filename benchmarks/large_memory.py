"""What a larger memory buys at evaluation: trained models run with more slots than they
trained with, on settings far beyond their training (issue: memory that scales).

Run: ``python benchmarks/large_memory.py --record benchmarks/records/large-memory.json``.
For each task it evaluates the NTM, the DNC and Sparse Access Memory (a shipped model, or a
kept run) with the memory they trained with (128 slots) and with more
(``ntm eval --model-arg memory_size=N``; no weight depends on N), on copy at lengths 120,
500 and 1,000 and associative recall at 12, 24 and 100 items: wrong bits per sequence and
the share of sequences entirely right, on held-out sets of ``--size`` sequences.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ntm.runs import pretrained
from ntm.runs.evaluation import HELD_OUT_SEED, AllRight, evaluate
from ntm.runs.load import load_run
from ntm.tasks.scoring import scoring

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header

ROOT = Path(__file__).resolve().parent.parent

#: The settings beyond training, per task: (label, task settings).
SETTINGS = {
    "copy": [(f"length {n:,}", {"min_length": n, "max_length": n}) for n in (120, 500, 1000)],
    "associative_recall": [(f"{n} items", {"min_items": n, "max_items": n}) for n in (12, 24, 100)],
}
#: The models per task: (model, its run folder: a shipped model's, or a kept run).
MODELS = {
    "copy": [
        ("ntm", pretrained.path("copy", "ntm")),
        ("dnc", pretrained.path("copy", "dnc")),
        ("sam", ROOT / "runs-kept" / "copy-sam"),
    ],
    "associative_recall": [
        ("ntm", pretrained.path("associative_recall", "ntm")),
        ("dnc", pretrained.path("associative_recall", "dnc")),
        ("sam", ROOT / "runs-kept" / "associative_recall-sam"),
    ],
}


def measure(
    tasks: list[str], memories: list[int], size: int, only: set[str] | None = None
) -> list[dict[str, Any]]:
    """One row per task, model, memory size and setting. The models run eagerly, the
    engine that all of them have, so that their rows compare like with like."""
    rows = []
    for task in tasks:
        for model, run_dir in MODELS[task]:
            if only is not None and model not in only:
                continue
            if not run_dir.is_dir():
                print(f"{task} / {model}: no run at {run_dir}, left out", file=sys.stderr)
                continue
            for memory in memories:
                run, net = load_run(run_dir, engine="eager", model_settings={"memory_size": memory})
                for label, changes in SETTINGS[task]:
                    variant = run.task.with_settings(**changes)
                    batch = variant.sample(size, torch.Generator().manual_seed(HELD_OUT_SEED))
                    right = AllRight(scoring(variant))
                    _, errors = evaluate(net, batch, chunk=size, inspect=right)
                    rows.append({
                        "task": task, "model": model, "run": str(run_dir.relative_to(ROOT)),
                        "memory_size": memory, "setting": label,
                        "bit_errors": errors, "all_right": right.right / size,
                    })  # fmt: skip
                    print(f"{task} / {model} / {memory} slots / {label}: {errors:.3f}",
                          file=sys.stderr)  # fmt: skip
    return rows


def table(record: dict[str, Any]) -> list[str]:
    """Per task, a row per model and memory size: wrong bits per sequence and the share of
    sequences entirely right at each setting."""
    lines = [f"`{record['command']}` ({record['measured']}, torch {record['torch']}):", ""]
    for task in dict.fromkeys(row["task"] for row in record["rows"]):
        rows = [row for row in record["rows"] if row["task"] == task]
        labels = list(dict.fromkeys(row["setting"] for row in rows))
        lines += [
            f"{task} ({record['size']} held-out sequences per setting): wrong bits per "
            "sequence, sequences entirely right",
            "",
            "| model | slots | " + " | ".join(labels) + " |",
            "|---|---:|" + "---:|" * len(labels),
        ]
        for model, memory in dict.fromkeys((r["model"], r["memory_size"]) for r in rows):
            cells = [
                f"{r['bit_errors']:.2f}, {100 * r['all_right']:.0f}%"
                for label in labels
                for r in rows
                if r["model"] == model and r["memory_size"] == memory and r["setting"] == label
            ]
            lines.append(f"| {model} | {memory:,} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines[:-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="copy,associative_recall")
    parser.add_argument("--memories", default="128,2048", help="slots at evaluation")
    parser.add_argument("--size", type=int, default=50, help="held-out sequences per setting")
    parser.add_argument(
        "--models",
        help="measure only these (e.g. sam), keeping the other models' rows of --record",
    )
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = args.tasks.split(",")
    memories = [int(m) for m in args.memories.split(",")]
    record = {**header("large_memory"), "size": args.size, "memories": memories}
    only = set(args.models.split(",")) if args.models else None
    kept = []
    if only is not None and args.record.is_file():
        previous = json.loads(args.record.read_text())
        kept = [r for r in previous["rows"] if r["model"] not in only]
        # The rows kept were measured by the earlier command: the record names both.
        earlier = previous["command"].split("; then ")[0]
        record["command"] = f"{earlier}; then {record['command']}"
    rows = measure(tasks, memories, args.size, only)
    order = {model: i for i, (model, _) in enumerate(MODELS[tasks[0]])}
    record["rows"] = sorted(
        kept + rows, key=lambda r: (tasks.index(r["task"]), order[r["model"]], r["memory_size"])
    )
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(table(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
