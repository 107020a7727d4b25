"""What a memory model learned on MQAR: where its answers' probability goes, and where its
heads write and read (the evidence behind docs/comparison.md's reading of MQAR).

Run: ``python benchmarks/mqar_probe.py RUN_DIR [RUN_DIR ...] --record FILE``, each RUN_DIR an
``ntm train --task mqar`` run of a model with a trace (the NTM, the DNC). On held-out
sequences it measures, at the query positions:

- the probability the model gives to the values that appeared in the pairs, and to the right
  one, beside 1 / (number of pairs): a model that knows the values but not which key each
  belongs to gives about that to the right one;
- from the trace, how many distinct slots the write head focused on (its largest weight)
  during the pairs, the read weight at each answer on the slot written at the step of the
  key's value, and at its query on the one written at the step of the key itself (the same
  step, unless the task's ``answer_delay`` puts the answer one later).

The record (JSON) holds these per run, with the run's training settings and its last
held-out errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ntm import registry
from ntm.runs import checkpoint as ckpt
from ntm.runs.evaluation import HELD_OUT_SEED
from ntm.runs.load import load_run

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header


@torch.no_grad()
def probe(run_dir: Path, size: int) -> dict[str, Any]:
    """The measurements of the module's description for one run."""
    run, model = load_run(run_dir, engine="eager")
    tracer = registry.tracer(model)
    if tracer is None:
        raise SystemExit(f"{run_dir}: model {run.train.model} has no trace")
    task = run.task
    pairs = int(task.to_dict()["num_pairs"])
    delay = int(task.to_dict().get("answer_delay", 0))
    batch = task.sample(size, torch.Generator().manual_seed(HELD_OUT_SEED))
    logits, _, trace = tracer(batch.inputs)
    contents = registry.trace_contents(trace)
    if contents is None:
        raise SystemExit(f"{run_dir}: the trace of {run.train.model} declares no contents")
    probabilities = torch.softmax(logits, -1)  # (T, B, V)
    tokens = batch.inputs.argmax(-1)  # (T, B)
    writes = contents.write_weights[:, :, 0]  # (T, B, N): the first write head
    reads = contents.read_weights  # (T, B, R, N)
    on_values, on_right, on_slot, on_key_slot = [], [], [], []
    for step, sequence in batch.mask.nonzero().tolist():
        values = tokens[1 : 2 * pairs : 2, sequence].unique()
        on_values.append(float(probabilities[step, sequence, values].sum()))
        right = batch.targets[step, sequence].argmax()
        on_right.append(float(probabilities[step, sequence, right]))
        query = step - delay
        key = tokens[query, sequence]
        index = int((tokens[0 : 2 * pairs : 2, sequence] == key).nonzero()[0])
        slot = writes[2 * index + 1, sequence].argmax()
        on_slot.append(float(reads[step, sequence, :, slot].max()))
        key_slot = writes[2 * index, sequence].argmax()
        on_key_slot.append(float(reads[query, sequence, :, key_slot].max()))
    written = [len(writes[: 2 * pairs, sequence].argmax(-1).unique()) for sequence in range(size)]
    last = ckpt.read_metrics(run_dir)[-1]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {
        "run": str(run_dir),
        "model": run.train.model,
        "train": {k: v for k, v in vars(run.train).items() if k in ("lr", "batch_size")},
        "model_settings": {
            k: v for k, v in run.model.to_dict().items() if k in ("memory_init", "memory_size")
        },
        "sequences": int(last["sequences"]),
        "eval_wrong_tokens": float(last["eval_bit_errors"]),
        "pairs": pairs,
        "answer_delay": delay,
        "uniform_over_values": 1 / pairs,
        "probability_on_pair_values": mean(on_values),
        "probability_on_right_value": mean(on_right),
        "slots_written_during_pairs": mean(written),
        "read_weight_on_the_value_slot": mean(on_slot),
        "read_weight_on_the_key_slot": mean(on_key_slot),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--size", type=int, default=256, help="held-out sequences")
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [probe(run, args.size) for run in args.runs]
    record = {**header("mqar_probe"), "size": args.size, "runs": runs}
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["runs"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
