"""The package as a user gets it: the wheel built from this checkout, installed into a new
virtual environment, its ``ntm`` command run from a folder outside the checkout. Catches a
file the package needs at run time (the native engine's C sources, the viewer's page, the
shipped models) that the wheel leaves out.

Run on its own with ``pytest -m install``."""

import importlib.util
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from ntm.engines import native
from ntm.runs import checkpoint as ckpt

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "ntm"
NATIVE = native.native_available()


def _run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``command`` run in ``cwd`` with PYTHONPATH unset, so that nothing of the checkout is
    importable unless the install put it there."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        command,
        cwd=cwd,
        env={**environ, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _said(done: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(done.args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"


class Installed:
    def __init__(self, wheel: Path, bin_dir: Path, elsewhere: Path) -> None:
        self.wheel = wheel
        self.python = bin_dir / "python"
        self.ntm = bin_dir / "ntm"
        self.elsewhere = elsewhere


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel of this checkout, installed with ``--no-deps`` into a new virtual
    environment that finds torch and the other dependencies where this interpreter does."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist)]
    if importlib.util.find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # offline: the build backend is here already
    done = _run([*build, str(ROOT)], base)
    assert done.returncode == 0, _said(done)
    (wheel,) = dist.glob("torch_ntm-*.whl")

    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    # --system-site-packages would give the base interpreter's packages, not those of the
    # virtual environment this test may run in; a .pth line per folder gives this one's,
    # without running its own .pth files (an editable install of the checkout among them).
    (site,) = env_dir.glob("lib/python3*/site-packages")
    from_here = [str(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in from_here))
    bin_dir = env_dir / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index"]
    done = _run([*pip, str(wheel)], base)
    assert done.returncode == 0, _said(done)

    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return Installed(wheel, bin_dir, elsewhere)


def test_the_wheel_holds_every_file_of_the_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("ntm/")}
    here = {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert here - shipped == set(), "files of src/ntm missing from the wheel"
    for needed in (
        "ntm/py.typed",
        "ntm/engines/native/kernels.h",
        "ntm/engines/native/ntm_sequence.c",
        "ntm/pictures/viewer.html",
        "ntm/runs/pretrained/ntm/copy/model.safetensors",
    ):
        assert needed in shipped, f"{needed} missing from {installed.wheel.name}"


def test_the_installed_package_is_imported_not_the_checkout(installed: Installed) -> None:
    done = _run(
        [str(installed.python), "-c", "import ntm; print(ntm.__file__)"], installed.elsewhere
    )
    assert done.returncode == 0, _said(done)
    imported = Path(done.stdout.strip())
    assert imported.is_relative_to(installed.python.parent.parent), _said(done)
    assert not imported.is_relative_to(ROOT), _said(done)


def test_the_installed_command_evaluates_a_shipped_model(installed: Installed) -> None:
    command = [str(installed.ntm), "eval", "--pretrained", "copy", "--size", "32"]
    done = _run([*command, "--device", "cpu"], installed.elsewhere)
    assert done.returncode == 0, _said(done)
    header, *rows = done.stdout.splitlines()
    assert header.split()[:2] == ["setting", "sequences"], _said(done)
    assert rows and rows[0].startswith("training distribution"), _said(done)


@pytest.mark.skipif(NATIVE is not None, reason=f"native engine: {NATIVE}")
def test_the_installed_command_trains_with_the_native_engine(
    installed: Installed, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    flags = [
        "--task", "copy", "--max-sequences", "64", "--batch-size", "16", "--eval-every", "32",
        "--eval-size", "16", "--engine", "native", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    command = [str(installed.ntm), "train", *flags, "--run-dir", str(run_dir), "--nproc", "1"]
    # A cache of its own: the library is built from the installed C sources, not found.
    done = _run(command, installed.elsewhere, NTM_CACHE_DIR=str(tmp_path / "cache"))
    assert done.returncode == 0, _said(done)
    assert (run_dir / ckpt.CONFIG_FILE).is_file(), _said(done)
    checkpoint = ckpt.latest_checkpoint(run_dir)
    assert (checkpoint / ckpt.MODEL_FILE).is_file()
    log = (run_dir / ckpt.LOG_FILE).read_text()
    assert "native engine" not in log, f"the native engine was not used:\n{log}"
    assert list((tmp_path / "cache").glob("ntm_native-*.so")), _said(done)
