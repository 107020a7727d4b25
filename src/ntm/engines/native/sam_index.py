"""SAM's nearest-neighbour index (``sam_index.c``) from Python, through ctypes.

The C library is standalone (libc and libm): the SAM engine in C calls it directly; here it is
built on its own, with the native engines' compiler and flags, for the tests
(``tests/test_sam_index.py``) and the measurements (``benchmarks/sam_index.py``).
``sam_index.h`` says what each function promises: the ranking (cosine similarity, the lower
slot first among equals), never-written rows (similarity 0, lowest slots first), and how
the index is laid out.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ntm.engines.native import FLAGS, cache_dir

SOURCE = Path(__file__).with_name("sam_index.c")
HEADER = Path(__file__).with_name("sam_index.h")

_POINTER = ctypes.c_void_p
_INTS2 = [ctypes.c_int, ctypes.c_int]
#: Each entry point's argument types and result type.
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "sam_index_new": ([ctypes.c_int, ctypes.c_int, _POINTER], _POINTER),
    "sam_index_free": ([_POINTER], None),
    "sam_index_reset": ([_POINTER], None),
    "sam_index_update_many": ([_POINTER, _POINTER, _POINTER, ctypes.c_int], ctypes.c_int),
    "sam_index_query_many": (
        [_POINTER, _POINTER, ctypes.c_int, ctypes.c_int, _POINTER, _POINTER],
        ctypes.c_int,
    ),
    "sam_exact_topk": (
        [_POINTER, *_INTS2, _POINTER, *_INTS2, ctypes.c_float, _POINTER, _POINTER],
        ctypes.c_int,
    ),
    "sam_index_rows": ([_POINTER], ctypes.c_int),
    "sam_index_bytes": ([_POINTER], ctypes.c_size_t),
    "sam_index_reset_work": ([_POINTER], ctypes.c_int64),
    "sam_index_cells": ([_POINTER], ctypes.c_int),
    "sam_index_probes": ([_POINTER], ctypes.c_int),
    "sam_index_set_probes": ([_POINTER, ctypes.c_int], ctypes.c_int),
    "sam_index_default_cells": ([ctypes.c_int], ctypes.c_int),
    "sam_index_default_probes": ([ctypes.c_int], ctypes.c_int),
}


class _Params(ctypes.Structure):
    _fields_ = [("cells", ctypes.c_int), ("probes", ctypes.c_int), ("eps", ctypes.c_float)]


def build(directory: Path | None = None) -> Path:
    """Compile ``sam_index.c`` into a shared library in ``directory`` (default: the native
    engines' cache, :func:`ntm.engines.native.cache_dir`), named by a hash of the source,
    flags and compiler; an existing one is reused."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise RuntimeError("no C compiler (cc, gcc or $CC) on the PATH")
    key = hashlib.sha256(SOURCE.read_bytes() + HEADER.read_bytes())
    key.update(" ".join(FLAGS).encode() + compiler.encode())
    directory = cache_dir() if directory is None else directory
    target = directory / f"sam_index-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: a process starting at the same time
    # never loads a half-written file.
    handle, partial = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(handle)
    command = [compiler, *FLAGS, "-std=c99", "-o", partial, str(SOURCE), "-lm"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        Path(partial).unlink(missing_ok=True)
        raise RuntimeError(f"{compiler} failed on {SOURCE.name}: {done.stderr.strip()}")
    Path(partial).replace(target)
    return target


def load(directory: Path | None = None) -> ctypes.CDLL:
    """The library :func:`build` makes, its entry points typed."""
    library = ctypes.CDLL(str(build(directory)))
    for name, (arguments, result) in _SIGNATURES.items():
        function = getattr(library, name)  # a C symbol
        function.argtypes = arguments
        function.restype = result
    return library


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"sam_index: {what} failed with status {status}")


def _floats(tensor: Tensor, width: int) -> Tensor:
    if tensor.dtype != torch.float32 or tensor.dim() != 2 or tensor.shape[1] != width:
        raise ValueError(f"sam_index: expected float32 rows of width {width}, got "
                         f"{tuple(tensor.shape)} {tensor.dtype}")  # fmt: skip
    return tensor.contiguous()


class SamIndex:
    """One index over ``slots`` rows of width ``width`` (``sam_index_new``).

    Args:
        library: what :func:`load` returned.
        slots: N, the memory's rows.
        width: W, the row width.
        cells: centroids; 0 for the library's default (about sqrt(N)).
        probes: cells scanned per query; 0 for the library's default.
        eps: the cosine similarity's guard.
    """

    def __init__(
        self,
        library: ctypes.CDLL,
        slots: int,
        width: int,
        cells: int = 0,
        probes: int = 0,
        eps: float = 1e-8,
    ) -> None:
        self.library, self.slots, self.width = library, slots, width
        self.handle = library.sam_index_new(slots, width, ctypes.byref(_Params(cells, probes, eps)))
        if not self.handle:
            raise ValueError(f"sam_index_new({slots}, {width}, cells={cells}, probes={probes})")

    def close(self) -> None:
        """Free the C index (``sam_index_free``); the object is unusable after."""
        if self.handle:
            self.library.sam_index_free(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()

    def update(self, slots: Tensor, rows: Tensor) -> None:
        """Rows ``rows`` (C, W) now in ``slots`` (C,), in order."""
        rows = _floats(rows, self.width)
        slots = slots.to(torch.int64).contiguous()
        status = self.library.sam_index_update_many(
            self.handle, slots.data_ptr(), rows.data_ptr(), len(slots)
        )
        _check(status, "update")

    def query(self, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest slots to each key, best first, and their similarities.

        Shape:
            keys (R, W) -> (R, K) int64, (R, K) float32
        """
        keys = _floats(keys, self.width)
        out = torch.empty(len(keys), k, dtype=torch.int64)
        scores = torch.empty(len(keys), k)
        status = self.library.sam_index_query_many(
            self.handle, keys.data_ptr(), len(keys), k, out.data_ptr(), scores.data_ptr()
        )
        _check(status, "query")
        return out, scores

    def reset(self) -> None:
        """Every slot back to never written."""
        self.library.sam_index_reset(self.handle)

    @property
    def rows(self) -> int:
        """Written rows held."""
        return int(self.library.sam_index_rows(self.handle))

    @property
    def bytes(self) -> int:
        """Bytes the index has allocated."""
        return int(self.library.sam_index_bytes(self.handle))

    @property
    def reset_work(self) -> int:
        """Slots the last reset cleared."""
        return int(self.library.sam_index_reset_work(self.handle))

    @property
    def cells(self) -> int:
        return int(self.library.sam_index_cells(self.handle))

    @property
    def probes(self) -> int:
        return int(self.library.sam_index_probes(self.handle))

    @probes.setter
    def probes(self, probes: int) -> None:
        _check(self.library.sam_index_set_probes(self.handle, probes), f"probes = {probes}")


def exact_topk(
    library: ctypes.CDLL, memory: Tensor, keys: Tensor, k: int, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """``sam_exact_topk``: the exact ``k`` nearest rows of ``memory`` to each key.

    Shape:
        memory (N, W), keys (R, W) -> (R, K) int64, (R, K) float32
    """
    memory = _floats(memory, memory.shape[-1])
    keys = _floats(keys, memory.shape[1])
    out = torch.empty(len(keys), k, dtype=torch.int64)
    scores = torch.empty(len(keys), k)
    status = library.sam_exact_topk(memory.data_ptr(), memory.shape[0], memory.shape[1],
                                    keys.data_ptr(), len(keys), k, eps, out.data_ptr(),
                                    scores.data_ptr())  # fmt: skip
    _check(status, "exact_topk")
    return out, scores
