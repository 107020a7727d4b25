"""SAM's nearest-neighbour search (``src/ntm/engines/native/sam_index.c``): recall and cost
of the index against the exhaustive search, by memory size.

Run: ``python benchmarks/sam_index.py [--sizes 10,12,14,16,18,20] [--probes 16,32,48]
[--rivals] [--record FILE]``. For each N = 2**size, W = 20, K = 8, it fills an index with N
random rows (standard normal) by updates, then measures, on one thread:

- recall: the fraction of the true top K (exact cosine similarity, ties to the lower slot)
  found, averaged over keys near stored rows (a stored row plus noise of standard deviation
  0.1 in each coordinate) and over random keys; ``top1``: how often the true nearest row
  comes first, for the near keys;
- microseconds per query (near keys, one C call for all of them), per row on the first fill
  and per row changed afterwards (random slots given new random rows, most of them moving
  cell), and the index's bytes per row.

The exhaustive search (``sam_exact_topk``) reads the whole memory for every 4 keys (R = 4
heads) and has no index: its bytes per row are the memory's own. ``--probes`` measures the
index at each of those probes besides its default; ``--rivals`` adds hnswlib's HNSW graph and
faiss's inverted file (k-means centroids), where installed, for N up to 2**16.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ntm.engines.native import sam_index
from ntm.engines.native.sam_index import SamIndex, exact_topk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import caption, header

WIDTH, K, EPS = 20, 8, 1e-8
#: The largest N the rivals are built at: hnswlib's inserts take about 0.1 ms each here.
RIVALS_UP_TO = 2**16


def recall(found: torch.Tensor, true: torch.Tensor) -> float:
    """The fraction of the true top K found, averaged over keys."""
    return float((found[:, :, None] == true[:, None, :]).any(-1).float().mean())


def timed(function: Any, *arguments: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - start


def keys_for(memory: torch.Tensor, queries: int, generator: torch.Generator) -> dict[str, Any]:
    near = memory[torch.randint(len(memory), (queries,), generator=generator)]
    near = near + 0.1 * torch.randn(near.shape, generator=generator)
    return {"near": near, "random": torch.randn(queries, WIDTH, generator=generator)}


def exhaustive(library: Any, memory: torch.Tensor, keys: dict[str, Any]) -> dict[str, Any]:
    def search(batch: torch.Tensor) -> torch.Tensor:
        parts = torch.split(batch, 4)  # R = 4 heads a call
        return torch.cat([exact_topk(library, memory, part, K, EPS)[0] for part in parts])

    true = {}
    seconds = 0.0
    for name, batch in keys.items():
        true[name], spent = timed(search, batch)
        seconds += spent if name == "near" else 0.0
    row = {"method": "exhaustive", "recall_near": 1.0, "top1_near": 1.0, "recall_random": 1.0,
           "query_us": seconds / len(keys["near"]) * 1e6, "fill_us": None, "update_us": None,
           "bytes_per_row": 4 * WIDTH}  # fmt: skip
    return {"row": row, "true": true}


def measure(
    found: dict[str, torch.Tensor], true: dict[str, torch.Tensor], seconds: float
) -> dict[str, Any]:
    return {
        "recall_near": recall(found["near"], true["near"]),
        "top1_near": float((found["near"][:, 0] == true["near"][:, 0]).float().mean()),
        "recall_random": recall(found["random"], true["random"]),
        "query_us": seconds / len(found["near"]) * 1e6,
    }


def index_rows(
    library: Any,
    memory: torch.Tensor,
    keys: dict[str, Any],
    true: dict[str, Any],
    probes: list[int],
    generator: torch.Generator,
) -> list[dict[str, Any]]:
    n = len(memory)
    index = SamIndex(library, n, WIDTH, eps=EPS)
    _, fill = timed(index.update, torch.randperm(n, generator=generator), memory)
    # As after a first sequence: the centroids from those rows, then the memory written.
    index.reset()
    index.update(torch.arange(n), memory)
    changed = torch.randint(n, (4096,), generator=generator)
    fresh = torch.randn(len(changed), WIDTH, generator=generator)
    _, change = timed(index.update, changed, fresh)
    index.update(changed, memory[changed])  # back to the memory the keys were drawn from
    rows = []
    default = index.probes
    for count in sorted({default, *(p for p in probes if p <= index.cells)}):
        index.probes = count
        found = {name: index.query(batch, K)[0] for name, batch in keys.items()}
        _, seconds = timed(index.query, keys["near"], K)
        rows.append({"method": "index" if count == default else "index (probes)",
                     "cells": index.cells, "probes": count, **measure(found, true, seconds),
                     "fill_us": fill / n * 1e6, "update_us": change / len(changed) * 1e6,
                     "bytes_per_row": index.bytes / n})  # fmt: skip
    index.close()
    return rows


def rival_rows(
    library: Any, memory: torch.Tensor, keys: dict[str, Any], true: dict[str, Any]
) -> list[Any]:
    """hnswlib (M 16, construction ef 100, search ef 32) and faiss's IVF-Flat (k-means
    centroids, as many cells and probes as the index), on unit rows by inner product."""
    rows: list[dict[str, Any]] = []
    n = len(memory)
    unit = torch.nn.functional.normalize(memory).numpy()
    units = {name: torch.nn.functional.normalize(batch).numpy() for name, batch in keys.items()}
    changed = torch.randint(n, (500,)).numpy()
    fresh = torch.nn.functional.normalize(torch.randn(len(changed), WIDTH)).numpy()
    if importlib.util.find_spec("hnswlib"):
        import hnswlib  # type: ignore[import-untyped]  # noqa: PLC0415 (optional)

        graph = hnswlib.Index(space="ip", dim=WIDTH)
        graph.init_index(max_elements=n, M=16, ef_construction=100)
        graph.set_num_threads(1)
        _, fill = timed(graph.add_items, unit, range(n))
        graph.set_ef(32)
        found = {name: torch.from_numpy(graph.knn_query(b, K)[0].astype("int64"))
                 for name, b in units.items()}  # fmt: skip
        _, seconds = timed(graph.knn_query, units["near"], K)
        _, change = timed(graph.add_items, fresh, changed)
        rows.append({"method": "hnswlib (ef 32)", **measure(found, true, seconds),
                     "fill_us": fill / n * 1e6, "update_us": change / len(changed) * 1e6,
                     "bytes_per_row": None})  # fmt: skip
    if importlib.util.find_spec("faiss"):
        import faiss  # noqa: PLC0415 (optional: measured only where installed)

        faiss.omp_set_num_threads(1)
        cells = library.sam_index_default_cells(n)
        inverted = faiss.IndexIVFFlat(faiss.IndexFlatIP(WIDTH), WIDTH, cells,
                                      faiss.METRIC_INNER_PRODUCT)  # fmt: skip
        inverted.train(unit)
        _, fill = timed(inverted.add, unit)
        inverted.nprobe = library.sam_index_default_probes(n)
        found = {name: torch.from_numpy(inverted.search(b, K)[1]) for name, b in units.items()}
        _, seconds = timed(inverted.search, units["near"], K)
        rows.append({"method": f"faiss IVF-Flat (probes {inverted.nprobe})",
                     **measure(found, true, seconds), "fill_us": fill / n * 1e6,
                     "update_us": None, "bytes_per_row": None})  # fmt: skip
    return rows


def table(record: dict[str, Any]) -> list[str]:
    """The record as a Markdown table, with the command and date it came from."""
    return [f"{caption(record)}:", "", *rows_table(record["rows"])]


def rows_table(rows: list[dict[str, Any]]) -> list[str]:
    """Measured rows as a Markdown table."""

    def number(value: Any, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    lines = ["| N | method | probes | recall near | top-1 near | recall random | us/query "
             "| us/fill row | us/update | bytes/row |", "|" + " --- |" * 10]  # fmt: skip
    for row in rows:
        probes = f"{row['probes']} of {row['cells']}" if row.get("probes") else ""
        lines.append(f"| 2^{row['n'].bit_length() - 1} | {row['method']} | {probes} "
                     f"| {number(row['recall_near'], 3)} | {number(row['top1_near'], 3)} "
                     f"| {number(row['recall_random'], 3)} | {number(row['query_us'], 1)} "
                     f"| {number(row['fill_us'], 2)} | {number(row['update_us'], 2)} "
                     f"| {number(row['bytes_per_row'], 0)} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,12,14,16,18,20", help="log2 of N, commas")
    parser.add_argument("--probes", default="", help="more probes to measure, commas")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--rivals", action="store_true", help="hnswlib and faiss too")
    parser.add_argument("--record", type=Path, help="write the record (JSON) here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    probes = [int(p) for p in args.probes.split(",") if p]
    record: dict[str, Any] = {**header("sam_index"), "width": WIDTH, "k": K, "rows": []}
    with tempfile.TemporaryDirectory() as directory:
        library = sam_index.load(Path(directory))
        for size in (int(s) for s in args.sizes.split(",")):
            n = 2**size
            generator = torch.Generator().manual_seed(size)
            memory = torch.randn(n, WIDTH, generator=generator)
            keys = keys_for(memory, args.queries, generator)
            base = exhaustive(library, memory, keys)
            rows = [base["row"], *index_rows(library, memory, keys, base["true"], probes,
                                             generator)]  # fmt: skip
            if args.rivals and n <= RIVALS_UP_TO:
                rows += rival_rows(library, memory, keys, base["true"])
            for row in rows:
                record["rows"].append({"n": n, **row})
                print(rows_table([record["rows"][-1]])[-1], flush=True)
    print("\n".join(table(record)))
    if args.record:
        args.record.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
