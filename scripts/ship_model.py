"""Copy a trained run into the package as a shipped model: ``ntm.runs.pretrained.load(NAME)``.

Run: ``python scripts/ship_model.py RUN_DIR NAME [--checkpoint latest]`` (NAME is the task
name, e.g. ``copy``).

Writes ``src/ntm/runs/pretrained/MODEL/NAME/`` (``ntm/copy/``, ``dnc/copy/``, read by
``ntm.runs.pretrained.load(NAME, model="dnc")``): the run's ``config.json`` and ``metrics.csv``, the
weights of its best checkpoint (lowest held-out cost; ``--checkpoint latest``: the newest)
as ``model.safetensors``, ``eval.json`` (what ``ntm eval
--pretrained NAME`` prints, as JSON, for the report) and ``check.json`` (the cost and bit
errors on a small held-out batch, which a fast test compares with the shipped weights).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from ntm.runs import checkpoint as ckpt
from ntm.runs.evaluation import HELD_OUT_SEED, evaluate, evaluate_run
from ntm.runs.load import CHECKPOINTS, load_run, read_run_config, weights_file

ROOT = Path(__file__).resolve().parent.parent / "src" / "ntm" / "runs" / "pretrained"

CHECK_SIZE = 64


def check_values(folder: Path) -> dict[str, float]:
    """Cost and bit errors of a shipped model on ``CHECK_SIZE`` held-out sequences."""
    run, model = load_run(folder)
    batch = run.task.sample(CHECK_SIZE, torch.Generator().manual_seed(HELD_OUT_SEED))
    cost, errors = evaluate(model, batch)
    return {"seed": HELD_OUT_SEED, "size": CHECK_SIZE, "cost_bits": cost, "bit_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--checkpoint", choices=CHECKPOINTS, default="best")
    args = parser.parse_args()
    kind = read_run_config(args.run_dir).train.model
    folder = ROOT / kind / args.name  # as ntm.runs.pretrained reads
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run_dir / ckpt.CONFIG_FILE, folder / ckpt.CONFIG_FILE)
    shutil.copyfile(args.run_dir / ckpt.METRICS_FILE, folder / ckpt.METRICS_FILE)
    weights = weights_file(args.run_dir, args.checkpoint)
    shutil.copyfile(weights, folder / ckpt.MODEL_FILE)
    (folder / "check.json").write_text(json.dumps(check_values(folder), indent=2) + "\n")
    rows = evaluate_run(folder)
    (folder / "eval.json").write_text(json.dumps(rows, indent=2) + "\n")
    size = (folder / ckpt.MODEL_FILE).stat().st_size
    print(f"shipped {args.run_dir} ({weights.parent.name}) as {folder} ({size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
