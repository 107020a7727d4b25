"""``ntm viz --html``, tested in a real browser (Debian's chromium driven by Playwright), and
``ntm train --tensorboard``.

The browser tests skip where Playwright or chromium is missing, unless ``NTM_BROWSER_TESTS``
is ``required`` (``.ci/run`` sets it, having installed both): then they fail. The default run
opens one page (the shipped NTM's); the rest are marked ``browser``.
"""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ntm import cli
from ntm.pictures import board, viewer
from ntm.runs import pretrained
from ntm.runs.config import resolve_config
from ntm.runs.evaluation import HELD_OUT_SEED
from ntm.runs.load import load_run
from ntm.training import trainer as training

from .conftest import TINY_TASK, TINY_TRAIN, tiny_run

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _browser_or_skip() -> tuple[Any, str]:
    """Playwright's sync API and the system chromium's path, or a skip (a failure where
    the browser tests are required)."""
    required = os.environ.get("NTM_BROWSER_TESTS") == "required"
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional)
    except ImportError:
        if required:
            pytest.fail("NTM_BROWSER_TESTS=required but playwright is not installed")
        pytest.skip("playwright is not installed")
    found = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    if found is None:
        if required:
            pytest.fail("NTM_BROWSER_TESTS=required but no chromium is installed")
        pytest.skip("no chromium here (apt-get install -y chromium)")
    return sync_playwright, found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright, executable = _browser_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module", params=["ntm", pytest.param("dnc", marks=pytest.mark.browser)])
def shipped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The page of the shipped copy model (NTM or DNC), with the model and its run."""
    model_name = request.param
    run_dir = pretrained.path("copy", model_name)
    out = tmp_path_factory.mktemp(f"viewer-{model_name}")
    path = viewer.draw_page(run_dir, out)
    run, model = load_run(run_dir)
    return path, run, model


class Page:
    """A page of the viewer open in the browser, with the console errors it raised."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1600, "height": 1100})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("#memory")

    def step(self) -> int:
        return int(re.match(r"step (\d+)", self.page.inner_text("#step")).group(1))  # type: ignore[union-attr]

    def slide_to(self, step: int) -> None:
        """Move the slider as a person does: focus it, then arrow keys from where it is."""
        self.page.focus("#slider")
        key = "ArrowRight" if step > self.step() else "ArrowLeft"
        for _ in range(abs(step - self.step())):
            self.page.keyboard.press(key)
        assert self.step() == step

    def hover(self, selector: str, x: float, y: float) -> str:
        """The tooltip's text with the mouse at (x, y) pixels inside ``selector``."""
        box = self.page.locator(selector).bounding_box()
        self.page.mouse.move(box["x"] + x, box["y"] + y)
        return self.page.inner_text("#tip")

    def cell(self, selector: str, row: int, column: int) -> float:
        """The value the tooltip shows for a cell of a grid canvas."""
        canvas = self.page.locator(selector)
        rows = int(canvas.get_attribute("data-rows"))
        columns = int(canvas.get_attribute("data-cols"))
        box = canvas.bounding_box()
        text = self.hover(
            selector,
            (column + 0.5) * box["width"] / columns,
            (row + 0.5) * box["height"] / rows,
        )
        return float(text.rsplit(": ", 1)[1])


def _trace(run: Any, model: Any, sequence: int) -> Any:
    _, batch = viewer.offered(run, HELD_OUT_SEED)[sequence]
    with torch.no_grad():
        return model.trace(batch.inputs)[2]


def test_the_page_shows_the_models_trace_at_the_steps_it_is_moved_to(
    browser: Any, shipped: Any
) -> None:
    path, run, model = shipped
    assert path.stat().st_size < 5_000_000
    page = Page(browser, path)
    trace = _trace(run, model, 0)
    steps = trace.memory.shape[0]
    assert page.step() == 0 and f"of {steps - 1}" in page.page.inner_text("#step")
    writes = trace.write_weights[:, 0]
    writes = writes if writes.dim() == 3 else writes.unsqueeze(1)  # (T, W, N)
    heads = writes.shape[1] + trace.read_weights.shape[2]
    for step in (3, steps // 2, steps - 1):
        page.slide_to(step)
        for slot, element in ((0, 0), (5, 7), (int(writes[step, 0].argmax()), 3)):
            shown = page.cell("#memory", slot, heads + 1 + element)
            assert shown == pytest.approx(float(trace.memory[step, 0, slot, element]), abs=2e-4)
            shown = page.cell("#memory", slot, 0)  # the first write head's column
            assert shown == pytest.approx(float(writes[step, 0, slot]), abs=1e-4)
        text = page.hover("#memory", 5, 1)
        assert f"step {step}" in text and "slot 0" in text
        # The bars of the first read head, at its strongest slot.
        read = trace.read_weights[step, 0, 0]
        slot = int(read.argmax())
        bars = page.page.locator("#bars-read-head-0")
        width = bars.bounding_box()["width"] / read.shape[0]
        text = page.hover("#bars-read-head-0", (slot + 0.5) * width, 10)
        assert f"slot {slot} · step {step}" in text
        assert float(text.rsplit(": ", 1)[1]) == pytest.approx(float(read[slot]), abs=1e-4)
    if hasattr(trace, "usage"):  # the DNC's usage bars and gates
        step = steps - 1
        usage = trace.usage[step, 0]
        width = page.page.locator("#bars-usage").bounding_box()["width"] / usage.shape[0]
        text = page.hover("#bars-usage", 2.5 * width, 10)
        assert float(text.rsplit(": ", 1)[1]) == pytest.approx(float(usage[2]), abs=1e-4)
        facts = page.page.inner_text("#facts")
        gate = float(re.search(r"write gate ([-\d.e]+)", facts)[1])  # type: ignore[index]
        assert gate == pytest.approx(float(trace.write_gate[step, 0]), rel=1e-3, abs=1e-6)
    else:  # the NTM's erase and add vectors
        step = steps - 1
        shown = page.cell("#add-0", 0, 4)
        assert shown == pytest.approx(float(trace.add[step, 0, 0, 4]), abs=1e-4)
    assert page.errors == []
    page.page.close()


@pytest.mark.browser
def test_play_switch_and_keys(browser: Any, shipped: Any) -> None:
    path, run, model = shipped
    page = Page(browser, path)
    page.page.click("#play")
    page.page.wait_for_function("() => window.viewer.state.step >= 3")
    page.page.click("#play")  # pause
    paused = page.step()
    assert paused >= 3 and page.page.inner_text("#play") == "play"
    page.page.locator("body").click(position={"x": 5, "y": 300})
    page.page.keyboard.press("End")
    last = page.step()
    page.page.keyboard.press("ArrowLeft")
    assert page.step() == last - 1
    page.page.keyboard.press("Home")
    assert page.step() == 0
    # Switch to the longest sequence (copy at length 120): its own length and values.
    labels = page.page.locator("#sequence option").all_inner_texts()
    longest = max(range(len(labels)), key=lambda i: int(re.search(r"\((\d+) steps", labels[i])[1]))
    assert labels[longest].startswith("length 120")
    page.page.select_option("#sequence", str(longest))
    trace = _trace(run, model, longest)
    steps = trace.memory.shape[0]
    assert f"of {steps - 1}" in page.page.inner_text("#step")
    page.page.focus("#slider")
    page.page.keyboard.press("End")
    writes = trace.write_weights[-1, 0]
    writes = writes if writes.dim() == 2 else writes.unsqueeze(0)
    heads = writes.shape[0] + trace.read_weights.shape[2]
    shown = page.cell("#memory", 9, heads + 1 + 2)
    assert shown == pytest.approx(float(trace.memory[-1, 0, 9, 2]), abs=2e-4)
    # A screenshot whose panels are drawn, not blank.
    for selector in ("#time-panels", "#memory"):
        picture = page.page.locator(selector).screenshot()
        assert _varied(picture), f"{selector} looks blank"
    assert page.errors == []
    page.page.close()


def _varied(png: bytes) -> bool:
    """Whether a screenshot holds more than a few colours (a drawn panel, not a blank one)."""
    import io  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415 (matplotlib's dependency)

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0)) > 20


@pytest.mark.browser
def test_a_fresh_run_gets_its_page_from_the_command_line(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training.train(tiny_run(max_sequences=32), tmp_path / "run", quiet=True)
    assert cli.main(["viz", str(tmp_path / "run"), "--html", "--out", str(tmp_path / "out")]) == 0
    assert str(tmp_path / "out" / "viewer.html") in capsys.readouterr().out
    page = Page(browser, tmp_path / "out" / "viewer.html")
    assert page.page.locator("#sequence option").count() >= viewer.TRAINING_SEQUENCES
    assert page.errors == []
    page.page.close()


def test_a_model_without_a_trace_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lstm = resolve_config({**TINY_TRAIN, "max_sequences": 32, "model": "lstm"}, dict(TINY_TASK), {})
    training.train(lstm, tmp_path / "run", quiet=True)
    assert cli.main(["viz", str(tmp_path / "run"), "--html"]) == 2
    assert "--html: the model 'lstm' has no trace" in capsys.readouterr().err


def test_tensorboard_logs_each_evaluation(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (  # noqa: PLC0415
        EventAccumulator,
    )

    training.train(
        tiny_run(max_sequences=64, eval_every=32, tensorboard=True), tmp_path, quiet=True
    )
    events = EventAccumulator(str(tmp_path / board.FOLDER))
    events.Reload()
    assert set(board.SCALARS.values()) <= set(events.Tags()["scalars"])
    assert [s.step for s in events.Scalars("errors/held-out")] == [32, 64]
    assert [i.step for i in events.Images("held-out sequence")] == [32, 64]


def test_tensorboard_missing_is_said_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(board, "available", lambda: False)
    flags = ["train", "--task", "copy", "--max-sequences", "32", "--tensorboard", "--quiet"]
    assert cli.main([*flags, "--run-dir", str(tmp_path / "r"), "--nproc", "1"]) == 2
    err = capsys.readouterr().err
    needs = '--tensorboard needs the package tensorboard: pip install "torch-ntm[tensorboard]"'
    assert needs in err
    assert "Traceback" not in err
