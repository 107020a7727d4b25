"""Run folders: configuration, metrics and checkpoints, written atomically, loaded safely.

A run folder holds::

    config.json                   everything needed to rebuild model, task and optimiser
    metrics.csv                   one row per evaluation
    train.log                     the lines the trainer printed
    checkpoints/step-000000123/   model.safetensors + trainer.pt (optimiser state, counters,
                                  last held-out result)
    checkpoints/latest            name of the newest complete checkpoint
    checkpoints/best/             model.safetensors + best.json: the model at its lowest
                                  held-out cost so far
    .lock                         while a process trains the run: which one

``config.json`` and every checkpoint file are written to a temporary name and renamed into
place, and a checkpoint folder becomes ``latest`` only once it is complete, so a crash at
any moment leaves the previous checkpoint readable. ``metrics.csv`` and ``train.log`` grow
by appended lines; a line cut short by a crash is dropped when the metrics are read, and a
resumed run rewrites ``metrics.csv`` (atomically) up to its checkpoint. Loading never
unpickles arbitrary objects: weights come through safetensors, the configuration through
JSON, the trainer state through ``torch.load(weights_only=True)``. The training data need
no saved random state: each sequence's generator is seeded by the run's seed and its place
(:func:`ntm.training.data.sequence_seed`), and what a batch shares (a Chomsky task's length)
by the run's seed and the update (:func:`ntm.training.data.update_seed`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

if sys.platform != "win32":
    import fcntl

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"
LOCK_FILE = ".lock"
METRICS_COLUMNS = (
    "sequences",
    "seconds",
    "train_cost",
    "train_bit_errors",
    "eval_cost",
    "eval_bit_errors",
    "skipped_steps",
    "lr",
    "stage",
    "target_met",
)
#: Columns that runs written before they existed lack; read as NaN there.
OPTIONAL_COLUMNS = ("lr", "stage", "target_met")
BEST = "best"
BEST_FILE = "best.json"
#: How a run's last stretch of training ended (``ended.json``: reason, sequences, seconds);
#: absent while it trains or after an interruption.
ENDED_FILE = "ended.json"
#: A run whose end was recorded and that trains again keeps its record here until its first
#: checkpoint of the new stretch: a run stopped before that checkpoint, whose latest one
#: still says why it ended, then trains again on resume (a run without either file, whose
#: latest checkpoint says why it ended, stopped before it recorded that).
RESUMED_FILE = "ended.resumed.json"
#: Why a stretch of training ends: its target met, converged (no new best held-out cost in
#: ``--stop-patience`` evaluations), the plateau schedule at its floor without progress, or
#: ``--max-sequences`` reached (its cap).
END_REASONS = ("target", "converged", "floor", "budget")
#: How many complete checkpoints to keep.
KEEP = 2


class RunError(ValueError):
    """A run folder is missing, incomplete or does not match what was asked."""


class RunLock:
    """One process's hold on a run folder while it trains it: a second ``ntm train`` on the
    folder is refused, with the holder named. The hold is an ``flock`` on ``.lock``, which
    the system drops when the holder dies, so a lock file left by a killed process is stale
    and taken over. (On Windows, which has no ``flock``, nothing is locked.)"""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._handle = handle

    @classmethod
    def acquire(cls, run_dir: Path, *, create: bool) -> RunLock:
        """Hold ``run_dir`` (made first if ``create``), or raise a RunError naming the
        process that holds it."""
        if create:
            run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_FILE
        while True:
            handle = path.open("a+")
            if sys.platform == "win32":  # pragma: no cover - no flock there
                return cls(path, handle)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise RunError(
                    f"run folder {str(run_dir)!r} is in use by {holder}; wait for it to "
                    "finish or stop it"
                ) from None
            # The holder before us may have removed the file between our open and our
            # lock: then we hold a file nobody else can see, so try again.
            if path.exists() and os.fstat(handle.fileno()).st_ino == path.stat().st_ino:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"process {os.getpid()} on {socket.gethostname()} (since {started})\n")
        handle.flush()
        return cls(path, handle)

    def release(self) -> None:
        """Remove the lock file, then let go (in that order, so no process can lock a file
        that is about to disappear)."""
        if self._handle.closed:
            return
        if sys.platform == "win32":  # pragma: no cover - an open file cannot be removed there
            self._handle.close()
        self.path.unlink(missing_ok=True)
        self._handle.close()

    def __del__(self) -> None:  # a holder dropped without release() lets go when collected
        self.release()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success, fsync it and rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_text_atomic(run_dir / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.json`` as a dict; a clear error when it is missing or corrupt."""
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunError(f"run folder {str(run_dir)!r} does not exist")
    if not path.is_file():
        raise RunError(f"{str(run_dir)!r} is not a run folder: it has no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Rewrite ``metrics.csv`` with exactly ``rows`` (used when a run resumes)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / METRICS_FILE, buffer.getvalue())


def append_metrics(run_dir: Path, row: dict[str, float]) -> None:
    path = run_dir / METRICS_FILE
    with path.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=METRICS_COLUMNS).writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


#: Columns of ``metrics.csv`` that count things.
COUNT_COLUMNS = ("sequences", "skipped_steps", "stage", "target_met")


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` as floats; an incomplete last line (a crash) is dropped."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                values = {
                    k: float(row[k]) if row.get(k) not in (None, "") or k not in OPTIONAL_COLUMNS
                    else math.nan
                    for k in METRICS_COLUMNS
                }  # fmt: skip
            except (TypeError, ValueError, KeyError):
                break
            for k in COUNT_COLUMNS:  # counts stay integers when the file is written again
                if values[k].is_integer():
                    values[k] = int(values[k])
            rows.append(values)
    return rows


def append_log(run_dir: Path, line: str) -> None:
    with (run_dir / LOG_FILE).open("a") as handle:
        handle.write(line + "\n")


@dataclass
class Checkpoint:
    """What a checkpoint holds: model tensors and the trainer's state."""

    model: dict[str, torch.Tensor]
    trainer: dict[str, Any]
    path: Path


def save_checkpoint(
    run_dir: Path, sequences: int, model: nn.Module, trainer_state: dict[str, Any]
) -> Path:
    """Write a complete checkpoint folder, then point ``latest`` at it; keep the newest few."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{sequences:012d}"
    final = root / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(staging / MODEL_FILE))
        torch.save(trainer_state, staging / TRAINER_FILE)
        for file in staging.iterdir():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(staging)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        _fsync_dir(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    write_text_atomic(root / LATEST, name + "\n")
    complete = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in complete[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_best(run_dir: Path, model: nn.Module, info: dict[str, Any]) -> Path:
    """Write ``checkpoints/best/`` (the model and ``best.json``: ``info``, its sequences and
    held-out result), replacing the one before only once the new one is complete."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / BEST
    staging = Path(tempfile.mkdtemp(prefix=f".{BEST}.", dir=root))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(staging / MODEL_FILE))
        (staging / BEST_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        for file in staging.iterdir():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        old = root / f".{BEST}.old"
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def best_checkpoint(run_dir: Path) -> Path | None:
    """The folder of the run's best model so far, or None when it has none."""
    folder = run_dir / CHECKPOINTS / BEST
    return folder if (folder / MODEL_FILE).is_file() else None


def write_ended(
    run_dir: Path, reason: str, sequences: int, seconds: float, engine: str = ""
) -> None:
    """Record why the run's training ended (:data:`ENDED_FILE`), and the engine its last
    stretch of training ran on (``""``: a model without engines)."""
    record = {"reason": reason, "sequences": sequences, "seconds": seconds, "engine": engine}
    write_text_atomic(run_dir / ENDED_FILE, json.dumps(record) + "\n")
    drop_ended_aside(run_dir)


def set_ended_aside(run_dir: Path) -> None:
    """A run whose end was recorded trains again: its record waits aside
    (:data:`RESUMED_FILE`) until the new stretch's first checkpoint."""
    ended = run_dir / ENDED_FILE
    if ended.is_file():
        ended.replace(run_dir / RESUMED_FILE)


def ended_aside(run_dir: Path) -> int | None:
    """The sequences of the end's record set aside, or None when none is (or it cannot be
    read)."""
    try:
        return int(json.loads((run_dir / RESUMED_FILE).read_text())["sequences"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def drop_ended_aside(run_dir: Path) -> None:
    """Let go of the end's record set aside: the new stretch has a checkpoint, or a record
    of its own."""
    (run_dir / RESUMED_FILE).unlink(missing_ok=True)


def read_ended(run_dir: Path) -> dict[str, Any] | None:
    """Why the run's training ended, or None while it trains, after an interruption, or for
    a run recorded before runs said so."""
    path = run_dir / ENDED_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is not valid JSON: {error}") from None
    return data if isinstance(data, dict) else None


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """What ``best.json`` says of the best model (sequences, held-out result), or None."""
    folder = best_checkpoint(run_dir)
    if folder is None or not (folder / BEST_FILE).is_file():
        return None
    try:
        data = json.loads((folder / BEST_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{folder / BEST_FILE} is not valid JSON: {error}") from None
    return data if isinstance(data, dict) else None


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint folder of a run."""
    root = run_dir / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / MODEL_FILE).is_file() and (candidate / TRAINER_FILE).is_file():
            return candidate
    complete = sorted(
        p
        for p in root.glob("step-*")
        if p.is_dir() and (p / MODEL_FILE).is_file() and (p / TRAINER_FILE).is_file()
    )
    if not complete:
        raise RunError(f"run folder {str(run_dir)!r} has no complete checkpoint")
    return complete[-1]


def load_model_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``model.safetensors`` file, with a clear error when it is corrupt."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise RunError(f"{path} is not a readable safetensors file: {error}") from None


def load_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state, loaded with ``weights_only=True``: no code in the file can run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RunError(
            f"{path} cannot be loaded safely (only tensors and plain values are accepted): "
            f"{str(error).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: expected a dict of trainer state, got {type(state).__name__}")
    return state


def load_checkpoint(run_dir: Path) -> Checkpoint:
    path = latest_checkpoint(run_dir)
    return Checkpoint(
        model=load_model_tensors(path / MODEL_FILE),
        trainer=load_trainer_state(path / TRAINER_FILE),
        path=path,
    )


def load_weights_strict(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Copy ``tensors`` into ``model``; name every missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected)}")
    for key in sorted(set(expected) & set(tensors)):
        if expected[key].shape != tensors[key].shape:
            problems.append(
                f"{key} has shape {tuple(tensors[key].shape)}, "
                f"the config expects {tuple(expected[key].shape)}"
            )
    if problems:
        raise RunError(f"{source} does not match its config: {'; '.join(problems)}")
    model.load_state_dict(tensors, strict=True)
