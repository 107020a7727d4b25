"""Sweeps on a Ray cluster: ``ntm sweep --backend ray [--address ADDR] [--stop asha]``.

The grid, run folders, summary, curves and resume are :mod:`ntm.sweeps.local`'s; only where the
runs train differs. Each run not yet ended is one Ray Tune trial with its resources (one
CPU, or ``--trial-cpus``; a GPU when the runs train on ``--device cuda``), placed by Ray on
any node of the cluster that ``--address`` names (``auto``: the one running on this
machine; none: a local Ray started for the sweep). A trial starts or resumes the run's
``ntm train`` as a child process (the same command as the local backend's), so a run's
folder, checkpoints and metrics are those of a local run, and reports each held-out
evaluation (sequences, cost) to Tune as it appears in ``metrics.csv``.

Storage. A trial that sees the sweep folder (the driver leaves a probe file there: the
folder is on storage shared by the nodes, or the trial is on the driver's machine) trains
in it. One that does not trains in a folder on its own node and sends the whole run folder
to the driver after every evaluation and at its end, through a small actor on the driver's
node; a trial whose node has no copy, or an older one, fetches the driver's first, so a run
resumes from its last evaluation's checkpoint wherever it lands. ``--storage shared`` or
``copy`` chooses instead of the probe.

Early stopping (``--stop asha``): Tune's ASHA scheduler compares the trials' held-out cost
at rungs of ``--stop-grace`` x ``--stop-factor`` ** k sequences and stops those below the
best 1 / factor of the trials that reached the rung; a stopped run gets its
``result.json`` with ``stopped_at`` (the sequences of the evaluation it was stopped at) once
its trainer has stopped, and is not resumed. A run at its budget is never stopped.

Faults. A trial whose worker dies (its node lost, its process killed) is retried by Tune at
most twice; the retry resumes the run from its last checkpoint (on the same node or shared
storage it first waits for the killed worker's ``ntm train``, which gets SIGTERM on Linux,
saves and exits; elsewhere it starts from the driver's copy, of the last evaluation), and
``result.json`` counts the retries. A run that ``ntm train`` refuses or fails is not
retried. A cluster that cannot be reached is a :class:`RayUnavailableError` before any trial
starts. Ctrl-C on the driver stops the trials, whose runs save their checkpoints; the same
command resumes them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ntm.runs import checkpoint as ckpt
from ntm.sweeps import local as sweep
from ntm.training import launch

#: The file the driver leaves in the sweep folder: a trial that reads the same token there
#: trains in the sweep folder itself.
PROBE_FILE = ".ray-probe"
#: Tune's own records of the sweep's trials, inside the sweep folder.
TUNE_FOLDER = ".ray"
STORAGE_CHOICES = ("auto", "shared", "copy")
#: Retries of a trial whose worker died (the issue's "at most twice").
MAX_RETRIES = 2


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster named by ``--address`` cannot be reached."""


def load_ray() -> Any:
    """The ``ray`` package, imported only here and in the trials: this module (and the
    command line, which imports it) works without Ray, and the local backend never loads
    it. Raises :class:`RayUnavailableError` where it is not installed."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.tune")
    except ImportError:
        raise RayUnavailableError("--backend ray needs Ray: pip install 'torch-ntm[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: a local Ray for this sweep; "auto": the running one
    cpus: float = 1.0  # per trial: the run trains in as many processes (one with a GPU)
    gpus: float = 0.0  # per trial
    stop: str = "none"  # or "asha"
    grace: int = 0  # ASHA's first rung, in sequences
    factor: float = 3.0  # ASHA's reduction factor
    max_sequences: int = 0  # the runs' budget: ASHA's last rung is below it
    storage: str = "auto"
    jobs: int | None = None  # trials at a time (None: as many as the cluster holds)


def connect(address: str | None) -> Any:
    """Ray, connected to the cluster at ``address`` (None: a local one started here); raises
    :class:`RayUnavailableError` in one line when it cannot be reached."""
    ray = load_ray()
    if address and address.startswith("ray://"):
        raise RayUnavailableError(
            f"--address {address}: Ray Client addresses are not supported (the sweep records "
            "its runs where it runs); run ntm sweep on a node of the cluster with --address "
            "auto or HOST:PORT"
        )
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=10):
                pass
        except (OSError, ValueError) as error:
            raise RayUnavailableError(
                f"no Ray cluster at --address {address}: {error} (start one with "
                "`ray start --head`, or leave --address out for a local Ray)"
            ) from None
    try:
        ray.init(
            address=address,
            logging_level=logging.ERROR,
            log_to_driver=False,
            include_dashboard=False if address is None else None,
            configure_logging=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        hint = (
            ""
            if os.environ.get("RAY_AUTH_MODE") or address in (None, "auto")
            else " (a cluster with token authentication also needs RAY_AUTH_MODE=token and its "
            "token, from `ray get-auth-token` on the head)"
        )
        raise RayUnavailableError(f"no Ray cluster at --address {address}: {first}{hint}") from None
    return ray


def pack(run_dir: Path) -> bytes:
    """A run folder as tar bytes: its files but the lock and the trainer's temporary files
    (names that begin with a dot), read while the run may be saving a checkpoint. A file
    that disappears while it is read (an old checkpoint pruned), or a ``latest`` that names
    a checkpoint not read, makes it read the folder again."""
    for _ in range(100):
        files: dict[str, bytes] = {}
        try:
            for path in sorted(run_dir.rglob("*")):
                relative = path.relative_to(run_dir)
                if path.is_file() and not any(p.startswith(".") for p in relative.parts):
                    files[relative.as_posix()] = path.read_bytes()
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        latest = files.get(f"{ckpt.CHECKPOINTS}/{ckpt.LATEST}", b"").decode().strip()
        if latest and not any(name.startswith(f"{ckpt.CHECKPOINTS}/{latest}/") for name in files):
            time.sleep(0.05)
            continue
        break
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sequences_in(run_dir: Path) -> int:
    """How far a run folder's copy has trained: the sequences of its last evaluation."""
    if not (run_dir / ckpt.METRICS_FILE).is_file():
        return -1
    rows = ckpt.read_metrics(run_dir)
    return int(rows[-1]["sequences"]) if rows else 0


def unpack(data: bytes, run_dir: Path) -> None:
    """Replace ``run_dir`` by the folder in ``data`` (written beside it, then renamed, so a
    reader sees the old folder or the new one)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}-", dir=run_dir.parent))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(fresh, filter="data")
    old = run_dir.with_name(f".{run_dir.name}-old-{uuid.uuid4().hex[:8]}")
    if run_dir.exists():
        run_dir.rename(old)
    fresh.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)


class Depot:
    """On the driver's node: the copies of run folders sent by trials that train away from
    the sweep folder (a Ray actor; its methods run one at a time)."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def store(self, relative: str, data: bytes, log: bytes) -> None:
        run_dir = self.out / relative
        unpack(data, run_dir)
        sweep.output_file(run_dir).write_bytes(log)

    def fetch(self, relative: str, have: int) -> bytes | None:
        """The run's folder, if this copy has trained further than ``have`` sequences."""
        run_dir = self.out / relative
        if not (run_dir / ckpt.CONFIG_FILE).is_file() or sequences_in(run_dir) <= have:
            return None
        return pack(run_dir)


def _wait_unlocked(run_dir: Path) -> None:
    """Wait while another process holds the run (a killed worker's child saving its last
    checkpoint before it exits)."""
    while True:
        try:
            ckpt.RunLock.acquire(run_dir, create=False).release()
            return
        except ckpt.RunError:
            time.sleep(0.5)
        except FileNotFoundError:  # no folder yet: nobody holds it
            return


def retries_file(run_dir: Path) -> Path:
    """Beside a run's folder: how often its trial was retried after its worker was lost."""
    return run_dir.parent / f"{run_dir.name}.retries"


def retries_of(run_dir: Path) -> int:
    path = retries_file(run_dir)
    return int(path.read_text()) if path.is_file() else 0


@dataclass(frozen=True)
class Place:
    """What every trial of one sweep needs besides its job."""

    out: str  # the sweep folder, absolute, as the driver sees it
    cwd: str  # the driver's working folder: relative paths in the runs' flags start there
    token: str  # the probe file's content
    storage: str  # auto, shared or copy
    nproc: int  # processes per run
    gpus: float  # GPUs per run


def trial(
    config: dict[str, Any],
    *,
    jobs: list[sweep.Job],
    command: Callable[[sweep.Job], list[str]],
    place: Place,
    depot: Any,
) -> None:
    """One Tune trial: train (or resume) job ``config["index"]``'s run as a child process,
    reporting every new row of its ``metrics.csv`` (sequences, held-out cost). ``ended`` is 1
    in the rows read once the run has trained to its end, ``failed`` 1 in a last report when
    ``ntm train`` refused or failed (no retry: it would fail again). A child killed by a
    signal other than SIGTERM raises, and Tune retries the trial."""
    ray, tune = load_ray(), importlib.import_module("ray.tune")
    job = jobs[config["index"]]
    relative = job.run_dir.relative_to(place.out)
    probe = Path(place.out) / PROBE_FILE
    shared = place.storage == "shared" or (
        place.storage == "auto" and probe.is_file() and probe.read_text() == place.token
    )
    if shared:
        run_dir = job.run_dir
    else:  # this node's copy, unless the driver's has trained further (another node's)
        run_dir = Path(tempfile.gettempdir()) / "ntm-sweeps" / place.token / relative
        data = ray.get(depot.fetch.remote(str(relative), sequences_in(run_dir)))
        if data is not None:
            unpack(data, run_dir)
    _wait_unlocked(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = sweep.output_file(run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NTM_NPROC": str(place.nproc)}
    if not place.gpus:  # a run without a GPU of its own must not take one it sees
        env["CUDA_VISIBLE_DEVICES"] = ""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command(replace(job, run_dir=run_dir)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=place.cwd if Path(place.cwd).is_dir() else None,
            preexec_fn=launch.stop_with_parent,  # noqa: PLW1509 - one libc call, no locks
        )
    reported = 0
    last: dict[str, float] = {"sequences": 0, "eval_cost": math.nan}
    while True:
        code = process.poll()
        rows = ckpt.read_metrics(run_dir) if (run_dir / ckpt.METRICS_FILE).is_file() else []
        fresh = rows[reported:]
        if not shared and (fresh or code is not None):
            ray.get(depot.store.remote(str(relative), pack(run_dir), log_path.read_bytes()))
        for row in fresh:
            last = {"sequences": int(row["sequences"]), "eval_cost": row["eval_cost"]}
            tune.report({**last, "ended": int(code == 0), "failed": 0})
        reported = max(reported, len(rows))
        if code is not None:
            break
        time.sleep(0.5)
    if code < 0 and code != -15:  # killed, not asked to stop: worth another try
        raise RuntimeError(f"ntm train was killed by signal {-code}; see {log_path}")
    if not shared and code == 0:  # the driver has it all: the node's copy is done with
        shutil.rmtree(run_dir, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    failed = int(code not in (0, 130, -15))
    tune.report({**last, "ended": int(code == 0), "failed": failed})


def run(
    jobs: list[sweep.Job],
    command: Callable[[sweep.Job], list[str]],
    target: float,
    out: Path,
    options: RayOptions,
    quiet: bool = False,
) -> int:
    """The jobs not yet ended, as trials on Ray. Returns 0, or 130 when interrupted (the
    same command resumes), or 1 when a run failed."""
    ray = connect(options.address)
    tune = importlib.import_module("ray.tune")
    schedulers = importlib.import_module("ray.tune.schedulers")
    affinity = importlib.import_module("ray.util.scheduling_strategies")
    progress_class, asha_class = _tune_classes(tune, schedulers)
    out = out.resolve()
    jobs = [replace(job, run_dir=job.run_dir.resolve()) for job in jobs]
    waiting = sweep.todo(jobs)
    if not waiting:
        return 0
    token = uuid.uuid4().hex
    ckpt.write_text_atomic(out / PROBE_FILE, token)
    here = ray.get_runtime_context().get_node_id()
    depot = (
        ray.remote(Depot)
        .options(
            num_cpus=0,
            scheduling_strategy=affinity.NodeAffinitySchedulingStrategy(here, soft=False),
        )
        .remote(str(out))
    )
    place = Place(
        out=str(out),
        cwd=str(Path.cwd()),
        token=token,
        storage=options.storage,
        nproc=1 if options.gpus else max(1, int(options.cpus)),  # one process per GPU
        gpus=options.gpus,
    )
    trainable = tune.with_resources(
        tune.with_parameters(trial, jobs=waiting, command=command, place=place, depot=depot),
        {"cpu": options.cpus, "gpu": options.gpus},
    )
    scheduler: Any = schedulers.FIFOScheduler()
    if options.stop == "asha":
        scheduler = asha_class(
            options.max_sequences,
            time_attr="sequences",
            metric="eval_cost",
            mode="min",
            grace_period=options.grace,
            reduction_factor=options.factor,
            max_t=max(options.max_sequences, options.grace) + 1,
        )
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0: Tune prints nothing
    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # nor its advice on Tuner.restore
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(waiting), unit="run", disable=quiet)
    # Our ASHA subclass notes what it stopped; another scheduler has no such record.
    stopped: dict[int, int] = getattr(scheduler, "stopped", {})
    progress = progress_class(waiting, target, bar, stopped)
    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(list(range(len(waiting))))},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, reuse_actors=False, max_concurrent_trials=options.jobs
        ),
        run_config=tune.RunConfig(
            name=f"sweep-{token[:8]}",
            storage_path=str(out / TUNE_FOLDER),
            failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
            verbose=0,
            callbacks=[progress],
        ),
    )
    with bar:
        with contextlib.suppress(KeyboardInterrupt):
            tuner.fit()
        # A stopped run's trainer stops when its worker does: it is recorded once it has.
        for k in sorted(progress.stopped):
            job = waiting[k]
            if place.storage != "copy":
                _wait_unlocked(job.run_dir)
            progress.record(k, sweep.finish(job, target, stopped[k], retries_of(job.run_dir)))
    with contextlib.suppress(Exception):
        ray.shutdown()
    if len(progress.ended) + len(progress.failed) < len(waiting):
        return 130
    return 1 if progress.failed else 0


def _trial_index(trial: Any) -> int:
    return int(trial.config["index"])


def _tune_classes(tune: Any, schedulers: Any) -> tuple[Any, Any]:
    """The sweep's Tune callback and scheduler, subclasses of Tune's (made here, where Ray
    has been imported)."""

    class Progress(tune.Callback):  # type: ignore[misc]
        """Records each trial as it ends (``result.json``, a line, the progress bar), and counts
        the retries of a trial whose worker was lost (beside its run folder: a later sweep that
        resumes the run adds to them)."""

        def __init__(
            self, jobs: list[sweep.Job], target: float, bar: tqdm, stopped_at: dict[int, int]
        ) -> None:
            self.jobs = jobs
            self.target = target
            self.bar = bar
            self.stopped_at = stopped_at  # the scheduler's: trial -> sequences where it stopped it
            self.ended: set[int] = set()
            self.failed: set[int] = set()
            self.stopped: set[int] = set()  # by the scheduler: recorded once their runs stop

        def record(self, k: int, line: str) -> None:
            self.ended.add(k)
            self.bar.update(1)
            self.bar.write(line, file=sys.stderr)

        def on_trial_recover(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            run_dir = self.jobs[_trial_index(trial)].run_dir
            ckpt.write_text_atomic(retries_file(run_dir), str(retries_of(run_dir) + 1))

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            k = _trial_index(trial)
            job = self.jobs[k]
            result = trial.last_result or {}
            if result.get("failed") == 1:
                self._failed(k, "ntm train failed")
            elif k in self.stopped_at:
                self.stopped.add(k)
            elif result.get("ended") == 1:
                self.record(k, sweep.finish(job, self.target, None, retries_of(job.run_dir)))
            # else: interrupted, and resumed by the next sweep

        def on_trial_error(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self._failed(_trial_index(trial), f"its worker was lost {MAX_RETRIES + 1} times")

        def _failed(self, k: int, why: str) -> None:
            job = self.jobs[k]
            self.failed.add(k)
            self.bar.write(
                f"{job.setting} seed {job.seed}: {why}; see {sweep.output_file(job.run_dir)}",
                file=sys.stderr,
            )

    class RecordingAsha(schedulers.ASHAScheduler):  # type: ignore[misc]
        """Tune's ASHA scheduler, noting which trials it stopped and at how many sequences. A
        run that has trained to its end (``max_sequences``) is left to end."""

        def __init__(self, max_sequences: int, **settings: Any) -> None:
            super().__init__(**settings)
            self.max_sequences = max_sequences
            self.stopped: dict[int, int] = {}

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            ended = result.get("ended") or result.get("failed")
            if ended or result.get("sequences", 0) >= self.max_sequences:
                return str(self.CONTINUE)
            if not math.isfinite(result.get("eval_cost", math.nan)):
                return str(self.CONTINUE)  # nothing to compare yet
            decision = str(super().on_trial_result(tune_controller, trial, result))
            if decision == self.STOP:
                self.stopped[_trial_index(trial)] = int(result["sequences"])
            return decision

    return Progress, RecordingAsha
